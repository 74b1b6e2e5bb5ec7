"""Families linear in their constants after a change of variables: sparse polynomials in
transformed inputs for a transformed target (the result is the inverse transform of the
polynomial), and rational functions ``P/Q`` by linearised then nonlinear least squares.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Callable, Iterator

import numpy as np
import sympy
from scipy.optimize import least_squares

from discovery.closedform.fitting import EPS, Candidate
from discovery.engine.polynomial import monomials

# name -> (forward on a column, SymPy form, column is in the domain)
INPUT_TRANSFORMS: dict[str, tuple[Callable, Callable, Callable]] = {
    "x": (lambda x: x, lambda s: s, lambda x: True),
    "1/x": (lambda x: 1 / x, lambda s: 1 / s, lambda x: np.all(x != 0) and (np.all(x > 0) or np.all(x < 0))),
    "log x": (np.log, sympy.log, lambda x: np.all(x > 0)),
    "sqrt x": (np.sqrt, sympy.sqrt, lambda x: np.all(x >= 0)),
    "x^2": (np.square, lambda s: s**2, lambda x: True),
    "exp x": (np.exp, sympy.exp, lambda x: np.max(np.abs(x)) < 50),
    # angles in radians (within one turn; beyond, sin x of a measured column is mostly aliasing):
    # laws such as Snell's sin(y) = n sin(x) are polynomial in sin x, not in x
    "sin x": (np.sin, sympy.sin, lambda x: np.max(np.abs(x)) <= 2 * math.pi),
}


def target_transforms(y: np.ndarray) -> dict[str, tuple[Callable, Callable, Callable]]:
    """Target transforms defined on ``y``: name -> (forward, inverse on a SymPy polynomial,
    inverse on NumPy values). Sign-dependent ones need a target of one sign; ``sin y`` needs
    ``|y| < pi/2`` (where ``asin`` inverts it)."""
    out: dict[str, tuple[Callable, Callable, Callable]] = {"y": (lambda v: v, lambda p: p, lambda p: p)}
    s = 1.0 if np.all(y > 0) else -1.0 if np.all(y < 0) else 0.0
    if s:
        si = sympy.Integer(int(s))
        out["y^2"] = (np.square, lambda p: si * sympy.sqrt(p), lambda p: s * np.sqrt(p))
        out["sqrt|y|"] = (lambda v: np.sqrt(s * v), lambda p: si * p**2, lambda p: s * p**2)
        out["1/y"] = (lambda v: 1 / v, lambda p: 1 / p, lambda p: 1 / p)
        # y = P^(-1/2): Lorentz factors and other inverse square roots, 1/y^2 = 1 - v^2/c^2
        out["1/y^2"] = (lambda v: 1 / v**2, lambda p: si / sympy.sqrt(p), lambda p: s / np.sqrt(p))
        # y = P^(3/2) and P^(-3/2): Kepler's periods, fields on a loop's axis (R^2 + z^2)^(-3/2)
        three_halves = sympy.Rational(3, 2)
        out["|y|^(2/3)"] = (lambda v: np.cbrt(s * v) ** 2, lambda p: si * p**three_halves,
                            lambda p: s * p**1.5)
        out["|y|^(-2/3)"] = (lambda v: np.cbrt(s * v) ** -2, lambda p: si * p**-three_halves,
                             lambda p: s * p**-1.5)
        out["log|y|"] = (lambda v: np.log(s * v), lambda p: si * sympy.exp(p), lambda p: s * np.exp(p))
    if np.max(np.abs(y)) < 30:
        out["exp y"] = (np.exp, sympy.log, np.log)
    if np.max(np.abs(y)) <= 1:
        out["arcsin y"] = (np.arcsin, sympy.sin, np.sin)
    if np.max(np.abs(y)) < math.pi / 2:  # y = asin(P): an angle whose sine is polynomial
        out["sin y"] = (np.sin, sympy.asin, np.arcsin)
    return out


def input_combinations(X: np.ndarray) -> list[tuple[str, ...]]:
    """Per-column transforms to try: every combination for up to two inputs; for more, at most
    one transformed column or the same transform on all (the full product grows as 6**k)."""
    k = X.shape[1]
    ok = [[name for name, (_, _, dom) in INPUT_TRANSFORMS.items() if dom(X[:, j])] for j in range(k)]
    if k <= 2:
        return list(itertools.product(*ok))
    combos = {tuple("x" for _ in range(k))}
    for j in range(k):
        for t in ok[j]:
            combos.add(tuple(t if i == j else "x" for i in range(k)))
    for t in INPUT_TRANSFORMS:
        if all(t in o for o in ok):
            combos.add(tuple(t for _ in range(k)))
    return sorted(combos)


# y^2 polynomial in the raw inputs is tried up to this degree: the square of a Euclidean norm of
# products of inputs (energy and momentum, impedances) has terms of degree 4 to 6
QUADRATIC_FORM_DEGREE = 6
_SELECTION_ROWS = 400


def max_degree(k: int) -> int:
    """Highest total degree tried: terms grow as C(k + d, d), and rows must outnumber them."""
    return {1: 5, 2: 3, 3: 2}.get(k, 2)


def _bic(rss: float, n: int, m: int, floor: float) -> float:
    return n * math.log(max(rss / n, floor)) + m * math.log(n)


# target transforms whose inverse is a power s*p**r: a factor of P comes out as a factor of y
_POWERS = {"y^2": 0.5, "sqrt|y|": 2.0, "1/y": -1.0, "1/y^2": -0.5, "|y|^(2/3)": 1.5, "|y|^(-2/3)": -1.5}


def inverted(tname: str, inv_sym: Callable, terms: list, coef) -> sympy.Expr:
    """``T^-1(sum coef * terms)`` for the transform ``tname`` whose SymPy inverse (from
    :func:`target_transforms`) is ``inv_sym``. Where the
    inverse is a power and ``P`` has a constant term ``a``, ``P`` is written ``a (1 + ...)`` and
    ``a**r`` taken out: ``1/sqrt(9 - 9 u^2)`` reads ``(1/3)/sqrt(1 - u^2)``, whose constants
    snap, where ``1/9`` inside the root does not."""
    coef = [float(c) for c in coef]
    a = next((c for c, t in zip(coef, terms) if t == 1), 0.0)
    r = _POWERS.get(tname)
    if r is None or a == 0.0 or (a < 0 and r != -1.0):
        return inv_sym(sympy.Add(*[sympy.Float(c) * t for c, t in zip(coef, terms)]))
    inner = sympy.Add(*[(sympy.Integer(1) if t == 1 else sympy.Float(c / a)) * t for c, t in zip(coef, terms)])
    return sympy.Float(abs(a) ** r * (1.0 if a > 0 else -1.0)) * inv_sym(inner)


def sparse_lstsq(A: np.ndarray, t: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Least squares, then backward elimination of the least significant column while the
    Bayesian information criterion improves. Returns (kept column indices, coefficients)."""
    n = len(t)
    keep = np.arange(A.shape[1])
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    As = A / scale

    def solve(cols):
        coef, *_ = np.linalg.lstsq(As[:, cols], t, rcond=None)
        rss = float(np.sum((As[:, cols] @ coef - t) ** 2))
        return coef, rss

    coef, rss = solve(keep)
    best = _bic(rss, n, len(keep), floor)
    while len(keep) > 1:
        # standard errors from the normal matrix; the smallest |t| is the first to go
        with np.errstate(all="ignore"):
            cov = np.linalg.pinv(As[:, keep].T @ As[:, keep])
            tstat = np.abs(coef) / np.sqrt(np.maximum(np.diag(cov), 1e-300))
        drop = int(np.argmin(tstat))
        trial = np.delete(keep, drop)
        c2, rss2 = solve(trial)
        b2 = _bic(rss2, n, len(trial), floor)
        if b2 > best:
            break
        keep, coef, best = trial, c2, b2
    return keep, coef / scale[keep]


