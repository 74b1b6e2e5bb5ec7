"""Test rows are used for nothing but the final score: scrambling their targets changes no formula
and no choice (networks, space, order, terms, cross-check recommendation), only the reported
score. Validation rows make every choice; training rows fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sympy

from discovery.crosscheck import compare
from discovery.pipeline import discover
from discovery.trust import split_rows

FAST = {"max_epochs": 150, "patience": 50, "lbfgs_steps": 50, "hidden": (16, 16)}
# generations, not the clock, end the search (one thread): the same data give the same front
OPERON = {"crosscheck_budget": 60, "crosscheck_options": {"generations": 5, "n_threads": 1}}


def test_row_sets_are_disjoint_and_cover_every_row():
    for n, test_fraction in [(40, 0.2), (400, 0.2), (1001, 0.3), (400, 0.0)]:
        r = split_rows(n, test_fraction, 0.2, seed=7)
        parts = [r.train, r.validation, r.test]
        assert sum(len(p) for p in parts) == n
        assert len(np.unique(np.concatenate(parts))) == n
        assert len(r.test) == (round(test_fraction * n) if n >= 50 else 0)
        assert len(r.validation) == round(0.2 * (n - len(r.test)))


@pytest.fixture(scope="module")
def original_and_scrambled():
    rng = np.random.default_rng(21)
    X = rng.uniform(0.5, 2.5, (400, 2))  # positive, so both spaces compete
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    y = y + 0.01 * y.std() * rng.standard_normal(len(y))
    frame = pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "y": y})
    kwargs = dict(target="y", order="auto", seed=3, crosscheck="operon", progress=False, fit_options=FAST,
                  members=3, **OPERON)
    first = discover(frame, **kwargs)
    scrambled = frame.copy()
    rows = first.test_index
    scrambled.loc[rows, "y"] = rng.permutation(y[rows])[::-1] * 3.0 - 1.0  # nothing like the law
    return first, discover(scrambled, **kwargs)


def test_scrambled_test_targets_change_no_formula_and_no_choice(original_and_scrambled):
    a, b = original_and_scrambled
    assert np.array_equal(a.test_index, b.test_index) and len(a.test_index) == 80
    assert str(a.formula) == str(b.formula) and str(a.expansion_formula) == str(b.expansion_formula)
    assert (a.space, a.space_reason, a.order, a.order_reason) == (b.space, b.space_reason, b.order, b.order_reason)
    pd.testing.assert_frame_equal(a.candidates, b.candidates)
    pd.testing.assert_frame_equal(a.terms, b.terms)
    assert np.array_equal(a.members_kept, b.members_kept)
    assert a.structure == b.structure
    ca, cb = a.crosscheck, b.crosscheck
    assert ca is not None and cb is not None
    assert (ca.verdict, ca.recommended, ca.reason) == (cb.verdict, cb.recommended, cb.reason)
    assert str(ca.engine_formula) == str(cb.engine_formula)
    assert ca.r2 == cb.r2  # the recommendation's scores are on validation rows
    assert ca.rows == cb.rows == {"train": 256, "validation": 64, "test": 80}


def test_scrambled_test_targets_change_the_reported_score(original_and_scrambled):
    a, b = original_and_scrambled
    assert a.r2 > 0.99 and b.r2 < 0
    assert a.crosscheck.r2_test != b.crosscheck.r2_test
    assert any(w.startswith("the formula is no better than a constant on the test rows") for w in b.warnings)
    assert not any("no better than" in w for w in a.warnings)


def test_compare_recommends_on_validation_rows_and_only_scores_test_rows():
    rng = np.random.default_rng(22)
    X = rng.uniform(-2, 2, (500, 2))
    t = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    x1, x2 = sympy.symbols("x1 x2")
    taylor = x1 - x1**3 / 6 + x2**2 / 2
    val, test = np.arange(0, 100), np.arange(100, 200)
    options = dict(validation_index=val, test_index=test, generations=5, n_threads=1, seed=0)
    c = compare(taylor, X, t, ["x1", "x2"], **options)
    scrambled = t.copy()
    scrambled[test] = rng.permutation(scrambled[test])
    d = compare(taylor, X, scrambled, ["x1", "x2"], **options)
    assert (c.recommended, c.verdict, str(c.engine_formula), c.r2) == (d.recommended, d.verdict, str(d.engine_formula), d.r2)
    assert c.r2_test != d.r2_test and d.r2_test["expansion"] < 0
    assert c.rows == {"train": 300, "validation": 100, "test": 100}
