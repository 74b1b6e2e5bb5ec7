"""A formula as code: a ``torch.nn.Module``, a NumPy function or a JAX function.

Each export walks the SymPy tree once and composes one small closure per node from a table of
rules per backend (``sympy.exp`` -> ``torch.exp`` / ``numpy.exp`` / ``jax.numpy.exp``, ...), so
the result is plain array code with no string generation or ``eval``. Float constants become
one parameter vector (trainable in the torch module, like PySR's export); integers and
rationals stay exact literals, so ``x**2`` remains an integer power. A function without a rule
raises :class:`ExportError` naming it and the supported ones.

Examples
--------
>>> a, b = sympy.symbols("a b")
>>> f = to_numpy(2.5 * sympy.exp(a) + b**2, ["a", "b"])
>>> f(np.array([[0.0, 3.0]]))
array([11.5])
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import sympy
import torch

from discovery.errors import DiscoveryError

__all__ = ["ExportError", "FormulaModule", "to_torch", "to_numpy", "to_jax", "SUPPORTED"]


class ExportError(DiscoveryError, ValueError):
    """The formula holds something the exporters cannot translate (a function without a rule,
    a complex number, a symbol that is not an input)."""


# SymPy function -> the attribute of each backend's array module that computes it elementwise.
# Names differ between torch (``asin``) and numpy / jax.numpy (``arcsin``): (torch, numpy-like).
_ELEMENTWISE: dict[type, tuple[str, str]] = {
    sympy.exp: ("exp", "exp"),
    sympy.log: ("log", "log"),
    sympy.sin: ("sin", "sin"),
    sympy.cos: ("cos", "cos"),
    sympy.tan: ("tan", "tan"),
    sympy.asin: ("asin", "arcsin"),
    sympy.acos: ("acos", "arccos"),
    sympy.atan: ("atan", "arctan"),
    sympy.sinh: ("sinh", "sinh"),
    sympy.cosh: ("cosh", "cosh"),
    sympy.tanh: ("tanh", "tanh"),
    sympy.asinh: ("asinh", "arcsinh"),
    sympy.acosh: ("acosh", "arccosh"),
    sympy.atanh: ("atanh", "arctanh"),
    sympy.Abs: ("abs", "abs"),
    sympy.sign: ("sign", "sign"),
    sympy.floor: ("floor", "floor"),
    sympy.ceiling: ("ceil", "ceil"),
}
# Functions of two or more arguments: (torch, numpy-like) names of the binary form.
_BINARY: dict[type, tuple[str, str]] = {
    sympy.Max: ("maximum", "maximum"),
    sympy.Min: ("minimum", "minimum"),
    sympy.atan2: ("atan2", "arctan2"),
}

SUPPORTED: list[str] = sorted(
    ["Add", "Mul", "Pow", "sqrt", "erf", *(f.__name__ for f in _ELEMENTWISE), *(f.__name__ for f in _BINARY)]
)
"""Names of the SymPy operations the exporters translate."""

Node = Callable[[Sequence[Any], Any], Any]  # (columns, parameters) -> array or scalar


class _Backend:
    """Array functions of one library, looked up by the names in the rule tables."""

    def __init__(self, module: Any, column: int, erf: Callable):
        self.module, self.column, self.erf = module, column, erf

    def function(self, cls: type, table: dict[type, tuple[str, str]]) -> Callable:
        return getattr(self.module, table[cls][self.column])


def _compile(expr: sympy.Basic, index: dict[str, int], backend: _Backend, constants: list[float], call: str) -> Node:
    """One closure per node of ``expr``; Float constants are appended to ``constants`` and read
    from the parameter vector at call time."""
    if isinstance(expr, sympy.Symbol):
        if expr.name not in index:
            raise ExportError(f"{call}: the formula uses {expr.name!r}, which is not among the inputs "
                              f"{list(index)}; pass names that include it")
        j = index[expr.name]
        return lambda cols, params: cols[j]
    if isinstance(expr, sympy.Float):
        k = len(constants)
        constants.append(float(expr))
        return lambda cols, params: params[k]
    if isinstance(expr, sympy.Integer):
        value = int(expr)
        return lambda cols, params: value
    if isinstance(expr, (sympy.Rational, sympy.NumberSymbol)):
        value = float(expr)
        return lambda cols, params: value
    if expr.is_number and not expr.is_real:
        raise ExportError(f"{call}: the formula holds the non-real number {expr}; only real formulas are exported")
    if isinstance(expr, sympy.Add):
        parts = [_compile(a, index, backend, constants, call) for a in expr.args]

        def add(cols, params):
            out = parts[0](cols, params)
            for part in parts[1:]:
                out = out + part(cols, params)
            return out

        return add
    if isinstance(expr, sympy.Mul):
        parts = [_compile(a, index, backend, constants, call) for a in expr.args]

        def mul(cols, params):
            out = parts[0](cols, params)
            for part in parts[1:]:
                out = out * part(cols, params)
            return out

        return mul
    if isinstance(expr, sympy.Pow):
        base = _compile(expr.base, index, backend, constants, call)
        if expr.exp == sympy.Rational(1, 2):
            sqrt = backend.module.sqrt
            return lambda cols, params: sqrt(base(cols, params))
        if expr.exp == sympy.Rational(-1, 2):
            sqrt = backend.module.sqrt
            return lambda cols, params: 1.0 / sqrt(base(cols, params))
        if isinstance(expr.exp, sympy.Integer) and int(expr.exp) < 0:
            n = -int(expr.exp)  # a quotient, as the printed formula reads
            return lambda cols, params: 1.0 / base(cols, params) ** n
        exponent = _compile(expr.exp, index, backend, constants, call)
        return lambda cols, params: base(cols, params) ** exponent(cols, params)
    if expr.func in _ELEMENTWISE:
        (arg,) = expr.args
        inner, f = _compile(arg, index, backend, constants, call), backend.function(expr.func, _ELEMENTWISE)
        return lambda cols, params: f(_as_array(backend, inner(cols, params), cols))
    if expr.func is sympy.erf:
        (arg,) = expr.args
        inner, f = _compile(arg, index, backend, constants, call), backend.erf
        return lambda cols, params: f(_as_array(backend, inner(cols, params), cols))
    if expr.func in _BINARY:
        parts = [_compile(a, index, backend, constants, call) for a in expr.args]
        f = backend.function(expr.func, _BINARY)

        def binary(cols, params):
            out = _as_array(backend, parts[0](cols, params), cols)
            for part in parts[1:]:
                out = f(out, _as_array(backend, part(cols, params), cols))
            return out

        return binary
    raise ExportError(f"{call}: no rule for {type(expr).__name__} (in {expr}); supported: {', '.join(SUPPORTED)}")


def _as_array(backend: _Backend, value, cols):
    """Python numbers as arrays of the columns' type, so every backend function accepts them."""
    if isinstance(value, (int, float)):
        return backend.module.full_like(cols[0], float(value)) if len(cols) else backend.module.asarray(float(value))
    return value


