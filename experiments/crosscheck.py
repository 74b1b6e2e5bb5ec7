"""Cross-check every bundled law: HOPE's formula against Operon's, with verdicts and times.

    .venv/bin/python experiments/crosscheck.py                 # discover + Operon when discover exists
    .venv/bin/python experiments/crosscheck.py --mode operon   # Operon alone (no discover needed)
    .venv/bin/python experiments/crosscheck.py --laws gaussian,momentum --noise 0.01

Per law it prints the HOPE formula (``discover(csv, order=3, crosscheck="operon")``), Operon's
formula, the verdict, the recommended formula with held-out R^2 of both, and times; then how often
the two agree and whether the recommended formula is the true law. It also measures HOPE-guided
search: Operon on all variables vs Operon restricted to the variables (and additive split) that the
structure tests on the networks' exact derivatives found (what ``crosscheck_guide="structure"``
passes; the expansion's formula stands in where there is no structure report), at the same
settings. ``--distractors k`` adds k columns the law does not use. With ``--mode operon`` the true
law stands in for the expansion's formula, so the table gives Operon's recovery and its time per
law at the defaults ``discover`` is compared with.

Writes ``experiments/out/crosscheck_<mode>[_noise<level>][_gen<n>].csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sympy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discovery.crosscheck import AGREE, compare, equivalence, guide_from_formula  # noqa: E402
from discovery.crosscheck.operon import default_threads  # noqa: E402
from discovery.data import load_table  # noqa: E402
from _output import write_text  # noqa: E402

OUT = ROOT / "experiments" / "out"


def true_laws() -> dict[str, str]:
    """Law name -> right-hand side, from the bundled datasets' generator."""
    spec = importlib.util.spec_from_file_location("_bundled_generate", ROOT / "datasets" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return {law.name: law.law.split("=", 1)[1].strip() for law in module.LAWS}


def parse_truth(rhs: str, table) -> sympy.Expr:
    """The true law in the table's (possibly renamed) column names."""
    renamed = dict(table.renamed)
    local = {orig: sympy.Symbol(new) for orig, new in renamed.items()}
    local.update({n: sympy.Symbol(n) for n in table.feature_names if n not in local.values()})
    return sympy.parse_expr(rhs, local_dict=local)


def short(expr, digits: int = 4) -> str:
    if expr is None:
        return ""
    return str(sympy.sympify(expr).evalf(digits)).replace("**", "^")




def run_law(name: str, rhs: str, mode: str, noise: float, threads: int, guided: bool, options: dict,
            distractors: int = 0) -> dict:
    path = ROOT / "datasets" / f"{name}.csv"
    with warnings.catch_warnings():  # renamed columns (E -> E_) are expected here
        warnings.simplefilter("ignore")
        table = load_table(path)
    X, y, names = table.X, table.y.copy(), list(table.feature_names)
    if noise > 0:
        y = y + noise * np.std(y) * np.random.default_rng(0).standard_normal(len(y))
    truth = parse_truth(rhs, table)
    if distractors:  # columns the law does not use, on the range of the first feature
        rng = np.random.default_rng(1)
        extra = rng.uniform(X[:, 0].min(), X[:, 0].max(), (len(y), distractors))
        X = np.column_stack([X, extra])
        names = names + [f"z{i + 1}" for i in range(distractors)]
    row: dict = {"law": name, "true law": rhs}
    if mode == "discover":
        discover = _discover()
        data = path
        if noise > 0 or distractors:
            frame = pd.DataFrame(np.column_stack([X, y]), columns=names + [table.target_name])
            data = frame
        t0 = time.perf_counter()
        extra = {"progress": False} if "progress" in inspect.signature(discover).parameters else {}
        result = discover(data, order=3, crosscheck="operon", **extra)
        row["discover s"] = time.perf_counter() - t0
        hope = result.expansion_formula
        c = result.crosscheck
    else:
        hope = truth  # the true law stands in for the expansion's formula
        c = compare(hope, X, y, names, engine="operon", seed=0, n_threads=threads, **options)
    row["HOPE formula"] = short(hope) if mode == "discover" else "(true law)"
    row["Operon formula"] = short(c.engine_formula)
    row["verdict"] = c.verdict
    row["recommended"] = c.recommended
    row["R2 HOPE"] = c.r2["expansion"]
    row["R2 Operon"] = c.r2[c.engine]
    row["Operon s"] = c.times["engine"]
    row["Operon CPU s"] = c.times.get("engine_cpu", float("nan"))
    recommended = c.recommended_formula
    row["recommended = true law"] = equivalence(truth, recommended, X, names).verdict == AGREE
    row["Operon = true law"] = equivalence(truth, c.engine_formula, X, names).verdict == AGREE
    if guided:
        structure = getattr(result, "structure", None) if mode == "discover" else None
        if structure is not None:  # what discover(crosscheck_guide="structure") passes
            from discovery.pipeline import structure_guide

            g, row["guide from"] = structure_guide(structure), "network structure"
        else:
            g, row["guide from"] = guide_from_formula(hope, names), "formula"
        cg = compare(hope, X, y, names, engine="operon", seed=0, guide=g, n_threads=threads, **options)
        row["guided by"] = cg.guided or "(all variables)"
        row["guided Operon formula"] = short(cg.engine_formula)
        row["guided Operon s"] = cg.times["engine"]
        row["guided R2"] = cg.r2[cg.engine]
        row["guided = true law"] = equivalence(truth, cg.engine_formula, X, names).verdict == AGREE
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", default="", help="comma-separated law names (default: all bundled)")
    parser.add_argument("--mode", choices=["auto", "discover", "operon"], default="auto")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise, fraction of the target's std")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--no-guided", action="store_true", help="skip the guided-search measurement")
    parser.add_argument("--generations", type=int, default=None, help="override Operon's generations")
    parser.add_argument("--distractors", type=int, default=0, help="add this many irrelevant uniform columns")
    args = parser.parse_args(argv)

    mode = args.mode
    if mode == "auto":
        mode = "discover" if _discover() is not None else "operon"
    laws = true_laws()
    chosen = [n for n in args.laws.split(",") if n] or list(laws)
    options = {} if args.generations is None else {"generations": args.generations}
    print(f"mode={mode} noise={args.noise} threads={args.threads} laws={len(chosen)}", flush=True)
    rows = []
    for name in chosen:
        row = run_law(name, laws[name], mode, args.noise, args.threads, not args.no_guided, options, args.distractors)
        rows.append(row)
        print(f"{name:16s} {row['verdict']:27s} rec={row['recommended']:9s} Operon {row['Operon s']:5.1f}s  "
              f"{row['Operon formula']}", flush=True)
    frame = pd.DataFrame(rows)

    agree = int((frame["verdict"] == AGREE).sum())
    lines = [
        f"# Cross-check of the bundled laws (mode {mode}, noise {args.noise:g}, {args.threads} threads, "
        f"generations {args.generations or 'default'}, {args.distractors} irrelevant columns)",
        "",
        frame.to_markdown(index=False, floatfmt=".6g") if _has_tabulate() else frame.to_string(index=False),
        "",
        f"- verdict `agree`: {agree} of {len(frame)} laws",
        f"- Operon recovers the true law: {int(frame['Operon = true law'].sum())} of {len(frame)}",
        f"- recommended formula is the true law: {int(frame['recommended = true law'].sum())} of {len(frame)}",
        f"- Operon time per law: median {statistics.median(frame['Operon s']):.2f} s, "
        f"max {frame['Operon s'].max():.2f} s (CPU time over all threads: median "
        f"{statistics.median(frame['Operon CPU s']):.2f} s)",
        f"- load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times stretch with it)",
    ]
    if "discover s" in frame:
        lines.append(f"- discover time per law (with cross-check): median {statistics.median(frame['discover s']):.2f} s")
    if "guided Operon s" in frame:
        lines.append(
            f"- guided Operon recovers the true law: {int(frame['guided = true law'].sum())} of {len(frame)}; "
            f"median time {statistics.median(frame['guided Operon s']):.2f} s"
        )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    suffix = f"_{mode}" + ("" if args.noise == 0 else f"_noise{args.noise:g}")
    suffix += "" if args.generations is None else f"_gen{args.generations}"
    suffix += "" if not args.distractors else f"_distractors{args.distractors}"
    write_text(OUT / f"crosscheck{suffix}.md", text)
    write_text(OUT / f"crosscheck{suffix}.csv", frame.to_csv(index=False))
    return frame


def _discover():
    """``discovery.discover`` (or the pipeline's, before it is exported), or ``None``."""
    import discovery

    if hasattr(discovery, "discover"):
        return discovery.discover
    try:
        from discovery.pipeline import discover
    except ImportError:
        return None
    return discover


def _has_tabulate() -> bool:
    return importlib.util.find_spec("tabulate") is not None


if __name__ == "__main__":
    main()
