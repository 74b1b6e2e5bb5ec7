"""HOPE heat maps by the backward unmixed pass, against autograd, the Taylor engine and perturbation.

The backward pass (the HOPE paper's rule) is exact at first order for any network, exact at every
order for one hidden layer and for piecewise-linear networks, and leaves out the cross terms
between hidden units beyond that. The tests check each of those statements on real layers.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import discovery.interpret.heatmaps as heatmaps
from discovery.engine import expand
from discovery.errors import ExpansionError, UnsupportedLayerError
from discovery.interpret import (
    backward_unmixed,
    heatmap_correlation,
    hope_heatmap,
    hope_heatmap_from,
    perturbation_heatmap,
)
from discovery.nn import Sine
from oracle import ACTIVATIONS, pure_partials

F64 = torch.float64




def relative_error_per_order(ours: torch.Tensor, reference: torch.Tensor) -> list[float]:
    """``max |ours - reference| / max |reference|`` for each order ``k`` (axis 1); 0/0 reads 0."""
    errors = []
    for k in range(reference.shape[1]):
        scale = float(reference[:, k].abs().max())
        diff = float((ours[:, k] - reference[:, k]).abs().max())
        errors.append(diff / scale if scale > 0 else diff)
    return errors


def autograd_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, n_outputs, *input_shape)`` by one reverse pass per output."""
    x = x.clone().requires_grad_(True)
    y = model(x).reshape(x.shape[0], -1)
    rows = [torch.autograd.grad(y[:, o].sum(), x, retain_graph=True)[0] for o in range(y.shape[1])]
    return torch.stack(rows, dim=1)


def seeded(*layers, seed: int = 0, gain: float = 1.5) -> nn.Sequential:
    """Float64 eval-mode Sequential with weights scaled so higher derivatives matter."""
    torch.manual_seed(seed)
    net = nn.Sequential(*layers).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(gain)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


def inputs(*shape, seed: int = 1, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=F64) * 2 - 1) * spread


