"""discover() end to end on real data: recovery, scores, exports, errors."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sympy

from discovery.errors import DataError, DiscoveryError, DiscoveryWarning
from discovery.pipeline import discover

ROOT = Path(__file__).resolve().parents[1]
QUADRATIC = ROOT / "datasets" / "paper_quadratic.csv"
FAST = {"max_epochs": 150, "patience": 50, "lbfgs_steps": 150, "hidden": (16, 16)}


@pytest.fixture(scope="module")
def quadratic():
    """The paper's y = (x1^2 + x2)/2 with default settings, cross-check off."""
    with pytest.warns(DiscoveryWarning, match="no target given: the last column 'y'"):
        return discover(QUADRATIC, order=2, crosscheck="off", progress=False)


def test_recovers_paper_quadratic_exactly(quadratic):
    x1, x2 = sympy.symbols("x1 x2", real=True)
    assert sympy.simplify(quadratic.formula - (x1**2 + x2) / 2) == 0
    assert quadratic.latex() == "0.5 x_{1}^{2} + 0.5 x_{2}"
    assert quadratic.latex(precision=3) == quadratic.latex()
    assert quadratic.r2 > 0.999999 and quadratic.rmse < 1e-6
    assert quadratic.space == "raw" and "log space needs positive" in quadratic.space_reason
    assert quadratic.crosscheck is None and quadratic.formula == quadratic.expansion_formula
    # an exact law: the only warning is that the target was taken by default
    assert quadratic.warnings == ["no target given: the last column 'y' was explained; pass target=... "
                                  "to explain another column"]
    assert "warning: no target given" in quadratic.summary()


def test_terms_table_says_what_was_kept_and_why(quadratic):
    t = quadratic.terms
    assert {"term", "coefficient", "spread", "kept", "reason"} <= set(t.columns)
    assert sorted(t.loc[t["kept"], "term"]) == ["x1**2", "x2"]
    assert t.loc[~t["kept"], "reason"].str.startswith("pruned").all()


def test_local_polynomials_and_predict(quadratic):
    assert len(quadratic.local) >= 8
    assert quadratic.local.coefficients.shape[:2] == (len(quadratic.local), 6)
    frame = pd.DataFrame({"x2": [0.5, -1.0], "x1": [2.0, 0.0]})  # columns by name, any order
    np.testing.assert_allclose(quadratic.predict(frame), [2.25, -0.5], rtol=1e-12)
    np.testing.assert_allclose(quadratic.predict(np.array([[2.0, 0.5]])), [2.25], rtol=1e-12)
    assert abs(quadratic.predict_network(np.array([[0.5, 0.5]]))[0] - 0.375) < 1e-2
    with pytest.raises(DataError, match="has no column 'x1'"):
        quadratic.predict(pd.DataFrame({"x2": [1.0]}))


def test_save_writes_everything_atomically_and_keeps_input(quadratic, tmp_path):
    before = hashlib.sha256(QUADRATIC.read_bytes()).hexdigest()
    out = quadratic.save(tmp_path / "res")
    names = {p.name for p in out.iterdir()}
    assert {"result.json", "formula.txt", "formula.tex", "terms.csv", "local.npz", "model.pt", "report.html",
            "coefficients.png", "parity.png", "residuals.png", "slices.png"} <= names
    data = json.loads((out / "result.json").read_text())
    assert data["formula"] == "0.5*x1**2 + 0.5*x2" and data["space"] == "raw"
    assert "x1" in (out / "report.html").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    quadratic.save(out)  # an earlier result folder may be replaced
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(DiscoveryError, match="not an earlier result folder"):
        quadratic.save(keep)
    assert (keep / "notes.txt").read_text() == "mine"
    assert hashlib.sha256(QUADRATIC.read_bytes()).hexdigest() == before


def test_saved_model_is_the_network_in_original_units(quadratic, tmp_path):
    import torch

    from discovery.modelio import load_model

    out = quadratic.save(tmp_path / "res", report=False)
    model = load_model(out / "model.pt")  # weights only: no pickle is run
    x = np.array([[0.3, -0.2], [-0.7, 0.9]])
    got = model(torch.from_numpy(x)).numpy()[:, 0]
    np.testing.assert_allclose(got, quadratic.predict_network(x), rtol=1e-12)


def test_log_space_finds_a_power_law_with_clean_exponents():
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 5, (800, 2))
    frame = pd.DataFrame({"g": X[:, 0], "h": X[:, 1], "v": np.sqrt(2 * X[:, 0] * X[:, 1])})
    d = discover(frame, order=2, crosscheck="off", progress=False, fit_options=FAST)
    g, h = sympy.symbols("g h", real=True)
    assert d.space == "log" and d.space_reason.startswith("log space")
    assert d.formula == sympy.sqrt(2) * sympy.sqrt(g) * sympy.sqrt(h)
    assert d.r2 > 0.999999


