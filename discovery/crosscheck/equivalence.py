"""Are two formulas the same? Symbolic simplification, guarded by numeric probing on the data
range (SymPy cannot always simplify a difference to zero, and sometimes simplifies under
assumptions the data do not satisfy), and a same-form test that refits one formula's constants
to the other's values.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import sympy

from discovery.crosscheck.base import complexity, evaluate

__all__ = ["Equivalence", "equivalence", "AGREE", "UP_TO_CONSTANTS", "DISAGREE"]

AGREE = "agree"
UP_TO_CONSTANTS = "equivalent up to constants"
DISAGREE = "disagree"

_IDENTICAL = 1e-12  # relative difference that is float64 round-off, not a different formula
_SAME_FORM = 1e-9  # relative residual of a refitted template that counts as an exact fit
_SYMBOLIC_MAX_NODES = 80  # beyond this, simplify() takes far longer than the search; numbers decide
_REFIT_POINTS = 200  # probe points a same-form refit uses (an exact fit needs no more)


@dataclass
class Equivalence:
    """The verdict on two formulas and what it rests on.

    Attributes
    ----------
    verdict : str
        ``"agree"``, ``"equivalent up to constants"`` or ``"disagree"``.
    evidence : list of str
        One sentence per check that was decisive or informative.
    max_relative_difference : float
        ``max |a - b|`` over the probe points, relative to the spread of ``a``.
    symbolic : str
        What SymPy found: ``"difference is 0"``, ``"difference is constant c"``,
        ``"ratio is constant c"`` or ``"no constant difference or ratio"``.
    """

    verdict: str
    evidence: list[str] = field(default_factory=list)
    max_relative_difference: float = math.inf
    symbolic: str = ""


def _plain(expr: sympy.Basic, names: Sequence[str]) -> sympy.Expr:
    """Replace symbols carrying assumptions by plain symbols of the same name."""
    expr = sympy.sympify(expr)
    return expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols})


def probe_points(X: np.ndarray, n: int = 400, seed: int = 0) -> np.ndarray:
    """Data rows plus uniform points in the data's bounding box (``2n`` rows at most)."""
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = X if len(X) <= n else X[rng.choice(len(X), n, replace=False)]
    box = rng.uniform(X.min(axis=0), X.max(axis=0), size=(n, X.shape[1]))
    return np.vstack([rows, box])


def _symbolic(a: sympy.Expr, b: sympy.Expr) -> tuple[str, sympy.Expr | None, str | None]:
    """(description, constant, kind) where kind is ``"difference"`` or ``"ratio"``."""
    try:
        d = sympy.simplify(sympy.expand(a - b))
        if d == 0:
            return "difference is 0", sympy.Integer(0), "difference"
        if not d.free_symbols and d.is_number:
            return f"difference is constant {sympy.N(d, 6)}", d, "difference"
        if b != 0:
            r = sympy.simplify(a / b)
            if not r.free_symbols and r.is_number:
                return f"ratio is constant {sympy.N(r, 6)}", r, "ratio"
    except (TypeError, ValueError, RecursionError, NotImplementedError):  # pragma: no cover
        return "SymPy failed to simplify", None, None
    return "no constant difference or ratio", None, None


def _template(expr: sympy.Expr) -> tuple[sympy.Expr, list[sympy.Symbol], list[float]]:
    """``expr`` with a free coefficient on every term, every float constant freed, and a free
    offset: the family of formulas of the same form."""
    terms = sympy.Add.make_args(sympy.expand(expr))
    params: list[sympy.Symbol] = []
    start: list[float] = []
    out = []
    for t in terms:
        coeff, rest = t.as_coeff_Mul()
        if rest == 1:
            continue  # the constant term is the offset below
        for fl in sorted(rest.atoms(sympy.Float), key=float):
            p = sympy.Symbol(f"_p{len(params)}")
            params.append(p)
            start.append(float(fl))
            rest = rest.xreplace({fl: p})
        c = sympy.Symbol(f"_p{len(params)}")
        params.append(c)
        start.append(float(coeff))
        out.append(c * rest)
    offset = sympy.Symbol(f"_p{len(params)}")
    params.append(offset)
    start.append(float(sum(t for t in terms if t.as_coeff_Mul()[1] == 1) or 0))
    return sympy.Add(*out) + offset, params, start


