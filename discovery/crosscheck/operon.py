"""Operon backend: ``pyoperon.sklearn.SymbolicRegressor`` with settings that find short, accurate
formulas, and an exact tree walk from Operon's models to SymPy.

Operon's own defaults are poor for this use: it optimises no constants (``optimizer_iterations=0``),
returns one model from a single accuracy objective, and its description-length model selection
assumes a noise level of 1, which prefers trivial models whenever the target's spread is small.
Here constants are optimised, the search is two-objective (accuracy vs length, NSGA-II), the
noise scale follows the target's spread, and the chosen model comes from the Pareto front
re-scored in float64 (Operon computes in float32).
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np
import sympy

from discovery.crosscheck.base import EngineFailure, Search, as_xy, finish
from discovery.errors import CrosscheckError

__all__ = ["fit_operon", "tree_to_sympy", "OPERON_DEFAULTS", "default_threads"]

OPERON_DEFAULTS: dict[str, Any] = {
    "allowed_symbols": "add,sub,mul,div,square,sqrt,exp,log,sin,cos,constant,variable",
    "objectives": ["r2", "length"],
    "optimizer": "lm",
    "optimizer_iterations": 10,
    "population_size": 500,
    "generations": 40,
    "max_evaluations": 10**9,
    "max_length": 30,
    "max_depth": 10,
    "tournament_size": 3,
}
"""Settings passed to ``pyoperon.sklearn.SymbolicRegressor`` unless overridden."""

MAX_SEARCH_ROWS = 1000
_SEARCH_SHARE = 0.85  # of time_budget: the evolutionary search; the rest polishes its best candidates
"""Rows the evolutionary search sees (a seeded subsample); constants are polished on all rows."""


def default_threads() -> int:
    """CPU cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _unary(fn):
    return lambda args: fn(args[0])


_RULES = {
    "Add": lambda a: sympy.Add(*a),
    "Mul": lambda a: sympy.Mul(*a),
    "Sub": lambda a: -a[0] if len(a) == 1 else a[0] - sympy.Add(*a[1:]),
    "Div": lambda a: 1 / a[0] if len(a) == 1 else a[0] / sympy.Mul(*a[1:]),
    "Aq": lambda a: a[0] / sympy.sqrt(1 + a[1] ** 2),
    "Pow": lambda a: a[0] ** a[1],
    "Powabs": lambda a: sympy.Abs(a[0]) ** a[1],
    "Fmin": lambda a: sympy.Min(*a),
    "Fmax": lambda a: sympy.Max(*a),
    "Square": lambda a: a[0] ** 2,
    "Sqrt": _unary(sympy.sqrt),
    "Sqrtabs": lambda a: sympy.sqrt(sympy.Abs(a[0])),
    "Cbrt": _unary(sympy.cbrt),
    "Exp": _unary(sympy.exp),
    "Log": _unary(sympy.log),
    "Logabs": lambda a: sympy.log(sympy.Abs(a[0])),
    "Log1p": lambda a: sympy.log(1 + a[0]),
    "Abs": _unary(sympy.Abs),
    "Sin": _unary(sympy.sin),
    "Cos": _unary(sympy.cos),
    "Tan": _unary(sympy.tan),
    "Asin": _unary(sympy.asin),
    "Acos": _unary(sympy.acos),
    "Atan": _unary(sympy.atan),
    "Sinh": _unary(sympy.sinh),
    "Cosh": _unary(sympy.cosh),
    "Tanh": _unary(sympy.tanh),
    "Floor": _unary(sympy.floor),
    "Ceil": _unary(sympy.ceiling),
}


def tree_to_sympy(tree, symbols_by_hash: dict[int, sympy.Symbol]) -> sympy.Expr:
    """Convert an Operon tree to SymPy exactly, node by node.

    Operon stores a tree in postfix order; the first argument of a node is the subtree just
    before it, the next argument the subtree before that. Variables carry a weight
    (``w * x``); constants and weights are taken at their stored value, not a printed one. A node
    with no value (``0/0``) becomes ``nan``: the candidate is then unusable and dropped by
    :func:`~discovery.crosscheck.base.candidates_table`.

    Parameters
    ----------
    tree : pyoperon.Tree
        A model, e.g. ``SymbolicRegressor().fit(X, y).model_``.
    symbols_by_hash : dict
        Operon variable hash -> SymPy symbol (``regressor.variables_`` gives hash -> name).

    Examples
    --------
    >>> import pyoperon as op
    >>> x = sympy.Symbol("x")
    >>> v = op.Node.Variable(2.0); v.HashValue = 7
    >>> tree_to_sympy(op.Tree([v, op.Node.Constant(1.5), op.Node.Add()]).UpdateNodes(), {7: x})
    2.0*x + 1.5
    """
    stack: list[sympy.Expr] = []
    for i, node in enumerate(tree.Nodes):
        kind = node.Type.name
        if kind == "Constant":
            stack.append(sympy.Float(float(node.Value)))
        elif kind == "Variable":
            if node.HashValue not in symbols_by_hash:
                raise CrosscheckError(
                    f"tree_to_sympy(tree, symbols_by_hash): node {i} is a variable with hash "
                    f"{node.HashValue} that symbols_by_hash does not map; pass regressor.variables_"
                )
            w = float(node.Value)
            sym = symbols_by_hash[node.HashValue]
            stack.append(sym if w == 1.0 else sympy.Float(w) * sym)
        elif kind in _RULES:
            arity = int(node.Arity)
            args = [stack.pop() for _ in range(arity)]  # popped order = argument order
            try:
                stack.append(_RULES[kind](args))
            except (ZeroDivisionError, OverflowError, ValueError, TypeError):
                stack.append(sympy.nan)  # 0.0/0.0 and the like: no number, so the candidate is unusable
        else:
            raise CrosscheckError(
                f"tree_to_sympy(tree, symbols_by_hash): Operon node type {kind!r} at position {i} "
                f"has no SymPy rule; restrict allowed_symbols to {sorted(_RULES)}"
            )
    if len(stack) != 1:
        raise CrosscheckError(f"tree_to_sympy(tree, symbols_by_hash): malformed tree ({len(stack)} roots)")
    return stack[0]


