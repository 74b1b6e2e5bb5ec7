"""The complex-step (multicomplex) engine against nested autograd and the Taylor engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from discovery.engine import expand
from discovery.engine.csfd import (
    RULES,
    csfd_derivative,
    csfd_directional_derivatives,
    csfd_hvp,
    csfd_laplacian,
    csfd_step,
)
from discovery.errors import ExpansionError, UnsupportedLayerError
from discovery.nn import Sine
from oracle import ACTIVATIONS, mlp, points_away_from_kinks

SMOOTH = ["tanh", "sigmoid", "sine", "elu", "gelu", "gelu_tanh", "silu", "softplus", "softsign"]


def line_derivatives(model, x, d, order):
    """``d^m/dt^m f(x + t d)`` for ``m <= order`` by nested autograd in ``t``: (order+1, B, n_out)."""
    t = torch.zeros(x.shape[0], dtype=torch.float64, requires_grad=True)
    y = model(x + t.reshape(-1, *([1] * (x.ndim - 1))) * d).reshape(x.shape[0], -1)
    out, g = [y.detach()], y
    for m in range(order):
        g = torch.stack([torch.autograd.grad(g[:, o].sum(), t, create_graph=m + 1 < order, retain_graph=True)[0]
                         for o in range(g.shape[1])], dim=1)
        out.append(g.detach())
    return torch.stack(out)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))


@pytest.mark.parametrize("activation", SMOOTH)
def test_directional_derivatives_match_nested_autograd(activation):
    net = mlp(3, 10, 4, activation, n_out=2, seed=3)
    x = points_away_from_kinks(net, 4, 3, seed=1)
    d = torch.tensor([0.7, -1.2, 0.4], dtype=torch.float64)
    ours = csfd_directional_derivatives(net, x, d, 4)
    oracle = line_derivatives(net, x, d, 4)
    for m in range(5):
        assert rel(ours[m], oracle[m]) < 1e-10, (activation, m, rel(ours[m], oracle[m]))


def test_every_activation_rule_has_a_test_case():
    tested = {type(ACTIVATIONS[a]()) for a in SMOOTH} | {nn.ReLU, nn.LeakyReLU}
    activations = {t for t in RULES if t.__module__.startswith("torch.nn.modules.activation") or t is Sine}
    assert activations <= tested, f"activation rules without a test: {activations - tested}"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_piecewise_linear_networks_give_exact_gradients_and_zero_curvature(activation):
    net = mlp(3, 10, 3, activation, seed=2)
    x = points_away_from_kinks(net, 3, 3, seed=0)
    d = torch.tensor([1.0, 0.5, -0.3], dtype=torch.float64)
    ours = csfd_directional_derivatives(net, x, d, 2)
    assert rel(ours[1], line_derivatives(net, x, d, 1)[1]) < 1e-12
    assert float(ours[2].abs().max()) == 0.0


@pytest.mark.parametrize("depth,activation,seed", [(3, "tanh", 0), (4, "silu", 1), (5, "sine", 2), (6, "gelu", 3)])
def test_agrees_with_taylor_engine_on_deep_networks(depth, activation, seed):
    p = 3
    net = mlp(p, 12, depth, activation, n_out=2, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, p, generator=g, dtype=torch.float64) * 2 - 1
    d = torch.randn(5, p, generator=g, dtype=torch.float64)  # one direction per point
    e = expand(net, x, 4)
    monomials = torch.as_tensor(e.monomials)
    for k in range(1, 5):
        rows = monomials.sum(dim=1) == k
        powers = (d[:, None, :] ** monomials[rows][None]).prod(dim=2)  # (B, T_k)
        taylor = math.factorial(k) * torch.einsum("btn,bt->bn", e.coefficients[:, rows, :], powers)
        ours = csfd_derivative(net, x, d, k)
        assert rel(ours, taylor) < 1e-8, (depth, activation, k, rel(ours, taylor))


def test_hessian_vector_products_match_autograd():
    net = mlp(4, 16, 4, "tanh", n_out=3, seed=5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64) * 0.8
    v = torch.randn(6, 4, generator=g, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    y = net(xg)
    expected = []
    for o in range(3):
        (grad,) = torch.autograd.grad(y[:, o].sum(), xg, create_graph=True)
        (hv,) = torch.autograd.grad((grad * v).sum(), xg, retain_graph=True)
        expected.append(hv)
    expected = torch.stack(expected, dim=1)
    ours = csfd_hvp(net, x, v)
    assert ours.shape == (6, 3, 4)
    assert rel(ours, expected) < 1e-12


def test_laplacian_matches_autograd_trace_of_hessian():
    net = mlp(3, 16, 4, "sine", n_out=2, seed=7)
    x = torch.rand(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.zeros(5, 2, dtype=torch.float64)
    for o in range(2):
        def f(point, o=o):
            return net(point.unsqueeze(0))[0, o]
        for b in range(5):
            expected[b, o] = torch.trace(torch.autograd.functional.hessian(f, x[b]))
    assert rel(csfd_laplacian(net, x), expected) < 1e-12


def test_convolutional_network_matches_taylor_engine_unmixed_derivatives():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3),
                        nn.SiLU(), nn.Flatten(), nn.Linear(16, 3)).double().eval()
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Softplus(), nn.AvgPool1d(2), nn.Flatten(),
                           nn.Linear(27, 2)).double().eval()
    for model, x in [(cnn, torch.randn(2, 1, 8, 8, dtype=torch.float64)),
                     (conv1d, torch.randn(2, 2, 20, dtype=torch.float64))]:
        u = expand(model, x, 3, mixed=False)
        for pixel in [0, 5, 17]:
            d = torch.zeros(x.shape[1:], dtype=torch.float64)
            d.view(-1)[pixel] = 1.0
            ours = csfd_directional_derivatives(model, x, d, 3)
            for k in range(4):
                theirs = u.unmixed(k).reshape(2, -1, x[0].numel())[:, :, pixel]
                assert (ours[k] - theirs).abs().max() <= 1e-10 * max(theirs.abs().max(), 1e-3), (k, pixel)


def test_step_is_a_tiny_power_of_two_and_results_do_not_depend_on_it():
    assert csfd_step(1) == 2.0**-66 and math.frexp(csfd_step(40))[0] == 0.5
    assert csfd_step(12) ** 12 > 1e-300  # far from underflow at the highest order allowed
    net = mlp(2, 8, 3, "tanh", seed=0)
    # a direction 1e6 long: the truncated terms stay negligible
    big = csfd_derivative(net, [[0.1, 0.2]], [1e6, 0.0], 2)
    unit = csfd_derivative(net, [[0.1, 0.2]], [1.0, 0.0], 2)
    assert rel(big, unit * 1e12) < 1e-13


def test_float32_model_is_differentiated_in_float64():
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).eval()
    x = torch.tensor([[0.3, -0.1]], dtype=torch.float64)
    ours = csfd_derivative(net, x, [1.0, 1.0], 3)
    assert ours.dtype == torch.float64
    assert rel(ours, line_derivatives(net.double(), x, torch.tensor([1.0, 1.0], dtype=torch.float64), 3)[3]) < 1e-10


def test_unsupported_layer_is_named_with_its_position():
    class Custom(nn.Module):
        def forward(self, x):
            return x * 2

    net = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Tanh(), Custom()), nn.Linear(3, 1)).double()
    with pytest.raises(UnsupportedLayerError, match=r"model\[1\]\[1\] is a Custom.*supported: .*Linear"):
        csfd_derivative(net, [[0.0, 1.0]], [1.0, 0.0], 2)


def test_bad_arguments_say_what_to_pass():
    net = mlp(2, 4, 1, "tanh")
    with pytest.raises(ExpansionError, match=r"direction has shape \(3,\); pass \(2,\)"):
        csfd_derivative(net, [[0.0, 1.0]], [1.0, 0.0, 0.0], 2)
    with pytest.raises(ExpansionError, match="order must be a non-negative int"):
        csfd_derivative(net, [[0.0, 1.0]], [1.0, 0.0], -1)
    with pytest.raises(ExpansionError, match="NaN"):
        csfd_derivative(net, [[np.nan, 1.0]], [1.0, 0.0], 1)
