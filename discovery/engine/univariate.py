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

import functools
import math

import numpy as np
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
    "tanh_at",
    "sigmoid_at",
    "sin_cos_at",
    "exp_at",
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


@functools.lru_cache(maxsize=None)
def _autonomous_table(rhs: tuple, order: int) -> np.ndarray:
    """Coefficients of ``Q_k / k!`` (row ``k - 1``, lowest power first) for ``k = 1..order``.

    For ``y' = R(y)`` with the polynomial ``R`` given by ``rhs`` (integer coefficients, lowest
    first), every derivative factors as ``y^(k) = R(y) Q_k(y)``: ``Q_1 = 1`` and, since
    ``(R Q_k)' = (R' Q_k + R Q_k') R``, ``Q_{k+1} = R' Q_k + R Q_k'``. The recursion runs in
    exact integers; only the final division by ``k!`` rounds.
    """
    r = [int(v) for v in rhs]
    dr = _poly_derivative(r)
    q = [1]
    rows = []
    for k in range(1, order + 1):
        rows.append([v / math.factorial(k) for v in q])
        q = _poly_add(_poly_mul(dr, q), _poly_mul(r, _poly_derivative(q)))
    width = max(len(row) for row in rows)
    return np.array([row + [0.0] * (width - len(row)) for row in rows], dtype=np.float64)


def _poly_derivative(a):
    return [i * a[i] for i in range(1, len(a))] or [0]


def _poly_mul(a, b):
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _poly_add(a, b):
    out = [0] * max(len(a), len(b))
    for i, x in enumerate(a):
        out[i] += x
    for i, x in enumerate(b):
        out[i] += x
    return out


_TABLE_TENSORS: dict = {}


def _table_tensors(rhs: tuple, order: int, dtype: torch.dtype, device: torch.device):
    """:func:`_autonomous_table` as tensors, split into its constant column and the rest
    (cached per dtype and device: every layer of every expansion uses them)."""
    key = (rhs, order, dtype, device)
    hit = _TABLE_TENSORS.get(key)
    if hit is None:
        table = torch.as_tensor(_autonomous_table(rhs, order), dtype=dtype, device=device)
        hit = (table[:, :1].contiguous(), table[:, 1:].contiguous())
        _TABLE_TENSORS[key] = hit
    return hit


def _autonomous_at(y0: torch.Tensor, r0: torch.Tensor, rhs: tuple, order: int, out=None) -> torch.Tensor:
    """``y^(k) / k!`` for ``y' = R(y)``, from ``y0`` and the accurately computed ``r0 = R(y0)``.

    ``y^(k) = R(y) Q_k(y)`` with integer polynomials ``Q_k``; evaluating the factor ``R(y)``
    from a formula that does not cancel (``sech^2`` rather than ``1 - tanh^2``) keeps every
    coefficient accurate to round-off relative to its own size, far into the tails. ``out``:
    an ``(order + 1, *y0.shape)`` tensor whose row 0 already is ``y0`` (written in place).
    """
    if out is None:
        out = y0.new_empty((order + 1, *y0.shape))
        out[0] = y0
    if order == 0:
        return out
    constant, table = _table_tensors(rhs, order, y0.dtype, y0.device)
    flat = y0.reshape(1, -1)
    if table.shape[1]:
        # Q_k(y) for every k at once: powers y, y^2, ... by a running product, then one addmm.
        powers = flat.expand(table.shape[1], flat.shape[1]).cumprod(0)
        q = torch.addmm(constant, table, powers)
    else:
        q = constant.expand(order, flat.shape[1])
    if torch.is_grad_enabled() and (y0.requires_grad or r0.requires_grad):
        out[1:] = q.view(order, *y0.shape) * r0  # autograd cannot see through out=
    else:
        torch.mul(q.view(order, *y0.shape), r0, out=out[1:])
    return out


def tanh_at(x0: torch.Tensor, order: int) -> torch.Tensor:
    """``tanh^(k)(x0) / k!`` for ``k <= order`` (``y' = 1 - y^2``)."""
    if torch.is_grad_enabled() and x0.requires_grad:
        return _autonomous_at(torch.tanh(x0), torch.cosh(x0).pow(-2), (1, 0, -1), order)
    out = x0.new_empty((order + 1, *x0.shape))
    y = torch.tanh(x0, out=out[0])
    return _autonomous_at(y, torch.cosh(x0).pow_(-2), (1, 0, -1), order, out)


def sigmoid_at(x0: torch.Tensor, order: int) -> torch.Tensor:
    """``sigmoid^(k)(x0) / k!`` for ``k <= order`` (``y' = y - y^2``)."""
    y = torch.sigmoid(x0)
    return _autonomous_at(y, y * torch.sigmoid(-x0), (0, 1, -1), order)


def sin_cos_at(x0: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin^(k)(x0) / k!, cos^(k)(x0) / k!)`` for ``k <= order``.

    The derivatives cycle through ``sin, cos, -sin, -cos``; each coefficient is one of the two
    values times ``+-1/k!``, so no rounding accumulates with the order.
    """
    s, c = torch.sin(x0), torch.cos(x0)
    base = torch.stack([s, c, -s, -c])
    k = torch.arange(order + 1, device=x0.device)
    inv_fact = _inverse_factorials(x0, order)
    return base[k % 4] * inv_fact, base[(k + 1) % 4] * inv_fact


def exp_at(x0: torch.Tensor, order: int) -> torch.Tensor:
    """``exp(x0) / k!`` for ``k <= order``."""
    return torch.exp(x0).unsqueeze(0) * _inverse_factorials(x0, order)


def _inverse_factorials(like: torch.Tensor, order: int) -> torch.Tensor:
    """``1 / k!`` for ``k <= order``, shaped ``(order + 1, 1, ...)`` to broadcast against ``like``."""
    values = [1.0 / math.factorial(k) for k in range(order + 1)]
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(-1, *([1] * like.ndim))


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
