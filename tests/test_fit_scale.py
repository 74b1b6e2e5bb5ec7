"""fit_ensemble on tables larger than ``max_rows``: sampled training, stage logs, chunked prediction."""

import logging
import sys

import numpy as np
import pytest
import torch

import discovery.fit as fit_module
from discovery.errors import DataError
from discovery.fit import fit_ensemble

N = 20_000
SMALL = dict(members=2, hidden=(8,), max_epochs=30, patience=30, lbfgs_steps=5, progress=False)


def table(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 3))
    return X, 0.5 * X[:, 0] ** 2 + X[:, 1] * X[:, 2]


@pytest.fixture(scope="module")
def large():
    return table(N)


def state(fit) -> list[np.ndarray]:
    return [v.numpy() for v in fit.model.state_dict().values()]


def test_a_large_table_is_trained_on_a_sample_of_max_rows(large):
    X, y = large
    fit = fit_ensemble(X, y, seed=3, max_rows=2_000, **SMALL)
    assert (fit.rows_total, fit.rows_used, fit.train_rows, fit.val_rows) == (N, 2_000, 1_600, 400)
    assert fit.subsampled
    both = np.concatenate([fit.train_index, fit.val_index])
    assert len(np.unique(both)) == 2_000 and both.min() >= 0 and both.max() < N
    assert np.all(np.diff(fit.train_index) > 0) and np.all(np.diff(fit.val_index) > 0)
    # The sample spreads over the whole table, not its first rows.
    assert fit.train_index.max() > N // 2
    # Standardisation comes from the sampled training rows, and val_rmse from the sampled validation rows.
    np.testing.assert_array_equal(fit.x_mean, X[fit.train_index].mean(axis=0))
    pred = fit.predict_members(X[fit.val_index])
    np.testing.assert_allclose(fit.val_rmse, np.sqrt(((pred - y[fit.val_index, None]) ** 2).mean(axis=0)), rtol=1e-12)


def test_the_sample_is_deterministic_for_a_seed(large):
    X, y = large
    a = fit_ensemble(X, y, seed=3, max_rows=2_000, **SMALL)
    b = fit_ensemble(X, y, seed=3, max_rows=2_000, **SMALL)
    c = fit_ensemble(X, y, seed=4, max_rows=2_000, **SMALL)
    np.testing.assert_array_equal(a.train_index, b.train_index)
    np.testing.assert_array_equal(a.val_index, b.val_index)
    for u, v in zip(state(a), state(b)):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.train_index, c.train_index)


def test_a_table_within_max_rows_trains_exactly_as_without_the_option():
    rows = fit_module.MAX_ROWS
    X, y = table(rows, seed=1)
    plain = fit_ensemble(X, y, seed=5, max_rows=None, **SMALL)
    for limit in (rows, rows + 1):
        same = fit_ensemble(X, y, seed=5, max_rows=limit, **SMALL)
        np.testing.assert_array_equal(same.train_index, plain.train_index)
        np.testing.assert_array_equal(same.val_index, plain.val_index)
        for u, v in zip(state(same), state(plain)):
            np.testing.assert_array_equal(u, v)
        assert not same.subsampled and same.rows_used == same.rows_total == rows


def test_every_row_without_a_validation_split_is_counted():
    X, y = table(500, seed=2)
    fit = fit_ensemble(X, y, val_fraction=0.0, max_rows=200, **SMALL)
    assert (fit.rows_used, fit.val_rows, fit.rows_total) == (200, 0, 500)


@pytest.mark.parametrize("bad", [0, 3, 2.5, True, "all"])
def test_bad_max_rows_says_what_to_pass(bad):
    X, y = table(50)
    with pytest.raises(DataError, match=r"fit_ensemble\(max_rows=.*pass an integer >= 4, or None"):
        fit_ensemble(X, y, max_rows=bad, **SMALL)


def test_each_stage_logs_one_line_when_stderr_is_not_a_terminal(large, caplog):
    X, y = large
    caplog.set_level(logging.INFO, logger="discovery")
    fit_ensemble(X, y, max_rows=2_000, **SMALL)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("discovery")]
    assert len(lines) == 3, lines
    assert lines[0].startswith("fit: Adam, 2 members, 1600 training + 400 validation of 20000 rows, ")
    assert lines[1].startswith("fit: L-BFGS polish, 2 members, at most 5 steps, ")
    assert lines[2].startswith("fit: 2 members, 2000 of 20000 rows, ")
    assert all(line.endswith(" s") for line in lines)


