"""Large tables in one process: time and peak memory of ``discover(..., crosscheck="off")`` and of
Operon alone on the same CSV files, from a thousand to a million rows, in one run.

    .venv/bin/python experiments/scale.py                               # 1e3 .. 1e6 rows, 3 and 10 features, noise 0 and 1 %
    .venv/bin/python experiments/scale.py --rows 1e3,1e4,1e5            # skip the million
    .venv/bin/python experiments/scale.py --rows 1e6 --features 10 --noise 0 --methods discover

Laws, every x_i uniform on [-1, 1] (seeded per case):

- 3 features:  ``y = 0.5*x1**2 + x2*x3``
- 10 features: ``y = 0.5*x1**2 + x2*x3 + 0.1*x4 - 0.2*x5 + 0.3*x6 - 0.1*x7 + 0.2*x8 - 0.3*x9 + 0.15*x10``

Noise: Gaussian with the given fraction of the noise-free target's standard deviation. Every case
is written to a CSV (17 significant digits) in a temporary folder, and each method runs on it in
its own child process (a fresh interpreter, ``OMP_NUM_THREADS=1``), so that "seconds" is the
child's whole wall time from the CSV to the formula (imports excluded) and "peak MB" the child's
peak resident memory (``ru_maxrss`` from ``os.wait4``, which counts torch's allocations as
tracemalloc cannot). "cpu s" is the child's user + system time: on a busy machine it shows how
much of the wall time the case itself used.

- ``discover``: ``discover(csv, target="y", crosscheck="off", progress=False)``, defaults otherwise;
- ``operon``: ``load_table(csv)`` then ``discovery.crosscheck.operon.fit_operon`` with its defaults
  (40 generations of 500, at most 30 s of search) on ``--operon-threads`` threads (default 1, the
  thread ``discover`` trains on).

"Exact" means the same terms with every coefficient within 2 % of the true law (as in
``recovery.py``); R^2 is on 10,000 fresh noise-free rows. The scale goals are judged
at the end (PASS / FAIL / not run) on wall-clock seconds:

1. 1e6 rows x 10 features: ``discover`` under 90 s and under 1.5 GB with the exact formula;
2. ``discover``'s time grows by less than 2x from 1e5 to 1e6 rows;
3. ``discover`` is faster than Operon at every size.

Writes ``experiments/out/scale.csv`` (after every case, so a partial run is useful) and ``scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sympy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from _output import markdown, write_text  # noqa: E402

OUT = ROOT / "experiments" / "out"
LINEAR = {4: 0.1, 5: -0.2, 6: 0.3, 7: -0.1, 8: 0.2, 9: -0.3, 10: 0.15}
GOAL_SECONDS, GOAL_BYTES, GOAL_GROWTH = 90.0, 1.5e9, 2.0


def law(features: int) -> sympy.Expr:
    """The true law on ``features`` (3 or 10) variables x1..xp."""
    x = sympy.symbols(f"x1:{features + 1}")
    expr = sympy.Rational(1, 2) * x[0] ** 2 + x[1] * x[2]
    if features > 3:
        expr += sum(sympy.nsimplify(c) * x[i - 1] for i, c in LINEAR.items() if i <= features)
    return expr


def sample(rows: int, features: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` x ``features`` uniform inputs and the law's target with relative Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (rows, features))
    y = 0.5 * X[:, 0] ** 2 + X[:, 1] * X[:, 2]
    for i, c in LINEAR.items():
        if i <= features:
            y = y + c * X[:, i - 1]
    if noise > 0:
        y = y + rng.normal(0.0, noise * y.std(), rows)
    return X, y


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([*(f"x{i + 1}" for i in range(X.shape[1])), "y"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.17g", header=header, comments="")


# ------------------------------------------------------------------------------------ one case


def child(method: str, csv: str, features: int, threads: int, out: str) -> None:
    """Run one method on one CSV and write its result as JSON (runs in a fresh interpreter)."""
    from recovery import exact  # the same exactness rule as the recovery experiment

    start = time.perf_counter()
    row: dict = {}
    truth = law(features)
    if method == "discover":
        from discovery.pipeline import discover

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = discover(csv, target="y", crosscheck="off", progress=False)
        formula = d.formula
        row["timings"] = {k: round(float(v), 2) for k, v in d.timings.items()}
        fitted = getattr(d, "fitted", None)
        if fitted is not None and hasattr(fitted, "rows_used"):
            row["train rows"], row["val rows"] = fitted.train_rows, fitted.val_rows
    elif method == "operon":
        from discovery.crosscheck.operon import fit_operon
        from discovery.data import load_table

        table = load_table(csv, target="y")
        row["timings"] = {"load": round(time.perf_counter() - start, 2)}
        search = fit_operon(table.X, table.y, table.feature_names, seed=0, n_threads=threads)
        formula = sympy.sympify(search.formula)
    else:
        raise ValueError(f"scale.py: unknown method {method!r}; pass discover or operon")
    row["seconds"] = time.perf_counter() - start
    row["formula"] = str(sympy.sympify(formula).evalf(5))
    row["exact"] = bool(exact(formula, truth))
    X, y = sample(10_000, features, 0.0, seed=10_000 + features)
    names = [f"x{i + 1}" for i in range(features)]
    symbols = {s.name: s for s in sympy.sympify(formula).free_symbols}
    f = sympy.lambdify([symbols.get(n, sympy.Symbol(n)) for n in names], formula, "numpy")
    pred = np.broadcast_to(np.asarray(f(*X.T), dtype=np.float64), y.shape)
    row["r2 fresh"] = float(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    Path(out).write_text(json.dumps(row))


def measure(method: str, csv: Path, features: int, threads: int, timeout: float) -> dict:
    """Run :func:`child` in a fresh process; add its wall time, CPU time and peak memory."""
    with tempfile.TemporaryDirectory() as folder:
        out, log = Path(folder) / "row.json", Path(folder) / "log.txt"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        command = [sys.executable, __file__, "--child", method, str(csv), str(features), str(threads), str(out)]
        t0 = time.perf_counter()
        with open(log, "w") as sink:
            proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
            status, usage, timed_out = None, None, False
            while status is None:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == 0:
                    status = None
                    if time.perf_counter() - t0 > timeout:
                        proc.kill()
                        timed_out = True
                    time.sleep(0.2)
            proc.returncode = os.waitstatus_to_exitcode(status)
        row = {"wall s": time.perf_counter() - t0, "cpu s": usage.ru_utime + usage.ru_stime,
               "peak MB": usage.ru_maxrss / 1024}
        if timed_out:
            row["status"] = f"timeout after {timeout:g} s"
        elif proc.returncode != 0 or not out.exists():
            tail = " ".join(log.read_text().split()[-40:])
            row["status"] = f"failed ({proc.returncode}): {tail}"
        else:
            row.update(json.loads(out.read_text()))
            row["status"] = "ok"
        return row


# ------------------------------------------------------------------------------------ the run


def goals(frame: pd.DataFrame) -> list[str]:
    """PASS / FAIL / not run per scale goal."""
    ok = frame[frame["status"] == "ok"]
    d = ok[ok["method"] == "discover"]
    lines = []
    big = d[(d["rows"] == 1_000_000) & (d["features"] == 10)]
    if big.empty:
        lines.append("1. 1e6 x 10 features under 90 s and 1.5 GB, exact: not run")
    for r in big.to_dict("records"):
        verdict = r["seconds"] < GOAL_SECONDS and r["peak MB"] * 2**20 < GOAL_BYTES and bool(r["exact"])
        lines.append(f"1. 1e6 x 10 features, noise {r['noise']:g}: {r['seconds']:.1f} s, {r['peak MB']:.0f} MB, "
                     f"exact {r['exact']}: {'PASS' if verdict else 'FAIL'}")
    pairs = 0
    for (features, noise), group in d.groupby(["features", "noise"]):
        by_rows = group.set_index("rows")["seconds"]
        if 100_000 in by_rows and 1_000_000 in by_rows:
            pairs += 1
            growth = by_rows[1_000_000] / by_rows[100_000]
            lines.append(f"2. {features} features, noise {noise:g}: 1e5 -> 1e6 rows time x{growth:.2f}: "
                         f"{'PASS' if growth < GOAL_GROWTH else 'FAIL'}")
    if not pairs:
        lines.append("2. time growth 1e5 -> 1e6 rows under 2x: not run")
    keys = ["rows", "features", "noise"]
    both = d.merge(ok[ok["method"] == "operon"], on=keys, suffixes=("", " operon"))
    for r in both.to_dict("records"):
        s_d, s_o = r["seconds"], r["seconds operon"]
        lines.append(f"3. {r['rows']} rows, {r['features']} features, noise {r['noise']:g}: discover {s_d:.1f} s "
                     f"(cpu {r['cpu s']:.1f}), Operon {s_o:.1f} s (cpu {r['cpu s operon']:.1f}): "
                     f"{'PASS' if s_d < s_o else 'FAIL'}")
    if both.empty:
        lines.append("3. discover faster than Operon at every size: not run")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1e3,1e4,1e5,1e6", help="comma-separated row counts")
    parser.add_argument("--features", default="3,10", help="comma-separated feature counts (3 or 10)")
    parser.add_argument("--noise", default="0,0.01", help="comma-separated relative noise levels")
    parser.add_argument("--methods", default="discover,operon", help="discover, operon or both")
    parser.add_argument("--operon-threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case and method")
    parser.add_argument("--out", default="scale", help="output stem under experiments/out")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild <out>.md and the goals from an existing <out>.csv without running")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, csv, features, threads, out = args.child
        child(method, csv, int(features), int(threads), out)
        return
    if args.report_only:
        report(pd.read_csv(OUT / f"{args.out}.csv"), args)
        return

    rows = [int(float(r)) for r in args.rows.split(",")]
    features = [int(f) for f in args.features.split(",")]
    noises = [float(v) for v in args.noise.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    if any(f not in (3, 10) for f in features) or any(m not in ("discover", "operon") for m in methods):
        parser.error("--features takes 3 and/or 10, --methods discover and/or operon")
    results = []
    columns = ["rows", "features", "noise", "method", "status", "seconds", "wall s", "cpu s", "peak MB",
               "exact", "r2 fresh", "train rows", "val rows", "timings", "formula"]
    with tempfile.TemporaryDirectory(prefix="scale-") as folder:
        for n in rows:
            for p in features:
                for noise in noises:
                    X, y = sample(n, p, noise, seed=n * 100 + p * 10 + int(round(noise * 1000)))
                    csv = Path(folder) / f"rows{n}_features{p}_noise{noise:g}.csv"
                    write_csv(csv, X, y)
                    del X, y
                    for method in methods:
                        row = {"rows": n, "features": p, "noise": noise, "method": method,
                               **measure(method, csv, p, args.operon_threads, args.timeout)}
                        row.setdefault("seconds", float("nan"))
                        results.append(row)
                        print(f"{n:>8} rows {p:>2} features noise {noise:<5g} {method:<9} {row['status'][:60]:<10} "
                              f"{row['seconds']:7.1f} s (wall {row['wall s']:.1f}, cpu {row['cpu s']:.1f}) "
                              f"{row['peak MB']:6.0f} MB exact={row.get('exact')} {row.get('formula', '')[:70]}",
                              flush=True)
                        frame = pd.DataFrame(results).reindex(columns=columns)
                        write_text(OUT / f"{args.out}.csv", frame.to_csv(index=False))
                    csv.unlink()
    report(pd.DataFrame(results).reindex(columns=columns), args)


def report(frame: pd.DataFrame, args) -> None:
    """Print the goals and write ``<out>.md``."""
    verdicts = goals(frame)
    print("\n".join(["", "Goals:", *verdicts]))
    ran = {c: ",".join(f"{v:g}" for v in sorted(frame[c].unique())) for c in ("rows", "features", "noise")}
    text = [f"# Scale: rows {ran['rows']}, features {ran['features']}, noise {ran['noise']}", "",
            markdown(frame.drop(columns=["timings"])), "", "## Goals", "", *[f"- {v}" for v in verdicts], ""]
    write_text(OUT / f"{args.out}.md", "\n".join(text))


if __name__ == "__main__":
    main()
