"""The stages of :func:`discovery.discover`, each a small function from dataclasses to a dataclass.

    Plan -> Split -> (per space) SpaceFit -> SpaceExpansion -> [Candidate] -> Choice
         -> Decomposed -> Proposal -> cross-check -> Discovery

A :class:`Clock` carries the time budget: every stage records its seconds in ``timings``, logs one
line to the ``"discovery"`` logger, and a stage the budget no longer allows is cut with a note.
Rows (:mod:`discovery.trust`): training rows fit, validation rows choose, test rows only score.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sympy
import torch

from discovery.crosscheck.base import EngineFailure, complexity, paired_gain
from discovery.data import DataWarning, Table, load_table
from discovery.engine import Expansion, expand
from discovery.errors import DataError
from discovery.fit import fit_ensemble
from discovery.merge import merge
from discovery.result import LocalPolynomials, evaluate_formula
from discovery.symbolic import text, to_original_units
from discovery.trust import RowSets, check_fit_rows, only_approximates, split_rows
from discovery import spaces as rules
from discovery.guides import guide_for, structure_report

__all__ = ["Plan", "Clock", "Split", "SpaceFit", "SpaceExpansion", "Candidate", "Choice", "Decomposed",
           "Proposal", "split", "fit_space", "expand_space", "merge_space", "choose", "decompose_stage",
           "propose", "crosscheck_stage", "network_prediction", "fit_budget_spent", "fit_deadline", "approximates",
           "judged_rows"]

log = logging.getLogger("discovery")
_JUDGE_ROWS = 20_000  # validation rows the formula-against-networks judgments read at most

_MEMBER_FACTOR = 3.0  # a member is dropped when its validation RMSE is this many times the best
_Z = 2.0  # a paired difference counts when it exceeds two standard errors (as in discovery.trust)
_FIT_SHARE = 0.6  # of the time budget: training; a second space is not trained once it is spent
_CROSSCHECK_SHARE = 0.25  # of the time budget kept for the cross-check while the decomposition runs
_MIN_STAGE = 1.0  # seconds: a stage with less left is not started


@dataclass(frozen=True)
class Plan:
    """The validated arguments of one ``discover`` call."""

    call: str
    order: Any  # as requested (kept in settings)
    orders: list[int]
    seed: int
    engine: str | None
    engine_missing: str | None
    guide: str | None
    space: str
    members: int
    device: Any
    progress: bool
    reference_points: Any
    test_fraction: float
    min_rows: int
    fit_settings: dict
    val_fraction: float
    fit_options: dict
    merge_options: dict
    crosscheck_budget: float
    crosscheck_options: dict
    decompose: str  # "auto", "on" or "off"
    time_budget: float | None


class Clock:
    """Elapsed time against the budget; ``stage`` times a block into ``timings`` and logs it."""

    def __init__(self, budget: float | None) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.timings: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left of the budget (infinite without one)."""
        return math.inf if self.budget is None else self.budget - self.elapsed()

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0  # a stage that raised logs nothing: its error is the one line
        self.timings[name] = seconds
        log.info("%s: %.1f s (%.1f s elapsed)", name, seconds, self.elapsed())


@dataclass
class Split:
    """The table and its three disjoint row sets."""

    table: Table
    X: np.ndarray
    y: np.ndarray
    names: list[str]
    rows: RowSets
    weights: np.ndarray | None = None  # per table row, or None (every row counts once)

    def fit_weights(self) -> np.ndarray | None:
        """The weights of the training and validation rows (``rows.fit``), or None."""
        return None if self.weights is None else self.weights[self.rows.fit]


@dataclass
class SpaceFit:
    """The ensemble trained in one space, and the members kept."""

    space: str
    sign: float
    V: np.ndarray  # training+validation inputs in the space
    fitted: Any
    kept: np.ndarray


@dataclass
class SpaceExpansion:
    """Exact Taylor polynomials of the kept members, in original units, and the structure tests."""

    expansion: Expansion
    local: LocalPolynomials
    structure: dict | None


@dataclass
class Candidate:
    """One merged formula (space, order)."""

    space: str
    order: int
    merged: Any

    def row(self) -> dict:
        m = self.merged
        return {"space": self.space, "order": self.order, "val_rmse": m.val_rmse, "val_r2": m.val_r2,
                "terms": m.complexity, "complexity": complexity(m.expression), "formula": text(m.expression, precision=6)}


@dataclass
class Choice:
    """The expansion's chosen candidate, why, and the table of all candidates."""

    candidate: Candidate
    space_reason: str
    order_reason: str
    table: pd.DataFrame


