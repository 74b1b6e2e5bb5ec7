"""Reading a saved result folder back into a :class:`~discovery.result.Discovery` without unpickling.

The folder's ``result.json`` gives the formula (its SymPy ``srepr``, read by a parser that
accepts only SymPy number, symbol and function constructors), scores, settings and notes;
``terms.csv`` and ``candidates.csv`` the tables at full precision; ``local.npz`` the local
polynomials (read with ``allow_pickle=False``); ``model.pt`` the ensemble, read weights-only by
:func:`discovery.modelio.read_model`. The data rows are not part of a result folder, so the
loaded result carries the saved scores instead of recomputing them.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sympy

from discovery.errors import DiscoveryError
from discovery.result import Discovery, LocalPolynomials
from discovery.result_io import decomposition_from_dict

__all__ = ["SavedDiscovery", "load_result", "parse_formula"]

# Constructors a saved formula may use: numbers, symbols, arithmetic and elementary functions.
_ALLOWED = ("Add Mul Pow Symbol Dummy Float Integer Rational E pi I "
            "exp log sqrt sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh Abs sign "
            "Max Min erf gamma").split()
_FUNCTIONS = {name: getattr(sympy, name) for name in _ALLOWED}


def parse_formula(source: str, names: list[str] | None = None) -> sympy.Expr:
    """A formula from its SymPy ``srepr`` or plain text, without ``eval``.

    Only calls of SymPy constructors for numbers, symbols, arithmetic and elementary functions,
    numeric and string literals, the arithmetic operators, and the ``names`` (as real symbols)
    are accepted; anything else raises :class:`~discovery.errors.DiscoveryError`.

    Examples
    --------
    >>> parse_formula("Mul(Float('6.674', precision=53), Symbol('m1', real=True))")
    6.674*m1
    >>> parse_formula("c**2*m", ["m", "c"])
    c**2*m
    """
    call = f"parse_formula({source[:40]!r}...)" if len(source) > 40 else f"parse_formula({source!r})"
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise DiscoveryError(f"{call}: not a formula ({exc.msg})") from None
    symbols = {n: sympy.Symbol(n, real=True) for n in (names or [])}
    return sympy.sympify(_build(tree.body, symbols, call))


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}


def _build(node: ast.AST, symbols: dict, call: str):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        if isinstance(node.value, float):
            return sympy.Float(repr(node.value))
        return sympy.Integer(node.value) if isinstance(node.value, int) and not isinstance(node.value, bool) else node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _build(node.operand, symbols, call)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_build(node.left, symbols, call), _build(node.right, symbols, call))
    if isinstance(node, ast.Name):
        if node.id in symbols:
            return symbols[node.id]
        if node.id in _FUNCTIONS:
            return _FUNCTIONS[node.id]
        raise DiscoveryError(f"{call}: unknown name {node.id!r}")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        args = [_build(a, symbols, call) for a in node.args]
        kwargs = {}
        for k in node.keywords:
            if k.arg is None or not isinstance(k.value, ast.Constant):
                raise DiscoveryError(f"{call}: only literal keyword arguments are allowed")
            kwargs[k.arg] = k.value.value
        return _FUNCTIONS[node.func.id](*args, **kwargs)
    raise DiscoveryError(f"{call}: {type(node).__name__} is not allowed in a saved formula")


@dataclass
class _SavedMerge:
    """What a result folder keeps of the merge: the expansion's formula, its terms and centre."""

    expression: sympy.Expr
    terms: pd.DataFrame
    center: np.ndarray
    val_rmse: float
    val_r2: float
    notes: list = field(default_factory=list)


@dataclass
class _SavedNetworks:
    """The saved ensemble: one module from inputs (``log x`` in log space) to the ensemble mean."""

    module: object
    members: int
    val_rmse: np.ndarray
    history: list = field(default_factory=list)


