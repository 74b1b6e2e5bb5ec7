"""``discover``: from a table of observations to one clean global formula.

``discover`` reads as its own table of contents; each step is a typed stage of
:mod:`discovery.stages`:

    plan -> split -> per space: fit, expand (+ structure tests), merge per order -> choose
    -> decompose (when the expansion only approximates) -> propose (expansion or decomposition)
    -> cross-check -> :class:`~discovery.result.Discovery` -> warnings

Rows (:mod:`discovery.trust`): training rows fit, validation rows choose, test rows only score.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import numpy as np

from discovery import stages
from discovery.errors import DataError, DiscoveryWarning
from discovery.fit import check_sample_weight, fit_ensemble
from discovery.guides import structure_guide
from discovery.result import Discovery, evaluate_formula
from discovery.spaces import MAX_ORDER, screen, spaces as usable_spaces
from discovery.trust import RowSets, assess

__all__ = ["discover", "structure_guide", "FIT_DEFAULTS", "TIME_BUDGET"]

FIT_DEFAULTS = {"hidden": (32, 32), "activation": "tanh", "max_epochs": 200, "patience": 50, "lbfgs_steps": 1000}
"""Training settings ``discover`` passes to :func:`discovery.fit.fit_ensemble` unless overridden."""

TIME_BUDGET = 120.0
"""Default seconds for one ``discover`` call: a 9-input law, decomposed, in about two minutes on two cores."""


def discover(
    data,
    target: str | None = None,
    order: int | str = 2,
    *,
    features: Sequence[str] | None = None,
    space: str = "auto",
    seed: int | None = 0,
    device="auto",
    crosscheck: str | None = "auto",
    members: int = 5,
    reference_points: int | str | np.ndarray = "auto",
    progress: bool = True,
    test_fraction: float = 0.2,
    crosscheck_budget: float = 30.0,
    crosscheck_options: dict | None = None,
    crosscheck_guide: str | None = "structure",
    fit_options: dict | None = None,
    merge_options: dict | None = None,
    min_rows: int = 10,
    decompose: bool | str = "auto",
    time_budget: float | None = TIME_BUDGET,
    sample_weight=None,
) -> Discovery:
    """Find the formula behind a table: train, expand, merge, cross-check.

    Parameters
    ----------
    data : str, Path, pandas.DataFrame or discovery.data.Table
        A CSV file or a DataFrame; never modified. A ``Table`` already read by
        :func:`~discovery.data.load_table` with these ``target`` and ``features`` is used as it is.
    target : str, optional
        Column to explain (default: the last column).
    order : int or "auto", default 2
        Highest total degree of the Taylor polynomials. ``"auto"`` tries 1 to 4 and keeps the
        most parsimonious formula that is as accurate (validation RMSE within 5 % of the best).
    features : sequence of str, optional
        Columns to explain it with (default: every other column).
    space : {"auto", "raw", "log"}
        ``"log"`` fits ``log y`` on ``log x`` (needs positive features and a target of one sign),
        so power laws come out as monomials with clean exponents. ``"auto"`` tries both where
        possible and picks by validation error, then complexity; ``space_reason`` says why.
    seed : int or None, default 0
        Seeds the splits, the networks and the reference points. ``None`` draws a fresh seed
        (scikit-learn's ``random_state=None``); the seed used is kept in ``settings["seed"]``.
    device : "auto", str or torch.device
        Where to train (``"auto"``: CUDA when available).
    crosscheck : {"auto", "operon", "pysr", "gplearn", "off", None}
        Symbolic-regression engine to cross-check the formula with. ``"auto"`` runs Operon
        when ``pyoperon`` imports. An engine that is missing or fails (import, crash, timeout)
        becomes a note and a warning on the result, not an error; the package's own errors
        propagate.
    members : int, default 5
        Networks in the ensemble; members far worse than the best (3x validation RMSE) are dropped.
    reference_points : "auto", int or (B, p) array
        Where to expand: ``"auto"`` places up to 32 k-means centres over the data; an int sets
        their number; an array gives the points in original units.
    progress : bool, default True
        Progress bars while training.
    test_fraction : float, default 0.2
        Test rows: held out from everything (training, merging, every choice) and used only to
        score the result. Of the other rows, the networks' validation split (20 %) makes every
        choice; the rest train (:mod:`discovery.trust`).
    crosscheck_budget : float, default 30
        Seconds the cross-check engine may search at most.
    crosscheck_guide : {"structure", "off"}, default "structure"
        ``"structure"`` narrows the cross-check engine's search with what the exact derivatives
        of the ensemble showed (:attr:`Discovery.structure`): only the inputs with influence,
        and, in raw space, each additive block searched on its own. On the bundled laws this
        guided Operon to the true law on 9 of 9 (8 of 9 unguided) in less time
        (``experiments/crosscheck.py``). ``"off"`` gives the engine every column.
    crosscheck_options, fit_options, merge_options : dict, optional
        Passed to :func:`discovery.crosscheck.compare`, :func:`discovery.fit.fit_ensemble`
        (over :data:`FIT_DEFAULTS`) and :func:`discovery.merge.merge`.
    min_rows : int, default 10
        Fewest usable rows accepted.
    decompose : {"auto", True, False}, default "auto"
        Run the recursive, structure-driven decomposition (:func:`discovery.decompose.decompose`)
        on the raw-space training and validation rows: ``True`` always, ``False`` never,
        ``"auto"`` when the expansion's chosen formula only approximates (the networks fit the
        validation rows significantly better: the paired mean of squared errors, the rule of the
        warning that says so, or a signed-rank test on the same differences,
        :func:`discovery.stages.approximates`). Its formula
        is then a candidate: the significantly more accurate one on the validation rows wins,
        else the simpler; the cross-check then compares that formula with the engine's.
        ``Discovery.decomposition`` keeps the tree, evidence, notes and timings. A law the
        expansion reads exactly (a polynomial in raw or log space) never runs it under "auto".
    time_budget : float or None, default 120
        Seconds for the whole call. Training may use 60 %: the networks stop at that point with
        their best weights so far, and a second space is not trained once it is spent. The
        decomposition gets what is left but the cross-check's share (25 %, at most
        ``crosscheck_budget``); inside it every network, closed-form search and constant refit
        stops at its deadline and keeps the best found so far (:func:`discovery.decompose.decompose`).
        The cross-check gets what is left but at least its share (at most ``crosscheck_budget``).
        The result is always a formula: the best found when the time ran out. What runs past a
        deadline is at most one training epoch or optimiser step, one evaluation of a candidate
        formula or one Operon run inside a piece (capped at whole seconds), and the parts without a
        deadline of their own: reading the table, the Taylor expansion, the merge, and the
        cross-check engine, which gets its seconds as a cap but polishes its candidates after the
        search (on a loaded machine a 5 s share has taken 13 s). Every stage's seconds are in
        ``timings``, and whatever was cut short or skipped is said in ``notes`` ("time budget
        spent: ..."). ``None``: no limit.
    sample_weight : (n,) array, optional
        Non-negative weights of the table's rows (finite, not all zero), sliced by the row sets:
        each row's squared error counts ``w`` times in training and validation of the networks
        (:func:`~discovery.fit.fit_ensemble`) and in the merge's least squares and scores
        (:func:`~discovery.merge.merge`). The decomposition does not take weights and is not run
        with them; the cross-check engine, the warnings and the test score are unweighted.

    Returns
    -------
    Discovery
        Its ``warnings`` list every condition that changes what the answer is worth; each is
        also raised as :class:`~discovery.errors.DiscoveryWarning`.

    Examples
    --------
    >>> import discovery
    >>> d = discover(discovery.bundled("paper_quadratic"), order=2, members=2, crosscheck="off")
    >>> d.formula
    0.5*x1**2 + 0.5*x2
    """
    plan = _plan(order, seed, crosscheck, crosscheck_guide, test_fraction, space, members, device, progress,
                 reference_points, min_rows, fit_options, merge_options, crosscheck_budget, crosscheck_options,
                 decompose, time_budget)
    clock = stages.Clock(plan.time_budget)
    notes: list[str] = []

    with clock.stage("load"):
        s = stages.split(data, target, features, plan)
        s.weights = _weights(sample_weight, s, plan.call)
        spaces, space_note = _spaces(s, plan)

    candidates, fits, expansions = [], {}, {}
    for sp in spaces:
        if fits and stages.fit_budget_spent(plan, clock):
            space_note = (f"{next(iter(fits))} space: {sp} space was not trained, training used its share of the "
                          f"time budget ({clock.elapsed():.0f} s of {plan.time_budget:g} s)")
            notes.append(space_note)
            continue
        with clock.stage(f"fit {sp}"):
            fits[sp] = stages.fit_space(s, sp, plan, notes, clock)
        with clock.stage(f"expand {sp}"):
            expansions[sp] = stages.expand_space(s, fits[sp], plan, notes)
        with clock.stage(f"merge {sp}"):
            candidates += stages.merge_space(s, fits[sp], expansions[sp], plan)

    with clock.stage("choose"):
        choice = stages.choose(candidates, list(fits), space_note, plan, s)
    best = choice.candidate.space
    # One ensemble prediction on the validation rows serves both judgments that need it.
    judged = stages.judged_rows(s.rows, plan.seed)
    judged = judged, stages.network_prediction(fits[best], s.X[judged])
    decomposed = stages.decompose_stage(s, choice, fits[best], plan, clock, judged, raw=fits.get("raw"))
    notes.extend(_decomposition_notes(decomposed))
    proposal = stages.propose(s, choice, decomposed)

    comparison, engine_missing = None, plan.engine_missing
    if plan.engine is not None:
        with clock.stage("crosscheck"):
            comparison, engine_missing = stages.crosscheck_stage(s, proposal, expansions[best].structure, plan,
                                                                 clock, notes)
    clock.timings["total"] = clock.elapsed()
    d = _result(s, plan, choice, fits[best], expansions[best], decomposed, proposal, comparison, clock, notes)
    d.warnings.extend(_warnings(d, s.rows, judged, engine_missing, d.target_name if target is None else None))
    for w in d.warnings:
        warnings.warn(DiscoveryWarning(f"{plan.call}: {w}"), stacklevel=2)
    return d


def _weights(sample_weight, s: stages.Split, call: str) -> np.ndarray | None:
    """The row weights checked against the table's rows (``None`` when not given)."""
    if sample_weight is None:
        return None
    if s.table.dropped_rows:
        raise DataError(f"{call}: sample_weight cannot follow the rows after {s.table.dropped_rows} with missing "
                        "values were dropped; drop those rows and their weights first")
    return check_sample_weight(sample_weight, len(s.y), f"{call} with sample_weight")


def _plan(order, seed, crosscheck, guide, test_fraction, space, members, device, progress, reference_points,
          min_rows, fit_options, merge_options, crosscheck_budget, crosscheck_options, decompose,
          time_budget) -> stages.Plan:
    """Every argument checked before any work."""
    call = "discover(data, ...)"
    orders = _orders(order, call)
    seed = _seed(seed, call)
    engine, engine_missing = _engine(crosscheck, call)
    if guide not in (None, "off", "structure"):
        raise DataError(f"{call}: crosscheck_guide={guide!r}; pass 'structure' or 'off'")
    if not 0 <= test_fraction < 0.9:
        raise DataError(f"{call}: test_fraction={test_fraction!r}; pass a number in [0, 0.9)")
    modes = {"auto": "auto", True: "on", False: "off", "on": "on", "off": "off"}
    if isinstance(decompose, (np.bool_,)):
        decompose = bool(decompose)
    if not isinstance(decompose, (str, bool)) or decompose not in modes:
        raise DataError(f"{call}: decompose={decompose!r}; pass 'auto', True or False")
    if time_budget is not None and (isinstance(time_budget, bool) or not isinstance(time_budget, (int, float))
                                    or not 0 < time_budget < float("inf")):
        raise DataError(f"{call}: time_budget={time_budget!r}; pass a positive number of seconds, or None")
    fit_settings = {**FIT_DEFAULTS, **(fit_options or {})}
    val_fraction = fit_settings.get("val_fraction", inspect.signature(fit_ensemble).parameters["val_fraction"].default)
    return stages.Plan(
        call=call, order=order, orders=orders, seed=seed, engine=engine, engine_missing=engine_missing, guide=guide, space=space,
        members=members, device=device, progress=progress, reference_points=reference_points,
        test_fraction=test_fraction, min_rows=min_rows, fit_settings=fit_settings, val_fraction=val_fraction,
        fit_options=dict(fit_options or {}), merge_options=dict(merge_options or {}),
        crosscheck_budget=crosscheck_budget, crosscheck_options=dict(crosscheck_options or {}),
        decompose=modes[decompose], time_budget=None if time_budget is None else float(time_budget),
    )


def _spaces(s: stages.Split, plan: stages.Plan) -> tuple[list[str], str]:
    """The spaces to train: what the data allow, screened by a polynomial fit (test rows decide nothing)."""
    spaces, note = usable_spaces(plan.space, s.X, s.y[s.rows.fit], plan.call)
    if len(spaces) > 1:
        spaces, note = screen(spaces, s.X, s.y, s.rows, min(max(plan.orders), MAX_ORDER), plan.seed)
    return spaces, note


def _decomposition_notes(dec: stages.Decomposed) -> list[str]:
    """What the user should read about the decomposition: that it ran and its own notes, or that
    the time budget cut it (not running because it was not needed or not asked for is no news)."""
    if dec.ran:
        took = float(dec.result.timings.get("total", 0.0))
        over = ([f"decomposition took {took:.0f} s of its {dec.budget:.0f} s share of the time budget (its "
                 "leaf solver or a step without a deadline of its own ran over)"] if took > 1.1 * dec.budget + 1.0
                else [])
        return [f"decomposition ran: {dec.reason}"] + over + [f"decomposition: {n}" for n in dec.result.notes]
    return [f"decomposition {dec.reason}"] if dec.reason.startswith("not run") else []


def _result(s, plan, choice, f, e, dec, proposal, comparison, clock, notes) -> Discovery:
    merged = choice.candidate.merged
    return Discovery(
        expansion_formula=merged.expression,
        crosscheck=comparison,
        merged=merged,
        space=choice.candidate.space,
        space_reason=choice.space_reason,
        order=int(choice.candidate.order),
        order_reason=choice.order_reason,
        candidates=choice.table,
        local=e.local,
        fitted=f.fitted,
        members_kept=f.kept,
        X=s.X,
        y=s.y,
        names=s.names,
        target_name=s.table.target_name,
        renamed=dict(s.table.renamed),
        source=s.table.source,
        data_warnings=list(s.table.warnings),
        test_index=s.rows.test,
        fit_index=s.rows.fit,
        timings=clock.timings,
        notes=notes,
        structure=e.structure,
        settings={"order": plan.order,
                  "space": plan.space, "seed": plan.seed, "members": plan.members,
                  "crosscheck": plan.engine or "off", "reference_points": int(e.local.centers.shape[0]),
                  "fit": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.fit_settings.items()},
                  "rows": {"train": len(s.rows.train), "validation": len(s.rows.validation), "test": len(s.rows.test)},
                  "decompose": plan.decompose, "time_budget": plan.time_budget,
                  "crosscheck_budget": plan.crosscheck_budget},
        decomposition=dec.result,
        chosen=proposal.source,
        chosen_reason=proposal.reason,
    )


