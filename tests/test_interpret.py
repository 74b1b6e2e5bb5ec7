"""Interpretations of trained networks: CAFO/CASO, HOPE heat maps, structure tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from discovery.interpret import cafo, caso, relu_input_hessian, soft_threshold, solve_interpretation

F64 = torch.float64


class Quadratic(nn.Module):
    """``f(x) = x.A x / 2 + b.x``: gradient ``b`` and Hessian ``A`` at the origin."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return (0.5 * (x @ self.a) * x + self.b * x).sum(dim=1, keepdim=True)


def own_output(out, target):
    """The model's output is the loss itself."""
    return out[:, 0]


# -- CAFO / CASO --------------------------------------------------------------------------------


@pytest.mark.parametrize("lambda1,lambda2", [(0.0, 2.0), (0.5, 2.0), (1.2, 1.6), (5.0, 3.0)])
def test_caso_and_cafo_reach_the_closed_form_optimum_of_a_diagonal_quadratic(lambda1, lambda2):
    a = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5, -3.0], dtype=F64)
    b = torch.tensor([3.0, -2.0, 0.2, 1.0, -0.4, -1.3], dtype=F64)
    model, x0 = Quadratic(torch.diag(a), b), torch.zeros(1, 6, dtype=F64)
    # per coordinate: max b d + a d^2 / 2 - l1 |d| - l2 d^2  ->  d = soft(b, l1) / (2 l2 - a)
    second = caso(model, x0, torch.zeros(1), loss=own_output, lambda1=lambda1, lambda2=lambda2)
    torch.testing.assert_close(second.delta[0], soft_threshold(b, lambda1) / (2 * lambda2 - a), rtol=1e-9, atol=1e-12)
    first = cafo(model, x0, torch.zeros(1), loss=own_output, lambda1=lambda1, lambda2=lambda2)
    torch.testing.assert_close(first.delta[0], soft_threshold(b, lambda1) / (2 * lambda2), rtol=1e-9, atol=1e-12)
    assert float(second.sparsity[0]) == float((b.abs() <= lambda1).double().mean())


def test_caso_without_l1_solves_the_full_quadratic_and_defaults_to_a_concave_objective():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=g, dtype=F64)
    a, b = (m + m.T) / 2, torch.randn(5, generator=g, dtype=F64)
    model, x0 = Quadratic(a, b), torch.zeros(1, 5, dtype=F64)
    result = caso(model, x0, torch.zeros(1), loss=own_output, lambda1=0.0)
    radius = float(torch.linalg.eigvalsh(a).abs().max())
    assert abs(float(result.lambda2[0]) - radius) < 1e-3 * radius  # default lambda2: the spectral radius
    expected = torch.linalg.solve(2 * result.lambda2[0] * torch.eye(5, dtype=F64) - a, b)
    torch.testing.assert_close(result.delta[0], expected, rtol=1e-8, atol=1e-10)


def test_regression_networks_use_the_squared_error_loss():
    w = torch.tensor([[1.5, -0.5, 0.25]], dtype=F64)
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w)
    x, y = torch.tensor([[0.2, 0.4, -1.0]], dtype=F64), torch.tensor([[1.0]], dtype=F64)
    r = float(model(x).detach()[0, 0] - y[0, 0])
    grad, hess = 2 * r * w[0], 2 * w[0, :, None] * w[0, None, :]  # of (w.x - y)^2
    result = caso(model, x, y, loss="squared_error", lambda1=0.0, lambda2=4.0)
    torch.testing.assert_close(result.delta[0], torch.linalg.solve(8 * torch.eye(3, dtype=F64) - hess, grad),
                               rtol=1e-9, atol=1e-12)
    with pytest.raises(Exception, match="pass target="):
        caso(model, x, loss="squared_error")


def relu_classifier(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.LeakyReLU(0.1),
                         nn.Linear(16, 5)).double()


