"""Univariate Taylor coefficients of elementary functions, by coefficient recurrences.

A *jet* here is a tensor whose first axis holds the Taylor coefficients ``a_0 .. a_n`` of a
function of one variable ``t`` (``a_k = a^(k)(0) / k!``); the other axes are elementwise.
``variable(x0, n)`` is the jet of ``t -> x0 + t``; feeding it to the functions below gives
``f^(k)(x0) / k!`` for every element of ``x0`` at once.

The recurrences follow from the ODE each function satisfies (``tanh' = 1 - tanh^2``,
``sigmoid' = s (1 - s)``, ``exp' = exp``, the ``sin``/``cos`` pair, ...), written for a jet
argument ``a``: if ``y' = g * a'`` then ``k y_k = sum_{j=1..k} j a_j g_{k-j}``. Each costs
``O(n^2)`` elementwise work and involves no division by factorials of large numbers.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "variable",
    "constant",
    "mul",
    "reciprocal",
    "exp",
    "log",
    "sin_cos",
    "tanh",
    "sigmoid",
    "power",
    "erf",
    "integrate_derivative",
]


def variable(x0: torch.Tensor, order: int) -> torch.Tensor:
    """Jet of ``t -> x0 + t`` truncated at ``order``."""
    jet = x0.new_zeros((order + 1, *x0.shape))
    jet[0] = x0
    if order >= 1:
        jet[1] = 1.0
    return jet


def constant(c: torch.Tensor, order: int) -> torch.Tensor:
    """Jet of a constant."""
    jet = c.new_zeros((order + 1, *c.shape))
    jet[0] = c
    return jet


def _weights(k: int, like: torch.Tensor) -> torch.Tensor:
    """``[1, 2, ..., k]`` shaped to broadcast against a jet slice of length ``k``."""
    w = torch.arange(1, k + 1, dtype=like.dtype, device=like.device)
    return w.reshape(k, *([1] * (like.ndim - 1)))


def _conv_term(a: torch.Tensor, g: torch.Tensor, k: int) -> torch.Tensor:
    """``(1/k) sum_{j=1..k} j a_j g_{k-j}``: the k-th coefficient of ``y`` when ``y' = g a'``."""
    j_a = _weights(k, a) * a[1 : k + 1]
    return (j_a * g[:k].flip(0)).sum(0) / k


def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Truncated product of two jets (Cauchy product)."""
    n = a.shape[0] - 1
    out = torch.empty(torch.broadcast_shapes(a.shape, b.shape), dtype=a.dtype, device=a.device)
    for k in range(n + 1):
        out[k] = (a[: k + 1] * b[: k + 1].flip(0)).sum(0)
    return out


def integrate_derivative(a: torch.Tensor, g: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """Jet of ``y`` with ``y(0) = y0`` and ``y' = g * a'`` where ``g`` is known in full."""
    y = torch.empty(torch.broadcast_shapes(a.shape, g.shape), dtype=a.dtype, device=a.device)
    y[0] = y0
    for k in range(1, a.shape[0]):
        y[k] = _conv_term(a, g, k)
    return y


def _ode(a: torch.Tensor, y0: torch.Tensor, rhs) -> torch.Tensor:
    """Jet of ``y`` with ``y' = rhs(y) * a'``, where ``rhs(y)[m]`` needs only ``y[:m+1]``."""
    n = a.shape[0] - 1
    y = a.new_zeros(a.shape)
    g = a.new_zeros(a.shape)
    y[0] = y0
    for k in range(1, n + 1):
        g[k - 1] = rhs(y, k - 1)
        y[k] = _conv_term(a, g, k)
    return y


def _square_coefficient(y: torch.Tensor, m: int) -> torch.Tensor:
    """Coefficient ``m`` of ``y^2`` (needs ``y[:m+1]``)."""
    return (y[: m + 1] * y[: m + 1].flip(0)).sum(0)


def exp(a: torch.Tensor) -> torch.Tensor:
    """``exp`` of a jet."""
    return _ode(a, torch.exp(a[0]), lambda y, m: y[m])


def tanh(a: torch.Tensor) -> torch.Tensor:
    """``tanh`` of a jet: ``y' = (1 - y^2) a'``."""

    def rhs(y, m):
        sq = _square_coefficient(y, m)
        return (1.0 - sq) if m == 0 else -sq

    return _ode(a, torch.tanh(a[0]), rhs)


def sigmoid(a: torch.Tensor) -> torch.Tensor:
    """Logistic sigmoid of a jet: ``y' = (y - y^2) a'``."""
    return _ode(a, torch.sigmoid(a[0]), lambda y, m: y[m] - _square_coefficient(y, m))


def sin_cos(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin, cos)`` of a jet, computed together: ``s' = c a'``, ``c' = -s a'``."""
    n = a.shape[0] - 1
    s = a.new_zeros(a.shape)
    c = a.new_zeros(a.shape)
    s[0], c[0] = torch.sin(a[0]), torch.cos(a[0])
    for k in range(1, n + 1):
        s[k] = _conv_term(a, c, k)
        c[k] = -_conv_term(a, s, k)
    return s, c


def reciprocal(a: torch.Tensor) -> torch.Tensor:
    """``1 / a`` of a jet (``a_0`` must be nonzero)."""
    n = a.shape[0] - 1
    y = a.new_zeros(a.shape)
    inv0 = 1.0 / a[0]
    y[0] = inv0
    for k in range(1, n + 1):
        y[k] = -(a[1 : k + 1] * y[:k].flip(0)).sum(0) * inv0
    return y


def log(a: torch.Tensor) -> torch.Tensor:
    """Natural logarithm of a jet (``a_0 > 0``): ``y' = a' / a``."""
    n = a.shape[0] - 1
    y = a.new_zeros(a.shape)
    y[0] = torch.log(a[0])
    for k in range(1, n + 1):
        # a_k = (1/k) sum_{j=1..k} j y_j a_{k-j}  solved for y_k
        acc = a[k].clone()
        if k > 1:
            j = _weights(k - 1, a)
            acc = acc - (j * y[1:k] * a[1:k].flip(0)).sum(0) / k
        y[k] = acc / a[0]
    return y


def power(a: torch.Tensor, r: float) -> torch.Tensor:
    """``a ** r`` for a real exponent ``r`` (``a_0 != 0``; for ``a_0 < 0`` as torch does)."""
    n = a.shape[0] - 1
    y = a.new_zeros(a.shape)
    y[0] = torch.pow(a[0], r)
    for k in range(1, n + 1):
        # a y' = r y a'  =>  k a_0 y_k = sum_{j=1..k} (r j - (k - j)) a_j y_{k-j}
        j = _weights(k, a)
        w = r * j - (k - j)
        y[k] = (w * a[1 : k + 1] * y[:k].flip(0)).sum(0) / (k * a[0])
    return y


def erf(a: torch.Tensor) -> torch.Tensor:
    """Error function of a jet: ``erf' = 2/sqrt(pi) exp(-a^2)``."""
    g = exp(-mul(a, a)) * (2.0 / math.sqrt(math.pi))
    return integrate_derivative(a, g, torch.erf(a[0]))
