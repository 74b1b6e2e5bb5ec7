"""Per-pixel feature importance: HOPE heat maps from unmixed derivatives, and perturbation maps.

The HOPE heat map (Eq. 76-77 of the HOPE paper) predicts the change of every output when one
input element moves by ``dx`` from the unmixed Taylor series of that element alone:

    delta_y[o, i] = sum_{k=1..n} d^k f_o / dx_i^k * dx^k / k!

Two ways to get the unmixed series:

- ``method="backward"`` (:func:`backward_unmixed`): the HOPE paper's backward pass. The vector
  of unmixed Taylor coefficients ``(1/k!) d^k f_o / dh_m^k`` of every unit ``m`` flows from the
  outputs to the input: through an elementwise activation by composing truncated univariate
  series (Faa di Bruno), through a linear map ``h = W x`` as ``sum_m W_mi^k (.)_m``. One pass
  serves every output, element and image. The linear rule drops the cross terms
  ``d^k f / dh_m dh_l`` between units, so only the first order is exact for every network.
- ``method="exact"``: the Taylor engine's unmixed mode, ``expand(model, x, order,
  mixed=False)``, exact for any depth, one univariate series per input element.

Perturbation analysis measures the change directly, one forward pass per element.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from discovery.engine import UnmixedExpansion, expand
from discovery.engine import activations as A
from discovery.errors import ExpansionError, UnsupportedLayerError
from discovery.nn import Sine

__all__ = ["hope_heatmap", "hope_heatmap_from", "backward_unmixed", "perturbation_heatmap",
           "heatmap_correlation"]

F64 = torch.float64


# -- the backward unmixed pass ------------------------------------------------------------------
#
# State: Taylor coefficients ``a[k - 1, b, o, *units] = (1/k!) d^k f_o / dh_unit^k`` for the
# ``L <= order`` lowest orders (the higher ones are zero so far: at the outputs only k = 1 lives,
# piecewise-linear layers keep it that way). Axis ``b`` has size 1 while the state does not
# depend on the image (above the first activation from the top), which saves a factor B there.

# elementwise activations: module type -> coefficients (x0, n) -> (n + 1, *x0.shape)
_ACTIVATIONS = {
    nn.Tanh: lambda m: A.tanh,
    nn.Sigmoid: lambda m: A.sigmoid,
    Sine: lambda m: A.sine(m.w0),
    nn.ReLU: lambda m: A.relu,
    nn.LeakyReLU: lambda m: A.leaky_relu(m.negative_slope),
    nn.ELU: lambda m: A.elu(m.alpha),
    nn.GELU: lambda m: A.gelu(m.approximate),
    nn.SiLU: lambda m: A.silu,
    nn.Softplus: lambda m: A.softplus(m.beta, m.threshold),
    nn.Softsign: lambda m: A.softsign,
}
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_PASS_THROUGH = (nn.Identity, *_DROPOUTS)
_RESHAPES = (nn.Flatten, nn.Unflatten)
_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2}
_AVG_POOLS = {nn.AvgPool1d: 1, nn.AvgPool2d: 2}
_MAX_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2}
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_SUPPORTED = (*_ACTIVATIONS, nn.Linear, *_CONVS, *_AVG_POOLS, *_MAX_POOLS, *_BATCH_NORMS, *_RESHAPES,
              *_PASS_THROUGH)


def _leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) ``nn.Sequential`` in call order, with their dotted names."""
    if type(model) is not nn.Sequential:
        where = f" at {prefix!r}" if prefix else ""
        raise UnsupportedLayerError(
            f"backward_unmixed(model, ...): the backward pass runs through nn.Sequential models only; "
            f"got {type(model).__name__}{where}. Use method='exact' (the Taylor engine, any traceable model)")
    layers = []
    for name, child in model.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child) is nn.Sequential:
            layers += _leaves(child, path)
        else:
            layers.append((path, child))
    return layers


