"""One module per paper: the recipes, reference values and table builders specific to it.

* :mod:`rmtlib.papers.paper1` -- Shmalo, Jenkins, Krupchytskyi (2023), RMT-SVD pruning.
"""
