"""The rule registry: one Taylor rule per layer type, traced function or tensor method.

Keys are module classes (``nn.Linear``), callables (``torch.tanh``, ``operator.add``) or method
names (``"tanh"``, ``"view"``). A rule receives a :class:`Context` and the node's arguments,
where the traced tensor arguments arrive as :class:`~discovery.engine.series.Series`, and
returns a ``Series`` (or a plain value for shape queries).

Two helpers cover most rules: :func:`linear_rule` (the full affine map at degree 0, the weight
alone above it) and :func:`elementwise_rule` (an activation given by its univariate
coefficient recurrence, see :mod:`discovery.engine.activations`). Register a rule of your own
with :func:`register_rule`.
"""

from __future__ import annotations

import builtins
import operator
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from discovery.engine import activations as A
from discovery.engine.series import Algebra, Series
from discovery.nn import Sine

__all__ = ["REGISTRY", "Context", "register_rule", "supported_names", "as_series"]

REGISTRY: dict = {}


@dataclass
class Context:
    """What a rule may need besides its arguments."""

    algebra: Algebra
    dtype: torch.dtype
    device: torch.device
    where: str = ""

    def tensor(self, value):
        """Cast a floating tensor constant (a weight, a buffer) to the engine's dtype/device."""
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            if value.requires_grad and torch.is_grad_enabled():
                value = value.detach()
            if value.dtype == self.dtype and value.device == self.device:
                return value
            return value.detach().to(device=self.device, dtype=self.dtype)
        if isinstance(value, torch.Tensor):
            return value.detach().to(device=self.device)
        return value


def register_rule(*keys):
    """Decorator: register ``rule(ctx, *args, **kwargs)`` for the given keys.

    Examples
    --------
    A module class with a rule is kept as one node of the traced graph:

    >>> import discovery
    >>> class Scale(nn.Module):
    ...     def __init__(self, factor):
    ...         super().__init__()
    ...         self.factor = factor
    ...     def forward(self, x):
    ...         return self.factor * x
    >>> @register_rule(Scale)
    ... def _scale(ctx, module, x):
    ...     return linear_rule(x, lambda t: module.factor * t)
    >>> net = nn.Sequential(nn.Linear(1, 1), nn.Tanh(), Scale(3.0)).double()
    >>> e = discovery.expand(net, [[0.0]], 2)
    >>> bool(torch.allclose(e.derivative((0,)), 3.0 * torch.tanh(net[0].bias.detach())))
    True
    >>> del REGISTRY[Scale]  # leave the registry as it was
    """

    def decorate(rule):
        for key in keys:
            REGISTRY[key] = rule
        return rule

    return decorate


def supported_names() -> list[str]:
    """Readable names of every registered key, sorted."""
    names = set()
    for key in REGISTRY:
        if isinstance(key, str):
            names.add(f".{key}()")
        elif isinstance(key, type):
            names.add(key.__name__)
        else:
            names.add(getattr(key, "__name__", repr(key)))
    return sorted(names)


def as_series(value, like: Series) -> Series:
    """A constant tensor or number as a series with no higher-order terms."""
    if isinstance(value, Series):
        return value
    const = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    coeffs = const.new_zeros((like.coeffs.shape[0], *torch.broadcast_shapes(const.shape, like.shape)))
    coeffs[0] = const
    return like.new(coeffs, 0)


def _max_degree(*parts: Series):
    degrees = [p.degree for p in parts]
    return None if None in degrees else max(degrees)


def _sum_degree(a: Series, b: Series):
    if a.degree is None or b.degree is None:
        return None
    return min(a.degree + b.degree, a.algebra.order)


def _dim(d: int) -> int:
    """A model-space dimension index moved past the series axis (negative ones need nothing)."""
    return d + 1 if d >= 0 else d


# -- helpers ------------------------------------------------------------------------------------


def linear_rule(x: Series, fn, bias=None) -> Series:
    """Affine map: ``fn`` is linear; ``bias`` enters the degree-0 coefficient only."""
    return x.map_linear(fn, bias)


def elementwise_rule(coefficient_fn):
    """Rule for an elementwise function of one traced tensor (module or function form)."""

    def rule(ctx, *args, **kwargs):
        x = next(a for a in args if isinstance(a, Series))
        return x.apply_elementwise(coefficient_fn)

    return rule


