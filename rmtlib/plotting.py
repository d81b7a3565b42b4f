"""Every figure of the companion (the only rmtlib module that imports matplotlib/seaborn).

Conventions: eigenvalues are ``lambda_i = s_i**2 / N`` of an ``m x n`` weight matrix with
``N = max(m, n)``; accuracies are in percent (as in :class:`rmtlib.train.History` and the
papers).  Each function draws on ``ax`` (a new figure when ``ax`` is None) and returns the
axes, so notebooks can compose panels.  Call :func:`use_style` once per notebook for the
book's look; the functions themselves never change global state.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = [
    "COLORS",
    "LABELS",
    "accuracy_vs_rank",
    "agreement_scatter",
    "band_plot",
    "density_curves",
    "doubling_profile",
    "errorbar_scatter",
    "estimate_dots",
    "esd_grid",
    "esd_histogram",
    "flipped_points",
    "loss_accuracy",
    "margin_scatter",
    "paired_comparison",
    "pareto_plot",
    "rank_bars",
    "rank_error_grid",
    "sample_histogram",
    "seed_curves",
    "sweep_plot",
    "use_style",
]

#: One colour per role, used by every figure.
COLORS = {
    "esd": "0.30",          # histogram bars
    "mp": "#E69F00",        # fitted Marchenko--Pastur density
    "edge": "#D55E00",      # lambda_+ / rank lines
    "accent": "#0072B2",    # main curve
    "reference": "0.45",    # published / reference values
    "full": "0.20",         # unpruned / full-rank level
}

#: Axis labels with units, keyed by history / data column.
LABELS = {
    "eigenvalue": r"eigenvalue $\lambda = s^2/N$",
    "density": "density",
    "rank": "rank $k$ (singular values kept)",
    "epoch": "epoch",
    "test_acc": "test accuracy (%)",
    "train_acc": "training accuracy (%)",
    "test_loss": "test loss (cross-entropy, nats/sample)",
    "train_loss": "training loss (cross-entropy, nats/sample)",
    "n_params": "parameters",
    "lr": "learning rate",
    "seconds": "wall time per epoch (s)",
    "loss": "training loss (cross-entropy, nats/sample)",
    "accuracy": "training accuracy (%)",
    "doubling": r"doubling constant $\max N_{2\delta}/N_\delta$",
}


def use_style(context: str = "notebook") -> None:
    """Apply the book's plotting style (seaborn ``whitegrid``, colour-blind palette,
    readable font sizes, tight saved figures).  Call once per notebook."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context=context, palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.titlesize": "medium",
            "legend.frameon": False,
            "legend.fontsize": "small",
        }
    )


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _eigenvalues(x, fit) -> np.ndarray:
    """Ascending eigenvalues from a Spectrum / BemaFit-like object, a 1-D array of
    eigenvalues or a 2-D matrix (via :func:`rmtlib.esd.spectrum`)."""
    from .esd import spectrum

    if x is None:
        if fit is None:
            raise ValueError("esd_histogram needs eigenvalues, a Spectrum, a matrix or a fit")
        x = fit
    if hasattr(x, "eigenvalues"):
        lam = np.asarray(x.eigenvalues, dtype=np.float64)
    else:
        if hasattr(x, "detach"):
            x = x.detach().cpu().double().numpy()
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 2:
            lam = spectrum(arr).eigenvalues
        elif arr.ndim == 1:
            lam = arr
        else:
            raise ValueError(f"expected eigenvalues (1-D) or a matrix (2-D), got shape {arr.shape}")
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise ValueError("eigenvalues must be a non-empty array of finite numbers")
    return np.sort(lam)


def esd_histogram(
    spectrum_or_eigs=None,
    fit=None,
    ax=None,
    zoom: bool = False,
    bins=None,
    *,
    title: str | None = None,
    show_edge: bool = True,
    log: bool = False,
    grid_points: int = 400,
):
    r"""Histogram of the eigenvalues ``lambda = s**2/N`` with the fitted MP density and edge.

    Parameters
    ----------
    spectrum_or_eigs : Spectrum, BemaFit, array_like or matrix
        Eigenvalues (1-D), a weight matrix (2-D; its eigenvalues are computed), or any
        object with an ``eigenvalues`` attribute (:class:`rmtlib.esd.Spectrum`,
        :class:`rmtlib.bema.BemaFit`).  May be omitted when ``fit`` carries eigenvalues.
    fit : BemaFit-like, optional
        Object with ``lambda_plus`` and ``mp()`` (the fitted
        :class:`~rmtlib.mp.MarchenkoPastur`).  Draws the fitted density and a vertical
        line at :math:`\hat\lambda_+`.
    zoom : bool
        Show only the bulk, ``lambda <= lambda_+_hat`` (requires ``fit``), as in the
        papers' "zoomed" panels.
    log : bool
        Logarithmic density axis (makes the few spikes beyond the bulk visible).
    bins : int, sequence or str, optional
        Passed to :func:`numpy.histogram_bin_edges`; default ``clip(n // 4, 10, 100)`` bins
        for ``n`` eigenvalues shown (the papers use 100).

    Notes
    -----
    The histogram is a density over the eigenvalues shown.  The MP curve is the density
    the fit predicts *for those eigenvalues*: the MP law conditioned on
    :math:`\lambda \le \hat\lambda_+` (``pdf / F(lambda_+_hat)``) times the fraction of shown
    eigenvalues lying in the bulk, so its area matches the bulk bars whether or not the
    spikes are in view.  The top of the y-axis is set by the bars (the MP density of a
    square matrix diverges at 0).
    """
    lam = _eigenvalues(spectrum_or_eigs, fit)
    ax = _axes(ax)
    lam_plus = None if fit is None else float(fit.lambda_plus)
    if zoom:
        if lam_plus is None:
            raise ValueError("zoom=True shows the bulk below lambda_+; pass the fit")
        lam = lam[lam <= lam_plus]
        if lam.size == 0:
            raise ValueError("no eigenvalue lies below the fitted lambda_+; nothing to zoom on")
    if bins is None:
        bins = int(np.clip(lam.size // 4, 10, 100))
    edges = np.histogram_bin_edges(lam, bins=bins)
    heights, _, _ = ax.hist(
        lam, bins=edges, density=True, color=COLORS["esd"], alpha=0.85, lw=0,
        label="empirical density",
    )
    top = float(np.max(heights)) if len(heights) else 1.0
    if fit is not None:
        mp = fit.mp()
        lo, hi = mp.support()
        hi = min(hi, lam_plus)
        if hi > lo:
            x = np.linspace(lo, hi, grid_points)[1:-1]
            mass = float(mp.cdf(lam_plus))
            bulk_frac = np.count_nonzero(lam <= lam_plus) / lam.size
            y = mp.pdf(x) * bulk_frac / max(mass, np.finfo(float).tiny)
            ax.plot(x, y, color=COLORS["mp"], lw=2,
                    label=rf"fitted MP ($\hat\sigma^2$ = {mp.sigma2:.3g}, $\gamma$ = {mp.ratio:.3g})")
        if show_edge:
            ax.axvline(lam_plus, color=COLORS["edge"], ls="--", lw=1.5,
                       label=rf"$\hat\lambda_+$ = {lam_plus:.4g}")
    if log:
        ax.set_yscale("log")
        positive = heights[heights > 0]
        ax.set_ylim(0.5 * float(positive.min()), 2.0 * top)
    else:
        ax.set_ylim(0, 1.15 * top)
    ax.set_xlabel(LABELS["eigenvalue"])
    ax.set_ylabel(LABELS["density"] + (" (log scale)" if log else ""))
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="best")
    return ax


def _xy(pair, what):
    if isinstance(pair, pd.DataFrame):
        if pair.shape[1] < 2:
            raise ValueError(f"{what}: a DataFrame needs two columns (rank, accuracy)")
        pair = (pair.iloc[:, 0], pair.iloc[:, 1])
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{what} must be a (ranks, accuracies) pair")
    x, y = (np.asarray(v, dtype=np.float64) for v in pair)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"{what}: ranks and accuracies must be 1-D of equal length, "
                         f"got {x.shape} and {y.shape}")
    return x, y


