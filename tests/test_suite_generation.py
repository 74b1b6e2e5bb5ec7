"""The textbook law suite: deterministic generation, CSVs that match their formulas, sound ranges,
its size and mix, and the judge that decides whether a found formula is the law."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sympy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "datasets"))
sys.path.insert(0, str(ROOT / "experiments"))

import _suite  # noqa: E402
import generate_textbook as gt  # noqa: E402


def test_generation_is_deterministic(tmp_path):
    names = ["arrhenius", "planck", "malus"]
    gt.generate(tmp_path / "a", names, quiet=True)
    gt.generate(tmp_path / "b", names, quiet=True)
    for name in names:
        a = pd.read_csv(tmp_path / "a" / f"{name}.csv")
        b = pd.read_csv(tmp_path / "b" / f"{name}.csv")
        bundled = pd.read_csv(gt.OUT / f"{name}.csv")
        assert list(a.columns) == list(b.columns) == list(bundled.columns)
        # by value, not bytes: exp/log may differ in the last ulp across NumPy builds
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-13, atol=0)
        np.testing.assert_allclose(a.to_numpy(), bundled.to_numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("law", gt.LAWS, ids=lambda law: law.name)
def test_bundled_csv_matches_formula_and_ranges(law):
    frame = pd.read_csv(gt.OUT / f"{law.name}.csv")
    assert list(frame.columns) == [*law.variables, law.target]
    assert len(frame) == gt.ROWS
    assert all(c.isidentifier() for c in frame.columns)  # the judge parses the law's formula in these names
    values = frame.to_numpy()
    assert np.all(np.isfinite(values))
    for v, (lo, hi) in law.ranges.items():
        assert lo <= frame[v].min() and frame[v].max() <= hi
        assert frame[v].max() - frame[v].min() > 0.9 * (hi - lo)  # the range is actually covered
    y = frame[law.target].to_numpy()
    assert np.std(y) > 1e-3 * np.sqrt(np.mean(y**2))  # not degenerate on its ranges
    # the stored formula, evaluated independently of NumPy (SymPy/mpmath), gives the stored target
    for i in (0, 1, len(frame) // 2, len(frame) - 1):
        subs = {s: sympy.Float(float(frame.iloc[i][s.name]), 30) for s in law.symbols}
        assert float(law.expression.evalf(20, subs=subs)) == pytest.approx(y[i], rel=1e-10, abs=1e-300)


def test_suite_size_mix_and_index():
    assert len(gt.LAWS) >= 40
    assert sum(not law.polynomial_in_raw_or_log for law in gt.LAWS) >= 25
    assert all(2 <= len(law.variables) <= 9 for law in gt.LAWS)
    assert len({law.name for law in gt.LAWS}) == len(gt.LAWS)
    readme = (ROOT / "datasets" / "README.md").read_text()
    assert all(f"| `{law.name}` | `{law.target} = {law.formula}` |" in readme for law in gt.LAWS)
    index = json.loads((gt.OUT / "laws.json").read_text())
    assert [e["name"] for e in index] == [law.name for law in gt.LAWS]
    for entry, law in zip(index, gt.LAWS):
        assert entry["formula"] == law.formula and entry["source"]
        assert entry["polynomial_in_raw_or_log"] == law.polynomial_in_raw_or_log
        assert entry["ranges"] == {v: list(r) for v, r in law.ranges.items()}


def test_polynomial_flag():
    flags = {law.name: law.polynomial_in_raw_or_log for law in gt.LAWS}
    assert flags["coulomb"] and flags["kepler_third"] and flags["bernoulli"]  # log monomial; raw polynomial
    assert not flags["malus"] and not flags["relativistic_mass"] and not flags["arrhenius"]
    assert not flags["thin_lens"]  # rational: neither a polynomial nor a power law


def _law(name):
    return _suite.laws("textbook", [name])[0]


def _perturbed(expr, rel):
    expr = sympy.sympify(expr).evalf()
    return expr.xreplace({f: f * (1 + rel) for f in expr.atoms(sympy.Float)})


@pytest.mark.parametrize("law", _suite.laws("textbook") + _suite.laws("public"), ids=lambda law: law.name)
def test_judge_accepts_the_law_within_rounding_and_rejects_changes(law):
    truth = law.law.expression
    assert _suite.judge(truth, law).how == "sympy"
    near = _perturbed(truth, 1e-6)  # constants moved well inside the third significant digit
    assert _suite.judge(near, law)
    assert _suite.judge(near + 1.5, law)  # a constant offset
    assert _suite.judge(10 * near, law)  # a constant factor (one that keeps the rounded digits)
    x = law.law.symbols[0]
    assert not _suite.judge(truth + x, law)
    assert not _suite.judge(truth * x, law)
    assert _suite.r2_fresh(truth, law) == pytest.approx(1.0, abs=1e-12)


def test_judge_rejects_near_misses():
    arrhenius = _law("arrhenius")
    A, Ea, T = arrhenius.law.symbols
    assert _suite.judge(A * sympy.exp(-Ea / (8.314 * T)), arrhenius)
    assert not _suite.judge(A * sympy.exp(-Ea / (8.0 * T)), arrhenius)  # a constant that changes the law
    assert not _suite.judge(A * sympy.exp(-Ea / (8.5 * T)), arrhenius)  # 1/8.5 = 0.118, not 0.120
    malus = _law("malus")
    I0, theta = malus.law.symbols
    assert not _suite.judge(I0 * sympy.sin(theta) ** 2, malus)
    assert not _suite.judge(I0 * (1 - theta**2 + theta**4 / 3), malus)  # its Taylor polynomial
    mass = _law("relativistic_mass")
    m0, v, c = mass.law.symbols
    assert not _suite.judge(m0 / sympy.sqrt(1 + v**2 / c**2), mass)
    assert _suite.judge("m0*(1 - v**2/c**2)**(-0.5)", mass)  # text, another way to write it
    assert not _suite.judge("m0 + undefined_name", mass)


def test_noise_is_relative_to_rms_and_seeded():
    y = np.linspace(1.0, 3.0, 20_000)
    noisy = _suite.add_noise(y, 0.1, seed=3)
    assert np.array_equal(noisy, _suite.add_noise(y, 0.1, seed=3))
    assert np.std(noisy - y) == pytest.approx(0.1 * np.sqrt(np.mean(y**2)), rel=0.03)
    assert np.array_equal(_suite.add_noise(y, 0.0, seed=3), y)


def test_fresh_rows_are_not_the_training_rows():
    law = _law("coulomb")
    train, fresh = law.table(), law.fresh()
    assert not np.isin(fresh["q1"].to_numpy(), train["q1"].to_numpy()).any()
    assert _suite.r2_fresh(law.law.expression, law, fresh) == pytest.approx(1.0, abs=1e-12)


def test_judge_rounds_a_law_written_as_a_product_and_a_formula_written_as_a_sum_alike():
    pendulum = _law("pendulum_large_amplitude")
    L, g, theta0 = pendulum.law.symbols
    # 2*pi/16 = 0.39270: the law's own term, rounded in the sum
    assert _suite.judge(0.3927 * theta0**2 * sympy.sqrt(L / g) + 2 * sympy.pi * sympy.sqrt(L / g), pendulum)
    assert not _suite.judge(0.38 * theta0**2 * sympy.sqrt(L / g) + 2 * sympy.pi * sympy.sqrt(L / g), pendulum)