# -- a trained classifier -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_cnn():
    """A two-conv tanh CNN trained on scikit-learn's 8x8 digits, and 24 held-out images."""
    from sklearn.datasets import load_digits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digits = load_digits()
        x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(digits.target)
        gen = torch.Generator().manual_seed(0)
        order = torch.randperm(len(y), generator=gen)
        train, test = order[:1400], order[1400:]
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                            nn.Conv2d(8, 16, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                            nn.Flatten(), nn.Linear(64, 10))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(12):
            perm = train[torch.randperm(len(train), generator=gen)]
            for i in range(0, len(perm), 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
        net = net.double().eval()
        images = x[test].double()
        with torch.no_grad():
            accuracy = float((net(images).argmax(1) == y[test]).double().mean())
    finally:
        torch.set_num_threads(before)
    assert accuracy > 0.88, accuracy
    return net, images[:24]


# -- order 1 is the gradient, for any network ---------------------------------------------------


def test_first_order_is_the_autograd_gradient_of_a_trained_cnn(digits_cnn, one_thread):
    net, images = digits_cnn
    first = backward_unmixed(net, images, 1).coefficients[:, 1]
    gradient = autograd_gradient(net, images)
    assert first.shape == gradient.shape == (24, 10, 1, 8, 8)
    assert float((first - gradient).abs().max()) <= 1e-12 * float(gradient.abs().max())


def many_layer_cnn() -> nn.Sequential:
    return seeded(
        nn.Conv2d(2, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6), nn.GELU(),
        nn.Sequential(nn.Conv2d(6, 6, 3, stride=2, padding=2, dilation=2, groups=3), nn.SiLU(),
                      nn.MaxPool2d(2, stride=1)),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.Softplus(beta=2.0),
        nn.Dropout(0.3), nn.Flatten(), nn.Linear(96, 12), nn.ELU(), nn.Linear(12, 4), seed=3)


@pytest.mark.parametrize("dense", [True, False], ids=["dense-conv", "conv-kernels"])
def test_first_order_is_the_autograd_gradient_of_a_many_layer_cnn(dense, monkeypatch):
    if not dense:
        monkeypatch.setattr(heatmaps, "_DENSE_CONV_ENTRIES", 0)
    net, x = many_layer_cnn(), inputs(5, 2, 7, 7)
    expansion = backward_unmixed(net, x, 3)
    gradient = autograd_gradient(net, x)
    assert float((expansion.coefficients[:, 1] - gradient).abs().max()) <= 1e-12 * float(gradient.abs().max())
    torch.testing.assert_close(expansion.coefficients[:, 0, :, 0, 0, 0], net(x), rtol=1e-14, atol=1e-14)


def test_first_order_is_the_autograd_gradient_of_a_signal_cnn():
    net = seeded(nn.Conv1d(3, 6, 5, padding="same"), nn.Sigmoid(), nn.MaxPool1d(3, stride=2, padding=1),
                 nn.Conv1d(6, 4, 3, dilation=2), nn.Tanh(), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(8, 3), seed=2)
    x = inputs(6, 3, 16)
    first = backward_unmixed(net, x, 2).coefficients[:, 1]
    gradient = autograd_gradient(net, x)
    assert float((first - gradient).abs().max()) <= 1e-12 * float(gradient.abs().max())


# -- every order is exact for one hidden layer --------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_one_hidden_layer_mlp_is_exact_at_every_order(name):
    net = seeded(nn.Linear(6, 8), ACTIVATIONS[name](), nn.Linear(8, 3), seed=1)
    x = inputs(4, 6, spread=1.5)
    ours = backward_unmixed(net, x, 4).coefficients
    exact = expand(net, x, 4, mixed=False).coefficients
    errors = relative_error_per_order(ours, exact)
    assert max(errors) <= 1e-10, f"{name}: per order {errors}"
    if name not in ("relu", "leaky_relu"):
        assert float(exact[:, 4].abs().max()) > 1e-3 * float(exact[:, 1].abs().max())  # order 4 matters


ONE_HIDDEN_LAYER = {
    "conv2d-stride-groups-tanh": (lambda: (nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), nn.Tanh(),
                                           nn.Flatten(), nn.Linear(48, 3)), (2, 7, 6)),
    "conv2d-same-even-kernel-dilation-sigmoid": (lambda: (nn.Conv2d(2, 4, (2, 3), padding="same", dilation=(1, 2)),
                                                          nn.Sigmoid(), nn.Flatten(), nn.Linear(168, 3)), (2, 7, 6)),
    "conv1d-stride-dilation-groups-softplus": (lambda: (nn.Conv1d(3, 6, 3, stride=2, dilation=2, padding=2, groups=3),
                                                        nn.Softplus(), nn.Flatten(), nn.Linear(30, 2)), (3, 9)),
    "conv-batchnorm-gelu-then-pools": (lambda: (nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.GELU(),
                                                nn.MaxPool2d(2), nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(),
                                                nn.Dropout(0.5), nn.Linear(16, 3)), (1, 8, 8)),
    "avgpool2d-padded-ceil-tanh": (lambda: (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False,
                                                         ceil_mode=True), nn.Tanh(), nn.Flatten(),
                                            nn.Linear(32, 3)), (2, 7, 6)),
    "avgpool2d-tiles-divisor-sine": (lambda: (nn.AvgPool2d(2, divisor_override=3), Sine(2.0), nn.Flatten(),
                                              nn.Linear(24, 3)), (2, 8, 6)),
    "avgpool1d-tiles-elu": (lambda: (nn.AvgPool1d(2), nn.ELU(), nn.Flatten(), nn.Linear(12, 2)), (3, 8)),
    "maxpool2d-overlapping-tanh": (lambda: (nn.MaxPool2d(3, stride=1, padding=1), nn.Tanh(), nn.Flatten(),
                                            nn.Linear(84, 3)), (2, 7, 6)),
    "maxpool1d-dilated-silu": (lambda: (nn.MaxPool1d(2, dilation=2), nn.SiLU(), nn.Flatten(),
                                        nn.Linear(12, 2)), (3, 9)),
    "batchnorm1d-softsign": (lambda: (nn.BatchNorm1d(5), nn.Softsign(), nn.Linear(5, 2)), (5,)),
    "nested-linear-unflatten-tanh": (lambda: (nn.Flatten(), nn.Sequential(nn.Linear(12, 12), nn.Unflatten(1, (2, 6))),
                                              nn.Identity(), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3)), (3, 4)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dense", [True, False], ids=["dense-conv", "conv-kernels"])
@pytest.mark.parametrize("case", sorted(ONE_HIDDEN_LAYER))
def test_one_hidden_layer_cnn_is_exact_at_every_order(case, dense, monkeypatch):
    if not dense:
        monkeypatch.setattr(heatmaps, "_DENSE_CONV_ENTRIES", 0)
    layers, shape = ONE_HIDDEN_LAYER[case]
    net = seeded(*layers(), seed=2)
    x = inputs(3, *shape, spread=1.5)
    ours = backward_unmixed(net, x, 4).coefficients
    exact = expand(net, x, 4, mixed=False).coefficients
    errors = relative_error_per_order(ours, exact)
    assert max(errors) <= 1e-10, f"{case}: per order {errors}"
    assert float(exact[:, 4].abs().max()) > 1e-4 * float(exact[:, 1].abs().max())


def test_one_hidden_layer_agrees_with_nested_autograd_on_single_pixels():
    net = seeded(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(36, 2), seed=5)
    x = inputs(2, 1, 3, 3, spread=1.5)
    ours = backward_unmixed(net, x, 4).coefficients.reshape(2, 5, 2, 9)
    oracle = pure_partials(net, x, [0, 4, 7], 4)  # (k, element, B, out)
    for column, element in enumerate([0, 4, 7]):
        for k in range(5):
            expected = oracle[k, column] / math.factorial(k)
            torch.testing.assert_close(ours[:, k, :, element], expected, rtol=1e-10, atol=1e-13)