@dataclass
class Decomposed:
    """Whether the decomposition ran, why (or why not), and what it gave."""

    ran: bool
    reason: str
    result: Any = None
    budget: float = math.inf  # seconds it was given


@dataclass
class Proposal:
    """The formula handed to the cross-check and why it was chosen."""

    formula: sympy.Expr
    source: str  # "expansion" or "decomposition"
    reason: str


# -------------------------------------------------------------------------------------- split
def split(data, target, features, plan: Plan) -> Split:
    """Read the table (its warnings shown once) and split the rows. ``data`` may be a
    :class:`~discovery.data.Table` already read with these ``target`` and ``features`` (the
    command line reads it before any training, to check it): it is used as it is."""
    if isinstance(data, Table):
        table = data
        for note in table.warnings:
            warnings.warn(note, DataWarning, stacklevel=3)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = load_table(data, target, features, min_rows=plan.min_rows)
        for w in caught:  # re-emit: the table records them too, the user sees them once
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    X, y, names = table.X, table.y, list(table.feature_names)
    _check_magnitudes(X, y, names, table.target_name, plan.call)
    return Split(table, X, y, names, split_rows(len(y), plan.test_fraction, plan.val_fraction, plan.seed))


def _check_magnitudes(X, y, names, target, call) -> None:
    """Refuse a column whose sum of squares overflows float64: standardising it (and every least
    squares after) would turn it into infinities and NaNs."""
    limit = math.sqrt(np.finfo(np.float64).max / max(len(y), 1))
    for name, column in [*zip(names, X.T), (target, y)]:
        big = float(np.max(np.abs(column)))
        if big > limit:
            raise DataError(f"{call}: column {name!r} has values up to {big:.4g}, too large to standardise in float64 "
                            f"(at most {limit:.3g} for {len(y)} rows); rescale it, e.g. divide it by a power of ten")


# -------------------------------------------------------------------------------------- per space
def fit_space(s: Split, space: str, plan: Plan, notes: list[str], clock: Clock | None = None) -> SpaceFit:
    """Train the ensemble on the training rows (validation rows for early stopping) in ``space``;
    with ``clock``, training stops where its share of the time budget ends (:func:`fit_deadline`)."""
    fit = s.rows.fit
    V, t, sign = rules.to_space(s.X[fit], s.y[fit], space)
    split = (np.searchsorted(fit, s.rows.train), np.searchsorted(fit, s.rows.validation))
    settings = dict(plan.fit_settings)
    deadline = None if clock is None else fit_deadline(plan, clock)
    if deadline is not None:  # a deadline in fit_options, if any, holds too: the earlier one wins
        settings["deadline"] = min(deadline, settings.get("deadline") or math.inf)
    fitted = fit_ensemble(V, t, members=plan.members, seed=plan.seed, device=plan.device, progress=plan.progress,
                          split=split, sample_weight=s.fit_weights(), **settings)
    if fitted.cut:
        notes.append(f"{space} space: time budget spent: training cut short at its share of the time budget "
                     f"({fitted.cut})")
    check_fit_rows(s.rows, fitted, plan.call)
    kept = np.flatnonzero(fitted.val_rmse <= _MEMBER_FACTOR * fitted.val_rmse.min() + 1e-300)
    if len(kept) < fitted.members:
        notes.append(
            f"{space} space: dropped {fitted.members - len(kept)} of {fitted.members} networks whose validation "
            f"RMSE exceeds {_MEMBER_FACTOR:g} x the best ({fitted.val_rmse.min():.3g})"
        )
    return SpaceFit(space, sign, V, fitted, kept)


def expand_space(s: Split, f: SpaceFit, plan: Plan, notes: list[str]) -> SpaceExpansion:
    """Expand the kept members at the reference points; run the structure tests."""
    z_refs = rules.reference_points(plan.reference_points, f.V, f.fitted, f.space, plan.seed, plan.call)
    expansion = expand(f.fitted.model, torch.from_numpy(z_refs), max(plan.orders))
    fitted = f.fitted
    coefficients, centers = to_original_units(
        expansion.monomials, expansion.coefficients[:, :, f.kept], z_refs,
        fitted.x_mean, fitted.x_scale, fitted.y_mean, fitted.y_scale,
    )
    structure = structure_report(expansion, f.kept, s.names, s.table.target_name, f.space, notes)
    local = LocalPolynomials(centers=centers, monomials=np.asarray(expansion.monomials), coefficients=coefficients,
                             names=s.names, space=f.space, sign=f.sign)
    return SpaceExpansion(expansion, local, structure)


