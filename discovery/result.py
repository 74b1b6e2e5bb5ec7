"""The :class:`Discovery` record: the formula, its scores (computed once), terms, local polynomials,
the decomposition. Exports and the rebuilt torch model live in :mod:`discovery.result_io`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sympy
from sklearn.metrics import r2_score

from discovery.errors import DataError
from discovery.symbolic import latex as formula_latex
from discovery.symbolic import polynomial_to_sympy, text as formula_text

__all__ = ["Discovery", "LocalPolynomials"]

_TERM_COLUMNS = ["term", "coefficient", "refit", "consensus", "trimmed_mean", "spread", "significance",
                 "contribution", "snapped", "kept", "reason", "degree", "exponents"]


@dataclass
class LocalPolynomials:
    """The Taylor polynomials of every network at every reference point, in original units.

    Attributes
    ----------
    centers : (B, p) array
        Reference points in the polynomials' variables (``x``, or ``log x`` in log space).
    monomials : (T, p) int array
        Exponents shared by every polynomial.
    coefficients : (B, T, M) array
        Coefficient of each term at each point for each of the ``M`` kept networks.
    names : list of str
    space : {"raw", "log"}
    sign : float
        Sign of the target in log space.
    """

    centers: np.ndarray
    monomials: np.ndarray
    coefficients: np.ndarray
    names: list[str]
    space: str = "raw"
    sign: float = 1.0

    def __len__(self) -> int:
        return int(self.centers.shape[0])

    @property
    def points(self) -> np.ndarray:
        """Reference points in original units, ``(B, p)``."""
        return np.exp(self.centers) if self.space == "log" else self.centers

    def sympy(self, i: int, member: int | None = None) -> sympy.Expr:
        """Polynomial at point ``i`` (median over networks, or one ``member``) as SymPy.

        Examples
        --------
        >>> import discovery
        >>> d = discovery.discover(discovery.bundled("paper_quadratic"), members=2, crosscheck="off")
        >>> p = d.local.sympy(0)  # in powers of (x - centre); its value at the centre:
        >>> at_centre = dict(zip(sorted(p.free_symbols, key=str), d.local.centers[0]))
        >>> bool(abs(float(p.subs(at_centre)) - d.predict_network(d.local.centers[:1])[0]) < 1e-9)
        True
        """
        c = self.coefficients[i]
        c = np.median(c, axis=1) if member is None else c[:, member]
        return polynomial_to_sympy(self.monomials, c, self.centers[i], self.names, space=self.space, sign=self.sign)

    def frame(self) -> pd.DataFrame:
        """One row per point: its coordinates and the member-median coefficient of every term."""
        labels = ["*".join(f"{n}^{a}" if a > 1 else n for n, a in zip(self.names, row) if a) or "1"
                  for row in self.monomials]
        out = pd.DataFrame(self.points, columns=list(self.names))
        coefs = pd.DataFrame(np.median(self.coefficients, axis=2), columns=[f"c[{lab}]" for lab in labels])
        return pd.concat([out, coefs], axis=1)


@dataclass
class Discovery:
    """What :func:`discovery.discover` found.

    Attributes
    ----------
    formula : sympy.Expr
        The recommended formula in the table's column names: the cross-check's recommendation
        when one ran, else the chosen formula (the expansion's or the decomposition's).
    expansion_formula : sympy.Expr
        The formula merged from the Taylor expansions (always kept).
    crosscheck : Comparison or None
        The comparison with a symbolic-regression engine.
    space, space_reason : str
        ``"raw"`` or ``"log"`` and why it was chosen.
    order, order_reason :
        Taylor order used and why.
    terms : pandas.DataFrame
        Every candidate term: coefficient, spread across reference points, kept or pruned and why.
    local : LocalPolynomials
        The per-point polynomials.
    r2, rmse : float
        Scores of ``formula`` on held-out rows (never used for training or selection).
    timings : dict
        Seconds per stage.
    warnings : list of str
        Every condition that changes what the answer is worth (no cross-check ran and why, a
        formula that only approximates, a low or no-better-than-constant score, a defaulted
        target); also raised as :class:`~discovery.errors.DiscoveryWarning` by ``discover``.
    decomposition : discovery.decompose.Decomposition or None
        The recursive, structure-driven decomposition when it ran (``decompose`` of
        :func:`discovery.discover`): formula, tree with the evidence of every step, notes, timings.
    chosen, chosen_reason : str
        Which formula went on to the cross-check (``"expansion"`` or ``"decomposition"``) and why.
    scores : dict
        ``r2``, ``rmse`` (of ``formula``) and ``expansion_r2``, ``expansion_rmse`` on the held-out
        rows, computed once when the result is made.
    structure : dict or None
        What the exact derivatives of the kept networks say about the law: inputs with and
        without influence (``df/dx_i = 0`` everywhere) and additive blocks (``d2f/dx_i dx_j = 0``),
        judged against the members' disagreement (:mod:`discovery.interpret.structure`); None
        for order 1 or a single input.

    Examples
    --------
    >>> import discovery
    >>> d = discovery.discover(discovery.bundled("paper_quadratic"), members=2, crosscheck="off")
    >>> d.formula
    0.5*x1**2 + 0.5*x2
    >>> d.space, d.order, d.r2 > 0.9999
    ('raw', 2, True)
    """

    expansion_formula: sympy.Expr
    crosscheck: Any
    merged: Any
    space: str
    space_reason: str
    order: int
    order_reason: str
    candidates: pd.DataFrame
    local: LocalPolynomials
    fitted: Any
    members_kept: np.ndarray
    X: np.ndarray
    y: np.ndarray
    names: list[str]
    target_name: str
    renamed: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    data_warnings: list[str] = field(default_factory=list)
    test_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fit_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    structure: dict | None = None
    warnings: list[str] = field(default_factory=list)
    decomposition: Any = None
    chosen: str = "expansion"
    chosen_reason: str = ""
    scores: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scores:  # computed once; a result made by hand or read back gets them here
            self.scores = self.compute_scores()

    # ----------------------------------------------------------------------------- formula
    @property
    def formula(self) -> sympy.Expr:
        """The recommended formula (SymPy, in column names)."""
        if self.crosscheck is not None and self.crosscheck.recommended != "expansion":
            return _real(self.crosscheck.recommended_formula)
        return self.chosen_formula  # the cross-check's own candidate, when it recommends that

    @property
    def chosen_formula(self) -> sympy.Expr:
        """The formula handed to the cross-check: the expansion's or the decomposition's."""
        if self.chosen == "decomposition" and self.decomposition is not None:
            return _real(self.decomposition.expression)
        return self.expansion_formula

    @property
    def recommended(self) -> str:
        """Which formula ``formula`` is: ``"expansion"``, ``"decomposition"`` or the cross-check engine's name."""
        if self.crosscheck is None or self.crosscheck.recommended == "expansion":
            return self.chosen
        return self.crosscheck.recommended

    def sympy(self) -> sympy.Expr:
        """The recommended formula (same as ``formula``)."""
        return self.formula

    def latex(self, precision: int = 3) -> str:
        """LaTeX of the recommended formula with ``precision`` significant digits.

        Examples
        --------
        >>> import discovery
        >>> d = discovery.discover(discovery.bundled("paper_quadratic"), members=2, crosscheck="off")
        >>> d.latex(precision=3)
        '0.5 x_{1}^{2} + 0.5 x_{2}'
        """
        return formula_latex(self.formula, precision=precision)

    def text(self, precision: int = 6) -> str:
        """Plain text of the recommended formula (SymPy syntax)."""
        return formula_text(self.formula, precision=precision)

    @property
    def terms(self) -> pd.DataFrame:
        """Every candidate term of the expansion's formula and what happened to it."""
        t = self.merged.terms
        return t[[c for c in _TERM_COLUMNS if c in t.columns]].copy()

    # ----------------------------------------------------------------------------- predictions
    def _matrix(self, X, call: str) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            original = {new: old for old, new in self.renamed.items()}
            cols = []
            for name in self.names:
                for key in (original.get(name, name), name):
                    if key in X.columns:
                        cols.append(key)
                        break
                else:
                    raise DataError(f"{call}: the DataFrame has no column {original.get(name, name)!r}; pass columns "
                                    f"{', '.join(repr(original.get(n, n)) for n in self.names)}")
            X = X[cols].to_numpy(dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and len(self.names) == 1:
            X = X[:, None]
        elif X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != len(self.names):
            raise DataError(f"{call}: X has shape {X.shape}; pass (n, {len(self.names)}) columns "
                            f"{', '.join(self.names)} in that order, or a DataFrame")
        return X

    def predict(self, X) -> np.ndarray:
        """Evaluate the recommended formula on ``X`` (DataFrame with the feature columns, or array).

        Examples
        --------
        >>> import discovery
        >>> d = discovery.discover(discovery.bundled("paper_quadratic"), members=2, crosscheck="off")
        >>> d.predict(np.array([[1.0, 2.0]]))
        array([1.5])
        """
        return evaluate_formula(self.formula, self._matrix(X, "Discovery.predict(X)"), self.names)

    def predict_network(self, X) -> np.ndarray:
        """The trained ensemble's mean prediction on ``X``, in the target's units."""
        X = self._matrix(X, "Discovery.predict_network(X)")
        if self.space == "log":
            pred = self.fitted.predict_members(np.log(X))[:, self.members_kept].mean(axis=1)
            return self.local.sign * np.exp(pred)
        return self.fitted.predict_members(X)[:, self.members_kept].mean(axis=1)

    @property
    def score_index(self) -> np.ndarray:
        """Rows the scores are computed on: held-out rows, or all rows when none were held out."""
        return self.test_index if len(self.test_index) else np.arange(len(self.y))

    def compute_scores(self) -> dict:
        """R^2 and RMSE of ``formula`` and of the expansion's formula on :attr:`score_index`."""
        r2, rmse = self._scores(self.formula)
        e_r2, e_rmse = self._scores(self.expansion_formula)
        return {"r2": r2, "rmse": rmse, "expansion_r2": e_r2, "expansion_rmse": e_rmse}

    def _scores(self, formula) -> tuple[float, float]:
        idx = self.score_index
        pred = evaluate_formula(formula, self.X[idx], self.names)
        y = self.y[idx]
        rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
        if np.ptp(y) == 0 or np.isnan(pred).any():
            r2 = float("nan")
        else:
            r2 = float(r2_score(y, pred)) if np.all(np.isfinite(pred)) else -math.inf
        return r2, rmse

    @property
    def r2(self) -> float:
        """R^2 of ``formula`` on the held-out rows."""
        return self.scores["r2"]

    @property
    def rmse(self) -> float:
        """RMSE of ``formula`` on the held-out rows, in the target's units."""
        return self.scores["rmse"]

    # ----------------------------------------------------------------------------- exports
    def to_dict(self) -> dict:
        """Everything a reader needs, as JSON-ready values (:func:`discovery.result_io.to_dict`)."""
        from discovery.result_io import to_dict

        return to_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The result as a JSON string (see :meth:`to_dict`)."""
        from discovery.result_io import to_json

        return to_json(self, indent=indent)

    def save(self, directory, *, report: bool = True) -> Path:
        """Write the result folder: ``result.json``, ``formula.txt``, ``formula.tex``, ``terms.csv``,
        ``candidates.csv``, ``local.npz``, ``model.pt`` (the ensemble in original units, readable
        with ``torch.load(weights_only=True)``) and, with ``report``, ``report.html`` and its figures.

        The folder gets a ``.discovery-result.json`` marker listing these files. An existing
        folder is written into only when it is empty or carries the marker, and then only the
        files of the earlier result are replaced or removed; other files and subfolders are left
        alone. Every file is renamed into place from a temporary name. A folder that holds the
        input file is refused. Call :func:`discovery.check_output_folder` before a long run to
        find an unusable folder early.

        Raises
        ------
        discovery.folders.OutputFolderError
            The folder may not or cannot be written; its ``path`` names the folder. Nothing
            of the result is lost: this object stays usable and can be saved elsewhere.

        Examples
        --------
        >>> import discovery, tempfile
        >>> d = discovery.discover(discovery.bundled("paper_quadratic"), members=2, crosscheck="off")
        >>> parent = tempfile.TemporaryDirectory()
        >>> folder = d.save(Path(parent.name) / "paper_quadratic", report=False)
        >>> sorted(f.name for f in folder.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['.discovery-result.json', 'candidates.csv', 'formula.tex', 'formula.txt', 'local.npz', 'model.pt',
         'result.json', 'terms.csv']
        >>> parent.cleanup()
        """
        from discovery.result_io import save

        return save(self, directory, report=report)

    def report(self, directory) -> Path:
        """Write ``report.html`` with PNG figures into ``directory``; returns the path of the HTML.

        The folder rules of :meth:`save` apply; in a result folder only the report's files are
        replaced and the rest of the result is kept.
        """
        from discovery.result_io import report

        return report(self, directory)

    @classmethod
    def load(cls, folder) -> "Discovery":
        """Read a folder written by :meth:`save` (JSON, CSV, NPZ and the weights-only ``model.pt``; nothing
        is unpickled). Formula, scores, terms, space, order, names and notes are as saved; see
        :func:`discovery.load.load_result`.

        Examples
        --------
        >>> Discovery.load(d.save("results/quadratic")).formula  # doctest: +SKIP
        0.5*x1**2 + 0.5*x2
        """
        from discovery.load import load_result

        return load_result(folder)

    # ----------------------------------------------------------------------------- display
    def summary(self) -> str:
        """A few lines for a terminal: formula, scores, space, order, cross-check."""
        r2, rmse = self.r2, self.rmse
        where = "held-out" if len(self.test_index) else "all"
        lines = [
            f"{self.target_name} = {self.text(precision=6)}",
            f"  LaTeX: {self.latex(precision=6)}",
            f"  R^2 {r2:.6f}, RMSE {rmse:.4g} on {len(self.score_index)} {where} rows",
            f"  {self.space_reason or self.space + ' space'}",
            f"  {self.order_reason}",
        ]
        if self.structure is not None:
            lines.append(f"  structure (exact derivatives of the networks): {self.structure['summary']}")
        if self.crosscheck is not None:
            c = self.crosscheck
            lines.append(f"  cross-check ({c.engine}): {c.verdict}; recommended: {c.recommended} ({c.reason})")
            if c.recommended != "expansion":
                lines.append(f"  {self.chosen}'s formula: {formula_text(self.chosen_formula, precision=6)}")
        if self.chosen != "expansion":
            lines.append(f"  expansion's formula: {formula_text(self.expansion_formula, precision=6)}")
        if self.chosen_reason:
            lines.append(f"  chosen: {self.chosen_reason}")
        from discovery.result_io import decomposition_lines

        lines.extend(decomposition_lines(self))
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:
        r2, rmse = self.r2, self.rmse
        cc = "" if self.crosscheck is None else f", crosscheck={self.crosscheck.verdict!r}"
        return (f"Discovery({self.target_name} = {self.text(precision=6)}, r2={r2:.6g}, rmse={rmse:.4g}, "
                f"space={self.space!r}, order={self.order}{cc})")

    def _repr_html_(self) -> str:
        import html

        r2, rmse = self.r2, self.rmse
        from discovery.report import mathml

        rows = [("formula", mathml(self.formula, precision=4)), ("R<sup>2</sup> (held-out)", f"{r2:.6f}"),
                ("RMSE (held-out)", f"{rmse:.4g}"), ("space", html.escape(self.space_reason or self.space)),
                ("order", html.escape(self.order_reason))]
        if self.crosscheck is not None:
            rows.append(("cross-check", html.escape(f"{self.crosscheck.engine}: {self.crosscheck.verdict}; "
                                                    f"recommended {self.crosscheck.recommended}")))
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in rows)
        return f"<table><caption>Discovery of {html.escape(self.target_name)}</caption>{body}</table>"


def evaluate_formula(formula: sympy.Expr, X: np.ndarray, names: list[str]) -> np.ndarray:
    """Evaluate ``formula`` (symbols matched by name) on the columns of ``X`` -> (n,) float64."""
    symbols = {s.name: s for s in formula.free_symbols}
    args = [symbols.get(n, sympy.Symbol(n)) for n in names]
    f = sympy.lambdify(args, formula, modules="numpy")
    with np.errstate(all="ignore"):
        out = f(*[X[:, j] for j in range(X.shape[1])])
    out = np.asarray(out)
    if np.iscomplexobj(out):
        out = np.where(np.abs(out.imag) > 1e-12 * (1 + np.abs(out.real)), np.nan, out.real)
    return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],)).copy()


def _real(expr) -> sympy.Expr:
    """``expr`` in real symbols of the same names, like the expansion's formula."""
    f = sympy.sympify(expr)
    return f.xreplace({s: sympy.Symbol(s.name, real=True) for s in f.free_symbols})
