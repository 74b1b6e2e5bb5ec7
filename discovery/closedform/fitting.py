"""What every closed-form family shares: candidates, the validation test that compares two of
them, the noise estimate, refitting constants in float64 and snapping them to clean numbers.

A candidate is judged only on validation rows; its constants are fitted only on training rows.
Two candidates are "equally good" when the paired difference of their squared validation
residuals is not significantly positive (two standard errors), or below float64 resolution.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy
from scipy.spatial import cKDTree

from discovery.leaf import expired, least_squares_until
from discovery.symbolic import clean_candidates

EPS = float(np.finfo(np.float64).eps)
Z = 3.0
"""Standard errors a difference of validation errors may reach and still count as a tie. For a
tiny change the paired statistic no longer depends on its size, only on chance correlation with
the residuals, and it is applied to every snap and every candidate: three standard errors keep
those chance rejections rare (about 1 in 700)."""
Z_SPREAD = 2.0
"""Ensemble standard deviations within which two candidates fitted to the members' mean tie."""


def variables(k: int) -> list[sympy.Symbol]:
    """Internal input symbols (user names are substituted only at the very end)."""
    return [sympy.Symbol(f"_v{j}", real=True) for j in range(k)]


@dataclass
class Candidate:
    """One closed form proposed by a family: its method, how to get its SymPy expression in the
    internal symbols, and its predictions on every row."""

    method: str
    build: Callable[[], sympy.Expr]
    pred: np.ndarray
    note: str = ""
    _expr: sympy.Expr | None = field(default=None, repr=False)

    @property
    def expr(self) -> sympy.Expr:
        if self._expr is None:
            self._expr = self.build()
        return self._expr


def float_floor(y: np.ndarray) -> float:
    """Mean squared error that float64 cannot tell from zero for a target like ``y``.

    Least squares minimises squared residuals, so constants are resolved to about
    ``sqrt(eps)`` relative: a residual below ``sqrt(eps) * rms(y)`` carries no information.
    """
    return EPS * float(np.mean(y**2)) + 1e-300


def not_worse(res: np.ndarray, ref: np.ndarray, floor: float) -> bool:
    """True when residuals ``res`` are not significantly larger than ``ref``.

    Two conditions: the paired differences of squared residuals are not significantly positive
    (``Z`` standard errors), and the mean square exceeds the reference's by no more than ``Z``
    times the relative standard error of a mean square, ``sqrt(2/n)`` (this one keeps a single
    huge residual, e.g. near a pole, from hiding in its own large spread). Differences below
    ``floor`` always count as ties.
    """
    if not np.all(np.isfinite(res)):
        return False
    d = res**2 - ref**2
    mean = float(np.mean(d))
    if mean <= floor:
        return True
    n = len(d)
    paired = mean <= Z * float(np.std(d)) / math.sqrt(n)
    ratio = float(np.mean(res**2)) <= float(np.mean(ref**2)) * (1 + Z * math.sqrt(2.0 / n)) + floor
    return paired and ratio


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    """Coefficient of determination (1 for an exact fit of a constant target)."""
    if not np.all(np.isfinite(pred)):
        return -math.inf
    ss = float(np.sum((y - y.mean()) ** 2))
    rss = float(np.sum((y - pred) ** 2))
    if ss <= float_floor(y) * len(y):
        return 1.0 if rss <= float_floor(y) * len(y) else -math.inf
    return 1.0 - rss / ss


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    if not np.all(np.isfinite(pred)):
        return math.inf
    return float(np.sqrt(np.mean((pred - y) ** 2)))


NOISE_ROWS = 400
"""Rows sampled by :func:`noise_estimate` (its precision is that of a mean of this many)."""


def member_spread(model, Xv: np.ndarray) -> float:
    """Root mean square standard deviation across the model's outputs (ensemble members) on
    ``Xv``; 0 without a model or with one output."""
    if model is None:
        return 0.0
    import copy

    import torch

    device = None
    if isinstance(model, torch.nn.Module):
        model = copy.deepcopy(model).double()
        device = next((p.device for p in model.parameters()), None)
    with torch.no_grad():
        out = model(torch.as_tensor(Xv, dtype=torch.float64, device=device))
    out = np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] < 2:
        return 0.0
    return float(np.sqrt(np.mean(np.var(out, axis=1, ddof=1))))