def accuracy_vs_rank(
    ks,
    accs,
    predicted_rank=None,
    full_acc=None,
    reference=None,
    ax=None,
    *,
    label: str = "rank-$k$ truncation",
    ylabel: str = LABELS["test_acc"],
    title: str | None = None,
):
    """Accuracy after keeping the top ``k`` singular values, against ``k``.

    Parameters
    ----------
    ks, accs : array_like
        Ranks and accuracies (percent).
    predicted_rank : int, optional
        Vertical line at the rank an RMT selector predicts (e.g. BEMA's spike count).
    full_acc : float, optional
        Dashed horizontal line at the unpruned (full-rank) accuracy.
    reference : (ks, accs) pair, DataFrame or mapping label -> pair, optional
        Published or other reference curves, drawn as open markers.
    """
    x, y = _xy((ks, accs), "ks/accs")
    ax = _axes(ax)
    ax.plot(x, y, "o-", color=COLORS["accent"], ms=4, label=label)
    if reference is not None:
        refs = reference if isinstance(reference, Mapping) else {"reference": reference}
        for i, (name, pair) in enumerate(refs.items()):
            rx, ry = _xy(pair, f"reference {name!r}")
            ax.plot(rx, ry, ["s", "^", "v", "D"][i % 4], mfc="none", ls=":",
                    color=COLORS["reference"], label=str(name))
    if full_acc is not None:
        ax.axhline(float(full_acc), color=COLORS["full"], ls="--", lw=1,
                   label=f"full rank ({float(full_acc):.2f}%)")
    if predicted_rank is not None:
        ax.axvline(float(predicted_rank), color=COLORS["edge"], lw=1.5,
                   label=f"predicted rank = {predicted_rank:g}")
    ax.set_xlabel(LABELS["rank"])
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="lower right")
    return ax


# -- theory chapter: laws, sweeps, rank selectors ------------------------------------------
def _ref_lines(ax, hlines=None, vlines=None) -> None:
    """Labelled horizontal / vertical reference lines (mapping label -> position), in greys
    so that they never share a colour with a data series."""
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(float(y), color=COLORS["reference"], ls=[":", "-.", "--"][i % 3], lw=1.3,
                   label=str(name))
    for i, (name, x) in enumerate((vlines or {}).items()):
        ax.axvline(float(x), color=COLORS["full"], ls=["--", ":", "-."][i % 3], lw=1.4,
                   label=str(name))


def _finish(ax, xlabel, ylabel, title, legend_loc):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    if legend_loc is not None and ax.get_legend_handles_labels()[0]:
        # a white box keeps reference lines from crossing the legend's text
        ax.legend(loc=legend_loc, frameon=True, framealpha=0.9, edgecolor="none")
    return ax


def _check_curve(name, pair, sizes=(2,)):
    if not isinstance(pair, (tuple, list)) or len(pair) not in sizes:
        raise ValueError(f"{name} must be an (x, y{', yerr' if 3 in sizes else ''}) tuple")
    arrs = [np.asarray(v, dtype=np.float64) for v in pair]
    if any(a.ndim != 1 or a.shape != arrs[0].shape for a in arrs):
        raise ValueError(f"{name}: x, y (and yerr) must be 1-D arrays of equal length, "
                         f"got shapes {[a.shape for a in arrs]}")
    return arrs