def _prepare(expr, names: Sequence[str], backend: _Backend, call: str) -> tuple[Node, list[float]]:
    expr = sympy.sympify(expr)
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ExportError(f"{call}: names {names} repeat a name; pass one name per column")
    constants: list[float] = []
    node = _compile(expr, {n: j for j, n in enumerate(names)}, backend, constants, call)
    return node, constants


def _check_columns(X, n_names: int, call: str) -> None:
    if X.ndim != 2 or X.shape[1] != n_names:
        raise ExportError(f"{call}: X has shape {tuple(X.shape)}; pass (n, {n_names}) columns in the order of names")


def to_torch(expr: sympy.Basic, names: Sequence[str], dtype: torch.dtype = torch.float64) -> "FormulaModule":
    """``expr`` as a ``torch.nn.Module`` mapping ``X`` of shape ``(n, len(names))`` to ``(n,)``.

    Parameters
    ----------
    expr : sympy.Expr
        The formula; its symbols are matched to ``names`` by name.
    names : sequence of str
        The columns of ``X``, in order (columns the formula does not use are allowed).
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    FormulaModule
        Its ``constants`` parameter holds the formula's float constants, trainable like PySR's
        export; ``expression`` and ``names`` say what it computes.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> to_torch(1.5 * x**2, ["x"])(torch.tensor([[2.0]], dtype=torch.float64)).detach()
    tensor([6.], dtype=torch.float64)
    """
    node, constants = _prepare(expr, names, _Backend(torch, 0, torch.special.erf), "to_torch(expr, names)")
    return FormulaModule(node, constants, sympy.sympify(expr), [str(n) for n in names], dtype)


