r"""Spectral analysis of the layers of any PyTorch model.

Layers are read as matrices as described in :mod:`rmtlib.layers` (``(out, in)`` for a Linear
layer, ``(C_out, C_in*kh*kw)`` for a convolution, or, with ``conv="taps"``, the per-tap slices
of a convolution, whose eigenvalues are pooled into one spectrum).

Conventions: ``W`` is ``m x n``, ``N = max(m, n)``, ``p = min(m, n)``,
``gamma = p / N``; eigenvalues ``lambda_i = s_i**2 / N``; singular-value units for
thresholds (``s_+ = sqrt(N * lambda_+)``).

**One decomposition per layer.**  :func:`decompose` forms the smaller Gram matrix
(``W^T W`` or ``W W^T``) and calls one symmetric eigensolver, through
:func:`rmtlib.linalg.gram_eigh` (its precision, thread and device rules).  This gives the eigenvalues for
BEMA and the singular vectors of the smaller side; the other side's vectors are recovered
only for the components kept (``u_i = W v_i / s_i``), so truncation and factorization need
no second decomposition.  It is about 3x faster than a full SVD on CPU; the price is that
singular values much smaller than ``sqrt(eps) * s_max`` lose relative accuracy, which does
not matter for the bulk statistics and the leading components used here.

Which parts of a model are analysed is :func:`rmtlib.layers.list_layers`'s rule: ``nn.Linear``
(and subclasses keeping its ``forward``), ``groups=1`` convolutions, the projections of
``nn.MultiheadAttention`` and split layers (read as the product :math:`W_2 W_1`); every other
weight matrix (grouped, depthwise or transposed convolutions, embeddings, hook-reparametrised or
tied weights, ...) is listed by :func:`analyze` with the reason it was skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._progress import bar
from ._threads import single_threaded
from .layers import (
    SPLIT_VIEWS,
    Layer,
    check_finite_weights,
    check_layer_filter,
    is_selected,
    layer_matrix,
    list_layers,
    tap_matrices,
)
from .linalg import gram_eigenvalues, gram_eigh
from .validation import ArgumentTypeError, check_bool, check_choice, check_module, describe

__all__ = [
    "ANALYZE_COLUMNS",
    "Decomposition",
    "analyze",
    "check_gof_rule",
    "decompose",
    "describe_skipped",
    "no_analysable_layer",
    "layer_matrix",
    "list_layers",
    "tap_matrices",
]


@dataclass(frozen=True, eq=False)
class Decomposition:
    """Singular values and the smaller side's singular vectors of an ``m x n`` matrix.

    ``s`` is descending (length ``p``, in the compute dtype of :func:`rmtlib.linalg.gram_eigh`);
    if ``right`` the columns of ``vecs`` are the right singular vectors ``v_i`` (``n <= m``),
    else the left ones ``u_i`` (``m < n``).  ``W`` is the matrix as given (not copied); products
    with it are computed in float32 for float32/16/bf16 matrices and in float64 for float64 ones,
    on the device of the solve.
    """

    W: torch.Tensor
    s: torch.Tensor
    vecs: torch.Tensor
    right: bool

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape)

    @property
    def N(self) -> int:
        return max(self.shape)

    @property
    def p(self) -> int:
        return min(self.shape)

    def eigenvalues(self) -> np.ndarray:
        """Ascending eigenvalues ``s**2 / N`` (float64)."""
        s = self.s.double().cpu().numpy()[::-1]
        return np.ascontiguousarray(s * s / self.N)

    def _work(self) -> tuple[torch.Tensor, torch.dtype]:
        dtype = torch.float64 if self.W.dtype == torch.float64 else torch.float32
        return self.W.to(device=self.vecs.device, dtype=dtype), dtype

    def _index(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.vecs.device)
        if idx.dim() != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.p)):
            raise ValueError(f"component indices must be a 1-D list of integers in [0, {self.p}), "
                             f"got {describe(idx.tolist())}")
        return idx

    def _inv(self, s: torch.Tensor) -> torch.Tensor:
        """``1 / s``, 0 for values at round-off level (their vectors ``W v / s`` are noise)."""
        tiny = torch.finfo(s.dtype).eps * float(self.s[0]) if self.p else 0.0
        return torch.where(s > tiny, 1.0 / s.clamp_min(tiny), torch.zeros_like(s))

    def factors(self, idx, values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(A, B)`` with ``B @ A = sum_{i in idx} s_i u_i v_i^T``, balanced as in the
        papers: ``A = S^{1/2} V^T`` (``k x n``), ``B = U S^{1/2}`` (``m x k``).  ``values``
        replaces the ``s_i`` of the product (e.g. shrunk ones), keeping the same vectors."""
        idx = self._index(idx)
        W, dtype = self._work()
        s = self.s[idx]
        new = s if values is None else torch.as_tensor(values, dtype=s.dtype, device=s.device)
        root = new.clamp_min(0).sqrt().to(dtype)
        vk = self.vecs[:, idx].to(dtype)
        scale = root * self._inv(s).to(dtype)  # u_i sqrt(new_i) = W v_i sqrt(new_i) / s_i
        if self.right:
            return root[:, None] * vk.T, (W @ vk) * scale
        return (vk.T @ W) * scale[:, None], vk * root

    def truncated(self, idx) -> torch.Tensor:
        """``sum_{i in idx} s_i u_i v_i^T`` as an ``m x n`` matrix (a projection of ``W``)."""
        idx = self._index(idx)
        W, dtype = self._work()
        vk = self.vecs[:, idx].to(dtype)
        return (W @ vk) @ vk.T if self.right else vk @ (vk.T @ W)

    def with_values(self, idx, values) -> torch.Tensor:
        """``W`` with the singular values in ``idx`` replaced by ``values``."""
        W, _ = self._work()
        A, B = self.factors(idx, values)
        return W - self.truncated(idx) + B @ A

    def scaled(self, idx, factor: float) -> torch.Tensor:
        """``W`` with the singular values in ``idx`` multiplied by ``factor``."""
        W, _ = self._work()
        return W - (1.0 - float(factor)) * self.truncated(idx)


