"""``expand``: exact Taylor polynomials of a network at many reference points in one pass."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from discovery.engine.polynomial import evaluate, n_terms, shift_coefficients
from discovery.engine.rules import Context
from discovery.engine.series import Algebra, Series, serial_run
from discovery.engine.trace import run_graph, trace
from discovery.errors import ExpansionError, UnsupportedLayerError

__all__ = ["expand", "Expansion", "UnmixedExpansion"]

_MAX_TERMS = 200_000


def expand(
    model: nn.Module,
    at,
    order: int,
    *,
    mixed: bool = True,
    dtype: torch.dtype = torch.float64,
    device=None,
    memory_budget: int = 1 << 30,
):
    """Exact Taylor expansion of ``model`` at every reference point in ``at``.

    Forward Taylor mode: every node of the traced model carries the truncated multivariate
    series (all monomials of total degree ``<= order`` in the input deviation), so mixed
    partial derivatives are exact for any depth, not only for one hidden layer.

    Parameters
    ----------
    model : torch.nn.Module
        Traceable by ``torch.fx``; float32 models are cast to ``dtype`` on the fly.
    at : array-like
        ``(p,)`` or ``(B, p)`` reference points (mixed mode), or a batch of inputs of any shape
        ``(B, ...)`` such as images ``(B, C, H, W)`` or signals ``(B, C, L)`` (``mixed=False``).
    order : int
        Highest total degree kept.
    mixed : bool
        ``True``: every partial derivative (returns :class:`Expansion`). ``False``: pure
        derivatives ``d^k f / dx_i^k`` of every input element ``i`` (returns
        :class:`UnmixedExpansion`), for high-dimensional inputs.
    dtype : torch.dtype
        Precision of the computation (float64 by default).
    device : str or torch.device, optional
        Where to compute; defaults to the device of the model's parameters.
    memory_budget : int
        Unmixed mode only: bytes one chunk of directions may use (directions are processed in
        as few batched chunks as fit).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> e = expand(net, [0.1, -0.2], order=3)
    >>> e.derivative((1, 1)).shape
    torch.Size([1, 1])
    """
    call = f"expand(model, at, order={order!r})"
    order = _check_order(order, call)
    if not isinstance(model, nn.Module):
        raise ExpansionError(f"{call}: model must be a torch.nn.Module, got {type(model).__name__}")
    device = _resolve_device(model, device, call)
    at_t = _as_points(at, dtype, device, call)
    gm = trace(model, call)
    with serial_run():  # the caller's threads go to large linear maps and fused kernels only
        if mixed:
            return _expand_mixed(gm, model, at_t, order, dtype, device, call)
        return _expand_unmixed(gm, model, at_t, order, dtype, device, call, memory_budget)


# -- argument checks ----------------------------------------------------------------------------


def _check_order(order, call: str) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        if isinstance(order, float) and order.is_integer():
            raise ExpansionError(f"{call}: order must be an int, got the float {order}; pass order={int(order)}")
        raise ExpansionError(f"{call}: order must be a non-negative int (e.g. order=4), got {order!r}")
    if order < 0:
        raise ExpansionError(f"{call}: order must be >= 0, got {order}; order=0 gives the values, 1 adds gradients")
    return int(order)


def _resolve_device(model: nn.Module, device, call: str) -> torch.device:
    devices = {t.device for t in list(model.parameters()) + list(model.buffers())}
    if any(d.type == "meta" for d in devices):
        raise ExpansionError(f"{call}: the model has parameters on the 'meta' device, which hold no values; "
                             "load real weights (e.g. model.to_empty(device='cpu') then load_state_dict) first")
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ExpansionError(f"{call}: the model's parameters are spread over several devices ({names}); "
                             "move it to one with model.to(device)")
    model_device = next(iter(devices)) if devices else None
    if device is None:
        return model_device or torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExpansionError(f"{call}: device={str(device)!r} was asked for but CUDA is not available; pass device='cpu'")
    if model_device is not None and not _same_device(model_device, device):
        raise ExpansionError(f"{call}: device={str(device)!r} but the model's parameters are on {model_device}; "
                             f"pass device={str(model_device)!r} or move the model with model.to({str(device)!r})")
    return device


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    return a.index == b.index or a.index is None or b.index is None


def _as_points(at, dtype, device, call: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(at) if not isinstance(at, torch.Tensor) else at)
    except (TypeError, ValueError) as exc:
        raise ExpansionError(f"{call}: at must be array-like numbers of shape (p,) or (B, p), got {type(at).__name__}") from exc
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
        raise ExpansionError(f"{call}: at must hold real numbers, got dtype {t.dtype}")
    t = t.detach().to(device=device, dtype=dtype)
    if t.ndim == 0 or t.numel() == 0:
        raise ExpansionError(f"{call}: at must have shape (p,) or (B, p) with at least one point, got shape {tuple(t.shape)}")
    bad = ~torch.isfinite(t)
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ExpansionError(f"{call}: at contains NaN or infinite values (first at index {where}); "
                             "pass finite reference points")
    return t


def _expected_features(model: nn.Module):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return f"its first Linear layer expects {m.in_features} features"
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return f"its first {type(m).__name__} expects {m.in_channels} input channels"
    return None


def _run(gm, model, x: Series, dtype, device, call, shape) -> torch.Tensor:
    ctx = Context(x.algebra, dtype, device)
    try:
        out = run_graph(gm, x, ctx, call)
    except UnsupportedLayerError:
        raise
    except ExpansionError as exc:
        hint = _expected_features(model)
        if hint and ("shape" in str(exc) or "size" in str(exc)):
            raise ExpansionError(f"{exc}. at has shape {tuple(shape)}; {hint}") from exc
        raise
    if isinstance(out, (tuple, list)):
        raise ExpansionError(f"{call}: the model returns a {type(out).__name__}; expand a model with one tensor output")
    if not isinstance(out, Series):
        raise ExpansionError(f"{call}: the model's output does not depend on its input")
    return out.coeffs


# -- mixed mode ---------------------------------------------------------------------------------


def _expand_mixed(gm, model, at, order, dtype, device, call) -> "Expansion":
    if at.ndim == 1:
        at = at.unsqueeze(0)
    if at.ndim != 2:
        raise ExpansionError(f"{call}: at has shape {tuple(at.shape)}; mixed=True expects (p,) or (B, p). "
                             "For image- or signal-like inputs pass mixed=False")
    B, p = at.shape
    if n_terms(p, order) > _MAX_TERMS:
        raise ExpansionError(f"{call}: {p} inputs at order {order} means {n_terms(p, order):,} monomials; "
                             "lower the order or pass mixed=False for pure derivatives of every input")
    algebra = Algebra(p, order)
    coeffs = at.new_zeros((algebra.n_terms, B, p))
    coeffs[0] = at
    if order >= 1:
        coeffs[1 : p + 1, :, :] = torch.eye(p, dtype=dtype, device=device).unsqueeze(1)
    with torch.no_grad():
        out = _run(gm, model, Series(coeffs, algebra, degree=1), dtype, device, call, at.shape)
    output_shape = tuple(out.shape[2:])
    out = out.reshape(out.shape[0], B, -1).permute(1, 0, 2).contiguous()
    return Expansion(at, out, order, output_shape=output_shape)


class Expansion:
    """Taylor polynomials of a network at ``B`` reference points.

    Attributes
    ----------
    center : (B, p) tensor
    coefficients : (B, T, n_outputs) tensor
        ``c_alpha = (d^alpha f)(center) / alpha!`` for each monomial ``alpha``.
    monomials : (T, p) int64 array
        Exponents, graded order (row 0 is the constant term).
    order : int
    output_shape : tuple
        The model's output shape per sample (``n_outputs`` is its product).
    """

    def __init__(self, center: torch.Tensor, coefficients: torch.Tensor, order: int, output_shape=()):
        self.center = center
        self.coefficients = coefficients
        self.order = int(order)
        self.output_shape = tuple(output_shape)
        self.monomials = Algebra(center.shape[1], self.order).monomials
        self._index = {tuple(int(v) for v in row): k for k, row in enumerate(self.monomials)}

    @property
    def batch_size(self) -> int:
        return self.center.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.center.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.coefficients.shape[2]

    def __repr__(self) -> str:
        return (f"Expansion(points={self.batch_size}, inputs={self.n_inputs}, outputs={self.n_outputs}, "
                f"order={self.order}, terms={len(self.monomials)})")

    def coefficient(self, alpha) -> torch.Tensor:
        """Taylor coefficient of ``(x - center)^alpha``: ``(B, n_outputs)``."""
        return self.coefficients[:, self._term(alpha), :]

    def derivative(self, alpha) -> torch.Tensor:
        """Partial derivative ``d^alpha f`` at every centre: ``(B, n_outputs)``.

        ``alpha`` is a tuple of ``p`` non-negative ints with ``sum(alpha) <= order``.
        """
        k = self._term(alpha)
        scale = float(np.prod([math.factorial(a) for a in self.monomials[k]]))
        return self.coefficients[:, k, :] * scale

    def _term(self, alpha) -> int:
        key = tuple(int(a) for a in alpha)
        if len(key) != self.n_inputs or any(a < 0 for a in key):
            raise ExpansionError(f"derivative(alpha={alpha!r}): alpha must be {self.n_inputs} non-negative ints")
        if sum(key) > self.order:
            raise ExpansionError(f"derivative(alpha={alpha!r}): total order {sum(key)} exceeds the expansion's "
                                 f"order {self.order}; expand with order >= {sum(key)}")
        return self._index[key]

    def __call__(self, x) -> torch.Tensor:
        """Evaluate every polynomial at ``x``: ``(M, p) -> (B, M, n_outputs)``; ``(p,) -> (B, n_outputs)``."""
        xt = torch.as_tensor(x, dtype=self.coefficients.dtype, device=self.coefficients.device)
        single = xt.ndim == 1
        if single:
            xt = xt.unsqueeze(0)
        if xt.ndim != 2 or xt.shape[1] != self.n_inputs:
            raise ExpansionError(f"Expansion.__call__(x): x has shape {tuple(xt.shape)}; pass (M, {self.n_inputs}) or ({self.n_inputs},)")
        out = evaluate(self.coefficients, self.monomials, self.center, xt)
        return out[:, 0, :] if single else out

    def shift(self, center) -> "Expansion":
        """The same polynomials re-centred exactly at ``center`` (``(p,)`` or ``(B, p)``)."""
        c = torch.as_tensor(center, dtype=self.center.dtype, device=self.center.device)
        c = c.expand(self.batch_size, -1) if c.ndim == 1 else c
        if c.shape != self.center.shape:
            raise ExpansionError(f"shift(center): center has shape {tuple(c.shape)}; pass ({self.n_inputs},) or {tuple(self.center.shape)}")
        coeffs = shift_coefficients(self.coefficients, self.monomials, self.center, c)
        return Expansion(c.clone(), coeffs, self.order, self.output_shape)

    def to_sympy(self, names=None) -> list:
        """SymPy polynomials: a list over points of lists over outputs.

        ``names`` are the input names (default ``x0 .. x{p-1}``).
        """
        import sympy

        names = list(names) if names is not None else [f"x{i}" for i in range(self.n_inputs)]
        if len(names) != self.n_inputs:
            raise ExpansionError(f"to_sympy(names): {len(names)} names for {self.n_inputs} inputs")
        symbols = [sympy.Symbol(n, real=True) for n in names]
        result = []
        coeffs = self.coefficients.detach().cpu().numpy()
        centers = self.center.detach().cpu().numpy()
        for b in range(self.batch_size):
            shifted = [s - sympy.Float(float(c)) for s, c in zip(symbols, centers[b])]
            basis = [sympy.Mul(*[d**int(a) for d, a in zip(shifted, row)]) for row in self.monomials]
            result.append([sympy.Add(*[sympy.Float(float(coeffs[b, t, o])) * basis[t] for t in range(len(basis))])
                           for o in range(self.n_outputs)])
        return result

    def save(self, path) -> None:
        """Write the expansion to ``path`` (atomically, torch format)."""
        _atomic_save({"kind": "mixed", "center": self.center.cpu(), "coefficients": self.coefficients.cpu(),
                      "order": self.order, "output_shape": list(self.output_shape)}, path)

    @classmethod
    def load(cls, path) -> "Expansion":
        """Read an expansion written by :meth:`save`."""
        state = _load(path, "mixed")
        return cls(state["center"], state["coefficients"], state["order"], tuple(state["output_shape"]))


# -- unmixed mode -------------------------------------------------------------------------------


def _expand_unmixed(gm, model, at, order, dtype, device, call, memory_budget) -> "UnmixedExpansion":
    if at.ndim == 1:
        at = at.unsqueeze(0)
    B = at.shape[0]
    input_shape = tuple(at.shape[1:])
    D = int(np.prod(input_shape))
    per_direction = _bytes_per_direction(gm, at, order, dtype)
    chunk = max(1, min(D, int(memory_budget // max(per_direction, 1))))
    result = None
    eye_flat = None
    with torch.no_grad():
        for start in range(0, D, chunk):
            stop = min(D, start + chunk)
            Dc = stop - start
            algebra = Algebra(1, order, directions=Dc)
            # Only the value and direction rows are stored: the series is affine.
            coeffs = at.new_zeros((min(order, 1) + 1, Dc, B, D))
            coeffs[0] = at.reshape(1, B, D)
            if order >= 1:
                eye_flat = torch.zeros((Dc, D), dtype=dtype, device=device)
                eye_flat[torch.arange(Dc), torch.arange(start, stop)] = 1.0
                coeffs[1] = eye_flat.unsqueeze(1)
            coeffs = coeffs.reshape(coeffs.shape[0], Dc * B, *input_shape)
            units = (start, stop, B) if len(input_shape) == 1 else None
            x = Series(coeffs, algebra, degree=1, unit_directions=units)
            out = _run(gm, model, x, dtype, device, call, at.shape)
            output_shape = tuple(out.shape[2:])
            out = out.reshape(order + 1, Dc, B, -1)  # (k, direction, point, output)
            if result is None:
                result = at.new_zeros((B, order + 1, out.shape[-1], D))
            result[:, :, :, start:stop] = out.permute(2, 0, 3, 1)
    return UnmixedExpansion(at, result.reshape(B, order + 1, -1, *input_shape), order, output_shape)


def _bytes_per_direction(gm, at, order, dtype) -> int:
    """Peak bytes one direction's series needs, from one plain forward pass."""
    peak = at[:1].numel()

    class _Probe(torch.fx.Interpreter):
        def run_node(self, n):
            nonlocal peak
            value = super().run_node(n)
            if isinstance(value, torch.Tensor):
                peak = max(peak, value[:1].numel() if value.ndim else 1)
            return value

    with torch.no_grad():
        try:
            _Probe(gm).run(at[:1])
        except Exception:  # the series run reports shape problems with a better message
            pass
    itemsize = torch.finfo(dtype).bits // 8
    # Horner's scheme holds a handful of series of the widest layer at once.
    return 8 * (order + 1) * peak * at.shape[0] * itemsize