class FormulaModule(torch.nn.Module):
    """A formula as a torch module: ``forward(X)`` with ``X`` of shape ``(n, len(names))``
    (a tensor, or anything ``torch.as_tensor`` takes) returns the ``(n,)`` values."""

    def __init__(self, node: Node, constants: list[float], expression: sympy.Expr, names: list[str],
                 dtype: torch.dtype):
        super().__init__()
        self._node, self.expression, self.names = node, expression, names
        self.constants = torch.nn.Parameter(torch.tensor(constants, dtype=dtype))

    def forward(self, X) -> torch.Tensor:
        X = torch.as_tensor(X, dtype=self.constants.dtype, device=self.constants.device)
        _check_columns(X, len(self.names), "FormulaModule(X)")
        out = torch.as_tensor(self._node(list(X.unbind(dim=1)), self.constants), dtype=X.dtype, device=X.device)
        return out.expand(X.shape[0]) if out.ndim == 0 else out

    def extra_repr(self) -> str:
        return str(self.expression)


def to_numpy(expr: sympy.Basic, names: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """``expr`` as a NumPy function ``f(X) -> (n,)`` in float64, for ``X`` of shape ``(n, len(names))``.

    Outside the formula's domain (``log`` of a negative number, ...) the result is ``nan``, as
    in NumPy, without warnings. The returned function carries ``constants`` (the float
    constants, a copy is used at each call) and ``expression``.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> to_numpy(sympy.sqrt(x) + 1, ["x"])(np.array([[4.0], [9.0]]))
    array([3., 4.])
    """
    from scipy.special import erf

    call = "to_numpy(expr, names)"
    node, constants = _prepare(expr, names, _Backend(np, 1, erf), call)
    params = np.asarray(constants, dtype=np.float64)
    n_names = len(names)

    def formula(X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        _check_columns(X, n_names, "to_numpy(...)(X)")
        with np.errstate(all="ignore"):
            out = np.asarray(node([X[:, j] for j in range(n_names)], params.copy()), dtype=np.float64)
        return np.broadcast_to(out, (X.shape[0],)).copy()

    formula.constants = params
    formula.expression = sympy.sympify(expr)
    return formula


def to_jax(expr: sympy.Basic, names: Sequence[str]) -> dict:
    """``expr`` as a JAX function, in PySR's form: ``{"callable": f, "parameters": p}`` with
    ``f(X, p) -> (n,)``; ``p`` holds the float constants, so ``jax.grad`` can differentiate
    with respect to them. JAX computes in float32 unless ``jax_enable_x64`` is set.

    Raises
    ------
    ImportError
        When JAX is not installed (``pip install discovery[jax]``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = sympy.Symbol("x")
    >>> out = to_jax(2.0 * x, ["x"])
    >>> [float(v) for v in out["callable"](jnp.ones((3, 1)), out["parameters"])]
    [2.0, 2.0, 2.0]
    """
    try:
        import jax.numpy as jnp
        from jax.scipy.special import erf
    except ImportError as exc:
        raise ImportError("to_jax(expr, names): JAX is not installed; pip install 'discovery[jax]' (or jax)") from exc

    call = "to_jax(expr, names)"
    node, constants = _prepare(expr, names, _Backend(jnp, 1, erf), call)
    n_names = len(names)

    def formula(X, parameters):
        X = jnp.asarray(X)
        _check_columns(X, n_names, "to_jax(...)['callable'](X, parameters)")
        out = jnp.asarray(node([X[:, j] for j in range(n_names)], parameters), dtype=X.dtype)
        return jnp.broadcast_to(out, (X.shape[0],))

    return {"callable": formula, "parameters": jnp.asarray(constants)}
