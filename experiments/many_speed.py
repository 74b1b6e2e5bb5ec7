"""Many analyses at once: the public law suite run one job after another in this process and
through ``discover_many`` on a local Dask cluster, in one run: both wall times, their ratio, and
whether the results are identical.

    .venv/bin/python experiments/many_speed.py                          # every bundled law, noise 0
    .venv/bin/python experiments/many_speed.py --laws momentum,saddle   # a smoke run
    .venv/bin/python experiments/many_speed.py --noise 0,0.01           # also 1 % noise

Jobs: every ``datasets/*.csv`` (the laws of ``datasets/README.md``) with ``discover``'s default
settings (seed 0). The bundled tables are noise-free, so the suite is noise 0; ``--noise`` adds
Gaussian noise with the given fraction of the target's standard deviation (seeded), passed as
DataFrame jobs. Both runs go through the same job code with one thread per job (torch and
Operon), so the ratio measures running jobs side by side and "identical" can hold bit for bit:
same formula string (17 digits) and same held-out R^2. The cluster's wall time includes starting
its workers. Both runs write full result folders (reports too) under a temporary folder that is
removed afterwards. Writes ``experiments/out/many_speed.csv`` and ``many_speed.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import discovery  # noqa: E402
import discovery.pipeline  # noqa: E402,F401  (imports are not part of either timing)
from discovery.many import discover_many  # noqa: E402
from _output import write_text  # noqa: E402

OUT = ROOT / "experiments" / "out"


def jobs_for(laws: list[str], noises: list[float], root: Path) -> tuple[list[dict], list[dict]]:
    """One job per law and noise level, with its result folder under ``root``."""
    jobs, labels = [], []
    for law in laws:
        path = discovery.bundled(law)
        for noise in noises:
            data: object = str(path)
            if noise > 0:
                frame = pd.read_csv(path)
                y = frame.iloc[:, -1].to_numpy()
                rng = np.random.default_rng(1000 + len(jobs))
                frame.iloc[:, -1] = y + noise * np.std(y) * rng.standard_normal(len(y))
                data = frame
            jobs.append({"data": data, "options": {"seed": 0}, "out": str(root / f"{law}-{noise:g}")})
            labels.append({"law": law, "noise": noise})
    return jobs, labels


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", default=None, help="comma-separated bundled laws (default: all)")
    parser.add_argument("--noise", default="0", help="comma-separated noise fractions (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster (default 2)")
    args = parser.parse_args(argv)
    laws = args.laws.split(",") if args.laws else discovery.list_bundled()
    noises = [float(v) for v in args.noise.split(",")]

    with tempfile.TemporaryDirectory(prefix="many_speed-") as tmp:
        seq_jobs, labels = jobs_for(laws, noises, Path(tmp) / "sequential")
        par_jobs, _ = jobs_for(laws, noises, Path(tmp) / "cluster")
        t0 = time.perf_counter()
        seq = discover_many(seq_jobs, n_workers=0, threads_per_job=1)
        seq_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = discover_many(par_jobs, n_workers=args.workers, threads_per_job=1)
        par_wall = time.perf_counter() - t0

    rows = []
    for i, label in enumerate(labels):
        a, b = seq.loc[i], par.loc[i]
        rows.append({**label, "formula": a["formula"], "r2": a["r2"], "seconds_sequential": a["seconds"],
                     "seconds_cluster": b["seconds"], "error": a["error"] or b["error"],
                     "identical": same(a["formula"], b["formula"]) and same(a["r2"], b["r2"])
                     and a["error"] == b["error"]})
    table = pd.DataFrame(rows)
    ratio = seq_wall / par_wall
    n_same = int(table["identical"].sum())
    summary = (f"{len(table)} jobs on {os.cpu_count()} CPU cores: sequential {seq_wall:.1f} s, discover_many with "
               f"{args.workers} workers {par_wall:.1f} s (cluster start included), speed-up {ratio:.2f}x; "
               f"identical results (formula and R^2) for {n_same} of {len(table)}")
    OUT.mkdir(parents=True, exist_ok=True)
    write_text(OUT / "many_speed.csv", table.to_csv(index=False))
    write_text(OUT / "many_speed.md", f"# many_speed\n\n{summary}\n\n```\n{table.to_string(index=False)}\n```\n")
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False))
    print(summary)
    return 0 if n_same == len(table) else 1


if __name__ == "__main__":
    sys.exit(main())
