"""Public law suite: does ``discover`` recover each law exactly, and how do Operon and a sparse
polynomial regression (SINDy-style STLSQ) do on the same data, in the same run?

    .venv/bin/python experiments/recovery.py                      # every law, noise 0 and 1 %
    .venv/bin/python experiments/recovery.py --laws momentum,saddle --noise 0

Per law and noise level (2,000 rows, 1 % noise = Gaussian with 1 % of the target's standard
deviation): ``discover(..., order=3, crosscheck="off")`` with its defaults otherwise; Operon through
the cross-check backend with its defaults; STLSQ (threshold 0.1, ridge 0.05, degree-3 polynomial
library, as pysindy's defaults). "Exact" means the same terms, every coefficient within 2 % and
exponents exactly equal, checked symbolically against the true law; R^2 is on 2,000 fresh
noise-free rows. Writes ``experiments/out/recovery.csv`` and ``recovery.md``.
"""

from __future__ import annotations

import argparse
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

from discovery.pipeline import discover  # noqa: E402
from _output import write_text  # noqa: E402

OUT = ROOT / "experiments" / "out"

# name: (true law, feature names, low, high)
LAWS = {
    "paper_quadratic": ("(x1**2 + x2)/2", ["x1", "x2"], -1.0, 1.0),
    "paper_five": ("0.5 + x1 + 0.6*x2*x3 - 0.8*x2*x4 + x1*x2*x3 - x3*x5", ["x1", "x2", "x3", "x4", "x5"], -1.0, 1.0),
    "momentum": ("m*v", ["m", "v"], 1.0, 5.0),
    "energy": ("m*c**2", ["m", "c"], 1.0, 5.0),
    "gravitation": ("6.674*m1*m2/r**2", ["m1", "m2", "r"], 1.0, 5.0),
    "torricelli": ("sqrt(2*g*h)", ["g", "h"], 1.0, 5.0),
    "saddle": ("x1**2 - x2**2 + 0.5*x1*x2", ["x1", "x2"], -2.0, 2.0),
}
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
    return 1.0 - float(np.sum((y - pred) ** 2)) / float(np.sum((y - y.mean()) ** 2))


def stlsq(X: np.ndarray, y: np.ndarray, names: list[str], degree: int = 3, threshold: float = 0.1,
          alpha: float = 0.05, max_iter: int = 20) -> sympy.Expr:
    """Sequentially thresholded ridge regression on a polynomial library (pysindy's STLSQ defaults)."""
    from sklearn.preprocessing import PolynomialFeatures

    lib = PolynomialFeatures(degree=degree, include_bias=True)
    Theta = lib.fit_transform(X)
    keep = np.ones(Theta.shape[1], dtype=bool)
    coef = np.zeros(Theta.shape[1])
    for _ in range(max_iter):
        A = Theta[:, keep]
        sol = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ y)
        coef[:] = 0
        coef[keep] = sol
        small = np.abs(coef) < threshold
        if not np.any(small & keep):
            break
        keep &= ~small
        if not keep.any():
            break
    A = Theta[:, keep]  # final unregularised refit on the kept terms, as pysindy does
    if keep.any():
        coef[keep] = np.linalg.lstsq(A, y, rcond=None)[0]
    symbols = [sympy.Symbol(n) for n in names]
    return sympy.Add(*(sympy.Float(c) * sympy.Mul(*(s**int(a) for s, a in zip(symbols, powers)))
                       for c, powers, k in zip(coef, lib.powers_, keep) if k))


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
    s = stlsq(X, y, names)
    row["stlsq s"] = time.perf_counter() - t0
    row["stlsq formula"] = str(s.evalf(5))
    row["stlsq exact"] = exact(s, truth)
    row["stlsq R2"] = r2_fresh(s, truth, names, law)
    return row


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(lines)




def main(argv: list[str] | None = None) -> pd.DataFrame:
    from discovery.crosscheck.operon import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", default="", help="comma-separated law names (default: all)")
    parser.add_argument("--noise", default="0,0.01", help="comma-separated noise levels (default 0,0.01)")
    parser.add_argument("--threads", type=int, default=default_threads(), help="Operon threads")
    parser.add_argument("--out", default="recovery", help="output file stem under experiments/out")
    args = parser.parse_args(argv)
    laws = [n for n in args.laws.split(",") if n] or list(LAWS)
    rows = []
    for noise in [float(v) for v in args.noise.split(",")]:
        for law in laws:
            row = run(law, noise, args.threads)
            rows.append(row)
            print(f"{law:16s} noise {noise:<5g} discover {row['discover s']:6.1f}s exact={row['discover exact']!s:5} "
                  f"R2={row['discover R2']:.6f} {row['discover formula']}  | operon {row['operon s']:5.1f}s "
                  f"exact={row['operon exact']!s:5} | stlsq exact={row['stlsq exact']!s:5}", flush=True)
    frame = pd.DataFrame(rows)
    med_d, med_o = statistics.median(frame["discover s"]), statistics.median(frame["operon s"])
    summary = [
        f"- discover exact: {int(frame['discover exact'].sum())} of {len(frame)}; R^2 >= 0.999 on fresh data: "
        f"{int((frame['discover R2'] >= 0.999).sum())} of {len(frame)}",
        f"- operon exact: {int(frame['operon exact'].sum())} of {len(frame)}; "
        f"stlsq exact: {int(frame['stlsq exact'].sum())} of {len(frame)}",
        f"- median time per law: discover {med_d:.2f} s, operon {med_o:.2f} s (ratio {med_d / med_o:.2f}); "
        f"slowest discover {frame['discover s'].max():.1f} s",
        f"- machine: {os.cpu_count()} CPUs visible, operon threads {args.threads}",
    ]
    text = "# Recovery of the public law suite\n\n" + _markdown(frame) + "\n\n" + "\n".join(summary) + "\n"
    print()
    print("\n".join(summary))
    write_text(OUT / f"{args.out}.md", text)
    write_text(OUT / f"{args.out}.csv", frame.to_csv(index=False))
    return frame


if __name__ == "__main__":
    main()