def decompose(matrix: torch.Tensor) -> Decomposition:
    """One ``eigh`` of the smaller Gram matrix of ``matrix`` (see the module docstring), in the
    precision of :func:`rmtlib.linalg.compute_dtype`, on the matrix's device.  Raises
    ``ValueError`` for non-2-D, too small or non-finite input."""
    if not isinstance(matrix, torch.Tensor):
        raise ArgumentTypeError(f"decompose needs a 2-D torch tensor, got {describe(matrix)}")
    if matrix.dim() != 2 or min(matrix.shape) < 1:
        raise ValueError(f"decompose needs a 2-D torch tensor with at least one row and column, "
                         f"got shape {tuple(matrix.shape)}")
    if not matrix.is_floating_point():
        raise ValueError(f"decompose needs a real floating-point tensor, got {matrix.dtype}")
    check_finite_weights(matrix, "matrix")
    evals, evecs, right, _ = gram_eigh(matrix)
    s = evals.flip(0).clamp_min(0).sqrt()
    return Decomposition(matrix.detach(), s, evecs.flip(1), right)


def _pooled_tap_eigenvalues(module: nn.Module) -> tuple[np.ndarray, tuple[int, int]]:
    """Pooled eigenvalues of the per-tap slices and the pseudo-shape used to fit them."""
    taps = tap_matrices(module)
    t, m, n = taps.shape
    lam, _ = gram_eigenvalues(taps)
    return np.sort(lam.ravel()), (t * m, t * n)


def check_gof_rule(gof, name: str = "gof", *, allow_none: bool = False):
    """A goodness-of-fit rule for :func:`rmtlib.gof.accept`: a cutoff in (0, 1], ``"calibrated"``
    (or None when ``allow_none``)."""
    if gof is None and allow_none:
        return None
    if isinstance(gof, str):
        return check_choice(gof, name, ("calibrated",))
    if isinstance(gof, bool) or not isinstance(gof, (int, float, np.floating)):
        allowed = "a cutoff in (0, 1], 'calibrated'" + (" or None" if allow_none else "")
        raise ArgumentTypeError(f"{name} must be {allowed}, got {describe(gof)}")
    if not (math.isfinite(gof) and 0 < gof <= 1):
        raise ValueError(f"{name} must be a cutoff in (0, 1] or 'calibrated', got {gof!r}")
    return float(gof)


def _check_layer_list(layers) -> None:
    if not isinstance(layers, (list, tuple)) or not all(isinstance(la, Layer) for la in layers):
        raise ArgumentTypeError(f"layers must be a list of rmtlib.layers.Layer, got {describe(layers)}")


def describe_skipped(layers: list[Layer], limit: int = 6) -> str:
    """``"name (reason); ..."`` for the first ``limit`` layers, for error messages."""
    _check_layer_list(layers)
    from .validation import check_int

    limit = check_int(limit, "limit", minimum=1)
    parts = [f"{la.name or '<model>'} ({la.reason})" for la in layers[:limit]]
    if len(layers) > limit:
        parts.append(f"... and {len(layers) - limit} more")
    return "; ".join(parts)


