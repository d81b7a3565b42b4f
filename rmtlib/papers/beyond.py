r"""Beyond the papers: which rank selector prunes best, heavy tails, and what survives the seeds.

Everything specific to the "beyond" chapter (``notebooks/beyond/``): the selectors compared and
their pruning after training, the baselines at the same parameter count, a sweep of a uniform
keep fraction, the accuracy/parameter Pareto front, the tail exponents recorded during training,
the goodness-of-fit rules compared, and the table of paired effects pooled from other runs.

Conventions as everywhere in rmtlib: ``W`` is ``m x n``, ``N = max(m, n)``, ``p = min(m, n)``,
eigenvalues :math:`\lambda_i = s_i^2/N`; accuracies in percent, differences in percentage
points, parameter counts are scalar parameters (weights and biases).

**Pruning after training by a selector.**  A selector (:mod:`rmtlib.rank`) gives, per layer, a
number :math:`r` of singular values it deems signal; the layer is replaced by its best rank-``r``
approximation (counted as the factor pair of :func:`rmtlib.prune.factorize` when
``r (m + n) < m n``), the classifier head keeping at least its output width.  No goodness-of-fit
gate is applied, so every selector acts on every layer.

**Baselines at the same parameter count.**  For every selector's pruned net, two nets with the
same budget per layer: *magnitude* -- the layer keeps as many of its largest-|w| weights as the
factorized layer has weights (:func:`rmtlib.baselines.magnitude_prune`), the others set to zero;
*random rank* -- the layer keeps ``r`` singular components drawn uniformly at random instead of the
top ``r`` (:func:`rmtlib.baselines.random_rank_prune`).

**The sweep.**  :func:`keep_fraction_sweep` truncates every non-head layer to
:math:`\max(1, \lceil f p\rceil)` components for a grid of fractions ``f``;
:func:`smallest_within` reads off, per net, the cheapest grid point whose accuracy is within
``tolerance`` points of the unpruned net, and :func:`selector_distance` measures how far each
selector's ranks land from those ranks (mean of :math:`|r_\text{sel} - r^*|/p` over layers).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats
import torch
from torch import nn

from ..baselines import count_nonzero_parameters, magnitude_prune, random_rank_prune
from ..bema import fit_bema
from ..gof import gof_null
from ..heavytails import (fit_power_law, hill_estimator, kurtosis_df, permutation_null,
                          student_t_null)
from ..layers import head_layers, list_layers
from ..linalg import gram_eigenvalues
from ..parallel import map_tasks
from ..prune import PrunePolicy, count_parameters, keep_count, prune_model
from ..rank import select_rank
from ..spectra import decompose
from ..stats import summary_stats
from ..studies import Recipe, keyed
from ..train import Callback, TrainState, evaluate
from ..validation import (ArgumentTypeError, check_float, check_frame, check_int, check_module,
                          check_names, check_probability, check_seed, check_str, describe)

__all__ = [
    "ARCHS",
    "POOLED_EXPERIMENTS",
    "PooledExperiment",
    "SELECTORS",
    "SelectorSpec",
    "TailTracker",
    "gof_rules",
    "gof_rules_many",
    "keep_fraction_sweep",
    "net_recipe",
    "parse_net",
    "paired_interval",
    "pareto_front",
    "pareto_points",
    "pooled_effects",
    "prune_accepted",
    "selector_distance",
    "selector_shootout",
    "smallest_within",
    "tail_rows",
    "tracked",
    "train_nets",
]


# ============================================================== selectors and their pruning


@dataclass(frozen=True)
class SelectorSpec:
    """One rank selector as pruned in the shoot-out: a ``label`` for tables and figures, the
    ``selector`` name of :mod:`rmtlib.rank`, its ``options`` and, for BEMA, ``alpha``/``beta``."""

    label: str
    selector: str
    options: Mapping = field(default_factory=dict)
    alpha: float = 0.2
    beta: float = 0.1

    def policy(self) -> PrunePolicy:
        """The :class:`~rmtlib.prune.PrunePolicy` keeping exactly the selector's rank."""
        return PrunePolicy(selector=self.selector, selector_opts=dict(self.options),
                           keep_fraction=0.0, action="factorize", gof=None, alpha=self.alpha,
                           beta=self.beta)


#: The selectors of the shoot-out: BEMA at the papers' and other (alpha, beta), the optimal hard
#: threshold, ScreeNOT, two energy levels and WeightWatcher's MP fit (rmtlib's re-implementation).
SELECTORS = (
    SelectorSpec("BEMA α=0.2 β=0.1", "bema", alpha=0.2, beta=0.1),
    SelectorSpec("BEMA α=0.25 β=0.1", "bema", alpha=0.25, beta=0.1),
    SelectorSpec("BEMA α=0.1 β=0.5", "bema", alpha=0.1, beta=0.5),
    SelectorSpec("BEMA α=0.25 β=0.9", "bema", alpha=0.25, beta=0.9),
    SelectorSpec("Gavish–Donoho", "gavish_donoho"),
    SelectorSpec("ScreeNOT k=100", "screenot", {"k": 100}),
    SelectorSpec("energy 90 %", "energy", {"t": 0.9}),
    SelectorSpec("energy 99 %", "energy", {"t": 0.99}),
    SelectorSpec("WeightWatcher MP", "weightwatcher_mp"),
)

