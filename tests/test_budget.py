"""The time budget reaches into running work: a deadline already passed stops training after its
first epoch, a least-squares refit before its first evaluation, a closed-form search before its
families, the decomposition before any network, and each says so in its notes. No timing
asserts: a deadline in the past (or far in the future) makes every outcome deterministic."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import sympy

from discovery import decompose as decompose_module
from discovery.closedform import solve_piece
from discovery.closedform.fitting import float_floor, polish, variables
from discovery.decompose import decompose
from discovery.fit import fit_ensemble
from discovery.leaf import evaluate, least_squares_until, refit_constants
from discovery.pipeline import discover

PAST = -1.0  # a perf_counter time long gone
FUTURE = float("inf")


def _rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.5, 2.0, (n, 2))
    return X, np.exp(-X[:, 0]) * X[:, 1]


def test_training_stops_after_its_first_epoch_when_the_deadline_has_passed():
    X, y = _rows()
    fit = fit_ensemble(X, y, members=2, max_epochs=200, patience=200, lbfgs_steps=50, progress=False,
                       deadline=time.perf_counter() - 1.0)
    assert [len(h["train"]) for h in fit.history] == [1, 1]
    assert "Adam stopped after 1 of 200 epochs" in fit.cut and "L-BFGS polish skipped" in fit.cut
    assert np.all(np.isfinite(fit.predict(X)))  # still a model: the best weights after one epoch

    free = fit_ensemble(X, y, members=2, max_epochs=30, patience=200, lbfgs_steps=5, progress=False,
                        deadline=time.perf_counter() + 1e6)
    assert [len(h["train"]) for h in free.history] == [30, 30] and free.cut == ""


def test_least_squares_stops_before_its_first_evaluation_and_keeps_the_start():
    x, r, cut = least_squares_until(lambda t: t - 3.0, np.zeros(2), PAST)
    assert cut and x.tolist() == [0.0, 0.0]
    x, r, cut = least_squares_until(lambda t: t - 3.0, np.zeros(2), None)
    assert not cut and np.allclose(x, 3.0) and np.allclose(r, 0.0)


def test_least_squares_cut_midway_keeps_the_best_point_evaluated(monkeypatch):
    import discovery.leaf as leaf

    evaluations = []

    def residual(t):
        evaluations.append(float(t[0]))
        return np.array([t[0] - 3.0, 0.1 * (t[0] - 3.0) ** 2])

    # the deadline passes once four evaluations are done (read where least_squares_until reads it)
    monkeypatch.setattr(leaf, "expired", lambda deadline: len(evaluations) >= 4)
    x, r, cut = least_squares_until(residual, np.zeros(1), 0.0, method="trf")
    assert cut and len(evaluations) == 4
    costs = [(e - 3.0) ** 2 + (0.1 * (e - 3.0) ** 2) ** 2 for e in evaluations]
    assert float(x[0]) == evaluations[int(np.argmin(costs))] and float(x[0]) != 0.0


def test_refit_keeps_the_constants_when_its_deadline_has_passed():
    x = sympy.Symbol("x")
    X = np.linspace(0, 1, 50)[:, None]
    expr = sympy.Float(1.0) * sympy.exp(sympy.Float(-1.0) * x)
    y = 3 * np.exp(-2 * X[:, 0])
    assert refit_constants(expr, [x], X, y, deadline=time.perf_counter() - 1.0) == expr
    assert round(float(refit_constants(expr, [x], X, y, deadline=None).subs(x, 0)), 6) == 3.0


def test_polish_tries_no_snap_after_the_deadline_and_says_so():
    v = variables(1)[0]
    x = np.linspace(0.5, 2.0, 200)
    y = 2.0 * np.sin(1.5 * x)
    train, val = np.arange(200)[np.arange(200) % 4 != 0], np.arange(0, 200, 4)
    expr = sympy.Float(1.9) * sympy.sin(sympy.Float(1.49) * v)
    late = polish(expr, [v], [x], y, train, val, float_floor(y[val]), time.perf_counter() - 1.0)
    assert late.snapped == ["(time budget spent: snapping stopped, 2 of 2 constants not tried)"]
    assert late.expr == expr  # the refit stopped before its first evaluation: the constants as given
    free = polish(expr, [v], [x], y, train, val, float_floor(y[val]), None)
    assert free.expr == 2 * sympy.sin(sympy.Rational(3, 2) * v)


def test_closed_form_search_tries_no_family_once_its_budget_is_spent():
    x = np.linspace(0.1, 3, 120)[:, None]
    piece = solve_piece(x, np.sin(2 * x[:, 0]) + 1, ["x"], val_index=np.arange(0, 120, 4), engine="off",
                        time_budget=1e-9)
    assert "time budget reached before transformed polynomials" in piece.evidence
    assert "out of 1 tried" in piece.evidence  # only the training rows' mean
    assert piece.method.startswith("approximate") and np.isfinite(float(piece.expression))
    full = solve_piece(x, np.sin(2 * x[:, 0]) + 1, ["x"], val_index=np.arange(0, 120, 4), engine="off")
    assert "time budget" not in full.evidence and full.expression == sympy.sin(2 * sympy.Symbol("x")) + 1


def test_decomposition_out_of_time_trains_no_network_and_still_returns_a_formula(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.uniform(1, 2, (400, 3))
    y = X[:, 0] * np.exp(-X[:, 1] / X[:, 2])
    trained = []
    monkeypatch.setattr(decompose_module, "fit_ensemble", lambda *a, **k: trained.append(k) or fit_ensemble(*a, **k))
    d = decompose(X, y, ["a", "b", "c"], val_index=np.arange(300, 400), time_budget=1e-6, max_leaf_variables=3)
    assert trained == [] and "fit" not in d.timings
    assert any("fitted by the sparse polynomial leaf, the closed-form search not run" in n for n in d.notes)
    assert np.all(np.isfinite(evaluate(d.expression, sympy.symbols("a b c"), X)))


def test_decomposition_passes_its_search_deadline_to_every_network(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 2, (300, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    deadlines = []

    def spy(*a, **k):
        deadlines.append(k.get("deadline"))
        return fit_ensemble(*a, **k)

    monkeypatch.setattr(decompose_module, "fit_ensemble", spy)
    t0 = time.perf_counter()
    decompose(X, y, ["a", "b"], val_index=np.arange(240, 300), time_budget=1000.0, max_leaf_variables=1,
              fit_options={"members": 2, "max_epochs": 20, "lbfgs_steps": 0}, solve_leaf=_cheap_leaf)
    assert deadlines and all(d is not None and t0 < d < t0 + 1000.0 for d in deadlines)


def _cheap_leaf(X, y, names, *, val_index, seed, time_budget):
    from discovery.leaf import polynomial_leaf

    return polynomial_leaf(X, y, names, val_index=val_index, seed=seed, time_budget=time_budget, degree=2)


def test_discover_with_a_spent_budget_names_what_it_cut_and_returns_a_formula():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (200, 2))
    data = {"x1": X[:, 0], "x2": X[:, 1], "y": X[:, 0] ** 2 + 0.5 * X[:, 1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = discover(pd.DataFrame(data), target="y", members=2, crosscheck="off", progress=False,
                     time_budget=1e-3, decompose=True)
    assert any(n.startswith("raw space: time budget spent: training cut short") and "Adam stopped after 1 of" in n
               for n in d.notes)
    assert len(d.fitted.history[0]["train"]) == 1
    assert any("decomposition not run" in n and "time budget" in n for n in d.notes)
    assert set(d.timings) >= {"load", "fit raw", "expand raw", "merge raw", "choose", "total"}
    assert np.all(np.isfinite(evaluate(d.formula, sympy.symbols("x1 x2"), X)))


def test_equivalence_skips_simplify_where_the_numbers_show_no_constant_difference_or_ratio(monkeypatch):
    # simplify() of nested exp/cos formulas ran for minutes in the cross-check, past any budget;
    # its answer counts only where the numbers confirm a constant difference or ratio
    import importlib

    module = importlib.import_module("discovery.crosscheck.equivalence")  # the package re-exports a function of that name

    asked = []
    real = module._symbolic
    monkeypatch.setattr(module, "_symbolic", lambda a, b: asked.append((a, b)) or real(a, b))
    x, y = sympy.symbols("x y")
    X = np.random.default_rng(4).uniform(0.5, 2, (200, 2))
    nested = sympy.exp(sympy.cos(x / (y + 1))) * sympy.Float(0.3)
    other = sympy.exp(-(x - y) ** 2 / 2)
    assert module.equivalence(nested, other, X, ["x", "y"]).verdict == "disagree" and asked == []
    shifted = module.equivalence(nested, nested + 2, X, ["x", "y"])
    assert len(asked) == 1 and shifted.verdict == "equivalent up to constants"
    assert shifted.symbolic.startswith("difference is constant")
