"""PySR backend, used only where ``pysr`` imports and Julia starts.

PySR needs Julia and Julia packages; ``import pysr`` may try to download them and hang or fail
on a machine without internet. Whether PySR works is therefore probed once in a subprocess, with
a timeout and Julia's package manager set offline, and the verdict is cached in this process
and on disk. ``pysr`` is never imported by ``import discovery``.

A ``hall_of_fame.csv`` written by PySR elsewhere can be read and re-scored on local data with
:func:`read_hall_of_fame`, so PySR's results can be cross-checked without Julia here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import sympy
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations
from tokenize import TokenError

from discovery.crosscheck.base import (COLUMNS, EngineFailure, Search, _scores, candidates_table, r2_score,
                                       select_best, try_evaluate, usable)
from discovery.errors import CrosscheckError

__all__ = ["pysr_status", "pysr_available", "fit_pysr", "read_hall_of_fame", "ENABLE_HINT"]

ENABLE_HINT = "to enable it: pip install discovery[pysr] on a machine with Julia"
PROBE_TIMEOUT = 120.0
_OFFLINE = {"JULIA_PKG_OFFLINE": "true", "PYTHON_JULIAPKG_OFFLINE": "yes", "JULIA_PKG_SERVER": ""}
_PROBE_CODE = "import {module} as m\nfrom {module} import jl\nprint('ok', jl.seval('1 + 1'))\n"
_memo: dict[str, tuple[bool, str]] = {}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "discovery"


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec and spec.origin else ""
        return f"{origin}:{os.path.getmtime(origin) if origin else 0}"


def pysr_status(
    *, timeout: float = PROBE_TIMEOUT, module: str = "pysr", cache_dir: str | Path | None = None, refresh: bool = False
) -> tuple[bool, str]:
    """Whether PySR works here, and a one-line message saying so.

    The probe imports ``module`` and starts Julia in a subprocess with Julia's package manager
    offline, killed after ``timeout`` seconds. The verdict is cached per Python executable and
    PySR version, in this process and in ``cache_dir`` (default ``~/.cache/discovery``).

    Examples
    --------
    Where the module is missing the answer comes at once, without a probe:

    >>> pysr_status(module="pysr_not_installed_here")
    (False, 'PySR is not installed (to enable it: pip install discovery[pysr] on a machine with Julia)')
    """
    if importlib.util.find_spec(module) is None:
        return False, f"PySR is not installed ({ENABLE_HINT})"
    key = f"{sys.executable}|{module}|{_version(module)}"
    if not refresh and key in _memo:
        return _memo[key]
    path = Path(cache_dir) if cache_dir is not None else _cache_dir()
    cache_file = path / "pysr_probe.json"
    if not refresh and cache_file.exists():
        try:
            cached = json.loads(cache_file.read_text()).get(key)
        except (OSError, ValueError):
            cached = None
        if cached is not None:
            _memo[key] = (bool(cached[0]), str(cached[1]))
            return _memo[key]
    verdict = _probe(module, timeout)
    _memo[key] = verdict
    _store(cache_file, key, verdict)
    return verdict


def _probe(module: str, timeout: float) -> tuple[bool, str]:
    env = dict(os.environ, **_OFFLINE)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE_CODE.format(module=module)],
            capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, (
            f"PySR did not start within {timeout:g} s (Julia or its packages are missing or downloading; "
            f"{ENABLE_HINT})"
        )
    if done.returncode == 0 and done.stdout.startswith("ok"):
        return True, f"PySR works here (Julia started in {time.perf_counter() - start:.1f} s)"
    lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else f"exit code {done.returncode}"
    return False, f"PySR is installed but does not start ({last[:200]}; {ENABLE_HINT})"


def _store(cache_file: Path, key: str, verdict: tuple[bool, str]) -> None:
    """Add the verdict to the cache file atomically; a read-only cache is not an error."""
    from discovery.folders import atomic_write

    try:
        data = json.loads(cache_file.read_text()) if cache_file.exists() else {}
        data[key] = list(verdict)
        atomic_write(cache_file, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))
    except (OSError, ValueError):
        pass


def pysr_available() -> bool:
    """``pysr_status()[0]``: whether PySR works on this machine (cached)."""
    return pysr_status()[0]


def fit_pysr(
    X: np.ndarray, y: np.ndarray, names: Sequence[str], *, time_budget: float = 30.0, seed: int = 0, **options: Any
) -> Search:
    """Run ``pysr.PySRRegressor`` (deterministic, serial) and re-score its equations locally.

    Raises :class:`~discovery.crosscheck.base.EngineFailure` with the probe's message when PySR
    does not work here, or when it fails while searching.

    Examples
    --------
    >>> X = np.random.default_rng(0).uniform(1, 2, (200, 2))
    >>> fit_pysr(X, X[:, 0] * X[:, 1], ["a", "b"], time_budget=10).formula  # doctest: +SKIP
    a*b
    """
    ok, message = pysr_status()
    if not ok:
        raise EngineFailure(f"fit_pysr(X, y, names): {message}")
    settings: dict[str, Any] = {
        "niterations": 40,
        "binary_operators": ["+", "-", "*", "/"],
        "unary_operators": ["sqrt", "exp", "log", "sin", "cos", "square"],
        "maxsize": 30,
        "timeout_in_seconds": float(time_budget),
        "random_state": int(seed),
        "deterministic": True,
        "parallelism": "serial",
        "progress": False,
        "verbosity": 0,
    }
    settings.update(options)
    start = time.perf_counter()
    try:  # only the engine's own calls: any exception here is PySR's (or Julia's) failure
        from pysr import PySRRegressor  # only here: importing pysr may start Julia

        reg = PySRRegressor(**settings)
        reg.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), variable_names=list(names))
        raw = list(reg.equations_["sympy_format"])
    except Exception as exc:
        raise EngineFailure(f"fit_pysr(X, y, names): PySR failed ({type(exc).__name__}: {exc})") from exc
    exprs = [e for e in (usable(r) for r in raw) if e is not None]  # unusable candidates are dropped
    table = candidates_table(exprs, X, y, names)
    return Search("pysr", table, select_best(table, np.asarray(y)), time.perf_counter() - start, settings)


# --------------------------------------------------------------------------------------------
# hall_of_fame.csv


def _pysr_functions() -> dict[str, Any]:
    """PySR operator names that are not SymPy names, as SymPy expressions."""
    return {
        "square": lambda a: a**2,
        "cube": lambda a: a**3,
        "neg": lambda a: -a,
        "inv": lambda a: 1 / a,
        "safe_log": sympy.log,
        "safe_log2": lambda a: sympy.log(a, 2),
        "safe_log10": lambda a: sympy.log(a, 10),
        "safe_log1p": lambda a: sympy.log(1 + a),
        "log1p": lambda a: sympy.log(1 + a),
        "safe_sqrt": sympy.sqrt,
        "safe_acosh": sympy.acosh,
        "safe_pow": lambda a, b: a**b,
        "pow": lambda a, b: a**b,
        "relu": lambda a: sympy.Max(a, 0),
        "sign": sympy.sign,
    }


_SYMPY_NAMES = {"sin", "cos", "tan", "exp", "log", "sqrt", "abs", "Abs", "sinh", "cosh", "tanh", "asin", "acos",
                "atan", "asinh", "acosh", "atanh", "sign", "floor", "ceiling", "erf", "erfc", "gamma", "Max", "Min",
                "pi", "E", "Float", "Integer", "Rational", "Symbol"}


def parse_equation(text: str, names: Sequence[str]) -> sympy.Expr:
    """Parse a PySR equation string (``^`` for powers, ``x0, x1, ...`` or the column names).

    Examples
    --------
    >>> parse_equation("((x0 * x1) / square(x2)) * 6.674", ["m1", "m2", "r"])
    6.674*m1*m2/r**2
    """
    local: dict[str, Any] = {n: sympy.Symbol(n) for n in names}
    local.update(_pysr_functions())
    if not any(re.search(rf"\b{re.escape(n)}\b", text) for n in names):
        local.update({f"x{i}": sympy.Symbol(n) for i, n in enumerate(names)})
    # parse_expr runs Python on the text: accept only numbers, operators and known names, so a
    # file from elsewhere cannot run code here
    words = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", re.sub(r"(?<![A-Za-z_0-9])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", " ", text)))
    foreign = sorted(words - set(local) - _SYMPY_NAMES)
    if foreign or not re.fullmatch(r"[A-Za-z_0-9+\-*/^().,\s]*", text):
        raise CrosscheckError(
            f"parse_equation({text[:200]!r}, names): unknown names {foreign[:10]} or characters; pass an equation of "
            f"the columns {list(names)}, numbers and PySR operators"
        )
    try:
        expr = parse_expr(text, local_dict=local, transformations=standard_transformations + (convert_xor,))
    except (SyntaxError, TypeError, ValueError, NameError, AttributeError, ZeroDivisionError, RecursionError,
            sympy.SympifyError, TokenError) as exc:
        raise CrosscheckError(f"parse_equation({text!r}, names): not a formula SymPy can read ({exc})") from exc
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in names)
    if unknown:
        raise CrosscheckError(f"parse_equation({text!r}, names): unknown variables {unknown}; the columns are {list(names)}")
    return expr


def read_hall_of_fame(path: str | Path, X: np.ndarray, y: np.ndarray, names: Sequence[str]) -> Search:
    """Read a PySR ``hall_of_fame.csv`` and re-score every equation on ``(X, y)``.

    An equation that does not parse, or gives no numbers (``zoo``, unknown functions...), stays
    in the table with an infinite loss and no ``sympy_format``; it is never chosen.
    Keeps PySR's ``Complexity`` (its own measure); ``loss`` becomes the mean squared error on
    the given data and ``score`` is recomputed as PySR defines it
    (``-d log(loss) / d complexity`` between consecutive rows). The file's loss is kept as
    ``loss_reported``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "hall_of_fame.csv"
    >>> _ = path.write_text("Complexity,Loss,Equation\\n1,1.2,m\\n3,0.0,m * v\\n")
    >>> X = np.random.default_rng(0).uniform(1, 2, (50, 2))
    >>> search = read_hall_of_fame(path, X, X[:, 0] * X[:, 1], ["m", "v"])
    >>> search.formula, search.candidates["complexity"].tolist()
    (m*v, [1, 3])
    >>> folder.cleanup()
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise CrosscheckError(f"read_hall_of_fame({str(path)!r}, X, y, names): cannot read it ({exc})") from exc
    raw.columns = [c.strip() for c in raw.columns]
    need = {"Complexity", "Loss", "Equation"}
    if not need <= set(raw.columns):
        raise CrosscheckError(
            f"read_hall_of_fame({str(path)!r}, X, y, names): columns {list(raw.columns)} lack "
            f"{sorted(need - set(raw.columns))}; pass PySR's hall_of_fame.csv (Complexity, Loss, Equation)"
        )
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    rows = []
    for _, r in raw.sort_values("Complexity", kind="stable").iterrows():
        try:
            expr = usable(parse_equation(str(r["Equation"]), names))
        except CrosscheckError:  # not a formula of these columns: kept in the table, scored invalid
            expr = None
        pred = None if expr is None else try_evaluate(expr, X, names)
        if pred is None:
            rows.append((int(r["Complexity"]), math.inf, str(r["Equation"]), None, -math.inf, float(r["Loss"])))
            continue
        loss = float(np.mean((pred - y) ** 2)) if np.all(np.isfinite(pred)) else math.inf
        rows.append((int(r["Complexity"]), loss, str(expr), expr, r2_score(pred, y), float(r["Loss"])))
    table = pd.DataFrame(rows, columns=["complexity", "loss", "equation", "sympy_format", "r2", "loss_reported"])
    table.insert(2, "score", _scores(table["complexity"].to_numpy(), table["loss"].to_numpy()))
    table = table[COLUMNS + ["loss_reported"]]
    finite = table[np.isfinite(table["loss"])]
    if finite.empty:
        raise CrosscheckError(f"read_hall_of_fame({str(path)!r}, X, y, names): no equation is finite on X")
    return Search("hall_of_fame", table, select_best(finite, y), 0.0, {"source": str(path)})