def noise_estimate(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, max_rows: int = NOISE_ROWS) -> float:
    """Noise standard deviation of ``y`` estimated without a model (an upper bound on smooth data).

    Each sampled row is predicted by a local linear fit on its ``2k + 4`` nearest neighbours
    (inputs scaled to unit spread). Where the function is locally linear, the prediction error
    has variance ``sigma^2 (1 + h)`` with ``h = [(A^T A)^-1]_00`` of that fit, so each squared
    error is divided by ``1 + h``.
    """
    n, k = X.shape
    m = 2 * k + 4
    if n <= m + 1:
        return float(np.std(y))
    scale = np.std(X, axis=0)
    Z_ = (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    rows = rng.choice(n, min(n, max_rows), replace=False)
    _, nbr = cKDTree(Z_).query(Z_[rows], k=m + 1)
    ratios = []
    for i, nb in zip(rows, nbr):
        nb = nb[nb != i][:m]
        A = np.column_stack([np.ones(m), Z_[nb] - Z_[i]])
        AtA_inv = np.linalg.pinv(A.T @ A)
        coef = AtA_inv @ (A.T @ y[nb])
        ratios.append((y[i] - coef[0]) ** 2 / (1 + AtA_inv[0, 0]))
    return float(np.sqrt(np.mean(ratios)))


# --------------------------------------------------------------------------------------------
# Refitting and snapping constants of a SymPy expression


class Template:
    """``expr`` with its Float constants as free parameters, compiled once for refits."""

    def __init__(self, expr: sympy.Expr, xs: list[sympy.Symbol]):
        self.floats = sorted(expr.atoms(sympy.Float), key=lambda f: -abs(float(f)))
        self.params = sympy.symbols(f"_p0:{len(self.floats)}")
        self.template = expr.xreplace(dict(zip(self.floats, self.params)))
        self.theta = np.array([float(f) for f in self.floats])
        self.exponent = [any(isinstance(a, sympy.Pow) and a.exp == p for a in sympy.preorder_traversal(self.template))
                         for p in self.params]
        self._f = sympy.lambdify([*self.params, *xs], self.template, modules="numpy")
        # complex steps give exact derivatives from one evaluation, but only for analytic forms
        rough = (sympy.Abs, sympy.sign, sympy.Min, sympy.Max, sympy.floor, sympy.ceiling, sympy.re, sympy.im)
        self._analytic = not self.template.has(*rough)

    def _raw(self, theta, cols):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self._f(*theta, *cols))

    def __call__(self, theta: np.ndarray, cols: list[np.ndarray]) -> np.ndarray:
        out = self._raw(theta, cols)
        if np.iscomplexobj(out):
            out = np.where(np.abs(out.imag) > 1e-12 * (1 + np.abs(out.real)), np.nan, out.real)
        return np.broadcast_to(out.astype(np.float64), cols[0].shape)

    def jac(self, theta: np.ndarray, cols: list[np.ndarray], free: np.ndarray) -> np.ndarray:
        out = []
        for j in np.flatnonzero(free):
            if self._analytic:
                h = 1e-30 * max(1.0, abs(theta[j]))
                t = theta.astype(np.complex128)
                t[j] += 1j * h
                g = np.imag(self._raw(t, [c + 0j for c in cols])) / h
            else:
                h = 1e-6 * max(1.0, abs(theta[j]))
                up, down = theta.copy(), theta.copy()
                up[j] += h
                down[j] -= h
                g = (self(up, cols) - self(down, cols)) / (2 * h)
            out.append(np.broadcast_to(np.asarray(g, dtype=np.float64), cols[0].shape))
        J = np.column_stack(out) if out else np.zeros((len(cols[0]), 0))
        return np.where(np.isfinite(J), J, 0.0)

    def fit(self, theta: np.ndarray, free: np.ndarray, cols: list[np.ndarray], y: np.ndarray,
            effort: int = 50, deadline: float | None = None, max_evaluations: int | None = None) -> np.ndarray:
        """Least squares over the ``free`` parameters from ``theta``; the start if that is better.
        ``effort`` evaluations per free parameter and one, at most ``max_evaluations``; at
        ``deadline`` (a :func:`time.perf_counter` time) the best point evaluated so far."""
        theta = theta.astype(np.float64).copy()
        if not free.any():
            return theta

        def full(t):
            th = theta.copy()
            th[free] = t
            return th

        def residual(t):
            r = self(full(t), cols) - y
            return np.where(np.isfinite(r), r, 1e150)

        start = float(np.sum(residual(theta[free]) ** 2))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x, r, _ = least_squares_until(residual, theta[free], deadline,
                                              jac=lambda t: self.jac(full(t), cols, free), method="lm",
                                              xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                              max_nfev=min(effort * (int(free.sum()) + 1),
                                                           max_evaluations or math.inf))
        except (ValueError, FloatingPointError, ZeroDivisionError, OverflowError):
            return theta
        return full(x) if float(np.sum(r**2)) <= start else theta

    def expression(self, theta: np.ndarray, exact: dict[int, sympy.Expr]) -> sympy.Expr:
        values = {p: exact.get(j, sympy.Float(float(t))) for j, (p, t) in enumerate(zip(self.params, theta))}
        return self.template.xreplace(values)