def _module_elementwise(make):
    """Rule for an activation module whose coefficients depend on its settings."""

    def rule(ctx, module, x):
        return x.apply_elementwise(make(module))

    return rule


# -- activations --------------------------------------------------------------------------------

for _keys, _fn in [
    ((nn.Tanh, torch.tanh, F.tanh, "tanh"), A.tanh),
    ((nn.Sigmoid, torch.sigmoid, F.sigmoid, "sigmoid"), A.sigmoid),
    ((torch.sin, "sin"), A.sin),
    ((torch.cos, "cos"), A.cos),
    ((torch.exp, "exp"), A.exp),
    ((torch.log, "log"), A.log),
    ((torch.sqrt, "sqrt"), A.sqrt),
    ((torch.rsqrt, "rsqrt"), A.power(-0.5)),
    ((torch.reciprocal, "reciprocal"), A.reciprocal),
    ((nn.ReLU, torch.relu, F.relu, "relu"), A.relu),
    ((nn.SiLU, F.silu), A.silu),
    ((nn.Softsign, F.softsign), A.softsign),
    ((torch.abs, operator.abs, "abs"), A.abs_),
]:
    register_rule(*_keys)(elementwise_rule(_fn))

register_rule(Sine)(_module_elementwise(lambda m: A.sine(m.w0)))
register_rule(nn.LeakyReLU)(_module_elementwise(lambda m: A.leaky_relu(m.negative_slope)))
register_rule(nn.ELU)(_module_elementwise(lambda m: A.elu(m.alpha)))
register_rule(nn.GELU)(_module_elementwise(lambda m: A.gelu(m.approximate)))
register_rule(nn.Softplus)(_module_elementwise(lambda m: A.softplus(m.beta, m.threshold)))


@register_rule(F.leaky_relu)
def _leaky_relu_fn(ctx, x, negative_slope=0.01, inplace=False):
    return x.apply_elementwise(A.leaky_relu(negative_slope))


@register_rule(F.elu)
def _elu_fn(ctx, x, alpha=1.0, inplace=False):
    return x.apply_elementwise(A.elu(alpha))


@register_rule(F.gelu)
def _gelu_fn(ctx, x, approximate="none"):
    return x.apply_elementwise(A.gelu(approximate))


@register_rule(F.softplus)
def _softplus_fn(ctx, x, beta=1.0, threshold=20.0):
    return x.apply_elementwise(A.softplus(beta, threshold))


# -- arithmetic ---------------------------------------------------------------------------------


@register_rule(operator.add, torch.add, "add")
def _add(ctx, a, b, *, alpha=1):
    if alpha != 1:
        b = _mul(ctx, b, alpha)
    if isinstance(a, Series) and isinstance(b, Series):
        return a.new(a.coeffs + b.coeffs, _max_degree(a, b))
    s, c = (a, b) if isinstance(a, Series) else (b, a)
    coeffs = s.coeffs.expand(s.coeffs.shape[0], *torch.broadcast_shapes(s.shape, torch.as_tensor(c).shape)).clone()
    coeffs[0] = coeffs[0] + ctx.tensor(c)
    return s.new(coeffs)


@register_rule(operator.sub, torch.sub, "sub")
def _sub(ctx, a, b, *, alpha=1):
    return _add(ctx, a, _neg(ctx, b), alpha=alpha)


@register_rule(operator.neg, torch.neg, "neg")
def _neg(ctx, a):
    return a.new(-a.coeffs) if isinstance(a, Series) else -a


@register_rule(operator.mul, torch.mul, "mul")
def _mul(ctx, a, b):
    if isinstance(a, Series) and isinstance(b, Series):
        return a.new(a.algebra.mul(a.coeffs, b.coeffs), _sum_degree(a, b))
    if not isinstance(a, Series) and not isinstance(b, Series):
        return a * b
    s, c = (a, b) if isinstance(a, Series) else (b, a)
    return s.new(s.coeffs * ctx.tensor(c))


@register_rule(operator.truediv, torch.div, torch.true_divide, "div", "true_divide")
def _div(ctx, a, b, *, rounding_mode=None):
    if rounding_mode is not None:
        raise _unsupported_inline(ctx, f"division with rounding_mode={rounding_mode!r}")
    if not isinstance(b, Series):
        return a.new(a.coeffs / ctx.tensor(b))
    return _mul(ctx, a, b.apply_elementwise(A.reciprocal))


