r"""Spectral analysis of the layers of any PyTorch model.

**The matrix view of a layer.**  ``nn.Linear.weight`` is read as the ``(out, in)`` matrix;
an ``nn.Conv2d`` kernel ``(C_out, C_in, kh, kw)`` as the ``(C_out, C_in*kh*kw)`` matrix
(the operator acting on unfolded patches, which is what the factorization of
:mod:`rmtlib.prune` splits).  Optionally (``conv="taps"``), a convolution is read the
WeightWatcher way: its ``kh*kw`` per-tap slices ``W[:, :, i, j]``, each ``C_out x C_in``,
whose eigenvalues are pooled into one spectrum.

Conventions: ``W`` is ``m x n``, ``N = max(m, n)``, ``p = min(m, n)``,
``gamma = p / N``; eigenvalues ``lambda_i = s_i**2 / N``; singular-value units for
thresholds (``s_+ = sqrt(N * lambda_+)``).

**One decomposition per layer.**  :func:`decompose` forms the smaller Gram matrix
(``W^T W`` or ``W W^T``) and calls one symmetric eigensolver (``torch.linalg.eigh``), in
float32 for float32 weights (float64 for float64 weights).  This gives the eigenvalues for
BEMA and the singular vectors of the smaller side; the other side's vectors are recovered
only for the components kept (``u_i = W v_i / s_i``), so truncation and factorization need
no second decomposition.  It is about 3x faster than a full SVD on CPU; the price is that
singular values much smaller than ``sqrt(eps) * s_max`` lose relative accuracy, which does
not matter for the bulk statistics and the leading components used here.

Only exact ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``) modules are analysable; every
other module holding a weight of two or more dimensions (grouped or transposed
convolutions, ``Conv1d``, embeddings, subclasses with their own ``forward``) is listed by
:func:`analyze` with the reason it was skipped.
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
from torch.nn.utils import parametrize

from ._threads import single_threaded

__all__ = [
    "ANALYZE_COLUMNS",
    "Decomposition",
    "analyze",
    "decompose",
    "layer_matrix",
    "list_layers",
    "main_weight",
    "tap_matrices",
    "unsupported_reason",
]


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be analysed or pruned, or None if it can (exact ``nn.Linear``
    or ``nn.Conv2d`` with ``groups == 1`` whose matrix is at least 2 x 2)."""
    kind = type(module).__name__
    if parametrize.is_parametrized(module):
        return (f"{kind} is parametrized (e.g. weight_norm): its weight is computed, so it "
                "cannot be edited in place; remove the parametrization first")
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return (f"transposed convolution ({kind}) is not supported: its kernel maps outputs "
                "to inputs and has no two-layer factorization here")
    if type(module) is nn.Conv2d:
        if module.groups != 1:
            return (f"grouped convolution (groups={module.groups}) is not supported: the kernel "
                    "is block-diagonal, not one (C_out, C_in*kh*kw) matrix")
    elif type(module) is not nn.Linear:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return (f"{kind} subclasses nn.{type(module).__mro__[1].__name__} and may define its "
                    "own forward; only exact nn.Linear / nn.Conv2d are analysed")
        return f"{kind} layers are not supported (only nn.Linear and nn.Conv2d)"
    m, n = module.weight.shape[0], module.weight[0].numel()
    if m < 2 or n < 2:
        return f"its matrix is {m}x{n}; a spectrum needs at least 2 rows and 2 columns"
    return None


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The weight of a Linear or Conv2d layer as a matrix (detached, shares storage):
    ``(out, in)`` or ``(C_out, C_in*kh*kw)``."""
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        raise ValueError(f"layer_matrix needs an nn.Linear or nn.Conv2d, got {type(module).__name__}")
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1)


def tap_matrices(module: nn.Conv2d) -> torch.Tensor:
    """WeightWatcher-style per-tap slices of a Conv2d kernel: a ``(kh*kw, C_out, C_in)``
    stack of the matrices ``W[:, :, i, j]``."""
    if not isinstance(module, nn.Conv2d):
        raise ValueError(f"tap_matrices needs an nn.Conv2d, got {type(module).__name__}")
    w = module.weight.detach()
    return w.permute(2, 3, 0, 1).reshape(-1, w.shape[0], w.shape[1])


def main_weight(module: nn.Module) -> torch.Tensor | None:
    """The tensor that makes ``module`` a matrix layer: its ``weight`` if that has two or
    more dimensions (a parameter or, under a parametrization, a computed tensor), else its
    first own parameter with two or more dimensions (e.g. an LSTM's ``weight_ih_l0``)."""
    w = getattr(module, "weight", None)
    if isinstance(w, torch.Tensor) and w.dim() >= 2:
        return w
    for p in module.parameters(recurse=False):
        if p.dim() >= 2:
            return p
    return None


def list_layers(model: nn.Module) -> list[tuple[str, nn.Module, str | None]]:
    """``(qualified name, module, reason)`` for every module owning a weight of two or more
    dimensions (:func:`main_weight`), in ``named_modules`` order; ``reason`` is None for
    analysable layers and says why the others are skipped."""
    return [(name, mod, unsupported_reason(mod)) for name, mod in model.named_modules()
            if main_weight(mod) is not None
            and not isinstance(mod, parametrize.ParametrizationList)]  # listed via its owner


def _check_finite(w: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(w).all()):
        nbad = int((~torch.isfinite(w)).sum())
        raise ValueError(
            f"layer {name!r} has {nbad} non-finite (NaN/Inf) weights; the training diverged "
            "or the weights were corrupted -- fix that before analysing or pruning"
        )


@dataclass(frozen=True, eq=False)
class Decomposition:
    """Singular values and the smaller side's singular vectors of an ``m x n`` matrix.

    ``s`` is descending (length ``p``); if ``right`` the columns of ``vecs`` are the right
    singular vectors ``v_i`` (``n <= m``), else the left ones ``u_i`` (``m < n``).
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

    def _inv_sqrt(self, idx: torch.Tensor) -> torch.Tensor:
        s = self.s[idx]
        tiny = torch.finfo(s.dtype).eps * float(self.s[0]) if self.p else 0.0
        return torch.where(s > tiny, s.clamp_min(tiny).rsqrt(), torch.zeros_like(s))

    def factors(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(A, B)`` with ``B @ A = sum_{i in idx} s_i u_i v_i^T``, balanced as in the
        papers: ``A = S^{1/2} V^T`` (``k x n``), ``B = U S^{1/2}`` (``m x k``)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        root = self.s[idx].sqrt()
        vk = self.vecs[:, idx]
        if self.right:  # u_i s_i^{1/2} = W v_i s_i^{-1/2}
            return root[:, None] * vk.T, (self.W @ vk) * self._inv_sqrt(idx)
        return (vk.T @ self.W) * self._inv_sqrt(idx)[:, None], vk * root

    def truncated(self, idx) -> torch.Tensor:
        """``sum_{i in idx} s_i u_i v_i^T`` as an ``m x n`` matrix (a projection of ``W``)."""
        vk = self.vecs[:, torch.as_tensor(idx, dtype=torch.long)]
        return (self.W @ vk) @ vk.T if self.right else vk @ (vk.T @ self.W)

    def scaled(self, idx, factor: float) -> torch.Tensor:
        """``W`` with the singular values in ``idx`` multiplied by ``factor``."""
        return self.W - (1.0 - factor) * self.truncated(idx)


def decompose(matrix: torch.Tensor, *, dtype: torch.dtype | None = None) -> Decomposition:
    """One ``eigh`` of the smaller Gram matrix of ``matrix`` (see the module docstring).

    ``dtype`` defaults to float64 for float64 input, else float32.  Raises ``ValueError``
    for non-2-D or non-finite input.
    """
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2:
        raise ValueError("decompose needs a 2-D torch tensor")
    if dtype is None:
        dtype = torch.float64 if matrix.dtype == torch.float64 else torch.float32
    W = matrix.detach().to(dtype)
    _check_finite(W, "matrix")
    m, n = W.shape
    right = n <= m
    with single_threaded(min(m, n)):
        G = W.T @ W if right else W @ W.T
        evals, evecs = torch.linalg.eigh(G)
    s = evals.flip(0).clamp_min(0).sqrt()
    return Decomposition(W, s, evecs.flip(1), right)


def _pooled_tap_eigenvalues(module: nn.Conv2d) -> tuple[np.ndarray, tuple[int, int]]:
    """Pooled eigenvalues of the per-tap slices and the pseudo-shape used to fit them."""
    taps = tap_matrices(module)
    taps = taps.to(torch.float64 if taps.dtype == torch.float64 else torch.float32)
    t, m, n = taps.shape
    with single_threaded(min(m, n)):
        G = taps.transpose(1, 2) @ taps if n <= m else taps @ taps.transpose(1, 2)
        lam = torch.linalg.eigvalsh(G).clamp_min(0).double().cpu().numpy().ravel() / max(m, n)
    return np.sort(lam), (t * m, t * n)


#: Columns of :func:`analyze` (``rank_<selector>`` columns are appended when asked).
ANALYZE_COLUMNS = [
    "name", "type", "shape", "m", "n", "params", "N", "p", "gamma", "sigma2", "lambda_plus",
    "s_plus", "spikes", "gof", "accepted", "rank", "status", "reason", "seconds",
]


def _selected(names_or_pred, name: str, module: nn.Module) -> bool:
    """A listed name selects that module and everything below it, so a layer stays
    selected after :mod:`rmtlib.prune` splits it (``"fc"`` -> ``"fc.0"``, ``"fc.1"``)."""
    if names_or_pred is None:
        return True
    if callable(names_or_pred):
        return bool(names_or_pred(name, module))
    return any(name == n or name.startswith(n + ".") for n in names_or_pred)


def _check_layer_filter(model: nn.Module, layers) -> None:
    if layers is None or callable(layers):
        return
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of qualified names or a predicate, got the "
                         f"string {layers!r}; wrap it in a list")
    known = dict(model.named_modules())
    missing = [n for n in layers if n not in known]
    if missing:
        avail = [n for n, _, _ in list_layers(model)]
        raise ValueError(f"unknown layer name(s) {missing}; layers with weights: {avail}")


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
) -> pd.DataFrame:
    r"""One row per layer: shape, BEMA fit, goodness of fit and predicted rank.

    Parameters
    ----------
    model : nn.Module
        Any module; every submodule owning a weight with two or more dimensions is listed.
    method : str
        Rank selector for the ``rank`` column: ``"bema"`` (the number of spikes above
        :math:`\hat\lambda_+`, the authors' "predicted rank") or any method of
        :func:`rmtlib.rank.select_rank`.
    selectors : iterable of str
        Further selectors, reported as ``rank_<name>`` columns.
    selector_opts : dict, optional
        Keyword options per selector, ``{"gavish_donoho": {...}}``.
    conv : {"flat", "taps"}
        Convolution view: the ``(C_out, C_in*kh*kw)`` matrix, or the pooled per-tap
        spectrum (then the fit uses the pseudo-shape ``(kh*kw*C_out, kh*kw*C_in)``, which
        keeps :math:`\gamma` and the eigenvalue count right but applies the Tracy--Widom
        margin of a ``kh*kw``-times larger matrix; ``rank`` is NaN since no single matrix
        has that spectrum).
    alpha, beta, paper_exact
        BEMA options (:func:`rmtlib.bema.fit_bema`).
    gof : float or "calibrated"
        Acceptance rule for :func:`rmtlib.gof.accept`.
    layers : names or predicate ``(name, module) -> bool``, optional
        Restrict the rows (a name also selects the layers below it).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ANALYZE_COLUMNS` (+ ``rank_<selector>``): ``shape`` is the matrix
        shape ``(m, n)``; ``params`` counts the module's weight and bias; ``sigma2``,
        ``lambda_plus`` in eigenvalue units, ``s_plus`` in singular-value units;
        ``status`` is ``"ok"`` or ``"skipped"`` with a ``reason`` (unsupported type, matrix
        too small, non-finite weights, failed fit).
    """
    from .bema import fit_bema
    from .gof import accept

    if conv not in ("flat", "taps"):
        raise ValueError(f"conv must be 'flat' or 'taps', got {conv!r}")
    from .rank import available_methods

    selectors = [s for s in selectors if s != method]
    bad = [s for s in [method, *selectors] if s not in available_methods()]
    if bad:
        raise ValueError(f"unknown rank selector(s) {bad}; valid: {list(available_methods())}")
    selector_opts = dict(selector_opts or {})
    _check_layer_filter(model, layers)
    rows = []
    for name, mod, reason in list_layers(model):
        if not _selected(layers, name, mod):
            continue
        w = main_weight(mod)
        m = w.shape[0]
        n = w[0].numel()
        row = {"name": name, "type": type(mod).__name__, "shape": (m, n), "m": m, "n": n,
               "params": sum(p.numel() for p in mod.parameters(recurse=False)),
               "N": max(m, n), "p": min(m, n), "gamma": min(m, n) / max(m, n),
               "status": "skipped", "reason": reason}
        if reason is None and not bool(torch.isfinite(w).all()):
            row["reason"] = "non-finite (NaN/Inf) weights"
        if row["reason"] is not None:
            rows.append(row)
            continue
        t0 = time.perf_counter()
        try:
            if conv == "taps" and isinstance(mod, nn.Conv2d) and w.shape[2] * w.shape[3] > 1:
                eigs, fshape = _pooled_tap_eigenvalues(mod)
                ranks_ok, n_edge = False, max(w.shape[0], w.shape[1])
            else:
                mat = layer_matrix(mod)
                mat = mat.to(torch.float64 if mat.dtype == torch.float64 else torch.float32)
                G = mat.T @ mat if n <= m else mat @ mat.T
                eigs = torch.linalg.eigvalsh(G).clamp_min(0).double().cpu().numpy() / max(m, n)
                fshape, ranks_ok, n_edge = (m, n), True, max(m, n)
            fit = fit_bema(eigs, shape=fshape, alpha=alpha, beta=beta, paper_exact=paper_exact)
            verdict = accept(fit, gof)
            row.update(sigma2=fit.sigma2, lambda_plus=fit.lambda_plus,
                       s_plus=math.sqrt(n_edge * fit.lambda_plus), spikes=fit.n_spikes,
                       gof=fit.gof, accepted=bool(verdict), status="ok", reason=None)
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
                    from .rank import select_rank

                    try:
                        row[col] = select_rank(eigs, sel, shape=(m, n),
                                               **selector_opts.get(sel, {})).rank
                    except ValueError as exc:  # one selector failing leaves the row valid
                        row[col] = np.nan
                        notes.append(f"{sel} failed: {exc}")
            row["reason"] = "; ".join(notes) or None
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    cols = ANALYZE_COLUMNS + [f"rank_{s}" for s in selectors]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("spikes", "rank", *[f"rank_{s}" for s in selectors]):
        df[c] = df[c].astype("Int64")
    df["accepted"] = df["accepted"].astype("boolean")
    return df
