"""rmtlib: random-matrix-theory tools for analysing and pruning deep networks.

One concept per module:

* math (no torch or pandas at import time): :mod:`rmtlib.mp` (Marchenko--Pastur law),
  :mod:`rmtlib.tw` (Tracy--Widom laws), :mod:`rmtlib.linalg` (the one Gram-matrix eigensolver),
  :mod:`rmtlib.esd` (empirical spectra), :mod:`rmtlib.bema` (BEMA bulk fit, its window and its
  goodness-of-fit statistic), :mod:`rmtlib.gof` (the statistic's calibrated null and acceptance
  rules), :mod:`rmtlib.rank` (rank selectors), :mod:`rmtlib.ensembles` (noise and spiked
  matrices), :mod:`rmtlib.validation` (argument checks);
* the PyTorch engine: :mod:`rmtlib.layers` (which modules are matrix layers),
  :mod:`rmtlib.spectra` (per-layer analysis), :mod:`rmtlib.prune` (SVD pruning),
  :mod:`rmtlib.models`, :mod:`rmtlib.train` (training, pruning callbacks, checkpoints),
  :mod:`rmtlib.data` (MNIST / Fashion-MNIST: local files, else torchvision's download),
  :mod:`rmtlib.cli` (the ``rmtlib`` command line);
* experiments: :mod:`rmtlib.studies` (multi-seed studies with paired arms), :mod:`rmtlib.stats`
  (statistics over seeds), :mod:`rmtlib.sweeps` (rank sweeps), :mod:`rmtlib.diagnostics`
  (lost classes, dead units), :mod:`rmtlib.published` (published numbers next to ours),
  :mod:`rmtlib.heavytails` (power-law tails, nulls that keep a layer's entries),
  :mod:`rmtlib.parallel` (independent tasks, in-process or on a Dask cluster),
  :mod:`rmtlib.confidence` (classification confidence and the RMT pruning theorem),
  :mod:`rmtlib.baselines` (magnitude pruning and random-rank truncation at a given parameter
  count), :mod:`rmtlib.landscape` (top Hessian eigenvalue, loss along a straight path,
  share of each layer's spectrum inside the fitted MP bulk),
  :mod:`rmtlib.papers` (one module per paper; :mod:`rmtlib.papers.beyond`: the "beyond"
  chapter), :mod:`rmtlib.compare` (rmtlib next to WeightWatcher; the only module importing
  ``weightwatcher``, an optional extra ``[compare]``);
* paper 3's data condition: :mod:`rmtlib.stability` (slabs, doubling constants of a data set,
  stability measures of training curves; NumPy only at import), :mod:`rmtlib.synthetic` (laws
  with closed-form doubling constants, labelled sets with and without flat portions);
* :mod:`rmtlib.plotting` -- every figure (the only module importing matplotlib);
* :mod:`rmtlib.results` and :mod:`rmtlib.reproduce` -- recorded runs and the notebook runner.

Conventions (used everywhere): ``W`` is ``m x n``, ``N = max(m, n)``, ``p = min(m, n)``,
``gamma = p / N <= 1``; eigenvalues are ``lambda_i = s_i**2 / N`` with ``s_i`` the singular
values of ``W``.
"""

__version__ = "0.1.0"
