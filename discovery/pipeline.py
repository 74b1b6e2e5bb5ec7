"""``discover``: from a table of observations to one clean global formula (glue only).

    load_table -> fit_ensemble (per space) -> reference points (k-means on standardised inputs)
    -> one batched ``expand`` for every point and member -> units -> merge (per order)
    -> pick space and order -> optional cross-check -> :class:`~discovery.result.Discovery`
    -> warnings for anything that changes what the answer is worth

Rows (:mod:`discovery.trust`): training rows fit, validation rows choose, test rows only score.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import sympy
import torch

from discovery.crosscheck.base import EngineFailure, complexity
from discovery.data import load_table
from discovery.engine import Expansion, expand
from discovery.errors import DataError, DiscoveryError, DiscoveryWarning
from discovery.fit import fit_ensemble
from discovery.interpret.structure import additive_separability, unused_variables
from discovery.merge import merge
from discovery.result import Discovery, LocalPolynomials, evaluate_formula
from discovery.symbolic import text, to_original_units
from discovery.trust import RowSets, assess, check_fit_rows, split_rows

__all__ = ["discover", "structure_guide", "FIT_DEFAULTS"]

FIT_DEFAULTS = {"hidden": (32, 32), "activation": "tanh", "max_epochs": 200, "patience": 50, "lbfgs_steps": 100}
"""Training settings ``discover`` passes to :func:`discovery.fit.fit_ensemble` unless overridden."""

MAX_ORDER = 4
_MEMBER_FACTOR = 3.0  # a member is dropped when its validation RMSE is this many times the best
_SCREEN_FACTOR = 10.0  # a space is not trained when its polynomial screen is this much worse
_ACCURACY_TOL = 0.05  # candidates within 5 % of the best validation RMSE count as equally accurate


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
) -> Discovery:
    """Find the formula behind a table: train, expand, merge, cross-check.

    Parameters
    ----------
    data : str, Path or pandas.DataFrame
        A CSV file or a DataFrame; never modified.
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
    start = time.perf_counter()
    call = "discover(data, ...)"
    orders = _orders(order, call)
    seed = _seed(seed, call)
    engine, engine_missing = _engine(crosscheck, call)
    if crosscheck_guide not in (None, "off", "structure"):
        raise DataError(f"{call}: crosscheck_guide={crosscheck_guide!r}; pass 'structure' or 'off'")
    if not 0 <= test_fraction < 0.9:
        raise DataError(f"{call}: test_fraction={test_fraction!r}; pass a number in [0, 0.9)")
    timings: dict[str, float] = {}
    notes: list[str] = []

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_table(data, target, features, min_rows=min_rows)
    for w in caught:  # re-emit: the table records them too, the user sees them once
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    timings["load"] = time.perf_counter() - t0
    X, y, names = table.X, table.y, list(table.feature_names)
    n, p = X.shape

    fit_settings = {**FIT_DEFAULTS, **(fit_options or {})}
    val_fraction = fit_settings.get("val_fraction", inspect.signature(fit_ensemble).parameters["val_fraction"].default)
    rows = split_rows(n, test_fraction, val_fraction, seed)
    fit_index, test_index = rows.fit, rows.test

    spaces, space_note = _spaces(space, X, y[fit_index], call)  # the test rows' targets decide nothing
    if len(spaces) > 1:
        spaces, space_note = _screen(spaces, X, y, rows, min(max(orders), MAX_ORDER))
    max_order = max(orders)
    candidates = []
    fitted_by_space = {}
    structure_by_space: dict[str, dict | None] = {}
    for sp in spaces:
        t0 = time.perf_counter()
        V, t, sign = _to_space(X[fit_index], y[fit_index], sp)
        split = (np.searchsorted(fit_index, rows.train), np.searchsorted(fit_index, rows.validation))
        fitted = fit_ensemble(V, t, members=members, seed=seed, device=device, progress=progress, split=split,
                              **fit_settings)
        check_fit_rows(rows, fitted, call)
        timings[f"fit {sp}"] = time.perf_counter() - t0
        kept = np.flatnonzero(fitted.val_rmse <= _MEMBER_FACTOR * fitted.val_rmse.min() + 1e-300)
        if len(kept) < fitted.members:
            notes.append(
                f"{sp} space: dropped {fitted.members - len(kept)} of {fitted.members} networks whose validation "
                f"RMSE exceeds {_MEMBER_FACTOR:g} x the best ({fitted.val_rmse.min():.3g})"
            )

        t0 = time.perf_counter()
        z_refs = _reference_points(reference_points, V, fitted, sp, seed, call)
        expansion = expand(fitted.model, torch.from_numpy(z_refs), max_order)
        coefficients, centers = to_original_units(
            expansion.monomials, expansion.coefficients[:, :, kept], z_refs,
            fitted.x_mean, fitted.x_scale, fitted.y_mean, fitted.y_scale,
        )
        timings[f"expand {sp}"] = time.perf_counter() - t0
        structure_by_space[sp] = _structure(expansion, kept, names, table.target_name, sp, notes)
        local = LocalPolynomials(centers=centers, monomials=np.asarray(expansion.monomials), coefficients=coefficients,
                                 names=names, space=sp, sign=sign)
        fitted_by_space[sp] = (fitted, kept, local)

        t0 = time.perf_counter()
        degree = local.monomials.sum(axis=1)
        for k in orders:
            terms = np.flatnonzero(degree <= k)
            merged = merge(local.monomials[terms], coefficients[:, terms, :], centers, X[fit_index], y[fit_index],
                           names=names, val_index=fitted.val_index, space=sp, seed=seed, **(merge_options or {}))
            candidates.append({
                "space": sp, "order": k, "val_rmse": merged.val_rmse, "val_r2": merged.val_r2,
                "terms": merged.complexity, "complexity": complexity(merged.expression),
                "formula": text(merged.expression, precision=6), "merged": merged,
            })
        timings[f"merge {sp}"] = time.perf_counter() - t0

    best, space_reason, order_reason = _choose(candidates, spaces, space_note, orders, y[fit_index])
    fitted, kept, local = fitted_by_space[best["space"]]
    merged = best["merged"]
    table_candidates = pd.DataFrame([{k: v for k, v in c.items() if k != "merged"} for c in candidates])
    table_candidates["chosen"] = [c is best for c in candidates]
    table_candidates["sympy_format"] = [c["merged"].expression for c in candidates]  # exact, for exports

    comparison = None
    if engine is not None:
        t0 = time.perf_counter()
        options = dict(crosscheck_options or {})
        structure = structure_by_space.get(best["space"])
        if crosscheck_guide == "structure" and structure is not None and "guide" not in options:
            options["guide"], why = _guide(structure, merged.expression)
            if options["guide"] is None:
                notes.append(f"cross-check not guided by the structure tests: {why}")
        try:
            comparison = _crosscheck(engine, merged.expression, X, y, names, rows, seed, crosscheck_budget, options)
        except EngineFailure as exc:  # only the external engine's failure; the package's own errors propagate
            notes.append(f"cross-check with {engine} did not run: {exc}")
            engine_missing = f"{engine} failed or is unavailable ({exc})"
        timings["crosscheck"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    d = Discovery(
        expansion_formula=merged.expression,
        crosscheck=comparison,
        merged=merged,
        space=best["space"],
        space_reason=space_reason,
        order=int(best["order"]),
        order_reason=order_reason,
        candidates=table_candidates,
        local=local,
        fitted=fitted,
        members_kept=kept,
        X=X,
        y=y,
        names=names,
        target_name=table.target_name,
        renamed=dict(table.renamed),
        source=table.source,
        data_warnings=list(table.warnings),
        test_index=test_index,
        fit_index=fit_index,
        timings=timings,
        notes=notes,
        structure=structure_by_space.get(best["space"]),
        settings={"order": order, "space": space, "seed": seed, "members": members, "crosscheck": engine or "off",
                  "reference_points": int(local.centers.shape[0]), "fit": {k: list(v) if isinstance(v, tuple) else v
                                                                         for k, v in fit_settings.items()},
                  "rows": {"train": len(rows.train), "validation": len(rows.validation), "test": len(rows.test)}},
    )
    d.warnings.extend(_warnings(d, rows, engine_missing, table.target_name if target is None else None))
    for w in d.warnings:
        warnings.warn(DiscoveryWarning(f"{call}: {w}"), stacklevel=2)
    return d


def _warnings(d: Discovery, rows: RowSets, engine_missing: str | None, defaulted: str | None) -> list[str]:
    """The result's warnings, judged on the validation rows (and the test score, reported only)."""
    val = rows.validation
    fit_y = d.y[rows.train]
    return assess(
        y_val=d.y[val],
        formula_val=evaluate_formula(d.formula, d.X[val], d.names),
        network_val=d.predict_network(d.X[val]),
        train_mean=float(np.mean(fit_y)),
        test_r2=d.r2 if len(rows.test) else None,
        approximate_by="expansion's" if d.recommended == "expansion" else f"{d.recommended}'s",
        crosscheck_missing=engine_missing,
        defaulted_target=defaulted,
        target=d.target_name,
    )


def _structure(expansion, kept, names, target, space, notes) -> dict | None:
    """Structure tests on the kept members' exact derivatives at the reference points.

    The expansion is in standardised (and, in log space, logarithmic) units; a per-variable
    affine change of units leaves zero derivatives zero, so the verdicts carry over to the
    table's columns. Needs order >= 2 (second derivatives) and at least two inputs.
    """
    if expansion.order < 2 or expansion.n_inputs < 2:
        return None
    members = Expansion(expansion.center, expansion.coefficients[:, :, kept], expansion.order, (len(kept),))
    try:
        influence = unused_variables(members)
        additive = additive_separability(members)
    except DiscoveryError as exc:
        notes.append(f"structure tests skipped: {exc}")
        return None
    with_influence, without = influence.groups if len(influence.groups) == 2 else (list(range(len(names))), [])
    blocks = [[names[i] for i in g] for g in additive.groups]
    parts = [f"f{k + 1}({', '.join(b)})" for k, b in enumerate(blocks)]
    if len(blocks) == 1:
        split = "no additive split" if space == "raw" else "no multiplicative split (log y on log x)"
    elif space == "raw":
        split = f"{target} = {' + '.join(parts)}"
    else:
        split = f"{target} = {' * '.join(parts)} (log y additive in log x)"
    return {
        "space": space,
        "inputs_with_influence": [names[i] for i in with_influence],
        "inputs_without_influence": [names[i] for i in without],
        "additive_blocks": blocks,
        "summary": split + (f"; no influence: {', '.join(names[i] for i in without)}" if without else ""),
        "members": int(additive.members),
        "threshold": float(additive.threshold),
    }


def structure_guide(structure: dict, formula: sympy.Expr | None = None):
    """The cross-check guide a structure report implies (additive blocks only hold for raw y),
    or ``None`` (no guide) when the structure tests are not clear.

    Not clear: no input has influence; ``formula`` (the expansion's) uses an input the tests call
    without influence; or a term of ``formula`` joins inputs of different additive blocks. So the
    engine never gets fewer variables than the expansion's formula uses.

    Examples
    --------
    >>> s = {"space": "raw", "inputs_with_influence": [], "additive_blocks": [["a"], ["b"]]}
    >>> structure_guide(s) is None
    True
    """
    return _guide(structure, formula)[0]


def _guide(structure: dict, formula: sympy.Expr | None):
    """(guide or None, why None)."""
    from discovery.crosscheck import Guide

    used = list(structure["inputs_with_influence"])
    if not used:
        return None, "they found no input with influence"
    if formula is not None:
        lacking = sorted({s.name for s in formula.free_symbols} - set(used))
        if lacking:
            return None, f"the expansion's formula uses {', '.join(lacking)}, which they call without influence"
    blocks = structure["additive_blocks"]
    additive = None
    if structure["space"] == "raw" and len(blocks) > 1:
        additive = [b for b in ([n for n in blk if n in used] for blk in blocks) if b]
        if formula is not None and len(additive) > 1:
            for term in sympy.Add.make_args(sympy.expand(formula)):
                vs = {s.name for s in term.free_symbols}
                if vs and not any(vs <= set(b) for b in additive):
                    return None, f"the expansion's term {term} joins inputs of different additive blocks"
        additive = additive if len(additive) > 1 else None
    return Guide(variables=used, additive=additive), ""


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


def _spaces(space: str, X: np.ndarray, y: np.ndarray, call: str) -> tuple[list[str], str]:
    positive = bool(np.all(X > 0)) and (bool(np.all(y > 0)) or bool(np.all(y < 0)))
    if space == "raw":
        return ["raw"], "raw space (requested)"
    if space == "log":
        if not positive:
            raise DataError(f"{call}: space='log' needs positive features and a target of one sign; use space='raw'")
        return ["log"], "log space (requested)"
    if space != "auto":
        raise DataError(f"{call}: space={space!r}; pass 'auto', 'raw' or 'log'")
    if not positive:
        why = "features with values <= 0" if not np.all(X > 0) else "a target that changes sign or is 0"
        return ["raw"], f"raw space: log space needs positive features and a target of one sign, the data have {why}"
    return ["raw", "log"], ""


def _screen(spaces: list[str], X: np.ndarray, y: np.ndarray, rows: RowSets, degree: int) -> tuple[list[str], str]:
    """Skip training a space whose best polynomial of the same degree (least squares on the
    training rows, scored on the validation rows) is more than ``_SCREEN_FACTOR`` times worse
    than the other space's: the networks there could not do better than the polynomial the
    merge refits anyway."""
    from sklearn.preprocessing import PolynomialFeatures

    val, train = rows.validation, rows.train
    floor = 1e-9 * float(np.std(y)) + 1e-300
    rmse = {}
    for sp in spaces:
        V, t, sign = _to_space(X, y, sp)
        Z = (V - V[train].mean(axis=0)) / np.where(V[train].std(axis=0) > 0, V[train].std(axis=0), 1.0)
        D = PolynomialFeatures(degree).fit_transform(Z)
        coef = np.linalg.lstsq(D[train], t[train], rcond=None)[0]
        with np.errstate(all="ignore"):
            pred = D[val] @ coef
            pred = sign * np.exp(pred) if sp == "log" else pred
        err = float(np.sqrt(np.mean((pred - y[val]) ** 2)))
        rmse[sp] = err if np.isfinite(err) else np.inf
    best = min(spaces, key=lambda sp: rmse[sp])
    other = [sp for sp in spaces if sp != best][0]
    if rmse[other] > _SCREEN_FACTOR * (rmse[best] + floor):
        return [best], (
            f"{best} space: a degree-{degree} polynomial screen reaches validation RMSE {rmse[best]:.3g} in {best} space "
            f"against {rmse[other]:.3g} in {other} space (more than {_SCREEN_FACTOR:g}x better), so only {best} "
            "space was trained"
        )
    return spaces, ""


def _to_space(X: np.ndarray, y: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray, float]:
    if space == "log":
        sign = 1.0 if np.all(y > 0) else -1.0
        return np.log(X), np.log(sign * y), sign
    return X, y, 1.0


def _reference_points(reference_points, V, fitted, space, seed, call) -> np.ndarray:
    Z = (V - fitted.x_mean) / fitted.x_scale
    if isinstance(reference_points, (str, int, np.integer)) and not isinstance(reference_points, bool):
        if isinstance(reference_points, str):
            if reference_points != "auto":
                raise DataError(f"{call}: reference_points={reference_points!r}; pass 'auto', an integer or an array")
            k = int(min(32, max(4, len(Z) // 25)))
        else:
            k = int(reference_points)
            if k < 1:
                raise DataError(f"{call}: reference_points={k}; pass a positive integer")
        k = min(k, len(Z))
        from sklearn.cluster import KMeans

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centres = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(Z).cluster_centers_
        return np.ascontiguousarray(centres, dtype=np.float64)
    points = np.asarray(reference_points, dtype=np.float64)
    if points.ndim == 1:
        points = points[None, :]
    if points.ndim != 2 or points.shape[1] != V.shape[1]:
        raise DataError(f"{call}: reference_points has shape {points.shape}; pass (B, {V.shape[1]}) points in original units")
    if space == "log":
        if np.any(points <= 0):
            raise DataError(f"{call}: reference points must be positive in log space; pass positive points or space='raw'")
        points = np.log(points)
    return (points - fitted.x_mean) / fitted.x_scale


def _choose(candidates, spaces, space_note, orders, y) -> tuple[dict, str, str]:
    """The most parsimonious candidate among those as accurate as the best."""
    floor = 1e-9 * float(np.std(y)) + 1e-300
    best_rmse = min(c["val_rmse"] for c in candidates)
    bound = best_rmse * (1 + _ACCURACY_TOL) + floor
    accurate = [c for c in candidates if c["val_rmse"] <= bound]
    rank = {sp: i for i, sp in enumerate(spaces)}
    chosen = min(accurate, key=lambda c: (c["complexity"], c["order"], rank[c["space"]]))

    if len(spaces) == 1:
        space_reason = space_note
    else:
        per_space = {sp: min((c for c in candidates if c["space"] == sp), key=lambda c: c["val_rmse"]) for sp in spaces}
        other = [sp for sp in spaces if sp != chosen["space"]][0]
        o = per_space[other]
        o_ok = [c for c in accurate if c["space"] == other]
        if not o_ok:
            space_reason = (
                f"{chosen['space']} space: validation RMSE {chosen['val_rmse']:.3g} against {o['val_rmse']:.3g} "
                f"at best in {other} space"
            )
        else:
            alt = min(o_ok, key=lambda c: (c["complexity"], c["order"]))
            if alt["complexity"] == chosen["complexity"]:
                space_reason = (
                    f"{chosen['space']} space: both spaces are as accurate (validation RMSE {chosen['val_rmse']:.3g} vs "
                    f"{alt['val_rmse']:.3g}) with formulas of equal complexity ({chosen['complexity']} nodes); "
                    f"{chosen['space']} is the plainer reading"
                )
            else:
                space_reason = (
                    f"{chosen['space']} space: as accurate as {other} space (validation RMSE {chosen['val_rmse']:.3g} vs "
                    f"{alt['val_rmse']:.3g}) with a simpler formula ({chosen['complexity']} vs {alt['complexity']} nodes)"
                )
    if len(orders) == 1:
        order_reason = f"order {orders[0]} (requested)"
    else:
        same = [c for c in candidates if c["space"] == chosen["space"]]
        listing = ", ".join(f"{c['order']}: {c['val_rmse']:.3g}" for c in same)
        order_reason = (
            f"order {chosen['order']}: the simplest formula within {_ACCURACY_TOL:.0%} of the best validation RMSE "
            f"(validation RMSE by order in {chosen['space']} space: {listing})"
        )
    return chosen, space_reason, order_reason


def _crosscheck(engine, formula, X, y, names, rows: RowSets, seed, budget, options):
    """The engine searches on the training rows; the recommendation is made on the validation
    rows; the test rows are only scored."""
    from discovery.crosscheck import compare

    return compare(formula, X, y, names, engine=engine, time_budget=budget, seed=seed,
                   validation_index=rows.validation, test_index=rows.test, **(options or {}))
