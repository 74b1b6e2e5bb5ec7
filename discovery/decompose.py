"""Recursive, structure-driven decomposition of a law into pieces small enough to solve exactly.

At each node an ensemble is trained on the node's training rows and expanded exactly at k-means
reference points; the structure tests of :mod:`discovery.interpret` then decide, against the
members' disagreement, how the node splits:

* inputs without influence are dropped;
* a pair symmetry (``f`` depends on ``x_i, x_j`` only through ``x_i - x_j``, ``x_i + x_j``,
  ``x_i x_j`` or ``x_i / x_j``) replaces the pair by one new column computed from the rows;
* an additive (``f = g(x_A) + h(x_B)``) or multiplicative (``f = g(x_A) h(x_B)``) split gives
  each block its own data from the ensemble, evaluated with the other block fixed at the
  median row: ``f = g + h - f(x*)`` or ``f = g h / f(x*)``. The pieces (and the columns left
  after dropping unused ones) keep reading exact derivatives from the parent's members on
  that slice rather than from a new ensemble fitted to the parent's mean;
* where none of these fires, ``f`` homogeneous of a clean degree ``k`` in every input (Euler's
  identity ``sum_i x_i f_i = k f``) becomes ``x_j^k g(x_i / x_j)``: the target divided by
  ``x_j^k`` and the ratios are computed from the rows, one input fewer;
* and where ``f`` is affine in an input (``d2f/dx_i^2 = 0``), ``f = A(rest) + x_i B(rest)``:
  ``B`` is the ensemble's exact gradient ``df/dx_i`` at the rows and ``A = f - x_i B``, two
  pieces of one input fewer.

The clearest test (smallest statistic relative to its threshold) is applied first, on every
node of two or more columns: the derivatives decide how a law splits before any leaf search
sees it whole. A step is kept at once when it verifies: every leaf below it is an exact closed
form, and the recombined formula, its constants refitted jointly on the training rows, fits the
validation rows to at most half the node's networks' error. Otherwise the node is also solved
whole (the leaf solver up to ``max_leaf_variables`` columns, without a search engine on the
whole table's node, which is the cross-check's job; the sparse polynomial fit above that), and
a step is kept only when it does as well as that undecomposed alternative; the others are
undone, and the reason is kept in ``notes``. The root reads the caller's ensemble when given one (``discover``
passes its raw-space networks). Finally, constants the validation rows cannot tell from zero
are dropped and the rest refitted, and sum terms the validation rows do not need are pruned.
The built-in leaf solver, the refit and the pruning live in :mod:`discovery.leaf`; the steps and
their order in :mod:`discovery.steps`; the ensemble's slices in :mod:`discovery.slices`.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import sympy
import torch

from discovery.closedform.fitting import Z_SPREAD, member_spread
from discovery.crosscheck.base import complexity
from discovery.engine import expand
from discovery.errors import DataError, ExpansionError
from discovery.fit import fit_ensemble
from discovery.interpret.structure import additive_separability, multiplicative_separability, unused_variables
from discovery.interpret.symmetry import symmetries
from discovery.leaf import (ACCURACY_TOL, FLOOR, Piece, evaluate, expired, loosened, polynomial_leaf, prune_constants,
                            prune_terms, refit_constants, rms_error, snap_constants, tie_coefficients)
from discovery.slices import PAIRS, Restricted, away_from_zero, on_line, slope_along
from discovery.steps import affine_steps, homogeneity_steps, labels, order_steps, split_steps
from discovery.tree import Decomposition, Node

__all__ = ["Decomposition", "Node", "Piece", "decompose", "polynomial_leaf", "prune_constants", "refit_constants"]

#: Training settings of every node's ensemble unless ``fit_options`` overrides them.
NODE_FIT = {"members": 4, "hidden": (32, 32), "max_epochs": 300, "patience": 50, "lbfgs_steps": 100}
_TRIES = 2  # steps tried per node before it is solved as one piece
_COMBOS = 16  # combinations of the children's tied formulas tried where they are recombined
_COMBOS_UP = 3  # of those, handed up by a node on a slice of the networks (its rows cannot decide)
_FINISH_SHARE = 0.1  # of the time budget: the last refits and pruning, after the search stops
#: A step on the table's rows is kept without trying the node whole when its formula fits the
#: validation rows to at most this share of the node's networks' error: finer than the surrogate
#: it was read from resolves, so no surrogate-level approximation (on noisy rows both sit at the
#: noise, and the undecomposed alternative is tried too).
_BEYOND = 0.5
_MIN_LEAF = 1.0  # seconds: with less left a piece gets the sparse polynomial leaf, not the full solver


def _default_leaf() -> Callable:
    """``discovery.closedform.solve_piece`` where that module exists, else :func:`polynomial_leaf`."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("discovery.closedform") is None:
        return polynomial_leaf
    return importlib.import_module("discovery.closedform").solve_piece


