"""discover(..., decompose=...): the decomposition as a candidate next to the expansion's formula.

The law y = a exp(-b / c) is not a polynomial: a quadratic expansion only approximates it, while
the decomposition (structure tests, then the closed-form leaf solver) reads it to the noise level
of the networks. Every choice is made on the validation rows; the test rows only score.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from discovery.pipeline import discover
from discovery.result import Discovery, evaluate_formula

FAST = {"max_epochs": 150, "patience": 50, "lbfgs_steps": 100, "hidden": (16, 16)}
COMMON = dict(target="y", order=2, space="raw", crosscheck="off", members=3, progress=False, fit_options=FAST)


def _frame(n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 2, (n, 3))
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X[:, 0] * np.exp(-X[:, 1] / X[:, 2])})


def _r2(y, pred) -> float:
    return 1.0 - float(np.sum((y - pred) ** 2)) / float(np.sum((y - y.mean()) ** 2))


@pytest.fixture(scope="module")
def decomposed():
    return discover(_frame(), decompose=True, time_budget=90, **COMMON)


def test_the_decomposition_wins_where_the_expansion_only_approximates(decomposed):
    d = decomposed
    assert d.decomposition is not None and d.chosen == "decomposition" and d.recommended == "decomposition"
    val = d.fit_index[d.fitted.val_index]  # the validation rows; the test rows are disjoint
    assert not set(val) & set(d.test_index)
    y = d.y[val]
    assert _r2(y, evaluate_formula(d.formula, d.X[val], d.names)) > 0.999
    assert d.merged.val_r2 < _r2(y, evaluate_formula(d.formula, d.X[val], d.names))  # the expansion is worse
    # the decomposition scored itself on exactly these rows, so it never saw a test row's target
    rmse = float(np.sqrt(np.mean((evaluate_formula(d.decomposition.expression, d.X[val], d.names) - y) ** 2)))
    assert rmse == pytest.approx(d.decomposition.val_rmse, rel=1e-9)
    assert d.chosen_reason.startswith("decomposition: more accurate")
    assert d.r2 > 0.999  # reported on the test rows
    assert not any("only approximates" in w for w in d.warnings)


def test_the_tree_is_in_the_summary_and_in_result_json(decomposed, tmp_path):
    d = decomposed
    summary = d.summary()
    assert "  decomposition (chosen; validation RMSE" in summary
    assert "leaf [" in summary  # the tree, one indented line per node
    assert "expansion's formula: " in summary and "chosen: decomposition: more accurate" in summary
    folder = d.save(tmp_path / "res", report=False)
    saved = json.loads((folder / "result.json").read_text())
    tree = saved["decomposition"]["tree"]
    assert saved["recommended"] == "decomposition" and saved["decomposition"]["chosen"] is True
    assert tree["test"] in {"leaf", "unused", "symmetry", "additive", "multiplicative"} and tree["evidence"]
    assert saved["settings"]["decompose"] == "on" and saved["settings"]["time_budget"] == 90
    assert "decompose" in saved["timings"] and saved["decomposition"]["timings"]["total"] > 0
    assert any(n.startswith("decomposition ran: decompose=True") for n in saved["notes"])
    loaded = Discovery.load(folder)  # read back: the same formula, the decomposition's, and its tree
    assert loaded.recommended == "decomposition" and loaded.text(precision=12) == d.text(precision=12)
    assert loaded.decomposition.tree.to_dict() == d.decomposition.tree.to_dict()


def test_decompose_false_never_runs_it():
    d = discover(_frame(), decompose=False, **COMMON)
    assert d.decomposition is None and d.chosen == "expansion" and "decompose" not in d.timings
    assert not any("decomposition" in n for n in d.notes)
    assert any(w.startswith("the expansion's formula only approximates") for w in d.warnings)
    assert json.loads(d.to_json())["decomposition"] is None


def test_auto_leaves_a_polynomial_law_to_the_expansion():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (800, 2))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": X[:, 0] ** 2 / 2 + X[:, 0] * X[:, 1]})
    d = discover(frame, decompose="auto", **COMMON)
    assert d.settings["decompose"] == "auto"
    assert d.decomposition is None and "decompose" not in d.timings and d.r2 > 0.9999


def test_a_spent_time_budget_cuts_the_decomposition_and_says_so():
    # auto sees that the expansion only approximates, but less than the 1 s a stage needs is left
    d = discover(_frame(600), decompose="auto", time_budget=1, **COMMON)
    assert d.decomposition is None and "decompose" not in d.timings
    cut = [n for n in d.notes if n.startswith("decomposition not run (the expansion's formula only approximates")]
    assert len(cut) == 1 and "time budget of 1 s was spent" in cut[0], d.notes
    assert f"note: {cut[0]}" in d.summary()


def test_the_report_shows_the_tree_of_tests_and_pieces(decomposed, tmp_path):
    d = decomposed
    page = d.report(tmp_path / "rep").read_text(encoding="utf-8")  # report() returns the page
    assert "<h2>Decomposition (chosen; validation R<sup>2</sup>" in page

    def tests_of(node):
        yield node.test
        for child in node.children:
            yield from tests_of(child)

    tree = page[page.index("<ul class='tree'>"):]
    for test in tests_of(d.decomposition.tree):  # every node of the tree, with its evidence
        assert f"<b>{test}</b>" in tree
    assert d.decomposition.tree.evidence[:20].replace("&", "&amp;").replace("<", "&lt;") in tree