def transformed_polynomials(X, y, xs, train, deadline, clock) -> Iterator[Candidate]:
    """``T^-1(P(h_1(x_1), ..., h_k(x_k)))`` for every target transform ``T``, input transforms
    ``h_j`` and total degree up to :func:`max_degree`, with sparse ``P``."""
    k = X.shape[1]
    for tname, (fwd, inv_sym, inv_np) in target_transforms(y[train]).items():
        with np.errstate(all="ignore"):
            t = fwd(y)
        if not np.all(np.isfinite(t[train])):
            continue
        floor = EPS * float(np.mean(t[train] ** 2)) + 1e-300
        for combo in input_combinations(X):
            if clock() > deadline:
                return
            with np.errstate(all="ignore"):
                Z = np.column_stack([INPUT_TRANSFORMS[h][0](X[:, j]) for j, h in enumerate(combo)])
            if not np.all(np.isfinite(Z)):
                continue
            zs = [INPUT_TRANSFORMS[h][1](s) for h, s in zip(combo, xs)]
            top = max_degree(k)
            if tname == "y^2" and set(combo) == {"x"} and k > 1:
                top = QUADRATIC_FORM_DEGREE  # a sum of squared terms under a root: sqrt(p^2 c^2 + m^2 c^4)
            for degree in range(1, top + 1):
                powers = monomials(k, degree)
                if len(powers) >= len(train) // 2:
                    break
                A = np.prod(Z[:, None, :] ** powers[None, :, :], axis=2)
                if degree > max_degree(k):
                    # up to 84 terms: the elimination reads a subsample, the kept terms all rows
                    keep, _ = sparse_lstsq(A[train[:_SELECTION_ROWS]], t[train[:_SELECTION_ROWS]], floor)
                    coef = np.linalg.lstsq(A[train][:, keep], t[train], rcond=None)[0]
                else:
                    keep, coef = sparse_lstsq(A[train], t[train], floor)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pred = inv_np(A[:, keep] @ coef)
                if not np.all(np.isfinite(pred[train])):
                    continue

                def build(keep=keep, coef=coef, zs=zs, tname=tname, inv_sym=inv_sym, powers=powers):
                    terms = [sympy.Mul(*[z**int(e) for z, e in zip(zs, powers[i])]) for i in keep]
                    return inverted(tname, inv_sym, terms, coef)

                label = f"polynomial (degree {degree}) in {', '.join(combo)} for {tname}"
                yield Candidate("transformed polynomial" if (tname, set(combo)) != ("y", {"x"}) else "polynomial",
                                build, np.asarray(pred, dtype=np.float64), label)