@register_rule(operator.pow, torch.pow, "pow")
def _pow(ctx, a, b):
    if isinstance(b, Series):
        base = (torch.as_tensor(ctx.tensor(a), dtype=ctx.dtype, device=ctx.device)
                if not isinstance(a, Series) else None)
        log_a = as_series(torch.log(base), b) if base is not None else a.apply_elementwise(A.log)
        return _mul(ctx, log_a, b).apply_elementwise(A.exp)
    exponent = float(b)
    if exponent.is_integer() and exponent >= 0:
        return _integer_power(a, int(exponent))
    return a.apply_elementwise(A.power(exponent))


@register_rule(torch.square, "square")
def _square(ctx, a):
    return _integer_power(a, 2)


def _integer_power(a: Series, k: int) -> Series:
    """``a ** k`` by repeated squaring: exact even where ``a`` is zero."""
    result, base, k_total = None, a.coeffs, k
    while k:
        if k & 1:
            result = base if result is None else a.algebra.mul(result, base)
        k >>= 1
        if k:
            base = a.algebra.mul(base, base)
    if result is None:
        return as_series(torch.ones((), dtype=a.dtype, device=a.device), a)
    return a.new(result, None if a.degree is None else min(a.degree * k_total, a.algebra.order))


@register_rule(operator.matmul, torch.matmul, "matmul")
def _matmul(ctx, a, b):
    if isinstance(b, Series):
        raise _unsupported_inline(ctx, "a constant @ a traced tensor (put the traced tensor on the left)")
    w = ctx.tensor(b)
    return linear_rule(a, lambda z: z @ w)


# -- layers -------------------------------------------------------------------------------------


@register_rule(nn.Linear)
def _linear_module(ctx, module, x):
    w = ctx.tensor(module.weight)
    b = ctx.tensor(module.bias) if module.bias is not None else None
    return linear_rule(x, lambda z: F.linear(z, w), b)


@register_rule(F.linear)
def _linear_fn(ctx, x, weight, bias=None):
    w = ctx.tensor(weight)
    return linear_rule(x, lambda z: F.linear(z, w), ctx.tensor(bias) if bias is not None else None)


@register_rule(nn.Conv1d, nn.Conv2d)
def _conv(ctx, module, x):
    w = ctx.tensor(module.weight)
    bias = None
    if module.bias is not None:
        b = ctx.tensor(module.bias)
        bias = b.reshape(-1, *([1] * (x.dim() - 2)))
    return linear_rule(x, lambda z: module._conv_forward(z, w, None), bias)


@register_rule(nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _avg_pool(ctx, module, x):
    return linear_rule(x, module)


@register_rule(nn.MaxPool1d, nn.MaxPool2d)
def _max_pool(ctx, module, x):
    # Locally the max is the selected input: pick it from the forward values, then gather
    # every coefficient at the same place (exact away from ties).
    pool = F.max_pool1d if isinstance(module, nn.MaxPool1d) else F.max_pool2d
    _, idx = pool(x.value, module.kernel_size, module.stride, module.padding, module.dilation,
                  ceil_mode=module.ceil_mode, return_indices=True)
    T, N, C = x.coeffs.shape[:3]
    flat = x.coeffs.reshape(T, N, C, -1)
    gathered = flat.gather(3, idx.reshape(1, N, C, -1).expand(T, -1, -1, -1))
    return x.new(gathered.reshape(T, *idx.shape))


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d)
def _batch_norm(ctx, module, x):
    if module.training:
        warnings.warn(f"{ctx.where}: BatchNorm in training mode is expanded with its running "
                      "statistics (eval-mode semantics); call model.eval() to silence this", stacklevel=2)
    if module.running_mean is None:
        raise _unsupported_inline(ctx, "BatchNorm without running statistics (track_running_stats=False)")
    scale = ctx.tensor(module.running_var + module.eps).rsqrt()
    shift = -ctx.tensor(module.running_mean) * scale
    if module.affine:
        scale = scale * ctx.tensor(module.weight)
        shift = shift * ctx.tensor(module.weight) + ctx.tensor(module.bias)
    shape = (-1, *([1] * (x.dim() - 2)))
    return linear_rule(x, lambda z: z * scale.reshape(shape), shift.reshape(shape))