def no_analysable_layer(layers: list[Layer], what: str = "model") -> ValueError:
    """The error for a model (or a selection) without any analysable layer."""
    _check_layer_list(layers)
    if not layers:
        return ValueError(f"the {what} has no weight matrix at all (no nn.Linear, nn.Conv1d/2d/3d "
                          "or nn.MultiheadAttention); nothing to analyse")
    return ValueError(f"the {what} has no analysable layer (nn.Linear, nn.Conv1d/2d/3d, "
                      f"nn.MultiheadAttention projections); skipped: {describe_skipped(layers)}")


def _check_selectors(method, selectors, selector_opts):
    from .rank import available_methods

    valid = list(available_methods())
    if not isinstance(method, str) or method not in valid:
        raise ValueError(f"unknown rank selector {method!r} for method; valid: {valid}")
    if isinstance(selectors, str):
        raise ArgumentTypeError(f"selectors must be a list of selector names, got the string "
                                f"{selectors!r}; wrap it in a list")
    if not isinstance(selectors, Iterable):
        raise ArgumentTypeError(f"selectors must be a list of selector names, got {describe(selectors)}")
    selectors = list(selectors)
    bad = [s for s in [method, *selectors] if not isinstance(s, str) or s not in valid]
    if bad:
        raise ValueError(f"unknown rank selector(s) {bad}; valid: {valid}")
    if selector_opts is None:
        selector_opts = {}
    if not isinstance(selector_opts, dict):
        raise ArgumentTypeError(f"selector_opts must be a dict {{selector: {{option: value}}}}, "
                                f"got {describe(selector_opts)}")
    for k, v in selector_opts.items():
        if k not in [method, *selectors]:
            raise ValueError(f"selector_opts has options for {k!r}, which is neither method nor "
                             f"among selectors {selectors}")
        if not isinstance(v, dict):
            raise ArgumentTypeError(f"selector_opts[{k!r}] must be a dict of options, got {describe(v)}")
    return [s for s in dict.fromkeys(selectors) if s != method], dict(selector_opts)


#: Columns of :func:`analyze` (``rank_<selector>`` columns are appended when asked).
ANALYZE_COLUMNS = [
    "name", "type", "shape", "m", "n", "params", "N", "p", "gamma", "sigma2", "lambda_plus",
    "s_plus", "spikes", "gof", "accepted", "rank", "status", "reason", "seconds",
]


