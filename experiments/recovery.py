"""Public law suites: does ``discover`` recover each law exactly, and how do Operon and a sparse
polynomial regression (pysindy's STLSQ, in raw and log space) do on the same data, in the same run?

    .venv/bin/python experiments/recovery.py                      # public suite, noise 0 and 1 %
    .venv/bin/python experiments/recovery.py --laws momentum,saddle --noise 0
    .venv/bin/python experiments/recovery.py --suite textbook --noise 0,0.01,0.1 --budget 30
    .venv/bin/python experiments/recovery.py --suite textbook --laws coulomb,malus --methods discover,operon
    .venv/bin/python experiments/recovery.py --suite textbook --workers 2            # laws side by side on Dask

``--suite public`` (the default) runs as it always has. Per law and noise level (2,000 rows, 1 %
noise = Gaussian with 1 % of the target's standard deviation): ``discover(..., order=3,
crosscheck="off")`` with its defaults otherwise; Operon through the cross-check backend with its
defaults; ``sindy``: pysindy's ``STLSQ`` with its defaults (threshold 0.1, ridge 0.05, unbiased
refit) on a degree-3 ``PolynomialLibrary``, fitted in raw space and, when inputs are positive and
the target has one sign, in log space (``log|y|`` on ``log x``, where a power law is linear); the
space with the lower MSE on 20 % held-out rows is refitted on all rows (needs ``pip install
discovery[bench]``).
"Exact" means the same terms, every coefficient within 2 % and exponents exactly equal, checked
symbolically against the true law; R^2 is on 2,000 fresh noise-free rows. Writes
``experiments/out/recovery.csv`` and ``recovery.md``.

``--suite textbook`` runs the laws of ``datasets/textbook`` (``datasets/generate_textbook.py``).
Each law's bundled table (2,000 noise-free rows) gets noise N(0, level * RMS(y)) on its target;
``discover`` sees only that noisy table and splits it itself (training, validation, its own test
rows), so every row it uses carries noise. Scores come from elsewhere: the law is judged solved
by :func:`_suite.judge` (difference or ratio constant after rounding constants to 3 significant
digits), and R^2 is computed on 2,000 fresh noise-free rows drawn from the same ranges with
another seed. Methods (``--methods``):

- ``discover``: ``discover(table)`` with the package defaults (the Operon cross-check included),
  ``crosscheck_budget=--budget``; the row also judges the expansion's own formula and the
  formula the call proposed before the cross-check (the summary's ``discover, proposed``: what
  ``crosscheck="off"`` returns, up to the cross-check's share of the time budget, which the
  decomposition may then also use; its seconds leave out the cross-check's);
- ``expansion``: the same with ``crosscheck="off"``;
- ``operon``: Operon alone through ``discovery.crosscheck.operon.fit_operon`` with the time
  ``discover`` took on the same law and noise in this run (``--budget`` when ``discover`` did
  not run); its generation limit is lifted so that the time, not the generation count, ends it;
- ``sindy``: the pysindy baseline above.

``--workers N`` runs each law (all its methods, so Operon alone still gets the time ``discover``
took) as one task on a local Dask cluster of N one-thread workers, the machinery of
``discover_many``; ``--scheduler ADDR`` sends them to a running cluster. Tables come out in the
same order as a sequential run. Every finished law rewrites ``experiments/out/<out>.csv`` (one row per law, noise and method;
default stem ``recovery_<suite>``), so a partial run is useful; the end prints a summary per
method and noise (solved %, R^2 >= 0.999 %, median and max seconds) and writes ``<out>.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sympy
from sklearn.metrics import r2_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discovery.pipeline import discover  # noqa: E402
from _cluster import run_cells  # noqa: E402
from _output import write_text  # noqa: E402
import _suite  # noqa: E402
from _suite import PUBLIC  # noqa: E402

OUT = ROOT / "experiments" / "out"

LAWS = PUBLIC  # name: (true law, feature names, low, high)
ROWS = 2000


def sample(law: str, seed: int, noise: float) -> tuple[pd.DataFrame, sympy.Expr]:
    rhs, names, lo, hi = LAWS[law]
    symbols = [sympy.Symbol(n) for n in names]
    truth = sympy.sympify(rhs, locals=dict(zip(names, symbols)))
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, (ROWS, len(names)))
    y = sympy.lambdify(symbols, truth, "numpy")(*X.T)
    if noise > 0:
        y = y + noise * np.std(y) * rng.standard_normal(ROWS)
    frame = pd.DataFrame(X, columns=names)
    frame["target"] = y
    return frame, truth


def _plain(expr: sympy.Expr) -> sympy.Expr:
    """Symbols without assumptions; float exponents that equal simple fractions exactly become them."""
    expr = sympy.sympify(expr)
    expr = expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols})
    pows = {}
    for node in expr.atoms(sympy.Pow):
        if isinstance(node.exp, sympy.Float):
            frac = sympy.Rational(float(node.exp)).limit_denominator(12)
            if float(frac) == float(node.exp):
                pows[node] = node.base**frac
    return expr.xreplace(pows) if pows else expr


def terms_of(expr: sympy.Expr) -> dict:
    """Monomial -> numeric coefficient of the expanded expression."""
    out: dict = {}
    expanded = sympy.expand(sympy.powsimp(sympy.expand_power_base(_plain(expr), force=True), force=True))
    for arg in sympy.Add.make_args(expanded):
        coef, term = arg.as_independent(*arg.free_symbols, as_Add=False)
        out[term] = out.get(term, 0.0) + float(coef)
    return {k: v for k, v in out.items() if v != 0}


def exact(found: sympy.Expr, truth: sympy.Expr, rel: float = 0.02) -> bool:
    """Same terms, coefficients within ``rel``, exponents exactly equal."""
    try:
        f, t = terms_of(found), terms_of(truth)
    except Exception:
        return False
    if set(f) != set(t):
        return False
    return all(abs(f[k] - t[k]) <= rel * abs(t[k]) for k in t)


def r2_fresh(expr, truth, names: list[str], law: str) -> float:
    frame, _ = sample(law, seed=10_000 + list(LAWS).index(law), noise=0.0)
    X, y = frame[names].to_numpy(), frame["target"].to_numpy()
    symbols = [sympy.Symbol(n) for n in names]
    try:
        with np.errstate(all="ignore"):
            pred = np.broadcast_to(sympy.lambdify(symbols, _plain(expr), "numpy")(*X.T), y.shape).astype(float)
    except Exception:
        return float("nan")
    if not np.all(np.isfinite(pred)):
        return float("-inf")
    return float(r2_score(y, pred))


SINDY_DEGREE = 3  # polynomial library degree; pysindy's other STLSQ settings are its defaults
SINDY_VAL_FRACTION = 0.2


def sindy_fit(X: np.ndarray, y: np.ndarray, names: list[str], space: str = "raw") -> sympy.Expr:
    """pysindy's STLSQ (its defaults: threshold 0.1, ridge alpha 0.05, unbiased refit) on a
    degree-3 polynomial library, as a formula in ``names``.

    ``space="log"`` fits ``log|y|`` on ``log x`` (positive inputs, a target of one sign), so a
    power law ``c x1^a x2^b`` is three library terms; the formula is
    ``sign * exp(c0) * prod(x_i^a_i) * exp(higher terms)``.
    """
    import pysindy as ps

    symbols = [sympy.Symbol(n) for n in names]
    if space == "log":
        sign = float(np.sign(y[0]))
        V, t = np.log(X), np.log(np.abs(y))
        variables = [sympy.log(s) for s in symbols]
    else:
        V, t, variables = X, y, symbols
    library = ps.PolynomialLibrary(degree=SINDY_DEGREE)
    theta = np.asarray(library.fit_transform(V), dtype=np.float64)
    optimizer = ps.STLSQ()
    optimizer.fit(theta, t)
    coef = np.asarray(optimizer.coef_, dtype=np.float64).reshape(-1)
    if space == "raw":
        return sympy.Add(*(sympy.Float(c) * sympy.Mul(*(v**int(a) for v, a in zip(variables, powers)))
                           for c, powers in zip(coef, library.powers_) if c != 0))
    factor, rest = sympy.Float(sign), []
    for c, powers in zip(coef, library.powers_):
        if c == 0:
            continue
        if powers.sum() == 0:
            factor *= sympy.exp(sympy.Float(c))
        elif powers.sum() == 1:  # c log x_i: the power x_i^c
            factor *= symbols[int(np.argmax(powers))] ** sympy.Float(c)
        else:
            rest.append(sympy.Float(c) * sympy.Mul(*(v**int(a) for v, a in zip(variables, powers))))
    return factor * sympy.exp(sympy.Add(*rest)) if rest else factor


def sindy(X: np.ndarray, y: np.ndarray, names: list[str], seed: int = 0) -> tuple[sympy.Expr, str, str]:
    """The sparse-regression baseline in raw and, where the data allow it, log space: the space
    with the lower validation MSE (in the target's units, on 20 % of the rows held out) is
    refitted on every row. Returns the formula, its space and a note with both validation MSEs."""
    spaces = ["raw"]
    if np.all(X > 0) and (np.all(y > 0) or np.all(y < 0)):
        spaces.append("log")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = int(round(SINDY_VAL_FRACTION * len(y)))
    val, train = order[:n_val], order[n_val:]
    mse = {}
    caught = []
    for space in spaces:
        with warnings.catch_warnings(record=True) as w:  # pysindy's warnings go into the note
            warnings.simplefilter("always")
            expr = sindy_fit(X[train], y[train], names, space)
        caught += [f"{space}: {m.message}" for m in w]
        with np.errstate(all="ignore"):
            pred = np.broadcast_to(sympy.lambdify([sympy.Symbol(n) for n in names], expr, "numpy")(*X[val].T),
                                   (len(val),)).astype(np.float64)
        mse[space] = float(np.mean((pred - y[val]) ** 2)) if np.all(np.isfinite(pred)) else float("inf")
    best = min(spaces, key=lambda sp: mse[sp])
    note = "; ".join(["validation MSE " + ", ".join(f"{sp} {v:.4g}" for sp, v in mse.items()), *caught])
    return sindy_fit(X, y, names, best), best, note


def run(law: str, noise: float, threads: int) -> dict:
    from discovery.crosscheck.operon import fit_operon

    frame, truth = sample(law, seed=list(LAWS).index(law), noise=noise)
    names = LAWS[law][1]
    X, y = frame[names].to_numpy(), frame["target"].to_numpy()
    row: dict = {"law": law, "noise": noise, "true law": LAWS[law][0]}

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = discover(frame, target="target", order=3, crosscheck="off", progress=False)
    row["discover s"] = time.perf_counter() - t0
    row["discover formula"] = d.text(precision=5)
    row["discover exact"] = exact(d.formula, truth)
    row["discover R2"] = r2_fresh(d.formula, truth, names, law)
    row["space"] = d.space

    t0 = time.perf_counter()
    search = fit_operon(X, y, names, seed=0, n_threads=threads)
    row["operon s"] = time.perf_counter() - t0
    row["operon formula"] = str(sympy.sympify(search.formula).evalf(5))
    row["operon exact"] = exact(search.formula, truth)
    row["operon R2"] = r2_fresh(search.formula, truth, names, law)

    t0 = time.perf_counter()
    s, space, _ = sindy(X, y, names)
    row["sindy s"] = time.perf_counter() - t0
    row["sindy space"] = space
    row["sindy formula"] = str(s.evalf(5))
    row["sindy exact"] = exact(s, truth)
    row["sindy R2"] = r2_fresh(s, truth, names, law)
    return row


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(lines)




def run_textbook(law: _suite.SuiteLaw, noise: float, methods: list[str], budget: float, threads: int, order) -> list[dict]:
    """One law at one noise level with every method: one row per method."""
    clean = law.table()
    frame = clean.copy()
    frame[law.target] = _suite.add_noise(clean[law.target].to_numpy(), noise, seed=law.seed)
    fresh = law.fresh()
    X, y = frame[law.variables].to_numpy(), frame[law.target].to_numpy()
    base = {"suite": law.suite, "law": law.name, "noise": noise, "polynomial": law.polynomial,
            "variables": len(law.variables), "true law": f"{law.target} = {law.law.formula}"}
    order_kw = {} if order is None else {"order": order}
    rows, discover_seconds = [], None
    for method in methods:
        row = {**base, "method": method, "time budget s": float("nan"), "note": ""}
        t0 = time.perf_counter()
        if method in ("discover", "expansion"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = discover(frame, target=law.target, progress=False, crosscheck_budget=budget,
                             crosscheck="auto" if method == "discover" else "off", **order_kw)
            row["seconds"] = time.perf_counter() - t0
            row["formula"] = d.text(precision=5)
            row.update(_suite.score(d.formula, law, fresh))
            row["recommended"] = d.recommended
            row["space"], row["order"] = d.space, d.order
            if method == "discover":
                discover_seconds = row["seconds"]
                row["time budget s"] = budget
                row["expansion formula"] = _suite.text(d.expansion_formula)
                row.update(_suite.score(d.expansion_formula, law, fresh, prefix="expansion "))
                # What the same call proposed before the cross-check: crosscheck="off"'s answer,
                # except that there the decomposition may also use the cross-check's time share.
                row["proposed formula"] = _suite.text(d.chosen_formula)
                row["proposed seconds"] = d.timings["total"] - d.timings.get("crosscheck", 0.0)
                row.update(_suite.score(d.chosen_formula, law, fresh, prefix="proposed "))
                row["note"] = "; ".join(d.notes)[:300]
        elif method == "operon":
            seconds = discover_seconds if discover_seconds is not None else budget
            row["time budget s"] = seconds
            row.update(_suite.operon_alone(law, X, y, fresh, seconds, threads))
        elif method == "sindy":
            expr, space, note = sindy(X, y, law.variables, seed=law.seed)
            row["seconds"] = time.perf_counter() - t0
            row["formula"] = _suite.text(expr)
            row["space"], row["note"] = space, note
            row.update(_suite.score(expr, law, fresh))
        else:
            raise ValueError(f"recovery.py: unknown method {method!r}; pass discover, expansion, operon or sindy")
        rows.append(row)
    return rows


METHODS = ("discover", "expansion", "operon", "sindy")


def _where(args) -> str:
    if args.scheduler:
        return f"laws run on the Dask scheduler {args.scheduler}"
    if args.workers:
        return f"laws run on a local Dask cluster of {args.workers} one-thread workers"
    return "laws run one after another in one process"


def _proposals(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``discover`` rows as they stood before the cross-check, as method ``discover, proposed``
    (its formula, scores and seconds), for the summary."""
    if "proposed formula" not in frame:
        return frame.iloc[:0]
    rows = frame[frame["method"] == "discover"].copy()
    for column in ("formula", "seconds", "solved", "judged_by", "r2_fresh", "r2_ok"):
        rows[column] = rows[f"proposed {column}"]
    rows["method"] = "discover, proposed"
    return rows


def main_textbook(args, threads: int) -> pd.DataFrame:
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"recovery.py: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    order = None if args.order in (None, "default") else (args.order if args.order == "auto" else int(args.order))
    laws = _suite.laws(args.suite, [n for n in args.laws.split(",") if n] or None)
    out = args.out or f"recovery_{args.suite}"
    cells = [(law, noise, methods, args.budget, threads, order)
             for noise in [float(v) for v in (args.noise or "0,0.01,0.1").split(",")] for law in laws]
    finished: dict[int, list[dict]] = {}

    def done(i: int, law_rows: list[dict]) -> None:
        finished[i] = law_rows
        for row in law_rows:
            print(f"{row['law']:24s} noise {row['noise']:<5g} {row['method']:9s} {row['seconds']:6.1f}s "
                  f"solved={row['solved']!s:5} R2={row['r2_fresh']:.6f} {row['formula'][:90]}", flush=True)
            if "cross-check" in row["note"] or "failed" in row["note"]:  # it changes what was measured
                print(f"{'':24s} note: {row['note']}", flush=True)
        partial = [row for j in sorted(finished) for row in finished[j]]
        write_text(OUT / f"{out}.csv", pd.DataFrame(partial).to_csv(index=False))  # after every law

    results = run_cells(run_textbook, cells, workers=args.workers, scheduler=args.scheduler, done=done)
    rows = [row for law_rows in results for row in law_rows]
    frame = pd.DataFrame(rows)
    summary = _suite.summarize(pd.concat([frame, _proposals(frame)], ignore_index=True), ["method", "noise"])
    table = frame[["law", "noise", "method", "polynomial", "solved", "judged_by", "r2_fresh", "seconds", "formula"]]
    text = (f"# Recovery of the {args.suite} law suite\n\n" + _suite.markdown(table) + "\n\n## Summary\n\n"
            + _suite.markdown(summary) + f"\n\n- machine: {os.cpu_count()} CPUs visible, operon threads {threads}; "
            f"budget {args.budget:g} s per law; {_where(args)}\n")
    print()
    print(_suite.markdown(summary))
    write_text(OUT / f"{out}.md", text)
    return frame


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from discovery.crosscheck.operon import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="public", choices=("public", "textbook"), help="law suite (default public)")
    parser.add_argument("--laws", default="", help="comma-separated law names (default: all)")
    parser.add_argument("--noise", default=None,
                        help="comma-separated noise levels (default 0,0.01 for public, 0,0.01,0.1 for textbook)")
    parser.add_argument("--threads", type=int, default=default_threads(), help="Operon threads")
    parser.add_argument("--out", default=None, help="output file stem under experiments/out")
    parser.add_argument("--methods", default=None,
                        help=f"textbook suite: comma-separated methods from {', '.join(METHODS)} (default discover,operon)")
    parser.add_argument("--budget", type=float, default=None,
                        help="textbook suite: seconds per law for the cross-check, and for Operon alone when discover "
                             "does not run (default 30)")
    parser.add_argument("--order", default=None,
                        help="textbook suite: discover's order (an integer, 'auto', or 'default' for the package default)")
    parser.add_argument("--workers", type=int, default=0,
                        help="run the laws on a local Dask cluster of this many one-thread workers (default: in turn)")
    parser.add_argument("--scheduler", default=None,
                        help="run the laws on this Dask scheduler (tcp://host:8786); its workers need this repository "
                             "and experiments/ on PYTHONPATH")
    args = parser.parse_args(argv)
    wants_sindy = args.suite == "public" or "sindy" in (args.methods or "").split(",")
    if wants_sindy and importlib.util.find_spec("pysindy") is None:
        raise SystemExit("recovery.py: the sindy baseline needs pysindy: install the bench extra "
                         "(.venv/bin/pip install -e \".[bench]\")")
    if args.suite != "public":
        args.methods = args.methods or "discover,operon"
        args.budget = 30.0 if args.budget is None else args.budget
        return main_textbook(args, args.threads)
    ignored = [f"--{k}" for k in ("methods", "budget", "order") if getattr(args, k) is not None]
    if ignored:
        print(f"recovery.py --suite public: {', '.join(ignored)} ignored; the public suite runs as it always has")
    args.noise = args.noise or "0,0.01"
    args.out = args.out or "recovery"
    laws = [n for n in args.laws.split(",") if n] or list(LAWS)
    def done(i: int, row: dict) -> None:
        print(f"{row['law']:16s} noise {row['noise']:<5g} discover {row['discover s']:6.1f}s "
              f"exact={row['discover exact']!s:5} R2={row['discover R2']:.6f} {row['discover formula']}  | operon "
              f"{row['operon s']:5.1f}s exact={row['operon exact']!s:5} | sindy ({row['sindy space']}) "
              f"exact={row['sindy exact']!s:5}", flush=True)

    cells = [(law, noise, args.threads) for noise in [float(v) for v in args.noise.split(",")] for law in laws]
    frame = pd.DataFrame(run_cells(run, cells, workers=args.workers, scheduler=args.scheduler, done=done))
    med_d, med_o = statistics.median(frame["discover s"]), statistics.median(frame["operon s"])
    summary = [
        f"- discover exact: {int(frame['discover exact'].sum())} of {len(frame)}; R^2 >= 0.999 on fresh data: "
        f"{int((frame['discover R2'] >= 0.999).sum())} of {len(frame)}",
        f"- operon exact: {int(frame['operon exact'].sum())} of {len(frame)}; "
        f"sindy (pysindy STLSQ, raw or log space) exact: {int(frame['sindy exact'].sum())} of {len(frame)}",
        f"- median time per law: discover {med_d:.2f} s, operon {med_o:.2f} s (ratio {med_d / med_o:.2f}); "
        f"slowest discover {frame['discover s'].max():.1f} s",
        f"- machine: {os.cpu_count()} CPUs visible, operon threads {args.threads}; {_where(args)}",
    ]
    text = "# Recovery of the public law suite\n\n" + _markdown(frame) + "\n\n" + "\n".join(summary) + "\n"
    print()
    print("\n".join(summary))
    write_text(OUT / f"{args.out}.md", text)
    write_text(OUT / f"{args.out}.csv", frame.to_csv(index=False))
    return frame


if __name__ == "__main__":
    main()
