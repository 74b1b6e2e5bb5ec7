"""sample_weight in training (fit_ensemble) and in the merge's least squares; warm_start of the estimator."""

from __future__ import annotations

import functools
import sys

import numpy as np
import sympy
import pytest
import torch

from discovery.errors import DataError
from discovery.fit import _BatchedMLP, _row_weights, _weighted_loss, fit_ensemble

SMALL = dict(members=2, hidden=(8,), max_epochs=60, lbfgs_steps=0, progress=False, max_rows=None)


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, X[:, 0] ** 2 + 0.5 * X[:, 1]


# --------------------------------------------------------------------------------------------- fit_ensemble
def test_weighted_training_loss_equals_the_loss_on_repeated_rows():
    rng = np.random.default_rng(1)
    z = torch.from_numpy(rng.standard_normal((30, 2)))
    t = torch.from_numpy(rng.standard_normal(30))
    w = rng.integers(0, 4, 30).astype(np.float64)
    w[0] = 2.0
    net = _BatchedMLP((2, 8, 1), 3, "tanh", torch.Generator().manual_seed(0), torch.float64)
    rep = np.repeat(np.arange(30), w.astype(int))
    with torch.no_grad():
        weighted = _weighted_loss(net(z), t, torch.from_numpy(_row_weights(np.ones((3, 30)), w)))
        repeated = _weighted_loss(net(z[rep]), t[rep], torch.from_numpy(_row_weights(np.ones((3, len(rep))), None)))
        unweighted = _weighted_loss(net(z), t, torch.from_numpy(_row_weights(np.ones((3, 30)), None)))
    np.testing.assert_allclose(weighted.numpy(), repeated.numpy(), rtol=1e-12)
    assert not np.allclose(weighted.numpy(), unweighted.numpy(), rtol=1e-6)  # the weights do act


def test_weighted_fit_equals_a_fit_on_repeated_rows():
    # Integer weights and repeated rows give the same standardisation, gradients and validation
    # losses, so the whole training run agrees up to float64 round-off.
    X, y = _table()
    w = np.random.default_rng(2).integers(0, 4, len(y)).astype(np.float64)
    train, val = np.arange(0, 45), np.arange(45, 60)
    w[train[:2]] = w[val[:2]] = 1.0
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    pos = np.arange(len(rep))
    split_rep = (pos[rep < 45], pos[rep >= 45])
    kw = dict(SMALL, bootstrap=False, dtype=torch.float64, lbfgs_steps=20)
    a = fit_ensemble(X, y, split=(train, val), sample_weight=w, **kw)
    b = fit_ensemble(X[rep], y[rep], split=split_rep, **kw)
    c = fit_ensemble(X, y, split=(train, val), **kw)
    np.testing.assert_allclose(a.val_rmse, b.val_rmse, rtol=1e-6)
    np.testing.assert_allclose(a.predict_members(X), b.predict_members(X), rtol=1e-6, atol=1e-9)
    assert not np.allclose(a.predict_members(X), c.predict_members(X), rtol=1e-3)


def test_none_and_unit_weights_train_the_same_model():
    X, y = _table()
    a = fit_ensemble(X, y, seed=3, **SMALL)
    b = fit_ensemble(X, y, seed=3, sample_weight=np.ones(len(y)), **SMALL)
    np.testing.assert_allclose(a.predict_members(X), b.predict_members(X), rtol=1e-5, atol=1e-7)


def test_zero_weight_on_corrupted_rows_trains_the_clean_law():
    X, y = _table(200, seed=4)
    bad = np.zeros(len(y), dtype=bool)
    bad[::4] = True
    y_bad = np.where(bad, y + 3.0, y)
    w = (~bad).astype(np.float64)
    kw = dict(SMALL, max_epochs=300, lbfgs_steps=50, seed=0)
    weighted = fit_ensemble(X, y_bad, sample_weight=w, **kw)
    plain = fit_ensemble(X, y_bad, **kw)
    err_w = np.sqrt(np.mean((weighted.predict(X) - y) ** 2))
    err_p = np.sqrt(np.mean((plain.predict(X) - y) ** 2))
    # unweighted, the networks average the 3.0 offset of a quarter of the rows (about 0.75 off)
    assert err_p > 0.5
    assert err_w < 0.1 * err_p


@pytest.mark.parametrize("w, match", [
    (-np.ones(60), "negative"),
    (np.full(60, np.nan), "NaN or infinite"),
    (np.ones(59), r"shape \(59,\)"),
    (np.zeros(60), "every sample_weight is 0"),
    (np.r_[np.ones(45), np.zeros(15)], "every validation row has weight 0"),
])
def test_invalid_weights_raise_data_error(w, match):
    X, y = _table()
    with pytest.raises(DataError, match=r"^fit_ensemble\(X, y, sample_weight=w\): .*" + match):
        fit_ensemble(X, y, split=(np.arange(45), np.arange(45, 60)), sample_weight=w, **SMALL)


# --------------------------------------------------------------------------------------------- merge
def _local(table, true, rng, B=8, M=3, noise=1e-3):
    return true[None, :, None] + noise * rng.standard_normal((B, len(table), M))


