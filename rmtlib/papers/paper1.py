"""Paper 1 (Shmalo, Jenkins, Krupchytskyi 2023, arXiv:2303.08986): the network and its pruning
schedule, in the authors' version (``"paper_exact"``) and the corrected one.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..models import MLP
from ..prune import PrunePolicy
from ..studies import Recipe
from ..train import Callback, RMTPruning

__all__ = ["VARIANTS", "recipe"]

#: The two versions of every paper-1 experiment.
VARIANTS = ("paper_exact", "corrected")


def recipe(variant: str = "paper_exact", prune: bool = False, *,
           dims: Sequence[int] = (784, 1000, 10), keep_fraction: float = 0.45,
           gof: float = 0.1, alpha: float = 0.2, beta: float = 0.1) -> Recipe:
    """The paper-1 network, trained without or with RMT pruning at every epoch.

    ``variant="paper_exact"`` reproduces the authors' code (Shmalo, Jenkins, Krupchytskyi
    2023, ``jtj5311/NN-RMT-SVD``): ReLU also on the output logits; when pruning, BEMA and
    the goodness of fit with their quirks and the one-too-many spike count
    (``PrunePolicy(paper_exact=True)``), every layer keeping at least the output width, a
    prune *before* every training epoch from epoch 1 on (the first one acts on the random
    initialisation), the factors of a split layer analysed as two layers at later events, and
    a fresh optimizer after every prune (momentum lost).

    ``variant="corrected"``: no activation on the logits; the correct BEMA, statistic and
    count; :class:`rmtlib.train.RMTPruning`'s defaults: a prune *after* every training epoch
    (the first one sees one epoch of training; the recorded accuracy of an epoch is that of the
    pruned model), the optimizer state (momentum) of the untouched parameters kept, a split
    layer re-analysed as the product ``W2 W1`` and only the classifier head keeping its output
    width.

    Both: ``keep = spikes + int(keep_fraction * bulk)`` components; a layer is split into two
    factors when that saves parameters, else truncated; a layer whose fit fails the
    goodness-of-fit cutoff ``gof`` is left alone.  The model of seed ``s`` is
    ``MLP(dims, seed=s)`` (the authors' initialisation for their seeds).  Train with SGD,
    lr 0.08, momentum 0.9, batch 128 (:func:`rmtlib.train.fit`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    exact = variant == "paper_exact"
    dims = tuple(int(d) for d in dims)

    def build(seed: int) -> nn.Module:
        return MLP(dims, relu_on_logits=exact, seed=seed)

    callbacks = tuple
    if prune:
        common = {"selector": "bema", "alpha": alpha, "beta": beta,
                  "keep_fraction": keep_fraction, "action": "factorize", "gof": gof}
        if exact:
            policy = PrunePolicy(**common, paper_exact=True, min_rank=dims[-1],
                                 split_view="factors")

            def callbacks() -> Sequence[Callback]:
                return [RMTPruning(policy, optimizer="rebuild", when="before_epoch",
                                   start_epoch=1)]
        else:
            policy = PrunePolicy(**common)

            def callbacks() -> Sequence[Callback]:
                return [RMTPruning(policy)]

    name = f"{variant.replace('_', '-')}, {'pruned' if prune else 'unpruned'}"
    return Recipe(name, build, callbacks,
                  tags={"variant": variant, "arm": "pruned" if prune else "unpruned"})
