"""Training the ensemble: reproducible, exported exactly, accurate on a known law."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from discovery.errors import DataError
from discovery.fit import FittedEnsemble, _BatchedMLP, _export, _polish, fit_ensemble
from discovery.nn import Sine


def quadratic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 2))
    return X, (X[:, 0] ** 2 + X[:, 1]) / 2


@pytest.fixture(scope="module")
def trained() -> FittedEnsemble:
    X, y = quadratic(1000, 0)
    return fit_ensemble(X, y, members=3, hidden=(16, 16), seed=1, max_epochs=300, lbfgs_steps=200,
                        progress=False)


def test_learns_the_paper_quadratic_on_held_out_data(trained):
    X, y = quadratic(2000, 99)
    pred = trained.predict(X)
    r2 = 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 > 0.999
    assert trained.val_rmse.shape == (3,) and np.all(trained.val_rmse < 0.01)
    assert trained.predict_members(X).shape == (2000, 3)


def test_result_is_one_float64_sequential_with_one_output_per_member(trained):
    model = trained.model
    assert isinstance(model, nn.Sequential)
    assert all(isinstance(m, (nn.Linear, nn.Tanh)) for m in model)
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in model.parameters())
    assert model[0].in_features == 2 and model[0].out_features == 3 * 16
    assert model[-1].out_features == 3
    z = torch.zeros(5, 2, dtype=torch.float64)
    assert model(z).shape == (5, 3)


def test_hidden_and_output_weights_are_block_diagonal(trained):
    hidden = trained.model[2].weight
    mask = torch.block_diag(*[torch.ones(16, 16)] * 3).bool()
    assert torch.all(hidden[~mask] == 0)
    out = trained.model[-1].weight
    assert torch.all(out[~torch.block_diag(*[torch.ones(1, 16)] * 3).bool()] == 0)


def test_members_are_independent_in_the_export(trained):
    # Changing one member's weights moves only that member's output column.
    model = trained.model
    z = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = model(z)
    with torch.no_grad():
        model[2].weight[16:32, 16:32] += 0.1
        after = model(z)
        model[2].weight[16:32, 16:32] -= 0.1
    assert torch.equal(before[:, [0, 2]], after[:, [0, 2]])
    assert not torch.allclose(before[:, 1], after[:, 1])


@pytest.mark.parametrize("activation, module", [("tanh", nn.Tanh), ("silu", nn.SiLU), ("sine", Sine)])
def test_export_reproduces_the_batched_model(activation, module):
    gen = torch.Generator().manual_seed(3)
    net = _BatchedMLP((3, 8, 6, 1), 4, activation, gen, torch.float64)
    z = torch.randn(50, 3, dtype=torch.float64, generator=gen)
    model = _export(net, activation)
    assert sum(isinstance(m, module) for m in model) == 2
    with torch.no_grad():
        torch.testing.assert_close(model(z), net(z).T, rtol=0, atol=1e-12)


def test_export_of_float32_training_is_float64_and_matches():
    gen = torch.Generator().manual_seed(4)
    net = _BatchedMLP((2, 8, 8, 1), 3, "tanh", gen, torch.float32)
    model = _export(net, "tanh")
    z = torch.randn(20, 2, dtype=torch.float64, generator=gen)
    reference = net.double()
    with torch.no_grad():
        torch.testing.assert_close(model(z), reference(z).T, rtol=0, atol=1e-12)


def test_same_seed_gives_a_bitwise_identical_model():
    X, y = quadratic(200, 5)
    kwargs = dict(members=2, hidden=(8, 8), max_epochs=60, lbfgs_steps=30, progress=False)
    a = fit_ensemble(X, y, seed=7, **kwargs)
    b = fit_ensemble(X, y, seed=7, **kwargs)
    c = fit_ensemble(X, y, seed=8, **kwargs)
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)
    np.testing.assert_array_equal(a.val_index, b.val_index)
    assert not torch.equal(a.model[0].weight, c.model[0].weight)


def test_members_differ_and_each_reports_its_validation_error(trained):
    w = trained.model[0].weight
    assert not torch.allclose(w[:16], w[16:32])
    X = trained.x_mean + trained.x_scale * np.zeros((1, 2))
    spread = trained.predict_members(X).std()
    assert 0 < spread < 0.05


def test_split_standardisation_and_history():
    X, y = quadratic(300, 6)
    X = X * [10.0, 0.1] + [5.0, -3.0]
    fit = fit_ensemble(X, y, members=2, hidden=(8,), max_epochs=50, lbfgs_steps=10, progress=False)
    assert len(fit.train_index) == 240 and len(fit.val_index) == 60
    assert not set(fit.train_index) & set(fit.val_index)
    np.testing.assert_allclose(fit.x_mean, X[fit.train_index].mean(axis=0))
    np.testing.assert_allclose(fit.x_scale, X[fit.train_index].std(axis=0))
    assert fit.y_scale == pytest.approx(y[fit.train_index].std())
    assert len(fit.history) == 2 and len(fit.history[0]["train"]) == len(fit.history[0]["val"]) > 0
    # the recorded validation loss is the returned model's (standardised MSE on the validation rows)
    reported = np.array([h["val_after_polish"] for h in fit.history])
    np.testing.assert_allclose(reported, (fit.val_rmse / fit.y_scale) ** 2, rtol=1e-4)


def test_polish_is_kept_where_it_helps_validation():
    # Noise-free law: after 100 Adam epochs L-BFGS must cut every member's validation MSE at
    # least tenfold (it reaches ~1e-5 from ~5e-3 here), and the returned model is the polished one.
    X, y = quadratic(300, 6)
    kwargs = dict(members=3, hidden=(16, 16), max_epochs=100, dtype=torch.float64, progress=False)
    adam = fit_ensemble(X, y, lbfgs_steps=0, **kwargs)
    fit = fit_ensemble(X, y, lbfgs_steps=100, **kwargs)
    for m, h in enumerate(fit.history):
        # same seed: the Adam phase is bit-identical, so the polish starts from adam's weights
        assert h["val_before_polish"] == adam.history[m]["val_after_polish"]
        assert h["polish_kept"] and h["val_after_polish"] < 0.1 * h["val_before_polish"], h
    assert np.all(fit.val_rmse < 0.5 * adam.val_rmse)


def test_polish_that_overfits_is_discarded_per_member():
    # 60 noisy rows, 300 L-BFGS steps: the polish fits the noise and no validation check during
    # it beats the Adam weights, so every member must come back exactly as Adam left it.
    X = np.random.default_rng(8).uniform(-1, 1, (60, 2))
    y = (X[:, 0] ** 2 + X[:, 1]) / 2 + np.random.default_rng(0).normal(scale=0.2, size=60)
    kwargs = dict(members=4, hidden=(16, 16), max_epochs=100, dtype=torch.float64, seed=1, progress=False)
    adam = fit_ensemble(X, y, lbfgs_steps=0, **kwargs)
    fit = fit_ensemble(X, y, lbfgs_steps=300, **kwargs)
    assert not any(h["polish_kept"] for h in fit.history)
    np.testing.assert_array_equal(fit.predict_members(X), adam.predict_members(X))
    np.testing.assert_array_equal(fit.val_rmse, adam.val_rmse)


def test_without_validation_split_uses_training_rows():
    X, y = quadratic(100, 9)
    fit = fit_ensemble(X, y, members=1, hidden=(8,), val_fraction=0, max_epochs=30, lbfgs_steps=5,
                       progress=False)
    assert fit.val_index.size == 0 and fit.train_index.size == 100 and np.isfinite(fit.val_rmse).all()


def test_one_feature_given_as_a_vector():
    x = np.linspace(-3, 3, 200)
    fit = fit_ensemble(x, np.exp(-x**2 / 2), members=2, hidden=(8,), activation="sine",
                       max_epochs=50, lbfgs_steps=10, progress=False)
    assert fit.predict(x).shape == (200,) and fit.n_features == 1


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(activation="relu"), "'tanh', 'silu', 'sine'"),
        (dict(members=0), "members=0"),
        (dict(hidden=(8, 0)), "hidden=(8, 0)"),
        (dict(val_fraction=1.0), "val_fraction=1.0"),
    ],
)
def test_bad_arguments_say_what_to_pass(kwargs, words):
    X, y = quadratic(50, 0)
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fit_ensemble(X, y, progress=False, **kwargs)


def test_bad_data_is_refused():
    X, y = quadratic(50, 0)
    with pytest.raises(DataError, match="pass X"):
        fit_ensemble(X, y[:-1], progress=False)
    with pytest.raises(DataError, match="NaN"):
        fit_ensemble(np.where(X > 0.9, np.nan, X), y, progress=False)
    with pytest.raises(DataError, match="constant"):
        fit_ensemble(X, np.ones(50), progress=False)
    with pytest.raises(DataError, match=r"shape \(3, 3\)"):
        fit_ensemble(X, y, members=1, max_epochs=5, lbfgs_steps=0, progress=False).predict(np.ones((3, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_trains_on_cuda_and_returns_a_cpu_model():
    X, y = quadratic(500, 2)
    fit = fit_ensemble(X, y, members=2, hidden=(16, 16), device="cuda", max_epochs=200,
                       lbfgs_steps=100, progress=False)
    assert all(p.device.type == "cpu" and p.dtype == torch.float64 for p in fit.model.parameters())
    assert np.all(fit.val_rmse < 0.02)


def test_engine_expands_every_member_in_one_pass(trained):
    from discovery.engine import expand

    at = torch.zeros(2, 2, dtype=torch.float64)  # the training mean, in standardised units
    e = expand(trained.model, at, 2)
    assert e.n_outputs == trained.members
    torch.testing.assert_close(e.coefficients[:, 0, :], trained.model(at), rtol=0, atol=1e-12)
    # y = (x1^2 + x2)/2: dy/dx2 = 1/2 and (d2y/dx1^2)/2 = 1/2 everywhere, here in standardised units.
    rows = {tuple(m): i for i, m in enumerate(e.monomials.tolist())}
    c01 = e.coefficients[:, rows[(0, 1)], :].numpy() * trained.y_scale / trained.x_scale[1]
    c20 = e.coefficients[:, rows[(2, 0)], :].numpy() * trained.y_scale / trained.x_scale[0] ** 2
    np.testing.assert_allclose(c01, 0.5, rtol=0.05)
    np.testing.assert_allclose(c20, 0.5, rtol=0.05)


# -- the batched L-BFGS against torch.optim.LBFGS, one member at a time ------------------------------


def _torch_lbfgs_steps(start, loss, steps: int, history: int):
    """``torch.optim.LBFGS`` (unit step, no line search) for ``steps`` iterations from ``start``.

    Returns the final parameters and whether every step is one the batched L-BFGS takes too:
    a descent direction whose unit step meets the Armijo condition (c = 1e-4), with every
    curvature pair stored. Only then must the two runs coincide.
    """
    params = [nn.Parameter(s.clone()) for s in start]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=1, max_eval=10, history_size=history,
                            tolerance_grad=0, tolerance_change=0, line_search_fn=None)

    def closure():
        opt.zero_grad()
        value = loss(params)
        value.backward()
        return value

    same_steps = True
    before = float(closure().detach())
    for k in range(steps):
        opt.step(closure)  # one iteration per call; the curvature memory persists across calls
        state = opt.state[opt._params[0]]
        slope = float(state["prev_flat_grad"] @ state["d"])
        with torch.no_grad():
            after = float(loss(params))
        same_steps &= (slope < 0 and after <= before + 1e-4 * state["t"] * slope
                       and len(state["old_dirs"]) == min(k, history))
        before = after
    return [q.detach() for q in params], same_steps


def test_batched_lbfgs_takes_torch_lbfgs_steps_for_every_member():
    # Three tanh networks (2-8-1) polished together for 15 iterations with a memory of 5 pairs
    # (so old pairs are dropped), each compared with torch's L-BFGS run on that member alone.
    steps, history, members = 15, 5, 3
    gen = torch.Generator().manual_seed(25)
    z = torch.rand(64, 2, generator=gen, dtype=torch.float64) * 2 - 1
    t = (z[:, 0] ** 2 + z[:, 1]) / 2
    net = _BatchedMLP((2, 8, 1), members, "tanh", gen, torch.float64)
    params = list(net.parameters())  # weights (members, in, out) x 2, then biases (members, 1, out) x 2
    start = [q.detach().clone() for q in params]

    def losses():
        return ((net(z) - t) ** 2).mean(dim=1)

    _polish(params, losses, lambda: losses().detach(), lambda val: None, steps, False, history_size=history)

    def one_member(q):
        return ((torch.tanh(z @ q[0] + q[2]) @ q[1] + q[3]).squeeze(-1) - t).pow(2).mean()

    for m in range(members):
        reference, same_steps = _torch_lbfgs_steps([s[m] for s in start], one_member, steps, history)
        assert same_steps, f"member {m}: torch's unit steps leave the regime where the two must agree"
        for ours, theirs in zip(params, reference):
            torch.testing.assert_close(ours.detach()[m], theirs, rtol=0, atol=1e-10)


def test_batched_lbfgs_line_search_reaches_the_optimum_where_unit_steps_fail():
    # Where a unit step does not decrease the loss enough, the batched L-BFGS halves it per
    # member (torch's plain L-BFGS takes it anyway), so iterates differ by design; the minimum
    # must not. Rosenbrock (a - x)^2 + 100 (y - x^2)^2 has its only minimum at (a, a^2).
    a = torch.tensor([1.0, 1.5, -0.5], dtype=torch.float64)
    start = torch.tensor([[-1.2, 1.0], [0.0, 0.0], [2.0, -1.0]], dtype=torch.float64)
    x = nn.Parameter(start.clone())

    def rosenbrock(v, a):
        return (a - v[..., 0]) ** 2 + 100 * (v[..., 1] - v[..., 0] ** 2) ** 2

    _polish([x], lambda: rosenbrock(x, a), lambda: rosenbrock(x, a).detach(), lambda val: None, 100, False)
    # every accepted step decreases each member's loss (the run is deterministic, so k steps of
    # a fresh run are the first k steps of a longer one)
    trail = []
    for k in range(1, 41):
        y = nn.Parameter(start.clone())
        _polish([y], lambda: rosenbrock(y, a), lambda: rosenbrock(y, a).detach(), lambda val: None, k, False)
        trail.append(rosenbrock(y, a).detach())
    trail = torch.stack([rosenbrock(start, a)] + trail)
    assert bool((trail[1:] <= trail[:-1]).all()), f"a member's loss went up: {trail}"
    optimum = torch.stack([a, a**2], dim=1)
    torch.testing.assert_close(x.detach(), optimum, rtol=0, atol=1e-8)
    for m in range(3):
        _, same_steps = _torch_lbfgs_steps([start[m]], lambda q: rosenbrock(q[0], a[m]), 30, 20)
        assert not same_steps, f"member {m}: every unit step was acceptable; the line search was not exercised"
        strong = nn.Parameter(start[m].clone())
        opt = torch.optim.LBFGS([strong], lr=1, max_iter=200, history_size=20, tolerance_grad=1e-14,
                                tolerance_change=0, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = rosenbrock(strong, a[m])
            value.backward()
            return value

        opt.step(closure)
        torch.testing.assert_close(x.detach()[m], strong.detach(), rtol=0, atol=1e-8)


def test_polish_stops_once_no_member_improves_its_validation_loss():
    # A validation loss that stops falling (here: it falls for 200 steps, then stays) ends the
    # polish about _PLATEAU_STEPS later; one that keeps falling runs to the cap.
    from discovery import _lbfgs

    gen = torch.Generator().manual_seed(3)
    z = torch.rand(64, 2, generator=gen, dtype=torch.float64) * 2 - 1
    t = (z[:, 0] ** 2 + z[:, 1]) / 2

    def run(val_of_step, steps=1000):
        net = _BatchedMLP((2, 8, 1), 2, "tanh", torch.Generator().manual_seed(4), torch.float64)
        checked = []

        def losses():
            return ((net(z) - t) ** 2).mean(dim=1)

        def val_losses():
            checked.append(1)
            return torch.full((2,), val_of_step(len(checked) * _lbfgs._CHECK_EVERY), dtype=torch.float64)

        _polish(list(net.parameters()), losses, val_losses, lambda val: None, steps, False)
        return len(checked) * _lbfgs._CHECK_EVERY

    flat_after_200 = run(lambda step: 0.5 ** min(step, 200))
    assert 200 + _lbfgs._PLATEAU_STEPS <= flat_after_200 <= 200 + _lbfgs._PLATEAU_STEPS + 2 * _lbfgs._CHECK_EVERY
    assert run(lambda step: 0.5 ** step) == 1000
