"""Exports of a :class:`~discovery.result.Discovery`: the JSON record, the result folder and the
ensemble rebuilt as one torch module from original units (``model.pt``).

Kept apart from :mod:`discovery.result` so the record stays a record; its ``to_dict``, ``to_json``,
``save`` and ``report`` methods call these functions.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sympy

from discovery.folders import write_folder
from discovery.report import write_report
from discovery.symbolic import latex as formula_latex
from discovery.symbolic import text as formula_text

_log = logging.getLogger("discovery")

if TYPE_CHECKING:  # pragma: no cover
    from discovery.result import Discovery

__all__ = ["to_dict", "to_json", "save", "report", "decomposition_lines", "decomposition_from_dict"]


def to_dict(d: "Discovery") -> dict:
    """Everything a reader needs, as JSON-ready values (see :meth:`Discovery.to_dict`)."""
    s = d.scores
    out = {
        "formula": formula_text(d.formula, precision=17),
        "formula_latex": d.latex(precision=6),
        "formula_srepr": sympy.srepr(d.formula),
        "recommended": d.recommended,
        "expansion_formula": formula_text(d.expansion_formula, precision=17),
        "expansion_formula_latex": formula_latex(d.expansion_formula, precision=6),
        "target": d.target_name,
        "features": list(d.names),
        "renamed": dict(d.renamed),
        "source": d.source,
        "space": d.space,
        "space_reason": d.space_reason,
        "order": d.order,
        "order_reason": d.order_reason,
        "scores": {"r2": s["r2"], "rmse": s["rmse"], "expansion_r2": s["expansion_r2"],
                   "expansion_rmse": s["expansion_rmse"], "rows_scored": int(len(d.score_index)),
                   "held_out": bool(len(d.test_index)), "validation_rmse": float(d.merged.val_rmse),
                   "validation_r2": float(d.merged.val_r2)},
        "terms": _records(d.terms),
        "candidates": _records(d.candidates),
        "rows": _rows_used(d),
        "reference_points": int(len(d.local)),
        "networks": {"members": int(d.fitted.members), "kept": [int(i) for i in d.members_kept],
                     "validation_rmse": [float(v) for v in d.fitted.val_rmse]},
        "timings": {k: float(v) for k, v in d.timings.items()},
        "notes": list(d.notes) + list(d.merged.notes),
        "data_warnings": list(d.data_warnings),
        "warnings": list(d.warnings),
        "settings": d.settings,
        "structure": d.structure,
        "crosscheck": None,
        "chosen": d.chosen,
        "chosen_reason": d.chosen_reason,
        "decomposition": None if d.decomposition is None else _decomposition_record(d),
    }
    c = d.crosscheck
    if c is not None:
        out["crosscheck"] = {
            "engine": c.engine, "verdict": c.verdict, "recommended": c.recommended, "reason": c.reason,
            "engine_formula": formula_text(c.engine_formula, precision=17), "evidence": list(c.evidence),
            "r2": {k: float(v) for k, v in c.r2.items()}, "complexity": {k: int(v) for k, v in c.complexity.items()},
            "times": {k: float(v) for k, v in c.times.items()}, "guided": c.guided,
        }
    return out


def _decomposition_record(d: "Discovery") -> dict:
    record = d.decomposition.to_dict()
    record["expression"] = formula_text(d.decomposition.expression, precision=17)
    record["chosen"] = d.chosen == "decomposition"
    return record


def decomposition_from_dict(record: dict, expression: sympy.Expr):
    """The :class:`~discovery.decompose.Decomposition` a ``result.json`` records (``expression``
    parsed by the reader; the tree's node formulas stay text)."""
    from discovery.decompose import Decomposition, Node

    def node(r: dict) -> Node:
        return Node(r["test"], r["evidence"], list(r["variables"]), [node(c) for c in r["children"]],
                    method=r.get("method"), expression=r.get("expression"),
                    val_rmse=math.nan if r.get("val_rmse") is None else float(r["val_rmse"]))

    nan = math.nan
    return Decomposition(expression, nan if record["val_rmse"] is None else float(record["val_rmse"]),
                         nan if record["val_r2"] is None else float(record["val_r2"]), node(record["tree"]),
                         list(record.get("notes") or []), dict(record.get("timings") or {}))


def decomposition_lines(d: "Discovery", indent: str = "  ") -> list[str]:
    """The decomposition tree as compact indented lines for :meth:`Discovery.summary`."""
    if d.decomposition is None:
        return []
    dec = d.decomposition
    head = "chosen" if d.chosen == "decomposition" else "not chosen"
    lines = [f"{indent}decomposition ({head}; validation RMSE {dec.val_rmse:.4g}, R^2 {dec.val_r2:.6f}): "
             f"{formula_text(dec.expression, precision=6)}"]

    def walk(node: dict, depth: int) -> None:
        pad = indent * (depth + 2)
        variables = ", ".join(node["variables"])
        if node["test"] == "leaf":
            rmse = "" if node["val_rmse"] is None else f", val RMSE {node['val_rmse']:.3g}"
            lines.append(f"{pad}leaf [{variables}] ({node['method']}{rmse}): {node['expression']}")
        else:
            lines.append(f"{pad}{node['test']} [{variables}]: {node['evidence']}")
        for child in node["children"]:
            walk(child, depth + 1)

    walk(dec.tree.to_dict(), 0)
    return lines


def to_json(d: "Discovery", indent: int | None = 2) -> str:
    """The result as a JSON string (see :func:`to_dict`)."""
    return json.dumps(to_dict(d), indent=indent, default=_json_default)


def _rows_used(d: "Discovery") -> dict:
    """How many rows each stage used (a large table trains and selects terms on samples)."""
    f = d.fitted
    return {"table": int(len(d.y)), "test": int(len(d.test_index)),
            "networks_train": int(f.train_rows),
            "networks_validation": int(f.val_rows),
            **{f"merge_{k}": int(v) for k, v in d.merged.rows.items()},
            "scored": int(len(d.score_index))}


def save(d: "Discovery", directory, *, report: bool = True) -> Path:
    """Write the result folder (see :meth:`Discovery.save` for the files and folder rules)."""

    def write(tmp: Path) -> None:
        (tmp / "result.json").write_text(to_json(d) + "\n")
        (tmp / "formula.txt").write_text(d.text(precision=17) + "\n")
        (tmp / "formula.tex").write_text(d.latex(precision=6) + "\n")
        d.terms.to_csv(tmp / "terms.csv", index=False)
        d.candidates.to_csv(tmp / "candidates.csv", index=False)
        np.savez(tmp / "local.npz", centers=d.local.centers, points=d.local.points,
                 monomials=d.local.monomials, coefficients=d.local.coefficients,
                 names=np.array(d.names), space=np.array(d.space))
        save_model(d, tmp / "model.pt")
        if report:
            start = time.perf_counter()
            write_report(d, tmp)
            _log.info("report: %.1f s", time.perf_counter() - start)

    start = time.perf_counter()
    path = write_folder(directory, write, f"Discovery.save({str(directory)!r})", d.source)
    _log.info("save: %.1f s", time.perf_counter() - start)
    return path


def report(d: "Discovery", directory) -> Path:
    """Write ``report.html`` with PNG figures into ``directory``; returns the path of the HTML."""
    path = write_folder(directory, lambda tmp: write_report(d, tmp), f"Discovery.report({str(directory)!r})",
                        d.source, replace_all=False)
    return path / "report.html"


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", default_handler=str))


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def save_model(d: "Discovery", path: Path) -> None:
    """The kept networks as one module from original-unit features (``log x`` in log space) to
    the ensemble-mean target (``log|y|`` in log space): standardisation folded into two Linear layers.

    Written in the weights-only format of :func:`discovery.modelio.save_model`, with the input
    names, the space and the training range of every input, so ``discovery expand`` reads it
    without unpickling and can refuse points the networks never saw."""
    import torch
    from torch import nn

    from discovery.modelio import save_model as write_model

    f = d.fitted
    p = len(d.names)
    first = nn.Linear(p, p, dtype=torch.float64)
    last = nn.Linear(f.members, 1, dtype=torch.float64)
    weights = np.zeros(f.members)
    weights[d.members_kept] = f.y_scale / len(d.members_kept)
    with torch.no_grad():
        first.weight.copy_(torch.diag(torch.from_numpy(1.0 / f.x_scale)))
        first.bias.copy_(torch.from_numpy(-f.x_mean / f.x_scale))
        last.weight.copy_(torch.from_numpy(weights)[None, :])
        last.bias.fill_(f.y_mean)
    model = nn.Sequential(first, *f.model, last).eval()
    model.requires_grad_(False)
    rows = d.X[d.fit_index] if len(d.fit_index) else d.X  # the rows the networks were trained and validated on
    inputs = np.log(np.abs(rows)) if d.space == "log" else rows
    write_model(model, path, names=d.names, space=d.space, input_min=inputs.min(axis=0),
                input_max=inputs.max(axis=0), target=d.target_name)
