"""From many local Taylor polynomials to one global formula.

The local polynomials of an ensemble, taken at ``B`` reference points by ``M`` members, are

1. re-centred exactly to one common centre (the origin when it lies inside or near the data's
   bounding box, since a formula centred at 0 is what people read; otherwise the data mean),
   each point's member median first, so that noise in high-order coefficients is not amplified
   member by member;
2. reduced to a consensus per coefficient (median over points, with a trimmed mean beside it)
   and a robust spread (scaled MAD over every point and member);
3. pruned: a term is dropped when its consensus is not distinguishable from zero against its
   spread, or when its typical contribution on the data is small against the validation error
   of a full least-squares fit;
4. refit on the data by least squares, then tidied by stepwise selection on validation RMSE:
   forward, a dropped term comes back when it lowers the validation RMSE by more than
   ``add_tol``; backward, kept terms (least significant consensus first) go when removing them
   raises it by no more than ``rel_tol``;
5. snapped, but only when the refit is accurate to the noise level: its residuals must be no
   larger than the noise estimated from nearest-neighbour differences (:func:`noise_level`);
   otherwise the constants are approximations of a law the terms do not hold, and the notes
   say so. Each coefficient is then tried against clean numbers (integers, short decimals,
   simple fractions; exponents in log space against multiples of 1/2, 1/3 and 1/4; ``sqrt(n)``
   and ``k*pi/q`` only when known to a relative precision where such a match is rarer than 1 in
   1000), simplest first, within ``snap_z`` standard errors of its fitted value, with the other
   free coefficients refit; a snap is kept only when the validation RMSE stays within
   ``rel_tol`` of the unsnapped fit. Every snap is listed in the notes.

The result is a :class:`MergedFormula` with the SymPy expression, a terms table with every
decision and its reason, validation scores, and ``predict``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sympy
import torch
from scipy import optimize, stats
from sklearn.metrics import r2_score

from discovery.engine.polynomial import shift_coefficients
from discovery.errors import DataError
from discovery._rows import other_rows, sorted_rows
from discovery.symbolic import (
    SPACES,
    clean_candidates,
    clean_number,
    latex,
    make_symbols,
    polynomial_to_sympy,
    text,
)

__all__ = ["merge", "MergedFormula", "clean_number", "choose_center", "noise_level"]

_SELECT_ROWS = 20_000
_DESIGN_ELEMENTS = 1 << 20  # design-matrix temporaries per row block (8 MB in float64)


@dataclass
class MergedFormula:
    """One global formula merged from local polynomials.

    Attributes
    ----------
    expression : sympy.Expr
        The formula in the variables' names (original units).
    terms : pandas.DataFrame
        One row per candidate monomial: ``term``, ``exponents``, ``degree``, ``consensus``
        (median), ``trimmed_mean``, ``spread`` (scaled MAD), ``significance``
        (``|consensus| / spread``), ``contribution`` (``|consensus|`` times the monomial's RMS on
        the data), ``refit`` (least-squares value, NaN when pruned), ``coefficient`` (final,
        0 when pruned), ``snapped`` (e.g. ``"0.49987 -> 0.5"``), ``kept``, ``reason``.
    center : (p,) array
        Common centre of the polynomial, in its variables (``x``, or ``log x`` in log space).
    center_reason : str
    space : {"raw", "log"}
    sign : float
        Sign of the target in log space (``y = sign * exp(P(log x))``).
    names : list of str
    monomials : (K, p) int array
        Exponents of the kept terms.
    coefficients : (K,) array
        Final coefficients of the kept terms (after snapping).
    refit_coefficients : (K,) array
        Least-squares coefficients of the kept terms before snapping.
    val_rmse, val_r2 : float
        Validation RMSE and R^2 of the final formula, in the target's original units.
    refit_val_rmse : float
        Validation RMSE before snapping.
    consensus_val_rmse : float
        Validation RMSE of the consensus polynomial on the kept terms, before any refit.
    full_val_rmse : float
        Validation RMSE of a least-squares fit on every candidate term (the reference error).
    notes : list of str
        Decisions worth telling the user (centre, spread source, snaps).
    rows : dict
        Rows each step used: ``selection_train`` and ``selection_validation`` (term selection,
        a seeded sample of a very large table), ``refit`` and ``validation`` (every row).
    """

    expression: sympy.Expr
    terms: pd.DataFrame
    center: np.ndarray
    center_reason: str
    space: str
    sign: float
    names: list[str]
    monomials: np.ndarray
    coefficients: np.ndarray
    refit_coefficients: np.ndarray
    val_rmse: float
    val_r2: float
    refit_val_rmse: float
    consensus_val_rmse: float
    full_val_rmse: float
    notes: list[str] = field(default_factory=list)
    rows: dict = field(default_factory=dict)

    @property
    def complexity(self) -> int:
        """Number of kept terms."""
        return int(len(self.monomials))

    def sympy(self) -> sympy.Expr:
        """The formula as a SymPy expression."""
        return self.expression

    def latex(self, precision: int = 3) -> str:
        """LaTeX of the formula with ``precision`` significant digits."""
        return latex(self.expression, precision=precision)

    def text(self, precision: int = 3) -> str:
        """Plain text of the formula with ``precision`` significant digits."""
        return text(self.expression, precision=precision)

    def to_dict(self, precision: int = 6) -> dict:
        """JSON-ready summary: formula (text and LaTeX), centre, scores, notes and terms."""
        table = self.terms.copy()
        table["exponents"] = [list(e) for e in table["exponents"]]
        table["degree"] = table["degree"].astype(int)
        table = table.astype(object).where(pd.notna(table), None)
        return {
            "formula": self.text(precision),
            "latex": self.latex(precision),
            "sympy": sympy.srepr(self.expression),
            "space": self.space,
            "sign": self.sign,
            "names": list(self.names),
            "center": [float(v) for v in self.center],
            "center_reason": self.center_reason,
            "complexity": self.complexity,
            "val_rmse": self.val_rmse,
            "val_r2": self.val_r2,
            "refit_val_rmse": self.refit_val_rmse,
            "consensus_val_rmse": self.consensus_val_rmse,
            "full_val_rmse": self.full_val_rmse,
            "notes": list(self.notes),
            "terms": table.to_dict(orient="records"),
        }

    def predict(self, X) -> np.ndarray:
        """Evaluate the formula on rows ``X`` (n, p) in original units -> (n,)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != len(self.names):
            raise ValueError(
                f"MergedFormula.predict(X): X has {X.shape[1]} columns, the formula has {len(self.names)} "
                f"variables ({', '.join(self.names)}); pass them in that order"
            )
        V = _variables(X, self.space, "MergedFormula.predict(X)")
        if len(self.monomials) == 0:
            t = np.zeros(len(X))
        else:
            t = _design(V, self.monomials, self.center) @ self.coefficients
        return _to_target(t, self.space, self.sign)


