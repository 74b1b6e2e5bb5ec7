"""discover_many and ``discovery batch``: a real Dask LocalCluster (2 processes, 1 thread each), results
identical to sequential ``discover`` calls, failures as rows, reruns that skip complete results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

import discovery
from discovery.errors import DataError
from discovery.folders import MARKER
from discovery.jobs import _parse_cell
from discovery.many import COLUMNS, JOB_FILE, _connect, _with_threads

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
TRIM_BEFORE = os.environ.get("MALLOC_TRIM_THRESHOLD_")  # before any Dask Nanny of this process sets it
SMALL = {"crosscheck": "off", "members": 2, "fit_options": {"max_epochs": 50, "lbfgs_steps": 20}}


@pytest.fixture(scope="module")
def client():
    """One real local cluster for the module (discover_many's own: 2 processes, 1 thread each), closed
    whatever the tests do."""
    with _connect(None, 2, None, "test") as c:
        yield c


def test_local_cluster_is_processes_with_one_thread_and_no_malloc_trimming(client):
    workers = client.scheduler_info()["workers"].values()
    assert sorted(w["nthreads"] for w in workers) == [1, 1]
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    if TRIM_BEFORE is None:  # a value of the user's own is passed on
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}


def _jobs(root: Path) -> list[dict]:
    return [
        {"data": str(discovery.bundled("paper_quadratic")), "options": {**SMALL, "seed": 0}, "out": str(root / "a")},
        {"data": str(discovery.bundled("saddle")), "options": {**SMALL, "seed": 1}, "out": str(root / "b")},
        {"data": str(discovery.bundled("paper_quadratic")), "target": "no_such_column", "options": SMALL,
         "out": str(root / "c")},
    ]


@pytest.fixture(scope="module")
def first_run(client, tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    jobs = _jobs(root)
    table = discovery.discover_many(jobs, client=client, report=False, progress=False)
    return root, jobs, table


def test_cluster_results_equal_sequential_discover_calls(first_run, one_thread):
    root, jobs, table = first_run
    assert list(table.columns) == COLUMNS and list(table["job"]) == [0, 1, 2]  # input order
    for i in (0, 1):
        job = jobs[i]
        d = discovery.discover(job["data"], job.get("target"), progress=False, **job["options"])
        expected = d.to_dict()
        assert table.loc[i, "formula"] == expected["formula"]
        assert table.loc[i, "r2"] == expected["scores"]["r2"]
        assert table.loc[i, "error"] == "" and not table.loc[i, "skipped"]
        saved = json.loads((Path(job["out"]) / "result.json").read_text())
        # the networks themselves trained identically, not only the rounded formula
        assert saved["networks"]["validation_rmse"] == expected["networks"]["validation_rmse"]
        assert saved["formula"] == expected["formula"]
    assert table.loc[0, "formula"] == "0.5*x1**2 + 0.5*x2"
    assert table.loc[1, "target"] == "y" and table.loc[1, "space"] == "raw"


def test_failing_job_is_a_row_with_its_error(first_run):
    root, jobs, table = first_run
    error = table.loc[2, "error"]
    assert error.startswith("DataError: ") and "no_such_column" in error and "\n" not in error
    assert pd.isna(table.loc[2, "formula"]) and not table.loc[2, "skipped"]
    assert not (root / "c").exists()  # nothing half-written for the failed job


def test_rerun_skips_complete_folders_without_touching_them(first_run, client):
    root, jobs, table = first_run
    before = {p: p.stat().st_mtime_ns for i in (0, 1) for p in Path(jobs[i]["out"]).iterdir()}
    again = discovery.discover_many(jobs, client=client.scheduler.address, report=False, progress=False)  # by address
    assert list(again["skipped"]) == [True, True, False]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert sorted(p for i in (0, 1) for p in Path(jobs[i]["out"]).iterdir()) == sorted(before)
    for column in ("formula", "r2", "rmse", "target", "space", "order", "seconds", "notes"):
        assert again.loc[[0, 1], column].tolist() == table.loc[[0, 1], column].tolist(), column
    assert again.loc[2, "error"] == table.loc[2, "error"]  # a failed job is tried again


def test_changed_options_rerun_the_job_in_its_folder(first_run, tmp_path, one_thread):
    _, jobs, _ = first_run
    folder = tmp_path / "a"
    job = {**jobs[0], "out": str(folder)}
    discovery.discover_many([job], n_workers=0, report=False, progress=False)
    (folder / "notes.txt").write_text("mine")
    marker = (folder / MARKER).stat().st_mtime_ns
    changed = {**job, "options": {**job["options"], "seed": 5}}
    table = discovery.discover_many([changed], n_workers=0, report=False, progress=False)
    assert not table.loc[0, "skipped"] and table.loc[0, "error"] == ""
    assert (folder / MARKER).stat().st_mtime_ns != marker
    assert json.loads((folder / JOB_FILE).read_text())["options"]["seed"] == 5
    assert (folder / "notes.txt").read_text() == "mine"  # a file discovery did not write stays


def test_malformed_job_lists_are_refused_before_anything_runs(tmp_path):
    data = str(discovery.bundled("momentum"))
    with pytest.raises(DataError, match="'ordre' is not an argument of discover"):
        discovery.discover_many([{"data": data, "options": {"ordre": 3}}], n_workers=0)
    with pytest.raises(DataError, match="also the folder of job 0"):
        discovery.discover_many([{"data": data, "out": str(tmp_path / "x")}] * 2, n_workers=0)
    with pytest.raises(DataError, match="unknown key 'output'"):
        discovery.discover_many([{"data": data, "output": "x"}], n_workers=0)
    with pytest.raises(DataError, match="index=5; the list has 1 jobs"):
        discovery.discover_many([{"data": data}], index=5)
    assert not (tmp_path / "x").exists()


def test_csv_cells_become_the_values_a_user_means():
    assert _parse_cell("order", "3") == 3 and isinstance(_parse_cell("order", "3"), int)
    assert _parse_cell("order", "auto") == "auto"
    assert _parse_cell("test_fraction", "0.25") == 0.25 and _parse_cell("crosscheck_budget", "1e1") == 10.0
    assert _parse_cell("progress", "False") is False and _parse_cell("progress", "true") is True
    assert _parse_cell("fit_options", '{"max_epochs": 50}') == {"max_epochs": 50}
    assert _parse_cell("features", "m, v") == ["m", "v"]
    assert _parse_cell("crosscheck", "off") == "off"


def test_each_job_caps_operon_threads():
    assert _with_threads({}, 1)["crosscheck_options"] == {"n_threads": 1}
    assert _with_threads({"crosscheck": "operon", "crosscheck_options": {"n_threads": 4}}, 1)[
        "crosscheck_options"] == {"n_threads": 4}  # the user's own choice wins
    assert "crosscheck_options" not in _with_threads({"crosscheck": "off"}, 1)
    assert "crosscheck_options" not in _with_threads({"crosscheck": "gplearn"}, 1)  # gplearn runs serially


# ------------------------------------------------------------------------------------- command line
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "discovery.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def jobs_csv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batch")
    quadratic = discovery.bundled("paper_quadratic")
    fit = '"{""max_epochs"": 50, ""lbfgs_steps"": 20}"'
    (folder / "jobs.csv").write_text(
        "data,target,out,seed,members,crosscheck,fit_options\n"
        f"missing.csv,,r0,0,2,off,{fit}\n"
        f"{quadratic},y,r1,0,2,off,{fit}\n"
        f"{quadratic},,r2,3,2,false,{fit}\n"
    )
    return folder / "jobs.csv"


def test_cli_index_runs_one_row_then_batch_runs_the_rest_on_a_local_cluster(jobs_csv):
    proc = _cli("batch", "jobs.csv", "--index", "1", "--no-report", cwd=jobs_csv.parent)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(StringIO(proc.stdout), keep_default_na=False)
    assert table["job"].tolist() == [1] and table.loc[0, "formula"] == "0.5*x1**2 + 0.5*x2"
    saved = json.loads((jobs_csv.parent / "r1" / "result.json").read_text())
    assert saved["networks"]["members"] == 2 and saved["settings"]["fit"]["max_epochs"] == 50  # parsed cells
    assert not (jobs_csv.parent / "r0").exists() and not (jobs_csv.parent / "r2").exists()  # only row 1 ran

    proc = _cli("batch", "jobs.csv", "--workers", "2", "--no-report", cwd=jobs_csv.parent)
    assert proc.returncode == 2  # one job failed
    table = pd.read_csv(StringIO(proc.stdout), keep_default_na=False)
    assert table["job"].tolist() == [0, 1, 2]
    assert table.loc[0, "error"].startswith("DataError: ") and "missing.csv" in table.loc[0, "error"]
    assert table["skipped"].tolist() == [False, True, False]
    assert table.loc[2, "error"] == "" and float(table.loc[2, "r2"]) > 0.9999
    assert json.loads((jobs_csv.parent / "r2" / JOB_FILE).read_text())["options"]["seed"] == 3
    assert "1 of 3 jobs failed" in proc.stderr.splitlines()[-1]
    assert sum("discover_many: [" in line for line in proc.stderr.splitlines()) == 3  # one line per job


def test_cli_batch_refuses_a_table_without_out_folders(tmp_path):
    (tmp_path / "jobs.csv").write_text(f"data,seed\n{discovery.bundled('momentum')},1\n")
    proc = _cli("batch", "jobs.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "no 'out' column" in proc.stderr and proc.stdout == ""


def test_dataframe_jobs_skip_only_while_their_content_is_unchanged(tmp_path, one_thread):
    frame = pd.read_csv(discovery.bundled("momentum"))
    job = {"data": frame, "target": "p", "options": {**SMALL, "space": "raw"}, "out": str(tmp_path / "m")}
    first = discovery.discover_many([job], n_workers=0, report=False, progress=False)
    assert first.loc[0, "error"] == "" and first.loc[0, "data"] == "DataFrame 2000x3"
    assert discovery.discover_many([job], n_workers=0, report=False, progress=False).loc[0, "skipped"]
    changed = frame.copy()
    changed.loc[0, "p"] += 1.0
    again = discovery.discover_many([{**job, "data": changed}], n_workers=0, report=False, progress=False)
    assert not again.loc[0, "skipped"] and again.loc[0, "error"] == ""


def test_a_moved_table_with_the_same_content_is_still_the_same_job(tmp_path, one_thread):
    first, moved = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_bytes(discovery.bundled("paper_quadratic").read_bytes())
    moved.write_bytes(first.read_bytes())
    job = {"data": str(first), "options": SMALL, "out": str(tmp_path / "r")}
    assert not discovery.discover_many([job], n_workers=0, report=False, progress=False).loc[0, "skipped"]
    again = discovery.discover_many([{**job, "data": str(moved)}], n_workers=0, report=False, progress=False)
    assert again.loc[0, "skipped"] and again.loc[0, "data"] == str(moved)
