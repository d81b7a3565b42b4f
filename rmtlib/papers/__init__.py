"""One module per paper: the recipes, reference values and table builders specific to it.

* :mod:`rmtlib.papers.paper1` -- Shmalo, Jenkins, Krupchytskyi (2023), RMT-SVD pruning: the
  recipes and the tables and records of the chapter's notebooks.
* :mod:`rmtlib.papers.beyond` -- beyond the papers: rank selectors compared after training,
  heavy tails and goodness-of-fit nulls, the paired effects pooled over the chapters' runs.
* :mod:`rmtlib.papers.paper3` -- Shmalo (2024), stability of accuracy: training studies and
  the validation of the doubling-constant estimator.
"""
