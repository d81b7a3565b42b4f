"""prune_model with its default policy on randomly initialised torchvision architectures
(weights=None: nothing is downloaded).  Random weights are pure noise, where RMT pruning should
cut most of every layer: most analysable layers change, the pruned model still runs with the
right output shape, the parameter accounting adds up and every layer left alone has a reason."""

import pytest
import torch

from rmtlib.layers import list_layers
from rmtlib.prune import count_parameters, prune_model
from rmtlib.spectra import analyze

torchvision = pytest.importorskip("torchvision")

#: (architecture, input size, slow)
ARCHS = [
    ("resnet18", 64, False),
    ("mobilenet_v3_small", 64, False),
    ("efficientnet_b0", 64, False),
    ("resnet50", 64, True),
    ("convnext_tiny", 64, True),
    ("vit_b_16", 224, True),
]


def _build(name):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.get_model(name, weights=None).eval()


@pytest.mark.parametrize("name,size", [
    pytest.param(n, s, marks=[pytest.mark.slow] if slow else [], id=n) for n, s, slow in ARCHS])
def test_default_prune_changes_most_layers_and_keeps_the_model_working(name, size):
    model = _build(name)
    x = torch.randn(1, 3, size, size)
    before = count_parameters(model)
    ok = [la.name for la in list_layers(model) if la.ok]
    report = prune_model(model)
    df = report.layers.set_index("name")
    changed = set(report.changed)
    assert len(changed) >= 0.7 * len(ok), df[df.action == "skipped"].reason.to_dict()
    # every layer left alone says why
    skipped = df[df.action == "skipped"]
    assert skipped.reason.map(lambda r: isinstance(r, str) and len(r) > 10).all()
    # the classifier head is protected, not cut below its 1000 outputs
    head = df[df["head"].fillna(False).astype(bool)]
    assert len(head) == 1 and head.action.iloc[0] == "skipped"
    assert "classifier head" in head.reason.iloc[0] or "BEMA" in head.reason.iloc[0]
    # parameter accounting
    after = count_parameters(model)
    assert report.params_before == before and report.params_after == after < before
    assert before - after == int((df.params_before - df.params_after).sum())
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_vit_attention_and_heads_are_analysed():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                              hidden_dim=64, mlp_dim=128, num_classes=10).eval()
    df = analyze(model).set_index("name")
    blocks = [n for n in df.index if "in_proj_weight[" in n]
    assert len(blocks) == 6 and (df.loc[blocks, "status"] == "ok").all()
    assert (df.loc[[n for n in df.index if n.endswith("out_proj")], "status"] == "ok").all()
    # torchvision initialises the ViT head with zeros: no spectrum to fit, said so
    assert "zero" in df.loc["heads.head", "reason"]
    x = torch.randn(2, 3, 32, 32)
    report = prune_model(model)
    assert {r for r in report.layers.action} >= {"factorize", "truncate"}
    with torch.no_grad():
        assert model(x).shape == (2, 10)
