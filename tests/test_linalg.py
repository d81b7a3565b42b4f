"""The one Gram eigensolver (rmtlib.linalg): precision rule, eps, stacks, NumPy/torch agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmtlib import linalg
from rmtlib.esd import spectrum
from rmtlib.linalg import F64_MAX_P, compute_dtype, gram_eigenvalues, gram_eigh


def _reference(W: np.ndarray) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    return np.sort(np.linalg.svd(W, compute_uv=False) ** 2 / max(W.shape))


@pytest.mark.parametrize("shape", [(60, 30), (30, 60), (40, 40)])
@pytest.mark.parametrize("kind", ["numpy32", "numpy64", "torch32", "torch16", "bf16"])
def test_eigenvalues_match_the_svd_in_float64_for_small_matrices(shape, kind):
    rng = np.random.default_rng(0)
    W64 = rng.standard_normal(shape)
    W = {"numpy32": W64.astype(np.float32), "numpy64": W64,
         "torch32": torch.from_numpy(W64).float(), "torch16": torch.from_numpy(W64).half(),
         "bf16": torch.from_numpy(W64).bfloat16()}[kind]
    lam, eps = gram_eigenvalues(W)
    exact = _reference(W.float().numpy() if isinstance(W, torch.Tensor) else W)
    assert lam.dtype == np.float64 and lam.shape == (min(shape),)
    assert eps == np.finfo(np.float64).eps  # p <= F64_MAX_P: solved in float64 whatever the input
    np.testing.assert_allclose(lam, exact, rtol=1e-10, atol=1e-12 * exact.max())


def test_precision_rule_switches_to_float32_above_the_limit(monkeypatch):
    assert compute_dtype(True, 10 * F64_MAX_P) == "float64"
    assert compute_dtype(False, F64_MAX_P) == "float64"
    assert compute_dtype(False, F64_MAX_P + 1) == "float32"
    monkeypatch.setattr(linalg, "F64_MAX_P", 8)
    W = np.random.default_rng(1).standard_normal((30, 20)).astype(np.float32)
    lam, eps = gram_eigenvalues(W)
    assert eps == np.finfo(np.float32).eps
    np.testing.assert_allclose(lam, _reference(W), rtol=1e-4)
    spec = spectrum(W)  # the round-off guard uses the precision actually used
    assert spec.eps == np.finfo(np.float32).eps
    evals, evecs, right, eps_t = gram_eigh(torch.from_numpy(W))
    assert evals.dtype == torch.float32 and eps_t == np.finfo(np.float32).eps and right


def test_stack_of_matrices_gives_one_row_each():
    rng = np.random.default_rng(2)
    stack = rng.standard_normal((5, 12, 7))
    lam, _ = gram_eigenvalues(torch.from_numpy(stack))
    assert lam.shape == (5, 7)
    for i in range(5):
        np.testing.assert_allclose(lam[i], _reference(stack[i]), rtol=1e-10)
    lam_np, _ = gram_eigenvalues(stack)
    np.testing.assert_allclose(lam_np, lam, rtol=1e-10)


@pytest.mark.parametrize("shape", [(50, 20), (20, 50)])
def test_gram_eigh_vectors_are_the_smaller_sides_singular_vectors(shape):
    W = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    evals, evecs, right, _ = gram_eigh(W)
    assert right == (shape[1] <= shape[0])
    G = W.T @ W if right else W @ W.T
    torch.testing.assert_close(G @ evecs, evecs * evals)
    torch.testing.assert_close(evecs.T @ evecs, torch.eye(min(shape), dtype=torch.float64))


def test_large_numpy_input_uses_the_same_rule(monkeypatch):
    monkeypatch.setattr(linalg, "SMALL", 10)  # force the torch (MKL) path for NumPy input
    W = np.random.default_rng(4).standard_normal((40, 25)).astype(np.float32)
    lam, eps = gram_eigenvalues(W)
    assert eps == np.finfo(np.float64).eps
    np.testing.assert_allclose(lam, _reference(W), rtol=1e-10)


@pytest.mark.parametrize("shape", [(70, 30), (30, 70)])
def test_blockwise_gram_of_lower_precision_input_equals_the_full_conversion(shape, monkeypatch):
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(5))  # float32, solved in float64
    full, _ = gram_eigenvalues(W)
    monkeypatch.setattr(linalg, "GRAM_BLOCK", 64)  # forces blocks of 2 rows / columns
    lam, eps = gram_eigenvalues(W)
    assert eps == np.finfo(np.float64).eps
    np.testing.assert_allclose(lam, full, rtol=1e-12, atol=1e-14 * full.max())
    evals, evecs, right, _ = gram_eigh(W)
    G = W.double().mT @ W.double() if right else W.double() @ W.double().mT
    torch.testing.assert_close(G @ evecs, evecs * evals)