def test_proposition_1_relu_hessian_matches_autograd():
    torch.manual_seed(1)
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(12, 4)).double()
    for model, x in [(relu_classifier(), torch.randn(4, 6, dtype=F64)), (cnn, torch.randn(3, 1, 4, 4, dtype=F64))]:
        closed = relu_input_hessian(model, x)
        for b in range(x.shape[0]):
            for label in range(3):  # the Hessian does not depend on the label
                def loss(z, label=label):
                    return nn.functional.cross_entropy(model(z.reshape(1, *x.shape[1:])), torch.tensor([label]))
                auto = torch.autograd.functional.hessian(loss, x[b].reshape(-1))
                assert float((closed[b] - auto).abs().max()) <= 1e-10 * float(auto.abs().max())
        eig = torch.linalg.eigvalsh(closed)
        assert float(eig.min()) >= -1e-12 * float(eig.max())  # Theorem 2: positive semi-definite


def test_hessian_sources_agree():
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    relu = relu_classifier()
    a = caso(relu, x, lambda1=0.01, hessian="autograd")
    b = caso(relu, x, lambda1=0.01, hessian="relu")
    torch.testing.assert_close(a.delta, b.delta, rtol=1e-9, atol=1e-12)
    torch.manual_seed(0)
    smooth = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4)).double()
    a = caso(smooth, x, lambda1=0.01, hessian="autograd")
    c = caso(smooth, x, lambda1=0.01, hessian="csfd")
    torch.testing.assert_close(a.delta, c.delta, rtol=1e-9, atol=1e-12)


def test_sparsity_ratio_rule_picks_lambda1_with_sparsity_in_range():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=F64)
    result = caso(relu_classifier(), x, lambda1="auto", sparsity_range=(0.5, 0.9))
    assert bool(((result.sparsity >= 0.5) & (result.sparsity <= 0.9)).all()), result.sparsity
    first = cafo(relu_classifier(), x, lambda1="auto", sparsity_range=(0.5, 0.9))
    assert bool(((first.sparsity >= 0.5) & (first.sparsity <= 0.9)).all()), first.sparsity


def test_smooth_caso_averages_gradients_and_hessians_over_noisy_copies():
    a = torch.diag(torch.tensor([0.5, -1.0, 2.0], dtype=F64))
    b = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    model = Quadratic(a, b)
    x0 = torch.zeros(1, 3, dtype=F64)
    result = caso(model, x0, torch.zeros(1), loss=own_output, lambda1=0.1, lambda2=2.0,
                  smooth_samples=16, smooth_sigma=0.3, seed=4)
    noise = torch.stack([0.3 * torch.randn((1, 3), generator=gen, dtype=F64)
                         for gen in [torch.Generator().manual_seed(4)] for _ in range(16)])
    mean_grad = b + noise.mean(dim=0)[0] @ a  # the gradient b + A x averaged over the copies
    expected = soft_threshold(mean_grad, 0.1) / (4.0 - torch.diagonal(a))
    torch.testing.assert_close(result.delta[0], expected, rtol=1e-9, atol=1e-12)


def test_solver_handles_a_batch_with_different_penalties():
    g = torch.tensor([[3.0, -0.5], [0.2, 4.0]], dtype=F64)
    d, objective, _ = solve_interpretation(g, None, torch.tensor([1.0, 0.5], dtype=F64), 0.5)
    torch.testing.assert_close(d, torch.tensor([[2.0, 0.0], [0.0, 3.5]], dtype=F64))
    assert objective.shape == (2,)


# -- structure tests on trained networks ---------------------------------------------------------


