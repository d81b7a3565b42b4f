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

from .layers import (
    check_finite_weights,
    check_layer_filter,
    is_selected,
    layer_matrix,
    list_layers,
    main_weight,
    tap_matrices,
)
from .linalg import gram_eigenvalues, gram_eigh

__all__ = [
    "ANALYZE_COLUMNS",
    "Decomposition",
    "analyze",
    "decompose",
]


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


def decompose(matrix: torch.Tensor) -> Decomposition:
    """One ``eigh`` of the smaller Gram matrix of ``matrix`` (see the module docstring), in the
    precision of :func:`rmtlib.linalg.compute_dtype` (``W`` is kept in that precision too, so
    the factors are computed in it).  Raises ``ValueError`` for non-2-D or non-finite input.
    """
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2:
        raise ValueError(f"decompose needs a 2-D torch tensor, got {type(matrix).__name__}"
                         + (f" of shape {tuple(matrix.shape)}" if isinstance(matrix, torch.Tensor) else ""))
    check_finite_weights(matrix, "matrix")
    evals, evecs, right, _ = gram_eigh(matrix)
    W = matrix.detach().to(device=evals.device, dtype=evals.dtype)
    s = evals.flip(0).clamp_min(0).sqrt()
    return Decomposition(W, s, evecs.flip(1), right)


def _pooled_tap_eigenvalues(module: nn.Conv2d) -> tuple[np.ndarray, tuple[int, int]]:
    """Pooled eigenvalues of the per-tap slices and the pseudo-shape used to fit them."""
    taps = tap_matrices(module)
    t, m, n = taps.shape
    lam, _ = gram_eigenvalues(taps)
    return np.sort(lam.ravel()), (t * m, t * n)


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
    check_layer_filter(model, layers)
    rows = []
    for name, mod, reason in list_layers(model):
        if not is_selected(layers, name, mod):
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
                eigs, _ = gram_eigenvalues(layer_matrix(mod))
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
