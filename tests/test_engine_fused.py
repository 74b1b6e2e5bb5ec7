"""The fused (compiled) activation recurrences against nested autograd and against the
PyTorch composition they replace, in float64.

Each test that names the fused path also checks that it ran (a spy counts the kernel calls
that returned a result), so a silent fallback cannot pass for the fused kernels.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from torch import nn

import discovery
from discovery.engine import native
from discovery.engine.series import serial_run
from discovery.nn import Sine
from oracle import Lambda, all_partials, assert_partials_match, mlp, pure_partials

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="no C++ compiler: the engine runs its PyTorch composition instead")

RTOL = 1e-10

ACTS = {
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "sine": lambda: Sine(1.5),
    "cos": lambda: Lambda(torch.cos, "cos"),
    "exp": lambda: Lambda(lambda h: torch.exp(0.5 * h), "exp"),
}


def _net(p: int, act: str, width: int = 12, depth: int = 3, n_out: int = 2, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, fan_in = [], p
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), ACTS[act]()]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_out))
    return nn.Sequential(*layers).double().eval()


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the fused kernel calls that produced a series."""
    calls = []
    original = native.series

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        if out is not None:
            calls.append(args[0])
        return out

    monkeypatch.setattr(native, "series", spy)
    return calls


@pytest.fixture
def without_fused(monkeypatch):
    """Runs the engine with the fused kernels switched off (``DISCOVERY_NATIVE=0``)."""

    def switch():
        monkeypatch.setenv("DISCOVERY_NATIVE", "0")
        native._library.cache_clear()

    yield switch
    monkeypatch.delenv("DISCOVERY_NATIVE", raising=False)
    native._library.cache_clear()


def test_kernels_compile():
    assert native.available(), "a C++ compiler is on the path but the fused kernels did not build"


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("p,order", [(1, 8), (2, 6), (3, 4)])
def test_fused_matches_nested_autograd(one_thread, fused_calls, act, p, order):
    net = _net(p, act)
    at = torch.rand(3, p, generator=torch.Generator().manual_seed(p), dtype=torch.float64) * 2 - 1
    e = discovery.expand(net, at, order)
    assert len(fused_calls) == 3, f"the fused kernel ran {len(fused_calls)} times for 3 activation layers"
    assert_partials_match(e, all_partials(net, at, order), rtol=RTOL, what=f"{act} p={p} order={order}")


@pytest.mark.parametrize("act", ["tanh", "sine"])
def test_unmixed_fused_and_unit_directions_match_nested_autograd(one_thread, fused_calls, act):
    # The first Linear reads its weight's columns (unit directions); the rest run fused.
    net = _net(7, act, width=10)
    at = torch.rand(2, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 0.5
    e = discovery.expand(net, at, 6, mixed=False)
    assert fused_calls, "the fused kernel did not run"
    elements = list(range(7))
    oracle = pure_partials(net, at, elements, 6)  # (order + 1, elements, B, n_out)
    for k in range(7):
        ours = e.unmixed(k).permute(2, 0, 1)  # (elements, B, n_out)
        scale = float(oracle[k].abs().max())
        torch.testing.assert_close(ours, oracle[k], rtol=RTOL, atol=RTOL * scale)


def test_unit_direction_layer_equals_the_generic_linear_map(one_thread):
    # A Flatten in front hides the unit directions from the Linear layer: the generic path.
    net = _net(5, "tanh", width=9)
    generic = nn.Sequential(nn.Flatten(), *net)
    at = torch.rand(3, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = discovery.expand(net, at, 5, mixed=False).coefficients
    b = discovery.expand(generic, at, 5, mixed=False).coefficients
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13 * float(b.abs().max()))


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("p,order", [(1, 12), (2, 8), (4, 5)])
def test_fused_equals_the_composition_it_replaces(one_thread, without_fused, act, p, order):
    """Deeper and wider than nested autograd can check: both engine paths agree."""
    net = mlp(p, 24, 5, "tanh", n_out=2) if act == "tanh" else _net(p, act, width=24, depth=5)
    at = torch.rand(4, p, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    fused = discovery.expand(net, at, order).coefficients
    without_fused()
    assert not native.available()
    composed = discovery.expand(net, at, order).coefficients
    for k in range(order + 1):  # judged per total degree, on that degree's scale
        rows = torch.from_numpy(discovery.engine.monomials(p, order).sum(1) == k)
        scale = float(composed[:, rows].abs().max())
        torch.testing.assert_close(fused[:, rows], composed[:, rows], rtol=1e-11, atol=1e-11 * scale)


@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "sin", "cos", "exp"])
@pytest.mark.parametrize("x0", [-9.0, -2.5, 0.3, 4.0, 12.0])
def test_coefficients_stay_accurate_in_the_tails(kind, x0):
    # Against 40-digit Taylor coefficients (mpmath): each coefficient to round-off relative to
    # its own size, also where 1 - tanh^2 would cancel (the polynomial formula
    # tanh^(k) = sech^2 Q_k(tanh) loses up to 1e-10 there).
    mpmath = pytest.importorskip("mpmath")
    n = 12
    a = torch.zeros(n + 1, 1, dtype=torch.float64)
    a[0, 0], a[1, 0] = x0, 1.0
    fused = native.series(kind, a, 1, n)[:, 0].tolist()
    fn = {"tanh": mpmath.tanh, "sigmoid": lambda t: 1 / (1 + mpmath.exp(-t)), "sin": mpmath.sin,
          "cos": mpmath.cos, "exp": mpmath.exp}[kind]
    with mpmath.workdps(40):
        truth = mpmath.taylor(fn, mpmath.mpf(x0), n)
        errors = [abs((mpmath.mpf(f) - t) / t) for f, t in zip(fused, truth)]
    assert max(errors) < 1e-13, f"{kind} at {x0}: relative errors {[float(e) for e in errors]}"


def test_fused_declines_what_it_does_not_cover():
    a = torch.zeros(3, 4, dtype=torch.float64)
    assert native.series("tanh", a, 1, 65) is None  # order above the kernel's limit
    assert native.series("tanh", a.float(), 1, 2) is None  # float32 composes in PyTorch
    tracked = a.clone().requires_grad_(True)
    with torch.enable_grad():
        assert native.series("tanh", tracked, 1, 2) is None  # autograd cannot follow the kernel


def test_only_large_maps_get_the_callers_threads(monkeypatch):
    # A parallel region on a busy machine can wait a time slice for its second thread: an
    # expansion runs serially and lends the caller's threads to large linear maps only.
    seen = []
    linear = torch.nn.functional.linear

    def probe(z, w, *args, **kwargs):
        seen.append((w.shape[1], torch.get_num_threads()))
        return linear(z, w, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "linear", probe)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = nn.Sequential(nn.Linear(1, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 1)).double()
        at = torch.linspace(-1, 1, 600, dtype=torch.float64).reshape(-1, 1)  # 1,200 rows x 256 x 256
        discovery.expand(net, at, 1)
        assert seen == [(1, 1), (256, 2), (256, 1)], f"(input features, threads) per linear map: {seen}"
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with serial_run():
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
