"""The HOPE paper's backward rule for MLPs, implemented as the paper states it (sections 2-3).

Derivatives of one output ``y`` flow backwards as ``v_m = M_{m+1} v_{m+1}``, where ``v_m`` holds
the unmixed derivatives ``d^k y / d(y^(m)_i)^k`` (k = 1..n) of every unit of layer m:

- output unit (Eq. 24): ``v = [1, 0, ..., 0]``;
- linear layer (Eq. 29): ``M = diag(W^T, (W^T)^{o2}, ..., (W^T)^{on})`` (Hadamard powers);
- activation layer (Eqs. 9, 14, 40): the lower-triangular Faa di Bruno matrix whose block
  ``(k, j)`` is the partial Bell polynomial ``B_{k,j}(s', s'', ...)`` of the activation's
  derivatives, a diagonal matrix per block;
- at the input (Eqs. 30-31): mixed derivatives from the first linear layer,
  ``d^k y / dx_{i1}..dx_{ik} = sum_j W_{j,i1} ... W_{j,ik} d^k y / dz_j^k``.

Activation derivatives use the paper's own recurrences: sigmoid (Eq. 49), tanh (Eq. 55) and
sine (Eq. 41). The linear-layer rule keeps only unmixed derivatives of the hidden units, so it
drops their cross terms: it is exact for one hidden layer and not beyond.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from discovery.nn import Sine

__all__ = ["activation_derivatives", "paper_unmixed", "paper_mixed"]


def _sigmoid_matrix(n: int) -> torch.Tensor:
    """B of Eq. 45/49: ``s^(k) = sum_i B[k, i] s^(i+1)`` (0-based)."""
    B = torch.zeros(n + 1, n + 2, dtype=torch.float64)
    B[0, 1] = 1.0  # row k = 0: s itself; column i holds s^i
    for k in range(1, n + 1):
        for j in range(1, k + 2):
            B[k, j] = j * B[k - 1, j] - (j - 1) * B[k - 1, j - 1]
    return B


def _tanh_matrix(n: int) -> torch.Tensor:
    """C of Eq. 51/55 (1-based in the paper): rows 1, t, t', t'', ...; columns t^0, t^1, ..."""
    size = n + 2
    C = torch.zeros(size + 1, size + 2, dtype=torch.float64)  # 1-based, padded
    C[1, 1] = 1.0
    C[2, 2] = 1.0
    for i in range(3, size + 1):
        for j in range(1, i + 1):
            C[i, j] = j * C[i - 1, j + 1] - (j - 2) * C[i - 1, j - 1]
    return C[1 : size + 1, 1 : size + 1]


def activation_derivatives(module: nn.Module, z: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``[s^(1)(z), ..., s^(n)(z)]`` for Tanh, Sigmoid and Sine by the paper's recurrences."""
    if isinstance(module, nn.Sigmoid):
        s = torch.sigmoid(z)
        B = _sigmoid_matrix(n)
        powers = torch.stack([s**i for i in range(n + 2)])
        return [torch.einsum("i,i...->...", B[k], powers) for k in range(1, n + 1)]
    if isinstance(module, nn.Tanh):
        t = torch.tanh(z)
        C = _tanh_matrix(n)
        powers = torch.stack([t**i for i in range(n + 2)])
        # row 0 is the constant 1, row 1 is t, row k + 1 is t^(k)
        return [torch.einsum("i,i...->...", C[k + 1], powers) for k in range(1, n + 1)]
    if isinstance(module, Sine):
        w = module.w0
        u = w * z
        cycle = [torch.cos(u), -torch.sin(u), -torch.cos(u), torch.sin(u)]
        return [w**k * cycle[(k - 1) % 4] for k in range(1, n + 1)]
    raise TypeError(f"paper rule: no derivative recurrence for {type(module).__name__}")


def _bell_blocks(d: list[torch.Tensor], n: int) -> dict:
    """Partial Bell polynomials ``B_{k,j}(d1, d2, ...)`` for 1 <= j <= k <= n (elementwise)."""
    one = torch.ones_like(d[0])
    B = {(0, 0): one}
    for k in range(1, n + 1):
        B[(k, 0)] = torch.zeros_like(one)
        for j in range(1, k + 1):
            total = torch.zeros_like(one)
            for i in range(1, k - j + 2):
                prev = B.get((k - i, j - 1))
                if prev is not None:
                    total = total + math.comb(k - 1, i - 1) * d[i - 1] * prev
            B[(k, j)] = total
    return B


def _backward(model: nn.Sequential, x0: torch.Tensor, n: int, output: int):
    """Run the rule down to the first linear layer; returns (W1, v at its output)."""
    layers = list(model)
    if not layers or not isinstance(layers[0], nn.Linear):
        raise TypeError("paper rule: the model must be nn.Sequential starting with nn.Linear")
    inputs = []
    h = x0.to(torch.float64)
    with torch.no_grad():
        for layer in layers:
            inputs.append(h)
            h = layer(h)
    v = [torch.zeros(h.shape[-1], dtype=torch.float64) for _ in range(n)]
    v[0][output] = 1.0
    for layer, z in zip(reversed(layers[1:]), reversed(inputs[1:])):
        if isinstance(layer, nn.Linear):
            Wt = layer.weight.detach().to(torch.float64).T
            v = [(Wt ** (k + 1)) @ v[k] for k in range(n)]
        else:
            d = activation_derivatives(layer, z, n)
            B = _bell_blocks(d, n)
            v = [sum(B[(k, j)] * v[j - 1] for j in range(1, k + 1)) for k in range(1, n + 1)]
    return layers[0].weight.detach().to(torch.float64), v


def paper_unmixed(model: nn.Sequential, x0, n: int, output: int = 0) -> torch.Tensor:
    """``(n, p)``: row k - 1 holds ``d^k y / dx_i^k`` for every input ``i`` (Eqs. 28-29)."""
    W1, v = _backward(model, torch.as_tensor(x0), n, output)
    return torch.stack([(W1.T ** (k + 1)) @ v[k] for k in range(n)])


def paper_mixed(model: nn.Sequential, x0, n: int, output: int = 0) -> dict[tuple[int, ...], float]:
    """All partial derivatives ``alpha -> d^alpha y`` with ``1 <= |alpha| <= n`` (Eqs. 30-31)."""
    W1, v = _backward(model, torch.as_tensor(x0), n, output)
    p = W1.shape[1]
    result = {}
    for k in range(1, n + 1):
        for alpha in itertools.product(range(k + 1), repeat=p):
            if sum(alpha) != k:
                continue
            weight = torch.ones(W1.shape[0], dtype=torch.float64)
            for i, a in enumerate(alpha):
                weight = weight * W1[:, i] ** a
            result[alpha] = float(weight @ v[k - 1])
    return result
