"""How many rows the networks should train on: ``discover`` with ``max_rows`` 2,000 and 10,000 on
the same large tables, side by side in one run.

    .venv/bin/python experiments/training_rows.py                              # default laws
    .venv/bin/python experiments/training_rows.py --laws thin_lens --sizes 2000,5000,10000

Each textbook law (``datasets/generate_textbook.py``) is sampled at ``--rows`` noise-free rows
(seed 123) and, at 1 % noise, with N(0, 0.01 * RMS(y)) added to the target. ``discover`` runs with
its defaults (``crosscheck="off"``, seed 0) except ``fit_options={"max_rows": m}``: the networks
train and validate on a seeded sample of ``m`` of the rows outside the test set, while the merge,
snapping and scores use every row. A law is solved as in ``recovery.py`` (constants rounded to 3
significant digits, difference or ratio simplifies to a constant). Seconds are wall-clock.
Writes ``experiments/out/training_rows.csv`` and ``training_rows.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import _suite  # noqa: E402
from _output import markdown, write_text  # noqa: E402
from discovery import discover  # noqa: E402

OUT = ROOT / "experiments" / "out"
LAWS = "thin_lens,arrhenius,compton,malus"


def run(laws: list[str], sizes: list[int], rows: int, noises: list[float]) -> pd.DataFrame:
    records = []
    for law in _suite.laws("textbook", laws):
        table = law.law.sample(rows, seed=123)
        for noise in noises:
            data = table.copy()
            if noise:
                data[law.target] = _suite.add_noise(data[law.target].to_numpy(), noise, 7)
            for m in sizes:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    d = discover(data, target=law.target, crosscheck="off", progress=False, seed=0,
                                 fit_options={"max_rows": m})
                seconds = time.perf_counter() - start
                solved = bool(_suite.judge(d.formula, law))
                records.append({"law": law.name, "noise": noise, "max_rows": m, "solved": solved,
                                "seconds": round(seconds, 1), "formula": _suite.text(d.formula)})
                print(f"{law.name:18s} noise {noise:<5g} max_rows {m:6d}  solved={solved!s:5s} {seconds:6.1f} s  "
                      f"{records[-1]['formula'][:80]}", flush=True)
    return pd.DataFrame(records)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", default=LAWS, help="comma-separated textbook laws")
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated max_rows values")
    parser.add_argument("--rows", type=int, default=20_000, help="rows sampled per law")
    parser.add_argument("--noise", default="0,0.01", help="comma-separated relative noise levels")
    args = parser.parse_args(argv)
    frame = run(args.laws.split(","), [int(s) for s in args.sizes.split(",")], args.rows,
                [float(s) for s in args.noise.split(",")])
    OUT.mkdir(parents=True, exist_ok=True)
    write_text(OUT / "training_rows.csv", frame.to_csv(index=False))
    summary = frame.groupby("max_rows").agg(solved=("solved", "sum"), runs=("solved", "size"),
                                            median_seconds=("seconds", "median")).reset_index()
    text = "# Training rows\n\n" + markdown(frame) + "\n\n## Summary\n\n" + markdown(summary) + "\n"
    write_text(OUT / "training_rows.md", text)
    print("\n" + markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
