r"""Slabs, doubling constants of a data set, and the stability of accuracy along training.

Paper 3 (Shmalo 2024, arXiv:2210.08415), following Berlyand, Jabin and Safsten (BJS 2021,
arXiv:2002.04122), phrases a condition on the training data with *slabs*

.. math:: S_\delta(w, b) = \{x : |w\cdot x - b| < \delta\},\qquad |w| = 1,\ \delta > 0,

and the counts :math:`N_\delta(w, b) = \#(T \cap S_\delta(w, b))` of a training set
:math:`T \subset \mathbb R^d`.  The full texts were not available to this project, so what
follows is **the project's own formalisation**, following the abstracts and BJS:

* *slab-dependent (BJS) doubling condition* for a family :math:`\mathcal F` of slabs (e.g. the
  hyperplanes :math:`w_j\cdot x = b_j` of a network's first-layer neurons):
  :math:`N_{2\delta}(w, b) \le C\, N_\delta(w, b)` for every :math:`(w, b) \in \mathcal F` and
  every :math:`\delta`;
* *uniform doubling condition*: the same with one constant for **all** unit :math:`w` and all
  offsets :math:`b` in the range of :math:`w \cdot T` (hyperplanes that meet the convex hull of
  the data, including those at its edge) -- a property of the data alone;
* its *doubling constant* :math:`C(T) = \sup N_{2\delta}/N_\delta`.

For a finite set the supremum over arbitrarily thin slabs is degenerate (a slab holding one point
next to a crowded one gives a ratio of the order of ``n``), so what is computed -- the
"simplified version" checked numerically -- restricts the supremum to slabs that hold at least
``min_count`` points, i.e. to the resolution :math:`q = \text{min\_count}/n`:

.. math:: \hat C_q(T) = \max\{N_{2\delta}(w, b)/N_\delta(w, b) : w \in W,\ b \in B_w,\
          \delta \in D_w,\ N_\delta(w, b) \ge \text{min\_count}\}

over a finite set of directions :math:`W` (uniform on the sphere unless given), offsets
:math:`B_w` covering the projected data from its minimum to its maximum, and a grid
:math:`D_w` of half-widths.  Its population counterpart, for a law :math:`\mu` with
:math:`\mu(S_\delta) \ge q`, is :func:`population_doubling_constant`; closed forms for model laws
are in :mod:`rmtlib.synthetic`.  The supremum of noisy ratios is biased upward;
:func:`doubling_uncertainty` measures that bias by bootstrap and brackets the constant with a
held-out value.  :func:`doubling_constant_1d` is the exact supremum (all slabs, all half-widths)
for one projection, used to check the grid.

**Algorithm** (:func:`doubling_constant`): project the data once per direction (one matrix
product per block of directions), sort each projection, and count every slab of every offset and
half-width by binary search (``np.searchsorted`` over all offsets and half-widths of a direction
at once): :math:`O(k\, n (d + \log n))` for ``k`` directions.

**Stability of accuracy** (:func:`stability_measures`): BJS call training stable when accuracy,
once high, stays high while the loss decreases.  The measures of a recorded training curve are
defined in that function's docstring.

Neither torch nor pandas is imported at import time (:func:`pca_directions` and
:meth:`DoublingEstimate.table` import them when called).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .seeding import check_random_state
from .validation import ArgumentTypeError, check_bool, check_choice, check_float, check_int, describe

__all__ = [
    "DEFAULT_DELTAS",
    "DoublingEstimate",
    "DoublingUncertainty",
    "axis_directions",
    "default_min_count",
    "doubling_constant",
    "doubling_constant_1d",
    "doubling_uncertainty",
    "first_reach",
    "largest_drop",
    "neuron_doubling_constant",
    "neuron_slabs",
    "pca_directions",
    "population_doubling_constant",
    "slab_counts",
    "sphere_directions",
    "stability_measures",
]

#: Default half-widths, as fractions of each direction's projected range (``delta_scale="range"``):
#: half-octave steps from ``2**-1`` to ``2**-12`` (23 values).
DEFAULT_DELTAS = 2.0 ** (-np.arange(2, 25) / 2)

#: With the default offsets, the number of atoms (values repeated at least ``min_count`` times in
#: a projection: points on a common hyperplane) next to which slabs are placed.
N_ATOMS = 2

# bytes of one block of projections (directions x points); a block is projected, sorted and
# counted at once
_BLOCK_BYTES = 64 * 2**20


# ------------------------------------------------------------------------------ validation


def _points(X, name: str = "X") -> np.ndarray:
    """``X`` as a finite float32/float64 array of shape ``(n, d)`` (a 1-D array is ``(n, 1)``)."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, without importing torch
        X = X.detach().cpu().numpy()
    if not isinstance(X, np.ndarray):
        if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
            raise ArgumentTypeError(f"{name} must be an array of points (n, d), got {describe(X)}")
        X = np.asarray(X)
    if X.dtype == object or X.dtype == bool or not np.issubdtype(X.dtype, np.number) \
            or np.iscomplexobj(X):
        raise ArgumentTypeError(f"{name} must be a real numeric array, got dtype {X.dtype}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1 (or (n,)), got {X.shape}")
    # fast check: any NaN or infinity makes the float64 sum non-finite; only then (or on an
    # overflow of the sum) is every entry checked
    if not np.isfinite(X.sum(dtype=np.float64)) and not np.all(np.isfinite(X)):
        raise ValueError(f"{name} has {int(np.size(X) - np.isfinite(X).sum())} non-finite entries")
    return X


