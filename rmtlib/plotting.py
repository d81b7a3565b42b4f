"""Every figure of the companion (the only rmtlib module that imports matplotlib/seaborn).

Conventions: eigenvalues are ``lambda_i = s_i**2 / N`` of an ``m x n`` weight matrix with
``N = max(m, n)``; accuracies are in percent (as in :class:`rmtlib.train.History` and the
papers).  Each function draws on ``ax`` (a new figure when ``ax`` is None) and returns the
axes, so notebooks can compose panels.  Call :func:`use_style` once per notebook for the
book's look; the functions themselves never change global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = [
    "COLORS",
    "LABELS",
    "accuracy_vs_rank",
    "esd_histogram",
    "training_curves",
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


def _frame(obj) -> pd.DataFrame:
    frame = getattr(obj, "frame", obj)  # a History or a DataFrame
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a History or a DataFrame, got {type(obj).__name__}")
    return frame


def _long(data, x: str) -> pd.DataFrame:
    """Normalise histories to one long frame with ``variant`` and ``seed`` columns."""
    if isinstance(data, pd.DataFrame) or hasattr(data, "frame"):
        df = _frame(data).copy()
        if "variant" not in df:
            df["variant"] = ""
        if "seed" not in df:
            df["seed"] = 0
        return df
    if isinstance(data, Mapping):
        parts = []
        for variant, runs in data.items():
            runs = runs if isinstance(runs, Sequence) and not isinstance(runs, str) else [runs]
            for i, run in enumerate(runs):
                df = _frame(run).copy()
                df["variant"] = str(variant)
                if "seed" not in df:
                    df["seed"] = i
                parts.append(df)
        if not parts:
            raise ValueError("no histories given")
        return pd.concat(parts, ignore_index=True)
    if isinstance(data, Sequence):
        return _long({"": list(data)}, x)
    raise ValueError(
        "training_curves expects a History, a DataFrame, a list of them, or a mapping "
        f"variant -> list of them; got {type(data).__name__}"
    )


def training_curves(
    data,
    metric: str = "test_acc",
    ax=None,
    *,
    x: str = "epoch",
    band: str = "sd",
    title: str | None = None,
    ylabel: str | None = None,
):
    """Mean curve of ``metric`` against ``x`` per variant, with a ±1 sd (or sem) band.

    Parameters
    ----------
    data : History, DataFrame, list of them, or mapping variant -> list of them
        A long DataFrame may carry ``variant`` and ``seed`` columns; one run per seed.
    band : {"sd", "sem", "none"}
        Band half-width: sample standard deviation over seeds (ddof = 1), its standard
        error, or no band.  Drawn only where at least two seeds contribute.
    """
    if band not in ("sd", "sem", "none"):
        raise ValueError(f"band must be 'sd', 'sem' or 'none', got {band!r}")
    df = _long(data, x)
    for col in (x, metric):
        if col not in df:
            raise ValueError(f"column {col!r} not found; available: {sorted(df.columns)}")
    df = df[[x, metric, "variant", "seed"]].dropna(subset=[metric])
    ax = _axes(ax)
    for i, (variant, grp) in enumerate(df.groupby("variant", sort=False)):
        stats = grp.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
        n_runs = grp["seed"].nunique()
        color = f"C{i}"
        lab = (variant or metric) + (f" (n = {n_runs})" if n_runs > 1 else "")
        ax.plot(stats[x], stats["mean"], "-o", ms=3, color=color, label=lab)
        if band != "none" and (stats["count"] > 1).any():
            half = stats["std"] if band == "sd" else stats["std"] / np.sqrt(stats["count"])
            ok = stats["count"] > 1
            ax.fill_between(stats[x][ok], (stats["mean"] - half)[ok], (stats["mean"] + half)[ok],
                            color=color, alpha=0.2, lw=0)
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(ylabel or LABELS.get(metric, metric))
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="best")
    return ax
