"""Validation of trained networks: convergence ratios, Lagrange bounds, trusted radius, model files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from discovery.errors import ExpansionError, ModelLoadError
from discovery.modelio import load_model, save_model
from discovery.nn import Sine
from discovery.validation import convergence_table, expand_command, validate


def _sine_of_affine(weight, bias: float) -> nn.Module:
    """f(x) = sin(weight . x + bias) as a network, so every derivative has a closed form."""
    weight = torch.as_tensor(weight, dtype=torch.float64).reshape(1, -1)
    layer = nn.Linear(weight.shape[1], 1).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.fill_(bias)
    return nn.Sequential(layer, Sine())


def _sin_derivative(z: float, n: int) -> float:
    return math.sin(z + n * math.pi / 2)


@pytest.fixture(scope="module")
def smooth_net() -> nn.Module:
    """A small sine network trained on y = sin(x) + 0.3 x on [-3, 3] (seeded, a few seconds)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 16), Sine(), nn.Linear(16, 1))
    with torch.no_grad():
        net[0].weight.uniform_(-1.0, 1.0)
    x = torch.linspace(-3, 3, 200).unsqueeze(1)
    y = torch.sin(x) + 0.3 * x
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(250):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    return net.double()


def test_measured_error_never_exceeds_the_lagrange_bound(smooth_net):
    v = validate(smooth_net, [0.0], 3.0, order=16, points=301, n_dense=121)
    applicable = v.bounds[v.bounds["applies"]]
    assert len(applicable) >= 12
    assert (applicable["e1"] <= applicable["e2"]).all(), v.bounds
    # The series converges on this interval: high orders shrink both the bound and the error.
    e = v.bounds.set_index("n")
    assert e.loc[16, "e2"] < 1e-2 * e.loc[4, "e2"]
    assert e.loc[16, "e1"] < 1e-2 * e.loc[4, "e1"]


def test_lagrange_curves_enclose_network_and_polynomial(smooth_net):
    v = validate(smooth_net, [0.5], 2.0, order=9, points=201, n_dense=101)
    for n in (2, 5, 9):
        c = v.lagrange_bounds(n)
        upper, lower = np.maximum(c["f1"], c["f2"]), np.minimum(c["f1"], c["f2"])
        slack = 1e-12 * np.abs(c["f"]).max()
        assert np.all(lower - slack <= c["f"]) and np.all(c["f"] <= upper + slack)
        assert np.all(lower - slack <= c["polynomial"]) and np.all(c["polynomial"] <= upper + slack)


def test_trusted_radius_shrinks_when_the_tolerance_tightens(smooth_net):
    loose = validate(smooth_net, [0.0], 3.0, order=6, tolerance=1e-1, points=201, n_dense=81)
    tight = validate(smooth_net, [0.0], 3.0, order=6, tolerance=1e-5, points=201, n_dense=81)
    assert 0 < tight.trusted_radius[0] < loose.trusted_radius[0] <= 3.0
    assert not tight.trusted
    assert "trusted up to radius" in tight.verdict
    assert "e1 <= e2 wherever the bound applies" in str(tight)


def test_convergence_ratios_match_the_closed_form():
    w, b = 1.7, 0.3
    table = convergence_table(_sine_of_affine([w], b), [0.2], order=8)
    z = w * 0.2 + b
    expected = [abs(_sin_derivative(z, n) * w**n) / abs(math.cos(z) * w) for n in range(1, 9)]
    np.testing.assert_allclose(table["x0"].to_numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(table["norm"].to_numpy(), expected, rtol=1e-10)


def test_norm_column_is_the_frobenius_norm_of_the_derivative_tensor():
    a = np.array([0.8, -1.5])
    at = np.array([0.1, 0.4])
    table = convergence_table(_sine_of_affine(a, 0.2), at, order=6, names=["u", "v"])
    z = float(a @ at) + 0.2
    # D^n sin(a.x + b) = sin^(n)(z) a (x) ... (x) a, whose Frobenius norm is |sin^(n)(z)| |a|^n.
    expected = [abs(_sin_derivative(z, n)) * np.linalg.norm(a) ** (n - 1) / abs(math.cos(z)) for n in range(1, 7)]
    np.testing.assert_allclose(table["norm"].to_numpy(), expected, rtol=1e-10)
    pure_v = [abs(_sin_derivative(z, n) * a[1] ** n) / abs(math.cos(z) * a[1]) for n in range(1, 7)]
    np.testing.assert_allclose(table["v"].to_numpy(), pure_v, rtol=1e-10)


def test_two_inputs_are_checked_along_each_coordinate_line():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 12), nn.Tanh(), nn.Linear(12, 2)).double()
    v = validate(net, [0.1, -0.2], [0.3, 0.6], order=5, output=1, names=["a", "b"], points=101, n_dense=41)
    assert set(v.bounds["input"]) == {"a", "b"} and len(v.bounds) == 10
    assert v.bounds["holds"].all()
    frame = v.to_frame()
    assert list(frame.columns) == ["input", "n", "ratio", "e1", "e2", "applies", "holds"]
    b_line = v.lagrange_bounds(5, input=1)
    with torch.no_grad():
        direct = net(torch.tensor([[0.1, -0.2 + 0.6]], dtype=torch.float64))[0, 1].item()
    assert b_line["f"][-1] == pytest.approx(direct, abs=1e-12)


