"""Closed forms of low-dimensional pieces (1 to 3 inputs), from data and from exact series.

:func:`solve_piece` searches several families, fits every constant on training rows only, and
makes every choice on validation rows:

- sparse polynomials in transformed inputs (``x, 1/x, log x, sqrt x, x^2, exp x, sin x``) for a
  transformed target (``y, y^2, sqrt|y|, 1/y, 1/y^2, |y|^(2/3), |y|^(-2/3), log|y|, exp y, arcsin y,
  sin y``), inverted; ``y^2`` up to degree 6 in two or three raw inputs (a root of a sum of
  squared products);
- for one input, the same after a fitted shift, ``b + T^-1(P)`` (``m c^2 (gamma - 1)``), chosen
  only where no unshifted form ties (so not tried where a form already fits to what the data
  resolve);
- rational functions ``P/Q`` (linearised, then nonlinear least squares; ``Q`` normalised by its
  constant or, for laws of degree 0, by an input's coefficient) and their square roots;
- sums of two monomials ``a*m1 + e*m2 + d`` (``1/x**2 - 1/y**2``);
- for one input, ``a*g(b*x + c) + d`` and ``(a*x + e)*g(b*x + c) + d`` for elementary ``g``;
- for any number, ``a*g(b*m + c) + d`` and ``a*g(b*m + e*m2 + c) + d`` for monomials ``m``;
- with a model, differential equations and Pade approximants from its exact Taylor series;
- optionally Operon with a small budget.

The best candidates get their constants refitted and snapped to clean numbers; the answer is the
tidiest candidate (complexity, unrounded constants counting extra) whose validation residuals are
not significantly worse than the best's.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import sympy

from discovery.closedform.elementary import composite, elementary
from discovery.closedform.fitting import (
    NOISE_ROWS, Z, Z_SPREAD, Candidate, Template, float_floor, member_spread, noise_estimate, not_worse, polish, r2,
    rmse, variables,
)
from discovery.closedform.polynomial import SHIFTED, rationals, shifted_polynomials, transformed_polynomials
from discovery.crosscheck.base import complexity
from discovery.errors import CrosscheckError, DataError

__all__ = ["Piece", "solve_piece"]

POOL = 6
"""Tidiest candidates tied with the best whose constants are refitted and snapped ..."""
BEST = 3
"""... besides the best few on validation rows."""
SEARCH_SHARE = 0.45
"""Share of the time budget for the own families; Operon may use up to ``OPERON_SHARE`` more,
and the rest refits and snaps the best candidates."""
OPERON_SHARE = 0.25
ALTERNATIVES = 3
"""Candidates tied with the chosen one that a piece hands back besides its answer."""


@dataclass
class Piece:
    """The closed form found for one piece.

    Attributes
    ----------
    expression : sympy.Expr
        In symbols ``sympy.Symbol(name)`` of the given names.
    val_rmse, val_r2 : float
        Scores on the validation rows.
    method : str
        The family of the chosen candidate, prefixed ``"approximate "`` when the data show it
        does not explain the target (no better than a constant, or structure left in the
        residuals).
    evidence : str
        Why: the residual test, noise estimate, snapped constants, engine notes, time budget.
    candidates : pandas.DataFrame
        ``method``, ``expression``, ``complexity``, ``val_rmse`` of the best candidates.
    alternatives : tuple of sympy.Expr
        Up to ``ALTERNATIVES`` other candidates as good as the chosen one on these rows (the
        tidiest first): a caller with rows of its own, such as a decomposition's parent, can
        decide among them.
    """

    expression: sympy.Expr
    val_rmse: float
    val_r2: float
    method: str
    evidence: str
    candidates: pd.DataFrame
    alternatives: tuple = ()


def _check(X, y, names, val_index, engine, call):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(names) or X.shape[1] == 0:
        raise DataError(f"{call}: X has shape {X.shape}, y {y.shape}, names {len(names)}; pass X of shape "
                        "(n, len(names)) with at least one column and y of shape (n,)")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise DataError(f"{call}: X and y must be finite; drop or impute the non-finite rows first")
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{call}: names must be distinct non-empty strings, got {list(names)!r}")
    val = np.unique(np.asarray(val_index, dtype=np.int64).reshape(-1))
    if len(val) == 0 or val.min() < 0 or val.max() >= len(y):
        raise DataError(f"{call}: val_index must hold row numbers in 0..{len(y) - 1}, at least one")
    train = np.setdiff1d(np.arange(len(y)), val)
    if len(train) < 4 * (X.shape[1] + 1) or len(val) < 5:
        raise DataError(f"{call}: {len(train)} training and {len(val)} validation rows; pass at least "
                        f"{4 * (X.shape[1] + 1)} training and 5 validation rows")
    if engine not in ("auto", "operon", "off"):
        raise DataError(f"{call}: engine={engine!r}; pass 'auto', 'operon' or 'off'")
    return X, y, train, val


def _operon(X, y, xs, train, seconds, seed) -> list[Candidate]:
    """Operon's front on the training rows (float64 constants); failures raise CrosscheckError."""
    from discovery.crosscheck.operon import fit_operon

    search = fit_operon(X[train], y[train], [f"_v{j}" for j in range(X.shape[1])], time_budget=seconds,
                        seed=seed, n_threads=1, population_size=200, generations=20, polish_constants=False)
    plain = {sympy.Symbol(f"_v{j}"): s for j, s in enumerate(xs)}
    cols = [X[:, j] for j in range(X.shape[1])]
    out = []
    for e in search.candidates["sympy_format"]:
        e = sympy.sympify(e).xreplace(plain)
        tpl = Template(e, xs)
        out.append(Candidate("operon", lambda e=e: e, np.array(tpl(tpl.theta, cols)), "Pareto front member"))
    return out