def _real_array(values, name: str, *, ndim: tuple[int, ...], positive: bool = False) -> np.ndarray:
    """A finite float64 array with one of the dimensions ``ndim`` (and > 0 if ``positive``)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes, bool)) or values is None:
        raise ArgumentTypeError(f"{name} must be an array of numbers, got {describe(values)}")
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) \
            or np.iscomplexobj(arr):
        raise ArgumentTypeError(f"{name} must be an array of real numbers, got {describe(values)}")
    arr = arr.astype(np.float64)
    if arr.ndim not in ndim or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty {' or '.join(f'{k}-D' for k in ndim)} array, "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        raise ValueError(f"{name} must hold finite{' positive' if positive else ''} numbers, "
                         f"got {describe(values)}")
    return arr


def _unit_rows(directions, dim: int) -> np.ndarray:
    """``directions`` (k, dim) normalised to unit rows; a zero row is an error."""
    D = _real_array(directions, "directions", ndim=(1, 2))
    if D.ndim == 1:
        D = D[None, :]
    if D.shape[1] != dim:
        raise ValueError(f"directions must have {dim} columns (the dimension of X), got shape {D.shape}")
    norms = np.linalg.norm(D, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"directions has {int((norms == 0).sum())} zero row(s); a slab needs a "
                         "non-zero normal")
    return D / norms[:, None]


def default_min_count(n: int) -> int:
    """The default ``min_count`` for ``n`` points: ``max(30, ceil(n / 100))``, at most ``n``.

    A fixed fraction (1 %) makes the estimate converge, as ``n`` grows, to the population
    constant at resolution ``q = 0.01`` (:func:`population_doubling_constant`); the floor of 30
    keeps the count noise of a single ratio below about 25 % for small samples.
    """
    n = check_int(n, "n", minimum=1)
    return min(n, max(30, math.ceil(n / 100)))


# ------------------------------------------------------------------------------ directions


def sphere_directions(n_directions: int, dim: int, *, random_state=None) -> np.ndarray:
    """``n_directions`` unit vectors drawn uniformly on the sphere of ``R^dim`` (normalised
    standard Gaussian vectors), shape ``(n_directions, dim)``.  In one dimension the sphere is
    ``{-1, 1}`` and both give the same slabs, so the single direction ``[[1.0]]`` is returned."""
    n_directions = check_int(n_directions, "n_directions", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    if dim == 1:
        return np.ones((1, 1))
    rng = check_random_state(random_state)
    G = rng.standard_normal((n_directions, dim))
    norms = np.linalg.norm(G, axis=1)
    while np.any(norms == 0):  # probability zero; redraw rather than divide by zero
        bad = norms == 0
        G[bad] = rng.standard_normal((int(bad.sum()), dim))
        norms = np.linalg.norm(G, axis=1)
    return G / norms[:, None]


def axis_directions(dim: int) -> np.ndarray:
    """The ``dim`` coordinate axes (the identity matrix): slabs of a single coordinate, e.g. of
    one pixel."""
    return np.eye(check_int(dim, "dim", minimum=1))


def pca_directions(X, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of the centred data: ``(directions, variances)``, the ``k`` (default all
    ``d``) unit eigenvectors of the sample covariance as rows, largest variance first, and their
    variances (ddof = 1).  Solved by :func:`rmtlib.linalg.gram_eigh` (the one Gram eigensolver).
    Project with ``(X - X.mean(0)) @ directions.T``."""
    import torch

    from .linalg import gram_eigh

    X = _points(X)
    n, d = X.shape
    k = d if k is None else check_int(k, "k", minimum=1, maximum=d)
    if n < 2:
        raise ValueError(f"pca_directions needs at least 2 points, got {n}")
    Xc = torch.from_numpy(np.ascontiguousarray(X - X.mean(0), dtype=np.float64))
    evals, evecs, right, _ = gram_eigh(Xc)
    if not right:  # n < d: the eigenvectors are left singular vectors; map them to the right
        V = Xc.T @ evecs
        V = V / torch.linalg.vector_norm(V, dim=0).clamp_min(1e-300)
    else:
        V = evecs
    order = torch.argsort(evals, descending=True)[:k]
    dirs = V[:, order].T.numpy().copy()
    var = (evals[order].clamp_min(0) / (n - 1)).numpy().copy()
    return dirs, var


def neuron_slabs(weight, bias=None) -> tuple[np.ndarray, np.ndarray]:
    """The hyperplanes of a layer's neurons as slabs: for ``z_j = W_j . x + c_j`` the unit
    normals ``w_j = W_j / |W_j|`` and offsets ``b_j = -c_j / |W_j|`` (so that
    ``|w_j . x - b_j| = |z_j| / |W_j|`` is the distance of ``x`` to the kink of neuron ``j``).

    ``weight`` is ``(out, in)`` (``nn.Linear.weight``), ``bias`` ``(out,)`` or None (zero).
    Rows of ``weight`` that are exactly zero have no hyperplane and are rejected.
    """
    W = _real_array(weight, "weight", ndim=(2,))
    c = np.zeros(len(W)) if bias is None else _real_array(bias, "bias", ndim=(1,))
    if c.shape != (len(W),):
        raise ValueError(f"bias must have shape ({len(W)},) to match weight {W.shape}, got {c.shape}")
    norms = np.linalg.norm(W, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"weight has {int((norms == 0).sum())} zero row(s): those neurons have no "
                         "hyperplane; drop them first")
    return W / norms[:, None], -c / norms


# ------------------------------------------------------------------------------ counting