def merge_orders(local, orders, X: np.ndarray, y: np.ndarray, names, val_index, seed: int,
                 sample_weight=None, **merge_options) -> list:
    """``(order, MergedFormula)`` for each order: the local polynomials truncated to that degree,
    merged on the training and validation rows ``X, y`` (``val_index`` within them)."""
    degree = local.monomials.sum(axis=1)
    out = []
    for k in orders:
        terms = np.flatnonzero(degree <= k)
        out.append((k, merge(local.monomials[terms], local.coefficients[:, terms, :], local.centers, X, y,
                             names=names, val_index=val_index, space=local.space, seed=seed,
                             sample_weight=sample_weight, **merge_options)))
    return out


def merge_space(s: Split, f: SpaceFit, e: SpaceExpansion, plan: Plan) -> list[Candidate]:
    """One merged global formula per requested order."""
    fit = s.rows.fit
    merged = merge_orders(e.local, plan.orders, s.X[fit], s.y[fit], s.names, f.fitted.val_index, plan.seed,
                          s.fit_weights(), **plan.merge_options)
    return [Candidate(f.space, k, m) for k, m in merged]


def choose(candidates: list[Candidate], spaces: list[str], space_note: str, plan: Plan, s: Split) -> Choice:
    """The most parsimonious candidate among those as accurate as the best (validation rows)."""
    rows = [c.row() for c in candidates]
    best, space_reason, order_reason = rules.choose(rows, spaces, space_note, plan.orders, s.y[s.rows.fit])
    chosen = candidates[rows.index(best)]
    table = pd.DataFrame(rows)
    table["chosen"] = [r is best for r in rows]
    table["sympy_format"] = [c.merged.expression for c in candidates]  # exact, for exports
    return Choice(chosen, space_reason, order_reason, table)


def network_prediction(f: SpaceFit, X: np.ndarray) -> np.ndarray:
    """The kept members' mean prediction on ``X`` in the target's units."""
    if f.space == "log":
        return f.sign * np.exp(f.fitted.predict_members(np.log(X))[:, f.kept].mean(axis=1))
    return f.fitted.predict_members(X)[:, f.kept].mean(axis=1)


# -------------------------------------------------------------------------------------- decomposition
def judged_rows(rows: RowSets, seed: int) -> np.ndarray:
    """The validation rows the formula-against-networks judgments read: all of them, or a seeded
    sample of ``_JUDGE_ROWS`` on a very large table (the paired test needs no more, and each
    ensemble prediction costs about a second per 100,000 rows)."""
    val = rows.validation
    if len(val) <= _JUDGE_ROWS:
        return val
    return np.sort(np.random.default_rng(seed + 3).choice(val, _JUDGE_ROWS, replace=False))


def approximates(y_val: np.ndarray, formula_val: np.ndarray, network_val: np.ndarray) -> str | None:
    """Which test shows that the networks fit the validation rows significantly better than the
    formula (so it misses part of the law), or ``None`` when neither does.

    Both tests read the paired differences ``d = (formula - y)^2 - (network - y)^2`` one-sided at
    ``_Z`` standard errors, and need their mean above the round-off of exact formulas: the paired
    mean (:func:`discovery.trust.only_approximates`, the rule of the warning), and Wilcoxon's
    signed-rank test. A Taylor polynomial of a non-polynomial law errs most at the edges of the
    domain, so a few rows carry most of the excess and inflate the mean's standard error; the
    ranks count the rows where the formula is worse, however the excess is spread over them.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=400)
    >>> approximates(y, y + 0.01 * rng.standard_cauchy(400), y + 1e-4 * rng.normal(size=400))  # heavy tails
    'signed-rank test'
    >>> approximates(y, y + 1e-4 * rng.normal(size=400), y + 0.01 * rng.normal(size=400)) is None
    True
    """
    from scipy.stats import norm, wilcoxon

    if only_approximates(y_val, formula_val, network_val):
        return "paired mean of squared errors"
    with np.errstate(all="ignore"):
        d = (formula_val - y_val) ** 2 - (network_val - y_val) ** 2
    floor = 1e-12 * float(np.mean(y_val**2))  # round-off of exact formulas and networks (as in discovery.trust)
    if not np.all(np.isfinite(d)) or not float(np.mean(d)) > floor or np.count_nonzero(d) < 10:
        return None
    p = float(wilcoxon(d, alternative="greater").pvalue)
    return "signed-rank test" if p < float(norm.sf(_Z)) else None