# -- the recursion -----------------------------------------------------------------------------

@dataclass
class _Context:
    X: np.ndarray
    symbols: list
    train: np.ndarray
    val: np.ndarray
    deadline: float  # perf_counter time: no step, leaf search or network training after it
    finish: float  # perf_counter time: the refits and the pruning stop here (the end of the budget)
    seed: int
    fit_options: dict
    solve_leaf: Callable
    max_leaf: int
    progress: bool
    notes: list
    timings: dict
    root: Any = None  # the caller's ensemble on the table's columns, used for the root's tests
    fresh: list = field(default_factory=lambda: [0])

    def columns(self, cols) -> np.ndarray:
        return np.stack([evaluate(c, self.symbols, self.X) for c in cols], axis=1)

    def tick(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def say(self, depth: int, text: str) -> None:
        if self.progress:
            print("  " * depth + text)


def _leaf(y, cols, ctx: _Context, depth: int, solver: Callable | None = None, source=None, engine=None):
    """Leaf solver (``ctx.solve_leaf`` unless ``solver`` is given) on the node's columns; the
    formula comes back in the user's symbols. ``engine`` goes to a solver that takes one."""
    t0 = time.perf_counter()
    taken = {str(s) for s in ctx.symbols}
    local = []
    for c in cols:
        if isinstance(c, sympy.Symbol):
            local.append(str(c))
            continue
        while f"u{ctx.fresh[0]}" in taken:
            ctx.fresh[0] += 1
        local.append(f"u{ctx.fresh[0]}")
        ctx.fresh[0] += 1
    solve = solver or ctx.solve_leaf
    if solve is not polynomial_leaf and ctx.left() < _MIN_LEAF:
        # out of time a piece still needs a formula: the sparse polynomial fit is quick and bounded
        ctx.notes.append(f"time budget spent: {labels(cols)} fitted by the sparse polynomial leaf, the closed-form "
                         "search not run")
        solve = polynomial_leaf
    options = {}
    if source is not None and "model" in inspect.signature(solve).parameters:
        # the piece's values come from the ensemble: its members' disagreement is the noise floor
        options["model"] = source.members_module()
    if engine is not None and "engine" in inspect.signature(solve).parameters:
        options["engine"] = engine
    piece = solve(ctx.columns(cols), y, local, val_index=ctx.val, seed=ctx.seed,
                  time_budget=max(ctx.left(), _MIN_LEAF), **options)
    if "time budget" in (piece.evidence or ""):
        cut = [line for line in piece.evidence.splitlines() if "time budget" in line]
        ctx.notes.append(f"time budget spent: leaf search on {labels(cols)} cut short ({'; '.join(cut)})")
    # numbers the piece snapped on its own rows are refitted where it is recombined (and snapped
    # again at the end, on the table's rows)
    back = {sympy.Symbol(n): c for n, c in zip(local, cols)}
    expr = loosened(sympy.sympify(piece.expression).xreplace(back), True)
    ctx.tick("leaf", t0)
    expr, rmse = _refit(expr, y, ctx)
    ctx.say(depth, f"leaf ({piece.method}) on {labels(cols)}: val RMSE {rmse:.3g}")
    others = tuple(loosened(sympy.sympify(a).xreplace(back), True) for a in getattr(piece, "alternatives", ()))
    node = Node("leaf", piece.evidence, labels(cols), method=piece.method, expression=str(expr), val_rmse=rmse,
                alternatives=others)
    return expr, node, rmse


def _refit(expr, y, ctx: _Context):
    t0 = time.perf_counter()
    # out of time, a short refit (within the finishing share) still fixes the constants the
    # pieces carried over from the ensemble
    if expired(ctx.finish):
        ctx.notes.append(f"time budget spent: constants of {sympy.sstr(expr)[:60]} not refitted")
    expr = refit_constants(expr, ctx.symbols, ctx.X[ctx.train], y[ctx.train],
                           evaluations_per_constant=100 if ctx.left() > 0 else 10, deadline=ctx.finish)
    rmse = rms_error(evaluate(expr, ctx.symbols, ctx.X[ctx.val]), y[ctx.val])
    ctx.tick("refit", t0)
    return expr, rmse


def _candidates(y, cols, ctx: _Context, depth: int, inherited=None):
    """The node's ensemble (trained, or inherited from a split), the tests, and the steps they
    allow, clearest first."""
    t0 = time.perf_counter()
    Xn = ctx.columns(cols)
    if inherited is None and depth == 0 and ctx.root is not None:
        fit = ctx.root
    elif inherited is None:
        options = {**NODE_FIT, **ctx.fit_options}
        fit = fit_ensemble(Xn[ctx.train], y[ctx.train], seed=ctx.seed, progress=False, deadline=ctx.deadline,
                           **options)
        if fit.cut:
            ctx.notes.append(f"time budget spent: the ensemble on {labels(cols)} trained less ({fit.cut})")
    else:
        fit = inherited
    ctx.tick("fit", t0)
    t0 = time.perf_counter()
    from sklearn.cluster import KMeans

    Z = (Xn[ctx.train] - fit.x_mean) / fit.x_scale
    k = int(min(24, max(4, len(Z) // 25)))
    centres = KMeans(k, n_init=2, random_state=ctx.seed).fit(Z).cluster_centers_
    e = expand(fit.model, torch.from_numpy(centres), 2)
    ctx.tick("expand", t0)
    t0 = time.perf_counter()
    steps = []
    influence = unused_variables(e)
    used, unused = influence.groups
    if unused and used:
        steps.append((0.0, "unused", f"no influence: {labels([cols[i] for i in unused])} (pooled gradient z-scores "
                      f"{np.round(influence.statistic[unused], 2).tolist()} < {influence.threshold:g})", used))
    else:
        additive = additive_separability(e)
        steps += split_steps("additive", additive)
        try:
            steps += split_steps("multiplicative", multiplicative_separability(e, units=fit))
        except ExpansionError as exc:  # f vanishes or changes sign: no product to read
            ctx.say(depth, f"multiplicative test not applicable: {exc}")
        for r in symmetries(e, units=fit, names=labels(cols)):
            if r.holds and not (r.detail["pair"] == "ratio" and np.any(Xn[:, r.variables[1]] == 0)):
                steps.append((float(r.statistic) / r.threshold, "symmetry",
                              f"depends on {r.detail['h']}: identity residual |t| {float(r.statistic):.2f} < "
                              f"{r.threshold:g} (median relative residual {r.detail['relative_residual']:.2g})",
                              (r.variables, r.detail["pair"])))
        if not steps:
            steps += homogeneity_steps(e, fit, Xn[ctx.train], cols)
            steps += affine_steps(e, fit, cols)
    ctx.tick("tests", t0)
    return fit, Xn, order_steps(steps, len(cols))


def _on_slice(fit, cols) -> bool:
    """A node of two columns on a slice of its parent's networks (its rows are their values, not
    the table's): the one column its symmetry or homogeneity step leaves is read on a line of
    them. Where the rows are the table's, the leaf judges forms by them alone, which can be finer
    than the members' disagreement."""
    return isinstance(fit, Restricted) and len(cols) == 2


def _apply(step, y, cols, fit, Xn, ctx: _Context, depth: int):
    """Children of one step: ``(recombine, formulas, nodes)``, where ``recombine(formulas)``
    is the node's formula from its children's."""
    _, kind, evidence, arg = step
    anchor = np.median(Xn[ctx.train], axis=0)
    if kind == "unused":
        expr, child, _ = _solve(y, [cols[i] for i in arg], ctx, depth + 1, Restricted(fit, arg, anchor))
        return lambda e: e[0], [expr], [child]
    if kind == "homogeneity":
        j, degree = arg
        k = sympy.Rational(str(degree))
        ratios = [c / cols[j] for i, c in enumerate(cols) if i != j]
        # on a slice, whose rows are the networks' values, one ratio's leaf reads the members on
        # the line x_j = s (their series and disagreement); more ratios get networks of their own
        source = on_line(fit, "ratio", 1 - j, j, Xn[ctx.train], float(degree)) if _on_slice(fit, cols) else None
        expr, child, _ = _solve(y / Xn[:, j] ** float(degree), ratios, ctx, depth + 1, source)
        return lambda e: cols[j] ** k * e[0], [expr], [child]
    if kind == "affine":
        i = arg
        rest = [c for k, c in enumerate(cols) if k != i]
        slope = slope_along(fit, Xn, i)
        base_expr, base, _ = _solve(y - Xn[:, i] * slope, rest, ctx, depth + 1)
        slope_expr, slope_node, _ = _solve(slope, rest, ctx, depth + 1)
        return lambda e: e[0] + cols[i] * e[1], [base_expr, slope_expr], [base, slope_node]
    if kind == "symmetry":
        (i, j), pair = arg
        new = PAIRS[pair](cols[i], cols[j])
        rest = [c for k, c in enumerate(cols) if k not in (i, j)]
        source = on_line(fit, pair, i, j, Xn[ctx.train]) if _on_slice(fit, cols) else None
        expr, child, _ = _solve(y, rest + [new], ctx, depth + 1, source)
        return lambda e: e[0], [expr], [child]
    A, B = arg
    if kind == "multiplicative":
        anchor = away_from_zero(fit, Xn[ctx.train], anchor, A, B)
    pieces, children = [], []
    for block in (A, B):
        piece = Restricted(fit, block, anchor)
        expr, child, _ = _solve(piece.predict(Xn[:, block]), [cols[i] for i in block], ctx, depth + 1, piece)
        pieces.append(expr)
        children.append(child)
    centre = sympy.Float(float(fit.predict(anchor[None, :])[0]), 15)
    if kind == "additive":
        return lambda e: e[0] + e[1] - centre, pieces, children
    return lambda e: e[0] * e[1] / centre, pieces, children


def _settle(recombine, exprs, children, y, ctx: _Context, depth: int, spread: float = 0.0):
    """The recombined formula, refitted on the node's rows, its validation RMSE, and the tied
    formulas the node hands up to its parent.

    Where a child's solver could not tell some formulas apart on the child's own rows (a slice
    of the networks, or one column of the table), each is tried in the recombined formula on
    the node's rows; the constants the validation rows do not need are pruned, and of the
    options within ``ACCURACY_TOL`` of the best RMSE the one with the fewest fitted constants,
    then the shortest, is kept. (A piece of ``r1`` alone reads ``exp(r1)`` and ``r1**2`` as
    equally good over a short range; in ``m*(a*r1**2 + b*r2**2 + c)`` the offset ``c`` then
    vanishes and ``exp(r1)`` needs it.) Only rows of the table decide: a node on a slice of the
    networks (``spread`` > 0, the members' disagreement) keeps its children's choice and hands
    the combinations within that disagreement up, so a decision waits for real data.
    """
    expr, rmse = _refit(recombine(exprs), y, ctx)
    if not any(child.alternatives for child in children) or ctx.left() <= 0:
        return expr, rmse, ()
    choices = [[(None, e)] + [(k, alt) for k, alt in enumerate(child.alternatives)]
               for e, child in zip(exprs, children)]
    combos = list(itertools.islice(itertools.product(*choices), _COMBOS))
    options = []
    for combo in combos:
        if ctx.left() <= 0 and options:
            ctx.notes.append(f"time budget spent: {len(combos) - len(options)} combinations of tied pieces not tried")
            break
        # the first combination is the children's own choice, refitted above
        trial, trial_rmse = _refit(recombine([e for _, e in combo]), y, ctx) if options else (expr, rmse)
        options.append((*_pruned(trial, trial_rmse, y, ctx, spread), combo))
    finite = [o[1] for o in options if math.isfinite(o[1])]
    if not finite:
        return expr, rmse, ()
    limit = max(min(finite) * (1 + ACCURACY_TOL), min(finite) + Z_SPREAD * spread) + FLOOR * float(np.std(y))
    tied = sorted((o for o in options if o[1] <= limit), key=lambda o: (len(o[0].atoms(sympy.Float)), complexity(o[0])))
    if spread > 0:
        # a slice's rows are the members' mean, which cannot tell these apart either: keep the
        # children's own choice and hand the others up to a node whose rows are the table's
        return expr, rmse, tuple(o[0] for o in tied if o is not options[0])[:_COMBOS_UP]
    best = tied[0]
    for (k, alt), child, old in zip(best[2], children, exprs):
        if k is not None:
            ctx.notes.append(f"tie settled on the parent's rows: piece {child.variables} reads {sympy.sstr(alt)} "
                             f"instead of {sympy.sstr(old)} (validation RMSE {best[1]:.3g}, fewer constants or "
                             "shorter)")
            ctx.say(depth, ctx.notes[-1])
            child.expression = str(alt)
    return best[0], best[1], ()


def _pruned(expr, rmse, y, ctx: _Context, spread: float = 0.0):
    """``expr`` without the constants the node's validation rows do not need (within
    ``ACCURACY_TOL``, or ``Z_SPREAD`` times the members' ``spread``; the rest refitted), and its
    validation RMSE."""
    tolerance = max(ACCURACY_TOL, Z_SPREAD * spread / rmse) if rmse > 0 else ACCURACY_TOL
    pruned = prune_constants(expr, ctx.symbols, ctx.X[ctx.val], y[ctx.val], tolerance=tolerance,
                             deadline=ctx.deadline)
    if pruned != expr:
        pruned, rmse = _refit(pruned, y, ctx)
    return pruned, rmse


def _solve(y, cols, ctx: _Context, depth: int, inherited=None):
    """Formula (user's symbols), tree node and validation RMSE of one node.

    A node of one column goes to the leaf solver. A larger node is split first as the derivative
    tests say, clearest step first; a step is kept at once when it verifies (every leaf it
    reaches is an exact closed form and, on the table's rows, the recombined formula fits the
    validation rows clearly better than the node's networks, see ``_BEYOND``). Otherwise the
    node is also solved as one piece (the full leaf solver up to ``max_leaf`` columns, else the
    sparse polynomial fit; at the root without a search engine, since the cross-check searches
    the whole law), and a step is kept only when it does as well as that undecomposed
    alternative.
    """
    if len(cols) == 1:
        return _leaf(y, cols, ctx, depth, source=inherited)
    tried = []
    if ctx.left() <= 0:
        ctx.notes.append(f"time budget spent: {labels(cols)} solved as one piece without structure tests")
    else:
        fit, Xn, steps = _candidates(y, cols, ctx, depth, inherited)
        # what the node's own networks reach on the table's rows; a piece's rows are its parent's
        # predictions, judged at its leaves and again where it is recombined
        yardstick = None if inherited is not None else rms_error(fit.predict(Xn[ctx.val]), y[ctx.val])
        # on a slice of the networks the rows are the members' mean: formulas within their
        # disagreement tie where tied pieces are settled, as in the leaf solver
        spread = 0.0 if inherited is None else member_spread(inherited.members_module(), Xn[ctx.val])
        for step in steps[:_TRIES]:
            if ctx.left() <= 0:
                ctx.notes.append(f"time budget spent: {step[1]} step on {labels(cols)} not tried")
                break
            ctx.say(depth, f"{step[1]}: {step[2]}")
            recombine, exprs, children = _apply(step, y, cols, fit, Xn, ctx, depth)
            expr, rmse, others = _settle(recombine, exprs, children, y, ctx, depth, spread)
            node = Node(step[1], step[2], labels(cols), children, expression=str(expr), val_rmse=rmse,
                        alternatives=others)
            if node.exact() and (yardstick is None or rmse <= _BEYOND * yardstick + FLOOR * float(np.std(y))):
                return expr, node, rmse
            tried.append((expr, node, rmse))
    whole = {"engine": "off"} if depth == 0 else {}
    alternative = (_leaf(y, cols, ctx, depth, source=inherited, **whole) if len(cols) <= ctx.max_leaf
                   else _leaf(y, cols, ctx, depth, solver=polynomial_leaf))
    for expr, node, rmse in sorted(tried, key=lambda t: t[2]):
        if rmse <= alternative[2] * (1 + ACCURACY_TOL) + FLOOR * float(np.std(y)):
            return expr, node, rmse
    for expr, node, rmse in tried:
        ctx.notes.append(f"undone: {node.test} step on {labels(cols)} ({node.evidence}) gave validation RMSE "
                         f"{rmse:.3g}, worse than {alternative[2]:.3g} of the undecomposed {alternative[1].method} "
                         "piece")
        ctx.say(depth, ctx.notes[-1])
    return alternative


def decompose(X, y, names: Sequence[str], *, val_index, seed: int = 0, time_budget: float = 60.0,
              fit_options: dict | None = None, solve_leaf: Callable | None = None, max_leaf_variables: int = 3,
              ensemble=None, progress: bool = False) -> Decomposition:
    """Split a law recursively along the structure its ensemble's exact derivatives show.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Training and validation rows only (keep test rows away).
    y : array-like, shape (n,)
    names : sequence of str
        Column names; the formula uses ``sympy.Symbol(name)``.
    val_index : array-like of int
        Rows of ``X`` used for every choice, never for fitting.
    seed : int
        Seeds every ensemble and k-means.
    time_budget : float
        Seconds. The search (structure steps, networks, leaf searches) stops at 90 % of them:
        networks keep their best weights so far, a leaf search returns its best candidate, a
        step not yet tried is not tried, and a piece reached later is fitted by
        :func:`polynomial_leaf`. The last 10 % are for refitting the recombined constants and
        pruning; each refit stops at the end and keeps the best constants it evaluated.
        ``notes`` says what was cut ("time budget spent: ...").
    fit_options : dict, optional
        Overrides of :data:`NODE_FIT` for every node's ensemble.
    solve_leaf : callable, optional
        ``solve_leaf(X_piece, y_piece, piece_names, *, val_index, seed, time_budget) -> Piece``;
        default ``discovery.closedform.solve_piece`` where it exists, else :func:`polynomial_leaf`.
        Used on pieces of at most ``max_leaf_variables`` columns; a larger node that no test
        splits is fitted by :func:`polynomial_leaf`.
    max_leaf_variables : int
        A node with at most this many columns that no verified step splits is solved as one piece
        by ``solve_leaf``; a larger one by :func:`polynomial_leaf`.
    ensemble : FittedEnsemble, optional
        Networks already trained on these columns' training rows (``X`` minus ``val_index``, in
        that order), as ``discover`` has them: the root's tests read them instead of training
        a new ensemble.
    progress : bool
        Print each step.

    Returns
    -------
    Decomposition

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(1, 2, (600, 3))
    >>> d = decompose(X, X[:, 0] * np.exp(-X[:, 1] / X[:, 2]), ["x", "y", "z"], val_index=np.arange(450, 600),
    ...               max_leaf_variables=1, fit_options={"members": 3})  # doctest: +SKIP
    >>> d.tree.test, d.val_r2 > 0.999  # doctest: +SKIP
    ('multiplicative', True)
    """
    call = "decompose(X, y, names, val_index=...)"
    start = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(names):
        raise DataError(f"{call}: X has shape {X.shape}, y {y.shape}, {len(names)} names; pass (n, p), (n,), p names")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise DataError(f"{call}: X and y must be finite")
    val = np.unique(np.asarray(val_index, dtype=np.int64))
    if val.size == 0 or val.min() < 0 or val.max() >= len(y) or val.size >= len(y):
        raise DataError(f"{call}: val_index must name some, not all, of the {len(y)} rows")
    if int(max_leaf_variables) < 1:
        raise DataError(f"{call}: max_leaf_variables={max_leaf_variables!r}; pass a positive integer")
    symbols = [sympy.Symbol(str(n)) for n in names]
    ctx = _Context(X=X, symbols=symbols, train=np.setdiff1d(np.arange(len(y)), val), val=val,
                   deadline=start + (1 - _FINISH_SHARE) * float(time_budget), finish=start + float(time_budget),
                   seed=int(seed), fit_options=dict(fit_options or {}),
                   solve_leaf=solve_leaf or _default_leaf(), max_leaf=int(max_leaf_variables),
                   progress=bool(progress), notes=[], timings={}, root=ensemble)
    expr, tree, rmse = _solve(y, list(symbols), ctx, 0)
    t0 = time.perf_counter()  # constants the validation rows cannot tell from zero go, the rest refit
    if expired(ctx.finish):
        ctx.notes.append("time budget spent: constants not pruned")
        pruned = expr
    else:
        pruned = prune_constants(expr, symbols, X[val], y[val], deadline=ctx.finish)
    if pruned != expr:
        expr, rmse = _refit(pruned, y, ctx)
    # terms a piece's inexact data suggested
    pruned, dropped = prune_terms(expr, symbols, X, y, ctx.train, val, deadline=ctx.finish)
    if dropped:
        ctx.notes.append("dropped, the validation rows do not need them (the rest refitted): "
                         + ", ".join(str(t) for t in dropped))
        expr, rmse = _refit(pruned, y, ctx)
    # noisy rows give one coefficient twice as two close numbers
    tied, said = tie_coefficients(expr, symbols, X, y, ctx.train, val, deadline=ctx.finish)
    if said:
        ctx.notes.append("tied, the validation rows do not tell them apart: " + "; ".join(said))
        expr, rmse = _refit(tied, y, ctx)
    # a refitted 1.0 or 0.5 reads as the 1 or 1/2 it is, where the validation rows agree
    snapped = snap_constants(expr, symbols, X[val], y[val], deadline=ctx.finish)
    if snapped != expr:
        expr, rmse = _refit(snapped, y, ctx)
    ctx.tick("prune", t0)
    sst = float(np.sum((y[val] - y[val].mean()) ** 2))
    pred = evaluate(expr, symbols, X[val])
    r2 = 1.0 - float(np.sum((pred - y[val]) ** 2)) / sst if sst > 0 and np.all(np.isfinite(pred)) else -math.inf
    ctx.timings["total"] = time.perf_counter() - start
    return Decomposition(expr, rmse, r2, tree, ctx.notes, ctx.timings)