class UnmixedExpansion:
    """Pure derivatives of every input element at each input of a batch.

    Attributes
    ----------
    center : (B, *input_shape) tensor
    coefficients : (B, order + 1, n_outputs, *input_shape) tensor
        ``coefficients[:, k, o, i] = d^k f_o / dx_i^k / k!``.
    """

    def __init__(self, center, coefficients, order, output_shape=()):
        self.center = center
        self.coefficients = coefficients
        self.order = int(order)
        self.output_shape = tuple(output_shape)

    @property
    def batch_size(self) -> int:
        return self.center.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.coefficients.shape[2]

    @property
    def input_shape(self) -> tuple:
        return tuple(self.center.shape[1:])

    def __repr__(self) -> str:
        return (f"UnmixedExpansion(points={self.batch_size}, input_shape={self.input_shape}, "
                f"outputs={self.n_outputs}, order={self.order})")

    def unmixed(self, k: int) -> torch.Tensor:
        """``d^k f / dx_i^k`` for every input element: ``(B, n_outputs, *input_shape)``."""
        if not 0 <= int(k) <= self.order:
            raise ExpansionError(f"unmixed(k={k}): k must be between 0 and the expansion's order {self.order}")
        return self.coefficients[:, int(k)] * math.factorial(int(k))

    def save(self, path) -> None:
        _atomic_save({"kind": "unmixed", "center": self.center.cpu(), "coefficients": self.coefficients.cpu(),
                      "order": self.order, "output_shape": list(self.output_shape)}, path)

    @classmethod
    def load(cls, path) -> "UnmixedExpansion":
        state = _load(path, "unmixed")
        return cls(state["center"], state["coefficients"], state["order"], tuple(state["output_shape"]))


# -- files --------------------------------------------------------------------------------------


def _atomic_save(state: dict, path) -> None:
    from discovery.folders import atomic_write

    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load(path, kind: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExpansionError(f"load({str(path)!r}): no such file") from None
    except Exception as exc:
        raise ExpansionError(f"load({str(path)!r}): not an expansion file written by save() ({exc})") from exc
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ExpansionError(f"load({str(path)!r}): holds a {found!r} expansion, not {kind!r}; "
                             f"use {'UnmixedExpansion' if found == 'unmixed' else 'Expansion'}.load")
    return state