def density_curves(laws, x, ax=None, *, vlines=None, xlabel: str = "x",
                   ylabel: str = LABELS["density"], title: str | None = None,
                   legend_loc: str | None = "best"):
    """Densities of several laws on the grid ``x``.

    Parameters
    ----------
    laws : mapping label -> law
        Objects with a vectorized ``pdf`` (e.g. :class:`rmtlib.tw.TracyWidom`,
        :class:`rmtlib.mp.MarchenkoPastur`), drawn in the order given.
    x : array_like
        Evaluation grid (the units of the laws' variable; say which in ``xlabel``).
    vlines : mapping label -> float, optional
        Labelled vertical lines (e.g. a quantile used as a threshold).
    """
    if not isinstance(laws, Mapping) or not laws:
        raise ValueError("laws must be a non-empty mapping label -> law with a pdf method")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError("x must be a 1-D grid of at least 2 finite points")
    ax = _axes(ax)
    for i, (name, law) in enumerate(laws.items()):
        ax.plot(x, law.pdf(x), color=f"C{i}", lw=2, label=str(name))
    _ref_lines(ax, vlines=vlines)
    ax.set_ylim(bottom=0)
    return _finish(ax, xlabel, ylabel, title, legend_loc)


def sample_histogram(samples, law=None, ax=None, *, bins=40, law_label: str = "limit density",
                     vlines=None, xlabel: str = "x", ylabel: str = LABELS["density"],
                     title: str | None = None, grid_points: int = 400, unit: str = "samples",
                     legend_loc: str | None = "best", clip_to_bars: bool = False,
                     headroom: float = 1.15):
    """Density histograms of one or several samples, optionally against a law's density.

    Parameters
    ----------
    samples : array_like or mapping label -> array_like
        One sample, or several drawn as overlaid step histograms on common bin edges.
    law : object with ``pdf``, optional
        Reference law (e.g. :class:`rmtlib.tw.TracyWidom` for scaled largest eigenvalues);
        its density is drawn over the range of the bins.
    bins : int or sequence
        Passed to :func:`numpy.histogram_bin_edges` on the pooled samples.
    vlines : mapping label -> float, optional
        Labelled vertical lines (an observed statistic, a cutoff, ...).
    unit : str or None
        What one sample value is, for the legend ("draws", "eigenvalues", ...): a sample is
        labelled ``"name (size unit)"``, or just ``"name"`` when ``unit`` is None.
    clip_to_bars : bool
        Set the top of the y-axis by the bars (``headroom`` times the highest), for a law
        whose density diverges at an edge (the MP law of a square matrix at 0); a larger
        ``headroom`` leaves room for the legend above the bars.

    The law's density is drawn over the bins and, when its support is finite, the whole
    support.
    """
    data = dict(samples) if isinstance(samples, Mapping) else {"sample": samples}
    if not data:
        raise ValueError("samples must not be empty")
    arrays = {}
    for name, s in data.items():
        a = np.asarray(s, dtype=np.float64).ravel()
        if a.size == 0 or not np.all(np.isfinite(a)):
            raise ValueError(f"sample {name!r} must be a non-empty array of finite numbers")
        arrays[name] = a
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    ax = _axes(ax)
    single = len(arrays) == 1
    top = 0.0
    for i, (name, a) in enumerate(arrays.items()):
        label = str(name if isinstance(samples, Mapping) else "sample")
        label += "" if unit is None else f" ({a.size} {unit})"
        if single:
            heights, _, _ = ax.hist(a, bins=edges, density=True, color=COLORS["esd"], alpha=0.6,
                                    lw=0, label=label)
        else:
            heights, _, _ = ax.hist(a, bins=edges, density=True, histtype="step", lw=1.8,
                                    color=f"C{i}", label=label)
        top = max(top, float(np.max(heights)))
    if law is not None:
        lo, hi = law.support() if hasattr(law, "support") else (-np.inf, np.inf)
        x = np.linspace(min(edges[0], lo) if np.isfinite(lo) else edges[0],
                        max(edges[-1], hi) if np.isfinite(hi) else edges[-1], grid_points)
        ax.plot(x, law.pdf(x), color=COLORS["mp"] if single else "k", lw=2, label=law_label)
    _ref_lines(ax, vlines=vlines)
    ax.set_ylim(0, headroom * top if clip_to_bars else None)
    ax.locator_params(axis="x", nbins=6)  # long tick labels (e.g. 0.00325) must not collide
    return _finish(ax, xlabel, ylabel, title, legend_loc)


def sweep_plot(series=None, ax=None, *, theory=None, reference=None, band=None, hlines=None,
               vlines=None, xlabel: str = "x", ylabel: str = "y", title: str | None = None,
               legend_loc: str | None = "best", dodge: float = 0.0, colors=None):
    """Quantities against a swept parameter: simulations with error bars, theory curves,
    published values and reference lines on one axis.

    Parameters
    ----------
    series : mapping label -> (x, y) or (x, y, yerr), optional
        Computed values, drawn as markers joined by lines, with ``yerr`` error bars
        (e.g. ± 1 sd over draws).
    theory : mapping label -> (x, y), optional
        Theoretical curves, drawn as lines without markers.
    reference : mapping label -> (x, y), optional
        Published / reference values, drawn as open grey markers.
    band : mapping label -> (low, high), optional
        Horizontal shaded bands (e.g. a published range).
    hlines, vlines : mapping label -> float, optional
        Labelled reference lines (a bulk edge, a threshold, a nominal level).
    dodge : float
        Horizontal offset between consecutive ``series`` (x units), so that error bars of
        series sharing the same x values do not hide each other; 0 draws them at x.
    colors : mapping label -> colour, optional
        Colours of the ``series`` (default: the colour cycle ``C0, C1, ...`` in order), so
        that one quantity keeps its colour across figures.
    """
    ax = _axes(ax)
    if not (series or theory or reference):
        raise ValueError("sweep_plot needs at least one of series, theory or reference")
    for i, (name, (lo, hi)) in enumerate((band or {}).items()):
        ax.axhspan(float(lo), float(hi), color=COLORS["reference"], alpha=0.18 + 0.1 * i, lw=0,
                   label=str(name))
    for i, (name, pair) in enumerate((theory or {}).items()):
        x, y = _check_curve(f"theory {name!r}", pair)
        ax.plot(x, y, color="k" if i == 0 else f"C{7 + i}", ls=["-", "--", ":"][i % 3], lw=1.8,
                label=str(name))
    n_series = len(series or {})
    for i, (name, triple) in enumerate((series or {}).items()):
        arrs = _check_curve(f"series {name!r}", triple, sizes=(2, 3))
        yerr = arrs[2] if len(arrs) == 3 else None
        shift = (i - (n_series - 1) / 2) * float(dodge)
        ax.errorbar(arrs[0] + shift, arrs[1], yerr=yerr, fmt="o-", ms=4, lw=1.3, capsize=2.5,
                    color=(colors or {}).get(name, f"C{i}"), label=str(name))
    for i, (name, pair) in enumerate((reference or {}).items()):
        x, y = _check_curve(f"reference {name!r}", pair)
        ax.plot(x, y, ["s", "^", "v", "D"][i % 4], mfc="none", mew=1.5, ms=8, ls=":",
                color=COLORS["reference"], label=str(name))
    _ref_lines(ax, hlines, vlines)
    return _finish(ax, xlabel, ylabel, title, legend_loc)


