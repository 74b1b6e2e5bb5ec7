"""DiscoveryRegressor: scikit-learn's estimator checks and a real recovery through the sklearn API."""

from __future__ import annotations

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