def _structure_left(res: np.ndarray, Xv: np.ndarray, floor: float, rng) -> tuple[bool, str]:
    """Do validation residuals still hold smooth structure? Their noise part (local linear
    fits on neighbours) is compared with their whole size."""
    total = float(np.mean(res**2))
    if total <= floor:
        return False, "residuals within what the data resolve (float64, ensemble disagreement)"
    noise = noise_estimate(Xv, res, rng) ** 2
    # the ratio has a standard error of about sqrt(2/n) for independent residuals (n: rows in
    # the noise estimate; the pseudo-residuals share neighbours, so Z of them)
    allowed = noise * (1 + Z * math.sqrt(2.0 / min(len(res), NOISE_ROWS)))
    return total > allowed, (f"residual mean square {total:.3g} vs its noise part {noise:.3g} "
                             f"(allowed {allowed:.3g})")


def solve_piece(
    X,
    y,
    names: Sequence[str],
    *,
    val_index,
    seed: int = 0,
    time_budget: float = 10.0,
    model: Callable | None = None,
    engine: str = "auto",
) -> Piece:
    """Closed form of ``y = f(X)`` for a piece of 1 to 3 inputs.

    Parameters
    ----------
    X : array-like of shape (n, k)
        Inputs in original units (k of 1 to 3; more is accepted but slow).
    y : array-like of shape (n,)
    names : sequence of str
        Column names; the expression uses ``sympy.Symbol(name)`` (names are never parsed).
    val_index : array-like of int
        Rows used for every choice and never for fitting.
    seed : int
        Seed of every random choice (the result is deterministic given it, except for an Operon
        run cut short by its time cap).
    time_budget : float
        Seconds: the own families search for ``SEARCH_SHARE`` of them, Operon for at most
        ``OPERON_SHARE``, the refits and snaps of the best candidates until they are spent (each
        refit stops at that point and keeps the best constants it evaluated). Whatever was cut
        short is said in ``evidence`` ("time budget ..."); the answer is the best candidate found
        by then (at worst the training rows' mean).
    model : callable or torch.nn.Module, optional
        Maps a ``(B, k)`` float64 tensor to ``(B,)`` or ``(B, M)``; a module's exact Taylor series
        (1-D pieces) propose sinusoids, exponentials, logarithms, powers and Pade approximants.
    engine : {"auto", "operon", "off"}
        ``"operon"`` runs Operon as one more candidate, ``"auto"`` only when it is installed and
        no candidate already fits to what the data resolve (float64, or the ensemble's
        disagreement), ``"off"`` never. Operon's failures become a note in ``evidence``.

    Returns
    -------
    Piece

    Examples
    --------
    >>> x = np.linspace(0.1, 3, 120)[:, None]
    >>> piece = solve_piece(x, np.sin(2 * x[:, 0]) + 1, ["x"], val_index=np.arange(0, 120, 4), engine="off")
    >>> piece.expression
    sin(2*x) + 1
    """
    call = "solve_piece(X, y, names, val_index=...)"
    start = time.perf_counter()
    clock = lambda: time.perf_counter() - start
    end = start + float(time_budget)  # the refits and snaps stop here
    X, y, train, val = _check(X, y, list(names), val_index, engine, call)
    k = X.shape[1]
    if k > 3:
        warnings.warn(f"{call}: {k} inputs; the search is built for 1 to 3 and grows quickly beyond (slow)",
                      stacklevel=2)
    rng = np.random.default_rng(seed)
    xs = variables(k)
    cols = [X[:, j] for j in range(k)]
    notes: list[str] = []
    # what the data can resolve: float64, plus the ensemble's disagreement when members are given
    # (two standard deviations of it: the members' mean is no more accurate than they disagree)
    spread = member_spread(model, X[val])
    floor = float_floor(y[val]) + (Z_SPREAD * spread) ** 2
    if spread > 0:
        notes.append(f"ensemble members disagree by {spread:.3g} (rms) on validation rows: candidates "
                     f"within {Z_SPREAD:g} times that of the best count as equally good")
    search_deadline = SEARCH_SHARE * time_budget

    mean = float(np.mean(y[train]))
    cands_constant = Candidate("constant", lambda: sympy.Float(mean), np.full(len(y), mean), "mean of training rows")
    cands = [cands_constant]
    score = lambda c: rmse(c.pred[val], y[val])
    # some candidate already fits to what the data resolve: every other form can at best tie with it
    resolved = lambda: min(map(score, cands)) ** 2 <= floor
    families = [("transformed polynomials", transformed_polynomials), ("rational functions", rationals)]
    if k == 1:
        families.append(("shifted transformed polynomials", shifted_polynomials))
        families.append(("elementary functions", elementary))
    families.append(("elementary functions of a monomial", composite))
    for label, family in families:
        if clock() > search_deadline:
            notes.append(f"time budget reached before {label}")
            continue
        if family is shifted_polynomials and resolved():  # a shifted form is chosen only where no other form ties
            notes.append(f"{label} not tried: a candidate already fits to what the data resolve")
            continue
        cands.extend(family(X, y, xs, train, search_deadline, clock))
        if clock() > search_deadline:
            notes.append(f"time budget reached during {label}")

    if model is not None and clock() > search_deadline:
        notes.append("time budget reached before the series tests (model not expanded)")
    elif model is not None:
        notes.append(_series(model, X, y, xs, train, cands))

    cands.sort(key=score)
    if engine != "off":
        seconds = min(OPERON_SHARE * time_budget, (SEARCH_SHARE + OPERON_SHARE) * time_budget - clock())
        if engine == "auto" and resolved():
            notes.append("Operon not run: a candidate already fits to what the data resolve")
        elif seconds < 1.0:  # Operon's time cap counts whole seconds
            notes.append(f"Operon not run: under 1 s of its share of the {time_budget:g} s budget left")
        else:
            try:
                cands.extend(_operon(X, y, xs, train, float(int(seconds)), seed))
                cands.sort(key=score)
            except ImportError as exc:
                notes.append(f"Operon not available: {exc}")
            except CrosscheckError as exc:
                notes.append(f"Operon failed: {exc}")

    tried = len(cands)
    pool = _pool(cands, cands_constant, y, val, floor, score)
    snapped_notes = {}
    polished = []
    for i, c in enumerate(pool):
        if i and clock() > time_budget:
            notes.append(f"time budget: {len(pool) - i} of {len(pool)} best candidates left unpolished")
            break
        p = polish(c.expr, xs, cols, y, train, val, floor, end)
        if p is not None:
            pc = Candidate(c.method, lambda e=p.expr: e, p.pred, c.note)
            polished.append(pc)
            snapped_notes[id(pc)] = p.snapped
    if clock() > time_budget:
        notes.append(f"time budget of {time_budget:g} s spent ({clock():.1f} s used)")

    final = [c for c in polished + pool + cands[:1] if np.all(np.isfinite(c.pred))]
    final.append(cands_constant)
    final.sort(key=score)
    best_res = final[0].pred[val] - y[val]
    ties = [c for c in final if not_worse(c.pred[val] - y[val], best_res, floor)]
    # a fitted shift mimics other powers within an ensemble's disagreement ((1 - u^2)^-0.4 reads
    # b + a/sqrt(1 - c u^2)): a shifted form is chosen only where no other form ties
    preference = lambda c: (c.method == SHIFTED, _untidiness(c.expr), score(c))
    chosen = min(ties, key=preference)

    res = chosen.pred[val] - y[val]
    constant_res = np.full(len(val), mean) - y[val]
    better_than_constant = not not_worse(constant_res, res, floor) or float(np.mean(constant_res**2)) <= floor
    left, residual_note = _structure_left(res, X[val], floor, rng)
    exact = better_than_constant and not left
    symbols = {s: sympy.Symbol(n) for s, n in zip(xs, names)}

    def describe(c: Candidate) -> str:
        text = f"{c.method}: {c.note}"
        for j in reversed(range(k)):  # _v10 before _v1
            text = text.replace(f"_v{j}", names[j])
        return text

    method = describe(chosen)
    evidence = [
        f"chosen: {method} (complexity {complexity(chosen.expr)}, tidiest of {len(ties)} candidates not "
        f"significantly worse on {len(val)} validation rows than the best, out of {tried} tried)",
        f"validation rmse {score(chosen):.3g}; noise estimate from the data {noise_estimate(X[train], y[train], rng):.3g}",
        ("explains the target: " if exact else "approximate: ")
        + ("" if better_than_constant else "not significantly better than a constant; ") + residual_note,
    ]
    if snapped_notes.get(id(chosen)):
        evidence.append("snapped: " + ", ".join(snapped_notes[id(chosen)]))
    evidence.extend(notes)
    rows, shown = [], set()
    for c in sorted(polished + cands[:20], key=score):
        e = c.expr.xreplace(symbols)
        if (c.method, c.note, str(e)) not in shown:
            shown.add((c.method, c.note, str(e)))
            rows.append((describe(c), e, complexity(e), score(c)))
    table = pd.DataFrame(rows, columns=["method", "expression", "complexity", "val_rmse"])
    others, seen = [], {_rounded(chosen.expr)}
    for c in sorted(ties, key=preference):
        if _rounded(c.expr) not in seen and len(others) < ALTERNATIVES:
            seen.add(_rounded(c.expr))
            others.append(c.expr.xreplace(symbols))
    return Piece(chosen.expr.xreplace(symbols), score(chosen), r2(chosen.pred[val], y[val]),
                 method if exact else f"approximate {method}", "\n".join(evidence), table, tuple(others))


