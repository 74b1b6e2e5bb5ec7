"""Least squares on the data for :func:`discovery.merge.merge`: design matrices of monomials,
subset fits from one blocked QR factorisation, stepwise term selection, the nearest-neighbour
noise level, and snapping of refitted coefficients to clean numbers.

Every routine reads rows in blocks or from a seeded subsample, so a table of a million rows
costs about as much memory as the kept terms' columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sympy
from scipy import optimize

from discovery.symbolic import clean_candidates, text

__all__ = ["Fitter", "design", "stepwise", "noise_level", "snap_refusal", "snap_coefficients", "subsample",
           "to_target", "wmean", "weigh", "row_weights", "column_mean_squares", "SELECT_ROWS"]

SELECT_ROWS = 20_000
"""Training rows term selection reads at most (a seeded subsample of larger tables; a quarter as
many validation rows)."""
_DESIGN_ELEMENTS = 1 << 20  # design-matrix temporaries per row block (8 MB in float64)


def to_target(t: np.ndarray, space: str, sign: float) -> np.ndarray:
    return sign * np.exp(t) if space == "log" else t


def design(V: np.ndarray, table: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Matrix ``(n, K)`` of every monomial ``(v - center)^alpha`` at every row, built in row
    blocks so that the temporaries stay a few megabytes whatever ``n``."""
    K = len(table)
    out = np.empty((len(V), K))
    if K == 0:
        return out
    center = np.asarray(center, dtype=np.float64)
    used = [(i, table[:, i]) for i in range(table.shape[1]) if table[:, i].any()]
    step = max(1, _DESIGN_ELEMENTS // (K + 1))
    for start in range(0, len(V), step):
        block = out[start : start + step]
        block.fill(1.0)
        for i, exponents in used:  # one gather of this variable's powers per term
            dv = V[start : start + step, i] - center[i]
            powers = np.cumprod(np.column_stack([np.ones_like(dv)] + [dv] * int(exponents.max())), axis=1)
            block *= powers[:, exponents]
    return out


def column_mean_squares(D: np.ndarray, rows: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """``wmean(D[rows] ** 2, w)`` read in row blocks (no copy of ``D[rows]``)."""
    step = max(1, _DESIGN_ELEMENTS // max(D.shape[1], 1))
    total = np.zeros(D.shape[1])
    for start in range(0, len(rows), step):
        block = D[rows[start : start + step]]
        weights = None if w is None else w[start : start + step]
        total += np.einsum("ij,ij->j", block, block) if weights is None else np.einsum("i,ij,ij->j", weights, block, block)
    return total / (len(rows) if w is None else w.sum())


def wmean(a: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Mean along rows, weighted by ``w`` when given (``np.mean`` exactly when not)."""
    return np.mean(a, axis=0) if w is None else np.average(a, axis=0, weights=w)


def row_weights(w: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if w is None else w[rows]


def weigh(sw: np.ndarray | None, *arrays: np.ndarray) -> list[np.ndarray]:
    """Weighted least squares as ordinary least squares: every row (of a design matrix or a
    residual vector) times the square root of its weight. Identity when unweighted."""
    if sw is None:
        return list(arrays)
    return [a * (sw[:, None] if a.ndim == 2 else sw) for a in arrays]


class Fitter:
    """Least squares on chosen columns (others fixed), scored by validation RMSE; with row
    weights ``w``, weighted least squares and a weighted validation RMSE.

    In raw space every fit reuses one QR factorisation of the scaled training design
    ``A = Q R``: for free columns ``S`` and fixed ones ``F``, ``||t - A_F c_F - A_S b||^2 =
    ||Q^T t - R_F c_F - R_S b||^2 + ||t - Q Q^T t||^2``, so each of the hundreds of fits of the
    term selection and the snapping solves a ``T x |S|`` problem instead of reading every row,
    with the stability of a QR solve (the normal equations would square the condition number).
    """

    def __init__(self, D, t, y, train, val, space, sign, w=None):
        self.D, self.t, self.y = D, t, y
        self.train, self.val = train, val
        self.space, self.sign = space, sign
        self.w = w
        self.sw = None if w is None else np.sqrt(w[train])  # row factors of the training rows
        self.D_val = D[val]
        scale = np.sqrt(column_mean_squares(D, train, row_weights(w, train)))
        self.scale = np.where(scale > 0, scale, 1.0)
        self._qr = None

    def _factor(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``R``, ``Q^T t`` and the squared norm of the part of ``t`` outside the column space.

        All three are read off the triangular factor of ``[A | t]`` (its last column holds
        ``Q^T t`` above ``||t - Q Q^T t||``, with no cancellation), computed block by block
        (the R factors of row blocks, stacked and factored again), so ``Q`` is never formed
        and the temporaries stay one block of rows."""
        if self._qr is None:
            T = self.D.shape[1]
            step = max(4 * (T + 1), _DESIGN_ELEMENTS // (T + 1))
            parts = []
            for start in range(0, len(self.train), step):
                rows = self.train[start : start + step]
                block = np.column_stack([self.D[rows] / self.scale, self.t[rows]])
                if self.sw is not None:
                    block *= self.sw[start : start + step, None]
                parts.append(np.linalg.qr(block, mode="r"))
            R = np.linalg.qr(np.vstack(parts), mode="r") if len(parts) > 1 else parts[0]
            if R.shape[0] < T + 1:  # fewer rows than columns: the rest of the system is empty
                R = np.vstack([R, np.zeros((T + 1 - R.shape[0], T + 1))])
            self._qr = (R[:T, :T], R[:T, T], float(R[T, T] ** 2))
        return self._qr

    def fit(self, free: Sequence[int], fixed: dict[int, float] | None = None) -> tuple[np.ndarray, float, np.ndarray]:
        """Coefficients (T,), validation RMSE and standard errors (T,) of the free ones."""
        fixed = fixed or {}
        coef = np.zeros(self.D.shape[1])
        for j, v in fixed.items():
            coef[j] = v
        se = np.full(self.D.shape[1], np.nan)
        free = [j for j in free if j not in fixed]
        if self.space == "raw":
            return self._fit_reduced(coef, free, se)
        residual = self.t[self.train] - self.D[self.train] @ coef
        if free:
            A, b = weigh(self.sw, self.D[np.ix_(self.train, free)] / self.scale[free], residual)
            sol, *_ = np.linalg.lstsq(A, b, rcond=None)
            coef[free] = sol / self.scale[free]
            if self.space == "log":
                coef, J, r = self._gauss_newton(coef, free, A)
            else:
                J, r = A, b - A @ sol
            dof = max(len(self.train) - len(free), 1)
            cov = np.linalg.pinv(J.T @ J) * (float(r @ r) / dof)
            se[free] = np.sqrt(np.clip(np.diag(cov), 0, None)) / self.scale[free]
        return coef, self.rmse(coef), se

    def _gauss_newton(self, coef, free, A):
        """Refine a log-space fit so that it minimises squared error in the target's own units
        (the log fit weights small targets too much when the noise is additive): nonlinear least
        squares on the free coefficients, in the scaled units of ``A``, from the log fit. ``A``
        already carries the row weights' square roots; the residuals get them here."""
        target = self.sign * self.y[self.train]
        Dt = self.D[self.train]
        scale = self.scale[free]

        def prediction(s):
            c = coef.copy()
            c[free] = s / scale
            return np.exp(np.clip(Dt @ c, -700, 700))

        sw = 1.0 if self.sw is None else self.sw
        fit = optimize.least_squares(lambda s: sw * (prediction(s) - target), coef[free] * scale,
                                     jac=lambda s: prediction(s)[:, None] * A, method="trf")
        coef = coef.copy()
        coef[free] = fit.x / scale
        pred = prediction(fit.x)
        return coef, pred[:, None] * A, sw * (target - pred)

    def _fit_reduced(self, coef: np.ndarray, free: list[int], se: np.ndarray):
        """:meth:`fit` in raw space from the QR factors (``coef`` holds the fixed values)."""
        R, qt, outside = self._factor()
        rhs = qt - R @ (coef * self.scale)
        if free:
            Rs = R[:, free]
            sol, *_ = np.linalg.lstsq(Rs, rhs, rcond=None)
            coef[free] = sol / self.scale[free]
            r = rhs - Rs @ sol
            dof = max(len(self.train) - len(free), 1)
            cov = np.linalg.pinv(Rs.T @ Rs) * ((float(r @ r) + outside) / dof)
            se[free] = np.sqrt(np.clip(np.diag(cov), 0, None)) / self.scale[free]
        return coef, self.rmse(coef), se

    def rmse(self, coef: np.ndarray) -> float:
        pred = to_target(self.D_val @ coef, self.space, self.sign)
        return float(np.sqrt(wmean((pred - self.y[self.val]) ** 2, row_weights(self.w, self.val))))


def subsample(index: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return index if len(index) <= limit else np.sort(rng.choice(index, limit, replace=False))


def stepwise(fitter, keep, rank, reasons, add_tol, rel_tol, floor):
    """Forward then backward selection on validation RMSE; returns (sorted keep, RMSE)."""
    T = fitter.D.shape[1]
    keep = list(keep)
    _, current, _ = fitter.fit(keep)
    while True:  # forward: restore the pruned term that helps most, while it helps enough
        best = None
        for j in sorted(set(range(T)) - set(keep), key=lambda j: -rank[j]):
            _, r, _ = fitter.fit(keep + [j])
            if r < current * (1 - add_tol) - floor and (best is None or r < best[1]):
                best = (j, r)
        if best is None:
            break
        j, r = best
        reasons[j] = f"restored: forward selection lowers validation RMSE {current:.3g} -> {r:.3g}"
        keep.append(j)
        current = r
    bound = current * (1 + rel_tol) + floor
    removed = True
    while removed:  # backward: drop the least significant term that can go
        removed = False
        for j in sorted(keep, key=lambda j: rank[j]):
            rest = [k for k in keep if k != j]
            _, r, _ = fitter.fit(rest)
            if r <= bound:
                reasons[j] = (
                    f"pruned: backward elimination, validation RMSE {r:.3g} without it stays within "
                    f"{rel_tol:.0%} of {current:.3g}"
                )
                keep, removed = rest, True
                break
    _, current, _ = fitter.fit(keep)
    return sorted(keep), current


def noise_level(V: np.ndarray, residual: np.ndarray, rows: np.ndarray | None = None, seed: int = 0) -> tuple[float, float]:
    """Noise level of the data and how much structure a fit left, from nearest-neighbour pairs.

    Each row is paired with its nearest other row (variables scaled to unit spread). Half the
    mean squared difference of the two residuals estimates the noise variance ``sigma**2``
    whatever smooth error the fit made (it cancels between close neighbours, and replicates
    give pure noise). A fit accurate to the noise leaves residuals no larger than that:
    ``lack_of_fit`` is ``mean(r**2) - sigma**2`` in standard errors: the mean over rows of
    ``r_i**2 - (r_i - r_j)**2 / 2``, whose variance under pure noise equals that of
    ``(r_i - r_j)**2 / 2`` (widened by sqrt(2) because pairs repeat). About 0 for noise alone
    (any symmetric distribution), large for a fit that misses part of the law.

    Parameters
    ----------
    V : (n, p) array
        The fit's variables at every row.
    residual : (n,) array
        Target minus prediction, in the target's units.
    rows : row indices, optional
        Rows to use (default all; at most 20,000 are drawn, seeded).
    seed : int

    Returns
    -------
    sigma, lack_of_fit : float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> V = rng.uniform(-1, 1, (2000, 2))
    >>> sigma, z = noise_level(V, 0.1 * rng.standard_normal(2000))
    >>> round(sigma, 2), abs(z) < 3
    (0.1, True)
    >>> noise_level(V, V[:, 0] ** 2 - 1 / 3 + 0.01 * rng.standard_normal(2000))[1] > 3
    True
    """
    from scipy.spatial import cKDTree

    rows = np.arange(len(V)) if rows is None else np.asarray(rows)
    rows = subsample(rows, SELECT_ROWS, np.random.default_rng(seed + 2))
    Z = np.asarray(V, dtype=np.float64)[rows]
    spread = Z.std(axis=0)
    Z = Z / np.where(spread > 0, spread, 1.0)
    r = np.asarray(residual, dtype=np.float64)[rows]
    _, idx = cKDTree(Z).query(Z, k=2)
    own = np.arange(len(Z))
    neighbour = np.where(idx[:, 0] == own, idx[:, 1], idx[:, 0])  # a replicate may come first
    half_sq = 0.5 * (r - r[neighbour]) ** 2
    sigma = float(np.sqrt(np.mean(half_sq)))
    excess = r**2 - half_sq
    # Under pure noise var(excess) equals var(half_sq) for any symmetric noise distribution;
    # half_sq is measured from differences that the fit's smooth error hardly enters.
    se = float(np.std(half_sq)) * math.sqrt(2.0 / len(excess))
    lack = float(np.mean(excess)) / se if se > 0 else (0.0 if np.mean(excess) <= 0 else math.inf)
    return sigma, lack


_LACK_OF_FIT_Z = 3.0  # one-sided 3 standard errors: a fit accurate to the noise is refused < 1 time in 700


def snap_refusal(fitter, refit, V, rows, floor, seed) -> str:
    """Why the refit must not be snapped (its residuals hold more than noise), or ``""``."""
    residual = fitter.y - to_target(fitter.D @ refit, fitter.space, fitter.sign)
    if fitter.w is not None:  # inverse-variance reading: sqrt(w) * residual has one noise level
        rows = rows[fitter.w[rows] > 0]
        residual = residual * np.sqrt(fitter.w / np.mean(fitter.w[rows]))  # still in y's units
    rms = float(np.sqrt(np.mean(residual[rows] ** 2)))
    if rms <= floor:
        return ""  # exact to rounding: nothing but the law is left to explain
    sigma, lack = noise_level(V, residual, rows, seed)
    if lack <= _LACK_OF_FIT_Z:
        return ""
    return (
        f"not snapped: the refit is not accurate to the noise level (RMS residual {rms:.3g}, noise level "
        f"{sigma:.3g} from nearest-neighbour differences, lack of fit {lack:.1f} standard errors > "
        f"{_LACK_OF_FIT_Z:g}); its constants are fitted values, not exact ones"
    )


def snap_coefficients(fitter, keep, table, refit, se, refit_rmse, affine_log, rel_tol, floor, snap_z, snap_max_rel):
    """Snap kept coefficients one by one (others refit); returns values, SymPy numbers, log."""
    degrees = table.sum(axis=1)
    rms = np.sqrt(wmean(fitter.D**2, fitter.w))
    exponents = [j for j in keep if fitter.space == "log" and degrees[j] == 1]
    constant = [j for j in keep if degrees[j] == 0]
    others = sorted((j for j in keep if j not in exponents and j not in constant), key=lambda j: -abs(refit[j]) * rms[j])
    bound = refit_rmse * (1 + rel_tol) + floor
    fixed: dict[int, float] = {}
    numbers: dict[int, sympy.Expr] = {}
    log: dict[int, str] = {}
    coef, cur_se = refit, se
    progress = True
    while progress:  # a snap refits the others, which may bring them within reach: repeat
        progress = False
        for j in exponents + others + constant:
            if j in fixed:
                continue
            v, s = float(coef[j]), float(cur_se[j]) if np.isfinite(cur_se[j]) else 0.0
            prefactor = affine_log and degrees[j] == 0
            if prefactor:  # snap the power law's prefactor exp(b), not b
                v, s = math.exp(v), math.exp(v) * s
            kind = "exponent" if j in exponents else "coefficient"
            tol = min(max(snap_z * s, 1e-9 * abs(v)), snap_max_rel * abs(v))
            for f, e, _ in clean_candidates(v, kind, tol):
                if abs(f - v) > tol:
                    continue
                value, number = (math.log(f), sympy.log(e, evaluate=False)) if prefactor else (f, e)
                trial, r, trial_se = fitter.fit(keep, {**fixed, j: value})
                if r <= bound:
                    fixed[j], numbers[j] = value, number
                    log[j] = f"{v:.6g} -> {text(e, precision=6)}" + (" (prefactor)" if prefactor else "")
                    coef, cur_se, progress = trial, trial_se, True
                    break
    return coef, numbers, log