def choose_center(V: np.ndarray) -> tuple[np.ndarray, str]:
    """The origin when it lies inside or near the bounding box of ``V``, else the mean.

    "Near" means within one box width of the box along every variable, so that re-centring
    does not carry high-order coefficients much farther than the data extend.

    Examples
    --------
    >>> import numpy as np
    >>> choose_center(np.array([[1.0, 2.0], [5.0, 4.0]]))[0].tolist()
    [0.0, 0.0]
    >>> choose_center(np.array([[100.0], [110.0]]))[0].tolist()
    [105.0]
    """
    lo, hi = V.min(axis=0), V.max(axis=0)
    width = hi - lo
    near = (lo - width <= 0) & (0 <= hi + width)
    if np.all(near):
        return np.zeros(V.shape[1]), "origin (0 lies inside or within one box width of the data)"
    far = [i for i in range(V.shape[1]) if not near[i]]
    return V.mean(axis=0), f"data mean (0 is far from the data along variable(s) {far})"


# --------------------------------------------------------------------------------------------
# Numerics on the data


def _variables(X: np.ndarray, space: str, call: str) -> np.ndarray:
    if space == "log":
        if np.any(X <= 0):
            raise DataError(f"{call}: log space needs positive variables; X has values <= 0, use space='raw'")
        return np.log(X)
    return X