def _mean_sd(df: pd.DataFrame, by: list[str], y: str) -> pd.DataFrame:
    out = df.groupby(by, sort=True)[y].agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)  # a single draw has no spread
    return out


def rank_error_grid(df: pd.DataFrame, *, x: str = "theta", y: str = "error", hue: str = "method",
                    facet: str = "gamma", vlines=None, yscale: str = "linear",
                    linthresh: float = 5.0, dodge: float = 0.0, colors=None,
                    xlabel: str = r"spike strength $\theta$ (noise units)",
                    ylabel: str = "rank error (estimated $-$ true)", facet_label=None,
                    width: float = 4.2, height: float = 3.6):
    """Mean ± sd of a rank error against ``x``, one line per ``hue``, one panel per ``facet``.

    Parameters
    ----------
    df : DataFrame
        Tidy rows (one per draw and selector) with columns ``x``, ``y``, ``hue``, ``facet``.
    vlines : mapping facet value -> mapping label -> float, optional
        Per-panel vertical lines (e.g. the BBP threshold of that aspect ratio).
    yscale : str
        ``"linear"`` or ``"symlog"`` (when one selector is off by orders of magnitude);
        ``linthresh`` is the half-width of the linear part of a symlog axis.
    dodge : float
        Horizontal offset between the ``hue`` lines (see :func:`sweep_plot`).
    colors : mapping hue value -> colour, optional
        Fixed colours per ``hue`` value (default: the colour cycle in order of appearance).
    facet_label : callable, optional
        Panel title from the facet value (default ``f"{facet} = {value:g}"``).

    Returns
    -------
    numpy.ndarray of Axes
        One per facet value; the figure is ``axes[0].figure``, the legend sits below it.
    """
    missing = [c for c in (x, y, hue, facet) if c not in df]
    if missing:
        raise ValueError(f"columns {missing} not found; available: {sorted(df.columns)}")
    facets = sorted(df[facet].unique())
    fig, axes = plt.subplots(1, len(facets), figsize=(width * len(facets), height),
                             sharey=True, squeeze=False, layout="constrained")
    axes = axes[0]
    hues = list(dict.fromkeys(df[hue]))
    for ax, value in zip(axes, facets):
        stats = _mean_sd(df[df[facet] == value], [hue, x], y)
        series = {h: (g[x], g["mean"], g["std"]) for h in hues
                  for g in [stats[stats[hue] == h]] if len(g)}
        sweep_plot(series, ax, vlines=(vlines or {}).get(value), xlabel=xlabel, dodge=dodge,
                   colors=colors,
                   ylabel=ylabel if ax is axes[0] else "", legend_loc=None,
                   title=facet_label(value) if facet_label else f"{facet} = {value:g}")
        ax.axhline(0.0, color=COLORS["full"], lw=0.8)
        ax.set_yscale(yscale, **({"linthresh": linthresh} if yscale == "symlog" else {}))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
    return axes


def rank_bars(df: pd.DataFrame, *, true_rank=None, x: str = "case", y: str = "rank",
              hue: str = "method", ax=None, log: bool = False, colors=None,
              ylabel: str = "estimated rank (mean ± sd over draws)", xlabel: str = "",
              title: str | None = None):
    """Grouped bars: mean ± sd of ``y`` per ``x`` category and ``hue``, with the true rank.

    ``df`` holds one row per draw; ``true_rank`` (a number) is drawn as a horizontal line.
    ``log=True`` uses a symmetric-log axis (when some selectors keep hundreds of values);
    ``colors`` maps ``hue`` values to fixed colours (default: the colour cycle in order).
    """
    missing = [c for c in (x, y, hue) if c not in df]
    if missing:
        raise ValueError(f"columns {missing} not found; available: {sorted(df.columns)}")
    ax = _axes(ax)
    cats, hues = list(dict.fromkeys(df[x])), list(dict.fromkeys(df[hue]))
    stats = _mean_sd(df, [x, hue], y).set_index([x, hue])
    width = 0.8 / len(hues)
    pos = np.arange(len(cats))
    for i, h in enumerate(hues):
        rows = [stats.loc[(c, h)] if (c, h) in stats.index else None for c in cats]
        mean = np.array([np.nan if r is None else r["mean"] for r in rows])
        sd = np.array([0.0 if r is None else r["std"] for r in rows])
        ax.bar(pos + (i - (len(hues) - 1) / 2) * width, mean, width, yerr=sd, capsize=2,
               color=(colors or {}).get(h, f"C{i}"), label=str(h))
    if true_rank is not None:
        ax.axhline(float(true_rank), color="k", ls="--", lw=1.2, label=f"true rank = {true_rank:g}")
    ax.set_xticks(pos, [str(c) for c in cats])
    if log:
        ax.set_yscale("symlog", linthresh=10)
    ax.grid(axis="x", visible=False)
    _finish(ax, xlabel, ylabel, title, None)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