def test_relu_cnn_of_any_depth_is_exact_its_higher_orders_are_zero():
    net = seeded(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                 nn.LeakyReLU(0.1), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 8), nn.ReLU(inplace=True),
                 nn.Linear(8, 3), seed=4)
    x = inputs(4, 1, 8, 8)
    ours = backward_unmixed(net, x, 3).coefficients
    exact = expand(net, x, 3, mixed=False).coefficients
    assert max(relative_error_per_order(ours, exact)) <= 1e-12
    assert float(ours[:, 2:].abs().max()) == 0.0 and float(ours[:, 1].abs().max()) > 0


# -- beyond one hidden layer: the cross terms are missing ---------------------------------------


def test_trained_two_layer_cnn_orders_above_one_leave_out_cross_terms(digits_cnn, one_thread):
    """Two conv-tanh layers: the first order agrees; orders 2-4 miss the terms d^k f / dh_m dh_l
    between hidden units that the HOPE rule drops, off by 0.74, 0.77 and 0.90 of the largest exact
    coefficient of each order (seed 0); the heat maps still agree with perturbation analysis
    (correlation 0.97-0.99 per class at dx = 1, the exact series 0.996-0.999)."""
    net, images = digits_cnn
    ours = backward_unmixed(net, images, 4)
    exact = expand(net, images, 4, mixed=False)
    errors = relative_error_per_order(ours.coefficients, exact.coefficients)
    assert errors[0] <= 1e-14 and errors[1] <= 1e-12, errors
    assert all(e > 0.3 for e in errors[2:]), f"cross terms expected to matter: {errors}"
    measured = perturbation_heatmap(net, images, dx=1.0)
    backward_map = hope_heatmap_from(ours, 1.0)
    assert (heatmap_correlation(backward_map, measured) >= 0.9).all()
    assert (heatmap_correlation(hope_heatmap_from(exact, 1.0), measured) >= 0.9).all()


def test_deeper_mlp_differs_from_the_exact_series_like_the_paper_rule():
    from paper_rule import paper_unmixed

    net = seeded(nn.Linear(3, 10), nn.Tanh(), nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 1), seed=1, gain=1.0)
    x = inputs(1, 3, spread=0.8)
    ours = backward_unmixed(net, x, 4).coefficients[0, 1:, 0]  # (k, input)
    reference = paper_unmixed(net, x[0], 4)  # d^k y / dx_i^k by the paper's own recurrences
    factorials = torch.tensor([1.0, 2.0, 6.0, 24.0], dtype=F64).reshape(4, 1)
    torch.testing.assert_close(ours * factorials, reference, rtol=1e-10, atol=1e-13)
    exact = expand(net, x, 4, mixed=False).coefficients[0, 1:, 0]
    torch.testing.assert_close(ours[0], exact[0], rtol=1e-12, atol=1e-15)
    assert float((ours[1] - exact[1]).abs().max()) > 0.05 * float(exact[1].abs().max())


# -- interface ----------------------------------------------------------------------------------


def test_hope_heatmap_methods_and_float32_models():
    net32 = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2)).eval()
    x = inputs(3, 1, 4, 4)
    net64 = copy.deepcopy(net32).double()
    backward = hope_heatmap(net32, x, order=3, dx=0.5)
    assert next(net32.parameters()).dtype == torch.float32  # the model is not changed
    assert backward.dtype == F64 and backward.shape == (3, 2, 1, 4, 4)
    torch.testing.assert_close(backward, hope_heatmap(net64, x, order=3, dx=0.5, method="exact"),
                               rtol=1e-10, atol=1e-13)
    with pytest.raises(ExpansionError, match="method must be 'backward' or 'exact'"):
        hope_heatmap(net64, x, method="fast")
    with pytest.raises(ExpansionError, match="method='exact'"):
        hope_heatmap(net64, x, memory_budget=1 << 20)
    with pytest.raises(ExpansionError, match="order must be"):
        backward_unmixed(net64, x, 0)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return x + torch.tanh(self.linear(x))


def test_models_the_backward_pass_cannot_run_say_to_use_the_exact_method():
    x = inputs(2, 4)
    residual = Residual().double().eval()
    with pytest.raises(UnsupportedLayerError, match=r"nn.Sequential.*got Residual.*method='exact'"):
        hope_heatmap(residual, x)
    assert hope_heatmap(residual, x, method="exact").shape == (2, 4, 4)
    nested = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.LayerNorm(4), nn.Tanh())).double().eval()
    with pytest.raises(UnsupportedLayerError, match=r"'1.0' \(LayerNorm\).*method='exact'"):
        backward_unmixed(nested, x, 2)
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(Residual\)"):
        backward_unmixed(nn.Sequential(nn.Linear(4, 4), Residual()).double(), x, 2)
    training = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).double()
    with pytest.raises(UnsupportedLayerError, match=r"training mode.*model.eval\(\)"):
        backward_unmixed(training, x, 2)
    circular = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular")).double()
    with pytest.raises(UnsupportedLayerError, match="padding_mode='zeros'"):
        backward_unmixed(circular, inputs(2, 1, 5), 2)