def _to_target(t: np.ndarray, space: str, sign: float) -> np.ndarray:
    return sign * np.exp(t) if space == "log" else t


def _design(V: np.ndarray, table: np.ndarray, center: np.ndarray) -> np.ndarray:
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


def _column_mean_squares(D: np.ndarray, rows: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """``_wmean(D[rows] ** 2, w)`` read in row blocks (no copy of ``D[rows]``)."""
    step = max(1, _DESIGN_ELEMENTS // max(D.shape[1], 1))
    total = np.zeros(D.shape[1])
    for start in range(0, len(rows), step):
        block = D[rows[start : start + step]]
        weights = None if w is None else w[start : start + step]
        total += np.einsum("ij,ij->j", block, block) if weights is None else np.einsum("i,ij,ij->j", weights, block, block)
    return total / (len(rows) if w is None else w.sum())


def _wmean(a: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Mean along rows, weighted by ``w`` when given (``np.mean`` exactly when not)."""
    return np.mean(a, axis=0) if w is None else np.average(a, axis=0, weights=w)


def _rows(w: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if w is None else w[rows]


def _weigh(sw: np.ndarray | None, *arrays: np.ndarray) -> list[np.ndarray]:
    """Weighted least squares as ordinary least squares: every row (of a design matrix or a
    residual vector) times the square root of its weight. Identity when unweighted."""
    if sw is None:
        return list(arrays)
    return [a * (sw[:, None] if a.ndim == 2 else sw) for a in arrays]


class _Fitter:
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
        scale = np.sqrt(_column_mean_squares(D, train, _rows(w, train)))
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
            A, b = _weigh(self.sw, self.D[np.ix_(self.train, free)] / self.scale[free], residual)
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
        pred = _to_target(self.D_val @ coef, self.space, self.sign)
        return float(np.sqrt(_wmean((pred - self.y[self.val]) ** 2, _rows(self.w, self.val))))


def _as_array(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# The merge


def merge(
    monomials: np.ndarray,
    coefficients,
    centers,
    X,
    y,
    *,
    names: Sequence[str] | None = None,
    val_index: Sequence[int] | None = None,
    space: str = "raw",
    sign: float | None = None,
    center: str | Sequence[float] = "auto",
    significance: float = 2.0,
    contribution: float = 0.5,
    rel_tol: float = 0.01,
    add_tol: float = 0.02,
    snap: bool = True,
    snap_z: float = 4.0,
    snap_max_rel: float = 0.02,
    trim: float = 0.2,
    seed: int = 0,
    sample_weight=None,
) -> MergedFormula:
    """Merge local polynomials into one global formula.

    Parameters
    ----------
    monomials : (T, p) integer array
        Exponents shared by every local polynomial.
    coefficients : (B, T, M) or (B, T) array or tensor
        Coefficients of the local polynomials at ``B`` reference points for ``M`` ensemble
        members, in original units (see :func:`discovery.symbolic.to_original_units`). In log
        space they are polynomials in ``u = log x`` predicting ``log|y|``.
    centers : (B, p)
        Reference points, in the polynomial's variables (``x``, or ``log x`` in log space).
    X : (n, p), y : (n,)
        The observations in original units.
    names : p strings, optional
        Variable names for the formula (default ``x0 .. x{p-1}``).
    val_index : row indices, optional
        Validation rows (e.g. the ensemble's ``val_index``); the others are used to refit.
        Default: a seeded random 20 %.
    space : {"raw", "log"}
        ``"log"``: ``y = sign * exp(P(log x))``; an affine ``P`` reads as ``c * prod x_i**a_i``.
    sign : +1 or -1, optional
        Sign of ``y`` in log space; default from the data (which must not change sign).
    center : "auto", "origin", "mean" or (p,) values
        Common centre; ``"auto"`` is :func:`choose_center` on the variables.
    significance : float
        A term is pruned first when ``|consensus| < significance * spread``.
    contribution : float
        ... or when ``|consensus| * rms(monomial) < contribution * full-fit validation RMSE``.
    rel_tol : float
        Backward elimination and snapping may raise the validation RMSE by at most this
        fraction (plus ``1e-9 * std(y)`` for noise-free data at rounding level).
    add_tol : float
        Forward selection restores a pruned term when it lowers the validation RMSE by more than
        this fraction.
    snap, snap_z, snap_max_rel :
        Snap coefficients to clean numbers within ``snap_z`` standard errors and at most
        ``snap_max_rel`` relative distance (see :func:`clean_number`), and only when the refit's
        residuals pass the lack-of-fit test of :func:`noise_level` (3 standard errors).
    trim : float
        Proportion cut from each end for the trimmed mean reported beside the median.
    seed : int
        Seed of the default validation split.
    sample_weight : (n,) array, optional
        Non-negative row weights (finite, not all zero). Every fit on the data is then weighted
        least squares (rows and targets times ``sqrt(w)``) and every score a weighted RMSE: the
        refit, the stepwise selection, the snapping checks (the noise test on the rows of
        positive weight, residuals times ``sqrt(w)``, as for inverse-variance weights), the
        contributions and ``val_rmse``/``val_r2``. An integer weight equals a repeated row.

    Returns
    -------
    MergedFormula

    Examples
    --------
    >>> import numpy as np
    >>> from discovery.engine import monomials
    >>> table = monomials(2, 2)                  # 1, x1, x2, x1^2, x1 x2, x2^2
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (200, 2)); y = (X[:, 0] ** 2 + X[:, 1]) / 2
    >>> true = np.array([0, 0, 0.5, 0.5, 0, 0.0])
    >>> local = true[None, :, None] + 1e-3 * rng.standard_normal((8, 6, 3))
    >>> f = merge(table, local, np.zeros((8, 2)), X, y, names=["x1", "x2"])
    >>> f.text()
    '0.5*x1**2 + 0.5*x2'
    """
    call = "merge(monomials, coefficients, centers, X, y)"
    table = np.asarray(monomials, dtype=np.int64)
    C = _as_array(coefficients)
    if C.ndim == 2:
        C = C[..., None]
    centers = _as_array(centers)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if table.ndim != 2:
        raise ValueError(f"{call}: monomials has shape {table.shape}; pass a (T, p) integer array")
    T, p = table.shape
    if C.ndim != 3 or C.shape[1] != T:
        raise ValueError(f"{call}: coefficients have shape {C.shape}; pass (B, {T}, members) or (B, {T})")
    B = C.shape[0]
    if centers.shape != (B, p):
        raise ValueError(f"{call}: centers have shape {centers.shape}; pass ({B}, {p}), one row per reference point")
    if X.ndim != 2 or X.shape[1] != p or len(X) != len(y):
        raise ValueError(f"{call}: X has shape {X.shape} and y {y.shape}; pass X (n, {p}) and y (n,)")
    if space not in SPACES:
        raise ValueError(f"{call}: space={space!r}; pass one of {SPACES}")
    if not (np.all(np.isfinite(C)) and np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise DataError(f"{call}: coefficients, X and y must be finite; drop or fix non-finite values first")
    from discovery.fit import check_sample_weight

    w = check_sample_weight(sample_weight, len(y), "merge(..., sample_weight=w)")
    names = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(p)]
    make_symbols(names, p)
    V = _variables(X, space, call)
    if space == "log":
        if sign is None:
            if np.all(y > 0):
                sign = 1.0
            elif np.all(y < 0):
                sign = -1.0
            else:
                raise DataError(f"{call}: log space needs a target of one sign; y has both signs or zeros, use space='raw'")
        sign = float(sign)
        if np.any(sign * y <= 0):
            raise DataError(f"{call}: sign={sign} but some y have the other sign or are 0; pass the sign of y")
        t = np.log(sign * y)
    else:
        sign, t = 1.0, y

    n = len(y)
    if val_index is None:
        perm = np.random.default_rng(seed).permutation(n)
        val = np.sort(perm[: max(1, int(round(0.2 * n)))])
    else:
        val = sorted_rows(val_index)
        if val.size == 0 or val.min() < 0 or val.max() >= n:
            raise ValueError(f"{call}: val_index must hold row indices in [0, {n}); got {val.size} indices")
    train = other_rows(n, val)
    if len(train) < 2:
        raise ValueError(f"{call}: only {len(train)} rows left to refit after the validation split; pass fewer val_index")
    if w is not None:
        for part, rows in (("refit", train), ("validation", val)):
            if not w[rows].sum() > 0:
                raise DataError(f"merge(..., sample_weight=w): every {part} row has weight 0; give some a positive weight")

    c, center_reason = _resolve_center(center, V if w is None else V[w > 0], call)
    notes = [f"common centre: {center_reason}"]
    first_center = c.copy()

    # Consensus at the common centre: each point's member median is shifted (not each member),
    # so high-order noise is averaged before the shift multiplies it.
    consensus, trimmed, spread, signif = _consensus(C, centers, table, c, trim)
    if B * C.shape[2] < 3:
        notes.append(f"only {B * C.shape[2]} local polynomial(s): the spread is not informative")

    # Every candidate term is scored and selected on a seeded subsample of the rows of a very
    # large table (every row of a smaller one), so the full design matrix never has more than
    # about 25,000 rows; the final refit, the snapping and the scores use every row, with the
    # kept terms' columns alone.
    sample = np.random.default_rng(seed + 1)
    sel_train, sel_val = _subsample(train, _SELECT_ROWS, sample), _subsample(val, _SELECT_ROWS // 4, sample)
    work = np.union1d(sel_train, sel_val)
    Vw, tw, yw, ww = V[work], t[work], y[work], _rows(w, work)
    data = (tw, yw, np.searchsorted(work, sel_train), np.searchsorted(work, sel_val), space, sign, ww)
    D = _design(Vw, table, c)
    contrib = np.abs(consensus) * np.sqrt(_wmean(D**2, ww))
    select = _Fitter(D, *data)
    full_coef, full_rmse, _ = select.fit(range(T))
    eps_t = float(np.sqrt(_wmean((D[select.val] @ full_coef - tw[select.val]) ** 2, _rows(ww, select.val))))
    floor = 1e-9 * float(np.std(y) if w is None else np.sqrt(_wmean((y - _wmean(y, w)) ** 2, w))) + 1e-300

    keep, reasons = _initial_prune(consensus, spread, signif, contrib, eps_t, significance, contribution)
    rank = np.empty(T, dtype=np.int64)
    rank[np.lexsort((contrib, signif))] = np.arange(T)  # ascending significance, then contribution
    keep, current = _stepwise(select, keep, rank, reasons, add_tol, rel_tol, floor)

    if isinstance(center, str) and center == "auto" and np.any(c != 0) and keep:
        origin = _read_at_origin(select, keep, table, c, Vw, data, add_tol, rel_tol, floor)
        if origin is not None and len(origin[2]) < len(keep) and origin[3] <= current * (1 + rel_tol) + floor:
            center_reason += f"; moved to the origin, where the same accuracy needs {len(origin[2])} terms, not {len(keep)}"
            notes[0] = f"common centre: {center_reason}"
            D, _, keep, current, reasons = origin
            c = np.zeros(p)

    # A power law reads best at u = 0 (x = 1): its constant is then log of the prefactor.
    affine_log = space == "log" and all(table[j].sum() <= 1 for j in keep)
    if affine_log and np.any(c != 0):
        c = np.zeros(p)
        center_reason += "; moved to the origin (x = 1) for the power law, exact for an affine polynomial"
        notes[0] = f"common centre: {center_reason}"
        D = _design(Vw, table, c)
    # From here on column k is term keep[k], on every row.
    fitter = _Fitter(_design(V, table[keep], c), t, y, train, val, space, sign, w)
    kept = list(range(len(keep)))
    refit, refit_rmse, se = fitter.fit(kept)
    numbers: dict[int, sympy.Expr] = {}
    snapped: dict[int, str] = {}
    final = refit
    if snap and keep:
        refusal = _snap_refusal(fitter, refit, V, np.concatenate([train, val]), floor, seed)
        if refusal:
            notes.append(refusal)
        else:
            final, numbers, snapped = _snap(
                fitter, kept, table[keep], refit, se, refit_rmse, affine_log, rel_tol, floor, snap_z, snap_max_rel
            )
            notes.extend(f"snapped {table[keep[k]].tolist()}: {s}" for k, s in snapped.items())
    val_rmse = fitter.rmse(final)
    pred_val = _to_target(fitter.D[val] @ final, space, sign)
    val_r2 = float(r2_score(y[val], pred_val, sample_weight=_rows(w, val))) if np.ptp(y[val]) > 0 and np.all(np.isfinite(pred_val)) else float("nan")
    if np.any(c != first_center):  # the table shows the consensus where the formula is read
        consensus, trimmed, spread, signif = _consensus(C, centers, table, c, trim)
        contrib = np.abs(consensus) * np.sqrt(_wmean(D**2, ww))
    consensus_val_rmse = fitter.rmse(consensus[keep])
    # Back to one entry per term of the table.
    refit, final = _widen(refit, keep, T), _widen(final, keep, T)
    numbers = {keep[k]: v for k, v in numbers.items()}
    snapped = {keep[k]: v for k, v in snapped.items()}

    coef_sym = [numbers.get(j, sympy.Float(final[j])) for j in keep]
    expression = polynomial_to_sympy(table[keep], coef_sym, c, names, space=space, sign=sign)
    labels = _labels(table, c, names, space)
    terms = pd.DataFrame(
        {
            "term": labels,
            "exponents": [tuple(int(a) for a in row) for row in table],
            "degree": table.sum(axis=1),
            "consensus": consensus,
            "trimmed_mean": trimmed,
            "spread": spread,
            "significance": signif,
            "contribution": contrib,
            "refit": [refit[j] if j in keep else np.nan for j in range(T)],
            "coefficient": [final[j] if j in keep else 0.0 for j in range(T)],
            "snapped": [snapped.get(j, "") for j in range(T)],
            "kept": [j in keep for j in range(T)],
            "reason": [reasons[j] for j in range(T)],
        }
    )
    return MergedFormula(
        expression=expression,
        terms=terms,
        center=c,
        center_reason=center_reason,
        space=space,
        sign=sign,
        names=names,
        monomials=table[keep],
        coefficients=final[keep],
        refit_coefficients=refit[keep],
        val_rmse=val_rmse,
        val_r2=val_r2,
        refit_val_rmse=refit_rmse,
        consensus_val_rmse=consensus_val_rmse,
        full_val_rmse=full_rmse,
        notes=notes,
        rows={"selection_train": len(sel_train), "selection_validation": len(sel_val), "refit": len(train),
              "validation": len(val)},
    )


def _widen(values: np.ndarray, keep: list[int], T: int) -> np.ndarray:
    """Values of the kept terms as a vector over all ``T`` terms (zeros elsewhere)."""
    out = np.zeros(T)
    out[keep] = values
    return out


def _resolve_center(center, V: np.ndarray, call: str) -> tuple[np.ndarray, str]:
    p = V.shape[1]
    if isinstance(center, str):
        if center == "auto":
            return choose_center(V)
        if center == "origin":
            return np.zeros(p), "origin (requested)"
        if center == "mean":
            return V.mean(axis=0), "data mean (requested)"
        raise ValueError(f"{call}: center={center!r}; pass 'auto', 'origin', 'mean' or {p} values")
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    if c.shape != (p,):
        raise ValueError(f"{call}: center has {c.size} values; pass {p}")
    return c, "given"


def _initial_prune(consensus, spread, signif, contrib, eps_t, significance, contribution):
    """Terms the consensus supports, and a reason for every term."""
    reasons: dict[int, str] = {}
    keep: list[int] = []
    for j in range(len(consensus)):
        if consensus[j] == 0 and spread[j] == 0:
            reasons[j] = "pruned: zero in every local polynomial"
        elif signif[j] < significance:
            reasons[j] = (
                f"pruned: consensus {consensus[j]:.3g} is within {significance:g} x spread {spread[j]:.3g} of 0 "
                "across reference points"
            )
        elif contrib[j] < contribution * eps_t:
            reasons[j] = (
                f"pruned: contribution {contrib[j]:.3g} is below {contribution:g} x validation RMSE {eps_t:.3g} "
                "of the full fit"
            )
        else:
            keep.append(j)
            ratio = f"{signif[j]:.3g} x its spread" if np.isfinite(signif[j]) else "with no spread"
            reasons[j] = f"kept: consensus {consensus[j]:.3g} is {ratio}"
    return keep, reasons


def _read_at_origin(fitter, keep, table, c, V, data, add_tol, rel_tol, floor):
    """The data sit far from 0, yet the law may be sparse in powers of x itself: shift the
    fit to the origin exactly and select terms there. Returns (D, fitter, keep, RMSE, reasons)."""
    T, p = table.shape
    refit_c, _, _ = fitter.fit(keep)
    origin = torch.zeros(p, dtype=torch.float64)
    at_origin = shift_coefficients(
        torch.from_numpy(refit_c)[None, :, None], table, torch.from_numpy(c)[None], origin
    )[0, :, 0].numpy()
    D0 = _design(V, table, origin.numpy())
    fitter0 = _Fitter(D0, *data)
    size0 = np.abs(at_origin) * np.sqrt(_wmean(D0**2, fitter.w))
    if not np.any(size0 > 0):
        return None
    start0 = [j for j in range(T) if size0[j] > 1e-12 * size0.max()]
    rank0 = np.empty(T, dtype=np.int64)
    rank0[np.argsort(size0)] = np.arange(T)
    reasons0 = {j: "pruned: zero once the fit is read at the origin" for j in range(T)}
    reasons0.update({j: "kept: read at the origin" for j in start0})
    keep0, current0 = _stepwise(fitter0, start0, rank0, reasons0, add_tol, rel_tol, floor)
    return D0, fitter0, keep0, current0, reasons0


def _consensus(C, centers, table, c, trim):
    """Median, trimmed mean, robust spread and significance of every coefficient at ``c``.

    Each point's member median is shifted (not each member), so high-order noise is averaged
    before the shift multiplies it; the spread is taken over every shifted member.
    """
    both = np.concatenate([C, np.median(C, axis=2, keepdims=True)], axis=2)  # one shift for both
    shifted = shift_coefficients(torch.from_numpy(both), table, torch.from_numpy(centers), torch.from_numpy(c)).numpy()
    per_point, every = shifted[:, :, -1], shifted[:, :, :-1]
    consensus = np.median(per_point, axis=0)
    trimmed = stats.trim_mean(per_point, trim, axis=0)
    flat = every.transpose(1, 0, 2).reshape(len(table), -1)
    spread = stats.median_abs_deviation(flat, axis=1, scale="normal")  # the normal SD for Gaussian spread
    with np.errstate(divide="ignore", invalid="ignore"):
        signif = np.where(spread > 0, np.abs(consensus) / spread, np.where(consensus != 0, np.inf, 0.0))
    return consensus, trimmed, spread, signif


def _subsample(index: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return index if len(index) <= limit else np.sort(rng.choice(index, limit, replace=False))


def _stepwise(fitter, keep, rank, reasons, add_tol, rel_tol, floor):
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
    rows = _subsample(rows, _SELECT_ROWS, np.random.default_rng(seed + 2))
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


def _snap_refusal(fitter, refit, V, rows, floor, seed) -> str:
    """Why the refit must not be snapped (its residuals hold more than noise), or ``""``."""
    residual = fitter.y - _to_target(fitter.D @ refit, fitter.space, fitter.sign)
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


def _snap(fitter, keep, table, refit, se, refit_rmse, affine_log, rel_tol, floor, snap_z, snap_max_rel):
    """Snap kept coefficients one by one (others refit); returns values, SymPy numbers, log."""
    degrees = table.sum(axis=1)
    rms = np.sqrt(_wmean(fitter.D**2, fitter.w))
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


def _labels(table: np.ndarray, c: np.ndarray, names: list[str], space: str) -> list[str]:
    symbols = make_symbols(names, len(names))
    variables = [sympy.log(s) if space == "log" else s for s in symbols]
    shifted = [v - sympy.Float(ci) if ci != 0 else v for v, ci in zip(variables, c)]
    return [
        text(sympy.Mul(*(v ** int(a) for v, a in zip(shifted, row) if a)), precision=6) for row in table
    ]
