"""Elementary functions of one input fitted from data: ``a*g(b*x + c) + d`` and, one level
deeper, ``(a*x + e)*g(b*x + c) + d``.

The inner constants start from a grid in standardised units (so the grid does not depend on
the data's scale); for each start the outer constants are linear and solved exactly; the best
starts are refined by Levenberg-Marquardt on all constants.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterator

import numpy as np
import sympy
from scipy.optimize import least_squares

from discovery.closedform.fitting import EPS, Candidate

_FREQ = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
_PHASE = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
_SHIFT = (-2.0, -1.0, 0.0, 1.0, 2.0)
_SLOPE = (0.3, 1.0, 3.0)

# name -> (numpy g, sympy g, grid of (beta, gamma) for u = beta * (x - mean) / std + gamma)
FUNCTIONS: dict[str, tuple[Callable, Callable, list[tuple[float, float]]]] = {
    "sin": (np.sin, sympy.sin, [(b, g) for b in _FREQ for g in _PHASE]),
    "cos": (np.cos, sympy.cos, [(b, 0.0) for b in _FREQ]),
    "exp": (np.exp, sympy.exp, [(s * b, 0.0) for s in (1, -1) for b in (0.1, 0.3, 0.6, 1.0, 2.0, 4.0)]),
    "tanh": (np.tanh, sympy.tanh, [(b, g) for b in _SLOPE for g in _SHIFT]),
    "arctan": (np.arctan, sympy.atan, [(b, g) for b in _SLOPE for g in _SHIFT]),
    "sinh": (np.sinh, sympy.sinh, [(b, g) for b in _SLOPE for g in _SHIFT]),
    "cosh": (np.cosh, sympy.cosh, [(b, g) for b in _SLOPE for g in _SHIFT]),
}
# functions with a one-sided domain: u = s * (x - edge) / spread + delta > 0
_EDGE = {"log": (np.log, sympy.log), "sqrt": (np.sqrt, sympy.sqrt)}
_DELTA = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)
_POWERS = (-3.0, -2.0, -1.0, -0.5, 0.5, 1.5, 2.0, 3.0)


def _linear_rss(B: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(B, y, rcond=None)
    return coef, float(np.sum((B @ coef - y) ** 2))


def _refine(f: Callable, theta: np.ndarray, x: np.ndarray, y: np.ndarray, free: np.ndarray,
            domain: np.ndarray) -> tuple[np.ndarray, float]:
    """Levenberg-Marquardt from ``theta`` on rows ``x``, staying where ``f`` is finite on every
    row of ``domain`` (validation rows too: a fit that pushes ``x + c`` just past the training
    rows' edge would be undefined on them). The Jacobian by complex steps (exact, one
    evaluation per constant); a coarse tolerance suffices, the chosen candidates are refitted."""
    def full(t):
        th = theta.astype(t.dtype)
        th[free] = t
        return th

    def residual(t):
        with np.errstate(all="ignore"):
            if not np.all(np.isfinite(f(full(t), domain))):
                return np.full(len(y), 1e150)
            r = f(full(t), x) - y
        return np.where(np.isfinite(r), r, 1e150)

    def jac(t):
        h = 1e-30 * np.maximum(1.0, np.abs(t))
        cols = []
        with np.errstate(all="ignore"):
            for j in range(len(t)):
                tc = t.astype(np.complex128)
                tc[j] += 1j * h[j]
                cols.append(np.imag(f(full(tc), x + 0j)) / h[j])
        J = np.column_stack(cols)
        return np.where(np.isfinite(J), J, 0.0)

    start = float(np.sum(residual(theta[free]) ** 2))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = least_squares(residual, theta[free], method="lm", jac=jac, xtol=1e-12, ftol=1e-12, gtol=1e-12,
                                max_nfev=40 * len(theta))
    except (ValueError, FloatingPointError):
        return theta, start
    rss = float(np.sum(sol.fun**2))
    return (full(sol.x), rss) if rss <= start else (theta, start)


def _best_starts(starts: list[tuple[float, np.ndarray]], keep: int = 2) -> list[np.ndarray]:
    starts = [s for s in starts if math.isfinite(s[0])]
    starts.sort(key=lambda s: s[0])
    return [s[1] for s in starts[:keep]]


def _search(name, f, build, starts, x, y, train, fixed=()) -> Candidate | None:
    best, best_rss = None, math.inf
    for theta in _best_starts(starts):
        free = np.ones(len(theta), bool)
        free[list(fixed)] = False
        theta, rss = _refine(f, theta, x[train], y[train], free, x)
        if rss < best_rss:
            best, best_rss = theta, rss
    if best is None:
        return None
    with np.errstate(all="ignore"):
        pred = f(best, x)
    if not np.all(np.isfinite(pred)):
        return None
    return Candidate("elementary", lambda: build(best), np.asarray(pred, dtype=np.float64), name)


def elementary(X, y, xs, train, deadline, clock) -> Iterator[Candidate]:
    """Fitted ``a*g(b*x + c) + d`` and ``(a*x + e)*g(b*x + c) + d`` for a 1-D piece."""
    x, s = X[:, 0], xs[0]
    xt, yt = x[train], y[train]
    m, sd = float(np.mean(xt)), float(np.std(xt)) or 1.0
    one = np.ones_like(xt)
    F = sympy.Float
    for name, (g, gs, grid) in FUNCTIONS.items():
        if clock() > deadline:
            return
        single, product = [], []
        for beta, gamma in grid:
            b, c = beta / sd, gamma - beta * m / sd
            with np.errstate(all="ignore"):
                G = g(b * xt + c)
            if not np.all(np.isfinite(G)):
                continue
            (a, d), rss = _linear_rss(np.column_stack([G, one]), yt)
            single.append((rss, np.array([a, b, c, d])))
            if name in ("sin", "cos", "exp"):
                (a, e, d), rss = _linear_rss(np.column_stack([xt * G, G, one]), yt)
                product.append((rss, np.array([a, e, b, c, d])))
        # for exp the shift c only rescales a: it stays 0
        shift = (lambda v: sympy.Integer(0)) if name == "exp" else F
        f1 = lambda th, x, g=g: th[0] * g(th[1] * x + th[2]) + th[3]
        b1 = lambda th, gs=gs, shift=shift: F(th[0]) * gs(F(th[1]) * s + shift(th[2])) + F(th[3])
        fixed = (2,) if name == "exp" else ()
        cand = _search(f"a*{name}(b*x{'' if fixed else ' + c'}) + d", f1, b1, single, x, y, train, fixed)
        if cand is not None:
            yield cand
        if product:
            f2 = lambda th, x, g=g: (th[0] * x + th[1]) * g(th[2] * x + th[3]) + th[4]
            b2 = lambda th, gs=gs, shift=shift: (F(th[0]) * s + F(th[1])) * gs(F(th[2]) * s + shift(th[3])) + F(th[4])
            cand = _search(f"(a*x + e)*{name}(b*x{'' if fixed else ' + c'}) + d", f2, b2, product, x, y, train,
                           (3,) if fixed else ())
            if cand is not None:
                yield cand
    spread = float(np.ptp(xt)) or 1.0
    for sign in (1.0, -1.0):
        w = sign * xt
        edge = float(np.min(sign * x))
        for name, (g, gs) in _EDGE.items():
            if clock() > deadline:
                return
            starts, product = [], []
            for delta in _DELTA:
                c = -edge + delta * spread
                with np.errstate(all="ignore"):
                    G = g(w + c)
                (a, d), rss = _linear_rss(np.column_stack([G, one]), yt)
                starts.append((rss, np.array([a, c, d])))
                (a, e, d), rss = _linear_rss(np.column_stack([xt * G, G, one]), yt)
                product.append((rss, np.array([a, e, c, d])))
            inner = f"{'' if sign > 0 else '-'}x + c"
            f = lambda th, x, g=g, sign=sign: th[0] * g(sign * x + th[1]) + th[2]
            b = lambda th, gs=gs, sign=sign: F(th[0]) * gs(int(sign) * s + F(th[1])) + F(th[2])
            cand = _search(f"a*{name}({inner}) + d", f, b, starts, x, y, train)
            if cand is not None:
                yield cand
            f = lambda th, x, g=g, sign=sign: (th[0] * x + th[1]) * g(sign * x + th[2]) + th[3]
            b = lambda th, gs=gs, sign=sign: (F(th[0]) * s + F(th[1])) * gs(int(sign) * s + F(th[2])) + F(th[3])
            cand = _search(f"(a*x + e)*{name}({inner}) + d", f, b, product, x, y, train)
            if cand is not None:
                yield cand
        starts = []
        for r in _POWERS:
            for c in (0.0, *(-edge + delta * spread for delta in _DELTA)):
                with np.errstate(all="ignore"):
                    G = (w + c) ** r
                if not np.all(np.isfinite(G)):
                    continue
                (a, d), rss = _linear_rss(np.column_stack([G, one]), yt)
                starts.append((rss, np.array([a, c, r, d])))
        f = lambda th, x, sign=sign: th[0] * (sign * x + th[1]) ** th[2] + th[3]
        b = lambda th, sign=sign: F(th[0]) * (int(sign) * s + F(th[1])) ** F(th[2]) + F(th[3])
        cand = _search(f"a*({'' if sign > 0 else '-'}x + c)**r + d", f, b, starts, x, y, train)
        if cand is not None:
            yield cand
        if edge > 0:  # a plain power law, without the shift that noise can pull away from 0
            pure = [st for st in starts if st[1][1] == 0.0]
            b0 = lambda th, sign=sign: F(th[0]) * (int(sign) * s) ** F(th[2]) + F(th[3])
            cand = _search(f"a*{'' if sign > 0 else '(-x)'}x**r + d".replace("(-x)x", "(-x)"), f, b0, pure, x, y,
                           train, fixed=(1,))
            if cand is not None:
                yield cand
    # arcsin needs |b*x + c| <= 1 on every row: map the data range into part of [-1, 1]
    lo, hi = float(np.min(x)), float(np.max(x))
    half, mid = (hi - lo) / 2 or 1.0, (hi + lo) / 2
    starts = []
    for rho in (0.3, 0.6, 0.9, 0.99):
        for gamma in (-0.5, 0.0, 0.5):
            if abs(gamma) + rho > 1:
                continue
            b, c = rho / half, gamma - rho * mid / half
            (a, d), rss = _linear_rss(np.column_stack([np.arcsin(b * xt + c), one]), yt)
            starts.append((rss, np.array([a, b, c, d])))
    f = lambda th, x: th[0] * np.arcsin(th[1] * x + th[2]) + th[3]
    b = lambda th: F(th[0]) * sympy.asin(F(th[1]) * s + F(th[2])) + F(th[3])
    cand = _search("a*arcsin(b*x + c) + d", f, b, starts, x, y, train)
    if cand is not None:
        yield cand


def _monomials(X: np.ndarray, xs: list) -> list[tuple[np.ndarray, sympy.Expr]]:
    """Products of the inputs with exponents in -2..2 and total absolute degree 1 or 2
    (negative ones only for inputs without zeros): the inner forms ``x*y``, ``x/y``, ``x**2``..."""
    k = X.shape[1]
    allowed = [(-2, -1, 0, 1, 2) if np.all(X[:, j] != 0) else (0, 1, 2) for j in range(k)]
    out = []
    for e in np.ndindex(*(5,) * k):
        e = tuple(v - 2 for v in e)
        if not 1 <= sum(abs(v) for v in e) <= 2 or any(v not in allowed[j] for j, v in enumerate(e)):
            continue
        col = np.prod([X[:, j] ** float(v) for j, v in enumerate(e)], axis=0)
        out.append((col, sympy.Mul(*[s**v for s, v in zip(xs, e)])))
    return out


def monomial_sums(X, y, xs, train, monos=None) -> Iterator[Candidate]:
    """``a*m1 + e*m2 + d`` for every pair of monomials of :func:`_monomials` (``1/x**2 - 1/y**2``,
    ``x/y + y/x``): a sum of two separate terms, linear in its constants. The sparse polynomials
    in transformed inputs hold these terms too, but there backward elimination by an information
    criterion keeps terms that fit an ensemble's smooth error, and a tidy look-alike of the sum
    (``sinh`` of it, nearly linear on the rows) would win the tie. The best pair per first
    monomial is yielded (and the best single monomial ``a*m + d``)."""
    monos = _monomials(X, xs) if monos is None else monos
    yt = y[train]
    one = np.ones(len(train))
    F = sympy.Float
    single = min(((_linear_rss(np.column_stack([c[train], one]), yt), i) for i, (c, _) in enumerate(monos)),
                 key=lambda item: item[0][1], default=None)
    fits = [] if single is None else [((single[0][0][0], 0.0, single[0][0][1]), single[1], None)]
    for i in range(len(monos)):
        best = None
        for j in range(i + 1, len(monos)):
            B = np.column_stack([monos[i][0][train], monos[j][0][train], one])
            coef, rss = _linear_rss(B, yt)
            if best is None or rss < best[0]:
                best = (rss, coef, j)
        if best is not None:
            fits.append((tuple(best[1]), i, best[2]))
    for (a, e, d), i, j in fits:
        col = a * monos[i][0] + (e * monos[j][0] if j is not None else 0.0) + d
        if not np.all(np.isfinite(col)):
            continue
        m1, m2 = monos[i][1], (monos[j][1] if j is not None else sympy.Integer(0))
        build = lambda a=a, e=e, d=d, m1=m1, m2=m2: F(a) * m1 + F(e) * m2 + F(d)
        note = f"a*m1 + e*m2 + d, m1 = {m1}, m2 = {m2}" if j is not None else f"a*m + d, m = {m1}"
        yield Candidate("monomial sum", build, np.asarray(col, dtype=np.float64), note)


def composite(X, y, xs, train, deadline, clock) -> Iterator[Candidate]:
    """``a*g(b*m + c) + d`` for elementary ``g`` and a monomial ``m`` of the inputs (``x*y``,
    ``x/y``, ``x**2``, ``1/x``, ...): an elementary function of one combined variable. Each ``g``
    is then tried on two monomials, ``a*g(b*m + e*m2 + c) + d`` (``x**2 + y**2``), the second
    added to its best single one, and on a linear form of the raw inputs (``x - y``). The
    identity ``g`` comes first: :func:`monomial_sums`."""
    yt = y[train]
    one = np.ones(len(train))
    F = sympy.Float
    monos = _monomials(X, xs)
    yield from monomial_sums(X, y, xs, train, monos)
    singles = []
    for name, (g, gs, grid) in FUNCTIONS.items():
        starts = []
        for j, (col, _) in enumerate(monos):
            if clock() > deadline:
                return
            mt = col[train]
            m, sd = float(np.mean(mt)), float(np.std(mt)) or 1.0
            for beta, gamma in grid:
                b, c = beta / sd, gamma - beta * m / sd
                with np.errstate(all="ignore"):
                    G = g(b * mt + c)
                if not np.all(np.isfinite(G)):
                    continue
                (a, d), rss = _linear_rss(np.column_stack([G, one]), yt)
                starts.append((rss, np.array([a, b, c, d, j])))
        best, best_rss = None, math.inf
        fixed = [2] if name == "exp" else []  # for exp the shift c only rescales a
        free = np.ones(4, bool)
        free[fixed] = False
        f = lambda th, x, g=g: th[0] * g(th[1] * x + th[2]) + th[3]
        for theta in _best_starts(starts):
            j = int(theta[4])
            th, rss = _refine(f, theta[:4], monos[j][0][train], yt, free, monos[j][0])
            if rss < best_rss:
                best, best_rss = (th, j), rss
        if best is None:
            continue
        th, j = best
        singles.append((best_rss, name, th, j, range(len(monos))))
        # a linear inner form (cos(x - y)) grows from the first raw input, whatever fits best alone
        raw = [i for i, (_, e) in enumerate(monos) if e in xs]
        first = [st for st in starts if int(st[1][4]) == raw[0]] if len(raw) > 1 else []
        if first:
            th0, rss0 = _refine(f, _best_starts(first, 1)[0][:4], monos[raw[0]][0][train], yt, free, monos[raw[0]][0])
            singles.append((rss0, name, th0, raw[0], raw[1:]))
        col, mono = monos[j]
        with np.errstate(all="ignore"):
            pred = f(th, col)
        if not np.all(np.isfinite(pred)):
            continue
        shift = (lambda v: sympy.Integer(0)) if fixed else F
        build = lambda th=th, mono=mono, gs=gs, shift=shift: F(th[0]) * gs(F(th[1]) * mono + shift(th[2])) + F(th[3])
        yield Candidate("elementary", build, np.asarray(pred, dtype=np.float64), f"a*{name}(b*m + c) + d, m = {mono}")
    if not singles or min(s[0] for s in singles) <= EPS * float(np.sum(yt**2)):
        return  # exact with one monomial already
    for _, name, th, j, others in singles:
        g, gs, _ = FUNCTIONS[name]
        f2 = lambda th, x, g=g: th[0] * g(th[1] * x[0] + th[4] * x[1] + th[2]) + th[3]
        free = np.array([True, True, name != "exp", True, True])
        best, best_rss = None, math.inf
        for j2 in others:
            col2 = monos[j2][0]
            if j2 == j or clock() > deadline:
                continue
            pair = np.stack([monos[j][0], col2])
            # one Gauss-Newton step from e = 0 starts the new coefficient
            with np.errstate(all="ignore"):
                u = th[1] * pair[0, train] + th[2]
                h = 1e-6 * max(1.0, float(np.max(np.abs(u))))
                slope = th[0] * (g(u + h) - g(u - h)) / (2 * h) * pair[1, train]
                r = yt - (th[0] * g(u) + th[3])
            e = float(slope @ r / (slope @ slope)) if np.isfinite(slope @ slope) and slope @ slope > 0 else 0.0
            theta, rss = _refine(f2, np.array([*th, e]), pair[:, train], yt, free, pair)
            if rss < best_rss:
                best, best_rss = (theta, j2), rss
        if best is None:
            continue
        theta, j2 = best
        pair = np.stack([monos[j][0], monos[j2][0]])
        with np.errstate(all="ignore"):
            pred = f2(theta, pair)
        if not np.all(np.isfinite(pred)):
            continue
        m1, m2 = monos[j][1], monos[j2][1]
        shift = F if name != "exp" else (lambda v: sympy.Integer(0))
        build = lambda t=theta, m1=m1, m2=m2, gs=gs, shift=shift: (
            F(t[0]) * gs(F(t[1]) * m1 + F(t[4]) * m2 + shift(t[2])) + F(t[3]))
        yield Candidate("elementary", build, np.asarray(pred, dtype=np.float64),
                        f"a*{name}(b*m1 + e*m2 + c) + d, m1 = {m1}, m2 = {m2}")