# -- paper 1: one curve per seed, paired comparisons ----------------------------------------
def seed_curves(data: pd.DataFrame, y: str = "test_acc", ax=None, *, x: str = "epoch",
                by: str = "recipe", seed: str = "seed", band: str = "sd", reference=None,
                hlines=None, vlines=None, xlabel: str | None = None, ylabel: str | None = None,
                title: str | None = None, legend_loc: str | None = "best"):
    """Every seed's curve (thin) with the mean over seeds (bold, ± 1 sd band) per group.

    Parameters
    ----------
    data : DataFrame
        Long format: one row per group ``by``, seed ``seed`` and ``x`` value (e.g. the frame
        of :func:`rmtlib.experiments.run_seeds`, or the rank sweeps of
        :func:`rmtlib.experiments.truncation_curves` with ``x="k"``).
    band : {"sd", "none"}
        Shade mean ± the sample standard deviation over seeds (ddof = 1) where at least two
        seeds contribute.
    reference : mapping label -> (x, y), optional
        Published values, drawn as open grey markers.
    hlines, vlines : mapping label -> float, optional
        Labelled reference lines (a full-rank accuracy, a predicted rank).

    Thin lines show what a mean hides: a seed that stalls far below the others.
    """
    if band not in ("sd", "none"):
        raise ValueError(f"band must be 'sd' or 'none', got {band!r}")
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"seed_curves needs a long DataFrame, got {type(data).__name__}")
    missing = [c for c in (x, y, by, seed) if c not in data]
    if missing:
        raise ValueError(f"columns {missing} not found; available: {sorted(data.columns)}")
    df = data[[by, seed, x, y]].dropna(subset=[y])
    if df.empty:
        raise ValueError(f"no finite values of {y!r} to draw")
    ax = _axes(ax)
    for i, (group, g) in enumerate(df.groupby(by, sort=False)):
        color = f"C{i}"
        for _, run in g.groupby(seed, sort=False):
            run = run.sort_values(x)
            ax.plot(run[x], run[y], color=color, lw=0.8, alpha=0.45)
        stats = g.groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
        n = g[seed].nunique()
        ax.plot(stats[x], stats["mean"], "-o", ms=3, lw=2, color=color,
                label=f"{group} (mean of {n} seeds)" if n > 1 else str(group))
        ok = stats["count"] > 1
        if band == "sd" and ok.any():
            ax.fill_between(stats[x][ok], (stats["mean"] - stats["std"])[ok],
                            (stats["mean"] + stats["std"])[ok], color=color, alpha=0.18, lw=0)
    for i, (name, pair) in enumerate((reference or {}).items()):
        rx, ry = _check_curve(f"reference {name!r}", pair)
        ax.plot(rx, ry, ["s", "^", "v", "D"][i % 4], mfc="none", mew=1.4, ms=7, ls=":",
                color=COLORS["reference"], label=str(name))
    _ref_lines(ax, hlines, vlines)
    if x == "epoch":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(ax, xlabel or LABELS.get(x, x), ylabel or LABELS.get(y, y), title, legend_loc)


def paired_comparison(pairs: pd.DataFrame, baseline: str, other: str, ax=None, *,
                      seed: str = "seed", ylabel: str = LABELS["test_acc"],
                      title: str | None = None):
    """One line per seed from its ``baseline`` value to its ``other`` value (a slope chart).

    ``pairs`` has one row per seed with columns ``seed``, ``baseline`` and ``other`` (the
    output of :func:`rmtlib.experiments.paired_differences`).  Lines going up are seeds
    where ``other`` is larger; the mean of each column is marked with a bar.
    """
    if not isinstance(pairs, pd.DataFrame):
        raise ValueError(f"paired_comparison needs a DataFrame, got {type(pairs).__name__}")
    missing = [c for c in (seed, baseline, other) if c not in pairs]
    if missing:
        raise ValueError(f"columns {missing} not found; available: {sorted(pairs.columns)}")
    if pairs.empty:
        raise ValueError("no pairs to draw")
    ax = _axes(ax)
    up = (pairs[other] > pairs[baseline]).to_numpy()
    for name, a, b, rises in zip(pairs[seed], pairs[baseline], pairs[other], up):
        ax.plot([0, 1], [a, b], "-o", ms=5, lw=1.2,
                color=COLORS["accent"] if rises else COLORS["edge"])
        ax.annotate(str(name), (1, b), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize="x-small", color="0.35")
    for pos, col in ((0, baseline), (1, other)):
        ax.hlines(pairs[col].mean(), pos - 0.12, pos + 0.12, color="k", lw=2.5)
    ax.plot([], [], "-o", color=COLORS["accent"], label=f"{other} higher ({int(up.sum())} seeds)")
    ax.plot([], [], "-o", color=COLORS["edge"], label=f"{other} not higher ({int((~up).sum())} seeds)")
    ax.plot([], [], "-", color="k", lw=2.5, label="mean over seeds")
    ax.set_xticks([0, 1], [baseline, other])
    ax.set_xlim(-0.4, 1.6)
    ax.grid(axis="x", visible=False)
    _finish(ax, "", ylabel, title, None)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return ax


def esd_grid(fits, titles=None, *, width: float = 5.2, height: float = 3.4, bins=None):
    """One row per layer: the whole spectrum (log density, so that the spikes show) and the
    bulk below :math:`\\hat\\lambda_+` with the fitted MP density.

    Parameters
    ----------
    fits : mapping label -> BemaFit
        Fits of :func:`rmtlib.bema.fit_bema` (they carry the eigenvalues).
    titles : mapping label -> str, optional
        Row titles (e.g. the goodness of fit and its verdict); default the label.

    A layer without eigenvalues below its fitted edge gets a note instead of the zoomed
    panel.  Returns the figure.
    """
    if not isinstance(fits, Mapping) or not fits:
        raise ValueError("fits must be a non-empty mapping label -> BemaFit")
    titles = dict(titles or {})
    fig, axes = plt.subplots(len(fits), 2, figsize=(2 * width, height * len(fits)),
                             squeeze=False, layout="constrained")
    for (label, fit), (left, right) in zip(fits.items(), axes):
        title = titles.get(label, str(label))
        esd_histogram(fit=fit, ax=left, log=True, bins=bins, title=f"{title}\nall eigenvalues")
        if np.any(fit.eigenvalues <= fit.lambda_plus):
            esd_histogram(fit=fit, ax=right, zoom=True, bins=bins, show_edge=False,
                          title=f"{title}\nbulk below $\\hat\\lambda_+$")
        else:
            right.text(0.5, 0.5, "no eigenvalue below $\\hat\\lambda_+$", ha="center",
                       va="center", transform=right.transAxes)
            right.set_axis_off()
    for ax in fig.axes:
        if ax.get_legend() is not None:  # readable over the bars
            ax.legend(loc="upper right", fontsize="x-small", frameon=True, framealpha=0.85)
    return fig


