"""gplearn backend: the pure-Python fallback (``gplearn.genetic.SymbolicRegressor``), with its
programs converted to SymPy (protected operators written out as their SymPy meaning on the
data's domain: ``sqrt|x|``, ``log|x|``)."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import sympy

from discovery.crosscheck.base import EngineFailure, Search, as_xy, finish
from discovery.errors import CrosscheckError

__all__ = ["fit_gplearn", "program_to_sympy", "GPLEARN_DEFAULTS"]

GPLEARN_DEFAULTS: dict[str, Any] = {
    "population_size": 1000,
    "generations": 20,
    "function_set": ("add", "sub", "mul", "div", "sqrt", "log", "sin", "cos"),
    "parsimony_coefficient": 0.001,
    "p_crossover": 0.7,
    "p_subtree_mutation": 0.1,
    "p_hoist_mutation": 0.05,
    "p_point_mutation": 0.1,
    "max_samples": 1.0,
    "const_range": (-5.0, 5.0),
}
"""Settings passed to ``gplearn.genetic.SymbolicRegressor`` unless overridden."""

_RULES = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "sqrt": lambda a: sympy.sqrt(sympy.Abs(a)),
    "log": lambda a: sympy.log(sympy.Abs(a)),
    "abs": sympy.Abs,
    "neg": lambda a: -a,
    "inv": lambda a: 1 / a,
    "max": sympy.Max,
    "min": sympy.Min,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
}


def program_to_sympy(program: list, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """Convert a gplearn program (prefix list of functions, feature indices and constants).

    Protected division and logarithm differ from ``a/b`` and ``log|a|`` only where ``|b|`` or
    ``|a|`` is below 0.001; formulas are meant for data away from those points.

    Examples
    --------
    >>> from gplearn.functions import add2, mul2
    >>> x, y = sympy.symbols("x y")
    >>> program_to_sympy([add2, mul2, 0, 1, 2.5], [x, y])
    x*y + 2.5
    """
    def build(i: int) -> tuple[sympy.Expr, int]:
        node = program[i]
        if isinstance(node, (int, np.integer)):
            return symbols[int(node)], i + 1
        if isinstance(node, (float, np.floating)):
            return sympy.Float(float(node)), i + 1
        if node.name not in _RULES:
            raise CrosscheckError(f"program_to_sympy(program, symbols): gplearn function {node.name!r} has no SymPy rule")
        args, j = [], i + 1
        for _ in range(node.arity):
            a, j = build(j)
            args.append(a)
        return _RULES[node.name](*args), j

    expr, end = build(0)
    if end != len(program):
        raise CrosscheckError("program_to_sympy(program, symbols): malformed program")
    return expr


def fit_gplearn(
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    time_budget: float = 30.0,
    seed: int = 0,
    polish_constants: bool = True,
    **options: Any,
) -> Search:
    """Run gplearn on ``(X, y)``; one generation at a time until ``generations`` or the budget.

    Candidates are the Pareto front (length vs error) of the final population.

    Examples
    --------
    >>> X = np.random.default_rng(0).uniform(1, 2, (200, 2))
    >>> fit_gplearn(X, X[:, 0] * X[:, 1], ["a", "b"], generations=3, population_size=300).formula
    a*b
    """
    X, y = as_xy(X, y, names, "fit_gplearn(X, y, names)")
    if X.shape[1] == 0:
        raise CrosscheckError("fit_gplearn(X, y, names): no variables; pass at least one column")
    try:
        from gplearn.genetic import SymbolicRegressor
    except Exception as exc:  # the engine is missing or broken
        raise EngineFailure(f"fit_gplearn(X, y, names): gplearn does not import ({type(exc).__name__}: {exc})") from exc
    settings = dict(GPLEARN_DEFAULTS)
    settings.update(options)
    generations = int(settings.pop("generations"))
    settings["random_state"] = int(seed)
    start = time.perf_counter()
    try:  # only the engine's own calls: any exception here is gplearn's failure
        reg = SymbolicRegressor(generations=1, warm_start=True, **settings)
        for g in range(1, generations + 1):
            reg.set_params(generations=g)
            reg.fit(X, y)
            if time.perf_counter() - start > time_budget:
                break
        population = [p for p in reg._programs[-1] if p is not None]
    except Exception as exc:
        raise EngineFailure(f"fit_gplearn(X, y, names): gplearn failed ({type(exc).__name__}: {exc})") from exc
    symbols = [sympy.Symbol(n) for n in names]
    population.sort(key=lambda p: (p.length_, p.raw_fitness_))
    front, best_fit = [], np.inf
    for p in population:  # Pareto front of length vs error, simplest first
        if p.raw_fitness_ < best_fit:
            front.append(p)
            best_fit = p.raw_fitness_
    exprs = []
    for p in front[-10:]:
        try:
            exprs.append(program_to_sympy(p.program, symbols))
        except CrosscheckError:  # a function without a SymPy rule: that candidate is unusable
            pass
    table, best = finish(exprs, X, y, names, polish_constants=polish_constants)
    settings["generations_run"] = g
    return Search("gplearn", table, best, time.perf_counter() - start, settings)
