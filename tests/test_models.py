"""Tests of rmtlib.models."""

import math

import pytest
import torch
from torch import nn

from rmtlib.models import MLP, LeNetLike, PaperCNN, make_activation, output_width
from rmtlib.prune import count_parameters


def test_mlp_paper_net_shape_params_and_logits():
    m = MLP([784, 1000, 10])
    assert count_parameters(m) == 795_010
    x = torch.rand(4, 1, 28, 28)
    out = m(x)
    assert out.shape == (4, 10) and (out < 0).any()
    p = MLP([784, 1000, 10], relu_on_logits=True, seed=0)
    assert (p(x) >= 0).all()
    assert m.widths == [784, 1000, 10] and output_width(m) == 10


def test_mlp_seed_is_reproducible_and_private():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = MLP([20, 30, 5], seed=7), MLP([20, 30, 5], seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # global stream untouched
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = MLP([20, 30, 5], seed=8)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


def test_normal_fan_in_init():
    m = MLP([400, 600, 10], init="normal_fan_in", seed=0)
    w = m.layers[0].weight
    assert abs(w.std().item() - 1 / math.sqrt(400)) < 0.02 / math.sqrt(400) * 10
    assert abs(w.mean().item()) < 1e-3
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in m.layers)
    cnn = PaperCNN(channels=[1, 8, 16], fc=[10], init="normal_fan_in", seed=0)
    conv = cnn.features[1].conv
    assert abs(conv.weight.std().item() - 1 / math.sqrt(8 * 9)) < 0.1 / math.sqrt(72)


def test_activations_and_bad_arguments():
    assert torch.equal(make_activation("abs")(torch.tensor([-2.0, 3.0])), torch.tensor([2.0, 3.0]))
    m = MLP([3, 4, 2], activation="abs")
    assert isinstance(m.act, nn.Module)
    with pytest.raises(ValueError, match="activation"):
        MLP([3, 4, 2], activation="swishy")
    with pytest.raises(ValueError, match="dims"):
        MLP([3])
    with pytest.raises(ValueError, match="dims"):
        MLP([3, 0, 2])
    with pytest.raises(ValueError, match="init"):
        MLP([3, 4], init="xavier")
    with pytest.raises(ValueError, match="seed"):
        MLP([3, 4], seed=-1)


def test_paper_cnn_structure_matches_reference():
    cnn = PaperCNN(seed=0)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == (0, 0) for c in convs)
    # 28 -> 26 -> 24 -> 22 -> pool 11 -> 9 -> 7 -> pool 3: 512 * 3 * 3 = 4608 features
    assert cnn.classifier[0].in_features == 4608 and cnn.classifier[0].out_features == 1000
    pools = [i for i, b in enumerate(cnn.features) if hasattr(b, "pool")]
    assert pools == [2, 4]
    assert all(b.drop.p == 0.35 for b in cnn.features)
    cnn.eval()
    x = torch.rand(3, 1, 28, 28)
    out = cnn(x)
    assert out.shape == (3, 10)
    torch.testing.assert_close(out, cnn(x))  # dropout off in eval mode
    # logits per sample, not normalised over the batch (the authors' dim=0 bug is fixed)
    assert not torch.allclose(out.exp().sum(0), torch.ones(10))


def test_paper_cnn_options_and_errors():
    cnn = PaperCNN(channels=[1, 64, 128, 256, 512], fc=[1000, 10], batchnorm=False, seed=1)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cnn.modules())
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="too small"):
        PaperCNN(input_size=(8, 8))
    with pytest.raises(ValueError, match="dropout"):
        PaperCNN(conv_dropout=1.0)
    with pytest.raises(ValueError, match="pool_after"):
        PaperCNN(channels=[1, 4, 8], pool_after=[5])


def test_lenet_like():
    net = LeNetLike(seed=0)
    assert count_parameters(net) == (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) \
        + (120 * 84 + 84) + (84 * 10 + 10)
    assert net(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert LeNetLike(in_channels=3, num_classes=4, input_size=(32, 32))(
        torch.rand(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError):
        LeNetLike(input_size=(8, 8))


# ------------------------------------------------------------------ specs


def test_models_record_their_architecture_and_build_model_rebuilds_them():
    from rmtlib.models import build_model

    for m in (MLP([20, 30, 5], activation="abs", seed=3), PaperCNN(channels=[1, 4], fc=[6, 3],
              input_size=(10, 10), seed=2), LeNetLike(num_classes=4, seed=1)):
        twin = build_model(m.arch)
        assert type(twin) is type(m)
        for a, b in zip(m.state_dict().values(), twin.state_dict().values()):
            assert torch.equal(a, b)  # same seed, same initialisation
    assert MLP([3, 4], activation=nn.GELU()).arch is None  # not plain data: not recorded
    net = build_model("torchvision:resnet18", num_classes=7)
    assert net.fc.out_features == 7 and output_width(net) == 7
    assert isinstance(build_model({"factory": "torch.nn:Linear", "kwargs": {"in_features": 3,
                                                                            "out_features": 2}}),
                      nn.Linear)


@pytest.mark.parametrize("arch,kw,words", [
    ("torchvision:resnet81", {}, "did you mean resnet18"),
    ("torchvision:resnet18", {"weights": "DEFAULT"}, "never downloaded"),
    ("torchvision:resnet18", {"colour": 3}, "cannot be built"),
    ("resnet18", {}, "must have the form"),
    ("no_such_package_x:net", {}, "cannot import"),
    ("rmtlib.models:MPL", {}, "did you mean MLP"),
    ("rmtlib.models:output_width", {}, "cannot be built"),
    ("math:pi", {}, "no callable"),
    (3, {}, "arch must be"),
    ({"factory": "torchvision:resnet18", "extra": 1}, {}, "arch must be"),
])
def test_build_model_errors(arch, kw, words):
    from rmtlib.models import build_model

    with pytest.raises(ValueError, match=words):
        build_model(arch, **kw)


def test_output_width_is_the_head_width():
    class Net(nn.Module):  # the head is registered first but applied last
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(16, 3)
            self.body = nn.Linear(8, 16)

        def forward(self, x):
            return self.head(self.body(x).relu())

    assert output_width(Net()) == 3
    with pytest.raises(ValueError, match="no analysable layer"):
        output_width(nn.Sequential(nn.Embedding(4, 3)))


@pytest.mark.parametrize("call,words", [
    (lambda: MLP("784"), "dims must be a sequence"),
    (lambda: MLP([784, "10"]), r"dims\[1\] must be an integer"),
    (lambda: MLP([784, 10.0]), r"dims\[1\]"),
    (lambda: MLP([784, True]), r"dims\[1\]"),
    (lambda: MLP([3, 4], relu_on_logits="yes"), "relu_on_logits must be True or False"),
    (lambda: MLP([3, 4], seed=1.5), "seed"),
    (lambda: PaperCNN(input_size=28), "input_size must be a pair"),
    (lambda: PaperCNN(conv_dropout="0.3"), "conv_dropout"),
    (lambda: PaperCNN(pool_after="2"), "pool_after"),
    (lambda: LeNetLike(num_classes=0), "num_classes"),
    (lambda: make_activation(3), "unknown activation"),
])
def test_model_constructors_validate(call, words):
    with pytest.raises(ValueError, match=words):
        call()