# -- paper 3: doubling constants and the stability of accuracy ------------------------------
def doubling_profile(estimate, ax=None, *, bins: int = 20, n_deltas: int = 4,
                     title: str | None = None, legend_loc: str | None = "upper center"):
    """Where the largest doubling ratios live: for each of the ``n_deltas`` half-widths whose
    slabs reach the largest ratios, the largest ratio among the slabs centred in each of
    ``bins`` bins of the centre's position (0 = the smallest projection of the data, 1 = the
    largest), on a log scale.  ``estimate`` is a :class:`rmtlib.stability.DoublingEstimate`
    (default offsets, so that positions are within the projected range)."""
    if not hasattr(estimate, "ratios") or not hasattr(estimate, "profile_scale"):
        raise ValueError(f"doubling_profile needs a DoublingEstimate, got {type(estimate).__name__}")
    ratios = estimate.ratios  # (k, K, D)
    if not np.isfinite(ratios).any():
        raise ValueError("no admissible slab to draw")
    low, span = estimate.profile_scale()
    with np.errstate(divide="ignore", invalid="ignore"):
        position = (estimate.offsets - low[:, None]) / span[:, None]  # (k, K)
        relative = np.nanmedian(estimate.deltas / span[:, None], axis=0)  # (D,)
    best_per_delta = np.nanmax(np.where(np.isfinite(ratios), ratios, -np.inf), axis=(0, 1))
    top = np.argsort(best_per_delta)[::-1][:n_deltas]
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    which = np.clip(np.digitize(position, edges) - 1, 0, bins - 1)
    ax = _axes(ax)
    for i, c in enumerate(sorted(top)):
        r = ratios[:, :, c]
        ok = np.isfinite(r) & np.isfinite(position)
        best = np.full(bins, np.nan)
        np.fmax.at(best, which[ok], r[ok])
        ax.plot(centres, best, "o-", ms=3, lw=1.3, color=f"C{i}",
                label=f"$\\delta$ = {relative[c]:.3g} x range")
    ax.set_yscale("log")
    return _finish(ax, "centre b of the slab (0 = smallest projection, 1 = largest)",
                   "largest ratio $N_{2\\delta}/N_\\delta$ in the bin", title, legend_loc)


def estimate_dots(frame: pd.DataFrame, *, label: str, value: str, low: str | None = None,
                  high: str | None = None, hue: str | None = None, ax=None, log: bool = True,
                  xlabel: str = LABELS["doubling"], title: str | None = None,
                  reference: Mapping | None = None, legend_loc: str | None = "best"):
    """One dot per row at ``value`` with an interval ``[low, high]`` (columns of ``frame``),
    rows labelled by ``label`` on the vertical axis and coloured by ``hue``; ``reference``
    draws labelled vertical lines (e.g. a closed-form constant)."""
    need = [c for c in (label, value, low, high, hue) if c is not None and c not in frame]
    if need:
        raise ValueError(f"columns {need} not found; available: {sorted(frame.columns)}")
    ax = _axes(ax)
    labels = list(dict.fromkeys(frame[label]))
    groups = list(dict.fromkeys(frame[hue])) if hue else [None]
    for i, g in enumerate(groups):
        part = frame if g is None else frame[frame[hue] == g]
        y = np.array([labels.index(v) for v in part[label]], dtype=float)
        y += (i - (len(groups) - 1) / 2) * 0.18
        x = part[value].to_numpy(dtype=float)
        err = None
        if low is not None and high is not None:
            err = np.vstack([np.maximum(x - part[low].to_numpy(dtype=float), 0),
                             np.maximum(part[high].to_numpy(dtype=float) - x, 0)])
        ax.errorbar(x, y, xerr=err, fmt="o", ms=5, capsize=3, color=f"C{i}",
                    label=None if g is None else str(g))
    ax.set_yticks(range(len(labels)), [str(v) for v in labels])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    _ref_lines(ax, vlines=reference)
    return _finish(ax, xlabel, "", title, legend_loc)


def errorbar_scatter(frame: pd.DataFrame, x: str, y: str, *, hue: str, xerr: str | None = None,
                     yerr: str | None = None, annotate: str | None = None, ax=None,
                     logx: bool = True, xlabel: str | None = None, ylabel: str | None = None,
                     title: str | None = None, legend_loc: str | None = "best"):
    """``y`` against ``x`` with error bars (columns ``xerr``, ``yerr``), one colour per ``hue``
    value, each point labelled with its ``annotate`` value (e.g. a data set)."""
    need = [c for c in (x, y, hue, xerr, yerr, annotate) if c is not None and c not in frame]
    if need:
        raise ValueError(f"columns {need} not found; available: {sorted(frame.columns)}")
    ax = _axes(ax)
    for i, (g, part) in enumerate(frame.groupby(hue, sort=False)):
        ax.errorbar(part[x], part[y], xerr=None if xerr is None else part[xerr],
                    yerr=None if yerr is None else part[yerr], fmt="o", ms=6, capsize=3,
                    color=f"C{i}", label=str(g))
        if annotate is not None:
            for _, row in part.iterrows():
                ax.annotate(str(row[annotate]), (row[x], row[y]), xytext=(5, 4),
                            textcoords="offset points", fontsize="x-small", color="0.3")
    if logx:
        ax.set_xscale("log")
    return _finish(ax, xlabel or LABELS.get(x, x), ylabel or LABELS.get(y, y), title, legend_loc)


