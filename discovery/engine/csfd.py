"""Complex-step engine: derivatives of networks through multicomplex arithmetic (HoD-Net).

A multicomplex number of order ``k`` has ``2^k`` real components, one per product of distinct
imaginary units ``i_S = prod_{j in S} i_j`` (``S`` a subset of ``{1..k}``, stored as a bit mask),
with ``i_j^2 = -1`` and commuting units, so ``i_S i_T = (-1)^{|S & T|} i_{S ^ T}``. A tensor of
shape ``(2^k, *shape)`` holds one component per leading index. This is the real block
(Cauchy-Riemann) form of the paper: linear layers act on every component separately (the
``[[W, 0], [0, W]]`` blocks), biases touch the real component only, and products mix components
through the sign table above.

Perturbing the input by ``h * d * (i_1 + ... + i_k)`` makes the ``i_1 ... i_k`` component of the
output equal to ``h^k`` times the ``k``-th derivative of ``t -> f(at + t d)``: no component is
ever subtracted from another, so there is no cancellation and ``h`` can be tiny.

Step size: ``h = 2**-66`` (about ``1.4e-20``; smaller for very high orders so ``h^k`` stays far
from the float64 underflow). Elementwise functions are evaluated as their Taylor series in the
imaginary part ``eps`` (all of whose components carry at least one factor ``h``), kept to
``eps^k``; the first neglected terms change a component ``i_S`` by a relative
``O((h |d| L)^2)`` (``L`` the network's local scale), below ``1e-38`` at this ``h`` for any
sane network, so the results are exact to round-off. ``h`` is a power of two, so scaling the
direction by ``h`` and dividing the result by ``h^k`` are exact too.

Hessian-vector products follow the complex-step perturbed backpropagation (CSFD-BP): one
complex forward pass from ``x + i h v``, then backpropagation of the imaginary output, which by
Cauchy-Riemann is ``h * H v``.

This engine shares no code with the Taylor engine: it is the independent check of it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from discovery.errors import ExpansionError, UnsupportedLayerError
from discovery.nn import Sine

__all__ = [
    "csfd_derivative",
    "csfd_directional_derivatives",
    "csfd_hvp",
    "csfd_laplacian",
    "csfd_step",
    "supported_layers",
]


# -- multicomplex algebra -----------------------------------------------------------------------

_TABLES: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _tables(k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``xor[S, U] = U ^ S`` and ``sign[S, U] = (-1)^{|S & (U ^ S)|}`` for ``2^k`` components."""
    key = (k, str(device))
    if key not in _TABLES:
        n = 1 << k
        s = np.arange(n)[:, None]
        u = np.arange(n)[None, :]
        t = s ^ u
        bits = np.vectorize(lambda v: bin(v).count("1"))(s & t)
        sign = np.where(bits % 2 == 0, 1.0, -1.0)
        _TABLES[key] = (torch.as_tensor(t, device=device), torch.as_tensor(sign, device=device))
    return _TABLES[key]


def _order_of(z: torch.Tensor) -> int:
    return int(z.shape[0]).bit_length() - 1