def _rational_fit(Pm, Qm, y, train, sparse: bool, base=None):
    """P/Q with Q = base + Qm theta (``base`` a column of ones unless given: Q's constant 1):
    linearised least squares ``y base = P - y (Q - base)`` (with ``sparse``, terms eliminated
    backwards by BIC), then Levenberg-Marquardt on ``P/Q - y`` over the kept terms. Dropped
    terms are exactly 0."""
    base = np.ones(len(y)) if base is None else base
    A = np.column_stack([Pm[train], -y[train, None] * Qm[train]])
    target = y[train] * base[train]
    if sparse:
        keep, coef = sparse_lstsq(A, target, EPS * float(np.mean(target**2)) + 1e-300)
    else:
        scale = np.linalg.norm(A, axis=0)  # raw powers of large inputs differ by many decades
        scale[scale == 0] = 1.0
        coef = np.linalg.lstsq(A / scale, target, rcond=None)[0] / scale
        keep = np.arange(A.shape[1])
    theta = np.zeros(A.shape[1])
    theta[keep] = coef
    npp = Pm.shape[1]

    def full(t):
        th = np.zeros(A.shape[1])
        th[keep] = t
        return th

    def parts(th, rows):
        return Pm[rows] @ th[:npp], base[rows] + Qm[rows] @ th[npp:]

    def residual(t):
        P, Q = parts(full(t), train)
        return P / Q - y[train]

    def jac(t):
        P, Q = parts(full(t), train)
        return np.column_stack([Pm[train] / Q[:, None], -(P / Q**2)[:, None] * Qm[train]])[:, keep]

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = residual(theta[keep])
        if np.all(np.isfinite(r0)):
            try:
                sol = least_squares(residual, theta[keep], jac=jac, method="lm", xtol=1e-12, ftol=1e-12,
                                    gtol=1e-12, max_nfev=30 * (len(keep) + 1))
                if np.all(np.isfinite(sol.fun)) and np.sum(sol.fun**2) <= np.sum(r0**2):
                    theta = full(sol.x)
            except (ValueError, FloatingPointError):
                pass
    return theta


