"""One module per paper: the recipes, reference values and table builders specific to it.

* :mod:`rmtlib.papers.paper1` -- Shmalo, Jenkins, Krupchytskyi (2023), RMT-SVD pruning: the
  recipes and the tables and records of the chapter's notebooks.
* :mod:`rmtlib.papers.paper2` -- Berlyand, Sandier, Shmalo, Zhang (2024), enhancing accuracy:
  the gradual pruning schedule, paired fc recipes (paper-exact and corrected), the arms of the
  regularisation table, its table builders and the reproduction entries.
* :mod:`rmtlib.papers.paper2_cnn` -- paper 2's CNN, the pruning of trained networks against
  magnitude and random-rank baselines, and the loss-landscape measures.
* :mod:`rmtlib.papers.paper3` -- Shmalo (2024), stability of accuracy: training studies and
  the validation of the doubling-constant estimator.
* :mod:`rmtlib.papers.beyond` -- beyond the papers: rank selectors compared after training,
  heavy tails and goodness-of-fit nulls, the paired effects pooled over the chapters' runs.
"""
