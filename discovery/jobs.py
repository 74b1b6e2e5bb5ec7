"""Job lists for :func:`discovery.discover_many`: dicts, a DataFrame or a CSV file, checked into
jobs with absolute paths before anything runs (options against ``discover``'s signature)."""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from discovery.errors import DataError

__all__ = ["Job", "read_jobs", "JOB_KEYS"]

JOB_KEYS = ("data", "target", "options", "out")
"""Keys of one job."""

@dataclass
class Job:
    """One validated job; travels to the worker, so it holds only plain values and the data."""

    index: int
    data: Any  # absolute path string or DataFrame
    label: str  # the data as the user named it, for the table
    target: str | None
    options: dict = field(default_factory=dict)
    out: str | None = None  # absolute path
    out_label: str = ""


def read_jobs(jobs) -> list[Job]:
    """Validate a job list (see :func:`discovery.discover_many`) into jobs with absolute paths.

    Raises
    ------
    DataError
        Naming the job (or CSV line) and what to change.
    """
    from discovery.pipeline import discover

    allowed = [p for p in inspect.signature(discover).parameters if p not in ("data", "target")]
    if isinstance(jobs, (str, os.PathLike)):
        raw, where = _read_csv(Path(jobs)), (lambda i: f"{jobs} line {i + 2}")
    elif isinstance(jobs, pd.DataFrame):
        raw, where = _frame_jobs(jobs), (lambda i: f"job {i} (row {jobs.index[i]!r})")
    elif isinstance(jobs, Iterable) and not isinstance(jobs, Mapping):
        raw, where = list(jobs), (lambda i: f"job {i}")
    else:
        raise DataError(f"discover_many(jobs, ...): jobs is a {type(jobs).__name__}; pass a list of dicts, a "
                        "DataFrame or the path of a CSV file")
    specs, outs = [], {}
    for i, item in enumerate(raw):
        call = f"discover_many(jobs, ...): {where(i)}"
        if not isinstance(item, Mapping):
            raise DataError(f"{call} is a {type(item).__name__}; pass a dict with keys {', '.join(JOB_KEYS)}")
        unknown = [k for k in item if k not in JOB_KEYS]
        if unknown:
            raise DataError(f"{call}: unknown key {unknown[0]!r}; a job has {', '.join(JOB_KEYS)} (discover "
                            "arguments go in options)")
        data, target, out = item.get("data"), item.get("target"), item.get("out")
        options = dict(item.get("options") or {})
        if isinstance(data, (str, os.PathLike)) and str(data):
            label, data = str(data), str(Path(data).absolute())
        elif isinstance(data, pd.DataFrame):
            label = f"DataFrame {data.shape[0]}x{data.shape[1]}"
        else:
            raise DataError(f"{call}: data={data!r}; pass the path of a CSV file or a DataFrame")
        if target is not None and not isinstance(target, str):
            raise DataError(f"{call}: target={target!r}; pass a column name or leave it out (last column)")
        bad = [k for k in options if k not in allowed]
        if bad:
            raise DataError(f"{call}: {bad[0]!r} is not an argument of discover; pass some of {', '.join(allowed)}")
        out_label = ""
        if out is not None and str(out):
            out_label, out = str(out), str(Path(out).absolute())
            if out in outs:
                raise DataError(f"{call}: out={out_label!r} is also the folder of job {outs[out]}; give every job "
                                "its own folder")
            outs[out] = i
        else:
            out = None
        specs.append(Job(i, data, label, target or None, options, out, out_label))
    if not specs:
        raise DataError("discover_many(jobs, ...): no jobs; pass at least one")
    return specs


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _read_csv(path: Path) -> list[dict]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"discover_many({str(path)!r}): cannot read the job table ({' '.join(str(exc).split())}); "
                        "pass a CSV with a header line (data, target, out, one column per discover argument)") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if "data" not in frame.columns:
        raise DataError(f"discover_many({str(path)!r}): no 'data' column (columns: {', '.join(frame.columns)}); "
                        "name the column of table paths 'data'")
    jobs = []
    for i, record in enumerate(frame.to_dict("records")):
        job: dict = {"options": {}}
        for name, cell in record.items():
            cell = cell.strip()
            if name in ("data", "target", "out"):
                job[name] = cell or None
            elif cell:
                try:
                    value = _parse_cell(name, cell)
                except ValueError as exc:
                    raise DataError(f"discover_many({str(path)!r}): line {i + 2}, column {name}: {exc}") from None
                if name == "options":
                    if not isinstance(value, dict):
                        raise DataError(f"discover_many({str(path)!r}): line {i + 2}, column options: pass a "
                                        'JSON object such as {"order": 3}')
                    job["options"].update(value)
                else:
                    job["options"][name] = value
        jobs.append(job)
    return jobs


def _parse_cell(name: str, cell: str):
    """A CSV cell as the value a user means: int, float, bool, JSON object/list, or text."""
    if cell[0] in "{[":
        try:
            return json.loads(cell)
        except ValueError as exc:
            raise ValueError(f"{cell!r} is not valid JSON ({exc})") from None
    if name == "features":
        return [f.strip() for f in cell.split(",") if f.strip()]
    if cell.lower() in ("true", "false"):
        return cell.lower() == "true"
    if _INT.fullmatch(cell):
        return int(cell)
    if _FLOAT.fullmatch(cell):
        return float(cell)
    return cell


def _frame_jobs(frame: pd.DataFrame) -> list[dict]:
    jobs = []
    for record in frame.to_dict("records"):
        job: dict = {"options": {}}
        for name, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue  # a missing cell keeps discover's default
            if hasattr(value, "item") and not isinstance(value, pd.DataFrame):
                value = value.item()  # numpy scalar -> Python
            if isinstance(value, float) and value.is_integer() and name not in ("data", "target", "out"):
                value = int(value)  # an integer column with gaps comes back as floats
            if name in ("data", "target", "out"):
                job[name] = value
            elif name == "options":
                job["options"].update(value)
            else:
                job["options"][name] = value
        jobs.append(job)
    return jobs