def rationals(X, y, xs, train, deadline, clock) -> Iterator[Candidate]:
    """``P/Q`` in the raw inputs with no pole on the rows (Q keeps one sign), and for a target
    of one sign ``s sqrt(P/Q)`` (``y^2`` rational: Doppler factors ``sqrt((1+u)/(1-u))``).

    Q is normalised by its constant (``Q(0) = 1``) and, with two or more inputs, also by each
    input's linear coefficient (``Q = x_j + ...``): a law of degree 0 in its inputs, such as
    ``(c + v)/(c - w)``, has a denominator without constant that ``Q(0) = 1`` cannot express."""
    k = X.shape[1]
    top = {1: 3, 2: 2}.get(k, 2)
    s = 1.0 if np.all(y[train] > 0) else -1.0 if np.all(y[train] < 0) else 0.0
    targets = [("", y, lambda v: v, lambda P, Q: P / Q)]
    if s:
        si = sympy.Integer(int(s))
        # P/Q > 0 on the rows and Q keeps one sign, so sqrt(P/Q) = sqrt(+-P)/sqrt(+-Q) there
        targets.append(("square root of ", y**2, lambda v: s * np.sqrt(v),
                        lambda P, Q: si * sympy.sqrt(P) / sympy.sqrt(Q)))
    linear = [tuple(int(i == j) for i in range(k)) for j in range(k)] if k >= 2 else []
    for label, t, back, back_sym in targets:
        for q in range(1, top + 1):
            for p in range(0 if not label else 1, top + 1):
                for pivot in [None, *linear]:
                    if clock() > deadline:
                        return
                    yield from _rational_candidates(X, t, xs, train, p, q, pivot, label, back, back_sym)


def _rational_candidates(X, t, xs, train, p, q, pivot, label, back, back_sym) -> Iterator[Candidate]:
    """Dense and sparse ``P/Q`` of degrees ``p``, ``q`` fitted to ``t``; ``pivot``: the exponents
    of Q's monomial whose coefficient is 1 (``None``: the constant)."""
    k = X.shape[1]
    pp, qp = monomials(k, p), monomials(k, q)
    key = (0,) * k if pivot is None else tuple(pivot)
    rest = np.array([e for e in qp if tuple(e) != key]).reshape(-1, k)
    if len(pp) + len(rest) >= len(train) // 2:
        return
    Pm = np.prod(X[:, None, :] ** pp[None], axis=2)
    Qm = np.prod(X[:, None, :] ** rest[None], axis=2)
    base = np.prod(X ** np.asarray(key, dtype=np.float64)[None], axis=1)
    for sparse in (False, True):
        theta = _rational_fit(Pm, Qm, t, train, sparse, base)
        Q = base + Qm @ theta[len(pp):]
        if not (np.all(Q > 0) or np.all(Q < 0)):
            continue
        if label and not np.any(theta[: len(pp)][pp.sum(axis=1) > 0]):
            continue  # s sqrt(c/Q) is the transformed polynomial for 1/y^2 already
        with np.errstate(all="ignore"):
            pred = back((Pm @ theta[: len(pp)]) / Q)
        if not np.all(np.isfinite(pred[train])):
            continue

        flip = -1 if np.all(Q < 0) else 1

        def build(theta=theta, pp=pp, rest=rest, key=key, flip=flip):
            mono = lambda e: sympy.Mul(*[v**int(a) for v, a in zip(xs, e)])
            P = sympy.Add(*[sympy.Float(float(c)) * mono(e) for c, e in zip(theta[: len(pp)], pp) if c != 0])
            Qs = mono(key) + sympy.Add(*[sympy.Float(float(c)) * mono(e)
                                          for c, e in zip(theta[len(pp):], rest) if c != 0])
            return back_sym(flip * P, flip * Qs)

        norm = "" if pivot is None else f", Q normalised by its {xs[key.index(1)]} coefficient"
        yield Candidate("rational", build, np.asarray(pred, dtype=np.float64),
                        f"{label}{'sparse ' if sparse else ''}rational [{p}/{q}]{norm}")


SHIFTED = "shifted transformed polynomial"
# target transforms worth a shift: those that bend (y and exp y of y - b are y's own polynomials)
_SHIFTED = ("y^2", "sqrt|y|", "1/y", "1/y^2", "|y|^(2/3)", "|y|^(-2/3)", "log|y|")
_SHIFT_GRID = np.linspace(-3.0, 3.0, 49)  # b at 10**q times y's range beyond its end
_SCAN_ROWS = 300  # training rows the scan for b reads (evenly spaced); the candidate is fitted on all


