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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sympy
import torch
from scipy import stats
from sklearn.metrics import r2_score

from discovery.engine.polynomial import shift_coefficients
from discovery.errors import DataError
from discovery._rows import other_rows, sorted_rows
from discovery.refit import (
    SELECT_ROWS,
    Fitter,
    design,
    noise_level,
    row_weights,
    snap_coefficients,
    snap_refusal,
    stepwise,
    subsample,
    to_target,
    wmean,
)
from discovery.symbolic import (
    SPACES,
    clean_number,
    latex,
    make_symbols,
    polynomial_to_sympy,
    text,
)

__all__ = ["merge", "MergedFormula", "clean_number", "choose_center", "noise_level"]


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
            t = design(V, self.monomials, self.center) @ self.coefficients
        return to_target(t, self.space, self.sign)


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
    sel_train, sel_val = subsample(train, SELECT_ROWS, sample), subsample(val, SELECT_ROWS // 4, sample)
    work = np.union1d(sel_train, sel_val)
    Vw, tw, yw, ww = V[work], t[work], y[work], row_weights(w, work)
    data = (tw, yw, np.searchsorted(work, sel_train), np.searchsorted(work, sel_val), space, sign, ww)
    D = design(Vw, table, c)
    contrib = np.abs(consensus) * np.sqrt(wmean(D**2, ww))
    select = Fitter(D, *data)
    full_coef, full_rmse, _ = select.fit(range(T))
    eps_t = float(np.sqrt(wmean((D[select.val] @ full_coef - tw[select.val]) ** 2, row_weights(ww, select.val))))
    floor = 1e-9 * float(np.std(y) if w is None else np.sqrt(wmean((y - wmean(y, w)) ** 2, w))) + 1e-300

    keep, reasons = _initial_prune(consensus, spread, signif, contrib, eps_t, significance, contribution)
    rank = np.empty(T, dtype=np.int64)
    rank[np.lexsort((contrib, signif))] = np.arange(T)  # ascending significance, then contribution
    keep, current = stepwise(select, keep, rank, reasons, add_tol, rel_tol, floor)

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
        D = design(Vw, table, c)
    # From here on column k is term keep[k], on every row.
    fitter = Fitter(design(V, table[keep], c), t, y, train, val, space, sign, w)
    kept = list(range(len(keep)))
    refit, refit_rmse, se = fitter.fit(kept)
    numbers: dict[int, sympy.Expr] = {}
    snapped: dict[int, str] = {}
    final = refit
    if snap and keep:
        refusal = snap_refusal(fitter, refit, V, np.concatenate([train, val]), floor, seed)
        if refusal:
            notes.append(refusal)
        else:
            final, numbers, snapped = snap_coefficients(
                fitter, kept, table[keep], refit, se, refit_rmse, affine_log, rel_tol, floor, snap_z, snap_max_rel
            )
            notes.extend(f"snapped {table[keep[k]].tolist()}: {s}" for k, s in snapped.items())
    val_rmse = fitter.rmse(final)
    pred_val = to_target(fitter.D[val] @ final, space, sign)
    val_r2 = float(r2_score(y[val], pred_val, sample_weight=row_weights(w, val))) if np.ptp(y[val]) > 0 and np.all(np.isfinite(pred_val)) else float("nan")
    if np.any(c != first_center):  # the table shows the consensus where the formula is read
        consensus, trimmed, spread, signif = _consensus(C, centers, table, c, trim)
        contrib = np.abs(consensus) * np.sqrt(wmean(D**2, ww))
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
    D0 = design(V, table, origin.numpy())
    fitter0 = Fitter(D0, *data)
    size0 = np.abs(at_origin) * np.sqrt(wmean(D0**2, fitter.w))
    if not np.any(size0 > 0):
        return None
    start0 = [j for j in range(T) if size0[j] > 1e-12 * size0.max()]
    rank0 = np.empty(T, dtype=np.int64)
    rank0[np.argsort(size0)] = np.arange(T)
    reasons0 = {j: "pruned: zero once the fit is read at the origin" for j in range(T)}
    reasons0.update({j: "kept: read at the origin" for j in start0})
    keep0, current0 = stepwise(fitter0, start0, rank0, reasons0, add_tol, rel_tol, floor)
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


def _labels(table: np.ndarray, c: np.ndarray, names: list[str], space: str) -> list[str]:
    symbols = make_symbols(names, len(names))
    variables = [sympy.log(s) if space == "log" else s for s in symbols]
    shifted = [v - sympy.Float(ci) if ci != 0 else v for v, ci in zip(variables, c)]
    return [
        text(sympy.Mul(*(v ** int(a) for v, a in zip(shifted, row) if a)), precision=6) for row in table
    ]
