"""The discovery command: outputs, exit codes, one-line errors, input files left alone."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discovery.cli import main


@pytest.fixture(scope="module")
def momentum_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    X = rng.uniform(1, 5, (300, 2))
    path = tmp_path_factory.mktemp("data") / "momentum.csv"
    pd.DataFrame({"m": X[:, 0], "v": X[:, 1], "p": X[:, 0] * X[:, 1]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run_result(momentum_csv, tmp_path_factory):
    """``discovery run`` once: the output folder, the input's hash before, exit code and stdout."""
    out = tmp_path_factory.mktemp("out") / "res"
    before = hashlib.sha256(momentum_csv.read_bytes()).hexdigest()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["run", str(momentum_csv), "--target", "p", "--order", "2", "--crosscheck", "off", "--out", str(out)])
    return out, before, code, buffer.getvalue()


def test_run_prints_formula_and_writes_folder(momentum_csv, run_result):
    out, before, code, printed = run_result
    assert code == 0
    assert printed.splitlines()[0] == "p = m*v"
    assert "LaTeX: m v" in printed and "R^2 1.000000" in printed and f"results written to {out}/" in printed
    assert json.loads((out / "result.json").read_text())["formula"] == "m*v"
    assert (out / "report.html").exists() and (out / "model.pt").exists()
    assert hashlib.sha256(momentum_csv.read_bytes()).hexdigest() == before


def test_quiet_prints_only_the_formula(momentum_csv, tmp_path, capsys):
    code = main(["run", str(momentum_csv), "--order", "1", "--space", "log", "--crosscheck", "off", "--quiet",
                 "--no-report", "--out", str(tmp_path / "q")])
    assert code == 0
    assert capsys.readouterr().out == "m*v\n"
    assert not (tmp_path / "q" / "report.html").exists()


def test_expand_a_saved_model(run_result, capsys):
    out = run_result[0]
    code = main(["expand", str(out / "model.pt"), "--at", "1.0,1.2", "--order", "3"])
    assert code == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{missing}"], "no such file"),
        (["run", "{csv}", "--target", "q"], "'q'"),
        (["run", "{csv}", "--order", "nine"], "order='nine'"),
        (["run", "{csv}", "--out", "{csv}"], "holds the input file"),
        (["run"], "required: data"),
        (["expand", "{csv}", "--at", "1,2"], "{csv_name}"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(args, message, momentum_csv, tmp_path, capsys):
    fill = {"missing": str(tmp_path / "nope.csv"), "csv": str(momentum_csv), "csv_name": momentum_csv.name}
    argv = [a.format(**fill) for a in args]
    before = momentum_csv.read_bytes()
    try:
        code = main(argv + (["--crosscheck", "off"] if argv[0] == "run" and len(argv) > 1 else []))
    except SystemExit as exc:  # usage errors leave through argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code != 0
    assert len(lines) == 1, err
    assert message.format(**fill) in lines[0]
    assert momentum_csv.read_bytes() == before


def test_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "discovery.cli", "run", str(tmp_path / "none.csv")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("discovery run: load_table(")


def test_demo_runs_on_a_bundled_dataset(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--no-report"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "y = 0.5*x1**2 + 0.5*x2" in printed and f"results written to {tmp_path / 'demo'}/" in printed