def analyze(
    model: nn.Module,
    method: str = "bema",
    *,
    selectors: Iterable[str] = (),
    selector_opts: dict | None = None,
    conv: str = "flat",
    alpha: float = 0.2,
    beta: float = 0.1,
    gof: float | str = 0.1,
    paper_exact: bool = False,
    layers: Iterable[str] | Callable[[str, nn.Module], bool] | None = None,
    split_view: str = "product",
    progress: bool = False,
    fits: dict | None = None,
) -> pd.DataFrame:
    r"""One row per weight matrix: shape, BEMA fit, goodness of fit and predicted rank.

    Parameters
    ----------
    model : nn.Module
        Any module; every weight matrix is listed (:func:`rmtlib.layers.list_layers`), the
        analysable ones with their fit, the others with the reason they are skipped.  The
        spectra are computed where the weights live (a CUDA model on the GPU), in the precision
        rule of :mod:`rmtlib.linalg` (float16/bfloat16 weights in float64 or float32).
    method : str
        Rank selector for the ``rank`` column: ``"bema"`` (the number of spikes above
        :math:`\hat\lambda_+`, the authors' "predicted rank") or any method of
        :func:`rmtlib.rank.select_rank`.
    selectors : iterable of str
        Further selectors, reported as ``rank_<name>`` columns.
    selector_opts : dict, optional
        Keyword options per selector, ``{"gavish_donoho": {...}}``.
    conv : {"flat", "taps"}
        Convolution view: the ``(C_out, C_in*prod(k))`` matrix, or the pooled per-tap
        spectrum (then the fit uses the pseudo-shape ``(taps*C_out, taps*C_in)``, which
        keeps :math:`\gamma` and the eigenvalue count right but applies the Tracy--Widom
        margin of a ``taps``-times larger matrix; ``rank`` is NaN since no single matrix
        has that spectrum).
    alpha, beta, paper_exact
        BEMA options (:func:`rmtlib.bema.fit_bema`).
    gof : float or "calibrated"
        Acceptance rule for :func:`rmtlib.gof.accept`.
    layers : names or predicate ``(name, module) -> bool``, optional
        Restrict the rows (a name also selects the layers below it).
    split_view : {"product", "factors"}
        How layers already split by :mod:`rmtlib.prune` are read: as the product
        :math:`W_2 W_1` (default) or as two factors.
    progress : bool
        A progress bar over the layers (tqdm, on stderr).
    fits : dict, optional
        If given, the :class:`rmtlib.bema.BemaFit` of every fitted layer is stored in it under
        the layer's name (e.g. for :func:`rmtlib.plotting.esd_grid`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ANALYZE_COLUMNS` (+ ``rank_<selector>``): ``shape`` is the matrix
        shape ``(m, n)``; ``params`` counts the layer's weight and bias; ``sigma2``,
        ``lambda_plus`` in eigenvalue units, ``s_plus`` in singular-value units;
        ``status`` is ``"ok"`` or ``"skipped"`` with a ``reason`` (unsupported type, matrix
        too small, non-finite weights, failed fit).

    Raises
    ------
    ValueError
        Bad arguments, or a model (or selection) without any analysable layer.
    """
    from .bema import check_alpha, check_beta

    check_module(model)
    check_choice(conv, "conv", ("flat", "taps"))
    selectors, selector_opts = _check_selectors(method, selectors, selector_opts)
    alpha, beta = check_alpha(alpha), check_beta(beta)
    gof = check_gof_rule(gof)
    paper_exact = check_bool(paper_exact, "paper_exact")
    check_choice(split_view, "split_view", SPLIT_VIEWS)
    progress = check_bool(progress, "progress")
    if fits is not None and not isinstance(fits, dict):
        raise ArgumentTypeError(f"fits must be None or a dict to fill, got {describe(fits)}")
    check_layer_filter(model, layers)
    views = [la for la in list_layers(model, split_view=split_view)
             if is_selected(layers, la.name, la.module)]
    if not any(la.ok for la in views):
        raise no_analysable_layer(views, "model" if layers is None else "selection of layers")
    rows = []
    for la in bar(views, progress, "analysing"):
        m, n = la.shape
        row = {"name": la.name, "type": la.type, "shape": (m, n), "m": m, "n": n,
               "params": la.params, "N": max(m, n), "p": min(m, n),
               "gamma": min(m, n) / max(m, n) if m and n else np.nan,
               "status": "skipped", "reason": la.reason}
        if row["reason"] is not None:
            rows.append(row)
            continue
        t0 = time.perf_counter()
        with single_threaded(min(m, n)):
            _analyze_layer(la, row, conv, method, selectors, selector_opts, alpha, beta, gof,
                           paper_exact, fits)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    cols = ANALYZE_COLUMNS + [f"rank_{s}" for s in selectors]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("spikes", "rank", *[f"rank_{s}" for s in selectors]):
        df[c] = df[c].astype("Int64")
    df["accepted"] = df["accepted"].astype("boolean")
    return df


def _analyze_layer(la: Layer, row: dict, conv, method, selectors, selector_opts, alpha, beta,
                   gof, paper_exact, fits) -> None:
    """Fill ``row`` with the analysis of one analysable layer."""
    from .bema import fit_bema
    from .gof import accept
    from .rank import select_rank

    m, n = la.shape
    mat = la.matrix()
    if not bool(torch.isfinite(mat).all()):
        row["reason"] = "non-finite (NaN/Inf) weights"
        return
    try:
        w = la.tensor
        if conv == "taps" and la.kind == "conv" and w[0, 0].numel() > 1:
            eigs, fshape = _pooled_tap_eigenvalues(la.module)
            ranks_ok, n_edge = False, max(w.shape[0], w.shape[1])
        else:
            eigs, _ = gram_eigenvalues(mat)
            fshape, ranks_ok, n_edge = (m, n), True, max(m, n)
        fit = fit_bema(eigs, shape=fshape, alpha=alpha, beta=beta, paper_exact=paper_exact)
        verdict = accept(fit, gof)
        row.update(sigma2=fit.sigma2, lambda_plus=fit.lambda_plus,
                   s_plus=math.sqrt(n_edge * fit.lambda_plus), spikes=fit.n_spikes,
                   gof=fit.gof, accepted=bool(verdict), status="ok", reason=None)
        if fits is not None:
            fits[la.name] = fit
    except ValueError as exc:  # e.g. an all-zero bulk: report, do not crash
        row.update(status="skipped", reason=f"BEMA fit failed: {exc}")
    else:
        notes = []
        for sel in [method, *selectors]:
            col = "rank" if sel == method else f"rank_{sel}"
            if not ranks_ok:
                row[col] = np.nan
            elif sel == "bema":
                row[col] = fit.n_spikes
            else:
                try:
                    row[col] = select_rank(eigs, sel, shape=(m, n),
                                           **selector_opts.get(sel, {})).rank
                except ValueError as exc:  # one selector failing leaves the row valid
                    row[col] = np.nan
                    notes.append(f"{sel} failed: {exc}")
        row["reason"] = "; ".join(notes) or None