def fit_operon(
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    time_budget: float = 30.0,
    seed: int = 0,
    n_threads: int | None = None,
    polish_constants: bool = True,
    **options: Any,
) -> Search:
    """Run Operon on ``(X, y)`` and return its Pareto front as a candidates table.

    The search stops after ``generations`` (deterministic for a given seed and data) or after
    85 % of ``time_budget`` (whole seconds, at least one), whichever comes first; the float64
    polish of its best candidates starts no later than ``time_budget`` after the call began
    (:func:`discovery.crosscheck.base.finish`).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,)
    names : sequence of str
        Column names; the formulas use them as SymPy symbols.
    time_budget : float
        Wall-clock seconds for the search and the polish of its best candidates.
    seed : int
        Random seed.
    n_threads : int, optional
        Threads for Operon (default: all available cores).
    polish_constants : bool
        Refit every front member's constants in float64; snap clean numbers in the few that
        compete for best (see :func:`~discovery.crosscheck.base.finish`).
    **options
        Any ``pyoperon.sklearn.SymbolicRegressor`` parameter, overriding ``OPERON_DEFAULTS``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (200, 2)); y = X[:, 0] * X[:, 1]
    >>> fit_operon(X, y, ["a", "b"], generations=5, n_threads=1).formula
    a*b
    """
    X, y = as_xy(X, y, names, "fit_operon(X, y, names)")
    if X.shape[1] == 0:
        raise CrosscheckError("fit_operon(X, y, names): no variables; pass at least one column")
    try:
        from pyoperon.sklearn import SymbolicRegressor
    except Exception as exc:  # the engine is missing or broken: its failure, not ours
        raise EngineFailure(f"fit_operon(X, y, names): pyoperon does not import ({type(exc).__name__}: {exc})") from exc
    settings = dict(OPERON_DEFAULTS)
    spread = float(np.std(y)) or 1.0
    settings["uncertainty"] = [1e-3 * spread]  # model-selection noise scale from the target
    settings.update(options)
    # the search gets 85 % of the seconds (whole seconds, at least one); polishing its best
    # candidates the rest (see finish)
    settings["max_time"] = max(1, int(_SEARCH_SHARE * time_budget))
    settings["random_state"] = int(seed)
    settings["n_threads"] = int(n_threads or default_threads())

    rng = np.random.default_rng(seed)
    rows = np.arange(len(y))
    if len(rows) > MAX_SEARCH_ROWS:
        rows = np.sort(rng.choice(len(y), MAX_SEARCH_ROWS, replace=False))

    start = time.perf_counter()
    try:  # only the engine's own call: any exception here is Operon's failure
        reg = SymbolicRegressor(**settings)
        reg.fit(X[rows], y[rows])
        front = [member["tree"] for member in reg.pareto_front_]
        variables = list(reg.variables_)
        generations = reg.stats_.get("generations")
    except Exception as exc:
        raise EngineFailure(f"fit_operon(X, y, names): Operon failed ({type(exc).__name__}: {exc})") from exc
    # real symbols while building, so SymPy folds log(exp(u)) and the like; plain ones after
    real = [sympy.Symbol(n, real=True) for n in names]
    plain = {r: sympy.Symbol(r.name) for r in real}
    by_hash = {h: real[j] for j, h in enumerate(variables)}
    exprs, unusable = [], 0
    for tree in front:
        try:
            exprs.append(tree_to_sympy(tree, by_hash).xreplace(plain))
        except CrosscheckError:  # a node type without a SymPy rule: that candidate is unusable
            unusable += 1
    table, best = finish(exprs, X, y, names, polish_constants=polish_constants, deadline=start + time_budget)
    seconds = time.perf_counter() - start
    settings["search_rows"] = len(rows)
    settings["generations_run"] = generations
    settings["unconvertible_models"] = unusable
    return Search("operon", table, best, seconds, settings)