def _refit_residual(form: sympy.Expr, target: np.ndarray, P: np.ndarray, names: Sequence[str]) -> float:
    """Relative residual after refitting the constants of ``form`` to ``target`` on ``P``."""
    from scipy.optimize import least_squares

    template, params, start = _template(form)
    symbols = [sympy.Symbol(n) for n in names]
    f = sympy.lambdify(params + symbols, template, modules="numpy")
    cols = [P[:, j] for j in range(P.shape[1])]
    scale = float(np.std(target)) or float(np.mean(np.abs(target))) or 1.0

    # About 30 iterations, each with its finite-difference Jacobian (one evaluation per constant):
    # an exact form converges in a few. max_nfev does not count the Jacobian's evaluations, and on
    # a formula with tens of constants the refit took minutes, so every evaluation counts here
    # and the best point seen is kept.
    limit = 30 * (len(start) + 2)
    best = [math.inf, np.array(start, dtype=np.float64)]

    def residual(theta):
        if residual.calls >= limit:
            raise _Exhausted
        residual.calls += 1
        with np.errstate(all="ignore"):
            r = (np.broadcast_to(np.asarray(f(*theta, *cols), dtype=np.float64), target.shape) - target) / scale
        r = np.where(np.isfinite(r), r, 1e10)
        worst = float(np.max(np.abs(r)))
        if worst < best[0]:
            best[0], best[1] = worst, np.array(theta, dtype=np.float64)
        return r

    residual.calls = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = least_squares(residual, np.array(start), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                max_nfev=30 * (len(start) + 1))
    except _Exhausted:
        return best[0]
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        return math.inf
    residual.calls = -math.inf  # the final check is not part of the search
    return float(np.max(np.abs(residual(sol.x))))


class _Exhausted(Exception):
    """Raised inside a residual once the refit has used its evaluations."""