def _rounded(expr: sympy.Expr) -> str:
    """``expr``'s text with its floats to 6 significant digits: refits of one form that differ
    in the last digits read the same."""
    return sympy.srepr(expr.xreplace({f: sympy.Float(float(f"{float(f):.6g}")) for f in expr.atoms(sympy.Float)}))


def _untidiness(expr: sympy.Expr) -> int:
    """Complexity, each unrounded constant counting 4 more nodes (the convention of
    ``crosscheck.base.polish``): among ties, clean forms win over look-alikes tuned by floats."""
    return complexity(expr) + 4 * len(expr.atoms(sympy.Float))


def _pool(cands: list[Candidate], constant: Candidate, y, val, floor, score) -> list[Candidate]:
    """Candidates whose constants are refitted and snapped, tidiest first: the constant, the
    best few on validation rows, and the tidiest of those already tied with the best (the
    answer is the tidiest tie, and snapping makes a tie tidier, rarely a non-tie a tie)."""
    finite = [c for c in cands if np.all(np.isfinite(c.pred[val]))]
    best_res = finite[0].pred[val] - y[val]
    ties = [c for c in finite if not_worse(c.pred[val] - y[val], best_res, floor)]
    ties.sort(key=lambda c: (_untidiness(c.expr), score(c)))
    pool, seen = [], set()
    for c in [constant, *finite[:BEST], *ties]:
        key = sympy.srepr(c.expr)
        if key not in seen and len(pool) < POOL + BEST + 1:
            seen.add(key)
            pool.append(c)
    pool.sort(key=lambda c: (_untidiness(c.expr), score(c)))
    return pool


def _series(model, X, y, xs, train, cands: list[Candidate]) -> str:
    """Add the series-based candidates; returns a note for the evidence."""
    import torch

    from discovery.closedform.series import series_candidates

    if X.shape[1] != 1:
        return "series tests: only for 1-D pieces (model not expanded)"
    if not isinstance(model, torch.nn.Module):
        return "series tests: model is not a torch.nn.Module, so it cannot be expanded exactly"
    found = list(series_candidates(model, X, y, xs, train))
    cands.extend(found)
    return f"series tests: {len(found)} candidates from the model's exact Taylor series"