def loss_accuracy(curve: pd.DataFrame, axes=None, *, x: str = "epoch", marks: Mapping | None = None,
                  title: str | None = None, xlabel: str | None = None):
    """Training loss (top) and accuracy (bottom) of one run against ``x``, with labelled
    vertical ``marks`` (mapping label -> x, e.g. an unstable epoch).  Returns the two axes."""
    need = [c for c in (x, "loss", "accuracy") if c not in curve]
    if need:
        raise ValueError(f"columns {need} not found; available: {sorted(curve.columns)}")
    if axes is None:
        _, axes = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.0), layout="constrained")
    top, bottom = axes
    c = curve.sort_values(x)
    top.plot(c[x], c["loss"], "-", color=COLORS["accent"], lw=1.6)
    bottom.plot(c[x], c["accuracy"], "-", color=COLORS["edge"], lw=1.6)
    for ax in axes:
        _ref_lines(ax, vlines=marks)
    _finish(top, "", "training loss\n(nats/sample)", title, "upper right" if marks else None)
    _finish(bottom, xlabel or LABELS.get(x, x), "training\naccuracy (%)", None, None)
    return axes


def flipped_points(X, before, after, group=None, ax=None, *, title: str | None = None,
                   xlabel: str = "$x_1$", ylabel: str = "$x_2$", legend_loc: str | None = "best"):
    """Two-dimensional points coloured by how one training step changed their classification:
    ``before`` / ``after`` are boolean arrays (correctly classified); points that became
    misclassified are red, those that became correct blue, the others grey; ``group`` (ints,
    e.g. 0 bulk, 1 and 2 the flat portions) sets the marker."""
    X = np.asarray(X, dtype=np.float64)
    before, after = np.asarray(before, dtype=bool), np.asarray(after, dtype=bool)
    if X.ndim != 2 or X.shape[1] != 2 or before.shape != (len(X),) or after.shape != (len(X),):
        raise ValueError("flipped_points needs X (n, 2) and boolean before/after of length n")
    group = np.zeros(len(X), dtype=int) if group is None else np.asarray(group)
    ax = _axes(ax)
    kinds = [("unchanged", before == after, "0.75"), ("became wrong", before & ~after, "#D55E00"),
             ("became right", ~before & after, "#0072B2")]
    markers = ["o", "s", "^", "D"]
    for name, mask, color in kinds:
        for g in np.unique(group):
            sel = mask & (group == g)
            if sel.any():
                ax.scatter(X[sel, 0], X[sel, 1], s=10 if name == "unchanged" else 22,
                           marker=markers[int(g) % 4], color=color, lw=0,
                           label=f"{name} ({int(sel.sum())}{', group ' + str(g) if len(np.unique(group)) > 1 else ''})")
    return _finish(ax, xlabel, ylabel, title, legend_loc)


# -- paper 2: the pruning theorem ----------------------------------------------------------
def band_plot(series, ax=None, *, theory=None, hlines=None, xlabel: str = "x",
              ylabel: str = "y", title: str | None = None, logx: bool = False,
              logy: bool = False, legend_loc: str | None = "best", colors=None):
    """Central values with a shaded band (e.g. median and 10-90 % quantiles over samples)
    against a swept parameter.

    Parameters
    ----------
    series : mapping label -> (x, center, low, high)
        One line with markers per label and the band between ``low`` and ``high``.
    theory : mapping label -> (x, y), optional
        Reference curves (e.g. a predicted rate), drawn as black/grey lines.
    hlines : mapping label -> float, optional
        Labelled horizontal reference lines.
    logx, logy : bool
        Logarithmic axes (the values must then be positive).
    colors : mapping label -> colour, optional
        Colours of the ``series`` (default ``C0, C1, ...`` in order).
    """
    ax = _axes(ax)
    if not series:
        raise ValueError("band_plot needs at least one series")
    for i, (name, quad) in enumerate(series.items()):
        if not isinstance(quad, (tuple, list)) or len(quad) != 4:
            raise ValueError(f"series {name!r} must be an (x, center, low, high) tuple")
        x, c, lo, hi = _check_curve(f"series {name!r}", quad, sizes=(4,))
        color = (colors or {}).get(name, f"C{i}")
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        ax.plot(x, c, "o-", ms=4, lw=1.4, color=color, label=str(name))
    for i, (name, pair) in enumerate((theory or {}).items()):
        x, y = _check_curve(f"theory {name!r}", pair)
        ax.plot(x, y, color="k" if i == 0 else COLORS["reference"], ls=["--", ":", "-."][i % 3],
                lw=1.5, label=str(name))
    _ref_lines(ax, hlines)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(ax, xlabel, ylabel, title, legend_loc)


