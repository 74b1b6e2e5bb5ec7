"""The public law suites and how a found formula is judged against the true law.

Two suites: ``public`` (the seven laws ``experiments/recovery.py`` has always run) and
``textbook`` (``datasets/generate_textbook.py``, 2-9 variables, most not polynomial). Every law
gives its training table, a fresh noise-free table from the same ranges (a different seed) for
scoring, and its true formula.

Judging (:func:`judge`), as in symbolic-regression benchmarks: both formulas have every constant
evaluated and rounded to 3 significant digits (then read as an exact rational); the law counts as
solved when their difference, or their ratio, is a constant (a finite ratio other than 0). Where
the formulas as written disagree, both are expanded into sums and rounded again, because a
constant rounds differently as a factor than spread over the terms of a sum. The
two rounded formulas are first evaluated at random points on the law's ranges: when neither the
difference nor the ratio is constant there (a spread above ``1e-9`` of the scale, the precision of
float64 arithmetic on these expressions, not a tolerance for approximate answers), the law is not
solved. Otherwise SymPy's ``simplify`` must show the constant, under a time limit; where it cannot
(it times out or leaves symbols), the numeric verdict stands and ``how`` says so.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sympy
from sklearn.metrics import r2_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "datasets"))

import generate_textbook  # noqa: E402
from _output import markdown  # noqa: E402,F401  (the suites' tables: _suite.markdown)

ROWS = 2000
FRESH_SEED_OFFSET = 1_000_003  # fresh rows: the law's seed plus this, never the training seed
SIGNIFICANT = 3
CONSTANT_RTOL = 1e-9
SYMPY_SECONDS = 10.0

# name: (true law, feature names, low, high), the public suite as recovery.py has always run it
PUBLIC = {
    "paper_quadratic": ("(x1**2 + x2)/2", ["x1", "x2"], -1.0, 1.0),
    "paper_five": ("0.5 + x1 + 0.6*x2*x3 - 0.8*x2*x4 + x1*x2*x3 - x3*x5", ["x1", "x2", "x3", "x4", "x5"], -1.0, 1.0),
    "momentum": ("m*v", ["m", "v"], 1.0, 5.0),
    "energy": ("m*c**2", ["m", "c"], 1.0, 5.0),
    "gravitation": ("6.674*m1*m2/r**2", ["m1", "m2", "r"], 1.0, 5.0),
    "torricelli": ("sqrt(2*g*h)", ["g", "h"], 1.0, 5.0),
    "saddle": ("x1**2 - x2**2 + 0.5*x1*x2", ["x1", "x2"], -2.0, 2.0),
}


@dataclass(frozen=True)
class SuiteLaw:
    """A law of a suite: ranges, true formula, and its training table's source."""

    suite: str
    law: generate_textbook.Law
    seed: int

    @property
    def name(self) -> str:
        return self.law.name

    @property
    def variables(self) -> list[str]:
        return self.law.variables

    @property
    def target(self) -> str:
        return self.law.target

    @property
    def polynomial(self) -> bool:
        return self.law.polynomial_in_raw_or_log

    def table(self) -> pd.DataFrame:
        """The noise-free training table: the bundled CSV for the textbook suite (checked
        against the formula on load); for ``public``, the inputs recovery.py draws for the law
        (the targets agree with its own to float64 rounding)."""
        if self.suite == "textbook":
            frame = pd.read_csv(generate_textbook.OUT / f"{self.name}.csv")
            expected = self.law.evaluate(frame[self.variables].to_numpy())
            if not np.allclose(frame[self.target].to_numpy(), expected, rtol=1e-12, atol=0):
                raise ValueError(f"{self.name}.csv does not match its formula; run datasets/generate_textbook.py")
            return frame
        return self.law.sample(ROWS, seed=self.seed)

    def fresh(self, rows: int = ROWS) -> pd.DataFrame:
        """Noise-free rows from the same ranges, never seen in training."""
        return self.law.sample(rows, seed=self.seed + FRESH_SEED_OFFSET)


