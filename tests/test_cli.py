"""The discovery command: what a user sees printed, the folder written, one-line errors in CLI syntax."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from discovery.cli import main
from discovery.errors import DataError
from discovery.folders import MARKER

ROOT = Path(__file__).resolve().parents[1]
_API_SYNTAX = re.compile(r"\b(min_rows|target|features|order|test_fraction|device|trust_pickle)=|load_table\(|discover\(")


@pytest.fixture(scope="module")
def momentum_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    X = rng.uniform(1, 5, (300, 2))
    path = tmp_path_factory.mktemp("data") / "momentum.csv"
    pd.DataFrame({"m": X[:, 0], "v": X[:, 1], "p": X[:, 0] * X[:, 1]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run_result(momentum_csv, tmp_path_factory):
    """``discovery run`` once: the output folder, the input's hash before, exit code, stdout and stderr."""
    out = tmp_path_factory.mktemp("out") / "res"
    before = hashlib.sha256(momentum_csv.read_bytes()).hexdigest()
    proc = subprocess.run([sys.executable, "-m", "discovery.cli", "run", str(momentum_csv), "--target", "p",
                           "--order", "2", "--crosscheck", "off", "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    return out, before, proc.returncode, proc.stdout, proc.stderr


def test_run_prints_formula_scores_and_the_folder(momentum_csv, run_result):
    out, before, code, printed, err = run_result
    lines = printed.splitlines()
    assert code == 0 and "Traceback" not in err
    assert lines[0] == "p = m*v"
    assert lines[1] == "  LaTeX: m v"
    assert re.fullmatch(r"  R\^2 1\.000000, RMSE \S+ on 60 held-out rows", lines[2]), lines[2]
    assert lines[-1] == f"results written to {out}/ (open report.html)"


def test_stderr_off_a_terminal_gets_one_line_per_stage_with_its_time(run_result):
    err = run_result[4]
    stages = [re.match(r"discovery: ([a-zA-Z -]+?)(?: raw| log)?: .*\b[\d.]+ s\b", line) for line in err.splitlines()]
    assert all(stages), err
    names = [m.group(1) for m in stages]
    for first, then in (("load", "fit"), ("fit", "expand"), ("expand", "merge"), ("merge", "choose"),
                        ("choose", "report"), ("report", "save")):
        assert names.index(first) < names.index(then), names


def test_run_writes_a_marked_result_folder(momentum_csv, run_result):
    out, before, *_ = run_result
    result = json.loads((out / "result.json").read_text())
    assert result["formula"] == "m*v" and result["target"] == "p" and result["features"] == ["m", "v"]
    assert (out / "formula.txt").read_text() == "m*v\n"
    listed = json.loads((out / MARKER).read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != MARKER)
    assert {"report.html", "model.pt", "terms.csv", "local.npz"} <= set(listed)
    assert hashlib.sha256(momentum_csv.read_bytes()).hexdigest() == before  # input untouched


def test_quiet_prints_only_the_formula(momentum_csv, tmp_path, capsys):
    code = main(["run", str(momentum_csv), "--order", "1", "--space", "log", "--crosscheck", "off", "--quiet",
                 "--no-report", "--out", str(tmp_path / "q")])
    assert code == 0
    assert capsys.readouterr().out == "m*v\n"
    assert (tmp_path / "q" / "result.json").exists() and not (tmp_path / "q" / "report.html").exists()


def test_flags_for_the_discover_arguments_reach_it(momentum_csv, tmp_path, capsys):
    out = tmp_path / "f"
    code = main(["run", str(momentum_csv), "--order", "1", "--space", "log", "--crosscheck", "off", "--no-report",
                 "--members", "2", "--reference-points", "3", "--test-fraction", "0", "--min-rows", "300",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert code == 0 and printed.splitlines()[0] == "p = m*v"
    assert result["reference_points"] == 3 and result["networks"]["members"] == 2
    assert result["scores"]["held_out"] is False


def test_expand_a_saved_model(run_result, capsys):
    out = run_result[0]
    space = json.loads((out / "result.json").read_text())["space"]
    at = "1.0,1.2" if space == "log" else "3.0,2.5"
    code = main(["expand", str(out / "model.pt"), "--at", at, "--order", "3", "--radius", "0.2"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert printed[0] == f"Taylor polynomial of order 3 at ({at.replace('.0', '').replace(',', ', ')}):"
    names = ("log(m)", "log(v)") if space == "log" else ("m", "v")
    assert all(n in printed[1] for n in names) and "x0" not in printed[1]
    assert "TRUSTED" in printed[-1] and "tolerance" in printed[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{missing}"], "{missing}: no such file"),
        (["run", "{csv}", "--target", "q"], "no column named 'q' for --target;"),
        (["run", "{csv}", "--min-rows", "1000"], "at least 1000 are needed. Add observations or pass --min-rows"),
        (["run", "{csv}", "--order", "nine"], "argument --order: 'nine' is not an order"),
        (["run", "{csv}", "--test-fraction", "0.95"], "argument --test-fraction: '0.95'; pass a number in [0, 0.9)"),
        (["run", "{csv}", "--out", "{csv}"], "holds the input file"),
        (["run"], "required: data"),
        (["expand", "{csv}", "--at", "1,2"], "{csv}: not a PyTorch model file"),
        (["expand", "{csv}", "--at", "one"], "--at 'one': pass comma-separated numbers"),
    ],
)
def test_errors_are_one_line_in_cli_syntax(args, message, momentum_csv, tmp_path, capsys):
    fill = {"missing": str(tmp_path / "nope.csv"), "csv": str(momentum_csv)}
    argv = [a.format(**fill) for a in args]
    before = momentum_csv.read_bytes()
    try:
        code = main(argv + (["--crosscheck", "off"] if argv[0] == "run" and len(argv) > 1 else []))
    except SystemExit as exc:  # usage errors leave through argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2
    assert len(lines) == 1, err
    assert message.format(**fill) in lines[0]
    assert not _API_SYNTAX.search(lines[0]), lines[0]
    assert momentum_csv.read_bytes() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_one_line_naming_the_fix(momentum_csv, tmp_path, capsys):
    code = main(["run", str(momentum_csv), "--device", "cuda", "--crosscheck", "off", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unexpected" not in err
    assert err.startswith("discovery run: --device: device 'cuda' is unavailable (") and "pass --device cpu" in err
    assert not (tmp_path / "d").exists()
    from discovery.pipeline import discover

    frame = pd.read_csv(momentum_csv)
    with pytest.raises(DataError, match=r"device 'cuda' is unavailable .*pass device='cpu'"):
        discover(frame, device="cuda", crosscheck="off", progress=False)


@pytest.mark.parametrize("content, message", [("", "the file is empty"), ("a,b\n", "no data rows")])
def test_empty_table_is_refused_before_torch_is_imported(tmp_path, content, message):
    data = tmp_path / "empty.csv"
    data.write_text(content)
    script = ("import sys; from discovery.cli import main; "
              f"code = main(['run', {str(data)!r}, '--out', {str(tmp_path / 'o')!r}]); "
              "print(code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.split() == ["2", "False"]
    assert proc.stderr.startswith(f"discovery run: {data}: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "discovery.cli", "run", str(tmp_path / "none.csv")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"discovery run: {tmp_path / 'none.csv'}: no such file")


def test_demo_runs_on_a_bundled_dataset(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--no-report"])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert printed[1] == "y = 0.5*x1**2 + 0.5*x2"
    assert printed[-1] == f"results written to {tmp_path / 'demo'}/"
    assert json.loads((tmp_path / "demo" / "result.json").read_text())["formula"] == "0.5*x1**2 + 0.5*x2"


def test_warnings_in_the_summary_give_advice_in_flags(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (200, 2))
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": X[:, 0], "y": X[:, 0] + X[:, 1], "b": X[:, 1]}).to_csv(path, index=False)
    assert main(["run", str(path), "--crosscheck", "off", "--members", "2", "--no-report",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "warning: no target given: the last column 'b' was explained; pass --target to explain" in out
    assert "target=" not in out


def test_run_reads_the_table_once(momentum_csv, tmp_path, monkeypatch, capsys):
    # the command checks the table before training and hands that table to discover
    import discovery.data

    calls = []
    read = discovery.data.load_table
    monkeypatch.setattr(discovery.data, "load_table", lambda *a, **k: calls.append(a) or read(*a, **k))
    import discovery.stages

    monkeypatch.setattr(discovery.stages, "load_table", discovery.data.load_table)
    code = main(["run", str(momentum_csv), "--target", "p", "--order", "2", "--crosscheck", "off", "--members", "2",
                 "--out", str(tmp_path / "res"), "--quiet"])
    assert code == 0 and len(calls) == 1
    assert capsys.readouterr().out.splitlines()[0] == "m*v"
    saved = json.loads((tmp_path / "res" / "result.json").read_text())
    assert saved["source"] == str(momentum_csv) and not any("no target given" in w for w in saved["warnings"])