def test_plot_is_written(smooth_net, tmp_path):
    v = validate(smooth_net, [0.0], 1.0, order=4, points=51, n_dense=21)
    path = v.plot(tmp_path / "v.png")
    assert path.exists() and path.stat().st_size > 10_000


def test_bad_arguments_say_what_to_pass(smooth_net):
    with pytest.raises(ExpansionError, match="radius positive"):
        validate(smooth_net, [0.0], -1.0, order=3)
    with pytest.raises(ExpansionError, match="one number or one per input"):
        validate(smooth_net, [0.0], [1.0, 2.0], order=3)
    with pytest.raises(ExpansionError, match="output between 0 and 0"):
        validate(smooth_net, [0.0], 1.0, order=3, output=2)
    with pytest.raises(ExpansionError, match="order must be an int >= 1"):
        validate(smooth_net, [0.0], 1.0, order=0)


def test_expand_command_reports_polynomial_table_and_verdict(tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    path = tmp_path / "net.pt"
    save_model(net, path, names=["x0", "x1"])
    report = expand_command(path, "0.1,0.2", 4, out=tmp_path / "out", radius=0.3)
    assert "Taylor polynomial of order 4 at (0.1, 0.2)" in report
    assert "x0" in report and "x1" in report and "Convergence" in report
    assert "TRUSTED" in report
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"expansion.pt", "validation.csv", "validation.png", "report.txt",
                                                            ".discovery-result.json"}
    with pytest.raises(ExpansionError, match="comma-separated numbers"):
        expand_command(path, "0.1;x", 4)


# -- model files -----------------------------------------------------------------------------------


def _small_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(2, 6), nn.Softplus(beta=2.0), nn.Linear(6, 1))


def test_whole_pickled_module_loads_in_eval_mode(tmp_path):
    net = _small_net().train()
    torch.save(net, tmp_path / "net.pt")
    loaded = load_model(tmp_path / "net.pt", trust_pickle=True)
    x = torch.randn(4, 2)
    assert not loaded.training
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_file_loads_and_can_be_expanded(tmp_path):
    from discovery.engine import expand

    net = _small_net()
    torch.jit.save(torch.jit.script(net), tmp_path / "net.ts")
    loaded = load_model(tmp_path / "net.ts")
    x = torch.randn(4, 2)
    torch.testing.assert_close(loaded(x), net(x))
    got = expand(loaded, [0.1, 0.2], 3).coefficients
    torch.testing.assert_close(got, expand(net, [0.1, 0.2], 3).coefficients, rtol=0, atol=1e-12)


def test_state_dict_file_explains_how_to_rebuild(tmp_path):
    torch.save(_small_net().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelLoadError, match="state_dict.*load_state_dict.*torch.jit.save"):
        load_model(tmp_path / "weights.pt")


def test_checkpoint_dictionary_points_at_its_entry(tmp_path):
    torch.save({"epoch": 3, "model_state_dict": _small_net().state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelLoadError, match="'model_state_dict' entry is a state_dict"):
        load_model(tmp_path / "ckpt.pt")


@pytest.mark.parametrize("content, match", [("hello, not a model", "not a PyTorch model file"), ("", "empty")])
def test_text_and_empty_files_are_refused(tmp_path, content, match):
    path = tmp_path / "model.pt"
    path.write_text(content)
    with pytest.raises(ModelLoadError, match=match):
        load_model(path)


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "absent.pt")
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(tmp_path)


def test_other_pickled_objects_are_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelLoadError, match="holds a list, not a torch.nn.Module"):
        load_model(tmp_path / "list.pt")


def _uniform_tanh_mlp(w0: float, width: int = 64, depth: int = 4, seed: int = 0) -> nn.Module:
    """Every Linear layer ~ U(-w0 / sqrt(fan_in), w0 / sqrt(fan_in)), as in HOPE Table 2."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1] + [width] * (depth - 1) + [1]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layer = nn.Linear(fan_in, fan_out, dtype=torch.float64)
        bound = w0 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.weight.copy_((torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            layer.bias.copy_((torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        layers += [layer, nn.Tanh()]
    return nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("w0, falls", [(0.01, True), (0.1, True), (10.0, False), (100.0, False)])
def test_convergence_trend_follows_the_weight_scale(w0, falls):
    ratios = convergence_table(_uniform_tanh_mlp(w0), [0.5], order=10)["x0"].to_numpy()
    slope = np.polyfit(np.arange(1, 11), np.log10(ratios), 1)[0]  # decades per order
    if falls:
        assert slope < -0.3 and ratios[-1] < 1e-3 and ratios[-1] < ratios[1]
    else:
        assert slope > 0.3 and ratios[-1] > 1e3 and ratios[-1] > ratios[1]


def test_an_input_without_influence_is_trusted_on_its_whole_line():
    torch.manual_seed(4)
    inner = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    class FirstInputOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x[:, :1])

    v = validate(FirstInputOnly(), [0.0, 0.0], 0.3, order=6, points=101, n_dense=41, names=["used", "unused"])
    assert v.trusted_radius[1] == pytest.approx(0.3)
    assert (v.bounds.loc[v.bounds["input"] == "unused", "e2"] == 0).all()
    assert v.convergence["unused"].isna().all()  # 0 / 0: no derivative to compare with