def test_order_auto_keeps_the_simplest_accurate_order():
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (600, 2))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": 2 * X[:, 0] - X[:, 1] + 0.5})
    d = discover(frame, order="auto", crosscheck="off", progress=False, fit_options=FAST)
    a, b = sympy.symbols("a b", real=True)
    assert d.order == 1 and "order 1" in d.order_reason
    assert sympy.simplify(d.formula - (2 * a - b + 0.5)) == 0
    assert sorted(d.candidates["order"]) == [1, 2, 3, 4]


def test_crosscheck_with_operon_shows_both_formulas():
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, (400, 2))
    frame = pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "y": (X[:, 0] ** 2 + X[:, 1]) / 2})
    d = discover(frame, order=2, crosscheck="operon", progress=False, fit_options=FAST,
                 crosscheck_budget=10, crosscheck_options={"generations": 10, "n_threads": 1})
    c = d.crosscheck
    assert c is not None and c.engine == "operon"
    assert c.verdict == "agree" and c.recommended == "expansion"  # exact data, the same law, as simple
    assert c.r2["expansion"] > 0.999999 and c.r2_test["expansion"] > 0.999999
    assert str(d.formula) == str(c.recommended_formula) and str(d.expansion_formula) == str(c.expansion_formula)
    assert d.formula.free_symbols == d.expansion_formula.free_symbols  # one set of symbols either way
    assert "cross-check (operon)" in d.summary()
    assert json.loads(d.to_json())["crosscheck"]["verdict"] == c.verdict


def test_structure_of_the_networks_splits_the_law_and_guides_operon():
    # y = x1^2 + sin(x2), x3 is noise-free but irrelevant: the exact Hessians of the ensemble
    # show the additive split and the gradient shows x3 has no influence.
    rng = np.random.default_rng(6)
    X = rng.uniform(-2, 2, (800, 3))
    frame = pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "y": X[:, 0] ** 2 + np.sin(X[:, 1])})
    d = discover(frame, order=3, progress=False, fit_options=FAST, crosscheck="operon", crosscheck_guide="structure",
                 crosscheck_budget=10, crosscheck_options={"generations": 10, "n_threads": 1})
    s = d.structure
    assert s["inputs_without_influence"] == ["x3"] and s["inputs_with_influence"] == ["x1", "x2"]
    assert s["additive_blocks"] == [["x1"], ["x2"], ["x3"]]
    assert "y = f1(x1) + f2(x2) + f3(x3); no influence: x3" in d.summary()
    assert json.loads(d.to_json())["structure"]["additive_blocks"] == s["additive_blocks"]
    assert d.crosscheck is not None and "x3" not in {v.name for v in d.crosscheck.engine_formula.free_symbols}
    assert d.crosscheck.guided  # the engine was told what the derivatives found


def test_structure_sees_no_split_in_a_product():
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, (600, 2))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": np.sin(X[:, 0] * X[:, 1] * 2)})
    d = discover(frame, order=3, progress=False, fit_options=FAST, crosscheck="off")
    assert d.structure["additive_blocks"] == [["a", "b"]]
    with pytest.raises(DataError, match="crosscheck_guide"):
        discover(frame, order=2, progress=False, crosscheck="operon", crosscheck_guide="yes", fit_options=FAST)


def test_an_engine_that_does_not_run_is_a_note_and_a_warning_not_a_crash():
    if __import__("importlib").util.find_spec("pysr") is not None:
        pytest.skip("PySR is installed here")
    frame = pd.read_csv(QUADRATIC).iloc[:300]
    with pytest.warns(DiscoveryWarning, match="no cross-check ran: pysr"):
        d = discover(frame, target="y", crosscheck="pysr", progress=False, fit_options=FAST)
    assert d.crosscheck is None  # PySR needs Julia; without it the formula still comes back
    assert any(n.startswith("cross-check with pysr did not run") and "not installed" in n for n in d.notes)
    assert d.r2 > 0.9999


def test_bad_arguments_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="order=9"):
        discover(QUADRATIC, order=9)
    with pytest.raises(DataError, match="space='log' needs positive"):
        discover(QUADRATIC, space="log", crosscheck="off")
    with pytest.raises(DataError, match="crosscheck='magic'"):
        discover(QUADRATIC, crosscheck="magic")
    with pytest.raises(DataError, match="seed='0'"):
        discover(QUADRATIC, seed="0")
    with pytest.raises(DataError, match="no such file"):
        discover(tmp_path / "missing.csv")
