"""``discovery expand``: safe loading, input names from the file, points the networks never saw."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from discovery.cli import main
from discovery.errors import ModelLoadError
from discovery.modelio import load_model, read_model
from discovery.pipeline import discover

FAST = {"max_epochs": 150, "patience": 50, "lbfgs_steps": 150, "hidden": (16, 16)}


class _Payload:
    """Unpickling this object creates a file: the harm a crafted model file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def raw_result(tmp_path_factory):
    """A real raw-space result folder whose columns are x1, x2, x3 (y = x1 + 2 x2 - x3 on [0, 1])."""
    rng = np.random.default_rng(11)
    X = rng.uniform(0, 1, (200, 3))
    frame = pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "y": X[:, 0] + 2 * X[:, 1] - X[:, 2]})
    d = discover(frame, order=1, space="raw", crosscheck="off", members=2, progress=False, fit_options=FAST)
    return d, d.save(tmp_path_factory.mktemp("raw") / "res", report=False)


@pytest.fixture(scope="module")
def log_result(tmp_path_factory):
    """A real log-space result folder: v = sqrt(g h) on g, h in [1, 5]."""
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 5, (200, 2))
    frame = pd.DataFrame({"g": X[:, 0], "h": X[:, 1], "v": np.sqrt(X[:, 0] * X[:, 1])})
    d = discover(frame, order=1, space="log", crosscheck="off", members=2, progress=False, fit_options=FAST)
    return d, d.save(tmp_path_factory.mktemp("log") / "res", report=False)


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if not line.startswith("warning:")]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("dump", [torch.save, lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=4))],
                         ids=["torch.save", "plain pickle"])
def test_crafted_pickle_does_not_run_without_the_flag(tmp_path, capsys, dump):
    victim = tmp_path / "created-by-payload"
    dump(_Payload(victim), tmp_path / "evil.pt")
    code, out, err = _run(["expand", str(tmp_path / "evil.pt"), "--at", "0,0"], capsys)
    assert not victim.exists()
    assert code == 2 and out == "" and len(err) == 1
    assert "runs code named in the file" in err[0] and "--trust-pickle" in err[0] and "trust_pickle=" not in err[0]
    # with the flag the file is unpickled (and its payload runs): the flag is what stood in the way
    code, _, err = _run(["expand", str(tmp_path / "evil.pt"), "--at", "0,0", "--trust-pickle"], capsys)
    assert victim.exists() and code == 2 and len(err) == 1


def test_api_refuses_a_pickle_unless_trusted(tmp_path):
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match="full pickle.*trust_pickle=True"):
        load_model(tmp_path / "whole.pt")
    x = torch.randn(4, 2)
    torch.testing.assert_close(load_model(tmp_path / "whole.pt", trust_pickle=True)(x), net(x))


def test_result_model_loads_weights_only_with_names_space_and_range(raw_result):
    d, out = raw_result
    state = torch.load(out / "model.pt", weights_only=True)  # plain values and tensors: no code runs
    assert state["names"] == ["x1", "x2", "x3"] and state["space"] == "raw" and state["target"] == "y"
    saved = read_model(out / "model.pt")
    x = d.X[d.fit_index]
    np.testing.assert_allclose(saved.input_min, x.min(axis=0), rtol=0, atol=0)
    np.testing.assert_allclose(saved.input_max, x.max(axis=0), rtol=0, atol=0)
    probe = np.array([[0.3, 0.2, 0.9], [0.7, 0.1, 0.4]])
    got = saved.module(torch.from_numpy(probe)).numpy()[:, 0]
    np.testing.assert_allclose(got, d.predict_network(probe), rtol=1e-12)


def test_expand_uses_the_data_names_and_validates_inside_the_range(raw_result, capsys):
    _, out = raw_result
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at", "0.5,0.5,0.5", "--order", "2",
                               "--radius", "0.2"], capsys)
    assert code == 0 and err == []
    formula = printed.splitlines()[1]
    assert "x1" in formula and "x3" in formula and "x0" not in formula
    assert "Convergence" in printed and "TRUSTED" in printed.strip().splitlines()[-1]  # a verdict, either way


@pytest.mark.parametrize("at, where", [("3,0.5,0.5", "x1 = 3"), ("0.5,0.5,-2", "x3 = -2")])
def test_expand_refuses_points_outside_the_training_range(raw_result, capsys, at, where):
    _, out = raw_result
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at", at], capsys)
    assert code == 2 and "TRUSTED" not in printed and len(err) == 1
    assert where in err[0] and "outside the training range [" in err[0] and "margin of 5%" in err[0]


def test_expand_warns_when_the_interval_leaves_the_training_range(raw_result, capsys):
    _, out = raw_result
    main(["expand", str(out / "model.pt"), "--at", "0.5,0.5,0.5", "--order", "2", "--radius", "1"])
    err = capsys.readouterr().err
    assert "warning: --radius 1 reaches beyond the training range along x1, x2, x3" in err


def test_log_space_model_refuses_raw_values_and_says_the_logs(log_result, capsys):
    _, out = log_result
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at", "2,3"], capsys)
    assert code == 2 and printed == ""
    assert err == [f"discovery expand: --at: the model works on log inputs (log(g), log(h)) and these values look "
                   f"raw; pass their logs, --at={np.log(2):.6g},{np.log(3):.6g}"]
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at=-3,0.5"], capsys)
    assert code == 2 and "log(g) = -3 is outside the training range" in err[0] and "raw 1" in err[0]
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at", f"{np.log(2)},{np.log(3)}", "--order", "1",
                               "--radius", "0.1"], capsys)
    assert code == 0 and "log(g)" in printed.splitlines()[1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_loads_without_the_flag_and_says_the_range_is_unknown(tmp_path, capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    torch.jit.save(torch.jit.script(net), tmp_path / "net.ts")
    code = main(["expand", str(tmp_path / "net.ts"), "--at", "0.1,0.2", "--order", "2", "--radius", "0.1"])
    captured = capsys.readouterr()
    assert code == 0 and "x0" in captured.out.splitlines()[1]
    assert "warning: the model file records no training range" in captured.err


def test_expand_out_never_writes_into_a_foreign_folder(raw_result, tmp_path, capsys):
    _, out = raw_result
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.txt").write_text("my notes")
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at", "0.5,0.5,0.5", "--out", str(mine)], capsys)
    assert code == 2 and printed == "" and len(err) == 1 and "not an earlier result folder" in err[0]
    assert [p.name for p in mine.iterdir()] == ["report.txt"] and (mine / "report.txt").read_text() == "my notes"
    code, printed, err = _run(["expand", str(out / "model.pt"), "--at", "0.5,0.5,0.5", "--order", "2",
                               "--radius", "0.1", "--out", str(tmp_path / "exp")], capsys)
    assert code == 0 and printed.strip().endswith(f"results written to {tmp_path / 'exp'}/")
    assert (tmp_path / "exp" / "report.txt").read_text().startswith("Taylor polynomial of order 2 at (0.5, 0.5, 0.5)")
