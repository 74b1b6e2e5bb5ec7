"""Result folders: never touch foreign files, refuse unusable places before training, never lose a result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import discovery.cli as cli
from discovery import check_output_folder
from discovery.cli import main
from discovery.folders import MARKER, OutputFolderError, write_folder
from discovery.pipeline import discover

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 150, "patience": 50, "lbfgs_steps": 150, "hidden": (16, 16)}


@pytest.fixture(scope="module")
def momentum_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    X = rng.uniform(1, 5, (200, 2))
    path = tmp_path_factory.mktemp("data") / "momentum.csv"
    pd.DataFrame({"m": X[:, 0], "v": X[:, 1], "p": X[:, 0] * X[:, 1]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def momentum(momentum_csv):
    """A real discovery of p = m*v (small networks), reused wherever only saving is under test."""
    return discover(momentum_csv, target="p", order=2, crosscheck="off", members=2, progress=False,
                    fit_options=FAST)


def _writer(**files):
    def write(tmp: Path) -> None:
        for name, text in files.items():
            (tmp / name).write_text(text)
    return write


def test_folder_with_a_foreign_result_json_is_refused_and_left_alone(momentum_csv, tmp_path, capsys):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "a.py").write_text("code\n")
    (proj / "result.json").write_text("{}\n")
    code = main(["run", str(momentum_csv), "--crosscheck", "off", "--out", str(proj)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(proj) in err[0] and "not an earlier result folder" in err[0] and MARKER in err[0]
    assert (proj / "src" / "a.py").read_text() == "code\n" and (proj / "result.json").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temporary or '.old' folder


def test_rewriting_a_result_folder_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "res"
    write_folder(out, _writer(**{"result.json": "1", "report.html": "old"}), "t")
    assert json.loads((out / MARKER).read_text())["files"] == ["report.html", "result.json"]
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "keep.py").write_text("code")
    write_folder(out, _writer(**{"result.json": "2"}), "t")
    assert (out / "result.json").read_text() == "2"
    assert not (out / "report.html").exists()  # the earlier result's file, not written again
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "keep.py").read_text() == "code"
    assert json.loads((out / MARKER).read_text())["files"] == ["result.json"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt", "result.json", "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_a_foreign_file_with_a_package_name_in_a_result_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "res"
    write_folder(out, _writer(**{"result.json": "1"}), "t")
    (out / "report.html").write_text("hand-written")
    with pytest.raises(OutputFolderError, match="report.html exists and was not written by discovery"):
        write_folder(out, _writer(**{"result.json": "2", "report.html": "new"}), "t")
    assert (out / "report.html").read_text() == "hand-written" and (out / "result.json").read_text() == "1"


def test_a_forged_marker_cannot_name_files_outside_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "res"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": "discovery-result", "version": 1, "files": ["../victim.txt"]}))
    with pytest.raises(OutputFolderError, match="not an earlier result folder"):
        write_folder(out, _writer(**{"result.json": "2"}), "t")
    assert victim.read_text() == "precious"


def test_report_into_a_result_folder_keeps_the_result(momentum, tmp_path):
    out = momentum.save(tmp_path / "res", report=False)
    momentum.report(out)
    names = {p.name for p in out.iterdir()}
    assert {"result.json", "model.pt", "report.html", "parity.png"} <= names
    assert {"result.json", "report.html"} <= set(json.loads((out / MARKER).read_text())["files"])


def test_current_folder_is_refused_when_not_a_result_folder(momentum_csv, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    code = main(["run", str(momentum_csv), "--crosscheck", "off", "--out", "."])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out: . exists and is not an earlier result folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_empty_current_folder_is_filled_in_place_without_debris(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_folder(".", _writer(**{"result.json": "1"}), "t")
    write_folder(".", _writer(**{"result.json": "2"}), "t")
    assert sorted(p.name for p in work.iterdir()) == [MARKER, "result.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no '..old.*' folder


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc, unwritable even for root")
def test_unwritable_out_is_refused_before_torch_is_imported(momentum_csv, tmp_path):
    script = ("import sys; from discovery.cli import main; "
              f"code = main(['run', {str(momentum_csv)!r}, '--out', '/proc/x']); "
              "print(code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.split() == ["2", "False"]  # refused, and nothing trained (torch never imported)
    assert proc.stderr.strip() == "discovery run: --out: cannot write to /proc/x (No such file or directory); pass a writable folder"


def test_api_precheck_names_the_folder(tmp_path, momentum_csv):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is not a folder") as info:
        check_output_folder(tmp_path / "file" / "res")
    assert info.value.path == tmp_path / "file" / "res"
    with pytest.raises(OutputFolderError, match="holds the input file"):
        check_output_folder(momentum_csv.parent, source=momentum_csv)
    assert check_output_folder(tmp_path / "new" / "res") == tmp_path / "new" / "res"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_failed_save_keeps_the_result_usable(momentum, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OutputFolderError) as info:
        momentum.save(blocker / "res")
    assert info.value.path == blocker / "res" and str(blocker) in str(info.value)
    out = momentum.save(tmp_path / "elsewhere", report=False)  # the same object saves fine elsewhere
    assert json.loads((out / "result.json").read_text())["formula"] == momentum.to_dict()["formula"]


def test_cli_prints_the_formula_before_a_failed_save(momentum, momentum_csv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "res"

    def discover_then_lose_the_folder(args, data, target=None, features=None):
        out.write_text("something took the place")  # the folder became unusable during training
        return momentum

    monkeypatch.setattr(cli, "_discover", discover_then_lose_the_folder)
    code = main(["run", str(momentum_csv), "--crosscheck", "off", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out.splitlines()[0] == f"p = {momentum.text(precision=6)}" and "R^2" in captured.out
    assert "results written" not in captured.out
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"discovery run: --out {out}: the result printed above could not be saved (")


def test_interrupt_after_a_complete_save_reports_the_save(momentum, momentum_csv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "res"
    real_save = type(momentum).save

    def save_then_interrupt(self, directory, **kwargs):
        path = real_save(self, directory, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after the folder is complete
        time.sleep(0.05)  # let the interpreter run its signal handler here, inside save
        return path

    monkeypatch.setattr(cli, "_discover", lambda *a, **k: momentum)
    monkeypatch.setattr(type(momentum), "save", save_then_interrupt)
    code = main(["run", str(momentum_csv), "--crosscheck", "off", "--no-report", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "interrupted" not in captured.err
    assert captured.out.splitlines()[-1] == f"results written to {out}/"
    assert (out / MARKER).exists() and (out / "result.json").exists()


def test_interrupt_before_saving_says_nothing_was_saved(momentum_csv, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_discover", interrupted)
    code = main(["run", str(momentum_csv), "--crosscheck", "off", "--out", str(tmp_path / "res")])
    assert code == 130 and capsys.readouterr().err == "discovery run: interrupted; nothing was saved\n"
    assert not (tmp_path / "res").exists()