class Members(nn.Module):
    """An ensemble whose outputs are its members' predictions."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x):
        return torch.cat([net(x) for net in self.nets], dim=1)




def trained_ensemble(fn, p, members=3, width=16, seed=0):
    """Three tanh MLPs fitted to ``fn`` on ``U(0.3, 1.7)^p`` (Adam, then L-BFGS), float64."""
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.uniform(0.3, 1.7, (150, p)))
    y = fn(x).unsqueeze(1)
    torch.manual_seed(seed)
    model = Members([nn.Sequential(nn.Linear(p, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                                   nn.Linear(width, 1)) for _ in range(members)]).double()

    def loss():
        return ((model(x) - y) ** 2).mean(dim=0).sum()

    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        adam.zero_grad()
        loss().backward()
        adam.step()
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=100, history_size=50,
                              line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        lbfgs.zero_grad()
        value = loss()
        value.backward()
        return value

    for _ in range(4):
        lbfgs.step(closure)
    assert float(loss().detach()) / members < 1e-3  # every member fits
    return model.eval(), x[:40]


def test_structure_of_a_trained_additive_law_with_an_unused_input(one_thread):
    from discovery.engine import expand
    from discovery.interpret import additive_separability, unused_variables

    model, points = trained_ensemble(lambda x: x[:, 0] ** 2 + torch.sin(x[:, 1]), 3)
    e = expand(model, points, 2)
    assert additive_separability(e).groups == [[0], [1], [2]]
    influence = unused_variables(e)
    assert influence.groups == [[0, 1], [2]], influence.statistic


def test_structure_of_a_trained_product_law(one_thread):
    from discovery.engine import expand
    from discovery.interpret import additive_separability, multiplicative_separability

    model, points = trained_ensemble(lambda x: x[:, 0] * torch.exp(-x[:, 1]), 2)
    members = [expand(nn.Sequential(model, _Pick(m)), points, 2) for m in range(3)]  # a list works too
    assert multiplicative_separability(members).groups == [[0], [1]]
    assert not additive_separability(members).separable


class _Pick(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, y):
        return y[:, self.m:self.m + 1]


def test_structure_of_a_trained_inseparable_law(one_thread):
    from discovery.engine import expand
    from discovery.interpret import additive_separability, multiplicative_separability, unused_variables

    model, points = trained_ensemble(lambda x: torch.sin(x[:, 0] * x[:, 1]), 2)
    e = expand(model, points, 2)
    add, mul = additive_separability(e), multiplicative_separability(e)
    assert add.groups == [[0, 1]] and mul.groups == [[0, 1]], (add.statistic, mul.statistic)
    assert unused_variables(e).groups == [[0, 1], []]


def test_structure_tests_on_exact_functions_and_output_standardisation():
    from discovery.engine import expand
    from discovery.interpret import multiplicative_separability

    class Standardised(nn.Module):  # (x0 * exp(-x1) - 2) / 0.5: a shift hides the product
        def forward(self, x):
            return (x[:, :1] * torch.exp(-x[:, 1:2]) - 2.0) / 0.5

    points = torch.rand(30, 2, generator=torch.Generator().manual_seed(0), dtype=F64) + 0.5
    e = expand(Standardised(), points, 2)
    assert multiplicative_separability(e, output_offset=2.0, output_scale=0.5).groups == [[0], [1]]
    assert multiplicative_separability(e).groups == [[0, 1]]


# -- heat maps ----------------------------------------------------------------------------------


def test_hope_heatmap_predicts_the_measured_output_change_of_every_pixel():
    from discovery.interpret import heatmap_correlation, hope_heatmap, perturbation_heatmap

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(36, 3)).double().eval()
    images = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    measured = perturbation_heatmap(cnn, images, dx=0.05)
    hope = hope_heatmap(cnn, images, order=6, dx=0.05)
    assert hope.shape == measured.shape == (4, 3, 1, 6, 6)
    # the series of one pixel converges fast at a small step: the maps agree almost exactly
    assert float((hope - measured).abs().max()) <= 1e-9 * float(measured.abs().max())
    assert (heatmap_correlation(hope, measured) > 0.999999).all()
    # first order alone is the gradient times dx: worse than the full series at a large step
    big_first = heatmap_correlation(hope_heatmap(cnn, images, order=1, dx=2.0), perturbation_heatmap(cnn, images, 2.0))
    big_full = heatmap_correlation(hope_heatmap(cnn, images, order=6, dx=2.0), perturbation_heatmap(cnn, images, 2.0))
    assert big_full.mean() > big_first.mean()