def test_integer_weights_equal_repeated_rows_in_the_merge():
    from discovery.engine import monomials
    from discovery.merge import merge

    table = monomials(2, 2)  # 1, x1, x2, x1^2, x1 x2, x2^2
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, (120, 2))
    y = 0.5 * X[:, 0] ** 2 + X[:, 1] + 0.3 * X[:, 0] * X[:, 1] + 0.05 * rng.standard_normal(120)
    true = np.array([0, 0, 1.0, 0.5, 0.3, 0.0])
    local = _local(table, true, rng, noise=0.05)
    w = rng.integers(0, 4, 120).astype(np.float64)
    val = np.arange(90, 120)
    w[[0, 1, 90, 91]] = 1.0
    rep = np.repeat(np.arange(120), w.astype(int))
    val_rep = np.flatnonzero(rep >= 90)
    kw = dict(names=["x1", "x2"], center="origin", snap=False)
    weighted = merge(table, local, np.zeros((8, 2)), X, y, val_index=val, sample_weight=w, **kw)
    repeated = merge(table, local, np.zeros((8, 2)), X[rep], y[rep], val_index=val_rep, **kw)
    plain = merge(table, local, np.zeros((8, 2)), X, y, val_index=val, **kw)
    np.testing.assert_array_equal(weighted.monomials, repeated.monomials)
    np.testing.assert_allclose(weighted.refit_coefficients, repeated.refit_coefficients, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weighted.terms["refit"], repeated.terms["refit"], rtol=0, atol=1e-10)
    assert abs(weighted.val_rmse - repeated.val_rmse) < 1e-10
    assert abs(weighted.val_r2 - repeated.val_r2) < 1e-10
    np.testing.assert_allclose(weighted.terms["contribution"], repeated.terms["contribution"], rtol=1e-12)
    assert abs(weighted.val_rmse - plain.val_rmse) > 1e-6  # the weights do act


def test_integer_weights_equal_repeated_rows_in_the_log_space_refit():
    from discovery.engine import monomials
    from discovery.merge import merge

    table = monomials(2, 1)
    rng = np.random.default_rng(6)
    X = rng.uniform(1, 3, (80, 2))
    y = 2.0 * X[:, 0] ** 1.5 / X[:, 1] * (1 + 0.02 * rng.standard_normal(80))
    local = _local(table, np.array([np.log(2.0), 1.5, -1.0]), rng, noise=0.01)
    w = rng.integers(1, 4, 80).astype(np.float64)
    val = np.arange(60, 80)
    rep = np.repeat(np.arange(80), w.astype(int))
    kw = dict(names=["a", "b"], space="log", snap=False)
    weighted = merge(table, local, np.zeros((8, 2)), X, y, val_index=val, sample_weight=w, **kw)
    repeated = merge(table, local, np.zeros((8, 2)), X[rep], y[rep], val_index=np.flatnonzero(rep >= 60), **kw)
    np.testing.assert_allclose(weighted.refit_coefficients, repeated.refit_coefficients, rtol=0, atol=1e-8)
    assert abs(weighted.val_rmse - repeated.val_rmse) < 1e-10


def test_zero_weight_on_corrupted_rows_gives_the_clean_formula_in_the_merge():
    from discovery.engine import monomials
    from discovery.merge import merge

    table = monomials(2, 2)
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, (400, 2))
    clean = 0.5 * X[:, 0] ** 2 + 0.5 * X[:, 1]
    bad = X[:, 0] > 0.5  # a block of rows whose target is corrupted by a smooth offset
    y = np.where(bad, clean + 2.0 * X[:, 0], clean)
    local = _local(table, np.array([0, 0, 0.5, 0.5, 0, 0.0]), rng)
    w = (~bad).astype(np.float64)
    kw = dict(names=["x1", "x2"], seed=0)
    weighted = merge(table, local, np.zeros((8, 2)), X, y, sample_weight=w, **kw)
    plain = merge(table, local, np.zeros((8, 2)), X, y, **kw)
    assert weighted.text() == "0.5*x1**2 + 0.5*x2"
    assert weighted.val_rmse < 1e-9
    assert plain.text() != weighted.text()
    assert np.sqrt(np.mean((plain.predict(X[~bad]) - clean[~bad]) ** 2)) > 0.05


def test_merge_rejects_invalid_weights():
    from discovery.engine import monomials
    from discovery.merge import merge

    table = monomials(2, 1)
    X = np.random.default_rng(8).uniform(-1, 1, (40, 2))
    local = np.zeros((2, 3, 1)) + 0.5
    for w, match in [(np.ones(39), "shape"), (np.r_[-1.0, np.ones(39)], "negative"), (np.zeros(40), "is 0"),
                     (np.r_[np.ones(30), np.zeros(10)], "every validation row has weight 0")]:
        with pytest.raises(DataError, match=r"^merge\(\.\.\., sample_weight=w\): .*" + match):
            merge(table, local, np.zeros((2, 2)), X, X.sum(axis=1), val_index=np.arange(30, 40), sample_weight=w)


