"""Which variable spaces ``discover`` trains, where it expands, and which merged candidate it
keeps (space and order): the rules, apart from the stages that apply them."""

from __future__ import annotations

import warnings

import numpy as np

from discovery.errors import DataError
from discovery.trust import RowSets

__all__ = ["spaces", "screen", "to_space", "reference_points", "choose", "MAX_ORDER", "ACCURACY_TOL"]

MAX_ORDER = 4
_SCREEN_FACTOR = 10.0  # a space is not trained when its polynomial screen is this much worse
_SAMPLE_ROWS = 10_000  # rows the reference points are clustered from and the spaces screened on (seeded sample)
ACCURACY_TOL = 0.05  # candidates within 5 % of the best validation RMSE count as equally accurate


def spaces(space: str, X: np.ndarray, y: np.ndarray, call: str) -> tuple[list[str], str]:
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


def screen(spaces: list[str], X: np.ndarray, y: np.ndarray, rows: RowSets, degree: int,
           seed: int = 0) -> tuple[list[str], str]:
    """Skip training a space whose best polynomial of the same degree (least squares on the
    training rows, scored on the validation rows) is more than ``_SCREEN_FACTOR`` times worse
    than the other space's: the networks there could not do better than the polynomial the
    merge refits anyway. A large table is screened on a seeded sample of
    ``_SAMPLE_ROWS`` training and a quarter as many validation rows."""
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(seed)
    train, val = (part if len(part) <= limit else np.sort(rng.choice(part, limit, replace=False))
                  for part, limit in ((rows.train, _SAMPLE_ROWS), (rows.validation, _SAMPLE_ROWS // 4)))
    used = np.concatenate([train, val])
    X, y = X[used], y[used]
    train, val = np.arange(len(train)), np.arange(len(train), len(used))
    floor = 1e-9 * float(np.std(y)) + 1e-300
    rmse = {}
    for sp in spaces:
        V, t, sign = to_space(X, y, sp)
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


def to_space(X: np.ndarray, y: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray, float]:
    if space == "log":
        sign = 1.0 if np.all(y > 0) else -1.0
        return np.log(X), np.log(sign * y), sign
    return X, y, 1.0


def reference_points(reference_points, V, fitted, space, seed, call) -> np.ndarray:
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
        if len(Z) > _SAMPLE_ROWS:  # centres of a large table settle long before every row is read
            Z = Z[np.sort(np.random.default_rng(seed).choice(len(Z), _SAMPLE_ROWS, replace=False))]
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


def choose(candidates, spaces, space_note, orders, y) -> tuple[dict, str, str]:
    """The most parsimonious candidate among those as accurate as the best."""
    floor = 1e-9 * float(np.std(y)) + 1e-300
    best_rmse = min(c["val_rmse"] for c in candidates)
    bound = best_rmse * (1 + ACCURACY_TOL) + floor
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
            f"order {chosen['order']}: the simplest formula within {ACCURACY_TOL:.0%} of the best validation RMSE "
            f"(validation RMSE by order in {chosen['space']} space: {listing})"
        )
    return chosen, space_reason, order_reason
