"""A Taylor polynomial standing in for its network: a torch module, a NumPy function, their sizes.

One reference point of an :class:`~discovery.engine.Expansion` is frozen into precomputed tensors
(centre, exponent table, coefficients). One input uses Horner's scheme (``order`` fused
multiply-adds); several inputs use one vectorised power table and a matrix product.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from discovery.errors import ExpansionError

__all__ = ["PolynomialModule", "NumpyPolynomial", "to_numpy_function", "expansion_size"]


def _parts(expansion, index: int, call: str):
    if not hasattr(expansion, "monomials") or not hasattr(expansion, "coefficients"):
        raise ExpansionError(f"{call}: expansion must be an Expansion from expand(model, at, order) with "
                             f"mixed=True, got {type(expansion).__name__}")
    B = expansion.batch_size
    if not -B <= int(index) < B:
        raise ExpansionError(f"{call}: index={index} but the expansion has {B} reference point(s); "
                             f"pass index between 0 and {B - 1}")
    center = expansion.center[int(index)].detach().cpu().to(torch.float64)
    coefficients = expansion.coefficients[int(index)].detach().cpu().to(torch.float64)  # (T, n_out)
    return center, coefficients, np.asarray(expansion.monomials), tuple(expansion.output_shape)


class PolynomialModule(nn.Module):
    """The Taylor polynomial of one reference point as a torch module.

    ``forward(x)`` maps inputs of shape ``(..., p)`` to outputs of the network's output shape
    (``(...)`` for a scalar output, ``(..., n_out)`` otherwise), like the network it replaces.

    Parameters
    ----------
    expansion : Expansion
        Result of :func:`discovery.expand` (mixed mode).
    index : int
        Which reference point's polynomial to use.
    dtype : torch.dtype
        ``torch.float64`` (exact to rounding) or ``torch.float32`` (faster, less memory).

    Attributes
    ----------
    order, n_inputs, n_outputs : int
    nbytes : int
        Bytes of the numbers that define the polynomial (centre and coefficients).

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> poly = PolynomialModule(expand(net, [0.0], order=3))
    >>> poly(torch.zeros(5, 1, dtype=torch.float64)).shape
    torch.Size([5, 1])
    """

    def __init__(self, expansion, index: int = 0, *, dtype: torch.dtype = torch.float64):
        super().__init__()
        call = f"PolynomialModule(expansion, index={index})"
        if dtype not in (torch.float64, torch.float32):
            raise ExpansionError(f"{call}: dtype must be torch.float64 or torch.float32, got {dtype}")
        center, coefficients, table, output_shape = _parts(expansion, index, call)
        self.order = int(table.max(initial=0))
        self.n_inputs = int(table.shape[1])
        self.n_outputs = int(coefficients.shape[1])
        self.output_shape = output_shape
        self.register_buffer("center", center.to(dtype))
        self.register_buffer("coefficients", coefficients.to(dtype))
        self.register_buffer("exponents", torch.as_tensor(table, dtype=torch.long))
        self.register_buffer("powers", torch.arange(self.order + 1, dtype=dtype))
        self.register_buffer("variables", torch.arange(self.n_inputs).unsqueeze(0))
        # Horner needs ascending degree; the graded table of one input already is 0, 1, ..., n.
        self._horner = self.n_inputs == 1 and self.order >= 1

    @property
    def nbytes(self) -> int:
        return self.center.nbytes + self.coefficients.nbytes

    def extra_repr(self) -> str:
        return f"inputs={self.n_inputs}, outputs={self.n_outputs}, order={self.order}, terms={len(self.exponents)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.n_inputs:
            raise ExpansionError(f"PolynomialModule.forward(x): x has shape {tuple(x.shape)}; the last axis "
                                 f"must hold the {self.n_inputs} input(s)")
        dx = x.to(self.center.dtype) - self.center
        c = self.coefficients
        if self._horner:
            y = torch.addcmul(c[self.order - 1], dx, c[self.order])
            for k in range(self.order - 2, -1, -1):
                y = torch.addcmul(c[k], dx, y)
        else:
            table = dx.unsqueeze(-1) ** self.powers  # (..., p, n + 1)
            terms = table[..., self.variables, self.exponents].prod(-1)  # (..., T)
            y = terms @ c
        return y.reshape(*x.shape[:-1], *self.output_shape)


class NumpyPolynomial:
    """The Taylor polynomial of one reference point as a plain NumPy function.

    Calling it maps ``(..., p)`` arrays to ``(...)`` (scalar output) or ``(..., n_out)``.
    Build it with :func:`to_numpy_function`.
    """

    def __init__(self, center: np.ndarray, coefficients: np.ndarray, exponents: np.ndarray, output_shape: tuple):
        self.center = center
        self.coefficients = coefficients
        self.exponents = exponents
        self.output_shape = output_shape
        self.order = int(exponents.max(initial=0))
        self.n_inputs = int(exponents.shape[1])
        self._powers = np.arange(self.order + 1)
        self._variables = np.arange(self.n_inputs)[None, :]

    @property
    def nbytes(self) -> int:
        """Bytes of the numbers that define the polynomial (centre and coefficients)."""
        return int(self.center.nbytes + self.coefficients.nbytes)

    def __repr__(self) -> str:
        return (f"NumpyPolynomial(inputs={self.n_inputs}, outputs={self.coefficients.shape[1]}, "
                f"order={self.order}, nbytes={self.nbytes})")

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self.coefficients.dtype)
        if x.shape[-1:] != (self.n_inputs,):
            raise ExpansionError(f"NumpyPolynomial(x): x has shape {x.shape}; the last axis must hold "
                                 f"the {self.n_inputs} input(s)")
        dx = x - self.center
        c = self.coefficients
        if self.n_inputs == 1 and self.order >= 1:
            y = dx * c[self.order] + c[self.order - 1]
            for k in range(self.order - 2, -1, -1):
                y = y * dx + c[k]
        else:
            table = dx[..., None] ** self._powers
            y = table[..., self._variables, self.exponents].prod(-1) @ c
        return y.reshape(*x.shape[:-1], *self.output_shape)


def to_numpy_function(expansion, index: int = 0, *, dtype=np.float64) -> NumpyPolynomial:
    """The polynomial of reference point ``index`` as a NumPy function (no torch at call time).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from discovery.engine import expand
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> f = to_numpy_function(expand(net, [0.0, 0.0], order=3))
    >>> f(np.zeros((4, 2))).shape
    (4, 1)
    """
    center, coefficients, table, output_shape = _parts(expansion, index, f"to_numpy_function(expansion, index={index})")
    return NumpyPolynomial(center.numpy().astype(dtype), coefficients.numpy().astype(dtype),
                           table.astype(np.intp), output_shape)


def _saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def expansion_size(expansion, model: nn.Module | None = None, index: int = 0,
                   dtype: torch.dtype = torch.float32) -> dict:
    """Sizes in bytes of a polynomial surrogate and, if given, of the network it replaces.

    Parameters
    ----------
    expansion : Expansion
    model : torch.nn.Module, optional
    index : int
        Reference point whose polynomial is measured.
    dtype : torch.dtype
        Precision the polynomial is stored in (the network's own is used for the network).

    Returns
    -------
    dict
        ``polynomial_bytes`` (centre and coefficients), ``polynomial_file_bytes`` (its
        ``state_dict`` written by ``torch.save``), and with ``model``: ``network_bytes`` (its
        ``state_dict`` tensors), ``network_file_bytes`` (``torch.save(model)``) and ``ratio``
        (``network_bytes / polynomial_bytes``).

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    >>> sizes = expansion_size(expand(net, [0.0], order=3), net)
    >>> sizes["polynomial_bytes"], sizes["network_bytes"]
    (20, 772)
    """
    module = PolynomialModule(expansion, index, dtype=dtype)
    coefficients_only = {"center": module.center, "coefficients": module.coefficients}
    sizes = {"polynomial_bytes": module.nbytes, "polynomial_file_bytes": _saved_bytes(coefficients_only)}
    if model is not None:
        state = model.state_dict()
        sizes["network_bytes"] = int(sum(t.nbytes for t in state.values() if isinstance(t, torch.Tensor)))
        sizes["network_file_bytes"] = _saved_bytes(model)
        sizes["ratio"] = sizes["network_bytes"] / max(sizes["polynomial_bytes"], 1)
    return sizes