def equivalence(
    a: sympy.Expr,
    b: sympy.Expr,
    X: np.ndarray,
    names: Sequence[str],
    *,
    rtol: float = 1e-2,
    seed: int = 0,
) -> Equivalence:
    """Decide whether formulas ``a`` and ``b`` are the same law on the range of ``X``.

    - ``"agree"``: the difference simplifies to 0, or the two are numerically identical on the
      probe points (data rows and uniform points in the data's box), or they have the same form
      (or one is the other plus terms that are negligible on the data) and their values differ
      by at most ``rtol`` (relative to the spread of ``a``).
    - ``"equivalent up to constants"``: the same form (refitting the constants of each
      reproduces the other exactly, or the difference or ratio simplifies to a constant) with
      values that differ by more than ``rtol``.
    - ``"disagree"``: neither. Formulas with close values but a different form (``sin(x)`` and
      ``x - x**3/6`` on a small range) disagree, and so does a formula that lacks terms of the
      other that matter.

    Examples
    --------
    >>> x, y = sympy.symbols("x y")
    >>> X = np.random.default_rng(0).uniform(-1, 1, (100, 2))
    >>> equivalence((x + y) ** 2, x**2 + 2 * x * y + y**2, X, ["x", "y"]).verdict
    'agree'
    >>> equivalence(x * y, 2 * x * y + 1, X, ["x", "y"]).verdict
    'equivalent up to constants'
    """
    a, b = _plain(a, names), _plain(b, names)
    P = probe_points(X, seed=seed)
    va, vb = evaluate(a, P, names), evaluate(b, P, names)
    ok = np.isfinite(va) & np.isfinite(vb)
    evidence: list[str] = []
    if not ok.any():
        return Equivalence(DISAGREE, ["neither formula is finite on the same probe points"])
    if ok.sum() < len(P):
        evidence.append(f"{len(P) - ok.sum()} of {len(P)} probe points skipped (not finite)")
    P, va, vb = P[ok], va[ok], vb[ok]
    scale = float(np.std(va)) or float(np.mean(np.abs(va))) or 1.0
    rel = float(np.max(np.abs(va - vb))) / scale
    evidence.append(f"max |a - b| on {len(P)} probe points is {rel:.3g} of the spread of a")

    if not (rel <= 1e-9 or _numeric_constant(va, vb, "difference") or _numeric_constant(va, vb, "ratio")):
        # SymPy's answer counts only where the numbers confirm it (below), and on nested exp/cos
        # formulas simplify() can run for minutes: without a constant difference or ratio, skip it
        symbolic, const, kind = "not consulted (numerically neither the difference nor the ratio is constant)", None, None
    elif complexity(a) + complexity(b) <= _SYMBOLIC_MAX_NODES:
        symbolic, const, kind = _symbolic(a, b)
    else:
        symbolic, const, kind = f"not consulted (more than {_SYMBOLIC_MAX_NODES} nodes together)", None, None
    evidence.append(f"SymPy: {symbolic}")
    if kind == "difference" and const == 0:
        if rel <= 1e-9:
            return Equivalence(AGREE, evidence, rel, symbolic)
        evidence.append("numeric probing contradicts SymPy on the data range; trusting the numbers")
        kind = None
    if rel <= _IDENTICAL:
        evidence.append("numerically identical on the data range")
        return Equivalence(AGREE, evidence, rel, symbolic)

    same_form = kind is not None and _numeric_constant(va, vb, kind)
    if kind is not None and not same_form:
        evidence.append("numeric probing contradicts SymPy's constant; trusting the numbers")
    contains = False
    if not same_form:
        sub = np.random.default_rng(seed).permutation(len(P))[:_REFIT_POINTS]
        b_covers_a = _refit_residual(b, va[sub], P[sub], names)  # a is b's form with some constants (maybe 0)
        a_covers_b = _refit_residual(a, vb[sub], P[sub], names)
        evidence.append(
            f"refitting b's constants to a leaves {b_covers_a:.3g} relative residual, "
            f"a's constants to b {a_covers_b:.3g}"
        )
        same_form = max(b_covers_a, a_covers_b) <= _SAME_FORM
        contains = min(b_covers_a, a_covers_b) <= _SAME_FORM
    if not same_form:
        if contains and rel <= rtol:
            evidence.append(f"one formula has extra terms that are negligible on the data (values within {rel:.3g})")
            return Equivalence(AGREE, evidence, rel, symbolic)
        if contains:
            evidence.append("one formula has terms the other lacks, and they matter on the data")
        return Equivalence(DISAGREE, evidence, rel, symbolic)
    if rel <= rtol:
        evidence.append(f"same form; values differ by at most {rel:.3g} <= rtol={rtol:g}")
        return Equivalence(AGREE, evidence, rel, symbolic)
    evidence.append(f"same form with different constants (values differ by {rel:.3g} > rtol={rtol:g})")
    return Equivalence(UP_TO_CONSTANTS, evidence, rel, symbolic)


def _numeric_constant(va: np.ndarray, vb: np.ndarray, kind: str) -> bool:
    """Check SymPy's constant difference or ratio against the probe values."""
    if kind == "difference":
        d = va - vb
        return float(np.ptp(d)) <= 1e-9 * (float(np.std(va)) or 1.0)
    with np.errstate(all="ignore"):
        r = va / vb
    r = r[np.isfinite(r)]
    return r.size > 0 and float(np.ptp(r)) <= 1e-9 * (float(np.max(np.abs(r))) or 1.0)
