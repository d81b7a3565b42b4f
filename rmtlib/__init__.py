"""rmtlib: random-matrix-theory tools for analysing and pruning deep networks.

One concept per module:

* :mod:`rmtlib.mp` -- the Marchenko--Pastur law,
* :mod:`rmtlib.tw` -- the Tracy--Widom laws,
* :mod:`rmtlib.esd` -- empirical spectra of weight matrices,
* :mod:`rmtlib.bema` -- BEMA bulk fitting,
* :mod:`rmtlib.gof` -- goodness of fit and its calibrated null,
* :mod:`rmtlib.rank` -- rank selectors behind one interface,
* :mod:`rmtlib.spectra`, :mod:`rmtlib.prune`, :mod:`rmtlib.models`, :mod:`rmtlib.train`
  -- the PyTorch engine,
* :mod:`rmtlib.data` -- offline MNIST / Fashion-MNIST,
* :mod:`rmtlib.plotting` -- every figure (the only module importing matplotlib),
* :mod:`rmtlib.results` and :mod:`rmtlib.reproduce` -- recorded runs and the notebook runner.

Conventions (used everywhere): ``W`` is ``m x n``, ``N = max(m, n)``, ``p = min(m, n)``,
``gamma = p / N <= 1``; eigenvalues are ``lambda_i = s_i**2 / N`` with ``s_i`` the singular
values of ``W``.
"""

__version__ = "0.1.0"
