"""The built-in Taylor rules, one per primitive, and the table of forms that reach them.

A rule receives a :class:`~discovery.engine.registry.Context` and the primitive's arguments,
where the traced tensor arguments arrive as :class:`~discovery.engine.series.Series`, and
returns a ``Series`` (or a plain value for shape queries). Each rule is written once; the
alias table at the end maps module classes, torch functions, functional forms and tensor
method names to it (see :mod:`discovery.engine.registry`).

Two helpers cover most rules: :func:`linear_rule` (the full affine map at degree 0, the weight
alone above it) and :func:`elementwise_rule` (an activation given by its univariate
coefficient recurrence, see :mod:`discovery.engine.activations`). Register a rule of your own
with :func:`~discovery.engine.registry.register_rule` and map more forms to it with
:func:`~discovery.engine.registry.register_alias`.
"""

from __future__ import annotations

import builtins
import operator
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from discovery.engine import activations as A
from discovery.engine import native
from discovery.engine.registry import (
    ALIASES,
    REGISTRY,
    Context,
    register_alias,
    register_rule,
    supported_names,
)
from discovery.engine.series import Series
from discovery.nn import Sine

__all__ = ["ALIASES", "REGISTRY", "Context", "register_alias", "register_rule", "supported_names", "as_series"]


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


def linear_rule(x: Series, fn, bias=None, macs_per_row: int | None = None) -> Series:
    """Affine map: ``fn`` is linear; ``bias`` enters the degree-0 coefficient only
    (``macs_per_row``: see :meth:`Series.map_linear`)."""
    return x.map_linear(fn, bias, macs_per_row)


def elementwise_rule(coefficient_fn, fused=None):
    """Rule for an elementwise function of its first argument (extra flags such as
    ``inplace`` change nothing in the series). ``fused(coeffs, p, order)``: optional
    whole-series recurrence (see :meth:`Series.apply_elementwise`)."""

    def rule(ctx, x, *flags, **kwargs):
        return x.apply_elementwise(coefficient_fn, fused)

    return rule


def _fused(kind: str, scale: float = 1.0):
    """The compiled recurrence of ``kind`` (:mod:`discovery.engine.native`) as a ``fused``."""
    return lambda coeffs, p, order: native.series(kind, coeffs, p, order, scale)


# -- activations --------------------------------------------------------------------------------

for _name in ("tanh", "sigmoid", "sin", "cos", "exp"):
    register_rule(_name)(elementwise_rule(getattr(A, _name), _fused(_name)))

for _name, _fn in [
    ("log", A.log), ("sqrt", A.sqrt), ("rsqrt", A.power(-0.5)), ("reciprocal", A.reciprocal),
    ("relu", A.relu), ("silu", A.silu), ("softsign", A.softsign), ("abs", A.abs_),
]:
    register_rule(_name)(elementwise_rule(_fn))


@register_rule("sine")
def _sine(ctx, x, w0=1.0):
    return x.apply_elementwise(A.sine(w0), _fused("sin", float(w0)))


@register_rule("leaky_relu")
def _leaky_relu(ctx, x, negative_slope=0.01, inplace=False):
    return x.apply_elementwise(A.leaky_relu(negative_slope))


@register_rule("elu")
def _elu(ctx, x, alpha=1.0, inplace=False):
    return x.apply_elementwise(A.elu(alpha))


@register_rule("gelu")
def _gelu(ctx, x, approximate="none"):
    return x.apply_elementwise(A.gelu(approximate))


@register_rule("softplus")
def _softplus(ctx, x, beta=1.0, threshold=20.0):
    return x.apply_elementwise(A.softplus(beta, threshold))


# -- arithmetic ---------------------------------------------------------------------------------


@register_rule("add")
def _add(ctx, a, b, *, alpha=1):
    if alpha != 1:
        b = _mul(ctx, b, alpha)
    if isinstance(a, Series) and isinstance(b, Series):
        return a.new(a.coeffs + b.coeffs, _max_degree(a, b))
    s, c = (a, b) if isinstance(a, Series) else (b, a)
    coeffs = s.coeffs.expand(s.coeffs.shape[0], *torch.broadcast_shapes(s.shape, torch.as_tensor(c).shape)).clone()
    coeffs[0] = coeffs[0] + ctx.tensor(c)
    return s.new(coeffs)


@register_rule("sub")
def _sub(ctx, a, b, *, alpha=1):
    return _add(ctx, a, _neg(ctx, b), alpha=alpha)


@register_rule("neg")
def _neg(ctx, a):
    return a.new(-a.stored) if isinstance(a, Series) else -a


