"""Ablation: which parts of ``discover`` earn their place, side by side in one run.

    .venv/bin/python experiments/ablation.py                                   # public suite, noise 0
    .venv/bin/python experiments/ablation.py --suite textbook --noise 0,0.01 --budget 30
    .venv/bin/python experiments/ablation.py --suite textbook --laws coulomb,malus --noise 0 --budget 10

Every law of the suite (``public`` or ``textbook``, see ``experiments/_suite.py``) gets noise
N(0, level * RMS(y)) on the target of its training table; every variant sees that same table and
nothing else. A law counts as solved when the found formula equals the law up to a constant
difference or ratio after rounding constants to 3 significant digits (:func:`_suite.judge`); R^2
is on 2,000 fresh noise-free rows. The variants:

- ``full``: ``discover`` with the package defaults (the Operon cross-check included,
  ``crosscheck_budget=--budget``);
- ``zero local coefficients``: the same trained networks, but every Taylor coefficient the
  engine hands to the pipeline is replaced by 0: the merge's local polynomials, the structure
  tests, the decomposition's tests at every node and the closed-form series alike. This is done
  inside this script only, by wrapping ``discovery.engine.expand`` where the pipeline reads it
  while the call runs. The networks' predictions (which give the decomposition its sub-problem
  data) are untouched, so the variant measures what the exact derivatives decide;
- ``untrained networks``: ``fit_options={"max_epochs": 0, "lbfgs_steps": 0}``: the networks keep
  their random initial weights and are expanded as they are;
- ``data-only stepwise``: no networks at all: :func:`discovery.merge.merge` on every monomial up
  to the order, with zero local coefficients at one point, so that term selection, refit and
  snapping run on the data alone. Rows are split as ``discover`` splits them (its test rows
  unused); raw space, and log space when the data allow it; among the candidates within 5 % of
  the best validation RMSE the one with fewest terms, as ``discover`` chooses. No cross-check;
- ``crosscheck off``: ``discover(..., crosscheck="off")``: the expansion's formula alone;
- ``operon alone``: Operon through ``discovery.crosscheck.operon.fit_operon`` for as long as the
  ``full`` variant took on that law (its generation limit lifted so that the time ends it);
- ``decomposition off``: ``discover(..., decompose=False)``: no structure-driven decomposition.

For the variants built on ``discover``, ``expansion solved %`` judges the expansion's own formula
(before any cross-check recommendation), which shows what the variant did to the exact-derivative
path even where Operon rescues the recommended formula.

Writes ``experiments/out/ablation_<suite>_rows.csv`` after every law (one row per law, noise and
variant) and, at the end, ``ablation_<suite>.csv`` and ``.md``: per variant and noise, solved %
on polynomial and on non-polynomial laws, R^2 >= 0.999 %, median seconds. Prints the Markdown.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import discovery  # noqa: E402
from discovery.spaces import MAX_ORDER  # noqa: E402
from discovery.crosscheck.base import complexity  # noqa: E402
from discovery.engine import monomials  # noqa: E402
from discovery.merge import merge  # noqa: E402

import _suite  # noqa: E402
from _output import write_text  # noqa: E402

OUT = ROOT / "experiments" / "out"
VARIANTS = ("full", "zero local coefficients", "untrained networks", "data-only stepwise", "crosscheck off",
            "operon alone", "decomposition off")
_ACCURACY_TOL = 0.05  # the same tolerance discover uses to call candidates equally accurate


#: Every module of the pipeline that expands a network, by the name it reads ``expand`` under.
_EXPANDING = ("discovery.engine", "discovery.stages", "discovery.decompose")


@contextmanager
def zero_local_coefficients():
    """While active, every expansion the pipeline computes has all its coefficients 0."""
    import importlib

    from discovery.engine import Expansion

    modules = [importlib.import_module(name) for name in _EXPANDING]
    original = modules[0].expand
    calls = []

    def zeroed(*args, **kwargs):
        e = original(*args, **kwargs)
        calls.append(1)
        if not isinstance(e, Expansion):  # an unmixed expansion: not what the pipeline's tests read
            raise RuntimeError(f"ablation.py: expand returned {type(e).__name__}; zero_local_coefficients() "
                               "only knows Expansion")
        return Expansion(e.center, torch.zeros_like(e.coefficients), e.order, e.output_shape)

    saved = [(m, m.expand) for m in modules]
    for m in modules:
        if m.expand is not original:
            raise RuntimeError(f"ablation.py: {m.__name__}.expand is not discovery.engine.expand; "
                               "update zero_local_coefficients() to the pipeline's new structure")
        m.expand = zeroed
    try:
        yield
    finally:
        for m, f in saved:
            m.expand = f
    if not calls:  # the pipeline no longer expands through these names: the variant would measure nothing
        raise RuntimeError("ablation.py: discover never called discovery.engine.expand; "
                           "update zero_local_coefficients() to the pipeline's new structure")


def data_only(frame: pd.DataFrame, law: _suite.SuiteLaw, order, seed: int = 0, test_fraction: float = 0.2):
    """The merge's stepwise fit on the data with no networks; returns (formula, space, order)."""
    X, y = frame[law.variables].to_numpy(), frame[law.target].to_numpy()
    n, p = X.shape
    perm = np.random.default_rng(seed).permutation(n)
    fit_rows = np.sort(perm[int(round(test_fraction * n)):])  # discover's split: its test rows stay unused
    X, y = X[fit_rows], y[fit_rows]
    spaces = ["raw"] + (["log"] if np.all(X > 0) and (np.all(y > 0) or np.all(y < 0)) else [])
    orders = list(range(1, MAX_ORDER + 1)) if order == "auto" else [int(order or _default_order())]
    candidates = []
    for space in spaces:
        for k in orders:
            table = monomials(p, k)
            merged = merge(table, np.zeros((1, len(table), 1)), np.zeros((1, p)), X, y, names=law.variables,
                           space=space, seed=seed)
            candidates.append((merged.val_rmse, complexity(merged.expression), k, space, merged.expression))
    best = min(c[0] for c in candidates)
    floor = 1e-9 * float(np.std(y)) + 1e-300
    accurate = [c for c in candidates if c[0] <= best * (1 + _ACCURACY_TOL) + floor]
    _, _, k, space, expr = min(accurate, key=lambda c: (c[1], c[2], spaces.index(c[3])))
    return expr, space, k