def _warnings(d: Discovery, rows: RowSets, judged: tuple[np.ndarray, np.ndarray], engine_missing: str | None,
              defaulted: str | None) -> list[str]:
    """The result's warnings, judged on the validation rows of ``judged`` (with the networks'
    prediction there; :func:`stages.judged_rows`) and the test score, reported only."""
    val, network_val = judged
    fit_y = d.y[rows.train]
    return assess(
        y_val=d.y[val],
        formula_val=evaluate_formula(d.formula, d.X[val], d.names),
        network_val=network_val,
        train_mean=float(np.mean(fit_y)),
        test_r2=d.r2 if len(rows.test) else None,
        approximate_by=f"{d.recommended}'s",
        crosscheck_missing=engine_missing,
        defaulted_target=defaulted,
        target=d.target_name,
    )


def _orders(order, call: str) -> list[int]:
    if isinstance(order, str):
        if order == "auto":
            return list(range(1, MAX_ORDER + 1))
        if order.isdigit():
            order = int(order)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= 8:
        raise DataError(f"{call}: order={order!r}; pass an integer from 1 to 8 or 'auto'")
    return [int(order)]


def _seed(seed, call: str) -> int:
    """An integer seed; ``None`` (or a NumPy generator) draws one, as scikit-learn's ``random_state``."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**32)
    if isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return int(seed.integers(2**32) if isinstance(seed, np.random.Generator) else seed.randint(2**32, dtype=np.int64))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DataError(f"{call}: seed={seed!r}; pass an integer in [0, 2**32), or None for a fresh seed "
                        "(kept in settings['seed'])")
    return int(seed)


def _engine(crosscheck, call: str) -> tuple[str | None, str | None]:
    """The engine to run, and why none runs although one was asked for."""
    if crosscheck in (None, False, "off", "none"):
        return None, None
    if crosscheck == "auto":
        try:
            import pyoperon  # noqa: F401
        except Exception as exc:  # a missing or broken engine is the engine's failure
            return None, f"crosscheck='auto' needs pyoperon, which does not import ({type(exc).__name__}: {exc})"
        return "operon", None
    if crosscheck in ("operon", "pysr", "gplearn"):
        return crosscheck, None
    raise DataError(f"{call}: crosscheck={crosscheck!r}; pass 'auto', 'operon', 'pysr', 'gplearn' or 'off'")