def _relative_rss(A: np.ndarray, t: np.ndarray) -> float:
    """Residual sum of squares of ``t`` on ``A`` over ``t``'s own: what the polynomial leaves."""
    if not np.all(np.isfinite(t)):
        return math.inf
    centred = float(np.sum((t - t.mean()) ** 2))
    if centred <= 0.0:
        return math.inf
    coef, *_ = np.linalg.lstsq(A, t, rcond=None)
    return float(np.sum((A @ coef - t) ** 2)) / centred


def shifted_polynomials(X, y, xs, train, deadline, clock) -> Iterator[Candidate]:
    """One input: ``y = b + T^-1(P(h(x)))`` with a fitted offset ``b`` beyond the range of ``y``
    (``P`` of degree 1 or 2, sparse). A piece cut from a law keeps the law's additive constant:
    ``m c^2 (1/sqrt(1 - u^2) - 1)`` is ``1/y^2`` polynomial only after ``y + m c^2``.

    ``b`` is scanned as ``10**q`` times the range of ``y`` below its minimum and above its
    maximum (``q`` in [-3, 3]), then refined; an optimum at the far end of the scan is the
    unshifted polynomial's, which :func:`transformed_polynomials` already proposes. The scan reads
    ``_SCAN_ROWS`` of the training rows (the optimum of a smooth one-parameter cost needs no
    more); the candidate's polynomial is then fitted on all of them, and its constants, ``b``
    among them, are refitted with every other candidate's."""
    if X.shape[1] != 1:
        return
    from scipy.optimize import minimize_scalar

    scan_rows = train[np.unique(np.linspace(0, len(train) - 1, min(len(train), _SCAN_ROWS)).astype(int))]
    yt = y[scan_rows]
    lo, hi = float(y.min()), float(y.max())  # every row's y - b keeps one sign
    span = hi - lo
    if not span > 0:
        return
    ok = [h for h, (_, _, dom) in INPUT_TRANSFORMS.items() if dom(X[:, 0])]
    for side in (-1.0, 1.0):
        edge = lo if side < 0 else hi
        shift = lambda q: edge + side * span * 10.0**q
        names = target_transforms(yt - shift(0.0))
        for tname in _SHIFTED:
            if tname not in names:
                continue
            fwd = names[tname][0]
            for h in ok:
                if clock() > deadline:
                    return
                with np.errstate(all="ignore"):
                    z = INPUT_TRANSFORMS[h][0](X[:, 0])
                if not np.all(np.isfinite(z)):
                    continue
                for degree in (1, 2):
                    A = np.column_stack([z**e for e in range(degree + 1)])
                    with np.errstate(all="ignore"):
                        cost = lambda q: _relative_rss(A[scan_rows], fwd(yt - shift(q)))
                        scan = [cost(q) for q in _SHIFT_GRID]
                        best = int(np.argmin(scan))
                        if best == len(_SHIFT_GRID) - 1 or not math.isfinite(scan[best]):
                            continue  # no finite optimum short of the unshifted fit
                        a = _SHIFT_GRID[max(best - 1, 0)]
                        q = minimize_scalar(cost, bounds=(a, _SHIFT_GRID[best + 1]), method="bounded",
                                            options={"xatol": 1e-10}).x
                    b = shift(q)
                    yield from _shifted_candidate(X, y, xs, train, A, b, tname, h, degree)


def _shifted_candidate(X, y, xs, train, A, b, tname, h, degree) -> Iterator[Candidate]:
    fwd, inv_sym, inv_np = target_transforms(y[train] - b)[tname]
    with np.errstate(all="ignore"):
        t = fwd(y - b)
    if not np.all(np.isfinite(t[train])):
        return
    keep, coef = sparse_lstsq(A[train], t[train], EPS * float(np.mean(t[train] ** 2)) + 1e-300)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = b + inv_np(A[:, keep] @ coef)
    if not np.all(np.isfinite(pred[train])):
        return
    z = INPUT_TRANSFORMS[h][1](xs[0])

    def build():
        return sympy.Float(b) + inverted(tname, inv_sym, [z ** int(i) for i in keep], coef)

    yield Candidate(SHIFTED, build, np.asarray(pred, dtype=np.float64),
                    f"polynomial (degree {degree}) in {h} for {tname} of y - b (b = {b:.6g})")