def _default_order():
    return inspect.signature(discovery.discover).parameters["order"].default


def run_law(law: _suite.SuiteLaw, noise: float, budget: float, threads: int, order, variants: list[str]) -> list[dict]:
    """Every variant on one law at one noise level: one row per variant."""
    frame = law.table()
    frame[law.target] = _suite.add_noise(frame[law.target].to_numpy(), noise, seed=law.seed)
    fresh = law.fresh()
    base = {"suite": law.suite, "law": law.name, "noise": noise, "polynomial": law.polynomial}
    common = {"target": law.target, "progress": False, "crosscheck_budget": budget,
              **({} if order is None else {"order": order})}
    rows, full_seconds = [], None
    for variant in variants:
        row = {**base, "variant": variant, "note": ""}
        t0 = time.perf_counter()
        if variant == "data-only stepwise":
            expr, space, k = data_only(frame, law, order)
            row.update(seconds=time.perf_counter() - t0, formula=_suite.text(expr), space=space, order=k)
            row.update(_suite.score(expr, law, fresh))
            row.update(_suite.score(expr, law, fresh, prefix="expansion "))
        elif variant == "operon alone":
            seconds = full_seconds if full_seconds is not None else budget
            row["time budget s"] = seconds
            X, y = frame[law.variables].to_numpy(), frame[law.target].to_numpy()
            row.update(_suite.operon_alone(law, X, y, fresh, seconds, threads))
        else:
            kwargs = dict(common)
            if variant == "untrained networks":
                kwargs["fit_options"] = {"max_epochs": 0, "lbfgs_steps": 0}
            elif variant == "crosscheck off":
                kwargs["crosscheck"] = "off"
            elif variant == "decomposition off":
                kwargs["decompose"] = False
            elif variant not in ("full", "zero local coefficients"):
                raise ValueError(f"ablation.py: unknown variant {variant!r}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if variant == "zero local coefficients":
                    with zero_local_coefficients():
                        d = discovery.discover(frame, **kwargs)
                else:
                    d = discovery.discover(frame, **kwargs)
            if variant == "untrained networks" and any(len(h["train"]) for h in d.fitted.history):
                raise RuntimeError("ablation.py: fit_options max_epochs=0 still trained the networks")
            row.update(seconds=time.perf_counter() - t0, formula=d.text(precision=5), recommended=d.recommended,
                       space=d.space, order=d.order, note="; ".join(d.notes)[:300])
            row.update(_suite.score(d.formula, law, fresh))
            row.update(_suite.score(d.expansion_formula, law, fresh, prefix="expansion "))
            if variant == "full":
                full_seconds = row["seconds"]
        rows.append(row)
        print(f"{law.name:24s} noise {noise:<5g} {variant:24s} {row['seconds']:6.1f}s solved={row['solved']!s:5} "
              f"R2={row['r2_fresh']:.6f} {row['formula'][:80]}", flush=True)
        if "cross-check" in row["note"] or "failed" in row["note"]:  # it changes what the variant measured
            print(f"{'':24s} note: {row['note']}", flush=True)
    return rows


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant and noise: solved % (polynomial / not), expansion solved %, R^2 >= 0.999 %, median s."""
    table = _suite.summarize(rows, ["variant", "noise"])
    expansion = rows.groupby(["variant", "noise"], sort=False)["expansion solved"].apply(
        lambda s: 100.0 * float(s.astype(bool).mean()) if s.notna().any() else float("nan"))
    table["expansion solved %"] = [expansion.get((v, n), float("nan")) for v, n in zip(table["variant"], table["noise"])]
    cols = ["variant", "noise", "laws", "solved % polynomial", "solved % not polynomial", "solved %",
            "expansion solved %", "R2>=0.999 %", "median s"]
    return table[cols]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from discovery.crosscheck.operon import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="public", choices=("public", "textbook"))
    parser.add_argument("--laws", default="", help="comma-separated law names (default: all)")
    parser.add_argument("--noise", default="0", help="comma-separated noise levels (default 0)")
    parser.add_argument("--budget", type=float, default=30.0, help="cross-check seconds per law (default 30)")
    parser.add_argument("--order", default="default", help="discover's order: an integer, 'auto' or 'default'")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants (default: all)")
    parser.add_argument("--threads", type=int, default=default_threads(), help="Operon threads")
    args = parser.parse_args(argv)
    order = None if args.order == "default" else (args.order if args.order == "auto" else int(args.order))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"ablation.py: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    laws = _suite.laws(args.suite, [n for n in args.laws.split(",") if n] or None)
    rows: list[dict] = []
    for noise in [float(v) for v in args.noise.split(",")]:
        for law in laws:
            rows.extend(run_law(law, noise, args.budget, args.threads, order, variants))
            write_text(OUT / f"ablation_{args.suite}_rows.csv", pd.DataFrame(rows).to_csv(index=False))
    table = summary(pd.DataFrame(rows))
    text = (f"# Ablation on the {args.suite} law suite\n\n" + _suite.markdown(table)
            + f"\n\n- {len(laws)} laws; noise {args.noise}; budget {args.budget:g} s; {os.cpu_count()} CPUs visible, "
            f"Operon threads {args.threads}\n")
    print()
    print(text)
    write_text(OUT / f"ablation_{args.suite}.csv", table.to_csv(index=False))
    write_text(OUT / f"ablation_{args.suite}.md", text)
    return table


if __name__ == "__main__":
    main()