@register_rule(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
               F.dropout, "contiguous", "float", "double", "detach", "clone")
def _identity(ctx, *args, **kwargs):
    module_or_x = args[0]
    return args[1] if isinstance(module_or_x, nn.Module) else module_or_x


@register_rule(nn.Flatten)
def _flatten_module(ctx, module, x):
    return x.new(x.coeffs.flatten(_dim(module.start_dim), _dim(module.end_dim)))


@register_rule(torch.flatten, "flatten")
def _flatten(ctx, x, start_dim=0, end_dim=-1):
    return x.new(x.coeffs.flatten(_dim(start_dim), _dim(end_dim)))


@register_rule(nn.Unflatten)
def _unflatten_module(ctx, module, x):
    return x.new(x.coeffs.unflatten(_dim(module.dim), module.unflattened_size))


@register_rule(torch.unflatten, "unflatten")
def _unflatten(ctx, x, dim, sizes):
    return x.new(x.coeffs.unflatten(_dim(dim), sizes))


def _shape_args(args):
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args


@register_rule(torch.reshape, "reshape", "view")
def _reshape(ctx, x, *shape):
    return x.new(x.coeffs.reshape(x.coeffs.shape[0], *_shape_args(shape)))


@register_rule(torch.unsqueeze, "unsqueeze")
def _unsqueeze(ctx, x, dim):
    return x.new(x.coeffs.unsqueeze(_dim(dim) if dim >= 0 else dim))


@register_rule(torch.squeeze, "squeeze")
def _squeeze(ctx, x, dim=None):
    if dim is None:
        keep = [x.coeffs.shape[0]] + [s for s in x.shape if s != 1]
        return x.new(x.coeffs.reshape(keep))
    return x.new(x.coeffs.squeeze(_dim(dim)))


@register_rule(torch.permute, "permute")
def _permute(ctx, x, *dims):
    dims = _shape_args(dims)
    nd = x.dim()
    return x.new(x.coeffs.permute(0, *[(d % nd) + 1 for d in dims]))


@register_rule(torch.transpose, "transpose")
def _transpose(ctx, x, dim0, dim1):
    return x.new(x.coeffs.transpose(_dim(dim0), _dim(dim1)))


@register_rule(torch.sum, "sum")
def _sum(ctx, x, dim=None, keepdim=False):
    dims = tuple(range(1, x.coeffs.ndim)) if dim is None else tuple(
        _dim(d) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
    return x.new(x.coeffs.sum(dim=dims, keepdim=keepdim))


@register_rule(torch.mean, "mean")
def _mean(ctx, x, dim=None, keepdim=False):
    total = _sum(ctx, x, dim, keepdim)
    count = x.value.numel() // total.value.numel()
    return total.new(total.coeffs / count)


@register_rule(torch.cat, torch.concat)
def _cat(ctx, tensors, dim=0):
    like = next(t for t in tensors if isinstance(t, Series))
    parts = [as_series(ctx.tensor(t), like) for t in tensors]
    return like.new(torch.cat([s.coeffs for s in parts], dim=_dim(dim)), _max_degree(*parts))


@register_rule(torch.stack)
def _stack(ctx, tensors, dim=0):
    like = next(t for t in tensors if isinstance(t, Series))
    parts = [as_series(ctx.tensor(t), like) for t in tensors]
    return like.new(torch.stack([s.coeffs for s in parts], dim=_dim(dim)), _max_degree(*parts))


@register_rule(operator.getitem)
def _getitem(ctx, x, index):
    if not isinstance(x, Series):
        return x[index]
    index = index if isinstance(index, tuple) else (index,)
    return x.new(x.coeffs[(slice(None), *index)])


@register_rule(builtins.getattr)
def _getattr(ctx, x, name):
    if name == "shape":
        return x.shape
    if name in ("dtype", "device"):
        return getattr(x, name)
    raise _unsupported_inline(ctx, f"attribute .{name} of a traced tensor")


@register_rule("size")
def _size(ctx, x, dim=None):
    return x.shape if dim is None else x.shape[dim]


@register_rule("dim")
def _ndim(ctx, x):
    return x.dim()


def _unsupported_inline(ctx, what: str):
    from discovery.errors import UnsupportedLayerError

    return UnsupportedLayerError(f"{ctx.where}: the Taylor engine has no rule for {what}")

