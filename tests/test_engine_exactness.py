"""The Taylor engine against nested autograd in float64.

Agreement is measured per total order k as ``|ours - autograd| <= 1e-10 * max(|autograd|, s_k)``
where ``s_k`` is the largest autograd magnitude among all derivatives of order k (all points,
outputs and multi-indices), so a derivative that is tiny next to its peers is judged on the
scale of its order rather than on its own size.

"Depth" is the number of hidden (activation) layers of an MLP.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import sympy
import torch
from torch import nn

import discovery
from discovery.engine.registry import ALIASES, REGISTRY
from oracle import (
    ACTIVATIONS,
    BY_NAME,
    CASES,
    PolynomialNet,
    all_partials,
    assert_partials_match,
    factorial_of,
    keys_used,
    mlp,
    points_away_from_kinks,
    pure_partials,
    relative_errors,
)

RTOL = 1e-10
WIDTHS = [8, 16, 32, 64]


def _sweep():
    """Every activation at p = 1..4; depth 3-6 and width 8-64 rotate across the grid.

    Orders: 6 for p <= 2 and 4 for p <= 4. Nested autograd grows exponentially with the order,
    so the grid keeps depth x width small; width 64 is covered by the two tests below it.
    """
    rows = []
    for i, act in enumerate(ACTIVATIONS):
        for p in (1, 2, 3, 4):
            depth = 3 + (i + p) % 4
            order = 6 if p <= 2 else 4
            budget = 48 if order == 6 else 96
            width = max(w for w in WIDTHS if depth * w <= budget or w == 8)
            rows.append(pytest.param(act, p, depth, width, order, id=f"{act}-p{p}-d{depth}-w{width}-n{order}"))
    return rows


@pytest.mark.parametrize("act,p,depth,width,order", _sweep())
def test_mlp_every_partial_matches_autograd(act, p, depth, width, order):
    net = mlp(p, width, depth, act, seed=10 * p + depth)
    at = points_away_from_kinks(net, 2, p, seed=p)
    e = discovery.expand(net, at, order)
    assert_partials_match(e, all_partials(net, at, order), RTOL, f"{act} p={p} depth={depth} width={width}")


@pytest.mark.parametrize("act,p,depth,order", [("tanh", 2, 6, 4), ("sigmoid", 4, 3, 3), ("sine", 1, 5, 6)],
                         ids=["tanh-p2-d6-w64-n4", "sigmoid-p4-d3-w64-n3", "sine-p1-d5-w64-n6"])
def test_wide_mlp(act, p, depth, order):
    net = mlp(p, 64, depth, act, seed=3)
    at = points_away_from_kinks(net, 2, p, seed=3)
    assert_partials_match(discovery.expand(net, at, order), all_partials(net, at, order), RTOL, f"{act} {depth}x64")


def test_multiple_outputs():
    net = mlp(3, 16, 3, "silu", n_out=3, seed=4)
    at = points_away_from_kinks(net, 4, 3, seed=4)
    e = discovery.expand(net, at, 4)
    assert e.n_outputs == 3 and e.coefficients.shape == (4, math.comb(3 + 4, 4), 3)
    assert_partials_match(e, all_partials(net, at, 4), RTOL, "3 outputs")


def test_one_dimensional_output_model():
    net = nn.Sequential(mlp(2, 8, 3, "tanh", seed=5), nn.Flatten(0))
    at = torch.tensor([[0.2, -0.1], [0.5, 0.4]], dtype=torch.float64)
    e = discovery.expand(net, at, 3)
    assert e.derivative((1, 1)).shape == (2, 1)
    assert_partials_match(e, all_partials(net, at, 3), RTOL, "(B,) output")


# -- rule registry ------------------------------------------------------------------------------


@functools.cache
def _case_errors(name: str) -> str:
    """'' when the case matches autograd, else a message naming the worst derivatives."""
    case = BY_NAME[name]
    model = case.build()
    at = torch.tensor([[0.31, -0.42], [-0.73, 0.18], [0.12, 0.87]], dtype=torch.float64)
    e = discovery.expand(model, at, 4)
    reference = case.reference(case.build()) if case.reference else model
    try:
        assert_partials_match(e, all_partials(reference, at, 4), RTOL, f"case {name}")
    except AssertionError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_rule_case_matches_autograd(name):
    assert _case_errors(name) == ""


@functools.cache
def _coverage() -> dict:
    """Primitive -> names of the cases that reach it through any of its forms (first one is
    its primary case)."""
    cover: dict = {}
    for case in CASES:
        for key in keys_used(case.build(), ALIASES):
            cover.setdefault(ALIASES[key].primitive, []).append(case.name)
    return cover


@pytest.mark.parametrize("primitive", sorted(REGISTRY))
def test_registered_rule_has_a_passing_case(primitive):
    cases = _coverage().get(primitive)
    assert cases, f"registered rule {primitive!r} has no test case in tests/oracle.py CASES; add one"
    assert _case_errors(cases[0]) == ""


def test_constant_base_power_is_exact():
    """``2.0 ** x``: the constant base must enter in float64, not as a float32 tensor."""

    class ConstantBase(nn.Module):
        def forward(self, x):
            return 2.0 ** x

    at = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    e = discovery.expand(ConstantBase(), at, 3)
    for k in range(4):
        torch.testing.assert_close(e.derivative((k,)), (2.0 ** at) * math.log(2.0) ** k, rtol=1e-14, atol=0)


# -- the Expansion object -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tanh_expansion():
    net = mlp(2, 16, 3, "tanh", n_out=2, seed=7)
    at = torch.tensor([[0.1, -0.3], [0.6, 0.2], [-0.4, 0.5]], dtype=torch.float64)
    return net, discovery.expand(net, at, 6)


def test_coefficients_are_derivatives_over_alpha_factorial(tanh_expansion):
    net, e = tanh_expansion
    mono = e.monomials
    assert mono.dtype == np.int64 and mono.shape == (math.comb(2 + 6, 6), 2)
    assert (mono[0] == 0).all() and (mono[1:3] == np.eye(2, dtype=np.int64)).all()
    degrees = mono.sum(axis=1)
    assert (np.diff(degrees) >= 0).all() and len({tuple(r) for r in mono}) == len(mono)
    # Row t of the coefficients must be d^alpha f / alpha! with alpha = monomials[t], the
    # derivative taken by nested autograd (not by Expansion.derivative, which is defined from them).
    oracle = all_partials(net, e.center, 6)
    ours = {tuple(int(a) for a in alpha): e.coefficients[:, t, :] * factorial_of(alpha) for t, alpha in enumerate(mono)}
    assert set(ours) == set(oracle)
    worst = relative_errors(ours, oracle)
    assert all(err <= RTOL for err, _ in worst.values()), f"coefficient * alpha! vs autograd per order: {worst}"
    assert (e.order, e.n_inputs, e.n_outputs, e.batch_size) == (6, 2, 2, 3)


def test_call_matches_model_near_center(tanh_expansion):
    net, e = tanh_expansion
    g = torch.Generator().manual_seed(0)
    dx = (torch.rand(5, 2, generator=g, dtype=torch.float64) - 0.5) * 2e-2
    for b in range(e.batch_size):
        x = e.center[b] + dx
        with torch.no_grad():
            truth = net(x)
        values = e(x)
        assert values.shape == (3, 5, 2)
        # remainder of order 7 at |dx| <= 1e-2 is far below 1e-12
        torch.testing.assert_close(values[b], truth, rtol=0, atol=1e-12)
    single = e(e.center[0])
    assert single.shape == (3, 2)
    with torch.no_grad():
        torch.testing.assert_close(single[0], net(e.center[:1])[0], rtol=0, atol=1e-14)


@pytest.fixture(scope="module")
def polynomial_case():
    net = PolynomialNet(2, 6, 2, seed=8)  # degree 4 exactly
    at = torch.tensor([[0.3, -0.2], [-1.0, 0.7]], dtype=torch.float64)
    return net, discovery.expand(net, at, 4)


def test_polynomial_network_is_reproduced_everywhere(polynomial_case):
    net, e = polynomial_case
    far = torch.tensor([[3.0, -2.0], [-5.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        truth = net(far)
    for b in range(2):
        torch.testing.assert_close(e(far)[b], truth, rtol=1e-11, atol=1e-11)
    higher = discovery.expand(net, e.center, 6)
    assert higher.coefficients[:, math.comb(2 + 4, 4):, :].abs().max() <= 1e-12 * higher.coefficients.abs().max()


def test_shift_round_trip_and_exact_recentring(polynomial_case):
    net, e = polynomial_case
    new = torch.tensor([[1.5, 0.5], [0.2, -2.0]], dtype=torch.float64)
    moved = e.shift(new)
    torch.testing.assert_close(moved.center, new)
    direct = discovery.expand(net, new, 4)
    torch.testing.assert_close(moved.coefficients, direct.coefficients, rtol=1e-10, atol=1e-10 * float(direct.coefficients.abs().max()))
    back = moved.shift(e.center)
    torch.testing.assert_close(back.coefficients, e.coefficients, rtol=1e-10, atol=1e-12 * float(e.coefficients.abs().max()))
    same_for_all = e.shift(torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert same_for_all.center.shape == (2, 2)


def test_to_sympy_evaluates_like_the_expansion(tanh_expansion):
    _, e = tanh_expansion
    exprs = e.to_sympy(names=["u", "v"])
    assert len(exprs) == 3 and len(exprs[0]) == 2
    u, v = sympy.symbols("u v", real=True)
    x = torch.tensor([[0.15, -0.25], [0.0, 0.3]], dtype=torch.float64)
    ours = e(x)
    for b in range(3):
        for o in range(2):
            f = sympy.lambdify((u, v), exprs[b][o], "math")
            got = [f(float(r[0]), float(r[1])) for r in x]
            np.testing.assert_allclose(got, ours[b, :, o].numpy(), rtol=1e-11, atol=1e-12)
    default = e.to_sympy()[0][0]
    assert {s.name for s in default.free_symbols} == {"x0", "x1"}


def test_save_load_round_trip(tanh_expansion, tmp_path):
    _, e = tanh_expansion
    path = tmp_path / "sub" / "e.pt"
    e.save(path)
    loaded = type(e).load(path)
    assert torch.equal(loaded.coefficients, e.coefficients) and torch.equal(loaded.center, e.center)
    assert loaded.order == e.order and (loaded.monomials == e.monomials).all()
    torch.testing.assert_close(loaded.derivative((2, 3)), e.derivative((2, 3)), rtol=0, atol=0)


def test_float32_model_is_expanded_in_float64():
    net32 = mlp(2, 16, 4, "gelu", seed=9).float()
    net64 = mlp(2, 16, 4, "gelu", seed=9).float().double()  # the same float32 weights, widened
    at = np.array([[0.2, -0.5], [0.7, 0.1]], dtype=np.float32)
    e = discovery.expand(net32, at, 5)
    assert e.coefficients.dtype == torch.float64
    assert_partials_match(e, all_partials(net64, at.astype(np.float64), 5), RTOL, "float32 model")


def test_single_point_and_order_zero():
    net = mlp(3, 8, 3, "sigmoid", seed=11)
    e = discovery.expand(net, [0.1, 0.2, 0.3], 0)
    assert e.batch_size == 1 and e.coefficients.shape == (1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(e.coefficients[:, 0, :], net(torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)))


# -- unmixed mode -------------------------------------------------------------------------------


def _check_unmixed(model, at, order, elements):
    u = discovery.expand(model, at, order, mixed=False)
    oracle = pure_partials(model, at, elements, order)  # (order+1, E, B, n_out)
    B = at.shape[0]
    for k in range(order + 1):
        got = u.unmixed(k)
        n_out = got.shape[1]
        assert got.shape == (B, n_out, *at.shape[1:])
        flat = got.reshape(B, n_out, -1)[:, :, elements].permute(2, 0, 1)  # (E, B, n_out)
        scale = max(float(oracle[k].abs().max()), 1e-300)
        err = float(((flat - oracle[k]).abs() / torch.clamp(oracle[k].abs(), min=scale)).max())
        assert err <= RTOL, f"unmixed order {k}: relative error {err:.3g}"
    return u


def _cnn2d():
    torch.manual_seed(12)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2),
        nn.BatchNorm2d(4), nn.SiLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 2 * 2, 3),
    ).double().eval()
    with torch.no_grad():
        net[3].running_mean.uniform_(-0.3, 0.3)
        net[3].running_var.uniform_(0.5, 1.5)
    return net


def test_unmixed_image_inputs():
    at = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _check_unmixed(_cnn2d(), at, 4, [0, 17, 63, 64 + 45, 127])


def test_unmixed_signal_inputs():
    torch.manual_seed(13)
    net = nn.Sequential(nn.Conv1d(3, 4, 5, padding=2, dilation=1), nn.Sigmoid(), nn.MaxPool1d(2),
                        nn.Conv1d(4, 2, 3, stride=2), nn.Softplus(), nn.Flatten(), nn.Linear(2 * 3, 2)).double().eval()
    at = torch.randn(3, 3, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _check_unmixed(net, at, 5, [0, 5, 16 + 8, 47])


def test_unmixed_mlp_agrees_with_autograd_and_mixed_mode():
    net = mlp(12, 16, 4, "tanh", n_out=2, seed=14)
    at = torch.randn(3, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.5
    u = _check_unmixed(net, at, 5, [0, 11])
    small = mlp(3, 16, 3, "sine", seed=15)
    pts = torch.tensor([[0.1, -0.4, 0.3], [0.5, 0.2, -0.1]], dtype=torch.float64)
    um = discovery.expand(small, pts, 5, mixed=False)
    m = discovery.expand(small, pts, 5)
    for k in range(6):
        for i in range(3):
            alpha = tuple(k if j == i else 0 for j in range(3))
            torch.testing.assert_close(um.unmixed(k)[:, :, i], m.derivative(alpha), rtol=1e-12, atol=1e-12)
    assert u.unmixed(0).shape == (3, 2, 12)


# -- CUDA ---------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
def test_cuda_matches_cpu():
    net = mlp(2, 32, 4, "tanh", n_out=2, seed=16)
    at = torch.tensor([[0.1, 0.2], [-0.3, 0.5]], dtype=torch.float64)
    cpu = discovery.expand(net, at, 6)
    gpu = discovery.expand(net.cuda(), at.cuda(), 6, device="cuda")
    assert gpu.coefficients.is_cuda
    torch.testing.assert_close(gpu.coefficients.cpu(), cpu.coefficients, rtol=1e-12, atol=1e-13)


@pytest.mark.cuda
@cuda
def test_cuda_unmixed_matches_cpu():
    net = _cnn2d()
    at = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    cpu = discovery.expand(net, at, 4, mixed=False)
    gpu = discovery.expand(net.cuda(), at.cuda(), 4, mixed=False)
    torch.testing.assert_close(gpu.unmixed(4).cpu(), cpu.unmixed(4), rtol=1e-12, atol=1e-12)


def test_replacing_a_submodule_invalidates_the_cached_graph():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    at = torch.tensor([[0.1, -0.2]], dtype=torch.float64)
    discovery.expand(net, at, 2)
    net[0] = torch.nn.Linear(2, 4).double()  # same class and settings, new weights
    fresh = discovery.expand(net, at, 2)
    x = at.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    torch.testing.assert_close(fresh.derivative((0, 0))[0, 0], net(at)[0, 0].detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(fresh.derivative((1, 0))[0, 0], grad[0, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(fresh.derivative((0, 1))[0, 0], grad[0, 1], rtol=1e-12, atol=0)