@register_rule("mul")
def _mul(ctx, a, b):
    if isinstance(a, Series) and isinstance(b, Series):
        return a.new(a.algebra.mul(a.coeffs, b.coeffs), _sum_degree(a, b))
    if not isinstance(a, Series) and not isinstance(b, Series):
        return a * b
    s, c = (a, b) if isinstance(a, Series) else (b, a)
    return s.new(s.stored * ctx.tensor(c))


@register_rule("div")
def _div(ctx, a, b, *, rounding_mode=None):
    if rounding_mode is not None:
        raise _unsupported_inline(ctx, f"division with rounding_mode={rounding_mode!r}")
    if not isinstance(b, Series):
        return a.new(a.coeffs / ctx.tensor(b))
    return _mul(ctx, a, b.apply_elementwise(A.reciprocal))


@register_rule("pow")
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


@register_rule("square")
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


@register_rule("matmul")
def _matmul(ctx, a, b):
    if isinstance(b, Series):
        raise _unsupported_inline(ctx, "a constant @ a traced tensor (put the traced tensor on the left)")
    w = ctx.tensor(b)
    return linear_rule(a, lambda z: z @ w)


# -- layers -------------------------------------------------------------------------------------


@register_rule("linear")
def _linear(ctx, x, weight, bias=None):
    w = ctx.tensor(weight)
    b = ctx.tensor(bias) if bias is not None else None
    if x.unit_directions is not None and w.ndim == 2 and x.dim() == 2 and w.shape[1] == x.shape[-1]:
        return x.map_unit_directions(w, b)
    return linear_rule(x, lambda z: F.linear(z, w), b, w.numel() * max(1, x.value[0].numel() // max(1, w.shape[-1])))


@register_rule("conv")
def _conv(ctx, module, x):
    w = ctx.tensor(module.weight)
    bias = None
    if module.bias is not None:
        b = ctx.tensor(module.bias)
        bias = b.reshape(-1, *([1] * (x.dim() - 2)))
    return linear_rule(x, lambda z: module._conv_forward(z, w, None), bias)


@register_rule("avg_pool")
def _avg_pool(ctx, module, x):
    return linear_rule(x, module)


@register_rule("max_pool")
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


@register_rule("batch_norm")
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


@register_rule("identity")
def _identity(ctx, x, *args, **kwargs):
    return x


@register_rule("flatten")
def _flatten(ctx, x, start_dim=0, end_dim=-1):
    return x.new(x.stored.flatten(_dim(start_dim), _dim(end_dim)))


@register_rule("unflatten")
def _unflatten(ctx, x, dim, sizes):
    return x.new(x.stored.unflatten(_dim(dim), sizes))


def _shape_args(args):
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args


@register_rule("reshape")
def _reshape(ctx, x, *shape):
    return x.new(x.stored.reshape(x.stored.shape[0], *_shape_args(shape)))


@register_rule("unsqueeze")
def _unsqueeze(ctx, x, dim):
    return x.new(x.stored.unsqueeze(_dim(dim) if dim >= 0 else dim))


@register_rule("squeeze")
def _squeeze(ctx, x, dim=None):
    if dim is None:
        keep = [x.stored.shape[0]] + [s for s in x.shape if s != 1]
        return x.new(x.stored.reshape(keep))
    return x.new(x.stored.squeeze(_dim(dim)))


@register_rule("permute")
def _permute(ctx, x, *dims):
    dims = _shape_args(dims)
    nd = x.dim()
    return x.new(x.stored.permute(0, *[(d % nd) + 1 for d in dims]))


@register_rule("transpose")
def _transpose(ctx, x, dim0, dim1):
    return x.new(x.stored.transpose(_dim(dim0), _dim(dim1)))


@register_rule("sum")
def _sum(ctx, x, dim=None, keepdim=False):
    dims = tuple(range(1, x.stored.ndim)) if dim is None else tuple(
        _dim(d) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
    return x.new(x.stored.sum(dim=dims, keepdim=keepdim))


@register_rule("mean")
def _mean(ctx, x, dim=None, keepdim=False):
    total = _sum(ctx, x, dim, keepdim)
    count = x.value.numel() // total.value.numel()
    return total.new(total.coeffs / count)


@register_rule("cat")
def _cat(ctx, tensors, dim=0):
    like = next(t for t in tensors if isinstance(t, Series))
    parts = [as_series(ctx.tensor(t), like) for t in tensors]
    return like.new(torch.cat([s.coeffs for s in parts], dim=_dim(dim)), _max_degree(*parts))


@register_rule("stack")
def _stack(ctx, tensors, dim=0):
    like = next(t for t in tensors if isinstance(t, Series))
    parts = [as_series(ctx.tensor(t), like) for t in tensors]
    return like.new(torch.stack([s.coeffs for s in parts], dim=_dim(dim)), _max_degree(*parts))


@register_rule("getitem")
def _getitem(ctx, x, index):
    if not isinstance(x, Series):
        return x[index]
    index = index if isinstance(index, tuple) else (index,)
    return x.new(x.stored[(slice(None), *index)])


@register_rule("getattr")
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



# -- forms: every module class, function and method name that reaches a primitive --------------


def _inputs(module, *args, **kwargs):
    """A module without settings: its inputs are the primitive's arguments."""
    return args, kwargs


def _settings(*names):
    """A module whose settings become the primitive's keyword arguments of the same name."""

    def adapt(module, x):
        return (x,), {name: getattr(module, name) for name in names}

    return adapt


def _linear_module(module, x):
    return (x, module.weight, module.bias), {}


def _unflatten_module(module, x):
    return (x, module.dim, module.unflattened_size), {}


_FORMS = {
    # primitive: (forms with the rule's own arguments, {module class: adapter})
    "tanh": ((torch.tanh, F.tanh, "tanh"), {nn.Tanh: _inputs}),
    "sigmoid": ((torch.sigmoid, F.sigmoid, "sigmoid"), {nn.Sigmoid: _inputs}),
    "sin": ((torch.sin, "sin"), {}),
    "cos": ((torch.cos, "cos"), {}),
    "exp": ((torch.exp, "exp"), {}),
    "log": ((torch.log, "log"), {}),
    "sqrt": ((torch.sqrt, "sqrt"), {}),
    "rsqrt": ((torch.rsqrt, "rsqrt"), {}),
    "reciprocal": ((torch.reciprocal, "reciprocal"), {}),
    "relu": ((torch.relu, F.relu, "relu"), {nn.ReLU: _inputs}),
    "silu": ((F.silu,), {nn.SiLU: _inputs}),
    "softsign": ((F.softsign,), {nn.Softsign: _inputs}),
    "abs": ((torch.abs, operator.abs, "abs"), {}),
    "sine": ((), {Sine: _settings("w0")}),
    "leaky_relu": ((F.leaky_relu,), {nn.LeakyReLU: _settings("negative_slope")}),
    "elu": ((F.elu,), {nn.ELU: _settings("alpha")}),
    "gelu": ((F.gelu,), {nn.GELU: _settings("approximate")}),
    "softplus": ((F.softplus,), {nn.Softplus: _settings("beta", "threshold")}),
    "add": ((operator.add, torch.add, "add"), {}),
    "sub": ((operator.sub, torch.sub, "sub"), {}),
    "neg": ((operator.neg, torch.neg, "neg"), {}),
    "mul": ((operator.mul, torch.mul, "mul"), {}),
    "div": ((operator.truediv, torch.div, torch.true_divide, "div", "true_divide"), {}),
    "pow": ((operator.pow, torch.pow, "pow"), {}),
    "square": ((torch.square, "square"), {}),
    "matmul": ((operator.matmul, torch.matmul, "matmul"), {}),
    "linear": ((F.linear,), {nn.Linear: _linear_module}),
    # Module-only primitives: their rules read the module (padding mode, running statistics).
    "conv": ((nn.Conv1d, nn.Conv2d), {}),
    "avg_pool": ((nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d), {}),
    "max_pool": ((nn.MaxPool1d, nn.MaxPool2d), {}),
    "batch_norm": ((nn.BatchNorm1d, nn.BatchNorm2d), {}),
    "identity": ((F.dropout, "contiguous", "float", "double", "detach", "clone"),
                 {nn.Identity: _inputs, nn.Dropout: _inputs, nn.Dropout1d: _inputs,
                  nn.Dropout2d: _inputs, nn.AlphaDropout: _inputs}),
    "flatten": ((torch.flatten, "flatten"), {nn.Flatten: _settings("start_dim", "end_dim")}),
    "unflatten": ((torch.unflatten, "unflatten"), {nn.Unflatten: _unflatten_module}),
    "reshape": ((torch.reshape, "reshape", "view"), {}),
    "unsqueeze": ((torch.unsqueeze, "unsqueeze"), {}),
    "squeeze": ((torch.squeeze, "squeeze"), {}),
    "permute": ((torch.permute, "permute"), {}),
    "transpose": ((torch.transpose, "transpose"), {}),
    "sum": ((torch.sum, "sum"), {}),
    "mean": ((torch.mean, "mean"), {}),
    "cat": ((torch.cat, torch.concat), {}),
    "stack": ((torch.stack,), {}),
    "getitem": ((operator.getitem,), {}),
    "getattr": ((builtins.getattr,), {}),
    "size": (("size",), {}),
    "dim": (("dim",), {}),
}

for _primitive, (_plain, _modules) in _FORMS.items():
    for _key in _plain:
        register_alias(_key, _primitive)
    for _key, _adapt in _modules.items():
        register_alias(_key, _primitive, _adapt)