@dataclass(repr=False)
class SavedDiscovery(Discovery):
    """A :class:`~discovery.result.Discovery` read from a result folder (:func:`load_result`).

    Formula, scores, terms, candidates, local polynomials, space, order, names, notes and the
    cross-check summary are as saved; ``predict`` evaluates the formula and ``predict_network``
    the saved ensemble. The data rows are not saved, so the scores are the saved ones and the
    figures of a report cannot be redrawn.
    """

    saved: dict = field(default_factory=dict)
    folder: Path | None = None

    def _scores(self, formula) -> tuple[float, float]:
        s = self.saved["scores"]
        if formula is self.expansion_formula and self.recommended != "expansion":
            return float(s["expansion_r2"]), float(s["expansion_rmse"])
        return float(s["r2"]), float(s["rmse"])

    def predict_network(self, X) -> np.ndarray:
        """The saved ensemble's mean prediction on ``X``, in the target's units."""
        import torch

        X = self._matrix(X, "Discovery.predict_network(X)")
        inputs = np.log(X) if self.space == "log" else X
        with torch.no_grad():
            out = self.fitted.module(torch.from_numpy(np.ascontiguousarray(inputs))).numpy().reshape(-1)
        return self.local.sign * np.exp(out) if self.space == "log" else out

    def summary(self) -> str:
        """As :meth:`Discovery.summary`, with the number of rows the saved scores were computed on."""
        lines = super().summary().splitlines()
        s = self.saved["scores"]
        r2, rmse = self._scores(self.formula)
        lines[2] = (f"  R^2 {r2:.6f}, RMSE {rmse:.4g} on {s['rows_scored']} {'held-out' if s['held_out'] else 'all'} rows "
                    f"(saved in {self.folder})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The saved ``result.json``."""
        return json.loads(json.dumps(self.saved))

    def save(self, directory, *, report: bool = True) -> Path:
        raise DiscoveryError(f"Discovery.save({str(directory)!r}): this result was loaded from {self.folder} and "
                             "has no data rows to write a new folder from; copy the folder instead")

    def report(self, directory) -> Path:
        raise DiscoveryError(f"Discovery.report({str(directory)!r}): this result was loaded from {self.folder} and "
                             "has no data rows to draw figures from; open its report.html")


def _read_table(path: Path, call: str) -> pd.DataFrame:
    if not path.is_file():
        raise DiscoveryError(f"{call}: {path} is missing; pass a folder written by Discovery.save")
    return pd.read_csv(path, keep_default_na=True)


def load_result(folder) -> SavedDiscovery:
    """Read a result folder written by :meth:`Discovery.save`.

    Raises
    ------
    DiscoveryError
        The folder lacks a file of a saved result or a file is damaged.
    discovery.errors.ModelLoadError
        ``model.pt`` cannot be read weights-only.

    Examples
    --------
    >>> d = Discovery.load("results/gravitation")  # doctest: +SKIP
    >>> d.formula, d.r2  # doctest: +SKIP
    (6.674*m1*m2/r**2, 1.0)
    """
    from discovery.modelio import read_model

    path = Path(folder)
    call = f"Discovery.load({str(folder)!r})"
    if not (path / "result.json").is_file():
        raise DiscoveryError(f"{call}: no result.json in {path}; pass a folder written by Discovery.save")
    try:
        saved = json.loads((path / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DiscoveryError(f"{call}: result.json cannot be read ({exc})") from None
    names = list(saved["features"])
    formula = parse_formula(saved["formula_srepr"])
    expansion = parse_formula(saved["expansion_formula"], names) if saved["recommended"] != "expansion" else formula

    terms = _read_table(path / "terms.csv", call)
    if "exponents" in terms.columns:  # written as tuples, e.g. "(1, 0, 2)"
        terms["exponents"] = [tuple(int(a) for a in ast.literal_eval(str(v))) for v in terms["exponents"]]
    if "snapped" in terms.columns:
        terms["snapped"] = terms["snapped"].fillna("").astype(str)
    candidates = _read_table(path / "candidates.csv", call)
    with np.load(path / "local.npz", allow_pickle=False) as z:
        local = LocalPolynomials(centers=z["centers"], monomials=z["monomials"], coefficients=z["coefficients"],
                                 names=names, space=str(z["space"]), sign=1.0)
    model = read_model(path / "model.pt", call=call)
    networks = saved["networks"]
    fitted = _SavedNetworks(model.module, int(networks["members"]), np.asarray(networks["validation_rmse"]))
    scores = saved["scores"]
    # the common centre is not saved: NaN says so rather than guessing
    merged = _SavedMerge(expansion, terms, np.full(len(names), np.nan), float(scores["validation_rmse"]),
                         float(scores["validation_r2"]))
    if saved["space"] == "log":  # the model predicts log |y|; the expansion's formula is sign * exp(...)
        local.sign = -1.0 if _negative(expansion) else 1.0
    comparison = _comparison(saved.get("crosscheck"), expansion, formula, names)
    p = len(names)
    return SavedDiscovery(
        expansion_formula=expansion, crosscheck=comparison, merged=merged, space=saved["space"],
        space_reason=saved["space_reason"], order=int(saved["order"]), order_reason=saved["order_reason"],
        candidates=candidates, local=local, fitted=fitted, members_kept=np.asarray(networks["kept"], dtype=np.int64),
        X=np.zeros((0, p)), y=np.zeros(0), names=names, target_name=saved["target"],
        renamed=dict(saved.get("renamed") or {}), source=saved.get("source"),
        data_warnings=list(saved.get("data_warnings") or []), timings=dict(saved.get("timings") or {}),
        notes=list(saved.get("notes") or []), settings=dict(saved.get("settings") or {}),
        structure=saved.get("structure"), saved=saved, folder=path,
        chosen=saved.get("chosen", "expansion"), chosen_reason=saved.get("chosen_reason", ""),
        decomposition=None if not saved.get("decomposition") else decomposition_from_dict(
            saved["decomposition"], parse_formula(saved["decomposition"]["expression"], names)),
    )


def _negative(formula: sympy.Expr) -> bool:
    try:
        return bool(float(formula.subs({s: 1 for s in formula.free_symbols})) < 0)
    except TypeError:  # not a number at x = 1 (a formula outside the power-law form): keep +1
        return False


def _comparison(saved: dict | None, expansion: sympy.Expr, formula: sympy.Expr, names: list[str]):
    if not saved:
        return None
    from discovery.crosscheck import Comparison
    from discovery.crosscheck.base import COLUMNS

    engine_formula = formula if saved["recommended"] != "expansion" else parse_formula(saved["engine_formula"], names)
    return Comparison(saved["verdict"], list(saved["evidence"]), saved["recommended"], saved["reason"], expansion,
                      engine_formula, saved["engine"], pd.DataFrame(columns=COLUMNS), dict(saved["r2"]),
                      dict(saved["complexity"]), dict(saved.get("times") or {}), saved.get("guided", ""))
