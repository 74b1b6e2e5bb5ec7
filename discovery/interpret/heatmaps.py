"""Per-pixel feature importance: HOPE heat maps from unmixed derivatives, and perturbation maps.

The HOPE heat map (Eq. 76-77 of the HOPE paper) predicts the change of every output when one
input element moves by ``dx`` from the unmixed Taylor series of that element alone:

    delta_y[o, i] = sum_{k=1..n} d^k f_o / dx_i^k * dx^k / k!

One engine pass gives every element's series, hence the map for every ``dx`` at once.
Perturbation analysis measures the same change directly, one forward pass per element.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from discovery.engine import expand
from discovery.errors import ExpansionError

__all__ = ["hope_heatmap", "hope_heatmap_from", "perturbation_heatmap", "heatmap_correlation"]


def hope_heatmap_from(expansion, dx=1.0) -> torch.Tensor:
    """Heat map from an existing unmixed expansion (``expand(..., mixed=False)``).

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


def hope_heatmap(model: nn.Module, inputs, order: int = 4, dx=1.0, **expand_kwargs) -> torch.Tensor:
    """HOPE heat map of every output of ``model`` at every input in a batch.

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

    Returns
    -------
    torch.Tensor
        ``(B, n_outputs, *input_shape)``: the predicted output change per element.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Tanh(),
    ...                           torch.nn.Linear(3, 2)).double()
    >>> hope_heatmap(net, torch.rand(5, 1, 2, 2, dtype=torch.float64), order=3).shape
    torch.Size([5, 2, 1, 2, 2])
    """
    if order < 1:
        raise ExpansionError(f"hope_heatmap(model, inputs, order={order}): order must be >= 1")
    return hope_heatmap_from(expand(model, inputs, order, mixed=False, **expand_kwargs), dx)


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