def laws(suite: str, names: list[str] | None = None) -> list[SuiteLaw]:
    """The laws of ``suite`` ("public" or "textbook"), all or the named ones in that order."""
    if suite == "textbook":
        every = {law.name: SuiteLaw("textbook", law, law.seed) for law in generate_textbook.LAWS}
    elif suite == "public":
        every = {}
        for i, (name, (rhs, variables, lo, hi)) in enumerate(PUBLIC.items()):
            law = generate_textbook.Law(name, "target", rhs, {v: (lo, hi) for v in variables}, "public suite")
            every[name] = SuiteLaw("public", law, i)
    else:
        raise ValueError(f"laws(suite={suite!r}): pass 'public' or 'textbook'")
    if not names:
        return list(every.values())
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"laws(suite={suite!r}): no law named {', '.join(unknown)}; choose from {', '.join(every)}")
    return [every[n] for n in names]


def add_noise(y: np.ndarray, level: float, seed: int) -> np.ndarray:
    """``y`` plus Gaussian noise of standard deviation ``level * RMS(y)`` (seeded)."""
    if level == 0:
        return np.array(y, dtype=np.float64)
    rng = np.random.default_rng([int(seed), int(round(level * 1e6))])
    rms = float(np.sqrt(np.mean(np.square(y))))
    return y + level * rms * rng.standard_normal(len(y))


def r2_fresh(formula, law: SuiteLaw, fresh: pd.DataFrame | None = None) -> float:
    """R^2 of ``formula`` on fresh noise-free rows (``-inf`` if it gives non-finite values)."""
    fresh = law.fresh() if fresh is None else fresh
    y = fresh[law.target].to_numpy()
    pred = evaluate(formula, law, fresh[law.variables].to_numpy())
    if pred is None or not np.all(np.isfinite(pred)):
        return float("-inf")
    return float(r2_score(y, pred))


def evaluate(formula, law: SuiteLaw, X: np.ndarray) -> np.ndarray | None:
    """``formula`` (SymPy or text in the law's variable names) on the rows of ``X``."""
    expr = _in_law_symbols(formula, law)
    try:
        with np.errstate(all="ignore"):
            out = sympy.lambdify(law.law.symbols, expr, "numpy")(*np.asarray(X, dtype=np.float64).T)
            return np.broadcast_to(np.asarray(out, dtype=np.float64), (len(X),)).copy()
    except Exception:  # a formula NumPy cannot evaluate (complex, unknown function) scores as unusable
        return None


def _in_law_symbols(formula, law: SuiteLaw) -> sympy.Expr:
    by_name = {s.name: s for s in law.law.symbols}
    expr = sympy.sympify(formula, locals=by_name) if isinstance(formula, str) else sympy.sympify(formula)
    return expr.xreplace({s: by_name.get(s.name, s) for s in expr.free_symbols})


def round_constants(expr: sympy.Expr, digits: int = SIGNIFICANT) -> sympy.Expr:
    """Every constant evaluated, rounded to ``digits`` significant digits, read as a rational."""
    expr = sympy.sympify(expr).evalf()
    floats = {}
    for f in expr.atoms(sympy.Float):
        rounded = float(f"{float(f):.{digits - 1}e}")
        floats[f] = sympy.Rational(repr(rounded)) if np.isfinite(rounded) else f
    return expr.xreplace(floats)


@dataclass(frozen=True)
class Verdict:
    solved: bool
    how: str  # "sympy", "numeric", "numeric (sympy timed out)", "not finite", ...

    def __bool__(self) -> bool:
        return self.solved


def judge(found, law: SuiteLaw, seed: int = 0, seconds: float = SYMPY_SECONDS) -> Verdict:
    """Solved when, constants rounded to 3 significant digits, the true law minus the found
    formula, or their ratio, is a constant (see the module docstring)."""
    try:
        exact_truth, exact_guess = sympy.sympify(law.law.expression), _in_law_symbols(found, law)
        truth, guess = round_constants(exact_truth), round_constants(exact_guess)
    except (sympy.SympifyError, TypeError, ValueError):
        return Verdict(False, "not parsable")
    if guess.free_symbols - set(law.law.symbols):
        return Verdict(False, "unknown symbols")
    numeric = _numeric_constant(truth, guess, law, seed)
    if numeric is False:
        # A constant rounds differently as one factor or spread over a sum: 2*pi*(1 + t**2/16)
        # reads 6.28 + 0.393*t**2 once expanded, not 6.28 + 0.3925*t**2. Both written as sums.
        truth, guess = (round_constants(sympy.expand(e.evalf())) for e in (exact_truth, exact_guess))
        numeric = _numeric_constant(truth, guess, law, seed)
    if numeric is None:
        return Verdict(False, "not finite")
    if not numeric:
        return Verdict(False, "numeric")  # varies well above rounding: SymPy cannot show a constant
    timed_out = False
    for combined, nonzero in ((truth - guess, False), (truth / guess, True)):
        try:
            with _time_limit(seconds):
                simple = sympy.simplify(combined)
        except TimeoutError:
            timed_out = True
            continue
        if not simple.free_symbols and simple.is_finite is not False and (not nonzero or simple != 0):
            return Verdict(True, "sympy")
    return Verdict(True, "numeric (sympy timed out)" if timed_out else "numeric (sympy left symbols)")


