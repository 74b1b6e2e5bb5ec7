"""Cross-check a discovered formula against a symbolic-regression engine: run the engine on the
training rows (optionally guided by what the expansion found), decide whether the two formulas
are the same law, score both on validation rows and recommend one with the reason stated; test
rows, when given, are only scored for the report, never used for the recommendation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import sympy

from discovery.crosscheck.base import Search, complexity, evaluate, finish, paired_gain, r2_score
from discovery.crosscheck.equivalence import AGREE, equivalence
from discovery.errors import CrosscheckError

__all__ = ["Comparison", "Guide", "compare", "guide_from_formula", "run_engine", "ENGINES"]


def _operon(*args, **kwargs) -> Search:
    from discovery.crosscheck.operon import fit_operon

    return fit_operon(*args, **kwargs)


def _gplearn(*args, **kwargs) -> Search:
    from discovery.crosscheck.gplearn import fit_gplearn

    return fit_gplearn(*args, **kwargs)


def _pysr(*args, **kwargs) -> Search:
    from discovery.crosscheck.pysr import fit_pysr

    return fit_pysr(*args, **kwargs)


ENGINES: dict[str, Callable[..., Search]] = {"operon": _operon, "gplearn": _gplearn, "pysr": _pysr}
"""Backends by name: ``fit(X, y, names, *, time_budget, seed, **options) -> Search``."""


@dataclass
class Guide:
    """What the expansion found, to narrow the engine's search (HOPE-guided search).

    Attributes
    ----------
    variables : list of str, optional
        The variables that matter; the engine sees only these columns.
    additive : list of list of str, optional
        Groups of variables with ``y = f1(group1) + f2(group2) + ...``; each part is searched
        separately on its own variables, against the target minus the other parts.
    """

    variables: list[str] | None = None
    additive: list[list[str]] | None = None

    @classmethod
    def coerce(cls, guide: "Guide | Mapping[str, Any] | Sequence[str] | None") -> "Guide | None":
        """Accept a ``Guide``, a dict with the same keys, or a list of variable names."""
        if guide is None or isinstance(guide, Guide):
            return guide
        if isinstance(guide, Mapping):
            unknown = set(guide) - {"variables", "additive"}
            if unknown:
                raise CrosscheckError(
                    f"compare(..., guide={dict(guide)!r}): unknown keys {sorted(unknown)}; pass 'variables' and/or 'additive'"
                )
            return cls(variables=guide.get("variables"), additive=guide.get("additive"))
        return cls(variables=list(guide))


@dataclass
class Comparison:
    """The cross-check of one formula against one engine.

    Attributes
    ----------
    verdict : str
        ``"agree"``, ``"equivalent up to constants"`` or ``"disagree"``.
    evidence : list of str
        The checks behind the verdict, in words.
    recommended : str
        ``"expansion"`` or the engine's name.
    reason : str
        Why that formula is recommended.
    expansion_formula, engine_formula : sympy.Expr
        The two formulas compared.
    engine : str
        The engine that ran.
    candidates : pandas.DataFrame
        The engine's candidates (PySR ``equations_`` columns).
    r2 : dict
        R^2 of ``"expansion"`` and of the engine on the validation rows (the recommendation's basis).
    complexity : dict
        Complexity (expression-tree nodes) of each formula.
    times : dict
        Seconds spent: ``"engine"`` (search, wall clock), ``"engine_cpu"`` (its CPU time over
        all threads) and ``"compare"`` (everything else).
    guided : str
        How the search was narrowed, or ``""``.
    r2_test : dict
        R^2 of both on the test rows (empty when none were given); reported, never used to choose.
    rows : dict
        Number of ``"train"`` (engine search), ``"validation"`` and ``"test"`` rows.
    """

    verdict: str
    evidence: list[str]
    recommended: str
    reason: str
    expansion_formula: sympy.Expr
    engine_formula: sympy.Expr
    engine: str
    candidates: pd.DataFrame
    r2: dict[str, float]
    complexity: dict[str, int]
    times: dict[str, float] = field(default_factory=dict)
    guided: str = ""
    r2_test: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def recommended_formula(self) -> sympy.Expr:
        """The formula the comparison recommends."""
        return self.expansion_formula if self.recommended == "expansion" else self.engine_formula

    def summary(self) -> str:
        """One line for a terminal: verdict, recommendation and R^2 of both."""
        e = self.engine
        test = (f"; test rows: expansion {self.r2_test['expansion']:.6f}, {e} {self.r2_test[e]:.6f}"
                if self.r2_test else "")
        return (
            f"cross-check ({e}): {self.verdict}; recommended: {self.recommended} "
            f"(R^2 on validation rows: expansion {self.r2['expansion']:.6f}, {e} {self.r2[e]:.6f}{test}; "
            f"{self.reason})"
        )


def guide_from_formula(formula: sympy.Expr, names: Sequence[str]) -> Guide:
    """The guide an expansion's formula implies: the variables it uses, and an additive split
    when its terms fall into groups of variables that never share a term.

    Examples
    --------
    >>> a, b, c = sympy.symbols("a b c")
    >>> guide_from_formula(a - a**3 / 6 + b**2 / 2, ["a", "b", "c"])
    Guide(variables=['a', 'b'], additive=[['a'], ['b']])
    >>> guide_from_formula(a * b + b * c, ["a", "b", "c"]).additive is None
    True
    """
    names = list(names)
    used = {s.name for s in sympy.sympify(formula).free_symbols}
    variables = [n for n in names if n in used]
    groups: list[set[str]] = []
    for term in sympy.Add.make_args(sympy.expand(formula)):
        vs = {s.name for s in term.free_symbols}
        if not vs:
            continue
        touching = [g for g in groups if g & vs]
        merged = vs.union(*touching)
        groups = [g for g in groups if not (g & vs)] + [merged]
    additive = None
    if len(groups) > 1:
        additive = sorted(([n for n in names if n in g] for g in groups), key=lambda g: names.index(g[0]))
    return Guide(variables=variables, additive=additive)


def _resolve_engine(engine: str) -> str:
    if engine == "auto":
        from discovery.crosscheck.pysr import pysr_available

        return "pysr" if pysr_available() else "operon"
    if engine not in ENGINES:
        raise CrosscheckError(f"compare(..., engine={engine!r}): unknown engine; pass one of {sorted(ENGINES)} or 'auto'")
    return engine


def run_engine(
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    engine: str = "operon",
    time_budget: float = 30.0,
    seed: int = 0,
    guide: Guide | Mapping[str, Any] | Sequence[str] | None = None,
    formula: sympy.Expr | None = None,
    **options: Any,
) -> tuple[Search, str]:
    """Run one engine, narrowed by ``guide`` when given; returns the search and how it was narrowed.

    For an additive guide, ``formula`` (the expansion's formula) supplies the other parts'
    values while each part is searched.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (300, 3)); y = X[:, 0] * X[:, 1]
    >>> s, how = run_engine(X, y, ["a", "b", "c"], guide=["a", "b"], generations=5)
    >>> how, s.formula
    ('variables a, b', a*b)
    """
    engine = _resolve_engine(engine)
    fit = ENGINES[engine]
    g = Guide.coerce(guide)
    names = list(names)
    if g is None or (g.variables is None and not g.additive):
        return fit(X, y, names, time_budget=time_budget, seed=seed, **options), ""
    variables = list(g.variables) if g.variables is not None else names
    if not variables:
        raise CrosscheckError("compare(..., guide=...): the guide names no variables; pass at least one, or no guide")
    missing = [v for v in variables + [v for grp in g.additive or [] for v in grp] if v not in names]
    if missing:
        raise CrosscheckError(f"compare(..., guide=...): variables {missing} are not among the columns {names}")
    if g.additive and len(g.additive) > 1 and formula is not None:
        parts = _additive_parts(formula, g.additive)
        if parts is not None:
            if engine == "operon":  # each part is a smaller search: share the generations
                from discovery.crosscheck.operon import OPERON_DEFAULTS

                total = int(options.get("generations", OPERON_DEFAULTS["generations"]))
                options = {**options, "generations": max(5, total // len(g.additive))}
            return _fit_additive(fit, X, y, names, g.additive, parts, time_budget, seed, options), (
                "additive parts " + " + ".join("f(" + ", ".join(grp) + ")" for grp in g.additive)
            )
    idx = [names.index(v) for v in variables]
    search = fit(X[:, idx], y, variables, time_budget=time_budget, seed=seed, **options)
    return search, "variables " + ", ".join(variables)


def _additive_parts(formula: sympy.Expr, groups: list[list[str]]) -> list[sympy.Expr] | None:
    """Split the expansion's formula into one part per group; ``None`` if a term mixes groups."""
    parts = [sympy.Integer(0) for _ in groups]
    for term in sympy.Add.make_args(sympy.expand(formula)):
        used = {s.name for s in term.free_symbols}
        homes = [i for i, grp in enumerate(groups) if used <= set(grp)]
        if not homes:
            return None
        parts[homes[0]] += term
    return parts


def _fit_additive(fit, X, y, names, groups, parts, time_budget, seed, options) -> Search:
    """Search each additive part on its own variables against ``y`` minus the other parts
    (the expansion's parts first, then the engine's as they arrive), then polish the sum."""
    start = time.perf_counter()
    current = [evaluate(p, X, names) for p in parts]
    found: list[Search] = []
    for i, grp in enumerate(groups):
        idx = [names.index(v) for v in grp]
        target = y - sum(current[j] for j in range(len(groups)) if j != i)
        s = fit(X[:, idx], target, list(grp), time_budget=time_budget / len(groups), seed=seed + i, **options)
        found.append(s)
        current[i] = evaluate(s.formula, X[:, idx], list(grp))
    best = [s.formula for s in found]
    exprs = []
    for i, s in enumerate(found):  # vary one part along its front, the others at their best
        for e in s.candidates["sympy_format"]:
            exprs.append(sympy.Add(*(best[:i] + [e] + best[i + 1:])))
    table, chosen = finish(exprs, X, y, names)
    engine = found[0].engine
    return Search(engine, table, chosen, time.perf_counter() - start, {"additive": groups})


_Z = 2.0  # an accuracy difference counts when it exceeds two standard errors (paired, validation rows)


def _recommend(verdict: str, y: np.ndarray, pred: dict[str, np.ndarray], cx: dict[str, int],
               engine: str) -> tuple[str, str]:
    """The more accurate formula on the validation rows when the difference is larger than the
    rows can resolve (a paired test of squared errors); otherwise, or when both agree, the
    simpler one, the expansion's on a tie."""
    r2 = {k: r2_score(v, y) for k, v in pred.items()}
    err = {k: max(1.0 - v, 1e-12) if np.isfinite(v) else np.inf for k, v in r2.items()}  # normalised MSE
    e, x = err["expansion"], err[engine]
    ce, cxx = cx["expansion"], cx[engine]
    if verdict == AGREE:
        if cxx < ce:
            return engine, f"both agree; the {engine} formula is simpler ({cxx} vs {ce} nodes)"
        return "expansion", f"both agree; the expansion's formula is as simple or simpler ({ce} vs {cxx} nodes)"
    gain, se = paired_gain(y, pred[engine], pred["expansion"])  # > 0: the engine's errors are smaller
    resolvable = max(_Z * se, 1e-12 * float(np.mean(y**2)))  # round-off of exact formulas decides nothing
    if gain > resolvable:
        return engine, (
            f"{engine} is more accurate on validation rows (1-R^2 {x:.2g} vs {e:.2g}, beyond what {len(y)} rows "
            f"can attribute to chance) at {'lower' if cxx < ce else 'higher' if cxx > ce else 'equal'} complexity "
            f"({cxx} vs {ce} nodes)"
        )
    if -gain > resolvable:
        return "expansion", (
            f"the expansion's formula is more accurate on validation rows (1-R^2 {e:.2g} vs {x:.2g}, beyond what "
            f"{len(y)} rows can attribute to chance) at {'lower' if ce < cxx else 'higher' if ce > cxx else 'equal'} "
            f"complexity ({ce} vs {cxx} nodes)"
        )
    same = f"accuracy the same within what {len(y)} validation rows resolve (1-R^2 {x:.2g} vs {e:.2g})"
    if cxx < ce:
        return engine, f"{same}; the {engine} formula is simpler ({cxx} vs {ce} nodes)"
    return "expansion", f"{same}; the expansion's formula is as simple or simpler ({ce} vs {cxx} nodes)"


def compare(
    formula: sympy.Expr,
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    engine: str = "operon",
    time_budget: float = 30.0,
    seed: int = 0,
    guide: Guide | Mapping[str, Any] | Sequence[str] | str | None = None,
    validation_index: np.ndarray | None = None,
    test_index: np.ndarray | None = None,
    rtol: float = 1e-2,
    **options: Any,
) -> Comparison:
    """Cross-check ``formula`` (found by the expansion) against a symbolic-regression engine.

    Three disjoint row sets: the engine searches on the training rows (all rows outside
    ``validation_index`` and ``test_index``); both formulas are scored on the validation rows,
    and the recommendation follows those scores;
    :func:`~discovery.crosscheck.equivalence.equivalence` decides whether they are the same law
    (on the inputs outside the test rows). Test rows are only scored (``r2_test``).

    Parameters
    ----------
    formula : sympy.Expr
        The expansion's formula, in symbols named like ``names``.
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,)
    names : sequence of str
        Column names of ``X``.
    engine : {"operon", "pysr", "gplearn", "auto"}
        ``"auto"`` uses PySR when it works on this machine, else Operon.
    time_budget : float
        Seconds the engine may search at most.
    seed : int
        Random seed of the split and the engine.
    guide : Guide, dict, list of str, or "auto", optional
        HOPE-guided search: the variables that matter and any additive split (see :class:`Guide`);
        ``"auto"`` derives both from ``formula`` (:func:`guide_from_formula`).
    validation_index : ndarray of int, optional
        Rows both formulas are scored on to recommend one (default: a seeded 20 % of the rows
        outside ``test_index``); the engine never sees them.
    test_index : ndarray of int, optional
        Rows used for nothing but the reported ``r2_test``.
    rtol : float
        Largest relative difference of values for two formulas of the same form to ``"agree"``.
    **options
        Passed to the engine (e.g. ``generations=20``, ``n_threads=1`` for Operon).

    Returns
    -------
    Comparison

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (400, 2)); y = (X[:, 0] ** 2 + X[:, 1]) / 2
    >>> x1, x2 = sympy.symbols("x1 x2")
    >>> c = compare(x1**2 / 2 + x2 / 2, X, y, ["x1", "x2"], generations=20)
    >>> c.verdict, c.recommended
    ('agree', 'expansion')
    """
    t0 = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    names = list(names)
    if X.ndim != 2 or X.shape != (len(y), len(names)):
        raise CrosscheckError(
            f"compare(formula, X, y, names): X has shape {X.shape}, y {y.shape}, names {len(names)}; "
            "pass X of shape (n, len(names)) and y of shape (n,)"
        )
    formula = sympy.sympify(formula)
    formula = formula.xreplace({s: sympy.Symbol(s.name) for s in formula.free_symbols})
    unknown = sorted(s.name for s in formula.free_symbols if s.name not in names)
    if unknown:
        raise CrosscheckError(f"compare(formula, X, y, names): formula uses {unknown}, not among names {names}")
    engine = _resolve_engine(engine)
    if isinstance(guide, str) and guide == "auto":
        guide = guide_from_formula(formula, names)
    test = _mask(test_index, len(y), "test_index")
    if validation_index is None:
        free = np.flatnonzero(~test)
        validation_index = np.random.default_rng(seed).choice(free, max(1, len(free) // 5), replace=False)
    val = _mask(validation_index, len(y), "validation_index")
    if np.any(val & test):
        raise CrosscheckError("compare(..., validation_index, test_index): the two share rows; pass disjoint row sets")
    train = ~(val | test)
    if train.sum() < 2 or not val.any():
        raise CrosscheckError(
            f"compare(formula, X, y, names): {int(train.sum())} training and {int(val.sum())} validation rows; "
            "pass more rows or fewer validation/test rows"
        )
    t1, cpu1 = time.perf_counter(), time.process_time()
    search, guided = run_engine(
        X[train], y[train], names, engine=engine, time_budget=time_budget, seed=seed, guide=guide,
        formula=formula, **options,
    )
    t2, cpu2 = time.perf_counter(), time.process_time()
    found = search.formula
    eq = equivalence(formula, found, X[~test], names, rtol=rtol, seed=seed)

    def predictions(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"expansion": evaluate(formula, X[rows], names), engine: evaluate(found, X[rows], names)}

    def scores(rows: np.ndarray) -> dict[str, float]:
        return {k: r2_score(v, y[rows]) for k, v in predictions(rows).items()}

    r2 = scores(val)
    cx = {"expansion": complexity(formula), engine: complexity(found)}
    recommended, reason = _recommend(eq.verdict, y[val], predictions(val), cx, engine)
    r2_test = scores(test) if test.any() else {}
    times = {"engine": t2 - t1, "engine_cpu": cpu2 - cpu1, "compare": (t1 - t0) + (time.perf_counter() - t2)}
    rows = {"train": int(train.sum()), "validation": int(val.sum()), "test": int(test.sum())}
    return Comparison(eq.verdict, eq.evidence, recommended, reason, formula, found, engine,
                      search.candidates, r2, cx, times, guided, r2_test, rows)


def _mask(index, n: int, what: str) -> np.ndarray:
    """Boolean mask of ``n`` rows from an index array (``None``: no rows)."""
    mask = np.zeros(n, dtype=bool)
    if index is None:
        return mask
    index = np.asarray(index).reshape(-1)
    if index.dtype == bool:
        if index.shape != (n,):
            raise CrosscheckError(f"compare(..., {what}=...): a boolean mask of {index.shape[0]} rows; pass {n}")
        return index.copy()
    index = index.astype(np.int64)
    if index.size and (index.min() < -n or index.max() >= n):
        raise CrosscheckError(f"compare(..., {what}=...): row indices outside [0, {n}); pass rows of X")
    mask[index] = True
    return mask