SHOOTOUT_COLUMNS = ["method", "kind", "matched_to", "test_acc", "n_params"]
LAYER_COLUMNS = ["method", "layer", "p", "rank"]


def _check_specs(selectors) -> tuple[SelectorSpec, ...]:
    specs = tuple(selectors) if isinstance(selectors, (list, tuple)) else None
    if not specs or not all(isinstance(s, SelectorSpec) for s in specs):
        raise ArgumentTypeError(f"selectors must be a non-empty list of SelectorSpec, got "
                                f"{describe(selectors)}")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"selector labels must be distinct, got {labels}")
    return specs


def _data_for(data, cols: Mapping, names: Sequence[str]):
    """``data`` itself, or -- a mapping -- its entry for the net's first key column."""
    if isinstance(data, Mapping):
        key = cols[names[0]]
        if key not in data:
            raise ValueError(f"data has no entry for {names[0]} = {key!r}; entries: {sorted(data)}")
        return data[key]
    return data


def _selector_rank(spec: SelectorSpec, eigs: np.ndarray, shape: tuple[int, int]) -> int | None:
    """The selector's rank for one layer from its eigenvalues, or None when it does not apply
    (the layer is then left alone).  ScreeNOT's bound ``k`` is capped at the largest value the
    layer allows, ``(p - 2) // 2``."""
    p = min(shape)
    try:
        if spec.selector == "bema":
            return fit_bema(eigs, shape=shape, alpha=spec.alpha, beta=spec.beta).n_spikes
        opts = dict(spec.options)
        if spec.selector == "screenot" and "k" in opts:
            opts["k"] = min(int(opts["k"]), (p - 2) // 2)
            if opts["k"] < 1:
                return None
        return select_rank(eigs, spec.selector, shape=shape, **opts).rank
    except ValueError:
        return None


def _written(model: nn.Module, decs: Mapping, chosen: Mapping) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose layer ``name`` keeps its top ``chosen[name]`` components
    (``range(k)``: indices into its decomposition ``decs[name]``), and the parameter count of that net with every edited
    layer stored as the factor pair when ``k (m + n) < m n`` (as :func:`rmtlib.prune.factorize`
    would store it; the map is the same)."""
    m = copy.deepcopy(model)
    layers = {la.name: la for la in list_layers(m)}
    n_params = count_parameters(model)
    for name, idx in chosen.items():
        dec = decs[name]
        layers[name].write(dec.truncated(torch.as_tensor(np.asarray(idx, dtype=np.int64))))
        rows, cols = dec.shape
        k = len(idx)
        if k * (rows + cols) < rows * cols:
            n_params -= rows * cols - k * (rows + cols)
    return m.eval(), n_params


def selector_shootout(models: Mapping, data, selectors=SELECTORS, *,
                      names: Sequence[str] = ("recipe", "seed"), baselines: bool = True,
                      random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prune a copy of each trained model with each selector (module docstring), evaluate it on
    ``data = (x, y)`` (or ``data[key]``, a mapping from the values of the first key column, e.g.
    one test set per net), and (``baselines``) the magnitude and random-rank nets at the same
    budget.

    Each layer is decomposed once (:func:`rmtlib.spectra.decompose`); a selector's rank ``r``
    (:func:`rmtlib.rank.select_rank` on the eigenvalues, BEMA with the spec's ``alpha``,
    ``beta``; ScreeNOT's ``k`` capped at ``(p - 2) // 2``) becomes ``keep = max(r, 1)``, at
    least the output width for the classifier head (:func:`rmtlib.prune.keep_count` with no
    bulk); a layer is edited when ``keep < p``, to its best rank-``keep`` approximation, counted
    as the factor pair when that is smaller.  Nets whose per-layer budget equals an earlier
    selector's are not re-evaluated: they are the same nets (the random-rank draw included).

    Returns ``(results, ranks)``: ``results`` has the key columns ``names`` and
    :data:`SHOOTOUT_COLUMNS` -- ``method`` (a selector label, ``"unpruned"``, ``"magnitude"`` or
    ``"random rank"``), ``kind`` (``"selector"``, ``"unpruned"``, ``"baseline"``),
    ``matched_to`` (the selector whose budget a baseline uses), ``test_acc`` (%), ``n_params``
    (parameters of the pruned net; for magnitude pruning the non-zero ones); ``ranks`` has one
    row per selector, layer and net: ``layer``, ``p``, ``rank`` (components kept).
    The random ranks draw from ``random_state`` combined with the net's position.
    """
    specs = _check_specs(selectors)
    names = check_names(list(names), "names", empty=False)
    seed = check_seed(random_state, "random_state")
    rows, layer_rows = [], []
    for i, (cols, model) in enumerate(keyed(models, names)):
        net_data = _data_for(data, cols, names)
        model = model.eval()
        _, acc = evaluate(model, net_data)
        rows.append({**cols, "method": "unpruned", "kind": "unpruned", "matched_to": None,
                     "test_acc": acc, "n_params": count_parameters(model)})
        heads = set(head_layers(model))
        layers = [la for la in list_layers(model) if la.ok and la.kind != "factorized"]
        decs = {la.name: decompose(la.matrix().clone()) for la in layers}
        eigs = {name: dec.eigenvalues() for name, dec in decs.items()}
        done: dict[tuple, tuple] = {}
        for j, spec in enumerate(specs):
            budget = {}
            for la in layers:
                m_, p = la.shape[0], min(la.shape)
                r = _selector_rank(spec, eigs[la.name], la.shape)
                keep = p if r is None else keep_count(min(r, p), p, 0.0,
                                                      min(m_ if la.name in heads else 1, p))
                layer_rows.append({**cols, "method": spec.label, "layer": la.name, "p": p,
                                   "rank": keep})
                if keep < p:
                    budget[la.name] = keep
            key = tuple(sorted(budget.items()))
            if key not in done:
                pruned, n_sel = _written(model, decs, {n: range(k) for n, k in budget.items()})
                out = [("selector", spec.label, evaluate(pruned, net_data)[1], n_sel)]
                if baselines and budget:
                    mag = copy.deepcopy(model)
                    for name, k in budget.items():
                        r_, c_ = decs[name].shape
                        n_w = k * (r_ + c_) if k * (r_ + c_) < r_ * c_ else r_ * c_
                        magnitude_prune(mag, n_w, scope="layer", layers=[name])
                    out.append(("baseline", "magnitude", evaluate(mag, net_data)[1],
                                count_nonzero_parameters(mag)))
                    rnd = copy.deepcopy(model)
                    random_rank_prune(rnd, budget, random_state=np.random.default_rng([seed, i, j]))
                    out.append(("baseline", "random rank", evaluate(rnd, net_data)[1],
                                count_parameters(rnd)))
                done[key] = out
            for kind, method, acc, n in done[key]:
                rows.append({**cols, "method": spec.label if kind == "selector" else method,
                             "kind": kind, "matched_to": None if kind == "selector" else spec.label,
                             "test_acc": acc, "n_params": n})
    return (pd.DataFrame(rows, columns=[*names, *SHOOTOUT_COLUMNS]),
            pd.DataFrame(layer_rows, columns=[*names, *LAYER_COLUMNS]))


def _prunable(model: nn.Module) -> list:
    heads = set(head_layers(model))
    return [la for la in list_layers(model) if la.ok and la.name not in heads]


def keep_fraction_sweep(models: Mapping, data, fractions: Sequence[float], *,
                        names: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    r"""Truncate every non-head layer of a copy of each model to :math:`\max(1, \lceil f p\rceil)`
    components (its best approximation of that rank from one decomposition per layer, counted as
    the factor pair when that saves parameters), for each fraction ``f`` in
    ``fractions`` (in (0, 1]), and evaluate on ``data`` (one ``(x, y)`` or a mapping as in
    :func:`selector_shootout`).

    Returns one row per net and fraction: ``names``, ``fraction``, ``test_acc`` (%),
    ``n_params`` and ``ranks`` (``{layer: rank}``); ``f = 1`` is the unpruned net.
    """
    names = check_names(list(names), "names", empty=False)
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
        raise ArgumentTypeError(f"fractions must be a non-empty list of numbers in (0, 1], got "
                                f"{describe(fractions)}")
    fr = [check_float(f, "fractions", low=0.0, high=1.0, low_open=True) for f in fractions]
    rows = []
    for cols, model in keyed(models, names):
        layers = _prunable(model)
        if not layers:
            raise ValueError(f"model {cols} has no analysable layer besides its head to prune")
        decs = {la.name: decompose(la.matrix().clone()) for la in layers}
        for f in fr:
            ranks = {la.name: min(la.rank, max(1, math.ceil(f * min(la.shape)))) for la in layers}
            m, n_params = _written(model, decs, {la.name: range(ranks[la.name])
                                                 for la in layers if ranks[la.name] < la.rank})
            _, acc = evaluate(m, _data_for(data, cols, names))
            rows.append({**cols, "fraction": f, "test_acc": acc, "n_params": n_params,
                         "ranks": ranks})
    return pd.DataFrame(rows, columns=[*names, "fraction", "test_acc", "n_params", "ranks"])


def smallest_within(sweep: pd.DataFrame, full_acc: pd.DataFrame, tolerance: float = 0.5, *,
                    names: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    """Per net: the sweep point with the fewest parameters whose accuracy is at least
    ``full_acc - tolerance`` (percentage points).  ``full_acc`` has the columns ``names`` and
    ``test_acc`` (the unpruned nets).  Returns ``names``, ``full_acc``, ``fraction``,
    ``test_acc``, ``n_params``, ``ranks`` (NaN / None when no point qualifies)."""
    names = check_names(list(names), "names", empty=False)
    tolerance = check_float(tolerance, "tolerance", low=0.0)
    check_frame(sweep, [*names, "fraction", "test_acc", "n_params", "ranks"], "sweep")
    check_frame(full_acc, [*names, "test_acc"], "full_acc")
    ref = full_acc.set_index(names)["test_acc"]
    rows = []
    for key, g in sweep.groupby(names, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if key not in ref.index:
            raise ValueError(f"full_acc has no row for the net {dict(zip(names, key))}")
        full = float(ref.loc[key])
        ok = g[g.test_acc >= full - tolerance].sort_values(["n_params", "fraction"])
        row = dict(zip(names, key), full_acc=full)
        if len(ok):
            best = ok.iloc[0]
            row.update(fraction=float(best.fraction), test_acc=float(best.test_acc),
                       n_params=int(best.n_params), ranks=best.ranks)
        else:
            row.update(fraction=math.nan, test_acc=math.nan, n_params=math.nan, ranks=None)
        rows.append(row)
    return pd.DataFrame(rows)


def selector_distance(ranks: pd.DataFrame, best: pd.DataFrame, *,
                      names: Sequence[str] = ("recipe", "seed")) -> pd.DataFrame:
    r"""How far each selector's per-layer ranks land from the sweep's smallest ranks within the
    tolerance (``best`` from :func:`smallest_within`): per selector and net, the mean over the
    layers the sweep prunes of :math:`|r_\text{sel} - r^*| / p` (``distance``, a fraction of the
    layer's full rank) and of the signed :math:`(r_\text{sel} - r^*)/p` (``signed``, > 0: the
    selector keeps more).  Nets whose sweep found no qualifying point are left out."""
    names = check_names(list(names), "names", empty=False)
    check_frame(ranks, [*names, "method", "layer", "p", "rank"], "ranks")
    check_frame(best, [*names, "ranks"], "best")
    target = {tuple(r[n] for n in names): r["ranks"] for _, r in best.iterrows()
              if isinstance(r["ranks"], Mapping)}
    rows = []
    for key, g in ranks.groupby([*names, "method"], sort=False):
        star = target.get(tuple(key[:-1]))
        if star is None:
            continue
        g = g[g.layer.isin(list(star))]
        if g.empty:
            continue
        d = (g["rank"].to_numpy(float) - g.layer.map(star).to_numpy(float)) / g.p.to_numpy(float)
        rows.append({**dict(zip([*names, "method"], key)), "distance": float(np.abs(d).mean()),
                     "signed": float(d.mean())})
    return pd.DataFrame(rows, columns=[*names, "method", "distance", "signed"])


def pareto_front(frame: pd.DataFrame, x: str = "n_params", y: str = "test_acc") -> pd.Series:
    """Boolean mask of the rows not dominated by another: no other row has ``x`` <= and ``y``
    >= with one of them strict (fewer parameters and higher accuracy are better).  NaN rows are
    never on the front."""
    check_frame(frame, [check_str(x, "x"), check_str(y, "y")])
    xs, ys = frame[x].to_numpy(float), frame[y].to_numpy(float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    le, ge = xs[None, :] <= xs[:, None], ys[None, :] >= ys[:, None]
    strict = (xs[None, :] < xs[:, None]) | (ys[None, :] > ys[:, None])
    dominated = (le & ge & strict & ok[None, :]).any(axis=1)
    return pd.Series(ok & ~dominated, index=frame.index, name="pareto")


# ================================================================ the trained networks


#: Architectures of the shoot-out: the paper-1 MLP (``dims``) and the LeNet-style CNN.
ARCHS = ("mlp", "cnn")


def parse_net(net: str) -> tuple[str, str]:
    """``"mnist/mlp"`` -> ``("mnist", "mlp")``: a data set of :mod:`rmtlib.data` and an
    architecture of :data:`ARCHS`."""
    from ..data import canonical_name

    check_str(net, "net")
    dataset, _, arch = net.partition("/")
    if arch not in ARCHS:
        raise ValueError(f"net must be '<dataset>/<arch>' with arch in {ARCHS}, got {net!r}")
    return canonical_name(dataset), arch


def net_recipe(net: str, dims: Sequence[int] = (784, 1000, 10)) -> Recipe:
    """The recipe (named ``net``) training one network of the shoot-out without pruning: the
    corrected paper-1 MLP ``MLP(dims, seed=s)`` (no activation on the logits) or
    ``LeNetLike(seed=s)``; train with SGD (paper 1: lr 0.08, momentum 0.9, batch 128)."""
    from ..models import MLP, LeNetLike

    dataset, arch = parse_net(net)
    dims = tuple(check_int(d, "dims", minimum=1) for d in dims)

    def build(seed: int) -> nn.Module:
        return MLP(dims, seed=seed) if arch == "mlp" else LeNetLike(seed=seed)

    return Recipe(net, build, tags={"dataset": dataset, "arch": arch})


def pareto_points(results: pd.DataFrame, *, net: str = "net") -> pd.DataFrame:
    """Mean and sample sd (ddof = 1) over seeds of ``n_params`` and ``test_acc`` per ``net``,
    ``method``, ``kind`` and ``matched_to`` (:func:`selector_shootout` results), with
    ``pareto``: whether a selector's (or the unpruned net's) mean point is on the Pareto front
    of those points of its net (:func:`pareto_front`; baselines are never on it) and ``n``
    (seeds)."""
    check_frame(results, [net, "seed", *SHOOTOUT_COLUMNS], "results")
    keys = [net, "method", "kind", "matched_to"]
    g = results.assign(matched_to=results.matched_to.fillna("")).groupby(keys, sort=False)
    out = g.agg(n_params_mean=("n_params", "mean"), n_params_sd=("n_params", "std"),
                test_acc_mean=("test_acc", "mean"), test_acc_sd=("test_acc", "std"),
                n=("seed", "nunique")).reset_index()
    out["pareto"] = False
    for _, part in out[out.kind != "baseline"].groupby(net, sort=False):
        out.loc[part.index, "pareto"] = pareto_front(part, "n_params_mean", "test_acc_mean")
    return out


def train_nets(nets: Sequence[str], seeds: Sequence[int], *, dims: Sequence[int] = (784, 1000, 10),
               epochs: int, n_train: int | None = None, n_test: int | None = None,
               data_seed: int = 0, checkpoints=None, threads: int | None = 1,
               **fit_kwargs) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Train every net of ``nets`` (``"<dataset>/<arch>"``, :func:`net_recipe`) once per seed
    with :func:`rmtlib.studies.run_seeds` on the data set's subset ``(n_train, n_test)`` drawn
    with ``data_seed`` (None: all images), ``fit_kwargs`` going to :func:`rmtlib.train.fit`.

    Returns ``(models, tests, history, index)``: ``{(net, seed): model}``, ``{net: (x, y)}``
    the test sets, the long history frame (column ``recipe`` = the net) and, when
    ``checkpoints`` (a folder) is given, the index of the saved weights
    (:meth:`rmtlib.studies.SeedStudy.save_checkpoints`; empty otherwise)."""
    from ..data import load_dataset
    from ..studies import run_seeds

    if isinstance(nets, str) or not isinstance(nets, Sequence) or not nets:
        raise ArgumentTypeError(f"nets must be a non-empty list of '<dataset>/<arch>' names, got "
                                f"{describe(nets)}")
    if len(set(nets)) != len(nets):
        raise ValueError(f"nets must be distinct, got {list(nets)}")
    models, tests, frames, index = {}, {}, [], []
    for net in nets:
        dataset, _ = parse_net(net)
        data = load_dataset(dataset)
        if n_train is not None or n_test is not None:
            data = data.subset(n_train, n_test, seed=data_seed)
        tests[net] = (data.test_x, data.test_y)
        study = run_seeds([net_recipe(net, dims)], seeds, (data.train_x, data.train_y),
                          tests[net], epochs=epochs, threads=threads, **fit_kwargs)
        models.update(study.models)
        frames.append(study.frame)
        if checkpoints is not None:
            index.append(study.save_checkpoints(checkpoints))
    index = pd.concat(index, ignore_index=True) if index else pd.DataFrame(
        columns=["recipe", "seed", "file"])
    return models, tests, pd.concat(frames, ignore_index=True), index


# ============================================================================ heavy tails


def _tail_row(la) -> dict:
    lam, _ = gram_eigenvalues(la.matrix())
    lam = lam[lam.size - la.rank:]  # a rank-r split pair: only its r non-zero eigenvalues
    p = lam.size
    row = {"layer": la.name, "p": p, "alpha": math.nan, "xmin": math.nan, "n_tail": 0,
           "hill": math.nan, "kurtosis_df": math.nan}
    try:
        fit = fit_power_law(lam, min_tail=min(10, max(2, p // 4)))
        row.update(alpha=fit.alpha, xmin=fit.xmin, n_tail=fit.n_tail)
        row["hill"] = hill_estimator(lam, max(2, min(p - 1, fit.n_tail)))
    except ValueError:
        pass
    w = la.matrix().detach().double().cpu().numpy().ravel()
    row["kurtosis_df"] = kurtosis_df(w)
    return row


class TailTracker(Callback):
    """Record, before training (epoch 0) and after every epoch (after any pruning callback
    placed before it), each analysable layer's power-law tail exponent of its eigenvalues (the
    ``rank`` largest for a split pair, whose other eigenvalues are zero)
    (:func:`rmtlib.heavytails.fit_power_law`: ``alpha``, ``xmin``, ``n_tail``), the Hill
    estimate from the same tail size (``hill``) and the Student-t degrees of freedom matching
    the entries' kurtosis (``kurtosis_df``).  The rows (with ``epoch``) are kept on the tracker
    and returned by :meth:`record`, so that :func:`rmtlib.studies.run_seeds` brings them back
    from wherever the training ran (read them with :func:`tail_rows`)."""

    def __init__(self):
        self.rows: list[dict] = []

    def _record(self, state: TrainState, epoch: int) -> None:
        for la in list_layers(state.model):
            if la.ok:
                self.rows.append({"epoch": epoch, **_tail_row(la)})

    def on_train_begin(self, state: TrainState) -> None:
        self._record(state, 0)

    def on_epoch_end(self, state: TrainState) -> None:
        self._record(state, state.epoch)

    def record(self) -> dict:
        """``{"tails": rows}`` (see :func:`tail_rows`)."""
        return {"tails": list(self.rows)}


def _with_tracker(callbacks) -> list:
    return [*callbacks(), TailTracker()]


def tracked(recipe: Recipe) -> Recipe:
    """``recipe`` with a :class:`TailTracker` appended to its callbacks; after
    :func:`rmtlib.studies.run_seeds`, :func:`tail_rows` of the study holds its rows."""
    if not isinstance(recipe, Recipe):
        raise ArgumentTypeError(f"recipe must be a Recipe, got {describe(recipe)}")
    return Recipe(recipe.name, recipe.build, functools.partial(_with_tracker, recipe.callbacks),
                  dict(recipe.fit_options), dict(recipe.tags))


def tail_rows(study) -> pd.DataFrame:
    """The :class:`TailTracker` rows of every training of ``study`` (a
    :class:`rmtlib.studies.SeedStudy` of :func:`tracked` recipes): columns ``recipe``, ``seed``,
    ``epoch``, ``layer`` and the tail measures, in training order."""
    records = getattr(study, "records", None)
    if not isinstance(records, dict):
        raise ArgumentTypeError(f"study must be a SeedStudy, got {describe(study)}")
    rows = [{"recipe": name, "seed": seed, **row} for (name, seed), recs in records.items()
            for rec in recs if isinstance(rec, dict) and "tails" in rec for row in rec["tails"]]
    if not rows:
        raise ValueError("the study holds no tail rows: train recipes made by tracked(...)")
    return pd.DataFrame(rows)


#: The acceptance rules of :func:`gof_rules`.
GOF_RULES = ("fixed 0.1", "Gaussian null", "permutation null", "Student-t null")


def gof_rules(model: nn.Module, *, alpha: float = 0.2, cutoff: float = 0.1, level: float = 0.95,
              n_sim: int = 100, random_state: int = 0, threads: int | None = None) -> pd.DataFrame:
    """Per analysable layer, BEMA's goodness-of-fit statistic ``D`` (corrected, :mod:`rmtlib.gof`)
    and whether four rules accept the MP fit:

    * ``fixed 0.1``: ``D < cutoff`` (the authors' rule);
    * ``Gaussian null``: ``D`` at most the ``level`` quantile of ``D`` over ``n_sim`` i.i.d.
      Gaussian matrices of the layer's shape (:func:`rmtlib.gof.gof_null`);
    * ``permutation null``: the same quantile over ``n_sim`` random permutations of the layer's
      own entries (:func:`rmtlib.heavytails.permutation_null`);
    * ``Student-t null``: over i.i.d. Student-t matrices whose degrees of freedom match the
      entries' kurtosis (:func:`rmtlib.heavytails.student_t_null`; Gaussian when the excess
      kurtosis is not positive).

    Columns: ``layer``, ``shape``, ``D``, ``kurtosis_df``, then ``cutoff_<rule>`` and
    ``accept_<rule>`` for each rule of :data:`GOF_RULES` (``<rule>`` with spaces as ``_``).
    Every null is drawn from ``random_state`` alone, so a layer's row does not depend on the
    other layers.  The layers are tasks of :func:`rmtlib.parallel.map_tasks` (``threads``: torch
    threads per task); :func:`gof_rules_many` does several models in one batch.
    """
    check_module(model)
    return gof_rules_many({0: model}, alpha=alpha, cutoff=cutoff, level=level, n_sim=n_sim,
                          random_state=random_state, threads=threads)[0]


def gof_rules_many(models: Mapping, *, alpha: float = 0.2, cutoff: float = 0.1, level: float = 0.95,
                   n_sim: int = 100, random_state: int = 0, threads: int | None = None) -> dict:
    """:func:`gof_rules` of every model of ``models`` (a mapping of keys to modules), as
    ``{key: table}`` in the mapping's order; all their layers are one batch of
    :func:`rmtlib.parallel.map_tasks` tasks (in-process without a cluster), and each table equals
    ``gof_rules(model, ...)``."""
    if not isinstance(models, Mapping) or not models:
        raise ArgumentTypeError(f"models must be a non-empty mapping of keys to modules, got "
                                f"{describe(models)}")
    for key, model in models.items():
        check_module(model, f"models[{key!r}]")
    cutoff = check_float(cutoff, "cutoff", low=0.0, high=1.0, low_open=True)
    level = check_probability(level, "level", open_low=True, open_high=True)
    n_sim = check_int(n_sim, "n_sim", minimum=20)
    seed = check_seed(random_state, "random_state")
    tasks = [(key, la.name, la.matrix().detach().double().cpu().numpy())
             for key, model in models.items() for la in list_layers(model) if la.ok]
    rows = map_tasks(_gof_rules_row, tasks, label="GoF nulls", threads=threads,
                     shared={"alpha": alpha, "cutoff": cutoff, "level": level, "n_sim": n_sim,
                             "seed": seed})
    out: dict = {key: [] for key in models}
    for (key, _, _), row in zip(tasks, rows):
        out[key].append(row)
    return {key: pd.DataFrame(r) for key, r in out.items()}


def _gof_rules_row(task, *, alpha: float, cutoff: float, level: float, n_sim: int, seed: int) -> dict:
    """One layer's row of :func:`gof_rules` (a :func:`~rmtlib.parallel.map_tasks` task):
    ``task = (model key, layer name, weight matrix)``."""
    _, name, W = task
    shape = W.shape
    fit = fit_bema(W, alpha=alpha)
    df = kurtosis_df(W.ravel())
    nulls = {
        "Gaussian null": gof_null(shape, alpha, n_sim=n_sim, random_state=seed).quantile(level),
        "permutation null": permutation_null(W, n_sim=n_sim, alpha=alpha,
                                             random_state=seed).quantile(level),
        "Student-t null": student_t_null(shape, df, n_sim=n_sim, alpha=alpha,
                                         random_state=seed).quantile(level),
    }
    row = {"layer": name, "shape": shape, "D": fit.gof, "kurtosis_df": df,
           "cutoff_fixed_0.1": cutoff, "accept_fixed_0.1": bool(fit.gof < cutoff)}
    for rule, q in nulls.items():
        key = rule.replace(" ", "_").replace("-", "_")
        row[f"cutoff_{key}"] = q
        row[f"accept_{key}"] = bool(fit.gof <= q)
    return row


def prune_accepted(model: nn.Module, accepted: Sequence[str], data, *,
                   keep_fraction: float = 0.45, alpha: float = 0.2, beta: float = 0.1) -> dict:
    """Prune a copy of ``model`` after training with BEMA (paper 1's rule: keep the spikes plus
    ``keep_fraction`` of the bulk) in the ``accepted`` layers only (no further GoF gate), and
    evaluate on ``data``.  Returns ``{"test_acc", "n_params", "layers_pruned"}``; with no
    accepted layer the net is unchanged."""
    check_module(model)
    if isinstance(accepted, str) or not isinstance(accepted, Sequence):
        raise ArgumentTypeError(f"accepted must be a list of layer names, got {describe(accepted)}")
    m = copy.deepcopy(model)
    pruned = []
    if accepted:
        report = prune_model(m, PrunePolicy(keep_fraction=keep_fraction, gof=None, alpha=alpha,
                                            beta=beta, layers=list(accepted)))
        pruned = report.changed
    _, acc = evaluate(m, data)
    return {"test_acc": acc, "n_params": count_parameters(m), "layers_pruned": list(pruned)}


# ===================================================================== pooled paired effects


@dataclass(frozen=True)
class PooledExperiment:
    """One paired pruned-minus-unpruned effect recorded by another run: the seed records
    (``{"per_seed": {seed: value}, ...}``, as :func:`rmtlib.stats.record_tree` writes) found in
    that run's ``metrics.json`` under the key paths ``pruned`` and ``unpruned`` (tuples: metric
    key, then nested keys).  ``label`` names the experiment, ``version`` is ``"paper_exact"``
    or ``"corrected"``."""

    run: str
    label: str
    version: str
    pruned: tuple
    unpruned: tuple


#: The experiments pooled on the "what survives the seeds" page (the runs of papers 1 and 2
#: that record paired per-seed arms); each run must be in ``beyond_effects``' ``depends_on``.
POOLED_EXPERIMENTS = (
    PooledExperiment("paper1_pruning", "Paper 1: pruning during training (MNIST MLP)",
                     "paper_exact", ("final_test_acc", "paper_exact_pruned"),
                     ("final_test_acc", "paper_exact_unpruned")),
    PooledExperiment("paper1_pruning", "Paper 1: pruning during training (MNIST MLP)",
                     "corrected", ("final_test_acc", "corrected_pruned"),
                     ("final_test_acc", "corrected_unpruned")),
    PooledExperiment("paper1_rank_sweep", "Paper 1: layer 1 cut to its predicted rank after "
                     "training", "paper_exact", ("acc_at_predicted_rank", "paper_exact"),
                     ("full_rank_acc", "paper_exact")),
    PooledExperiment("paper1_rank_sweep", "Paper 1: layer 1 cut to its predicted rank after "
                     "training", "corrected", ("acc_at_predicted_rank", "corrected"),
                     ("full_rank_acc", "corrected")),
    *(PooledExperiment("paper2_fc", f"Paper 2: gradual pruning, fully connected ({name})",
                       version, ("final_test_acc", ds, arm), ("final_test_acc", ds, "unpruned"))
      for ds, name in (("fashion_mnist", "Fashion-MNIST"), ("mnist", "MNIST"))
      for version, arm in (("paper_exact", "paper_exact_pruned"), ("corrected", "pruned"))
      if not (ds == "mnist" and version == "paper_exact")),
    *(PooledExperiment("paper2_cnn", "Paper 2: gradual pruning, CNN (Fashion-MNIST)", version,
                       ("final_test_acc", f"fashion_mnist, {label}, pruned"),
                       ("final_test_acc", f"fashion_mnist, {label}, unpruned"))
      for version, label in (("paper_exact", "paper-exact"), ("corrected", "corrected"))),
)


def paired_interval(differences, confidence: float = 0.95) -> dict:
    r"""Mean of paired differences and its Student-t interval,
    :math:`\bar d \pm t_{(1+c)/2,\,n-1}\, s/\sqrt n` (``s`` the sample sd, ddof = 1), assuming
    the per-seed differences are i.i.d. and roughly normal.  Returns ``mean``, ``sd``, ``low``,
    ``high`` (NaN for fewer than two values), ``n`` and ``n_positive``."""
    confidence = check_probability(confidence, "confidence", open_low=True, open_high=True)
    if isinstance(differences, (str, bytes, Mapping)) or not hasattr(differences, "__len__"):
        raise ArgumentTypeError(f"differences must be a sequence of numbers, got {describe(differences)}")
    d = np.asarray(list(differences), dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be a non-empty list of finite numbers, got {differences!r}")
    st = summary_stats(d)
    half = (scipy.stats.t.ppf((1 + confidence) / 2, d.size - 1) * st["sd"] / math.sqrt(d.size)
            if d.size > 1 else math.nan)
    return {"mean": st["mean"], "sd": st["sd"], "low": st["mean"] - half,
            "high": st["mean"] + half, "n": int(d.size), "n_positive": int((d > 0).sum())}


def _dig(metrics: Mapping, path: tuple, run: str) -> dict:
    node = metrics
    for k in path:
        if not isinstance(node, Mapping) or k not in node:
            raise ValueError(f"run {run!r} has no metric {'/'.join(path)} (missing {k!r})")
        node = node[k]
    if not isinstance(node, Mapping) or not isinstance(node.get("per_seed"), Mapping):
        raise ValueError(f"metric {'/'.join(path)} of run {run!r} is not a per-seed record")
    return node["per_seed"]


def pooled_effects(metrics_by_run: Mapping[str, Mapping], experiments=POOLED_EXPERIMENTS, *,
                   confidence: float = 0.95) -> pd.DataFrame:
    """The paired effect (pruned minus unpruned, seeds present in both arms) of each experiment,
    from ``metrics_by_run`` (run name -> the ``metrics`` of its :class:`rmtlib.results.RunRecord`).
    Experiments whose run is absent are left out (listed in the frame's ``attrs["missing"]``).
    Columns: ``run``, ``label``, ``version``, ``pruned``, ``unpruned`` (means, %), ``effect``,
    ``sd``, ``low``, ``high`` (the :func:`paired_interval`, percentage points), ``n``,
    ``n_positive``, ``seeds``."""
    if not isinstance(metrics_by_run, Mapping):
        raise ArgumentTypeError(f"metrics_by_run must map run names to metrics, got "
                                f"{describe(metrics_by_run)}")
    exps = tuple(experiments)
    if not exps or not all(isinstance(e, PooledExperiment) for e in exps):
        raise ArgumentTypeError("experiments must be a non-empty list of PooledExperiment")
    rows, missing = [], []
    for e in exps:
        if e.run not in metrics_by_run:
            missing.append(e.run)
            continue
        a = _dig(metrics_by_run[e.run], tuple(e.pruned), e.run)
        b = _dig(metrics_by_run[e.run], tuple(e.unpruned), e.run)
        seeds = [s for s in a if s in b]
        if not seeds:
            raise ValueError(f"run {e.run!r}: no seed is in both arms of {e.label!r}")
        d = [float(a[s]) - float(b[s]) for s in seeds]
        ci = paired_interval(d, confidence)
        rows.append({"run": e.run, "label": e.label, "version": e.version,
                     "pruned": float(np.mean([a[s] for s in seeds])),
                     "unpruned": float(np.mean([b[s] for s in seeds])),
                     "effect": ci["mean"], "sd": ci["sd"], "low": ci["low"], "high": ci["high"],
                     "n": ci["n"], "n_positive": ci["n_positive"], "seeds": seeds})
    out = pd.DataFrame(rows, columns=["run", "label", "version", "pruned", "unpruned", "effect",
                                      "sd", "low", "high", "n", "n_positive", "seeds"])
    out.attrs["missing"] = sorted(set(missing))
    return out