def test_no_stage_lines_on_a_terminal_where_the_bars_show(large, caplog, monkeypatch):
    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    X, y = large
    caplog.set_level(logging.INFO, logger="discovery")
    fit_ensemble(X[:300], y[:300], **SMALL)
    assert not [r for r in caplog.records if r.name.startswith("discovery")]


def test_chunked_prediction_equals_one_pass(large, monkeypatch):
    X, y = large
    fit = fit_ensemble(X[:400], y[:400], **SMALL)
    whole = fit.predict_members(X, chunk_rows=N)
    for rows in (1, 7, 4_096):
        np.testing.assert_allclose(fit.predict_members(X, chunk_rows=rows), whole, rtol=0, atol=1e-12)
    # The default chunk follows the model's widest layer: shrink the budget so 20,000 rows take many chunks.
    monkeypatch.setattr(fit_module, "_PREDICT_ELEMENTS", 1_000)
    np.testing.assert_allclose(fit.predict_members(X), whole, rtol=0, atol=1e-12)
    one = torch.from_numpy((X - fit.x_mean) / fit.x_scale)
    with torch.no_grad():
        direct = fit.y_mean + fit.y_scale * fit.model(one).numpy()
    np.testing.assert_allclose(whole, direct, rtol=0, atol=1e-12)


def test_a_given_split_equal_to_the_internal_one_trains_the_same_model():
    X, y = table(500)
    internal = fit_ensemble(X, y, seed=4, **SMALL)
    given = fit_ensemble(X, y, seed=4, split=(internal.train_index, internal.val_index), **SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(state(internal), state(given)))


def test_a_given_split_is_kept_and_sampled_in_proportion_above_max_rows(large):
    X, y = large
    train, val = np.arange(0, 15_000), np.arange(15_000, N)
    fit = fit_ensemble(X, y, seed=5, max_rows=2_000, split=(train, val), **SMALL)
    assert np.isin(fit.train_index, train).all() and np.isin(fit.val_index, val).all()
    assert (fit.train_rows, fit.val_rows) == (1_500, 500)


@pytest.mark.parametrize("split", [(np.arange(10), np.arange(5, 20)), (np.arange(10), np.array([600]))])
def test_an_overlapping_or_out_of_range_split_is_refused(split):
    X, y = table(500)
    with pytest.raises(DataError, match="disjoint positions"):
        fit_ensemble(X, y, split=split, **SMALL)


def test_discover_keeps_its_row_sets_on_a_table_larger_than_max_rows():
    import pandas as pd

    import discovery

    X, y = table(3_000, seed=6)
    frame = pd.DataFrame(X, columns=["x1", "x2", "x3"]).assign(y=y)
    d = discovery.discover(frame, target="y", crosscheck="off", progress=False, members=2,
                           fit_options={"max_rows": 1_000, "max_epochs": 30, "lbfgs_steps": 5})
    assert d.fitted.subsampled and d.fitted.rows_used == 1_000
    used = d.fit_index[np.concatenate([d.fitted.train_index, d.fitted.val_index])]
    assert not np.isin(used, d.test_index).any()
    rows = d.to_dict()["rows"]  # what each stage used, as result.json records it
    assert rows["table"] == 3_000 and rows["test"] == len(d.test_index) == 600
    assert (rows["networks_train"], rows["networks_validation"]) == (800, 200)
    assert rows["merge_refit"] + rows["merge_validation"] == 2_400 == len(d.fit_index)
    assert rows["merge_selection_train"] == rows["merge_refit"] and rows["scored"] == 600


def test_the_written_out_adam_takes_torch_adams_steps():
    from discovery._adam import Adam

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    twin = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    twin.load_state_dict(net.state_dict())
    X = torch.randn(64, 3, dtype=torch.float64)
    y = X[:, :1] ** 2 - X[:, 1:2]
    ours, theirs = Adam(net.parameters(), lr=0.01), torch.optim.Adam(twin.parameters(), lr=0.01)
    for _ in range(40):
        for model, opt in ((net, ours), (twin, theirs)):
            opt.zero_grad()
            ((model(X) - y) ** 2).mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(net[0].weight, torch.nn.Linear(3, 16).double().weight)


def test_training_does_not_load_the_compiler_stack():
    # torch.optim's first optimiser imports torch._dynamo: 1-2 s per process, more than a small fit.
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from discovery.fit import fit_ensemble\n"
        "X = np.random.default_rng(0).uniform(-1, 1, (200, 2))\n"
        "fit_ensemble(X, X[:, 0] * X[:, 1], members=2, hidden=(8,), max_epochs=30, lbfgs_steps=5, progress=False)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
