"""Bad input to ``expand`` gives an ExpansionError that says what to pass instead."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import discovery
from discovery.engine.registry import supported_names
from discovery.errors import DiscoveryError, ExpansionError, UnsupportedLayerError
from oracle import mlp


@pytest.fixture(scope="module")
def net():
    return mlp(3, 8, 3, "tanh", seed=0)


@pytest.mark.parametrize("at", [[0.1, 0.2], [[0.1, 0.2, 0.3, 0.4]], [[0.1], [0.2]]], ids=["p2", "p4", "p1"])
def test_wrong_number_of_features_names_the_expected_count(net, at):
    with pytest.raises(ExpansionError) as info:
        discovery.expand(net, at, 2)
    msg = str(info.value)
    assert msg.startswith("expand(model, at, order=2)")
    assert "3 features" in msg, msg


def test_wrong_rank_suggests_unmixed_mode(net):
    with pytest.raises(ExpansionError, match="mixed=False"):
        discovery.expand(net, torch.zeros(2, 3, 4), 2)


@pytest.mark.parametrize("order,hint", [(-1, ">= 0"), (2.5, "int"), (2.0, "order=2"), ("3", "int"), (True, "int")],
                         ids=["negative", "fraction", "float", "string", "bool"])
def test_bad_order(net, order, hint):
    with pytest.raises(ExpansionError) as info:
        discovery.expand(net, [0.1, 0.2, 0.3], order)
    assert hint in str(info.value), str(info.value)
    assert isinstance(info.value, DiscoveryError) and isinstance(info.value, ValueError)


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 4)
        self.act = nn.Hardtanh()
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.act(self.lin(x)))


class _Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 4)

    def forward(self, x):
        return torch.cumsum(self.lin(x), dim=1).sum(1, keepdim=True)


@pytest.mark.parametrize("model,op,where", [
    (_Branchy(), "Hardtanh", "'act'"),
    (nn.Sequential(nn.Linear(2, 4), nn.Hardswish(), nn.Linear(4, 1)), "Hardswish", "'1'"),
    (_Cumsum(), "cumsum", "cumsum"),
], ids=["module-attribute", "sequential-index", "function"])
def test_unsupported_layer_names_op_place_and_supported_list(model, op, where):
    with pytest.raises(UnsupportedLayerError) as info:
        discovery.expand(model.double(), [0.1, 0.2], 2)
    msg = str(info.value)
    assert op in msg and where in msg, msg
    # The primitives are listed once each, not their module/function/method spellings.
    assert f"Supported primitives: {', '.join(supported_names())} (" in msg, msg
    assert "Sigmoid" not in msg and "torch.tanh" not in msg, msg
    assert f"register_rule('name', {op if op[0].isupper() else 'torch.' + op})" in msg, msg
    assert "register_alias(" in msg, msg


def test_untraceable_model_says_how_to_fix():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x) if x.sum() > 0 else -self.lin(x)

    with pytest.raises(ExpansionError, match="traced"):
        discovery.expand(DataDependent().double(), [0.1, 0.2], 2)


def test_meta_device_model(net):
    meta = mlp(3, 8, 3, "tanh", seed=0).to("meta")
    with pytest.raises(ExpansionError) as info:
        discovery.expand(meta, [0.1, 0.2, 0.3], 2)
    assert "meta" in str(info.value) and "load" in str(info.value), str(info.value)
    with pytest.raises(ExpansionError):
        discovery.expand(meta, [0.1, 0.2, 0.3], 2, device="cpu")


def test_parameters_on_two_devices():
    model = mlp(2, 4, 3, "tanh", seed=0)
    model[-1].to("meta")
    with pytest.raises(ExpansionError, match="device"):
        discovery.expand(model, [0.1, 0.2], 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_requested_without_cuda(net):
    with pytest.raises(ExpansionError, match="device='cpu'"):
        discovery.expand(net, [0.1, 0.2, 0.3], 2, device="cuda")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_reference_points(net, bad):
    at = [[0.1, 0.2, 0.3], [0.4, bad, 0.6]]
    with pytest.raises(ExpansionError) as info:
        discovery.expand(net, at, 2)
    msg = str(info.value)
    assert "finite" in msg and "(1, 1)" in msg, msg


@pytest.mark.parametrize("at", ["abc", [], [["a", "b", "c"]], torch.zeros(2, 3, dtype=torch.complex128)],
                         ids=["string", "empty", "strings", "complex"])
def test_non_numeric_or_empty_points(net, at):
    with pytest.raises(ExpansionError):
        discovery.expand(net, at, 1)


def test_not_a_module():
    with pytest.raises(ExpansionError, match="torch.nn.Module"):
        discovery.expand(lambda x: x, [0.1], 1)


def test_derivative_and_unmixed_bad_arguments(net):
    e = discovery.expand(net, [0.1, 0.2, 0.3], 2)
    with pytest.raises(ExpansionError, match="exceeds"):
        e.derivative((2, 1, 0))
    with pytest.raises(ExpansionError, match="3 non-negative"):
        e.derivative((1, 0))
    with pytest.raises(ExpansionError, match="non-negative"):
        e.derivative((-1, 1, 0))
    with pytest.raises(ExpansionError, match=r"\(M, 3\)"):
        e(torch.zeros(4, 2))
    u = discovery.expand(net, [[0.1, 0.2, 0.3]], 2, mixed=False)
    with pytest.raises(ExpansionError, match="between 0"):
        u.unmixed(3)


def test_load_wrong_file(tmp_path, net):
    with pytest.raises(ExpansionError, match="no such file"):
        discovery.Expansion.load(tmp_path / "missing.pt")
    u = discovery.expand(net, [[0.1, 0.2, 0.3]], 1, mixed=False)
    u.save(tmp_path / "u.pt")
    with pytest.raises(ExpansionError, match="UnmixedExpansion.load"):
        discovery.Expansion.load(tmp_path / "u.pt")
