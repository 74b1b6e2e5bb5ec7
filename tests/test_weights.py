"""sample_weight in training (fit_ensemble) and in the merge's least squares; warm_start of the estimator."""

from __future__ import annotations

import numpy as np
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