def _check(path: str, layer: nn.Module) -> None:
    kind = type(layer)
    if kind not in _SUPPORTED:
        raise UnsupportedLayerError(
            f"backward_unmixed(model, ...): no backward rule for layer {path!r} ({kind.__name__}); supported: "
            f"{', '.join(t.__name__ for t in _SUPPORTED)} in nn.Sequential. "
            "Use method='exact' (the Taylor engine) for this model")
    if kind in _CONVS and layer.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"backward_unmixed(model, ...): layer {path!r} pads with {layer.padding_mode!r}; the backward rule "
            f"handles padding_mode='zeros' only. Use method='exact'")
    if layer.training and (kind in _BATCH_NORMS or kind in _DROPOUTS):
        raise UnsupportedLayerError(
            f"backward_unmixed(model, ...): layer {path!r} ({kind.__name__}) is in training mode, where it "
            f"depends on the batch or on chance; call model.eval() first")
    if kind in _BATCH_NORMS and layer.running_var is None:
        raise UnsupportedLayerError(
            f"backward_unmixed(model, ...): layer {path!r} has no running statistics "
            f"(track_running_stats=False) and normalises by the batch; use method='exact'")


def _conv_padding(layer, in_spatial: tuple) -> tuple[list[int], list[int]]:
    """Symmetric padding for the transposed convolution, and extra zeros on the high side.

    ``padding='same'`` with an odd total pads one more on the high side, as torch does.
    """
    d = len(in_spatial)
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return [0] * d, [0] * d
        total = [layer.dilation[i] * (layer.kernel_size[i] - 1) for i in range(d)]
        return [t // 2 for t in total], [t % 2 for t in total]
    return list(layer.padding), [0] * d


def _record(layer: nn.Module, h: torch.Tensor, order: int):
    """Run one layer forward; return its output and what its backward rule needs."""
    kind = type(layer)
    if kind in _ACTIVATIONS:
        coefficients = _ACTIVATIONS[kind](layer)(h, order)  # before the call: ReLU(inplace) may overwrite h
        return layer(h), coefficients
    if kind in _MAX_POOLS:
        d = _MAX_POOLS[kind]
        pool = nn.functional.max_pool1d if d == 1 else nn.functional.max_pool2d
        out, indices = pool(h, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                            layer.ceil_mode, return_indices=True)
        return out, indices
    if kind in _AVG_POOLS:
        out = layer(h)
        # every output averages its window with one weight 1/divisor: avg(ones) / sum(ones)
        ones = h.new_ones((1, 1, *h.shape[h.ndim - _AVG_POOLS[kind]:]))
        params = _avg_pool_2d(layer)
        mean = torch.ops.aten.avg_pool2d(_as_2d(ones), *params)
        total = torch.ops.aten.avg_pool2d(_as_2d(ones), *params[:-1], 1)
        weight = (mean / total).reshape(out.shape[h.ndim - _AVG_POOLS[kind]:])
        return out, weight
    if kind in _BATCH_NORMS:
        scale = torch.rsqrt(layer.running_var.to(h) + layer.eps)
        if layer.weight is not None:
            scale = scale * layer.weight.detach().to(h)
        return layer(h), scale
    return layer(h), None


def _as_2d(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, L)`` as ``(N, C, 1, L)`` for the 1-d pools; 4-d tensors unchanged."""
    return x.unsqueeze(-2) if x.ndim == 3 else x


def _avg_pool_2d(layer) -> tuple:
    """Arguments of ``aten.avg_pool2d`` that reproduce an AvgPool1d/2d layer."""
    def pair(v):
        return list(v) if isinstance(v, (tuple, list)) else [v, v]

    if isinstance(layer, nn.AvgPool1d):
        return ([1, layer.kernel_size[0]], [1, layer.stride[0]], [0, layer.padding[0]], layer.ceil_mode,
                layer.count_include_pad, None)
    return (pair(layer.kernel_size), pair(layer.stride if layer.stride is not None else layer.kernel_size),
            pair(layer.padding), layer.ceil_mode, layer.count_include_pad, layer.divisor_override)


def _powers(w: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``[w, w^2, ..., w^n]`` elementwise."""
    out = [w]
    for _ in range(n - 1):
        out.append(out[-1] * w)
    return out


def _order_shape(L: int, ndim: int, trailing: tuple) -> tuple:
    """Shape that puts a per-order factor ``(L, *trailing)`` against a state of ``ndim`` dims."""
    return (L, *([1] * (ndim - 1 - len(trailing))), *trailing)


def _back_linear(layer: nn.Linear, a: torch.Tensor) -> torch.Tensor:
    """``a_in[k, .., i] = sum_m W[m, i]^k a[k, .., m]``."""
    L = a.shape[0]
    weights = torch.stack(_powers(layer.weight.detach().to(a), L))  # (L, out, in)
    result = torch.bmm(a.reshape(L, -1, a.shape[-1]), weights)
    return result.reshape(*a.shape[:-1], weights.shape[-1])


# A convolution on a small feature map runs faster as one dense matrix product per order than
# through the convolution kernels, although the matrix is mostly zeros: used when the matrix has
# at most this many entries and at most this many times the multiply-adds of the convolution.
_DENSE_CONV_ENTRIES = 1 << 20
_DENSE_CONV_WASTE = 4


def _conv_matrix(layer, in_units: tuple, L: int) -> torch.Tensor:
    """``(L, out units, in units)``: the convolution's matrix with every weight to the k-th power.

    Each (output, input) pair of a convolution meets at most one kernel tap, so the k-th power
    of the matrix is the matrix of the kernel's k-th power.
    """
    weight = layer.weight.detach().to(F64)
    c_out, c_in_group = weight.shape[:2]
    c_in, spatial = in_units[0], tuple(in_units[1:])
    pad, extra = _conv_padding(layer, spatial)
    kernel, stride, dilation = tuple(layer.kernel_size), tuple(layer.stride), tuple(layer.dilation)
    if len(spatial) == 1:
        spatial, kernel, stride, dilation = (1, *spatial), (1, *kernel), (1, *stride), (1, *dilation)
        pad, extra = [0, *pad], [0, *extra]
    n_in = int(np.prod(spatial))
    # 1-based input position under every tap of every output position; 0 where the tap is padding
    position = torch.arange(1, n_in + 1, dtype=F64, device=weight.device).reshape(1, 1, *spatial)
    position = nn.functional.pad(position, (0, extra[1], 0, extra[0]))
    taps = nn.functional.unfold(position, kernel, dilation=dilation, padding=pad, stride=stride)[0]
    taps = taps.round().long().T  # (out positions, taps)
    n_out, n_taps = taps.shape
    powers = torch.stack(_powers(weight.reshape(c_out, c_in_group, n_taps), L))
    blocks = weight.new_zeros((L, c_out, n_out, c_in_group, n_in + 1))
    blocks.scatter_add_(-1, taps.reshape(1, 1, n_out, 1, n_taps).expand(L, c_out, n_out, c_in_group, n_taps),
                        powers.reshape(L, c_out, 1, c_in_group, n_taps).expand(L, c_out, n_out, c_in_group, n_taps))
    blocks = blocks[..., 1:]
    groups = layer.groups
    if groups == 1:
        return blocks.reshape(L, c_out * n_out, c_in * n_in)
    matrix = weight.new_zeros((L, groups, c_out // groups, n_out, groups, c_in_group, n_in))
    blocks = blocks.reshape(L, groups, c_out // groups, n_out, c_in_group, n_in)
    for g in range(groups):
        matrix[:, g, :, :, g] = blocks[:, g]
    return matrix.reshape(L, c_out * n_out, c_in * n_in)


def _back_conv(layer, a: torch.Tensor, in_units: tuple) -> torch.Tensor:
    """Transposed convolution with the kernel's k-th power for order k."""
    L, out_units = a.shape[0], a.shape[3:]
    n_out, n_in = int(np.prod(out_units)), int(np.prod(in_units))
    taps = int(np.prod(layer.kernel_size))
    if n_out * n_in <= _DENSE_CONV_ENTRIES and layer.groups * n_in <= _DENSE_CONV_WASTE * taps * in_units[0]:
        matrix = _conv_matrix(layer, in_units, L).to(a)
        return torch.bmm(a.reshape(L, -1, n_out), matrix).reshape(*a.shape[:3], *in_units)
    spatial = in_units[1:]
    pad, extra = _conv_padding(layer, spatial)
    padded = [s + e for s, e in zip(spatial, extra)]
    grads = a.reshape(L, -1, *out_units)
    dummy = a.new_empty(1).expand(grads.shape[1], in_units[0], *padded)
    weights = _powers(layer.weight.detach().to(a), L)
    result = torch.stack([torch.ops.aten.convolution_backward(
        grads[k], dummy, weights[k], None, list(layer.stride), pad, list(layer.dilation), False,
        [0] * len(spatial), layer.groups, [True, False, False])[0] for k in range(L)])
    if any(extra):
        result = result[(...,) + tuple(slice(0, s) for s in spatial)]
    return result.reshape(*a.shape[:3], *in_units)


def _back_avg_pool(layer, a: torch.Tensor, weight: torch.Tensor, in_units: tuple) -> torch.Tensor:
    """The pool's vjp of ``a_k * w^(k-1)``: every window weight enters at the k-th power."""
    L = a.shape[0]
    d = _AVG_POOLS[type(layer)]
    out_spatial, in_spatial = tuple(a.shape[a.ndim - d:]), tuple(in_units[len(in_units) - d:])
    kernel, stride, padding, *_ = _avg_pool_2d(layer)
    kernel, stride, padding = kernel[2 - d:], stride[2 - d:], padding[2 - d:]
    if kernel == stride and not any(padding) and all(o * k == s for o, k, s in zip(out_spatial, kernel, in_spatial)):
        # windows tile the input: every input gets its window's value times w^k (one copy)
        w = float(weight.reshape(-1)[0])
        scales = torch.tensor([w ** (k + 1) for k in range(L)], dtype=a.dtype, device=a.device)
        result = a * scales.reshape(_order_shape(L, a.ndim, ()))
        for axis, k in enumerate(kernel):
            result = result.repeat_interleave(k, dim=a.ndim - d + axis)
        return result.reshape(*a.shape[:3], *in_units)
    if L > 1:
        scales = torch.stack([torch.ones_like(weight), *_powers(weight, L - 1)])
        a = a * scales.reshape(_order_shape(L, a.ndim, tuple(weight.shape)))
    grad = _as_2d(a.reshape(-1, 1, *out_spatial))
    dummy = a.new_empty(1).expand(grad.shape[0], 1, *([1] if d == 1 else []), *in_spatial)
    result = torch.ops.aten.avg_pool2d_backward(grad, dummy, *_avg_pool_2d(layer))
    return result.reshape(*a.shape[:3], *in_units)


def _back_max_pool(layer, a: torch.Tensor, indices: torch.Tensor, in_units: tuple) -> torch.Tensor:
    """Each output is one selected input (weight 1 at every order): scatter-add back to it."""
    d = _MAX_POOLS[type(layer)]
    B = indices.shape[0]
    L, _, O = a.shape[:3]
    lead = tuple(indices.shape[1:indices.ndim - d])
    flat_out = a.expand(L, B, *a.shape[2:]).reshape(L, B, O, *lead, -1)
    index = indices.reshape(1, B, 1, *lead, -1).expand(flat_out.shape)
    size_in = int(np.prod(in_units[len(in_units) - d:]))
    result = flat_out.new_zeros((L, B, O, *lead, size_in)).scatter_add_(-1, index, flat_out)
    return result.reshape(L, B, O, *in_units)


def _back_activation(coefficients: torch.Tensor, a: torch.Tensor, order: int) -> torch.Tensor:
    """Faa di Bruno on truncated series: ``f(g(t))`` with ``g - g(0) = sum_j s_j t^j``.

    ``a_in[k] = sum_{j<=k} a[j] [t^k] (s_1 t + s_2 t^2 + ...)^j``.
    """
    slopes = coefficients[1:].unsqueeze(2)  # (n, B, 1, *units): broadcast over the outputs
    L = a.shape[0]
    shape = torch.broadcast_shapes(slopes.shape[1:], a.shape[1:])
    curved = order > 1 and bool(coefficients[2:].ne(0).any())
    if not curved:  # piecewise linear here: the k-th coefficient scales by s_1^k
        result = a.new_empty((L, *shape))
        for k, slope in enumerate(_powers(slopes[0], L)):
            torch.mul(a[k], slope, out=result[k])
        return result
    result = a.new_empty((order, *shape))
    power = slopes  # power[k - 1] = [t^k] (series)^j, starting at j = 1
    for j in range(1, L + 1):
        if j > 1:  # (series)^j = (series)^(j-1) * series; its lowest term is t^j
            nxt = torch.zeros_like(power)
            for k in range(j, order + 1):
                for m in range(j - 1, k):
                    nxt[k - 1].addcmul_(power[m - 1], slopes[k - m - 1])
            power = nxt
        for k in range(j, order + 1):
            if j == 1:
                torch.mul(power[k - 1], a[0], out=result[k - 1])
            else:
                result[k - 1].addcmul_(power[k - 1], a[j - 1])
    return result


def backward_unmixed(model: nn.Module, inputs, order: int) -> UnmixedExpansion:
    """Unmixed Taylor series of every output in every input element, by one backward pass.

    The HOPE paper's rule (sections 3-4): the unmixed coefficients ``(1/k!) d^k f_o / dh_m^k``,
    ``k = 1..order``, of every unit flow from the outputs to the input. Through an elementwise
    activation they compose exactly with the activation's Taylor series (Faa di Bruno on
    truncated series); through a linear map ``h = W x`` (Linear, convolution, average or max
    pooling, batch norm) they become ``sum_m W_mi^k (.)_m``, which leaves out the cross terms
    ``d^k f / dh_m dh_l`` between the units the map feeds.

    What that gives:

    - order 1 is the gradient, exact for every network;
    - every order is exact when no unit of a linear map feeds a function with cross terms.
      That holds for one hidden layer: one unit-mixing layer (Linear or convolution, with any
      batch norm or reshape), one elementwise activation, then any linear layers
      (Linear-Tanh-Linear, Conv-Tanh-AvgPool-Flatten-Linear); and for networks whose
      activations are all ReLU/LeakyReLU (the higher orders are zero);
    - otherwise orders >= 2 approximate the unmixed series. ``expand(model, inputs, order,
      mixed=False)`` gives the exact unmixed derivatives for any depth, at a cost of one
      univariate series per input element.

    Parameters
    ----------
    model : nn.Sequential
        Possibly nested, of Linear, Conv1d/Conv2d (zero padding), AvgPool1d/2d,
        MaxPool1d/2d, BatchNorm1d/2d (eval), Flatten, Unflatten, Identity, Dropout (eval) and
        the activations Tanh, Sigmoid, Sine, ReLU, LeakyReLU, ELU, GELU, SiLU, Softplus,
        Softsign. Computed in float64 (a float32 model is copied and cast).
    inputs : array-like ``(B, *input_shape)``
    order : int
        Highest derivative, ``>= 1``.

    Returns
    -------
    UnmixedExpansion
        ``coefficients[b, k, o, *i] = (1/k!) d^k f_o / dx_i^k`` at image ``b`` (``k = 0``: the
        output value).

    Raises
    ------
    UnsupportedLayerError
        For a model that is not an ``nn.Sequential`` of the layers above; pass it to
        ``expand(..., mixed=False)`` (``method="exact"``) instead.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8, 3)).double()
    >>> backward_unmixed(net, torch.rand(5, 1, 4, 4, dtype=torch.float64), 4).coefficients.shape
    torch.Size([5, 5, 3, 1, 4, 4])
    """
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise ExpansionError(f"backward_unmixed(model, inputs, order={order}): order must be an integer >= 1")
    order = int(order)
    layers = _leaves(model)
    for path, layer in layers:
        _check(path, layer)
    if any(t.dtype != F64 for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()):
        model = copy.deepcopy(model).to(F64)
        layers = _leaves(model)
    device = next((p.device for p in model.parameters()), None)
    x = torch.as_tensor(inputs).to(dtype=F64, device=device)
    if x.ndim < 2:
        raise ExpansionError(f"backward_unmixed(model, inputs, order={order}): inputs must be a batch "
                             f"(B, *input_shape), got shape {tuple(x.shape)}")
    B = x.shape[0]
    records = []
    with torch.no_grad():
        h = x
        for path, layer in layers:
            in_units = tuple(h.shape[1:])
            h, saved = _record(layer, h, order)
            if h.ndim < 1 or h.shape[0] != B:
                raise UnsupportedLayerError(
                    f"backward_unmixed(model, ...): layer {path!r} changes the batch dimension "
                    f"({B} -> {tuple(h.shape)}); use method='exact'")
            records.append((layer, in_units, saved))
        value = h.reshape(B, -1)
        n_out = value.shape[1]
        # state (L, B or 1, outputs, *units); at the outputs only the first order lives
        a = torch.eye(n_out, dtype=F64, device=x.device).reshape(1, 1, n_out, *h.shape[1:])
        for layer, in_units, saved in reversed(records):
            a = _backward_step(layer, a, in_units, saved, order)
        coefficients = x.new_zeros((B, order + 1, n_out, *x.shape[1:]))
        coefficients[:, 0] = value.reshape(B, n_out, *([1] * (x.ndim - 1)))
        coefficients[:, 1:a.shape[0] + 1] = a.transpose(0, 1)
    return UnmixedExpansion(x, coefficients, order, tuple(h.shape[1:]))


def _backward_step(layer, a, in_units, saved, order):
    kind = type(layer)
    if kind in _ACTIVATIONS:
        return _back_activation(saved, a, order)
    if kind is nn.Linear:
        return _back_linear(layer, a)
    if kind in _CONVS:
        return _back_conv(layer, a, in_units)
    if kind in _AVG_POOLS:
        return _back_avg_pool(layer, a, saved, in_units)
    if kind in _MAX_POOLS:
        return _back_max_pool(layer, a, saved, in_units)
    if kind in _BATCH_NORMS:
        L = a.shape[0]
        scales = torch.stack(_powers(saved, L))
        return a * scales.reshape(_order_shape(L, a.ndim, (len(saved), *([1] * (len(in_units) - 1)))))
    if kind in _RESHAPES:
        return a.reshape(*a.shape[:3], *in_units)
    return a  # Identity, Dropout in eval


# -- heat maps ----------------------------------------------------------------------------------


def hope_heatmap_from(expansion, dx=1.0) -> torch.Tensor:
    """Heat map from an existing unmixed expansion (``expand(..., mixed=False)`` or
    :func:`backward_unmixed`).

    Parameters
    ----------
    expansion : UnmixedExpansion
    dx : float or array-like
        Perturbation of every element (a scalar, or one value per element, broadcast over
        ``(B, n_outputs, *input_shape)``).

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs, *input_shape)``.
    """
    dx_t = torch.as_tensor(dx, dtype=expansion.coefficients.dtype)
    out = torch.zeros_like(expansion.unmixed(0))
    power = torch.ones_like(dx_t)
    for k in range(1, expansion.order + 1):
        power = power * dx_t
        out = out + expansion.unmixed(k) * (power / math.factorial(k))
    return out


def hope_heatmap(model: nn.Module, inputs, order: int = 4, dx=1.0, method: str = "backward",
                 **expand_kwargs) -> torch.Tensor:
    """HOPE heat map of every output of ``model`` at every input in a batch.

    ``delta_y[b, o, i] = sum_{k=1..order} d^k f_o / dx_i^k * dx^k / k!``: the output change
    that the unmixed series of element ``i`` predicts when that element alone moves by ``dx``.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, *input_shape)`` to ``(B, n_outputs)`` (a classifier's logits, say).
    inputs : array-like ``(B, *input_shape)``
        Images ``(B, C, H, W)``, signals ``(B, C, L)`` or feature vectors ``(B, p)``.
    order : int
        Highest unmixed derivative used.
    dx : float
        Change applied to one input element at a time.
    method : {"backward", "exact"}
        ``"backward"`` (default; the HOPE paper's heat map): :func:`backward_unmixed`, one
        backward pass for all outputs, elements and images, for ``nn.Sequential`` image and
        vector classifiers. Its first order is the exact gradient; its higher orders are exact
        for one hidden layer (one unit-mixing layer, one activation, then linear layers) and
        for ReLU networks, and beyond that omit the cross terms between hidden units (the
        paper's rule), so they approximate the unmixed series. ``"exact"``: the Taylor
        engine's ``expand(model, inputs, order, mixed=False)``, exact unmixed derivatives for
        any traceable model and depth, several forward passes' worth of work per element.
    **expand_kwargs
        Passed to :func:`discovery.engine.expand` (``method="exact"`` only).

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs, *input_shape)``: the predicted output change per element.

    Raises
    ------
    UnsupportedLayerError
        ``method="backward"`` on a model it has no rule for; pass ``method="exact"``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Tanh(),
    ...                           torch.nn.Linear(3, 2)).double()
    >>> hope_heatmap(net, torch.rand(5, 1, 2, 2, dtype=torch.float64), order=3).shape
    torch.Size([5, 2, 1, 2, 2])
    """
    if order < 1:
        raise ExpansionError(f"hope_heatmap(model, inputs, order={order}): order must be >= 1")
    if method == "backward":
        if expand_kwargs:
            raise ExpansionError(f"hope_heatmap(..., method='backward'): {sorted(expand_kwargs)} are options of "
                                 f"method='exact' (the Taylor engine)")
        return hope_heatmap_from(backward_unmixed(model, inputs, order), dx)
    if method == "exact":
        return hope_heatmap_from(expand(model, inputs, order, mixed=False, **expand_kwargs), dx)
    raise ExpansionError(f"hope_heatmap(..., method={method!r}): method must be 'backward' or 'exact'")


def perturbation_heatmap(model: nn.Module, inputs, dx=1.0, *, chunk: int = 4096) -> torch.Tensor:
    """Measured output change when each input element alone moves by ``dx``.

    All perturbed copies go through the model in batches of ``chunk`` inputs.

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs, *input_shape)``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).double()
    >>> perturbation_heatmap(net, torch.rand(3, 1, 2, 2, dtype=torch.float64)).shape
    torch.Size([3, 2, 1, 2, 2])
    """
    x = torch.as_tensor(inputs)
    x = x.to(next((p.dtype for p in model.parameters()), torch.float64)) if not x.is_floating_point() else x
    B, shape = x.shape[0], tuple(x.shape[1:])
    D = int(np.prod(shape))
    flat = x.reshape(B, D)
    with torch.no_grad():
        base = model(x).reshape(B, -1)
        n_out = base.shape[1]
        out = torch.empty(B, D, n_out, dtype=base.dtype)
        pairs = B * D
        for start in range(0, pairs, chunk):
            idx = torch.arange(start, min(pairs, start + chunk))
            b, i = idx // D, idx % D
            batch = flat[b].clone()
            batch[torch.arange(len(idx)), i] += dx
            out[b, i] = model(batch.reshape(len(idx), *shape)).reshape(len(idx), -1) - base[b]
    return out.permute(0, 2, 1).reshape(B, n_out, *shape)


def heatmap_correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Pearson correlation of two heat maps for each output, over all inputs and elements.

    ``a``, ``b``: ``(B, n_outputs, ...)``. Returns ``(n_outputs,)``.
    """
    a = a.detach().transpose(0, 1).reshape(a.shape[1], -1).double()
    b = b.detach().transpose(0, 1).reshape(b.shape[1], -1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-300)
    return ((a * b).sum(dim=1) / denom).numpy()
