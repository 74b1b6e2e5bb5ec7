"""Polynomial surrogates: the torch module and the NumPy function reproduce the expansion exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from discovery.engine import expand
from discovery.errors import ExpansionError
from discovery.surrogate import PolynomialModule, expansion_size, to_numpy_function


def _net(p: int, n_out: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(p, 16), nn.Tanh(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, n_out)).double()


@pytest.mark.parametrize("p, n_out, order", [(1, 1, 3), (1, 2, 9), (2, 1, 5), (3, 2, 4)])
def test_module_and_numpy_function_equal_expansion_call(p, n_out, order):
    net = _net(p, n_out, seed=p + order)
    gen = torch.Generator().manual_seed(1)
    centers = torch.rand(3, p, generator=gen, dtype=torch.float64) - 0.5
    e = expand(net, centers, order)
    x = torch.rand(50, p, generator=gen, dtype=torch.float64) * 2 - 1
    expected = e(x)  # (B, M, n_out)
    for index in range(3):
        module = PolynomialModule(e, index)
        got = module(x).reshape(50, n_out)
        torch.testing.assert_close(got, expected[index], rtol=0, atol=1e-12)
        numpy_fn = to_numpy_function(e, index)
        np.testing.assert_allclose(numpy_fn(x.numpy()).reshape(50, n_out), got.numpy(), rtol=0, atol=1e-12)


def test_output_shape_follows_the_network():
    net = _net(2, 1, seed=0)
    e = expand(net, [0.1, 0.2], 3)
    module = PolynomialModule(e)
    x = torch.zeros(4, 2, dtype=torch.float64)
    assert module(x).shape == net(x).shape == (4, 1)
    assert module(x[0]).shape == (1,)
    squeezed = nn.Sequential(_net(2, 1, seed=0), nn.Flatten(0))
    e2 = expand(squeezed, [0.1, 0.2], 3)
    assert PolynomialModule(e2)(x).shape == squeezed(x).shape == (4,)


def test_float32_module_is_close_and_smaller():
    net = _net(1, 1, seed=3)
    e = expand(net, [0.0], 3)
    m64, m32 = PolynomialModule(e), PolynomialModule(e, dtype=torch.float32)
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)[:, None]
    assert m32(x.float()).dtype == torch.float32
    torch.testing.assert_close(m32(x.float()).double(), m64(x), rtol=0, atol=1e-5)
    assert m32.nbytes * 2 == m64.nbytes == 8 * (1 + 4)


def test_sizes_compare_polynomial_with_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    sizes = expansion_size(expand(net, [0.0], 3), net)
    assert sizes["polynomial_bytes"] == 4 * (1 + 4)  # float32 centre + four coefficients
    assert sizes["network_bytes"] == 4 * sum(t.numel() for t in net.parameters())
    assert sizes["ratio"] > 100
    assert sizes["polynomial_file_bytes"] < sizes["network_file_bytes"]


def test_bad_index_and_bad_input_say_what_to_pass():
    e = expand(_net(2, 1, seed=0), [[0.0, 0.0], [0.5, 0.5]], 2)
    with pytest.raises(ExpansionError, match="index between 0 and 1"):
        PolynomialModule(e, 5)
    with pytest.raises(ExpansionError, match="last axis must hold the 2 input"):
        PolynomialModule(e)(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ExpansionError, match="mixed=True"):
        to_numpy_function(object())
