"""Column names reach the formula exactly: discover() on columns named like SymPy objects,
with spaces, units and non-ASCII characters (they were renamed gamma_, I_, temp___C_)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import sympy

from discovery.pipeline import discover

FAST = {"max_epochs": 60, "patience": 20, "lbfgs_steps": 40, "hidden": (16, 16)}
NAMES = ["temp (°C)", "gamma", "I"]


@pytest.fixture(scope="module")
def unusual():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(-1, 1, (600, 3)), columns=NAMES)
    frame["E"] = 0.5 * frame["temp (°C)"] ** 2 + frame["gamma"] * frame["I"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is renamed, so nothing to warn about
        d = discover(frame, target="E", order=2, space="raw", crosscheck="off", members=2, progress=False,
                     fit_options=FAST)
    return frame, d


def test_formula_uses_the_column_names_exactly(unusual):
    frame, d = unusual
    assert d.names == NAMES and d.target_name == "E" and d.renamed == {}
    temp, gamma, current = (sympy.Symbol(n, real=True) for n in NAMES)
    assert sympy.expand(d.formula - (temp**2 / 2 + gamma * current)) == 0
    assert {s.name for s in d.formula.free_symbols} == set(NAMES)
    assert d.text() == "I*gamma + 0.5*temp (°C)**2"
    assert d.latex() == r"I \gamma + 0.5 \mathrm{temp\ (°C)}^{2}"


def test_predictions_and_exports_keep_the_names(unusual):
    frame, d = unusual
    np.testing.assert_allclose(d.predict(frame.iloc[:5]), frame["E"].iloc[:5], rtol=1e-12, atol=1e-12)
    out = json.loads(json.dumps(d.to_dict(), default=str))
    assert out["features"] == NAMES and out["target"] == "E" and out["renamed"] == {}
    assert out["formula"] == "I*gamma + 0.5*temp (°C)**2"
    assert out["formula_latex"] == r"I \gamma + 0.5 \mathrm{temp\ (°C)}^{2}"
