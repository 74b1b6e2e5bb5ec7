"""What every symbolic-regression backend shares: the candidates table, complexity, scores,
choosing the best candidate, and polishing constants in float64.

A backend is a function ``fit(X, y, names, *, time_budget, seed, **options) -> Search``. Its
candidates table has the columns of PySR's ``equations_`` (``complexity``, ``loss``, ``score``,
``equation``, ``sympy_format``) plus ``r2``, so results of different engines compare directly.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import sympy

from discovery._deadline import expired
from discovery.errors import CrosscheckError

__all__ = [
    "EngineFailure",
    "Search",
    "try_evaluate",
    "usable",
    "candidates_table",
    "complexity",
    "evaluate",
    "finish",
    "paired_gain",
    "polish",
    "select_best",
]

COLUMNS = ["complexity", "loss", "score", "equation", "sympy_format", "r2"]

# What numeric code generation may raise on an expression it cannot print or run (unknown
# functions, unevaluated derivatives, ...): for an engine's candidate this means "unusable".
_UNEVALUABLE = (KeyError, NameError, TypeError, ValueError, AttributeError, NotImplementedError,
                ZeroDivisionError, OverflowError, RecursionError, SyntaxError, sympy.SympifyError)


class EngineFailure(CrosscheckError):
    """An external symbolic-regression engine is missing, crashed or ran out of time.

    Only this error becomes a note on a :class:`~discovery.result.Discovery`; every other error
    of the cross-check is a defect or a wrong argument and propagates.
    """


def usable(expr) -> sympy.Expr | None:
    """``expr`` as a real-valued SymPy expression a candidate can be scored with, else ``None``.

    Engines can return formulas no number comes out of: ``zoo`` (a division by a constant 0),
    ``nan``, ``oo``, imaginary constants (``sqrt(-2)``), unevaluated derivatives, integrals or
    substitutions, functions SymPy does not know, relations. Such a candidate is unusable.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> usable(x / 2), usable(x / sympy.Integer(0)), usable(sympy.Function("g")(x))
    (x/2, None, None)
    """
    try:
        expr = sympy.sympify(expr)
    except (sympy.SympifyError, TypeError, ValueError, SyntaxError):
        return None
    if not isinstance(expr, sympy.Expr):  # relations, logic, tuples (a Symbol is an Expr and a Boolean)
        return None
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        return None
    from sympy.core.function import AppliedUndef

    if expr.atoms(sympy.Derivative, sympy.Subs, sympy.Integral, AppliedUndef, sympy.Order):
        return None
    return expr


@dataclass
class Search:
    """The outcome of one symbolic-regression run.

    Attributes
    ----------
    engine : str
        ``"operon"``, ``"pysr"``, ``"gplearn"`` or ``"hall_of_fame"``.
    candidates : pandas.DataFrame
        One row per Pareto-optimal candidate, sorted by complexity, with the columns of PySR's
        ``equations_``: ``complexity``, ``loss`` (mean squared error on the fitted data),
        ``score`` (``-d log(loss) / d complexity``), ``equation`` (text), ``sympy_format``
        (SymPy expression in the given names), and ``r2``.
    best : int
        Row label of the chosen candidate (PySR's ``model_selection="best"``).
    seconds : float
        Wall-clock time of the search.
    settings : dict
        The engine settings actually used.
    """

    engine: str
    candidates: pd.DataFrame
    best: int
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def formula(self) -> sympy.Expr:
        """The chosen candidate as a SymPy expression."""
        return self.candidates.loc[self.best, "sympy_format"]


def as_xy(X, y, names: Sequence[str], call: str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as (n, len(names)) and ``y`` as (n,) float64 arrays, or a CrosscheckError saying so."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(names):
        raise CrosscheckError(
            f"{call}: X has shape {X.shape}, y {y.shape}, names {len(names)}; "
            "pass X of shape (n, len(names)) and y of shape (n,)"
        )
    return X, y


def complexity(expr: sympy.Basic) -> int:
    """Number of nodes of ``expr`` read as a binary expression tree (PySR's default measure).

    Every symbol, number, operator and function counts 1; an n-ary sum or product counts
    ``n - 1`` operators; ``1/x`` and ``sqrt(x)`` count as one operator on ``x``.

    Examples
    --------
    >>> x, y = sympy.symbols("x y")
    >>> complexity(x * y + 2), complexity(sympy.sqrt(x))
    (5, 2)
    """
    if expr.is_Atom:
        return 1
    args = expr.args
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        return sum(complexity(a) for a in args) + len(args) - 1
    if isinstance(expr, sympy.Pow):
        if expr.exp in (sympy.Integer(-1), sympy.Rational(1, 2)):
            return complexity(expr.base) + 1
        return complexity(expr.base) + complexity(expr.exp) + 1
    return sum(complexity(a) for a in args) + 1


def _symbols(names: Sequence[str]) -> list[sympy.Symbol]:
    return [sympy.Symbol(n) for n in names]


def evaluate(expr: sympy.Basic, X: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Evaluate ``expr`` on the rows of ``X`` (columns named ``names``) in float64.

    Examples
    --------
    >>> evaluate(sympy.Symbol("a") * 2, np.array([[1.0], [2.0]]), ["a"])
    array([2., 4.])
    """
    X = np.asarray(X, dtype=np.float64)
    try:
        f = sympy.lambdify(_symbols(names), expr, modules="numpy")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = f(*[X[:, j] for j in range(X.shape[1])])
        out = np.asarray(out, dtype=np.complex128 if np.iscomplexobj(out) else np.float64)
    except _UNEVALUABLE as exc:
        raise CrosscheckError(
            f"evaluate(expr, X, names): {str(expr)[:200]} cannot be evaluated numerically "
            f"({type(exc).__name__}: {exc}); pass a formula of numbers, symbols and NumPy functions"
        ) from exc
    if np.iscomplexobj(out):
        out = np.where(np.abs(out.imag) > 1e-12 * (1 + np.abs(out.real)), np.nan, out.real)
    return np.broadcast_to(out, (X.shape[0],)).astype(np.float64)


def try_evaluate(expr, X: np.ndarray, names: Sequence[str]) -> np.ndarray | None:
    """:func:`evaluate` for an engine's candidate: ``None`` when it is not :func:`usable` or
    cannot be evaluated, instead of an error."""
    expr = usable(expr)
    if expr is None:
        return None
    try:
        return evaluate(expr, X, names)
    except CrosscheckError:
        return None


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    if not np.all(np.isfinite(pred)):
        return math.inf
    return float(np.mean((pred - y) ** 2))


def paired_gain(y: np.ndarray, better: np.ndarray, worse: np.ndarray) -> tuple[float, float]:
    """Mean reduction of squared error of ``better`` over ``worse`` on the same rows, and its
    standard error (paired, so the noise both share cancels). Non-finite predictions lose.

    Examples
    --------
    >>> y = np.array([0.0, 1.0, 2.0, 3.0])
    >>> paired_gain(y, y, np.full(4, 1.5))[0]
    1.25
    """
    ok_b, ok_w = bool(np.all(np.isfinite(better))), bool(np.all(np.isfinite(worse)))
    if not (ok_b and ok_w):
        return (math.inf if ok_b else -math.inf if ok_w else 0.0), 0.0
    d = (y - worse) ** 2 - (y - better) ** 2
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    return float(np.mean(d)), se


def r2_score(pred: np.ndarray, y: np.ndarray) -> float:
    """Coefficient of determination (scikit-learn's); ``-inf`` when ``pred`` has non-finite
    values or ``y`` is constant (no formula explains a constant better than another)."""
    from sklearn.metrics import r2_score as sklearn_r2

    if not np.all(np.isfinite(pred)) or float(np.ptp(y)) == 0:
        return -math.inf
    return float(sklearn_r2(y, np.broadcast_to(pred, np.shape(y))))


def candidates_table(
    exprs: Sequence[sympy.Expr], X: np.ndarray, y: np.ndarray, names: Sequence[str]
) -> pd.DataFrame:
    """Score candidate formulas on ``(X, y)`` and keep the Pareto front of loss vs complexity.

    ``score`` follows PySR: for consecutive front members,
    ``-(log(loss_i) - log(loss_{i-1})) / (complexity_i - complexity_{i-1})``, and 0 for the first.
    The mean of ``y`` is always a candidate (as in PySR's hall of fame), so the first real
    formula's score measures how much it explains.

    Examples
    --------
    >>> a = sympy.Symbol("a")
    >>> X = np.linspace(1, 2, 20)[:, None]
    >>> candidates_table([a, 2 * a, a + 3], X, 2 * X[:, 0], ["a"])[["complexity", "equation"]]
       complexity equation
    0           1        3
    1           3      2*a
    """
    y = np.asarray(y, dtype=np.float64)
    rows = []
    mean = float(np.mean(y))
    baseline = sympy.Integer(int(mean)) if mean.is_integer() else sympy.Float(mean)
    for e in [baseline, *exprs]:
        e = usable(e)
        pred = None if e is None else try_evaluate(e, X, names)
        if pred is None:  # an unusable candidate is dropped, never an error
            continue
        rows.append((complexity(e), _mse(pred, y), str(e), e, r2_score(pred, y)))
    rows = [r for r in rows if math.isfinite(r[1])]
    if not rows:
        raise CrosscheckError(
            "candidates_table(exprs, X, y, names): no candidate evaluates to finite values on X; "
            "pass formulas defined on the data range"
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    front = []
    for r in rows:  # strictly better loss than every simpler candidate
        if not front or r[1] < front[-1][1] * (1 - 1e-12):
            if front and r[0] == front[-1][0]:
                continue
            front.append(r)
    table = pd.DataFrame(front, columns=["complexity", "loss", "equation", "sympy_format", "r2"])
    table.insert(2, "score", _scores(table["complexity"].to_numpy(), table["loss"].to_numpy()))
    return table[COLUMNS]


def _scores(c: np.ndarray, loss: np.ndarray) -> np.ndarray:
    floor = np.finfo(np.float64).tiny
    logl = np.log(np.maximum(loss, floor))
    score = np.zeros(len(c))
    if len(c) > 1:
        with np.errstate(invalid="ignore"):  # an unusable row has infinite loss and no score
            score[1:] = -np.diff(logl) / np.diff(c.astype(np.float64))
    return score


def select_best(table: pd.DataFrame, y: np.ndarray) -> int:
    """PySR's ``"best"`` rule: the highest score among candidates whose loss is within 1.5x the
    lowest (losses below ``1e-12 * var(y)`` count as exact, so float noise does not decide).

    Examples
    --------
    >>> t = pd.DataFrame({"loss": [1.0, 1e-3, 0.9e-3], "score": [0.0, 3.4, 0.05]})
    >>> select_best(t, np.array([0.0, 2.0]))
    1
    """
    loss = table["loss"].to_numpy()
    floor = 1e-12 * float(np.var(y))
    ok = loss <= max(1.5 * loss.min(), floor)
    idx = np.flatnonzero(ok)
    return int(table.index[idx[np.argmax(table["score"].to_numpy()[idx])]])


def finish(
    exprs: Sequence[sympy.Expr], X: np.ndarray, y: np.ndarray, names: Sequence[str], *, polish_constants: bool = True,
    deadline: float | None = None,
) -> tuple[pd.DataFrame, int]:
    """Candidates table and best row for an engine's raw formulas.

    The few candidates that :func:`select_best` chooses among (loss within 1.5x the lowest, or
    within float32 round-off of it; the simplest four) get their constants refitted in float64,
    snapped to clean numbers and tidied (:func:`polish`), then the choice is made again. The
    others keep the engine's constants: polishing every member of a long front costs more than
    the search. No candidate starts its polish after ``deadline`` (a :func:`time.perf_counter`
    time), and a polish under way stops snapping there; the first always gets its refit.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    table = candidates_table(exprs, X, y, names)
    if not polish_constants:
        return table, select_best(table, y)
    loss = table["loss"].to_numpy()
    pool = list(table.index[loss <= max(1.5 * loss.min(), 1e-9 * float(np.var(y)))][:4])
    rest = [e for i, e in zip(table.index, table["sympy_format"]) if i not in pool]
    polished = []
    for k, i in enumerate(pool):
        e = table.loc[i, "sympy_format"]
        polished.append(polish(e, X, y, names, deadline=deadline)
                        if k == 0 or not expired(deadline) else e)
    table = candidates_table(rest + polished, X, y, names)
    return table, select_best(table, y)


# --------------------------------------------------------------------------------------------
# float64 polishing of constants


def _float_atoms(expr: sympy.Expr) -> list[sympy.Float]:
    return sorted({a for a in expr.atoms(sympy.Float)}, key=lambda f: (abs(float(f)), float(f)))


def _refit(expr: sympy.Expr, X: np.ndarray, y: np.ndarray, names: Sequence[str]) -> tuple[sympy.Expr, float]:
    """Least-squares refit of the Float constants of ``expr`` in float64."""
    from scipy.optimize import least_squares

    pred = try_evaluate(expr, X, names)
    base = math.inf if pred is None else _mse(pred, y)
    floats = _float_atoms(expr)
    if not floats or pred is None:
        return expr, base
    params = sympy.symbols(f"_c0:{len(floats)}")
    template = expr.xreplace(dict(zip(floats, params)))
    args = list(params) + _symbols(names)
    try:
        f: Callable = sympy.lambdify(args, template, modules="numpy")
    except _UNEVALUABLE:
        return expr, base
    grads: list[Callable] | None
    try:  # exact gradients where SymPy can differentiate into printable code
        derivatives = [sympy.diff(template, p) for p in params]
        if any(usable(d) is None for d in derivatives):
            raise ValueError("derivative not printable")
        grads = [sympy.lambdify(args, d, modules="numpy") for d in derivatives]
    except _UNEVALUABLE:
        grads = None  # finite differences instead (Abs, Min, sign, ... at their kinks)
    cols = [X[:, j] for j in range(X.shape[1])]

    def residual(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = np.broadcast_to(np.asarray(f(*theta, *cols), dtype=np.float64), y.shape) - y
        return np.where(np.isfinite(r), r, 1e150)

    def jacobian(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            J = np.column_stack([np.broadcast_to(np.asarray(g(*theta, *cols), dtype=np.float64), y.shape) for g in grads])
        return np.where(np.isfinite(J), J, 0.0)

    theta0 = np.array([float(v) for v in floats])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = least_squares(residual, theta0, jac=jacobian if grads is not None else "2-point", method="lm", xtol=1e-12, ftol=1e-10, gtol=1e-12,
                                max_nfev=20 * (len(theta0) + 1))
    except _UNEVALUABLE:
        return expr, base
    new = template.xreplace({p: sympy.Float(v) for p, v in zip(params, sol.x)})
    pred = try_evaluate(new, X, names)
    loss = math.inf if pred is None else _mse(pred, y)
    return (new, loss) if loss <= base else (expr, base)


def polish(
    expr: sympy.Expr, X: np.ndarray, y: np.ndarray, names: Sequence[str], *, snap: bool = True, tidy: bool = True,
    deadline: float | None = None,
) -> sympy.Expr:
    """Refit the numeric constants of ``expr`` by float64 least squares, then drop or snap each
    to a clean number (0, integer, simple fraction, short decimal) when the loss does not get
    worse by the Bayesian information criterion (one constant fewer may cost at most a factor
    ``n**(1/n)`` of mean squared error).

    Engines such as Operon store constants in float32; this recovers full precision and turns
    ``0.49999997*x`` into ``x/2`` on exact data. With ``tidy``, the expanded form is polished
    too and kept when it is as accurate and no less tidy (complexity, with each unrounded float
    counting 4 more): ``1.0625*x**2 - (x/4 - y)**2`` becomes ``x**2 + x*y/2 - y**2``.
    After ``deadline`` (a :func:`time.perf_counter` time) no further constant is tried for
    snapping and the expanded form is not polished: each trial refits every constant, so a
    formula with many constants took minutes.

    Examples
    --------
    >>> x = sympy.Symbol("x")
    >>> X = np.linspace(-1, 1, 50)[:, None]
    >>> polish(sympy.Float(0.4999999) * x**2, X, 0.5 * X[:, 0] ** 2, ["x"])
    x**2/2
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out, loss = _polish_once(sympy.sympify(expr), X, y, names, snap, deadline)
    if tidy and not expired(deadline):
        expanded = sympy.expand(out)
        if expanded != out:
            alt, alt_loss = _polish_once(expanded, X, y, names, snap, deadline)
            floor = 1e-24 * float(np.mean(y**2)) + 1e-300
            fewer = max(1, len(out.atoms(sympy.Float)) - len(alt.atoms(sympy.Float)))
            allowed = loss * math.exp(fewer * math.log(len(y)) / len(y))  # BIC, as for snapping
            if _untidiness(alt) <= _untidiness(out) and alt_loss <= max(allowed, floor):
                out = alt
    return out


def _untidiness(expr: sympy.Expr) -> int:
    """Complexity, with each unrounded float constant counting as 4 more nodes."""
    return complexity(expr) + 4 * len(expr.atoms(sympy.Float))


def _polish_once(expr: sympy.Expr, X: np.ndarray, y: np.ndarray, names: Sequence[str], snap: bool,
                 deadline: float | None = None) -> tuple[sympy.Expr, float]:
    from discovery.symbolic import clean_number

    expr, loss = _refit(expr, X, y, names)
    if not snap:
        return expr, loss
    n = len(y)
    floor = 1e-24 * float(np.mean(y**2)) + 1e-300
    position = 0
    while position < len(floats := _float_atoms(expr)):
        if expired(deadline):
            break
        fl = floats[position]
        position += 1
        v = float(fl)
        options = [sympy.Integer(0)]  # a constant that does not matter is dropped
        for tol in (1e-2 * abs(v), 1e-4 * abs(v), 1e-6 * abs(v)):  # simplest first
            clean = clean_number(v, tol)
            if clean is not None:
                exact = _exact(clean[1])  # exact numbers are frozen: refits only move Floats
                if exact not in options:
                    options.append(exact)
        for value in options:
            trial, trial_loss = _refit(expr.xreplace({fl: value}), X, y, names)
            # BIC: one constant fewer is worth a factor exp(log(n)/n) of loss
            if trial_loss <= max(loss * math.exp(math.log(n) / n), floor):
                expr, loss = trial, trial_loss
                position -= 1  # this float is gone; the next one moved into its place
                break
    return _rationals(expr), loss


def _exact(number: sympy.Expr) -> sympy.Expr:
    """A snapped value as an exact SymPy number (``6.674 -> 3337/500``)."""
    if isinstance(number, sympy.Float):
        return sympy.Rational(repr(float(number)))
    return number


def _rationals(expr: sympy.Expr) -> sympy.Expr:
    """Numbers as a reader wants them: ``p/q`` with ``q <= 6`` stays or becomes a rational
    (``0.5 -> 1/2``); other rationals (snapped decimals such as ``3337/500``) print as floats."""
    swap = {}
    for fl in expr.atoms(sympy.Float):
        frac = Fraction(float(fl)).limit_denominator(6)
        if float(frac) == float(fl) and abs(frac.numerator) < 10**6:
            swap[fl] = sympy.Rational(frac.numerator, frac.denominator)
    for r in expr.atoms(sympy.Rational):
        if r.q > 6 and not r.is_Integer:
            swap[r] = sympy.Float(float(r))
    return expr.xreplace(swap) if swap else expr
