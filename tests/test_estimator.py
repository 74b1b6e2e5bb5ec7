"""DiscoveryRegressor: scikit-learn's estimator checks and a real recovery through the sklearn API."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import sympy
from sklearn.utils.estimator_checks import parametrize_with_checks

from discovery.estimator import DiscoveryRegressor

FAST = dict(order=1, members=2, hidden=(8,), max_epochs=40, lbfgs_steps=20, reference_points=4, random_state=0)



# Every check applies and passes (no expected failures): predictions come from a formula, so they
# are invariant to row order and subsets, and small data (down to 2 rows) is accepted.
@parametrize_with_checks([DiscoveryRegressor(**FAST)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_recovers_quadratic_with_column_names():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.uniform(-1, 1, (600, 2)), columns=["a", "b"])
    y = (X["a"] ** 2 + X["b"]) / 2
    model = DiscoveryRegressor(order=2, members=3, random_state=0, space="raw").fit(X, y)
    a, b = sympy.symbols("a b")
    assert sympy.simplify(model.sympy() - (a**2 + b) / 2) == 0
    assert model.latex() == "0.5 a^{2} + 0.5 b"
    np.testing.assert_allclose(model.predict(X.iloc[:5]), y.iloc[:5], rtol=1e-9, atol=1e-12)
    assert model.equations_["chosen"].sum() == 1


def test_standardised_inputs_warn_and_a_poor_z_score_fit_is_not_snapped():
    # A law in raw units (y = m v / r) behind a StandardScaler: a quadratic in z-scores fits it
    # to R^2 0.96 only. It was returned under snapped fractions (-5/3, 17/6, ...) as if exact.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.uniform(1, 5, (500, 3)), columns=["m", "v", "r"])
    y = X["m"] * X["v"] / X["r"]
    regressor = DiscoveryRegressor(order=2, members=2, hidden=(16, 16), max_epochs=100, lbfgs_steps=50,
                                   reference_points=8, random_state=0)
    model = make_pipeline(StandardScaler(), regressor)
    with pytest.warns(UserWarning, match=r"^DiscoveryRegressor.fit\(X, y\): every column of X has mean 0 .* z-scores"):
        model.fit(X, y)
    merged = regressor.discovery_.merged
    assert merged.val_r2 < 0.99
    assert not [n for n in merged.notes if n.startswith("snapped")]
    assert any(n.startswith("not snapped: the refit is not accurate to the noise level") for n in merged.notes)
    assert not regressor.sympy().atoms(sympy.Rational) - {sympy.Integer(1), sympy.Integer(-1), sympy.Integer(2)}


def test_raw_inputs_do_not_warn_about_standardisation():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 2))  # mean and spread near, but not exactly at, 0 and 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DiscoveryRegressor(**FAST).fit(X, X[:, 0] + 2 * X[:, 1])


def test_column_names_that_sympy_defines_are_kept_in_the_formula():
    # They came back as gamma_, I_, E_ and temp___C_ in formulas and LaTeX.
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.uniform(-1, 1, (400, 3)), columns=["gamma", "I", "temp (°C)"])
    y = 2 * X["gamma"] + X["I"] - 3 * X["temp (°C)"]
    model = DiscoveryRegressor(**{**FAST, "order": 1}, space="raw").fit(X, y)
    gamma, current, temp = sympy.Symbol("gamma"), sympy.Symbol("I"), sympy.Symbol("temp (°C)")
    assert model.sympy() == 2 * gamma + current - 3 * temp
    assert model.latex() == r"I + 2 \gamma - 3 \mathrm{temp\ (°C)}"
    np.testing.assert_allclose(model.predict(X.iloc[:5]), y.iloc[:5], rtol=1e-9, atol=1e-12)
