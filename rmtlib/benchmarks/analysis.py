"""Benchmark: :func:`rmtlib.spectra.analyze` on standard architectures against its limit, the
Gram eigen-solves alone.

For each model (torchvision's ResNet-50 and ViT-B/16 with random weights, ``weights=None``;
``quick``: ResNet-18 and a 2-block ViT), the limit is the sum over its analysable matrices
(:func:`rmtlib.layers.list_layers`) of :func:`rmtlib.linalg.gram_eigenvalues` -- forming the
smaller Gram matrix and its eigenvalues, which any spectral analysis needs.  ``analyze`` adds
the BEMA fit, the goodness of fit and the bookkeeping.  The two are timed in alternation;
``ratio_<model>`` is the median over rounds of analyze / limit (target <= 1.2).  The first
``analyze`` of each model is reported apart (``cold``): it also computes BEMA's
Marchenko--Pastur quantiles for every new matrix shape (cached afterwards).
"""

from __future__ import annotations

import statistics
import time

import torch

from ..layers import list_layers
from ..linalg import gram_eigenvalues
from ..spectra import analyze

__all__ = ["bench_analyze_models"]


def _models(quick: bool) -> dict:
    import torchvision
    from torchvision.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if quick:
            return {"resnet18": torchvision.models.resnet18(weights=None),
                    "vit_tiny": VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                                  num_heads=4, hidden_dim=192, mlp_dim=768)}
        return {"resnet50": torchvision.models.resnet50(weights=None),
                "vit_b_16": torchvision.models.vit_b_16(weights=None)}


def _gram_pass(model) -> float:
    mats = [la.matrix() for la in list_layers(model) if la.ok]
    t0 = time.perf_counter()
    for m in mats:
        gram_eigenvalues(m)
    return time.perf_counter() - t0


def bench_analyze_models(quick: bool = False) -> dict:
    """``analyze`` on ResNet-50 and ViT-B/16 relative to the sum of their Gram eigen-solves."""
    rounds = 2 if quick else 3
    metrics, rows = {}, []
    for name, model in _models(quick).items():
        n_layers = sum(la.ok for la in list_layers(model))
        _gram_pass(model)  # warm-up of the solvers
        t0 = time.perf_counter()
        analyze(model)
        cold = time.perf_counter() - t0
        grams, ans = [], []
        for _ in range(rounds):
            grams.append(_gram_pass(model))
            t0 = time.perf_counter()
            analyze(model)
            ans.append(time.perf_counter() - t0)
        g, a = statistics.median(grams), statistics.median(ans)
        ratio = statistics.median([x / y for x, y in zip(ans, grams)])
        metrics[f"ratio_{name}"] = {"value": ratio, "doc": f"analyze / sum of the Gram eigen-solves "
                                    f"of {name}'s {n_layers} matrices, median over rounds "
                                    "(dimensionless)"}
        metrics[f"cold_ratio_{name}"] = {"value": cold / g, "doc": f"first analyze of {name} "
                                         "(computes the MP quantiles of new shapes) / the Gram "
                                         "eigen-solves (dimensionless)"}
        metrics[f"analyze_seconds_{name}"] = {"value": a, "doc": f"analyze({name}), median (s)"}
        metrics[f"gram_seconds_{name}"] = {"value": g, "doc": f"sum of the Gram eigen-solves of "
                                           f"{name}, median (s)"}
        rows.append({"model": name, "matrices": n_layers, "gram_seconds": g, "analyze_seconds": a,
                     "ratio": ratio, "cold_analyze_seconds": cold})
    first = next(iter(metrics))
    return {
        "title": "analyze on standard architectures",
        "what": ("`rmtlib.spectra.analyze` (BEMA fit, goodness of fit, one row per matrix) on "
                 f"torchvision's {' and '.join(r['model'] for r in rows)} with random weights, "
                 "against the sum of the Gram eigen-solves of the same matrices "
                 "(`rmtlib.linalg.gram_eigenvalues`), the limit of any spectral analysis; timed "
                 f"in alternation, {rounds} rounds.  The cold ratio is the first call, which also "
                 "computes BEMA's Marchenko-Pastur quantiles for each new matrix shape."),
        "target": "<= 1.2x the Gram eigen-solves",
        "metrics": metrics,
        "headline": first,
        "table": rows,
    }