def _numeric_constant(truth, guess, law: SuiteLaw, seed: int, points: int = 256) -> bool | None:
    """Is the difference or the ratio constant on random points of the ranges? None if the
    formulas are not finite there."""
    rng = np.random.default_rng(seed)
    lo = np.array([r[0] for r in law.law.ranges.values()])
    hi = np.array([r[1] for r in law.law.ranges.values()])
    X = lo + (hi - lo) * rng.random((points, len(lo)))
    t, g = evaluate(truth, law, X), evaluate(guess, law, X)
    if t is None or g is None or not (np.all(np.isfinite(t)) and np.all(np.isfinite(g))):
        return None
    scale = float(np.sqrt(np.mean(t**2))) or 1.0
    diff = t - g
    if np.ptp(diff) <= CONSTANT_RTOL * scale:
        return True
    if np.all(g != 0):
        ratio = t / g
        middle = float(np.median(np.abs(ratio)))
        if middle > 0 and np.ptp(ratio) <= CONSTANT_RTOL * middle:
            return True
    return False


@contextmanager
def _time_limit(seconds: float):
    """Raise TimeoutError after ``seconds`` (SIGALRM, main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def score(formula, law: SuiteLaw, fresh: pd.DataFrame, prefix: str = "") -> dict:
    """Judge ``formula`` against ``law``: ``solved``, ``judged_by``, ``r2_fresh``, ``r2_ok``."""
    verdict = judge(formula, law)
    r2 = r2_fresh(formula, law, fresh)
    return {f"{prefix}solved": verdict.solved, f"{prefix}judged_by": verdict.how, f"{prefix}r2_fresh": r2,
            f"{prefix}r2_ok": bool(r2 >= R2_OK)}


R2_OK = 0.999


def summarize(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group: laws, solved % (all, polynomial, not polynomial), R^2 >= 0.999 %, median and max s."""
    out = []
    for key, g in rows.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        poly, other = g[g["polynomial"]], g[~g["polynomial"]]
        pct = lambda s: 100.0 * float(s.mean()) if len(s) else float("nan")  # noqa: E731
        out.append({**dict(zip(by, key)), "laws": len(g), "solved %": pct(g["solved"]),
                    "solved % polynomial": pct(poly["solved"]), "solved % not polynomial": pct(other["solved"]),
                    "R2>=0.999 %": pct(g["r2_ok"]), "median s": float(g["seconds"].median()),
                    "max s": float(g["seconds"].max())})
    return pd.DataFrame(out)


def text(expr) -> str:
    """A formula as short text (constants to 5 digits) for the tables."""
    return str(sympy.sympify(expr).evalf(5))


def operon_alone(law: SuiteLaw, X: np.ndarray, y: np.ndarray, fresh: pd.DataFrame, seconds: float,
                 threads: int | None) -> dict:
    """Operon on the whole table for ``seconds`` (its generation limit lifted so the time is what
    stops it), judged like every other method; an engine failure is a row with a note."""
    import time

    from discovery.crosscheck.operon import fit_operon

    t0 = time.perf_counter()
    try:
        search = fit_operon(X, y, law.variables, time_budget=seconds, seed=0, n_threads=threads, generations=10**6)
    except Exception as exc:  # an external engine's failure is a note, not the end of the run
        return {"seconds": time.perf_counter() - t0, "formula": "", "solved": False, "judged_by": "engine failed",
                "r2_fresh": float("nan"), "r2_ok": False, "note": f"operon failed: {type(exc).__name__}: {exc}"}
    return {"seconds": time.perf_counter() - t0, "formula": text(search.formula), **score(search.formula, law, fresh)}
