"""``discover_many``: one ``discover`` call per job, on Dask, with a table of results.

A job is a table (path or DataFrame), an optional target, ``discover`` arguments and an optional
result folder. Jobs run on a ``dask.distributed`` cluster (a local one sized to the machine by
default, or any scheduler by address or ``Client``), or one after another in this process
(``n_workers=0``, or ``index=`` for one task of a SLURM/PBS array). Each job limits its own
threads (torch and Operon), turns any failure into a row with the error, and saves its result
with :meth:`Discovery.save` plus a ``job.json`` that records what it ran on; a rerun skips a job
whose folder already holds a complete result of the same job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

import pandas as pd

from discovery.errors import DataError, DiscoveryError
from discovery.jobs import Job, read_jobs

__all__ = ["discover_many", "COLUMNS", "JOB_FILE"]

COLUMNS = ["job", "data", "target", "out", "formula", "r2", "rmse", "space", "order", "seconds", "skipped",
           "error", "warnings", "notes"]
"""Columns of the table ``discover_many`` returns, in order."""

JOB_FILE = "job.json"
"""File in a result folder that records the job (data hash, target, options) the result belongs to."""

_JOB_FORMAT = "discovery-job"
_OPERON_ENGINES = (None, "auto", "operon")  # crosscheck values that run Operon, whose default is every core
_TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
_TRIM = f"distributed.nanny.pre-spawn-environ.{_TRIM_VARIABLE}"
_USER_TRIM = os.environ.get(_TRIM_VARIABLE)  # a value set before any Dask Nanny in this process could add one


def discover_many(
    jobs,
    *,
    client=None,
    n_workers: int | None = None,
    threads_per_job: int | None = None,
    index: int | None = None,
    report: bool = True,
    progress: bool = True,
    cluster_options: dict | None = None,
) -> pd.DataFrame:
    """Run :func:`discovery.discover` once per job, in parallel, and return one row per job.

    Parameters
    ----------
    jobs : iterable of dict, pandas.DataFrame, or str / path of a CSV file
        Each job has ``data`` (a CSV path or a DataFrame), and optionally ``target``, ``options``
        (a dict of ``discover`` arguments, e.g. ``{"order": 3, "seed": 1}``) and ``out`` (the
        result folder; without it nothing is saved and a rerun cannot skip the job). In a
        DataFrame or CSV every other column is one ``discover`` argument; CSV cells are parsed
        as integers, floats, booleans (true/false), JSON objects or lists (``{...}``, ``[...]``)
        or strings, an empty cell leaves the default, and ``features`` is split at commas.
        Relative paths are taken from the current folder.
    client : distributed.Client, str or cluster, optional
        Where to run: an existing ``Client``, a scheduler address (``"tcp://host:8786"``) or a
        cluster object (e.g. ``dask_jobqueue.SLURMCluster``). Default: a ``LocalCluster`` of
        ``n_workers`` processes with one thread each, closed when the call returns.
    n_workers : int, optional
        Workers of the local cluster (default: the cores available, at most one per job to
        run). ``0`` runs the jobs one after another in this process, without Dask.
    threads_per_job : int, optional
        Threads each job gives torch and Operon (Operon's own default is every core, which
        would oversubscribe the machine once per worker). Default 1 on a cluster, every
        available core in this process.
    index : int, optional
        Run only the job at this position (0-based; for a CSV, its data rows) in this process,
        with no scheduler: one task of a SLURM/PBS array job.
    report : bool, default True
        Write each result folder's HTML report and figures.
    progress : bool, default True
        A progress bar over jobs on a terminal, otherwise one line per finished job (stderr).
    cluster_options : dict, optional
        Extra ``distributed.LocalCluster`` arguments (e.g. ``{"dashboard_address": ":8787"}``).

    Returns
    -------
    pandas.DataFrame
        One row per job, in input order, with the columns :data:`COLUMNS`: ``job`` (position),
        ``data``, ``target`` (as found), ``out``, ``formula`` (17 digits, as in ``result.json``),
        ``r2`` and ``rmse`` (held-out rows), ``space``, ``order``, ``seconds`` (of the
        ``discover`` call; for a skipped job, of the run that wrote the folder), ``skipped``
        (the folder already held this job's complete result, which was read instead),
        ``error`` (empty when the job worked, else ``Type: message`` on one line),
        ``warnings`` (what the job warned while running) and ``notes`` (the result's notes, e.g.
        a cross-check engine that failed), both ``" | "``-separated.

    Raises
    ------
    DataError
        A malformed job list (no ``data``, an unknown key or ``discover`` argument, two jobs
        with the same ``out``); nothing has run then. Failures of single jobs never raise.

    Examples
    --------
    >>> jobs = [{"data": "datasets/momentum.csv", "options": {"seed": s}, "out": f"results/m{s}"}
    ...         for s in range(4)]
    >>> table = discover_many(jobs, n_workers=2)  # doctest: +SKIP
    >>> table[["formula", "r2", "seconds", "error"]]  # doctest: +SKIP
    """
    call = "discover_many(jobs, ...)"
    specs = read_jobs(jobs)
    if index is not None:
        if client is not None:
            raise DataError(f"{call}: index={index!r} runs one job here without a scheduler; drop client=")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(specs):
            raise DataError(f"{call}: index={index!r}; the list has {len(specs)} jobs, pass 0 to {len(specs) - 1}")
        specs = [specs[index]]
        n_workers = 0
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0):
        raise DataError(f"{call}: n_workers={n_workers!r}; pass a non-negative integer (0: in this process)")
    here = n_workers == 0
    if here and client is not None and index is None:
        raise DataError(f"{call}: n_workers=0 runs the jobs here without a scheduler; drop client=")
    if threads_per_job is None:
        threads_per_job = _cores() if here else 1
    if isinstance(threads_per_job, bool) or not isinstance(threads_per_job, int) or threads_per_job < 1:
        raise DataError(f"{call}: threads_per_job={threads_per_job!r}; pass a positive integer")

    rows: dict[int, dict] = {}
    bar = _Progress(len(specs), progress)
    try:
        pending = []
        for job in specs:
            saved = _finished(job)
            if saved is None:
                pending.append(job)
            else:
                rows[job.index] = saved
                bar.done(saved)
        if pending and here:
            for job in pending:
                rows[job.index] = _run_job(job, threads_per_job, report)
                bar.done(rows[job.index])
        elif pending:
            workers = n_workers or min(_cores(), len(pending))
            with _connect(client, workers, cluster_options, call) as dask_client:
                _run_on(dask_client, pending, threads_per_job, report, rows, bar)
    finally:
        bar.close()
    table = pd.DataFrame([rows[job.index] for job in specs], columns=COLUMNS)
    return table.astype({"job": "int64", "order": "Int64", "r2": "float64", "rmse": "float64", "seconds": "float64",
                         "skipped": "bool"})


# ------------------------------------------------------------------------------------- one job
def _run_job(job: Job, threads: int, report: bool) -> dict:
    """Run one job where it lands: skip, or discover + save; every failure becomes the row's error."""
    row = _row(job)
    start = time.perf_counter()
    caught: list[str] = []
    try:
        saved = _finished(job)
        if saved is not None:
            return saved
        from discovery.folders import check_output_folder, write_folder
        from discovery.pipeline import discover

        start = time.perf_counter()  # a worker's first job imports torch: not part of the job's time
        source = job.data if isinstance(job.data, str) else None
        if job.out is not None:  # before the long run, so an unusable folder costs nothing
            check_output_folder(job.out, source=source, call=f"discover_many: job {job.index}, out={job.out_label!r}")
        identity = _identity(job)  # of the data as discover reads it, not as it may be after the run
        with warnings.catch_warnings(record=True) as log, _threads(threads):
            warnings.simplefilter("always")
            d = discover(job.data, job.target, **_with_threads(job.options, threads))
        caught = list(dict.fromkeys(" ".join(str(w.message).split()) for w in log))
        result = json.loads(d.to_json())
        row.update(_from_result(result))
        if job.out is not None:
            d.save(job.out, report=report)
            text = json.dumps(identity, indent=1) + "\n"
            write_folder(job.out, lambda tmp: (tmp / JOB_FILE).write_text(text),
                         f"discover_many: job {job.index}, out={job.out_label!r}", source, replace_all=False)
    except Exception as exc:  # a failed job is a row, never a lost job or a stopped batch
        row["error"] = _one_line(exc)
        if row["seconds"] is None:
            row["seconds"] = time.perf_counter() - start
    row["warnings"] = " | ".join(caught)
    return row


def _with_threads(options: dict, threads: int) -> dict:
    options = {"progress": False, **options}
    if options.get("crosscheck", "auto") in _OPERON_ENGINES:
        cc = dict(options.get("crosscheck_options") or {})
        cc.setdefault("n_threads", threads)  # discovery.crosscheck.operon.fit_operon's thread count
        options["crosscheck_options"] = cc
    return options


@contextlib.contextmanager
def _threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _row(job: Job) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(job=job.index, data=job.label, target=job.target, out=job.out_label, skipped=False, error="",
               warnings="", notes="")
    return row


def _from_result(result: dict) -> dict:
    scores = result.get("scores") or {}
    return {"target": result.get("target"), "formula": result.get("formula"), "r2": scores.get("r2"),
            "rmse": scores.get("rmse"), "space": result.get("space"), "order": result.get("order"),
            "seconds": (result.get("timings") or {}).get("total"), "notes": " | ".join(result.get("notes") or [])}


def _identity(job: Job) -> dict:
    """What the result depends on: the data's content, the target and the options."""
    return {"format": _JOB_FORMAT, "version": 1, "data": job.label, "data_sha256": _data_hash(job.data),
            "target": job.target, "options": json.loads(json.dumps(job.options, sort_keys=True, default=_plain))}


def _data_hash(data) -> str | None:
    digest = hashlib.sha256()
    if isinstance(data, pd.DataFrame):
        digest.update(json.dumps([str(c) for c in data.columns]).encode())
        digest.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
        return digest.hexdigest()
    try:
        with open(data, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None  # discover will say what is wrong with the file
    return digest.hexdigest()


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def _finished(job: Job) -> dict | None:
    """The row of a complete earlier result of this same job in ``job.out``, or None."""
    from discovery.folders import _marker_files

    if job.out is None:
        return None
    folder = Path(job.out)
    listed = _marker_files(folder) if folder.is_dir() else None
    if not listed or "result.json" not in listed or JOB_FILE not in listed:
        return None
    if not all((folder / name).is_file() for name in listed):
        return None  # a listed file went missing: not complete
    try:
        recorded = json.loads((folder / JOB_FILE).read_text())
        result = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not isinstance(result, dict):
        return None
    identity = _identity(job)
    same = all(recorded.get(k) == v for k, v in identity.items() if k != "data")  # "data": the name, for people
    if identity["data_sha256"] is None or not same:
        return None  # another job's result (other data, target or options): run this one
    row = _row(job)
    row.update(_from_result(result))
    row["skipped"] = True
    return row


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------------------------- Dask
@contextlib.contextmanager
def _connect(client, n_workers: int, cluster_options: dict | None, call: str):
    from distributed import Client, LocalCluster

    if isinstance(client, Client):
        yield client  # the caller's: left open
        return
    if client is not None:
        try:
            connected = Client(client)
        except OSError as exc:
            raise DiscoveryError(f"{call}: cannot reach the scheduler {client!r} ({_one_line(exc)}); start it "
                                 "(dask scheduler) or pass its address as tcp://host:8786") from exc
        with connected:
            yield connected
        return
    options = {"n_workers": n_workers, "threads_per_worker": 1, "processes": True, "silence_logs": logging.ERROR,
               "dashboard_address": None, **(cluster_options or {})}
    with _without_trimming():
        cluster = LocalCluster(**options)
    with cluster, Client(cluster) as local:
        yield local


@contextlib.contextmanager
def _without_trimming():
    """Start workers without Dask's MALLOC_TRIM_THRESHOLD_=65536.

    It makes glibc hand memory back after nearly every free, and the many small tensors of
    training then cost about 1.6x the CPU time. Workers read it when they start. A Nanny also
    writes it into this process's environment, which later workers would inherit, so a value
    that was not there when this module was imported is removed while the workers start.
    """
    import dask

    saved = os.environ.pop(_TRIM_VARIABLE, None) if _USER_TRIM is None else None
    try:
        with dask.config.set({_TRIM: None}):
            yield
    finally:
        if saved is not None:
            os.environ[_TRIM_VARIABLE] = saved


def _run_on(client, jobs: list[Job], threads: int, report: bool, rows: dict, bar: "_Progress") -> None:
    from distributed import as_completed

    batch = uuid.uuid4().hex[:8]
    futures = {client.submit(_run_job, job, threads, report, pure=False, key=f"discover-{batch}-{job.index}"): job
               for job in jobs}
    try:
        for future in as_completed(futures):
            job = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # the worker died or the task could not run: still a row
                row = _row(job)
                row["error"] = _one_line(exc)
            rows[job.index] = row
            future.release()
            bar.done(row)
    finally:
        left = [f for f in futures if f.status == "pending"]
        if left:  # interrupted: do not leave the cluster working for nobody
            client.cancel(left)


class _Progress:
    """A bar over jobs on a terminal; one line per finished job otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.count = total, 0
        tty = sys.stderr.isatty()
        self.lines = enabled and not tty
        self.bar = None
        if enabled and tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="discover_many", unit="job", file=sys.stderr)

    def done(self, row: dict) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
            if row["error"]:
                self.bar.set_postfix_str(f"job {row['job']} failed", refresh=True)
        elif self.lines:
            head = f"discover_many: [{self.count}/{self.total}] job {row['job']} ({row['data']})"
            if row["error"]:
                tail = f"failed: {row['error']}"
            else:
                seconds = f"{row['seconds']:.1f} s" if row["seconds"] is not None else "?"
                how = "skipped, complete result in " + row["out"] if row["skipped"] else f"done in {seconds}"
                tail = f"{how}: {row['target']} = {row['formula']} (R^2 {_number(row['r2'])})"
            if row["warnings"]:
                tail += f"; warnings: {row['warnings']}"
            print(f"{head} {tail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _number(value) -> str:
    return "?" if value is None else f"{value:.6g}"
