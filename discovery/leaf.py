"""The built-in leaf solver of :func:`discovery.decompose.decompose` and the joint constant refit.

A leaf is a piece of a law with few columns. :func:`polynomial_leaf` fits it by sparse least
squares in a handful of target forms (polynomial, ``exp`` of a polynomial, powers of a
polynomial, a rational function); :func:`refit_constants` refits every ``Float`` of a formula
jointly. Both are real solvers, small on purpose: a richer closed-form solver can take the
leaf's place through the ``solve_leaf`` interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy

from discovery._deadline import expired

__all__ = ["Piece", "polynomial_leaf", "prune_constants", "prune_terms", "refit_constants", "expired",
           "least_squares_until"]

ACCURACY_TOL = 0.05  # RMSEs within 5 % count as equally accurate (the simpler model wins)
FLOOR = 1e-9  # RMSE differences below this fraction of y's spread are rounding
_POWER_FORMS = {2: "sqrt-polynomial", -1: "reciprocal-polynomial", -2: "reciprocal-sqrt-polynomial"}


@dataclass
class Piece:
    """A solved leaf: its formula (in ``sympy.Symbol(name)`` of the piece's names) and evidence.

    ``alternatives`` are other formulas the piece's own rows could not tell from the chosen one
    (tidiest first): a caller with rows of its own (a parent's table) may decide among them.
    """

    expression: sympy.Expr
    val_rmse: float
    method: str
    evidence: str = ""
    alternatives: tuple = ()


# -- deadlines ---------------------------------------------------------------------------------

class _OutOfTime(Exception):
    """Raised inside a residual or Jacobian to end a least-squares search at its deadline."""


def least_squares_until(residual: Callable, x0: np.ndarray, deadline: float | None, jac="2-point",
                        **options) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`scipy.optimize.least_squares` that stops at ``deadline`` (a :func:`time.perf_counter`
    time, ``None``: none). Returns ``(x, residual at x, cut)``: the solution, or when the deadline
    passed first the best point evaluated so far (``x0`` when none was) and ``cut=True``.

    The deadline is checked before every residual and Jacobian evaluation (one clock read each),
    so a search on an expensive formula ends within one evaluation of it.

    Examples
    --------
    >>> import time
    >>> x, r, cut = least_squares_until(lambda t: t - 3.0, np.zeros(1), time.perf_counter() - 1.0)
    >>> x.tolist(), cut
    ([0.0], True)
    """
    from scipy.optimize import least_squares

    best: list = [None, math.inf, None]  # x, cost, residual

    def timed(t):
        if expired(deadline):
            raise _OutOfTime
        r = np.asarray(residual(t), dtype=np.float64)
        cost = float(np.sum(r * r))
        if cost < best[1]:
            best[:] = [np.array(t, dtype=np.float64), cost, r]
        return r

    if callable(jac):
        inner = jac

        def jac(t, *args):  # noqa: F811 - the caller's Jacobian, timed
            if expired(deadline):
                raise _OutOfTime
            return inner(t, *args)
    try:
        sol = least_squares(timed, x0, jac=jac, **options)
    except _OutOfTime:
        if best[0] is None:
            return np.array(x0, dtype=np.float64), np.full(1, math.inf), True
        return best[0], best[2], True
    return sol.x, sol.fun, False


# -- constants, evaluation ---------------------------------------------------------------------

def evaluate(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray) -> np.ndarray:
    """``expr`` at every row of ``X`` (columns in the order of ``symbols``), ``(n,)``; ``nan``
    where the value is complex (a constant pruned or snapped can leave ``sqrt(-1)`` in it)."""
    fn = sympy.lambdify(list(symbols), expr, modules="numpy")
    with np.errstate(all="ignore"):
        out = np.asarray(fn(*X.T))
        if np.iscomplexobj(out):
            out = np.where(out.imag == 0, out.real, np.nan)
        out = out.astype(np.float64)
    return np.broadcast_to(out, (X.shape[0],)).copy()


def rms_error(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square of ``a - b``; ``inf`` where it is not finite."""
    with np.errstate(all="ignore"):
        d = a - b
        value = float(np.sqrt(np.mean(d * d)))
    return value if math.isfinite(value) else math.inf


def refit_constants(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray, y: np.ndarray,
                    evaluations_per_constant: int = 100, deadline: float | None = None) -> sympy.Expr:
    """All ``Float`` constants of ``expr`` refitted jointly by least squares on ``(X, y)``.

    Integers and rationals (exponents, structure) stay; constants of equal magnitude (beyond
    two significant digits) are one constant, up to sign; the refit is kept only when it lowers
    the error. ``evaluations_per_constant`` bounds the work (a caller out of time passes less);
    at ``deadline`` (a :func:`time.perf_counter` time) the search stops and keeps the best
    constants it evaluated.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> x = sympy.Symbol("x")
    >>> X = np.linspace(0, 1, 50)[:, None]
    >>> e = refit_constants(sympy.Float(1.0) * sympy.exp(sympy.Float(-1.0) * x), [x], X, 3 * np.exp(-2 * X[:, 0]))
    >>> round(float(e.subs(x, 0)), 6)
    3.0
    """
    floats = sorted(expr.atoms(sympy.Float), key=str)
    if not floats:
        return expr
    # constants of one magnitude are one constant, so a tie (``tie_coefficients``) stays a tie;
    # round ones of one or two digits (starting values such as 1.0 and -1.0) stay independent
    def key(f):
        return abs(f) if float(f"{float(f):.2g}") != float(f) else f

    sizes = sorted({key(f) for f in floats}, key=str)
    params = sympy.symbols(f"_c0:{len(sizes)}")
    by_size = dict(zip(sizes, params))
    template = expr.xreplace({f: by_size[key(f)] * (1 if key(f) == f else -1) for f in floats})
    floats = sizes
    fn = sympy.lambdify(list(symbols) + list(params), template, modules="numpy")
    columns = list(X.T)

    def residual(c):
        with np.errstate(all="ignore"):
            r = np.broadcast_to(np.asarray(fn(*columns, *c), dtype=np.float64), y.shape) - y
        return np.where(np.isfinite(r), r, 1e6)

    x0 = np.array([float(f) for f in floats])
    before = float(np.sum(residual(x0) ** 2))
    try:
        x, r, _ = least_squares_until(residual, x0, deadline, method="trf", x_scale="jac",
                                      max_nfev=evaluations_per_constant * (len(x0) + 1))
    except (ValueError, np.linalg.LinAlgError):  # singular Jacobian or non-finite start: keep the constants
        return expr
    if not np.all(np.isfinite(x)) or float(np.sum(r**2)) >= before:
        return expr
    return template.xreplace({p: sympy.Float(float(v), 15) for p, v in zip(params, x)})


def prune_constants(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray, y: np.ndarray,
                    tolerance: float = ACCURACY_TOL, deadline: float | None = None) -> sympy.Expr:
    """``expr`` with every ``Float`` set to zero whose removal keeps the RMSE on ``(X, y)``
    (pass validation rows) within ``tolerance`` of the original; smallest constants first.
    At ``deadline`` (a :func:`time.perf_counter` time) no further constant is tried.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> x = sympy.Symbol("x")
    >>> X = np.linspace(-1, 1, 50)[:, None]
    >>> prune_constants(sympy.Float(2.0) * x + sympy.Float(1e-12) * x ** 3, [x], X, 2 * X[:, 0])
    2.0*x
    """
    return _replace_where_fits(expr, symbols, X, y, lambda value: sympy.Integer(0), smallest_first=True,
                               tolerance=tolerance, deadline=deadline)


def _replace_where_fits(expr: sympy.Expr, symbols, X: np.ndarray, y: np.ndarray, replacement: Callable,
                        smallest_first: bool, tolerance: float, deadline: float | None) -> sympy.Expr:
    """Each ``Float`` of ``expr`` in turn (by size) replaced by ``replacement(value)`` (``None``:
    left as it is), kept where the RMSE on ``(X, y)`` stays within ``tolerance`` of the
    original's; no value is tried after ``deadline``."""
    limit = rms_error(evaluate(expr, symbols, X), y) * (1 + tolerance) + FLOOR * float(np.std(y))
    for value in sorted(expr.atoms(sympy.Float), key=lambda f: abs(float(f)) if smallest_first else -abs(float(f))):
        if expired(deadline):
            break
        new = replacement(value)
        if new is None:
            continue
        trial = expr.xreplace({value: new})
        if trial.has(sympy.nan, sympy.zoo, sympy.oo) or not isinstance(trial, sympy.Expr):
            continue
        if rms_error(evaluate(trial, symbols, X), y) <= limit:
            expr = trial
    return expr


def snap_constants(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray, y: np.ndarray,
                   tolerance: float = ACCURACY_TOL, relative: float = 1e-3,
                   deadline: float | None = None) -> sympy.Expr:
    """``expr`` with every ``Float`` within ``relative`` of an exact clean number (an integer, a
    simple fraction, ``sqrt(n)``, ``k pi / q``: :func:`discovery.symbolic.clean_number`) replaced
    by it where the RMSE on ``(X, y)`` (pass validation rows) stays within ``tolerance`` of the
    original; largest constants first. One- and two-digit decimals count as clean; a value it
    would only round to 3 or more digits stays as it is. A constant added to the argument of a
    sine or cosine (a phase) snaps to a multiple of ``pi/2`` within ``relative``. At ``deadline``
    no further constant is tried.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> x = sympy.Symbol("x")
    >>> X = np.linspace(0.1, 1, 50)[:, None]
    >>> snap_constants(sympy.Float(1.0) * x * sympy.sin(sympy.Float(0.5000000001) * x), [x], X,
    ...                X[:, 0] * np.sin(X[:, 0] / 2))
    x*sin(0.5*x)
    """
    from discovery.symbolic import clean_number

    # a constant added to the argument of a sine or cosine is a phase: a quarter turn is the one
    # clean value there (sin(x - pi/2) is -cos(x)), whatever the density of other constants
    phases = {term for node in sympy.preorder_traversal(expr) if isinstance(node, (sympy.sin, sympy.cos))
              and isinstance(node.args[0], sympy.Add) for term in node.args[0].args if isinstance(term, sympy.Float)}

    def clean(value):
        quarter = round(float(value) / (math.pi / 2))
        if value in phases and quarter and abs(float(value) - quarter * math.pi / 2) <= relative * abs(float(value)):
            return quarter * sympy.pi / 2
        found = clean_number(float(value), relative * abs(float(value)))
        if found is None or (isinstance(found[1], sympy.Float) and float(f"{found[0]:.2g}") != found[0]):
            return None  # 3 to 5 significant digits: rounding, not a clean number
        return found[1]

    return _replace_where_fits(expr, symbols, X, y, clean, smallest_first=False, tolerance=tolerance,
                               deadline=deadline)


def prune_terms(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray, y: np.ndarray,
                train: np.ndarray, val: np.ndarray, *, tolerance: float = ACCURACY_TOL,
                max_trials: int = 12, deadline: float | None = None) -> tuple[sympy.Expr, list[sympy.Expr]]:
    """``expr`` without the terms of its sums that the validation rows do not need, and those terms.

    Each term of every sum (those with an input in them; smallest on the validation rows first)
    is dropped in turn, every constant is refitted on the training rows (rational coefficients
    too, so the remaining terms can take up the slack), and the drop is kept when the validation
    RMSE stays within ``tolerance`` of the whole formula's, refitted the same way; no term is
    tried after ``deadline`` (a :func:`time.perf_counter` time). A snapped
    coefficient such as ``3/100`` is a constant here, not structure, which
    :func:`prune_constants` (``Float`` atoms only) cannot remove.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> a, b = sympy.symbols("a b")
    >>> X = np.random.default_rng(0).uniform(1, 2, (200, 2))
    >>> y = 2 * X[:, 0] + X[:, 1] ** 2
    >>> e = 2 * a + sympy.Rational(3, 100) * a * b + sympy.Float(0.97) * b**2
    >>> pruned, dropped = prune_terms(e, [a, b], X, y, np.arange(150), np.arange(150, 200))
    >>> dropped, pruned.has(a * b)
    ([3*a*b/100], False)
    """
    floor = FLOOR * float(np.std(y[val]))

    def refitted(e):
        e = refit_constants(loosened(e), symbols, X[train], y[train], deadline=deadline)
        return e, rms_error(evaluate(e, symbols, X[val]), y[val])

    best, best_rmse, dropped = expr, rms_error(evaluate(expr, symbols, X[val]), y[val]), []
    whole, whole_rmse = refitted(expr)
    limit = min(best_rmse, whole_rmse) * (1 + tolerance) + floor
    tried: set = set()  # terms by their shape (constants as one symbol): a refit changes the numbers only
    for _ in range(max_trials):
        if expired(deadline):
            break
        terms = [(node, term) for node in sympy.preorder_traversal(best) if isinstance(node, sympy.Add)
                 for term in node.args if term.free_symbols and _shape(term) not in tried]
        if not terms:
            break
        size = {t: rms_error(evaluate(t, symbols, X[val]), 0.0 * y[val]) for _, t in terms}
        node, term = min(terms, key=lambda nt: size[nt[1]])
        tried.add(_shape(term))
        trial = best.xreplace({node: sympy.Add(*[t for t in node.args if t is not term])})
        if not trial.free_symbols or trial.has(sympy.nan, sympy.zoo, sympy.oo):
            continue
        trial, rmse = refitted(trial)
        if rmse <= limit:
            best, best_rmse = trial, rmse
            dropped.append(term)
    return best, dropped


def tie_coefficients(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray, y: np.ndarray,
                     train: np.ndarray, val: np.ndarray, *, relative: float = 0.02, tolerance: float = ACCURACY_TOL,
                     deadline: float | None = None) -> tuple[sympy.Expr, list[str]]:
    """``expr`` with the terms of a sum whose coefficients agree in size within ``relative``
    sharing one coefficient (``a*u + b*v`` with ``b`` near ``a`` or ``-a`` reads ``a*(u + v)`` or
    ``a*(u - v)``), and a line per tie made.

    Each tie is refitted on the training rows (every constant) and kept when the validation
    RMSE stays within ``tolerance`` of the formula's before it; closest pairs first; no pair is
    tried after ``deadline``. Noisy rows give ``J*omega**2/2`` and ``m*v**2/2`` coefficients of
    0.4997 and 0.5004 where the law has one.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> a, b = sympy.symbols("a b")
    >>> X = np.random.default_rng(0).uniform(1, 2, (200, 2))
    >>> y = 0.5 * np.log(X[:, 0] / X[:, 1])
    >>> e = sympy.Float(0.5003) * sympy.log(a) - sympy.Float(0.4998) * sympy.log(b)
    >>> tied, said = tie_coefficients(e, [a, b], X, y, np.arange(150), np.arange(150, 200))
    >>> {round(abs(float(f)), 9) for f in tied.atoms(sympy.Float)}, said
    ({0.5}, ['0.5003*log(a) and -0.4998*log(b) share one coefficient'])
    """
    def rmse(e):
        return rms_error(evaluate(e, symbols, X[val]), y[val])

    said: list[str] = []
    current = rmse(expr)
    tried: set = set()
    while not expired(deadline):
        pairs = []
        for node in sympy.preorder_traversal(expr):
            if not isinstance(node, sympy.Add):
                continue
            terms = [t.as_coeff_Mul() for t in node.args]
            for i, (ci, mi) in enumerate(terms):
                for j in range(i + 1, len(terms)):
                    cj, mj = terms[j]
                    if not (isinstance(ci, sympy.Float) and isinstance(cj, sympy.Float)) or ci == 0 or cj == 0:
                        continue
                    gap = abs(abs(float(ci)) - abs(float(cj))) / max(abs(float(ci)), abs(float(cj)))
                    if 0 < gap <= relative and (node, i, j) not in tried:  # 0: tied already
                        pairs.append((gap, node, i, j))
        if not pairs:
            break
        gap, node, i, j = min(pairs, key=lambda p: p[0])
        tried.add((node, i, j))
        (ci, mi), (cj, mj) = node.args[i].as_coeff_Mul(), node.args[j].as_coeff_Mul()
        rest = [t for k, t in enumerate(node.args) if k not in (i, j)]
        shared = sympy.Float((abs(float(ci)) + abs(float(cj))) / 2, 15)  # one magnitude: refitted as one constant
        pair = (shared if ci > 0 else -shared) * mi + (shared if cj > 0 else -shared) * mj
        trial = expr.xreplace({node: sympy.Add(*rest, pair)})
        if trial.has(sympy.nan, sympy.zoo, sympy.oo) or not isinstance(trial, sympy.Expr):
            continue
        trial = refit_constants(trial, symbols, X[train], y[train], deadline=deadline)
        trial_rmse = rmse(trial)
        if trial_rmse <= current * (1 + tolerance) + FLOOR * float(np.std(y[val])):
            said.append(f"{sympy.sstr(node.args[i])} and {sympy.sstr(node.args[j])} share one coefficient")
            expr, current, tried = trial, trial_rmse, set()
    return expr, said


def _shape(term: sympy.Expr) -> sympy.Expr:
    return term.xreplace({c: sympy.Symbol("_const") for c in term.atoms(sympy.Number) if not c.is_integer})


def loosened(expr: sympy.Expr, integers: bool = False) -> sympy.Expr:
    """``expr`` with the rational coefficients of its products and sums as ``Float`` (refittable);
    exponents stay, and integers too unless ``integers`` (then every integer of a sum or product
    but 1 and -1: a piece's snapped ``+ 2`` or ``2*x`` is refitted where the piece is recombined).

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> loosened(sympy.Rational(3, 2) * x**2 + 2), loosened(sympy.Rational(3, 2) * x**2 + 2, integers=True)
    (1.5*x**2 + 2, 1.5*x**2 + 2.0)
    """
    def number(a):
        return isinstance(a, sympy.Rational) and (not a.is_integer or (integers and abs(a) != 1))

    def loosen(e):
        if e.is_Atom:
            return e
        args = [loosen(a) for a in e.args]
        if isinstance(e, (sympy.Mul, sympy.Add)):
            args = [sympy.Float(a, 15) if number(a) else a for a in args]
        return e.func(*args)
    return loosen(expr)


# -- the built-in leaf solver ------------------------------------------------------------------

def _library(X: np.ndarray, symbols, degree: int, extended: bool = True):
    """Monomials of degree 1..``degree`` in the columns; ``extended`` adds ``log x_i`` of
    positive columns and ``m(x) / x_i^k`` (``k = 1, 2``, ``m`` of degree <= 2 in the other
    columns) of columns that keep one sign, so ``u^2 / s^2`` or ``1 / r`` are single terms."""
    from itertools import combinations_with_replacement

    p = X.shape[1]
    cols, exprs = [], []
    for d in range(1, degree + 1):
        for combo in combinations_with_replacement(range(p), d):
            cols.append(np.prod(X[:, list(combo)], axis=1))
            exprs.append(sympy.Mul(*[symbols[i] for i in combo]))
    for i in range(p if extended else 0):
        if np.all(X[:, i] > 0):
            cols.append(np.log(X[:, i]))
            exprs.append(sympy.log(symbols[i]))
        if not (np.all(X[:, i] > 0) or np.all(X[:, i] < 0)):
            continue
        others = [j for j in range(p) if j != i]
        numerators = [()] + [c for d in (1, 2) for c in combinations_with_replacement(others, d)]
        for k in (1, 2):
            for combo in numerators:
                cols.append(np.prod(X[:, list(combo)], axis=1) / X[:, i] ** k)
                exprs.append(sympy.Mul(*[symbols[j] for j in combo]) / symbols[i] ** k)
    return np.stack(cols, axis=1), exprs


def _best_subsets(F, t, train, max_size: int, keep: int = 3) -> list[list[int]]:
    """The ``keep`` subsets of each size ``<= max_size`` with the least training error.

    Exhaustive over the normal equations, solved in one batch per size (a greedy path misses
    sparse laws whose terms correlate with other library terms: ``log a`` against ``a``,
    ``1/a``, ...). A ridge of ``1e-12`` of the Gram diagonal keeps collinear subsets solvable.
    """
    from itertools import combinations

    A = np.hstack([np.ones((len(train), 1)), F[train]])
    G, b, tt = A.T @ A, A.T @ t[train], float(t[train] @ t[train])
    ridge = 1e-12 * float(np.mean(np.diag(G)))
    out = []
    for size in range(1, max_size + 1):
        combos = np.array(list(combinations(range(1, A.shape[1]), size)), dtype=np.int64)
        if combos.size == 0:
            break
        idx = np.hstack([np.zeros((len(combos), 1), dtype=np.int64), combos])
        Gs = G[idx[:, :, None], idx[:, None, :]] + ridge * np.eye(size + 1)
        bs = b[idx]
        c = np.linalg.solve(Gs, bs[..., None])[..., 0]
        rss = tt - np.sum(c * bs, axis=1)
        out += [list(combos[k] - 1) for k in np.argsort(rss)[:keep]]
    return out


def _stepwise(F, t, train, val, back, y, max_terms: int = 12, subsets: int = 40_000):
    """Sparse least squares on the library ``F``: the best subsets of up to 3 terms (2 when
    that would exceed ``subsets`` candidates), then forward selection from the best of them
    (orthogonal matching pursuit) up to ``max_terms``. Returns the smallest model whose
    validation RMSE (after ``back`` maps predictions to ``y``) is within the accuracy tolerance
    of the best."""
    from math import comb

    K = F.shape[1]
    ones = np.ones((len(t), 1))

    def scored(chosen):
        A = np.hstack([ones, F[:, chosen]])
        coef, *_ = np.linalg.lstsq(A[train], t[train], rcond=None)
        return rms_error(back(A[val] @ coef), y[val]), list(chosen), coef

    size = 3 if comb(K, 3) <= subsets else 2 if comb(K, 2) <= subsets else 1
    path = [scored([])] + [scored(c) for c in _best_subsets(F, t, train, min(size, K))]
    chosen = list(min(path[1:] or path, key=lambda item: item[0])[1])
    Ft = F[train]
    basis = np.hstack([np.ones((len(train), 1)), Ft[:, chosen]])
    basis, _ = np.linalg.qr(basis)
    scale = np.linalg.norm(Ft, axis=0) + 1e-300
    while len(chosen) < min(K, max_terms):
        residual = t[train] - basis @ (basis.T @ t[train])
        R = Ft - basis @ (basis.T @ Ft)  # candidates with the chosen directions removed
        norms = np.linalg.norm(R, axis=0)
        usable = norms > 1e-8 * scale
        usable[chosen] = False
        if not usable.any():
            break
        k = int(np.argmax(np.where(usable, np.abs(R.T @ residual) / np.where(usable, norms, 1.0), -1.0)))
        chosen.append(k)
        basis = np.hstack([basis, (R[:, k] / norms[k])[:, None]])
        path.append(scored(chosen))
    best = min(r for r, _, _ in path)
    # the floor: below about 1e-9 of y's spread, differences are rounding, not accuracy
    near = [item for item in path if item[0] <= best * (1 + ACCURACY_TOL) + FLOOR * float(np.std(y))]
    return min(near, key=lambda item: (len(item[1]), item[0]))


def polynomial_leaf(X: np.ndarray, y: np.ndarray, names: Sequence[str], *, val_index, seed: int = 0,
                    time_budget: float = 10.0, degree: int = 3) -> Piece:
    """Built-in leaf solver: sparse polynomials (with ``log x`` and ``1/x`` terms) in several target forms.

    ``y`` and, for a sign-definite ``y = s |y|``, ``log |y|`` (``y = s exp(P)``), ``|y|^2``,
    ``1 / |y|`` and ``1 / |y|^2`` (``y = s P^(1/k)``) are each fitted by forward selection over
    a library of monomials up to ``degree``, ``log x_i`` of positive columns and monomials over
    ``x_i`` or ``x_i^2`` of one-signed columns; the form with
    the lowest validation RMSE (in ``y``) wins, the fewest terms breaking ties within 5 %. A
    rational form ``y = P / (1 + Q)`` (degree 2, linearised least squares) competes too.
    Deterministic; ``seed`` and ``time_budget`` are accepted for the solver interface.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(0.5, 2, (200, 1))
    >>> piece = polynomial_leaf(X, 2 * np.exp(-X[:, 0]), ["u"], val_index=np.arange(150, 200))
    >>> piece.method, round(piece.val_rmse, 8)
    ('log-polynomial', 0.0)
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    val = np.asarray(val_index)
    train = np.setdiff1d(np.arange(len(y)), val)
    symbols = [sympy.Symbol(n) for n in names]
    F, terms = _library(X, symbols, degree)
    forms = [("polynomial", y, lambda v: v, lambda P: P)]
    s = float(np.sign(np.median(y)))
    if np.all(np.sign(y) == s) and s != 0:
        a = np.abs(y)
        forms.append(("log-polynomial", np.log(a), lambda v: s * np.exp(np.clip(v, -700, 700)),
                      lambda P: s * sympy.exp(P)))
        for k, method in _POWER_FORMS.items():  # |y|^k polynomial: y = s P^(1/k)
            forms.append((method, a ** k, lambda v, k=k: s * np.clip(v, 1e-300, None) ** (1.0 / k),
                          lambda P, k=k: s * P ** sympy.Rational(1, k)))
    results = []
    for method, t, back, build in forms:
        rmse, chosen, coef = _stepwise(F, t, train, val, back, y)
        P = _linear(coef, [terms[k] for k in chosen])
        results.append((rmse, len(chosen), method, build(P)))
    results.append(_rational(X, y, symbols, train, val))
    best = min(r[0] for r in results)
    near = best * (1 + ACCURACY_TOL) + FLOOR * float(np.std(y))
    rmse, n_terms, method, expr = min((r for r in results if r[0] <= near), key=lambda r: (r[1], r[0]))
    evidence = "; ".join(f"{m}: val RMSE {r:.3g} with {k} terms" for r, k, m, _ in results)
    return Piece(expr, rmse, method, evidence)


def _linear(coef, terms) -> sympy.Expr:
    """``coef[0] + sum_k coef[k+1] terms[k]`` with Float constants (which the refit moves)."""
    return sympy.Float(coef[0], 15) + sum((sympy.Float(c, 15) * t for c, t in zip(coef[1:], terms)), sympy.Integer(0))


def _rational(X, y, symbols, train, val):
    """``y = P / (1 + Q)`` with ``P``, ``Q`` of degree <= 2: ``y = P - y Q`` by least squares."""
    F, terms = _library(X, symbols, 2, extended=False)
    A = np.hstack([np.ones((len(y), 1)), F, -y[:, None] * F])
    coef, *_ = np.linalg.lstsq(A[train], y[train], rcond=None)
    k = F.shape[1]
    num, den = coef[0] + F @ coef[1 : k + 1], 1.0 + F @ coef[k + 1 :]
    rmse = rms_error(num[val] / den[val], y[val])
    P, Q = _linear(coef[: k + 1], terms), _linear(np.r_[0.0, coef[k + 1 :]], terms)  # Q has no constant
    return (rmse, 2 * k, "rational", P / (1 + Q))