def _block_size(n: int, block_size) -> int:
    if block_size is not None:
        return check_int(block_size, "block_size", minimum=1)
    return max(1, min(1024, _BLOCK_BYTES // (8 * max(n, 1))))


def _sorted_projections(X: np.ndarray, D: np.ndarray, block: int, with_order: bool, label: str,
                        progress: bool):
    """Yield ``(start, P, order)`` per block of directions: ``P`` the sorted projections
    ``(B, n)`` and, if ``with_order``, the permutation that sorts them (else None)."""
    Dx = D.astype(X.dtype, copy=False)
    t0 = time.perf_counter()
    for s in range(0, len(D), block):
        P = Dx[s:s + block] @ X.T
        if with_order:
            order = np.argsort(P, axis=1, kind="stable")
            P = np.take_along_axis(P, order, axis=1)
        else:
            P.sort(axis=1)
            order = None
        yield s, P, order
        if progress:
            done = min(s + block, len(D))
            print(f"{label}: {done}/{len(D)} directions ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr, flush=True)


def _bounds(p: np.ndarray, b: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index range ``[lo, hi)`` of the sorted ``p`` inside each open slab ``|p - b| < d``, for
    every offset ``b`` (K,) and half-width ``d`` (D,): two arrays of shape (K, D)."""
    lo = np.searchsorted(p, b[:, None] - d[None, :], side="right")
    hi = np.searchsorted(p, b[:, None] + d[None, :], side="left")
    return lo, np.maximum(hi, lo)


def _atom_offsets(p: np.ndarray, deltas: np.ndarray, m: int) -> np.ndarray:
    """Centres ``v -+ 1.5 delta`` next to the :data:`N_ATOMS` most repeated values ``v`` of the
    sorted projection ``p`` that occur at least ``m`` times, for every half-width: slabs that
    miss the atom while their double holds it.  NaN where there is no such atom or the centre
    falls outside ``[p[0], p[-1]]``."""
    out = np.full(2 * N_ATOMS * deltas.size, np.nan)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(p)) + 1])
    runs = np.diff(np.concatenate([starts, [p.size]]))
    big = np.flatnonzero(runs >= m)
    if big.size and big.size < starts.size:  # an atom, and not all points on it
        top = big[np.argsort(runs[big], kind="stable")[::-1][:N_ATOMS]]
        cand = (p[starts[top]][:, None, None].astype(np.float64)
                + np.array([-1.5, 1.5])[None, :, None] * deltas[None, None, :]).ravel()
        cand[(cand < p[0]) | (cand > p[-1])] = np.nan
        out[:cand.size] = cand
    return out


def _offsets_for(P: np.ndarray, offsets, n_offsets: int, start: int, deltas: np.ndarray,
                 m: int) -> np.ndarray:
    """Offsets (B, K) of a block of sorted projections ``P``: the given ones, or the default
    grid -- ``n_offsets`` equally spaced points from the minimum to the maximum, the
    ``n_offsets`` order statistics at equally spaced ranks (both include the extremes) and the
    centres next to atoms (:func:`_atom_offsets`, half-widths ``deltas`` (B, D)); sorted, NaN
    (unused) last."""
    B, n = P.shape
    if offsets is not None:
        return offsets[start:start + B]
    u = np.linspace(0.0, 1.0, n_offsets)
    lin = P[:, :1] + (P[:, -1:] - P[:, :1]) * u
    ranks = np.round(u * (n - 1)).astype(np.intp)
    atoms = np.stack([_atom_offsets(p, d, m) for p, d in zip(P, deltas)])
    return np.sort(np.concatenate([lin, P[:, ranks], atoms], axis=1).astype(np.float64), axis=1)


def _deltas_for(P: np.ndarray, deltas: np.ndarray, scale: str) -> np.ndarray:
    """Half-widths (B, D): ``deltas`` times each projected range, or as given."""
    if scale == "absolute":
        return np.broadcast_to(deltas, (len(P), deltas.size))
    return (P[:, -1:] - P[:, :1]).astype(np.float64) * deltas[None, :]


def _check_offsets(offsets, k: int) -> np.ndarray | None:
    """None, or an offsets array as (k, K): 1-D means one offset per direction."""
    if offsets is None:
        return None
    off = _real_array(offsets, "offsets", ndim=(1, 2))
    if off.ndim == 1:
        off = off[:, None]
    if off.shape[0] != k:
        raise ValueError(f"offsets must have one row per direction ({k}), got shape {off.shape}: "
                         "pass (k,) for one offset per direction or (k, K) for K each")
    return off


def slab_counts(X, directions, offsets, deltas) -> np.ndarray:
    """``counts[j, a, c] = #{i : |w_j . x_i - b_ja| < delta_c}``: the points of ``X`` in every slab.

    Parameters
    ----------
    X : array (n, d) or (n,)
        The points (NumPy array or torch tensor).
    directions : array (k, d)
        Slab normals (normalised to unit length here).
    offsets : array (K,) or (k, K)
        Offsets ``b``: shared by every direction, or one row per direction.
    deltas : array (D,)
        Positive half-widths (absolute units of ``X``).

    Returns an ``int64`` array of shape ``(k, K, D)``.  The slabs are open: a point at distance
    exactly ``delta`` is not counted.  Each projection is sorted once and every slab counted by
    binary search.
    """
    X = _points(X)
    D = _unit_rows(directions, X.shape[1])
    off = _real_array(offsets, "offsets", ndim=(1, 2))
    off = np.broadcast_to(off, (len(D), off.size)) if off.ndim == 1 else off
    if off.shape[0] != len(D):
        raise ValueError(f"offsets must be (K,) or ({len(D)}, K), got shape {off.shape}")
    dl = _real_array(deltas, "deltas", ndim=(1,), positive=True)
    out = np.empty((len(D), off.shape[1], dl.size), dtype=np.int64)
    for s, P, _ in _sorted_projections(X, D, _block_size(len(X), None), False, "slab_counts", False):
        for j, p in enumerate(P):
            lo, hi = _bounds(p, off[s + j], dl)
            out[s + j] = hi - lo
    return out


# ------------------------------------------------------------------------------ the estimate


@dataclass(frozen=True, eq=False)
class DoublingEstimate:
    """Result of :func:`doubling_constant`.

    ``constant`` is the largest ratio ``count_2delta / count_delta`` over the examined slabs
    with ``count_delta >= min_count`` (NaN if none qualifies); the slab attaining it is
    ``direction`` (unit vector, row ``direction_index`` of ``directions``), ``offset``,
    ``delta`` with its two counts.  The examined slabs are every (direction ``j``, offset
    ``offsets[j, a]``, half-width ``deltas[j, c]``); their counts are ``counts_delta[j, a, c]``
    (slab of half-width ``delta``) and ``counts_2delta[j, a, c]`` (half-width ``2 delta``).
    :meth:`table` lists them; :meth:`per_direction` gives the supremum along each direction.
    """

    constant: float
    direction_index: int
    direction: np.ndarray
    offset: float
    delta: float
    count_delta: int
    count_2delta: int
    min_count: int
    n_points: int
    directions: np.ndarray = field(repr=False)
    offsets: np.ndarray = field(repr=False)
    deltas: np.ndarray = field(repr=False)
    counts_delta: np.ndarray = field(repr=False)
    counts_2delta: np.ndarray = field(repr=False)
    seconds: float = float("nan")

    @property
    def admissible(self) -> np.ndarray:
        """Boolean (k, K, D): the slabs holding at least ``min_count`` points."""
        return self.counts_delta >= self.min_count

    @property
    def ratios(self) -> np.ndarray:
        """``counts_2delta / counts_delta`` (k, K, D), NaN where the slab is not admissible."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.counts_2delta / self.counts_delta
        return np.where(self.admissible, r, np.nan)

    @property
    def n_slabs(self) -> int:
        """Number of slabs examined (offsets that are NaN -- unused places of the default grid
        -- do not count)."""
        return int(np.isfinite(self.offsets).sum() * self.deltas.shape[1])

    @property
    def n_admissible(self) -> int:
        """Number of examined slabs with at least ``min_count`` points."""
        return int(self.admissible.sum())

    @property
    def resolution(self) -> float:
        """``min_count / n_points``: the smallest fraction of the data a slab must hold."""
        return self.min_count / self.n_points

    def per_direction(self) -> np.ndarray:
        """The largest admissible ratio along each direction (k,), NaN where none is admissible."""
        r = self.ratios.reshape(len(self.directions), -1)
        out = np.full(len(r), np.nan)
        ok = ~np.all(np.isnan(r), axis=1)
        out[ok] = np.nanmax(r[ok], axis=1)
        return out

    def table(self, admissible_only: bool = True):
        """The examined slabs as a pandas DataFrame: ``direction`` (row index into
        ``directions``), ``offset`` (b), ``delta``, ``count_delta``, ``count_2delta`` and
        ``ratio`` (NaN for slabs below ``min_count``), sorted by decreasing ratio; also
        ``position``, the offset's place between the smallest (0) and largest (1) offset of its
        direction (with the default offsets: within the projected range of the data), and
        ``relative_delta``, the half-width over that range."""
        import pandas as pd

        admissible_only = check_bool(admissible_only, "admissible_only")
        k, K, D = self.counts_delta.shape
        j, a, c = (g.ravel() for g in np.meshgrid(np.arange(k), np.arange(K), np.arange(D),
                                                  indexing="ij"))
        low, span = self.profile_scale()
        with np.errstate(divide="ignore", invalid="ignore"):
            position = np.where(span[j] > 0, (self.offsets[j, a] - low[j]) / span[j], np.nan)
            relative = np.where(span[j] > 0, self.deltas[j, c] / span[j], np.nan)
        frame = pd.DataFrame({"direction": j, "offset": self.offsets[j, a],
                              "position": position, "relative_delta": relative,
                              "delta": self.deltas[j, c],
                              "count_delta": self.counts_delta.ravel(),
                              "count_2delta": self.counts_2delta.ravel(),
                              "ratio": self.ratios.ravel()})
        if admissible_only:
            frame = frame[self.admissible.ravel()]
        return frame.sort_values("ratio", ascending=False, kind="stable").reset_index(drop=True)

    def profile_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Per direction, the smallest offset and the spread of the offsets (k,): with the
        default offsets, the smallest projection and the projected range."""
        with np.errstate(invalid="ignore"):
            low = np.nanmin(np.where(np.isfinite(self.offsets), self.offsets, np.inf), axis=1)
            high = np.nanmax(np.where(np.isfinite(self.offsets), self.offsets, -np.inf), axis=1)
        return low, high - low

    def summary(self) -> dict:
        """Plain numbers for ``metrics.json``: the constant, the attaining slab, the counts and
        the sizes of the search."""
        return {"constant": self.constant, "offset": self.offset, "delta": self.delta,
                "count_delta": self.count_delta, "count_2delta": self.count_2delta,
                "direction_index": self.direction_index, "min_count": self.min_count,
                "n_points": self.n_points, "n_directions": int(len(self.directions)),
                "n_slabs": self.n_slabs, "n_admissible": self.n_admissible,
                "seconds": self.seconds}


def _check_search(X, directions, n_directions, offsets, n_offsets, deltas, delta_scale, min_count,
                  random_state):
    """Shared validation of :func:`doubling_constant` and :func:`doubling_uncertainty`."""
    X = _points(X)
    n, d = X.shape
    if directions is None:
        D = sphere_directions(check_int(n_directions, "n_directions", minimum=1), d,
                              random_state=random_state)
    else:
        D = _unit_rows(directions, d)
    off = _check_offsets(offsets, len(D))
    n_offsets = check_int(n_offsets, "n_offsets", minimum=2)
    delta_scale = check_choice(delta_scale, "delta_scale", ("range", "absolute"))
    dl = DEFAULT_DELTAS if deltas is None else _real_array(deltas, "deltas", ndim=(1,), positive=True)
    m = default_min_count(n) if min_count is None else check_int(min_count, "min_count",
                                                                  minimum=1, maximum=n)
    return X, D, off, n_offsets, delta_scale, dl, m


def _argmax_slab(counts_delta, counts_2delta, m) -> tuple[float, tuple | None]:
    ok = counts_delta >= m
    if not ok.any():
        return float("nan"), None
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ok, counts_2delta / np.maximum(counts_delta, 1), -np.inf)
    idx = np.unravel_index(int(np.argmax(r)), r.shape)
    return float(r[idx]), idx


def doubling_constant(X, *, directions=None, n_directions: int = 1000, offsets=None,
                      n_offsets: int = 64, deltas=None, delta_scale: str = "range",
                      min_count: int | None = None, random_state=None,
                      block_size: int | None = None, progress: bool = False) -> DoublingEstimate:
    r"""Estimate the uniform doubling constant of the points ``X``: the largest ratio
    ``#(X in S_2delta(w, b)) / #(X in S_delta(w, b))`` over the examined slabs that hold at
    least ``min_count`` points (see the module docstring for the definitions).

    Parameters
    ----------
    X : array (n, d) or (n,)
        The training points (NumPy array or torch tensor; float32 input is projected in
        float32).
    directions : array (k, d), optional
        Slab normals (normalised here), e.g. :func:`axis_directions`, :func:`pca_directions` or a
        trained first layer's rows (:func:`neuron_slabs`; see :func:`neuron_doubling_constant`).
        Default: ``n_directions`` directions uniform on the sphere (:func:`sphere_directions`
        with ``random_state``; in one dimension the single direction 1).
    n_directions : int
        Number of random directions when ``directions`` is None.
    offsets : array (k,) or (k, K), optional
        Offsets ``b`` per direction: one each (a family of slabs, e.g. a network's neurons: the
        slab-dependent BJS condition) or ``K`` each.  Default: for each direction, ``n_offsets``
        equally spaced points from the smallest to the largest projection together with the
        ``n_offsets`` order statistics at equally spaced ranks, so that slabs centred at the
        extremes of the data and in its dense parts are examined, and, next to each of the
        :data:`N_ATOMS` most repeated projected values held by at least ``min_count`` points
        (points on a common hyperplane: a flat portion seen along its normal), the centres
        ``v -+ 1.5 delta`` for every half-width, whose slabs miss the atom while their doubles
        hold it.  Unused places are NaN (``offsets`` of the result).
    deltas : array (D,), optional
        Half-widths; default :data:`DEFAULT_DELTAS` (``2**-1 ... 2**-12`` in half-octave
        steps).
    delta_scale : {"range", "absolute"}
        ``"range"``: ``deltas`` are fractions of each direction's projected range
        (max - min), so the estimate does not depend on the scale of ``X``; ``"absolute"``:
        half-widths in the units of ``X``.
    min_count : int, optional
        Smallest number of points in the inner slab ``S_delta`` for its ratio to count
        (default :func:`default_min_count`: ``max(30, ceil(n / 100))``).
    random_state : None, int or Generator
        Draws the random directions.
    block_size : int, optional
        Directions projected at once (default: as many as fit in about 64 MB).
    progress : bool
        Print ``doubling: j/k directions`` lines to stderr after each block.

    Returns
    -------
    DoublingEstimate
        The constant, the slab attaining it and the table of examined slabs.  The estimate is a
        lower bound of the supremum over *all* slabs at the same resolution (only finitely many
        are examined) and an upward-biased estimate of the population constant (the maximum of
        noisy ratios; see :func:`doubling_uncertainty`).
    """
    t0 = time.perf_counter()
    X, D, off, n_offsets, delta_scale, dl, m = _check_search(
        X, directions, n_directions, offsets, n_offsets, deltas, delta_scale, min_count,
        random_state)
    progress = check_bool(progress, "progress")
    k, n = len(D), len(X)
    K = off.shape[1] if off is not None else 2 * n_offsets + 2 * N_ATOMS * dl.size
    offs = np.empty((k, K))
    dels = np.empty((k, dl.size))
    c1 = np.empty((k, K, dl.size), dtype=np.int32 if n < 2**31 else np.int64)
    c2 = np.empty_like(c1)
    for s, P, _ in _sorted_projections(X, D, _block_size(n, block_size), False, "doubling",
                                       progress):
        db = _deltas_for(P, dl, delta_scale)
        ob = _offsets_for(P, off, n_offsets, s, db, m)
        offs[s:s + len(P)], dels[s:s + len(P)] = ob, db
        for j, p in enumerate(P):
            lo, hi = _bounds(p, ob[j], db[j])
            c1[s + j] = hi - lo
            lo, hi = _bounds(p, ob[j], 2 * db[j])
            c2[s + j] = hi - lo
    value, idx = _argmax_slab(c1, c2, m)
    if idx is None:
        j = a = c = 0
        direction, offset, delta, n1, n2 = D[0], float("nan"), float("nan"), 0, 0
    else:
        j, a, c = (int(i) for i in idx)
        direction, offset, delta = D[j], float(offs[j, a]), float(dels[j, c])
        n1, n2 = int(c1[j, a, c]), int(c2[j, a, c])
    return DoublingEstimate(value, j, direction.copy(), offset, delta, n1, n2, m, n, D, offs,
                            dels, c1, c2, time.perf_counter() - t0)


def neuron_doubling_constant(X, weight, bias=None, **kwargs) -> DoublingEstimate:
    """The slab-dependent (BJS) doubling constant of ``X`` for the hyperplanes of a layer's
    neurons: :func:`doubling_constant` with ``directions, offsets = neuron_slabs(weight,
    bias)`` (one offset per neuron, the neuron's own kink hyperplane ``W_j . x + c_j = 0``), over
    the half-widths ``deltas``.  ``kwargs`` are those of :func:`doubling_constant` (``deltas``,
    ``delta_scale``, ``min_count``, ...).  Neurons whose hyperplane misses the data hold no
    admissible slab and do not count."""
    if "directions" in kwargs or "offsets" in kwargs:
        raise ValueError("neuron_doubling_constant takes the slabs from weight and bias; do not "
                         "pass directions or offsets")
    directions, offsets = neuron_slabs(weight, bias)
    return doubling_constant(X, directions=directions, offsets=offsets, **kwargs)


# ------------------------------------------------------------------------------ exact 1-D


def doubling_constant_1d(values, *, min_count: int | None = None) -> dict:
    r"""The exact doubling constant of points on a line: the supremum of
    ``#(b - 2 delta, b + 2 delta) / #(b - delta, b + delta)`` over **all** centres ``b`` in
    ``[min, max]`` of the values and all ``delta > 0`` with at least ``min_count`` points in the
    inner interval (open intervals).

    For a fixed set of points inside the inner interval -- consecutive distinct values
    ``v_j .. v_l`` -- the outer interval ``((3L - U)/2, (3U - L)/2)`` of an inner interval
    ``(L, U)`` grows as ``L`` decreases and ``U`` increases, so the supremum is attained at the
    largest inner interval holding exactly those points: ``L = v_{j-1}``, ``U = v_{l+1}``, and at
    an end of the data, where no neighbour exists, the centre at the extreme value (``b = v_1``,
    ``delta = v_{l+1} - v_1``, or symmetrically).  Checking the ``O(u^2)`` windows of the ``u``
    distinct values therefore gives the exact supremum.  Cost ``O(u^2 log n)``; meant for up to
    a few thousand points (e.g. to check the grid of :func:`doubling_constant`, which can only
    be lower).

    Returns a dict: ``constant``, ``offset`` (b), ``delta``, ``count_delta``, ``count_2delta``
    (NaN / 0 if no interval holds ``min_count`` points; the constant is 1 if only the interval
    holding every point does).
    """
    x = _real_array(values, "values", ndim=(1, 2))
    if x.ndim == 2:
        if x.shape[1] != 1:
            raise ValueError(f"values must be 1-D (points on a line), got shape {x.shape}")
        x = x[:, 0]
    x = np.sort(x)
    n = x.size
    m = default_min_count(n) if min_count is None else check_int(min_count, "min_count",
                                                                  minimum=1, maximum=n)
    v, cnt = np.unique(x, return_counts=True)
    u = v.size
    cum = np.concatenate([[0], np.cumsum(cnt)])
    if n < m:
        return {"constant": float("nan"), "offset": float("nan"), "delta": float("nan"),
                "count_delta": 0, "count_2delta": 0}
    # the interval holding every point: ratio 1
    best = {"constant": 1.0, "offset": float((v[0] + v[-1]) / 2), "delta": float("inf"),
            "count_delta": n, "count_2delta": n}
    for j in range(u):
        ls = np.arange(j, u - 1 if j == 0 else u)  # windows v_j .. v_l (j = 0: not all of them)
        inner = cum[ls + 1] - cum[j]
        ls, inner = ls[inner >= m], inner[inner >= m]
        if not ls.size:
            continue
        right = v[np.minimum(ls + 1, u - 1)]  # v_{l+1}, where it exists
        if j == 0:  # centre at the smallest value
            U = right
            L = 2 * v[0] - U
        else:  # centre at the largest value when the window reaches it
            L = np.full(ls.shape, v[j - 1])
            U = np.where(ls < u - 1, right, 2 * v[-1] - L)
        lo, hi = (3 * L - U) / 2, (3 * U - L) / 2
        outer = np.searchsorted(x, hi, side="left") - np.searchsorted(x, lo, side="right")
        ratio = outer / inner
        i = int(np.argmax(ratio))
        if ratio[i] > best["constant"]:
            best = {"constant": float(ratio[i]), "offset": float((L[i] + U[i]) / 2),
                    "delta": float((U[i] - L[i]) / 2), "count_delta": int(inner[i]),
                    "count_2delta": int(outer[i])}
    return best


# ------------------------------------------------------------------------------ population


def population_doubling_constant(interval_mass: Callable, offsets, deltas, *,
                                 min_mass: float = 0.0) -> dict:
    r"""The doubling constant of a probability law over a grid of slabs along one direction:
    ``max mu(b - 2 delta, b + 2 delta) / mu(b - delta, b + delta)`` over ``b`` in ``offsets``
    and ``delta`` in ``deltas`` with inner mass at least ``min_mass`` (and positive).

    ``interval_mass(lo, hi)`` returns the mass of the open interval ``(lo, hi)`` of the law's
    marginal along the direction (vectorised over arrays), e.g.
    :meth:`rmtlib.synthetic.UniformBall.interval_mass`.  With ``min_mass = min_count / n`` this
    is the limit of :func:`doubling_constant` on ``n`` sample points as ``n`` grows (same
    direction, offsets and half-widths).  Returns a dict: ``constant``, ``offset``, ``delta``,
    ``mass_delta``, ``mass_2delta``.
    """
    if not callable(interval_mass):
        raise ArgumentTypeError(f"interval_mass must be callable (lo, hi) -> mass, got "
                                f"{describe(interval_mass)}")
    b = _real_array(offsets, "offsets", ndim=(1,))[:, None]
    d = _real_array(deltas, "deltas", ndim=(1,), positive=True)[None, :]
    q = check_float(min_mass, "min_mass", low=0.0, high=1.0)
    inner = np.asarray(interval_mass(b - d, b + d), dtype=np.float64)
    outer = np.asarray(interval_mass(b - 2 * d, b + 2 * d), dtype=np.float64)
    ok = (inner >= q) & (inner > 0)
    if not ok.any():
        return {"constant": float("nan"), "offset": float("nan"), "delta": float("nan"),
                "mass_delta": 0.0, "mass_2delta": 0.0}
    r = np.where(ok, outer / np.where(ok, inner, 1.0), -np.inf)
    i, c = np.unravel_index(int(np.argmax(r)), r.shape)
    return {"constant": float(r[i, c]), "offset": float(b[i, 0]), "delta": float(d[0, c]),
            "mass_delta": float(inner[i, c]), "mass_2delta": float(outer[i, c])}


# ------------------------------------------------------------------------------ uncertainty


@dataclass(frozen=True, eq=False)
class DoublingUncertainty:
    """Result of :func:`doubling_uncertainty`.

    ``estimate`` is the plain :class:`DoublingEstimate`; ``bootstrap`` the constants of the
    bootstrap resamples over the same slabs.  ``bias = mean(bootstrap) - constant`` estimates
    the upward bias of the maximum of noisy ratios and ``corrected = constant - bias``;
    ``se`` is the bootstrap standard deviation and ``interval`` the percentile interval at
    ``level``.  ``held_out`` is the split-half value: the slab that attains the maximum in one
    random half of the data, evaluated on the other half (mean over the two halves) -- a
    nearly unbiased value of one slab's population ratio, hence, up to its noise, a lower
    bracket of the constant at this resolution, while ``constant`` is an upper one.
    """

    estimate: DoublingEstimate
    bootstrap: np.ndarray
    held_out: float
    held_out_halves: tuple[float, float]
    level: float

    @property
    def constant(self) -> float:
        return self.estimate.constant

    @property
    def se(self) -> float:
        b = self.bootstrap[np.isfinite(self.bootstrap)]
        return float(b.std(ddof=1)) if b.size > 1 else float("nan")

    @property
    def bias(self) -> float:
        b = self.bootstrap[np.isfinite(self.bootstrap)]
        return float(b.mean() - self.constant) if b.size else float("nan")

    @property
    def corrected(self) -> float:
        return self.constant - self.bias

    @property
    def interval(self) -> tuple[float, float]:
        b = self.bootstrap[np.isfinite(self.bootstrap)]
        if not b.size:
            return (float("nan"), float("nan"))
        a = (1 - self.level) / 2
        return float(np.quantile(b, a)), float(np.quantile(b, 1 - a))

    def summary(self) -> dict:
        """Plain numbers for ``metrics.json``."""
        lo, hi = self.interval
        return {**self.estimate.summary(), "se": self.se, "bias": self.bias,
                "corrected": self.corrected, "interval_low": lo, "interval_high": hi,
                "level": self.level, "held_out": self.held_out,
                "n_bootstrap": int(self.bootstrap.size)}


def doubling_uncertainty(X, *, n_bootstrap: int = 50, level: float = 0.9, random_state=None,
                         directions=None, n_directions: int = 1000, offsets=None,
                         n_offsets: int = 64, deltas=None, delta_scale: str = "range",
                         min_count: int | None = None, block_size: int | None = None,
                         progress: bool = False) -> DoublingUncertainty:
    """:func:`doubling_constant` with its uncertainty: bootstrap and split-half values.

    The slabs (directions, offsets, half-widths) are those of the estimate on all of ``X``;
    each bootstrap resample (``n_bootstrap`` multinomial resamples of the ``n`` points) counts
    them with multiplicities, and its constant is the largest ratio over slabs whose weighted
    inner count is at least ``min_count``.  For the split-half value the points are split at
    random into two halves; a half's slabs are admissible with ``ceil(min_count / 2)`` points
    (the same resolution).  ``random_state`` draws the directions (when not given), the
    resamples and the split.  The other arguments are those of :func:`doubling_constant`.

    Cost: one projection of the data per direction, and ``O(n_bootstrap * n)`` per direction
    for the resampled counts.
    """
    t0 = time.perf_counter()
    rng = check_random_state(random_state)
    X, D, off, n_offsets, delta_scale, dl, m = _check_search(
        X, directions, n_directions, offsets, n_offsets, deltas, delta_scale, min_count, rng)
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", minimum=2)
    level = check_float(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    progress = check_bool(progress, "progress")
    k, n = len(D), len(X)
    # multiplicities (int32: exact, and half the memory traffic of float64 in the gathers)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(np.int32)
    half = np.zeros(n, dtype=np.int32)
    half[rng.permutation(n)[: n // 2]] = 1
    weights = np.vstack([weights, half, 1 - half])  # rows: resamples, then the two halves
    m_half = math.ceil(m / 2)
    K = off.shape[1] if off is not None else 2 * n_offsets + 2 * N_ATOMS * dl.size
    offs, dels = np.empty((k, K)), np.empty((k, dl.size))
    c1 = np.empty((k, K, dl.size), dtype=np.int64)
    c2 = np.empty_like(c1)
    boot = np.full(n_bootstrap, -np.inf)
    best_half = [(-np.inf, np.nan), (-np.inf, np.nan)]  # (ratio in the half, ratio in the other)
    cw = np.zeros((len(weights), n + 1), dtype=np.int32 if n < 2**31 else np.int64)
    for s, P, order in _sorted_projections(X, D, _block_size(n, block_size), True,
                                           "doubling_uncertainty", progress):
        db = _deltas_for(P, dl, delta_scale)
        ob = _offsets_for(P, off, n_offsets, s, db, m)
        offs[s:s + len(P)], dels[s:s + len(P)] = ob, db
        for j, p in enumerate(P):
            lo1, hi1 = _bounds(p, ob[j], db[j])
            lo2, hi2 = _bounds(p, ob[j], 2 * db[j])
            c1[s + j], c2[s + j] = hi1 - lo1, hi2 - lo2
            np.cumsum(weights[:, order[j]], axis=1, out=cw[:, 1:])
            w1 = cw[:, hi1] - cw[:, lo1]  # (r, K, D) weighted inner counts
            w2 = cw[:, hi2] - cw[:, lo2]
            with np.errstate(divide="ignore", invalid="ignore"):
                rb = np.where(w1[:n_bootstrap] >= m, w2[:n_bootstrap] / w1[:n_bootstrap],
                              -np.inf)
            boot = np.maximum(boot, rb.reshape(n_bootstrap, -1).max(axis=1))
            for h in (0, 1):
                inner, outer = w1[n_bootstrap + h], w2[n_bootstrap + h]
                ok = inner >= m_half
                if not ok.any():
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = np.where(ok, outer / inner, -np.inf)
                i = np.unravel_index(int(np.argmax(r)), r.shape)
                if r[i] > best_half[h][0]:
                    o_in, o_out = w1[n_bootstrap + 1 - h][i], w2[n_bootstrap + 1 - h][i]
                    best_half[h] = (float(r[i]), float(o_out / o_in) if o_in > 0 else np.nan)
    boot[~np.isfinite(boot)] = np.nan
    value, idx = _argmax_slab(c1, c2, m)
    if idx is None:
        j = a = c = 0
        est_slab = (D[0], float("nan"), float("nan"), 0, 0)
    else:
        j, a, c = (int(i) for i in idx)
        est_slab = (D[j], float(offs[j, a]), float(dels[j, c]), int(c1[j, a, c]), int(c2[j, a, c]))
    seconds = time.perf_counter() - t0
    est = DoublingEstimate(value, j, est_slab[0].copy(), *est_slab[1:], m, n, D, offs, dels,
                           c1, c2, seconds)
    halves = (best_half[0][1], best_half[1][1])
    finite = [h for h in halves if np.isfinite(h)]
    return DoublingUncertainty(est, boot, float(np.mean(finite)) if finite else float("nan"),
                               halves, level)


# ------------------------------------------------------------------------------ stability


def _curves(loss, accuracy) -> tuple[np.ndarray, np.ndarray]:
    L = _real_array(loss, "loss", ndim=(1,))
    A = _real_array(accuracy, "accuracy", ndim=(1,))
    if L.shape != A.shape:
        raise ValueError(f"loss and accuracy must have the same length, got {L.size} and {A.size}")
    return L, A


def first_reach(accuracy, level: float) -> int | None:
    """The first index ``t`` with ``accuracy[t] >= level`` (None if never)."""
    A = _real_array(accuracy, "accuracy", ndim=(1,))
    level = check_float(level, "level")
    hit = np.flatnonzero(A >= level)
    return int(hit[0]) if hit.size else None


def largest_drop(loss, accuracy, *, start: int = 0, block: int = 512) -> tuple[float, int, int]:
    """The largest fall of accuracy across which the loss fell, from index ``start`` on:
    ``max{A[s] - A[t] : start <= s < t, L[t] < L[s]}`` and the pair ``(s, t)`` attaining it;
    ``(0.0, -1, -1)`` if no such pair has ``A[t] < A[s]``.  When the loss decreases at every
    step this is the largest drawdown of accuracy after ``start``.  ``O(T^2)`` comparisons,
    done in blocks of ``block`` rows."""
    L, A = _curves(loss, accuracy)
    T = L.size
    start = check_int(start, "start", minimum=0, maximum=max(T - 1, 0))
    block = check_int(block, "block", minimum=1)
    best, pair = 0.0, (-1, -1)
    idx = np.arange(T)
    for t0 in range(start + 1, T, block):
        t = idx[t0:t0 + block]
        s = idx[start:t[-1]]
        ok = (s[None, :] < t[:, None]) & (L[s][None, :] > L[t][:, None])
        gap = np.where(ok, A[s][None, :] - A[t][:, None], -np.inf)
        i = np.unravel_index(int(np.argmax(gap)), gap.shape)
        if gap[i] > best:
            best, pair = float(gap[i]), (int(s[i[1]]), int(t[i[0]]))
    return best, pair[0], pair[1]


def stability_measures(loss, accuracy, *, levels: Sequence[float] = (50.0, 90.0)) -> dict:
    r"""Stability measures of one training curve (``loss[t]``, ``accuracy[t]`` recorded at
    times ``t = 0..T``: the training-set loss, nats/sample, and accuracy, %, after ``t`` steps
    or epochs).

    Returns a dict (accuracies in percentage points):

    ``steps``
        ``T``, the number of recorded transitions.
    ``loss_increases``
        ``#{t : L[t+1] > L[t]}`` -- 0 for gradient descent with a step small enough that the
        loss decreases monotonically.
    ``co_descent``
        How often accuracy falls while the loss falls:
        ``#{t : L[t+1] < L[t], A[t+1] < A[t]} / #{t : L[t+1] < L[t]}`` (NaN if the loss never
        falls).
    ``max_step_drop``, ``max_step_drop_at``
        The largest one-step fall of accuracy among the steps in which the loss fell,
        ``max{A[t] - A[t+1] : L[t+1] < L[t]}`` (0 if none), and the step ``t + 1``.
    ``reached_<a>``
        For each level ``a`` of ``levels`` (%): the first time ``t_a`` with ``A[t_a] >= a``
        (None if never).
    ``drop_after_<a>``
        The largest later drop of accuracy while the loss keeps decreasing:
        ``max{A[s] - A[t] : t_a <= s < t, L[t] < L[s]}`` (:func:`largest_drop`; 0 if accuracy
        never falls, NaN if ``a`` is never reached).  Training is *stable at level a* in the
        sense of BJS when this is small: accuracy reached once is kept, up to this drop, for as
        long as the loss decreases.
    ``final_accuracy``, ``max_accuracy``
        ``A[T]`` and ``max_t A[t]``.

    Level keys are formatted with ``:g`` (``drop_after_90``, ``drop_after_97.5``).
    """
    L, A = _curves(loss, accuracy)
    if L.size < 2:
        raise ValueError(f"a training curve needs at least 2 recorded times, got {L.size}")
    try:
        levels = [check_float(a, "levels", low=0.0, high=100.0) for a in levels]
    except TypeError:
        raise ArgumentTypeError(f"levels must be a sequence of accuracies in %, got "
                                f"{describe(levels)}") from None
    dL, dA = np.diff(L), np.diff(A)
    down = dL < 0
    both = down & (dA < 0)
    step_drop = np.where(down, -dA, -np.inf)
    i = int(np.argmax(step_drop))
    out = {"steps": int(dL.size), "loss_increases": int((dL > 0).sum()),
           "co_descent": float(both.sum() / down.sum()) if down.any() else float("nan"),
           "max_step_drop": max(0.0, float(step_drop[i])) if down.any() else 0.0,
           "max_step_drop_at": i + 1 if down.any() and step_drop[i] > 0 else None,
           "final_accuracy": float(A[-1]), "max_accuracy": float(A.max())}
    for a in levels:
        t_a = first_reach(A, a)
        out[f"reached_{a:g}"] = t_a
        out[f"drop_after_{a:g}"] = (float("nan") if t_a is None
                                    else largest_drop(L, A, start=t_a)[0])
    return out
