"""When decompose="auto" runs the decomposition: ``stages.approximates``.

The paired mean of squared errors misses a formula whose excess error sits on a few rows (a
Taylor polynomial errs most at the edges of the domain); the signed-rank test on the same
paired differences sees it. Neither may fire where the formula is the law and only the networks
(trained on noisy rows) err.
"""

from __future__ import annotations

import numpy as np
import pytest

from discovery.fit import fit_ensemble
from discovery.stages import approximates
from discovery.trust import only_approximates


def test_an_excess_on_a_few_rows_is_seen_by_the_ranks():
    rng = np.random.default_rng(3)
    y = rng.normal(size=320)
    network = y + 1e-3 * rng.normal(size=320)
    formula = y + 3e-3 * rng.standard_cauchy(320)  # worse on most rows, hugely so on a few
    assert not only_approximates(y, formula, network)  # the mean's standard error hides it
    assert approximates(y, formula, network) == "signed-rank test"
    assert approximates(y, network, formula) is None  # and not the other way round


def test_round_off_is_no_excess():
    rng = np.random.default_rng(0)
    y = rng.normal(size=320)
    assert approximates(y, y + 1e-15 * rng.standard_cauchy(320), y + 1e-16 * rng.normal(size=320)) is None


@pytest.fixture(scope="module")
def noisy_law():
    """An ensemble trained on y = x0 exp(-x1 / x2) with 1 % noise, and its validation rows."""
    rng = np.random.default_rng(5)
    X = rng.uniform([0.5, 0.5, 1.0], [2.0, 2.0, 3.0], (1200, 3))
    truth = X[:, 0] * np.exp(-X[:, 1] / X[:, 2])
    y = truth + 0.01 * np.std(truth) * rng.standard_normal(len(truth))
    fit = fit_ensemble(X, y, members=3, hidden=(16, 16), max_epochs=200, patience=50, lbfgs_steps=100, seed=0,
                       progress=False)
    val = fit.val_index
    return X, y, truth, fit, val


def test_quiet_where_the_formula_is_the_law(noisy_law, one_thread):
    X, y, truth, fit, val = noisy_law
    network = fit.predict(X[val])
    assert approximates(y[val], truth[val], network) is None


def test_fires_where_a_quadratic_only_approximates(noisy_law, one_thread):
    X, y, truth, fit, val = noisy_law
    train = fit.train_index
    columns = lambda Z: np.column_stack([np.ones(len(Z)), Z, Z**2, Z[:, [0]] * Z[:, [1]], Z[:, [0]] * Z[:, [2]],
                                         Z[:, [1]] * Z[:, [2]]])
    coef, *_ = np.linalg.lstsq(columns(X[train]), y[train], rcond=None)
    quadratic = columns(X[val]) @ coef
    assert approximates(y[val], quadratic, fit.predict(X[val])) is not None