def mc_mul(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Product of two multicomplex tensors of the same order: ``(2^k, ...)`` each.

    ``out[U] = sum_S sign(S, U ^ S) z[S] w[U ^ S]``: the real block (Cauchy-Riemann) matrix of
    ``z`` applied to ``w``, one pass per component of ``z`` (a single gather of all ``4^k``
    products moves more memory than it saves).
    """
    n = z.shape[0]
    xor, sign = _tables(_order_of(z), z.device)
    sign = sign.to(z.dtype)
    z, w = torch.broadcast_tensors(z, w)
    tail = (1,) * (z.ndim - 1)
    out = None
    for s in range(n):
        term = sign[s].reshape(n, *tail) * z[s].unsqueeze(0) * w[xor[s]]
        out = term if out is None else out + term
    return out


def mc_series(z: torch.Tensor, derivatives: list[torch.Tensor]) -> torch.Tensor:
    """``f(z) = sum_n f^(n)(a) eps^n / n!`` with ``a`` the real part, ``eps`` the rest.

    ``derivatives[n]`` is ``f^(n)`` evaluated at the real part (same shape as ``z[0]``); the
    series is kept to the order of ``z`` (see the module notes for why that is exact).
    """
    k = _order_of(z)
    eps = z.clone()
    eps[0] = 0
    out = torch.zeros_like(z)
    out[0] = derivatives[k] / math.factorial(k)
    for n in range(k - 1, -1, -1):  # Horner's scheme in eps
        out = mc_mul(out, eps)
        out[0] = out[0] + derivatives[n] / math.factorial(n)
    return out


def _scale(z: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply every component by the real tensor ``factor``."""
    return z * factor.unsqueeze(0)


# -- derivative sequences of elementwise functions at real points -------------------------------

def _poly_derivatives(value: torch.Tensor, k: int, step: np.ndarray) -> list[torch.Tensor]:
    """``d^n/dx^n g(x)`` for ``n <= k`` when ``g' = step(g)`` is a polynomial in ``g``.

    ``step`` holds the polynomial's coefficients, lowest power first.
    """
    coeffs = np.array([0.0, 1.0])  # g itself, as a polynomial in g
    out = []
    for _ in range(k + 1):
        acc = torch.zeros_like(value)
        for c in coeffs[::-1]:
            acc = acc * value + float(c)
        out.append(acc)
        deriv = np.polynomial.polynomial.polyder(coeffs) if len(coeffs) > 1 else np.zeros(1)
        coeffs = np.polynomial.polynomial.polymul(deriv, step)
    return out


def _tanh_derivatives(a: torch.Tensor, k: int) -> list[torch.Tensor]:
    # tanh' = 1 - tanh^2: every derivative is a polynomial in tanh.
    return _poly_derivatives(torch.tanh(a), k, np.array([1.0, 0.0, -1.0]))


def _sigmoid_derivatives(a: torch.Tensor, k: int) -> list[torch.Tensor]:
    # sigmoid' = s (1 - s)
    return _poly_derivatives(torch.sigmoid(a), k, np.array([0.0, 1.0, -1.0]))


def _hermite_gauss(a: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Derivatives of the standard normal density: ``phi^(m) = (-1)^m He_m(x) phi(x)``."""
    phi = torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    he = [torch.ones_like(a), a]
    for m in range(1, k):
        he.append(a * he[m] - m * he[m - 1])
    return [(-1) ** m * he[m] * phi for m in range(k + 1)]


def _silu_derivatives(a, k):
    s = _sigmoid_derivatives(a, k)
    return [a * s[0]] + [a * s[n] + n * s[n - 1] for n in range(1, k + 1)]


def _gelu_derivatives(a, k):
    phi = _hermite_gauss(a, k)
    cdf = [0.5 * (1 + torch.erf(a / math.sqrt(2)))] + phi[:k]
    return [a * cdf[0]] + [a * cdf[n] + n * cdf[n - 1] for n in range(1, k + 1)]


def _softsign_derivatives(a, k):
    pos = a >= 0
    d = 1 + a.abs()
    out = [a / d]
    for n in range(1, k + 1):
        sign = torch.where(pos, torch.full_like(a, (-1.0) ** (n + 1)), torch.ones_like(a))
        out.append(sign * math.factorial(n) / d ** (n + 1))
    return out


def _elementwise(derivs: Callable[[torch.Tensor, int], list[torch.Tensor]]):
    def rule(module, z):
        return mc_series(z, derivs(z[0], _order_of(z)))
    return rule


def _sine_rule(module: Sine, z):
    w = module.w0
    a = z[0]
    derivs = [w**n * torch.sin(w * a + n * math.pi / 2) for n in range(_order_of(z) + 1)]
    return mc_series(z, derivs)


def _softplus_rule(module: nn.Softplus, z):
    beta, threshold = float(module.beta), float(module.threshold)
    a, k = z[0], _order_of(z)
    s = _sigmoid_derivatives(beta * a, max(k - 1, 0))
    derivs = [F.softplus(a, beta, threshold)] + [beta ** (n - 1) * s[n - 1] for n in range(1, k + 1)]
    linear = beta * a > threshold  # PyTorch switches to the identity there
    derivs = [torch.where(linear, a if n == 0 else torch.full_like(a, float(n == 1)), d)
              for n, d in enumerate(derivs)]
    return mc_series(z, derivs)


def _elu_rule(module: nn.ELU, z):
    alpha = float(module.alpha)
    a, k = z[0], _order_of(z)
    e = torch.exp(torch.clamp(a, max=0.0))
    pos = a > 0
    derivs = [torch.where(pos, a, alpha * (e - 1))]
    derivs += [torch.where(pos, torch.full_like(a, float(n == 1)), alpha * e) for n in range(1, k + 1)]
    return mc_series(z, derivs)


def _gelu_rule(module: nn.GELU, z):
    if module.approximate == "none":
        return mc_series(z, _gelu_derivatives(z[0], _order_of(z)))
    # 0.5 z (1 + tanh(c (z + 0.044715 z^3))), composed in multicomplex arithmetic
    c = math.sqrt(2.0 / math.pi)
    inner = c * (z + 0.044715 * mc_mul(mc_mul(z, z), z))
    t = mc_series(inner, _tanh_derivatives(inner[0], _order_of(z)))
    t[0] = t[0] + 1
    return 0.5 * mc_mul(z, t)


def _piecewise_linear(slope_fn):
    def rule(module, z):
        return _scale(z, slope_fn(module, z[0]))
    return rule


# -- linear layers: every component separately, the bias on the real one ------------------------

def _per_component(z: torch.Tensor, fn) -> torch.Tensor:
    n, b = z.shape[:2]
    out = fn(z.reshape(n * b, *z.shape[2:]))
    return out.reshape(n, b, *out.shape[1:])


def _add_bias(z: torch.Tensor, bias, dims_after_channel: int) -> torch.Tensor:
    if bias is None:
        return z
    z = z.clone()
    z[0] = z[0] + bias.to(z.dtype).reshape(-1, *([1] * dims_after_channel))
    return z


def _linear_rule(module: nn.Linear, z):
    w = module.weight.to(z.dtype)
    return _add_bias(_per_component(z, lambda x: F.linear(x, w)), module.bias, 0)


def _conv_rule(module, z):
    w = module.weight.to(z.dtype)
    out = _per_component(z, lambda x: module._conv_forward(x, w, None))
    return _add_bias(out, module.bias, z.ndim - 3)


def _batch_norm_rule(module, z):
    if module.running_mean is None:
        raise UnsupportedLayerError(f"{type(module).__name__} without running statistics has no complex-step "
                                    "rule; build it with track_running_stats=True")
    scale = (module.running_var.to(z.dtype) + module.eps).rsqrt()
    shift = -module.running_mean.to(z.dtype) * scale
    if module.affine:
        scale = scale * module.weight.to(z.dtype)
        shift = shift * module.weight.to(z.dtype) + module.bias.to(z.dtype)
    dims = z.ndim - 3
    out = z * scale.reshape(-1, *([1] * dims))
    return _add_bias(out, shift, dims)


def _max_pool_rule(module, z):
    pool = F.max_pool1d if isinstance(module, nn.MaxPool1d) else F.max_pool2d
    _, idx = pool(z[0], module.kernel_size, module.stride, module.padding, module.dilation,
                  ceil_mode=module.ceil_mode, return_indices=True)
    n, b, c = z.shape[:3]
    flat = z.reshape(n, b, c, -1)
    picked = flat.gather(3, idx.reshape(1, b, c, -1).expand(n, -1, -1, -1))
    return picked.reshape(n, *idx.shape)


def _module_map(module, z):
    return _per_component(z, module)


RULES: dict[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    nn.Linear: _linear_rule,
    nn.Conv1d: _conv_rule,
    nn.Conv2d: _conv_rule,
    nn.BatchNorm1d: _batch_norm_rule,
    nn.BatchNorm2d: _batch_norm_rule,
    nn.MaxPool1d: _max_pool_rule,
    nn.MaxPool2d: _max_pool_rule,
    nn.AvgPool1d: _module_map,
    nn.AvgPool2d: _module_map,
    nn.AdaptiveAvgPool1d: _module_map,
    nn.AdaptiveAvgPool2d: _module_map,
    nn.Flatten: _module_map,
    nn.Unflatten: _module_map,
    nn.Identity: lambda m, z: z,
    nn.Dropout: lambda m, z: z,
    nn.Tanh: _elementwise(_tanh_derivatives),
    nn.Sigmoid: _elementwise(_sigmoid_derivatives),
    nn.SiLU: _elementwise(_silu_derivatives),
    nn.Softsign: _elementwise(_softsign_derivatives),
    nn.GELU: _gelu_rule,
    nn.ELU: _elu_rule,
    nn.Softplus: _softplus_rule,
    Sine: _sine_rule,
    nn.ReLU: _piecewise_linear(lambda m, a: (a > 0).to(a.dtype)),
    nn.LeakyReLU: _piecewise_linear(lambda m, a: torch.where(a > 0, torch.ones_like(a), torch.full_like(a, float(m.negative_slope)))),
}
# Flatten/Unflatten/pooling act on the batch dimension the multicomplex axis is folded into.


def supported_layers() -> list[str]:
    """Names of the layer types the complex-step engine can walk."""
    return sorted(t.__name__ for t in RULES) + ["Sequential"]


def _forward(model: nn.Module, z: torch.Tensor, call: str, where: str = "model") -> torch.Tensor:
    if isinstance(model, nn.Sequential):
        for i, layer in enumerate(model):
            z = _forward(layer, z, call, f"{where}[{i}]")
        return z
    rule = RULES.get(type(model))
    if rule is None:
        raise UnsupportedLayerError(
            f"{call}: {where} is a {type(model).__name__}, which the complex-step engine has no rule for; "
            f"supported: {', '.join(supported_layers())}. Express the model as an nn.Sequential of "
            "supported layers, or use expand() (the Taylor engine traces custom forwards)")
    if isinstance(model, nn.Dropout) and model.training:
        raise ExpansionError(f"{call}: {where} is a Dropout in training mode; call model.eval() first")
    return rule(model, z)


# -- public calls -------------------------------------------------------------------------------

def csfd_step(order: int) -> float:
    """The imaginary step ``h`` used for derivatives of total order ``order`` (a power of two).

    Examples
    --------
    >>> csfd_step(1) == 2.0**-66
    True
    """
    return 2.0 ** -min(66, 900 // max(int(order), 1))


def _points(at, dtype, call) -> torch.Tensor:
    try:
        x = torch.as_tensor(np.asarray(at) if not isinstance(at, torch.Tensor) else at)
    except (TypeError, ValueError) as exc:
        raise ExpansionError(f"{call}: at must be array-like numbers of shape (B, p), got {type(at).__name__}") from exc
    x = x.detach().to(dtype)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ExpansionError(f"{call}: at has shape {tuple(x.shape)}; pass (B, p) points (or (B, C, ...) inputs)")
    if not torch.isfinite(x).all():
        raise ExpansionError(f"{call}: at contains NaN or infinite values; pass finite points")
    return x


def _direction(direction, x: torch.Tensor, call: str, name: str = "direction") -> torch.Tensor:
    d = torch.as_tensor(np.asarray(direction) if not isinstance(direction, torch.Tensor) else direction)
    d = d.detach().to(x.dtype)
    if tuple(d.shape) == tuple(x.shape[1:]):
        d = d.unsqueeze(0).expand_as(x)
    if tuple(d.shape) != tuple(x.shape):
        raise ExpansionError(f"{call}: {name} has shape {tuple(d.shape)}; pass {tuple(x.shape[1:])} "
                             f"(one for all points) or {tuple(x.shape)} (one per point)")
    return d


def _check_order(order, call) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ExpansionError(f"{call}: order must be a non-negative int (e.g. order=3), got {order!r}")
    if order > 12:
        raise ExpansionError(f"{call}: order {order} needs 2^{order} components per value; use order <= 12 "
                             "or the Taylor engine (expand) for high orders")
    return int(order)


def _outputs(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[0], z.shape[1], -1)


def csfd_directional_derivatives(model: nn.Module, at, direction, order: int, *,
                                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Every derivative of ``t -> f(at + t * direction)`` at ``t = 0`` up to ``order``.

    One multicomplex forward pass of order ``order``: the component ``i_1 ... i_m`` of the
    output carries the ``m``-th derivative for every ``m <= order``.

    Returns
    -------
    torch.Tensor
        ``(order + 1, B, n_outputs)``; entry ``m`` is the ``m``-th derivative.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    >>> csfd_directional_derivatives(net, [[0.1, 0.2]], [1.0, 0.0], 3).shape
    torch.Size([4, 1, 1])
    """
    call = f"csfd_directional_derivatives(model, at, direction, order={order!r})"
    order = _check_order(order, call)
    x = _points(at, dtype, call)
    d = _direction(direction, x, call)
    h = csfd_step(order)
    z = x.new_zeros((1 << order, *x.shape))
    z[0] = x
    for j in range(order):
        z[1 << j] = h * d
    with torch.no_grad():
        out = _outputs(_forward(model, z, call))
    return torch.stack([out[(1 << m) - 1] / h**m for m in range(order + 1)])


def csfd_derivative(model: nn.Module, at, direction, order: int, *,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``order``-th derivative of ``t -> f(at + t * direction)`` at ``t = 0``.

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` (possibly nested) of supported layers (see :func:`supported_layers`).
    at : array-like
        ``(B, p)`` points (``(p,)`` is one point; image-like ``(B, C, H, W)`` works for CNNs).
    direction : array-like
        ``(p,)`` for every point, or ``(B, p)`` one per point.
    order : int
        Order of the derivative (0 gives the values).

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs)``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    >>> csfd_derivative(net, [[0.1, 0.2]], [1.0, -1.0], 2).shape
    torch.Size([1, 1])
    """
    return csfd_directional_derivatives(model, at, direction, order, dtype=dtype)[-1]


def csfd_hvp(model: nn.Module, at, v, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Hessian-vector products ``H_o(at) v`` of every output ``o`` by complex-step backpropagation.

    A complex forward pass from ``at + i h v``, then backpropagation of the imaginary part of
    each output: by Cauchy-Riemann its input gradient is ``h * H v``.

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs, *input_shape)`` (``(B, n_outputs, p)`` for ``(B, p)`` points).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    >>> csfd_hvp(net, [[0.1, 0.2]], [1.0, 0.0]).shape
    torch.Size([1, 1, 2])
    """
    call = "csfd_hvp(model, at, v)"
    x = _points(at, dtype, call)
    d = _direction(v, x, call, "v")
    h = csfd_step(1)
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        z = torch.stack([x, h * d])
        out = _outputs(_forward(model, z, call))[1]  # (B, n_out): h * grad f . v
        rows = []
        for o in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, o].sum(), x, retain_graph=o + 1 < out.shape[1], allow_unused=True)
            rows.append(torch.zeros_like(x) if g is None else g / h)
    return torch.stack(rows, dim=1).detach()


def csfd_laplacian(model: nn.Module, at, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Laplacian ``sum_i d^2 f / dx_i^2`` of every output, as physics-informed training needs.

    Second-order multicomplex passes along every coordinate axis, batched into one pass.

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs)``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    >>> csfd_laplacian(net, [[0.1, 0.2], [0.0, 0.3]]).shape
    torch.Size([2, 1])
    """
    call = "csfd_laplacian(model, at)"
    x = _points(at, dtype, call)
    B, shape = x.shape[0], tuple(x.shape[1:])
    p = int(np.prod(shape))
    eye = torch.eye(p, dtype=x.dtype).reshape(p, *shape)
    xs = x.unsqueeze(1).expand(B, p, *shape).reshape(B * p, *shape)
    ds = eye.unsqueeze(0).expand(B, p, *shape).reshape(B * p, *shape)
    second = csfd_directional_derivatives(model, xs, ds, 2, dtype=dtype)[2]
    return second.reshape(B, p, -1).sum(dim=1)