SNAP_EVALUATIONS = 100
"""Residual evaluations of one snap trial's refit at most (20 per free constant and one below
that: unchanged for formulas of up to four constants)."""
_LOGS = [(math.log(2), sympy.log(2)), (math.log(10), sympy.log(10)), (math.e, sympy.E)]
WINDOW = 0.25
"""Clean numbers farther than this (relative) from a fitted constant are not tried: the
validation test decides among the rest, and noisy constants can be off by several percent."""


def _clean_options(value: float, exponent: bool) -> list[tuple[float, sympy.Expr, bool]]:
    """Zero first, then clean numbers within 25 % of ``value``, simplest first: integers, simple
    fractions ``p/q`` (q = 2, 3, 4, 6), one-digit decimals, then ``sqrt(n)``, ``k*pi/q``,
    ``log 2``, ``log 10`` and ``e`` (flagged: they need stronger evidence than a fraction)."""
    options: list[tuple[float, sympy.Expr, bool]] = [(0.0, sympy.Integer(0), False)]
    for q in (1, 2, 3, 4, 6):
        frac = Fraction(round(value * q), q)
        # clean means short: at most three significant digits, small numerators
        if float(f"{float(frac.numerator):.3g}") == frac.numerator and (q == 1 or abs(frac.numerator) <= 100):
            options.append((float(frac), sympy.Rational(frac.numerator, frac.denominator), False))
    if not exponent:
        for f, e, family in clean_candidates(value, "coefficient"):
            if family == "constant" or (family == "1 digit" and abs(f) >= 0.01):
                e = sympy.Rational(repr(float(e))) if isinstance(e, sympy.Float) else e
                options.append((f, e, family == "constant"))
        s = 1 if value > 0 else -1  # rates of 2**x, 10**x and e-folds
        options.extend((s * f, s * e, True) for f, e in _LOGS)
    seen, out = set(), []
    for f, e, special in options:
        if (f == 0 or abs(f - value) <= WINDOW * abs(value)) and f not in seen:
            seen.add(f)
            out.append((f, e, special))
    return out


@dataclass
class Polished:
    expr: sympy.Expr
    pred: np.ndarray
    snapped: list[str]


def polish(expr: sympy.Expr, xs: list[sympy.Symbol], cols: list[np.ndarray], y: np.ndarray,
           train: np.ndarray, val: np.ndarray, floor: float, deadline: float | None = None) -> Polished | None:
    """Refit the Float constants of ``expr`` on training rows, then snap each to zero or a clean
    number when the validation residuals stay not worse than the refitted expression's.

    ``sqrt(n)`` and ``k*pi/q`` are accepted only when the fitted value is within 1e-4 of them
    (relative) as well. Returns ``None`` when the expression does not evaluate on the rows.
    At ``deadline`` (a :func:`time.perf_counter` time) the refit keeps the best constants it
    evaluated, no further snap is tried, and ``snapped`` says so.
    """
    tpl = Template(expr, xs)
    tr = [c[train] for c in cols]
    theta = tpl.fit(tpl.theta, np.ones(len(tpl.theta), bool), tr, y[train], deadline=deadline)
    pred = tpl(theta, cols)
    if not np.all(np.isfinite(pred)):
        theta = tpl.theta
        pred = tpl(theta, cols)
        if not np.all(np.isfinite(pred)):
            return None
    ref = pred[val] - y[val]
    free = np.ones(len(theta), bool)
    exact: dict[int, sympy.Expr] = {}
    snapped = []
    for j in range(len(theta)):
        if expired(deadline):
            snapped.append(f"(time budget spent: snapping stopped, {len(theta) - j} of {len(theta)} constants "
                           "not tried)")
            break
        for value, number, special in _clean_options(float(theta[j]), tpl.exponent[j]):
            if special and abs(value - theta[j]) > 1e-4 * abs(value):
                continue
            if expired(deadline):
                snapped.append(f"(time budget spent: snapping stopped at constant {j + 1} of {len(theta)})")
                break
            trial = theta.copy()
            trial[j] = value
            f = free.copy()
            f[j] = False
            # a right snap converges in a few iterations whatever the number of constants, so
            # a trial's evaluations are capped: each one costs a Jacobian of every free constant,
            # and uncapped the snapping of an n-constant formula grew as n^3
            trial = tpl.fit(trial, f, tr, y[train], effort=20, deadline=deadline, max_evaluations=SNAP_EVALUATIONS)
            tpred = tpl(trial, cols)
            if not_worse(tpred[val] - y[val], ref, floor):
                snapped.append(f"{float(theta[j]):.6g} -> {number}")
                theta, free, pred = trial, f, tpred
                exact[j] = number
                break
        if snapped and snapped[-1].startswith("(time budget spent"):
            break
    return Polished(tpl.expression(theta, exact), pred, snapped)