def log_series(merged) -> str | None:
    """Why a log-space formula ``y = s exp(P(log x))`` is a series rather than a law, or ``None``.

    Log space is there for power laws (``P`` of degree 1). Terms of degree 2 or more in ``log x``
    are the local Taylor series of ``log |f|`` in ``log x``: as accurate as the networks on the
    rows, noise hiding the truncation, yet no closed form, so the decomposition may still find
    the law (the proposal rule then picks the better or simpler formula)."""
    monomials = np.asarray(getattr(merged, "monomials", np.zeros((0, 0))))
    if getattr(merged, "space", "raw") != "log" or monomials.size == 0:
        return None
    degree = int(monomials.sum(axis=1).max())
    if degree < 2:
        return None
    return (f"the expansion's log-space formula has terms of degree {degree} in log x: a series of log |y|, "
            "not a power law")


def decompose_stage(s: Split, choice: Choice, f: SpaceFit, plan: Plan, clock: Clock,
                    judged: tuple[np.ndarray, np.ndarray] | None = None, raw: SpaceFit | None = None) -> Decomposed:
    """Run :func:`discovery.decompose.decompose` on the raw-space training and validation rows
    (never the test rows) when asked, or, with ``"auto"``, when the expansion's formula only
    approximates: the networks fit the validation rows significantly better (:func:`approximates`).
    ``judged``: the rows of :func:`judged_rows` and the networks' prediction there, when already
    computed. ``raw``: the raw-space ensemble, whose derivatives the root's structure tests read
    (else the decomposition trains its own)."""
    if plan.decompose == "off":
        return Decomposed(False, "decompose=False")
    if s.weights is not None:
        return Decomposed(False, "not run: the decomposition does not take sample_weight")
    val = s.rows.validation
    if plan.decompose == "auto":
        if judged is None:
            rows = judged_rows(s.rows, plan.seed)
            judged = rows, network_prediction(f, s.X[rows])
        rows, network_val = judged
        formula_val = evaluate_formula(choice.candidate.merged.expression, s.X[rows], s.names)
        test = approximates(s.y[rows], formula_val, network_val)
        series = log_series(choice.candidate.merged)
        if test is None and series is None:
            return Decomposed(False, "the expansion's formula fits the validation rows as well as the networks")
        why = (f"the expansion's formula only approximates (the networks fit the validation rows better: {test})"
               if test is not None else series)
    else:
        why = "decompose=True"
    n_train = len(s.rows.train)
    if len(val) < 5 or n_train < 4 * (len(s.names) + 1):  # what the leaf solver needs to fit and choose
        return Decomposed(False, f"not run ({why}): {n_train} training and {len(val)} validation rows are too few "
                                 "to fit and judge its pieces")
    from discovery.decompose import NODE_FIT, decompose

    if plan.time_budget is None:
        reserve, budget = 0.0, inspect.signature(decompose).parameters["time_budget"].default
    else:
        reserve = min(plan.crosscheck_budget, _CROSSCHECK_SHARE * plan.time_budget) if plan.engine else 0.0
        budget = clock.left() - reserve
    if budget < _MIN_STAGE:
        return Decomposed(False, f"not run ({why}): the time budget of {plan.time_budget:g} s was spent "
                                 f"({clock.elapsed():.0f} s elapsed{', the rest kept for the cross-check' if reserve else ''})")
    fit = s.rows.fit
    options = dict(plan.fit_options)
    options.setdefault("members", max(2, min(plan.members, NODE_FIT["members"])))
    with clock.stage("decompose"):
        result = decompose(s.X[fit], s.y[fit], s.names, val_index=np.searchsorted(fit, val), seed=plan.seed,
                           time_budget=budget, fit_options=options, progress=False,
                           ensemble=None if raw is None else raw.fitted)
    return Decomposed(True, why, result, budget)


