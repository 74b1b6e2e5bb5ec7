"""Univariate Taylor coefficients of activation functions at given points.

Every function here maps ``(x0, order)`` to a tensor ``(order + 1, *x0.shape)`` holding
``f^(k)(x0) / k!``. They are built from the jet recurrences of
:mod:`discovery.engine.univariate`; piecewise functions pick the branch of ``x0`` (exact
almost everywhere, like autograd).
"""

from __future__ import annotations

import math

import torch

from discovery.engine import univariate as U

__all__ = [
    "tanh", "sigmoid", "sin", "cos", "exp", "log", "sqrt", "reciprocal", "power",
    "sine", "relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "softsign", "abs_",
]


def tanh(x0, n):
    return U.tanh_at(x0, n)


def sigmoid(x0, n):
    return U.sigmoid_at(x0, n)


def sin(x0, n):
    return U.sin_cos_at(x0, n)[0]


def cos(x0, n):
    return U.sin_cos_at(x0, n)[1]


def exp(x0, n):
    return U.exp_at(x0, n)


def log(x0, n):
    return U.log(U.variable(x0, n))


def reciprocal(x0, n):
    return U.reciprocal(U.variable(x0, n))


def power(exponent: float):
    """Coefficients of ``x ** exponent`` for a real exponent."""

    def coefficients(x0, n):
        return U.power(U.variable(x0, n), float(exponent))

    return coefficients


sqrt = power(0.5)


def sine(w0: float):
    """Coefficients of ``sin(w0 * x)`` (SIREN activation)."""

    def coefficients(x0, n):
        # d^k/dx^k sin(w0 x) = w0^k sin^(k)(w0 x)
        scale = w0 ** torch.arange(n + 1, dtype=x0.dtype, device=x0.device)
        return U.sin_cos_at(w0 * x0, n)[0] * scale.reshape(-1, *([1] * x0.ndim))

    return coefficients


def _select(mask, when_true, when_false):
    return torch.where(mask.unsqueeze(0), when_true, when_false)


def relu(x0, n):
    return _select(x0 > 0, U.variable(x0, n), torch.zeros_like(U.variable(x0, n)))


def leaky_relu(slope: float):
    def coefficients(x0, n):
        v = U.variable(x0, n)
        return _select(x0 >= 0, v, slope * v)

    return coefficients


def elu(alpha: float):
    def coefficients(x0, n):
        v = U.variable(x0, n)
        negative = alpha * U.exp_at(x0, n)
        negative[0] = negative[0] - alpha
        return _select(x0 > 0, v, negative)

    return coefficients


def silu(x0, n):
    return U.mul(U.variable(x0, n), U.sigmoid_at(x0, n))


def gelu(approximate: str = "none"):
    """Coefficients of GELU, exact (erf) or with its tanh approximation."""

    def exact(x0, n):
        v = U.variable(x0, n)
        phi = U.erf(v / math.sqrt(2.0)) * 0.5
        phi[0] = phi[0] + 0.5
        return U.mul(v, phi)

    def tanh_approx(x0, n):
        v = U.variable(x0, n)
        inner = (v + 0.044715 * U.mul(v, U.mul(v, v))) * math.sqrt(2.0 / math.pi)
        t = U.tanh(inner) * 0.5
        t[0] = t[0] + 0.5
        return U.mul(v, t)

    if approximate == "none":
        return exact
    if approximate == "tanh":
        return tanh_approx
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def softplus(beta: float = 1.0, threshold: float = 20.0):
    """``log(1 + exp(beta x)) / beta``, linear above ``threshold`` as in torch."""

    def coefficients(x0, n):
        v = U.variable(x0, n)
        value = torch.nn.functional.softplus(x0, beta=beta, threshold=threshold)
        smooth = U.integrate_derivative(v, U.sigmoid(beta * v), value)
        return _select(beta * x0 > threshold, v, smooth)

    return coefficients


def softsign(x0, n):
    v = U.variable(x0, n)
    sign = torch.where(x0 >= 0, 1.0, -1.0).to(x0)
    denominator = sign * v
    denominator[0] = denominator[0] + 1.0
    return U.mul(v, U.reciprocal(denominator))


def abs_(x0, n):
    sign = torch.where(x0 >= 0, 1.0, -1.0).to(x0)
    return sign * U.variable(x0, n)