def margin_scatter(margins, changes, ax=None, *, tau=None, flipped=None, xlabel: str = "|margin|",
                   ylabel: str = "logit change", title: str | None = None,
                   legend_loc: str | None = "upper left", max_points: int = 4000, seed: int = 0):
    """Per-sample logit change against the absolute margin (log-log), with the line
    ``change = |margin| / 2`` below which a prediction cannot change.

    Parameters
    ----------
    margins, changes : 1-D arrays
        One value per sample (the change must be positive to show on the log axis; zeros
        and zero margins are left out, and their number is said in the legend).
    tau : 1-D array, optional
        The bound per sample: its median is drawn as a horizontal line.
    flipped : 1-D bool array, optional
        Samples whose prediction changed, drawn in a second colour.
    max_points : int
        At most this many points are drawn (a seeded random subset), for a light figure.
    """
    ax = _axes(ax)
    m = np.abs(np.asarray(margins, dtype=np.float64))
    c = np.asarray(changes, dtype=np.float64)
    if m.ndim != 1 or m.shape != c.shape or m.size == 0:
        raise ValueError("margins and changes must be 1-D arrays of the same non-zero length")
    f = np.zeros(m.shape, bool) if flipped is None else np.asarray(flipped, dtype=bool)
    if f.shape != m.shape:
        raise ValueError("flipped must have the shape of margins")
    ok = (m > 0) & (c > 0) & np.isfinite(m) & np.isfinite(c)
    idx = np.flatnonzero(ok)
    if idx.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    kept = ~f[idx]
    ax.scatter(m[idx][kept], c[idx][kept], s=6, alpha=0.35, color=COLORS["accent"], lw=0,
               label=f"prediction unchanged ({int((~f & ok).sum())})")
    if f[idx].any():
        ax.scatter(m[idx][~kept], c[idx][~kept], s=14, alpha=0.9, color=COLORS["edge"], lw=0,
                   label=f"prediction changed ({int((f & ok).sum())})")
    if idx.size:
        lo = min(m[idx].min(), 2 * c[idx].min())
        hi = max(m[idx].max(), 2 * c[idx].max())
        xs = np.array([lo, hi])
        ax.plot(xs, xs / 2, color="k", ls="--", lw=1.3, label="change = |margin| / 2")
    if tau is not None:
        t = np.asarray(tau, dtype=np.float64)
        if t.shape != m.shape:
            raise ValueError("tau must have the shape of margins")
        ax.axhline(float(np.nanmedian(t)), color=COLORS["reference"], ls=":", lw=1.5,
                   label=f"median bound ({float(np.nanmedian(t)):.3g})")
    left_out = int((~ok).sum())
    if left_out:
        ax.plot([], [], " ", label=f"{left_out} samples with zero margin or change not shown")
    ax.set_xscale("log")
    ax.set_yscale("log")
    return _finish(ax, xlabel, ylabel, title, legend_loc)


def pareto_plot(points: pd.DataFrame, ax=None, *, sweep: pd.DataFrame | None = None,
                title: str | None = None, xlabel: str = "parameters kept",
                ylabel: str = LABELS["test_acc"], legend_loc: str | None = "lower right"):
    """Accuracy against parameters kept (log x) with error bars: one point per row of
    ``points`` (columns ``method``, ``kind`` -- ``"selector"``, ``"baseline"`` or
    ``"unpruned"`` --, ``n_params_mean``, ``n_params_sd``, ``test_acc_mean``, ``test_acc_sd``
    and a bool ``pareto``), selectors coloured and labelled, baselines grey (one marker per
    baseline method), the unpruned net a black star, the Pareto front of the selectors a dashed
    step line; ``sweep`` (``n_params_mean``, ``test_acc_mean``, ``test_acc_sd``) is drawn as a
    curve with a ± 1 sd band."""
    need = ["method", "kind", "n_params_mean", "n_params_sd", "test_acc_mean", "test_acc_sd",
            "pareto"]
    missing = [c for c in need if c not in points]
    if missing:
        raise ValueError(f"points lacks the columns {missing}; available: {sorted(points.columns)}")
    ax = _axes(ax)
    if sweep is not None:
        s = sweep.sort_values("n_params_mean")
        ax.plot(s.n_params_mean, s.test_acc_mean, color=COLORS["reference"], lw=1.3,
                label="uniform keep fraction (sweep)")
        ax.fill_between(s.n_params_mean, s.test_acc_mean - s.test_acc_sd.fillna(0),
                        s.test_acc_mean + s.test_acc_sd.fillna(0), color=COLORS["reference"],
                        alpha=0.15, lw=0)
    markers = iter("sxdv^<>")
    for method, part in points[points.kind == "baseline"].groupby("method", sort=False):
        ax.errorbar(part.n_params_mean, part.test_acc_mean, xerr=part.n_params_sd,
                    yerr=part.test_acc_sd, fmt=next(markers, "o"), ms=5, capsize=2,
                    color="0.55", mfc="none", label=f"{method} (same budget)")
    sel = points[points.kind == "selector"]
    for i, row in enumerate(sel.itertuples()):
        ax.errorbar(row.n_params_mean, row.test_acc_mean, xerr=row.n_params_sd,
                    yerr=row.test_acc_sd, fmt="o", ms=6, capsize=3, color=f"C{i % 10}",
                    label=str(row.method))
    front = sel[sel.pareto.astype(bool)].sort_values("n_params_mean")
    if len(front) > 1:
        ax.step(front.n_params_mean, front.test_acc_mean, where="post", color="k", ls="--",
                lw=1, label="Pareto front of the selectors")
    for row in points[points.kind == "unpruned"].itertuples():
        ax.errorbar(row.n_params_mean, row.test_acc_mean, yerr=row.test_acc_sd, fmt="*", ms=11,
                    color="k", label="unpruned")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels of a short log axis overlap
    return _finish(ax, xlabel, ylabel, title, legend_loc)


def agreement_scatter(frame: pd.DataFrame, x: str, y: str, ax=None, *, hue: str | None = None,
                      log: bool = False, xlabel: str | None = None, ylabel: str | None = None,
                      title: str | None = None, legend_loc: str | None = "best"):
    """``y`` against ``x`` (columns of ``frame``), one colour per ``hue`` value, with the line
    ``y = x``: points on it agree.  ``log`` puts both axes on a log scale (non-positive values
    are then left out)."""
    need = [c for c in (x, y, hue) if c is not None and c not in frame]
    if need:
        raise ValueError(f"columns {need} not found; available: {sorted(frame.columns)}")
    ax = _axes(ax)
    data = frame[(frame[x] > 0) & (frame[y] > 0)] if log else frame
    groups = data.groupby(hue, sort=False) if hue else [(None, data)]
    for i, (g, part) in enumerate(groups):
        ax.scatter(part[x], part[y], s=22, alpha=0.8, color=f"C{i % 10}",
                   label=None if g is None else str(g))
    vals = pd.concat([data[x], data[y]]).astype(float)
    if len(vals):
        lo, hi = float(vals.min()), float(vals.max())
        ax.plot([lo, hi], [lo, hi], color="k", ls="--", lw=1, label="y = x")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    return _finish(ax, xlabel or LABELS.get(x, x), ylabel or LABELS.get(y, y), title, legend_loc)