# --------------------------------------------------------------------------------------------- estimator
WARM = dict(space="raw", members=2, hidden=(16, 16), max_epochs=100, lbfgs_steps=30, reference_points=6,
            random_state=0)


@pytest.fixture
def fit_calls(monkeypatch):
    """Counts calls of fit_ensemble; the real function still runs on every call."""
    import discovery.fit
    import discovery.pipeline  # noqa: F401  (loads every module that imports fit_ensemble by name)

    real = discovery.fit.fit_ensemble
    calls = []

    @functools.wraps(real)  # discover reads fit_ensemble's signature
    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("discovery") and getattr(module, "fit_ensemble", None) is real:
            monkeypatch.setattr(module, "fit_ensemble", counted)
    return calls


def _quadratic_table():
    # a polynomial law read exactly at orders 2 and 3 (so no order calls for a decomposition)
    rng = np.random.default_rng(9)
    X = rng.uniform(-1, 1, (300, 2))
    return X, 0.5 * X[:, 0] ** 2 + X[:, 0] * X[:, 1] + 0.25 * X[:, 1]


def test_warm_refit_at_another_order_equals_a_cold_fit_without_training(fit_calls):
    from discovery.estimator import DiscoveryRegressor

    X, y = _quadratic_table()
    model = DiscoveryRegressor(order=3, warm_start=True, **WARM).fit(X, y)
    assert len(fit_calls) == 1 and not model.warm_started_
    three = model.discovery_
    model.set_params(order=2).fit(X, y)
    assert len(fit_calls) == 1, "a warm refit must not train the networks"
    assert model.warm_started_ and "re-merged at order 2" in model.warm_start_note_
    assert model.discovery_.fitted is three.fitted  # the very same networks

    cold = DiscoveryRegressor(order=2, **WARM).fit(X, y)
    assert len(fit_calls) == 2 and not cold.warm_started_
    assert str(model.sympy()) == str(cold.sympy())
    assert model.discovery_.order == cold.discovery_.order == 2
    assert model.discovery_.order_reason == cold.discovery_.order_reason
    cols = ["space", "order", "val_rmse", "formula", "chosen"]
    pd_cold, pd_warm = cold.discovery_.candidates[cols], model.discovery_.candidates[cols]
    assert pd_warm.equals(pd_cold)
    assert model.equations_[["equation", "loss"]].equals(cold.equations_[["equation", "loss"]])
    np.testing.assert_array_equal(model.predict(X), cold.predict(X))
    # and back at order 3, the first result's formula again, still without training
    model.set_params(order=3).fit(X, y)
    assert len(fit_calls) == 2 and model.warm_started_
    assert str(model.discovery_.formula) == str(three.formula)


def test_warm_start_trains_again_when_the_data_or_the_settings_change(fit_calls):
    from discovery.estimator import DiscoveryRegressor

    X, y = _quadratic_table()
    model = DiscoveryRegressor(order=2, warm_start=True, **WARM).fit(X, y)
    y2 = y.copy()
    y2[0] += 1e-3  # same shape, other contents
    model.set_params(order=1).fit(X, y2)
    assert len(fit_calls) == 2 and not model.warm_started_ and "changed" in model.warm_start_note_
    model.set_params(order=2, members=3).fit(X, y2)
    assert len(fit_calls) == 3 and not model.warm_started_
    model.set_params(order=3).fit(X, y2)  # the stored expansion stops at order 2
    assert len(fit_calls) == 4 and not model.warm_started_ and "order 2 < 3" in model.warm_start_note_
    off = DiscoveryRegressor(order=2, **WARM).fit(X, y)
    off.set_params(order=1).fit(X, y)
    assert len(fit_calls) == 6 and not off.warm_started_


def test_estimator_rejects_invalid_weights():
    from discovery.estimator import DiscoveryRegressor

    X, y = _quadratic_table()
    with pytest.raises(ValueError, match="zero"):
        DiscoveryRegressor(**WARM).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError):
        DiscoveryRegressor(**WARM).fit(X, y, sample_weight=-np.ones(len(y)))


def test_zero_weight_on_corrupted_rows_gives_the_clean_law_through_the_estimator():
    from discovery.estimator import DiscoveryRegressor

    rng = np.random.default_rng(10)
    X = rng.uniform(-1, 1, (500, 2))
    clean = 0.5 * X[:, 0] ** 2 + 0.5 * X[:, 1]
    bad = X[:, 0] > 0.5
    y = np.where(bad, clean + 2.0 * X[:, 0] ** 3, clean)
    kw = dict(order=3, space="raw", members=3, random_state=0)
    weighted = DiscoveryRegressor(**kw).fit(X, y, sample_weight=(~bad).astype(float))
    plain = DiscoveryRegressor(**kw).fit(X, y)
    x0, x1 = sympy.symbols("x0 x1")
    assert sympy.simplify(weighted.sympy() - (x0**2 + x1) / 2) == 0
    err = lambda m: np.sqrt(np.mean((m.predict(X[~bad]) - clean[~bad]) ** 2))  # noqa: E731
    assert err(weighted) < 1e-6 < 0.01 < err(plain)