def propose(s: Split, choice: Choice, dec: Decomposed) -> Proposal:
    """The expansion's or the decomposition's formula, on the validation rows: the significantly
    better one (paired test), else the simpler one (complexity), else the expansion's."""
    expansion = choice.candidate.merged.expression
    if dec.result is None:
        return Proposal(expansion, "expansion", "")
    val = s.rows.validation
    y = s.y[val]
    mine = evaluate_formula(expansion, s.X[val], s.names)
    theirs = evaluate_formula(dec.result.expression, s.X[val], s.names)
    gain, se = paired_gain(y, theirs, mine)
    floor = 1e-12 * float(np.mean(y**2))  # round-off of exact formulas is no difference (as in discovery.trust)
    if abs(gain) <= floor:
        gain = 0.0
    rmse = (_rmse(y, theirs), _rmse(y, mine))
    scores = f"validation RMSE {rmse[0]:.4g} (decomposition) against {rmse[1]:.4g} (expansion)"
    if gain > _Z * se and gain > 0:
        return Proposal(dec.result.expression, "decomposition", f"decomposition: more accurate, {scores}")
    if -gain > _Z * se and gain < 0:
        return Proposal(expansion, "expansion", f"expansion: more accurate, {scores}")
    c_dec, c_exp = complexity(dec.result.expression), complexity(expansion)
    if c_dec < c_exp:
        return Proposal(dec.result.expression, "decomposition",
                        f"decomposition: as accurate ({scores}) and simpler ({c_dec} vs {c_exp} nodes)")
    return Proposal(expansion, "expansion", f"expansion: as accurate ({scores}) and no more complex "
                                            f"({c_exp} vs {c_dec} nodes)")


def _rmse(y: np.ndarray, pred: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.sqrt(np.mean((pred - y) ** 2)))


# -------------------------------------------------------------------------------------- cross-check
def crosscheck_stage(s: Split, proposal: Proposal, structure: dict | None, plan: Plan, clock: Clock,
                     notes: list[str]) -> tuple[Any, str | None]:
    """Compare the proposed formula with the engine's; (comparison or None, why none ran)."""
    from discovery.crosscheck import compare

    options = dict(plan.crosscheck_options)
    if plan.guide == "structure" and structure is not None and "guide" not in options:
        options["guide"], why = guide_for(structure, proposal.formula, proposal.source)
        if options["guide"] is None:
            notes.append(f"cross-check not guided by the structure tests: {why}")
    # its share is kept even when an earlier stage ran over (the expansion, the merge and a
    # custom leaf solver have no deadline of their own), so a requested cross-check runs
    share = math.inf if plan.time_budget is None else _CROSSCHECK_SHARE * plan.time_budget
    budget = min(plan.crosscheck_budget, max(clock.left(), share))
    if budget < _MIN_STAGE:
        notes.append(f"cross-check with {plan.engine} cut: the time budget of {plan.time_budget:g} s was spent "
                     f"({clock.elapsed():.0f} s elapsed)")
        return None, f"the time budget (time_budget={plan.time_budget:g} s) was spent before it could start"
    if budget < plan.crosscheck_budget:
        notes.append(f"cross-check budget cut from {plan.crosscheck_budget:g} s to {budget:.0f} s by the time budget "
                     f"of {plan.time_budget:g} s ({clock.elapsed():.0f} s elapsed)")
    try:  # the engine searches on the training rows, the validation rows recommend, the test rows only score
        with _engine_progress(plan.engine, budget, plan.progress):
            comparison = compare(proposal.formula, s.X, s.y, s.names, engine=plan.engine, time_budget=budget,
                                 seed=plan.seed, validation_index=s.rows.validation, test_index=s.rows.test,
                                 **options)
    except EngineFailure as exc:  # only the external engine's failure; the package's own errors propagate
        notes.append(f"cross-check with {plan.engine} did not run: {exc}")
        return None, f"{plan.engine} failed or is unavailable ({exc})"
    return comparison, plan.engine_missing


@contextlib.contextmanager
def _engine_progress(engine: str, budget: float, progress: bool):
    """The cross-check's own progress: a bar over its time budget, moved by a thread while the
    engine searches (its search releases the GIL), or, where no bar shows (stderr is not a
    terminal), a line when it starts; the stage's own line follows when it ends."""
    isatty = getattr(sys.stderr, "isatty", None)
    if not (progress and callable(isatty) and isatty()):
        log.info("crosscheck: %s searching, at most %.0f s", engine, budget)
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=max(1, round(budget)), desc=f"crosscheck: {engine}", unit="s", leave=False)
    stop, start = threading.Event(), time.perf_counter()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.n = min(int(time.perf_counter() - start), bar.total)
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


def fit_budget_spent(plan: Plan, clock: Clock) -> bool:
    """Training has used its share of the time budget (another space is then not trained)."""
    return plan.time_budget is not None and clock.elapsed() > _FIT_SHARE * plan.time_budget


def fit_deadline(plan: Plan, clock: Clock) -> float | None:
    """The :func:`time.perf_counter` time at which training's share of the time budget ends
    (``None`` without a budget): the networks stop there with their best weights so far."""
    return None if plan.time_budget is None else clock.start + _FIT_SHARE * plan.time_budget


