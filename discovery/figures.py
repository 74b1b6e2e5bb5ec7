"""The report's figures (matplotlib, Agg backend), each drawn from a :class:`~discovery.result.Discovery`.

Every function takes the result and ``pyplot`` and returns a figure, or ``None`` when there is
nothing to draw; what a figure cannot show (an exact fit's residuals) is said in words by
:func:`residual_message` instead of an empty panel. :func:`pareto_points` is the table behind
the Pareto front, so the report can list what the figure shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sympy

__all__ = ["FIGURES", "pareto_points", "residual_message", "validation_rows"]

_EPS = float(np.finfo(np.float64).eps)
_SLICE_FRACTION = 0.05  # rows shown on a slice: the nearest 5 % in the other inputs
_SLICE_MIN_ROWS = 10
_SHOWN_ROWS = 5_000  # points drawn per panel: more only hide each other and slow the drawing


def _shown(idx: np.ndarray) -> np.ndarray:
    """At most ``_SHOWN_ROWS`` of the rows ``idx`` (a seeded sample, in row order)."""
    if len(idx) <= _SHOWN_ROWS:
        return idx
    return np.sort(np.random.default_rng(0).choice(idx, _SHOWN_ROWS, replace=False))


def _of(shown: np.ndarray, idx: np.ndarray) -> str:
    return f"{len(idx)}" if len(shown) == len(idx) else f"{len(shown)} of {len(idx)}"


def validation_rows(d) -> np.ndarray:
    """Rows of ``d.X`` the networks were validated on (every choice was made on these)."""
    val = np.asarray(getattr(d.fitted, "val_index", np.zeros(0)), dtype=np.int64)
    fit = np.asarray(d.fit_index, dtype=np.int64)
    if len(fit) and len(val):
        return fit[val]
    return fit if len(fit) else np.arange(len(d.y))


def _rmse(formula, X: np.ndarray, y: np.ndarray, names: list[str]) -> float:
    from discovery.result import evaluate_formula

    pred = evaluate_formula(formula, X, names)
    err = float(np.sqrt(np.mean((pred - y) ** 2)))
    return err if np.isfinite(err) else np.inf


def pareto_points(d) -> pd.DataFrame:
    """Every candidate formula with its complexity and validation RMSE, in the target's units.

    Rows come from the expansion (one per space and order tried, ``d.candidates``) and from the
    cross-check engine's candidates (``d.crosscheck.candidates``), whose RMSE is computed here on
    the same validation rows. ``chosen`` marks the recommended formula (``d.formula``); when the
    engine's recommended formula is not among its candidates (a search split into parts), it is
    added as its own row.

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``complexity``, ``val_rmse``, ``formula``, ``chosen``.
    """
    from discovery.crosscheck.base import complexity
    from discovery.symbolic import text

    rows = []
    recommended = d.recommended
    for _, c in d.candidates.iterrows():
        rows.append({"source": f"expansion ({c['space']}, order {int(c['order'])})", "complexity": int(c["complexity"]),
                     "val_rmse": float(c["val_rmse"]), "formula": str(c["formula"]),
                     "chosen": bool(c.get("chosen", False)) and recommended == "expansion"})
    cc = d.crosscheck
    if cc is not None:
        val = validation_rows(d)
        X, y = d.X[val], d.y[val]
        found = False
        table = getattr(cc, "candidates", None)
        for _, c in (table.iterrows() if table is not None else []):
            expr = c["sympy_format"]
            hit = recommended == cc.engine and sympy.sympify(expr) == sympy.sympify(cc.engine_formula)
            found = found or hit
            rows.append({"source": cc.engine, "complexity": int(c["complexity"]), "val_rmse": _rmse(expr, X, y, d.names),
                         "formula": text(expr, precision=6), "chosen": hit})
        if recommended == cc.engine and not found:
            rows.append({"source": cc.engine, "complexity": complexity(cc.engine_formula),
                         "val_rmse": _rmse(cc.engine_formula, X, y, d.names),
                         "formula": text(cc.engine_formula, precision=6), "chosen": True})
    return pd.DataFrame(rows, columns=["source", "complexity", "val_rmse", "formula", "chosen"])


def _floor(d) -> float:
    """Smallest error a plot on log axes shows: float64 round-off at the target's scale."""
    return _EPS * max(float(np.max(np.abs(d.y))), 1e-300)


def _pareto(d, plt):
    points = pareto_points(d)
    if points.empty:
        return None
    floor = _floor(d)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    kinds = {"expansion": ("o", "C0")}
    if d.crosscheck is not None:
        kinds[d.crosscheck.engine] = ("s", "C1")
    for kind, (marker, color) in kinds.items():
        sel = points[points["source"].str.startswith(kind)]
        if sel.empty:
            continue
        err = np.maximum(sel["val_rmse"].to_numpy(), floor)
        cx = sel["complexity"].to_numpy()
        ax.plot(cx, err, marker, color=color, ms=6, alpha=0.8, label=kind if kind != "expansion" else "expansion (HOPE)")
        order = np.argsort(cx, kind="stable")
        best = np.minimum.accumulate(err[order])  # the front: the best error at each complexity or less
        ax.step(cx[order], best, where="post", color=color, lw=1, alpha=0.6)
    chosen = points[points["chosen"]]
    if len(chosen):
        ax.plot(chosen["complexity"], np.maximum(chosen["val_rmse"], floor), "*", color="red", ms=18,
                mec="black", alpha=0.6, label="recommended", zorder=1)
    ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(points["complexity"].min() - 1, points["complexity"].max() + 1)
    ax.axhline(floor, color="grey", lw=0.6, ls=":")
    ax.text(ax.get_xlim()[0], floor, " round-off", va="bottom", ha="left", fontsize=7, color="grey")
    ax.set_xlabel("complexity (expression-tree nodes)")
    ax.set_ylabel(f"validation RMSE of {d.target_name}")
    ax.set_title("Pareto front: complexity against validation error")
    ax.legend(fontsize=8)
    return fig


def _log_axes(d) -> bool:
    return d.space == "log"


def _plain_log(ax, which: str = "xy") -> None:
    """Log scale on ``which`` axes with plain numbers (``20``, not ``2 x 10^1``) and no crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _parity(d, plt):
    every = d.score_index
    idx = _shown(every)
    y, pred = d.y[idx], d.predict(d.X[idx])
    fig, ax = plt.subplots(figsize=(4.6, 4.6), layout="constrained")
    log = _log_axes(d)
    if log:  # a power law spans decades: on linear axes most points crowd into a corner
        y, pred = np.abs(y), np.abs(pred)
        _plain_log(ax)
    ax.plot(y, pred, ".", ms=3, alpha=0.7)
    finite = np.concatenate([y, pred[np.isfinite(pred)]])
    lo, hi = float(np.min(finite)), float(np.max(finite))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    unit = f"|{d.target_name}|" if log and d.local.sign < 0 else d.target_name
    ax.set_xlabel(f"{unit} observed")
    ax.set_ylabel(f"{unit} from the formula")
    where = "held-out" if len(d.test_index) else "all"
    ax.set_title(f"parity on {_of(idx, every)} {where} rows" + (" (log-log)" if log else ""))
    return fig


def residual_message(d) -> str | None:
    """Words instead of a residual plot when the formula reproduces every scored row to round-off.

    Each residual is compared with what evaluating the formula in float64 can get wrong at that
    row: about half a machine epsilon of ``|y|`` per operation, with a factor 8 for data written
    by a different evaluation order.
    """
    idx = d.score_index
    y = d.y[idx]
    res = y - d.predict(d.X[idx])
    if not np.all(np.isfinite(res)):
        return None
    ops = int(sympy.count_ops(d.formula)) + 2
    tolerance = 8 * ops * _EPS * np.maximum(np.abs(y), np.abs(y - res))
    if np.all(np.abs(res) <= tolerance):
        worst = float(np.max(np.abs(res)))
        return (f"Residuals are zero to round-off on all {len(idx)} scored rows: the largest |residual| is {worst:.3g} "
                f"against {float(np.max(np.abs(y))):.3g} for the largest |{d.target_name}| (float64 round-off of a "
                f"{ops - 2}-operation formula allows {float(np.max(tolerance)):.2g}), so there is no residual plot.")
    return None


def _residuals(d, plt):
    message = residual_message(d)
    if message is not None:  # the message in place of panels of flat lines on arbitrary axes
        import textwrap

        fig = plt.figure(figsize=(6.4, 1.6))
        fig.text(0.02, 0.5, "\n".join(textwrap.wrap(message, 95)), va="center", ha="left", fontsize=9)
        return fig
    every = d.score_index
    idx = _shown(every)
    res = d.y[idx] - d.predict(d.X[idx])
    p = len(d.names)
    fig, axes = plt.subplots(1, p, figsize=(3.2 * p, 3), squeeze=False, sharey=True, layout="constrained")
    bound = float(np.nanmax(np.abs(res))) * 1.1 or 1.0
    for j, ax in enumerate(axes[0]):
        ax.plot(d.X[idx, j], res, ".", ms=3, alpha=0.7)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(-bound, bound)  # symmetric about zero, so a bias shows
        if _log_axes(d):
            _plain_log(ax, "x")
        ax.set_xlabel(d.names[j])
    axes[0][0].set_ylabel(f"{d.target_name} observed - formula")
    rmse = float(np.sqrt(np.nanmean((d.y[every] - d.predict(d.X[every])) ** 2)))
    fig.suptitle(f"residuals on {_of(idx, every)} scored rows (RMSE {rmse:.3g} on all of them)")
    return fig


def _members(d, grid: np.ndarray) -> np.ndarray:
    """Each kept network's prediction on ``grid`` in the target's units, ``(n, kept)``."""
    f = d.fitted
    if d.space == "log":
        return d.local.sign * np.exp(f.predict_members(np.log(grid))[:, d.members_kept])
    return f.predict_members(grid)[:, d.members_kept]


def _slices(d, plt):
    p = len(d.names)
    log = _log_axes(d)
    V = np.log(d.X) if log else d.X
    median = np.median(V, axis=0)
    scale = np.where(V.std(axis=0) > 0, V.std(axis=0), 1.0)
    fig, axes = plt.subplots(1, p, figsize=(3.4 * p, 3.2), squeeze=False, layout="constrained")
    near_count = min(len(d.y), max(_SLICE_MIN_ROWS, int(np.ceil(_SLICE_FRACTION * len(d.y)))))
    for j, ax in enumerate(axes[0]):
        grid_v = np.repeat(median[None, :], 200, axis=0)
        grid_v[:, j] = np.linspace(V[:, j].min(), V[:, j].max(), 200)
        grid = np.exp(grid_v) if log else grid_v
        members = _members(d, grid)
        ax.fill_between(grid[:, j], members.min(axis=1), members.max(axis=1), color="C0", alpha=0.25,
                        label=f"networks min-max ({members.shape[1]})")
        ax.plot(grid[:, j], members.mean(axis=1), "-", color="C0", lw=1.2, label="networks mean")
        ax.plot(grid[:, j], d.predict(grid), "--", color="C3", lw=1.2, label="formula")
        others = [k for k in range(p) if k != j]
        if others:  # rows close to the slice in every other input, in units of that input's spread
            dist = np.max(np.abs(V[:, others] - median[others]) / scale[others], axis=1)
            near = np.argsort(dist, kind="stable")[:near_count]
        else:
            near = np.arange(len(d.y))
        near = _shown(np.sort(near))
        ax.plot(d.X[near, j], d.y[near], "o", ms=3, color="k", alpha=0.5,
                label=f"data ({len(near)} rows nearest the slice)" if others else "data")
        if log:
            _plain_log(ax, "x")
            if np.all(d.y[near] > 0) and np.all(members > 0):
                _plain_log(ax, "y")
        ax.set_xlabel(d.names[j])
    axes[0][0].set_ylabel(d.target_name)
    axes[0][0].legend(fontsize=7)
    where = "medians" + (" (of log x)" if log else "")
    fig.suptitle(f"networks and formula along one input, the others at their {where}")
    return fig


def _training(d, plt):
    history = getattr(d.fitted, "history", None) or []
    if not history or not any(len(h.get("train", [])) for h in history):
        return None
    kept = set(int(i) for i in d.members_kept)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for m, h in enumerate(history):
        style = "-" if m in kept else ":"
        epochs = np.arange(1, len(h["train"]) + 1)
        ax.plot(epochs, h["train"], style, color=f"C{m % 10}", lw=1, alpha=0.6)
        if len(h.get("val", [])):
            ax.plot(epochs, h["val"], style, color=f"C{m % 10}", lw=1.8,
                    label=f"member {m}" + ("" if m in kept else " (dropped)"))
        if 0 < h.get("best_epoch", 0) <= len(epochs):
            ax.plot(h["best_epoch"], h["val"][h["best_epoch"] - 1] if len(h.get("val", [])) else np.nan, "v",
                    color=f"C{m % 10}")
    ax.set_yscale("log")
    ax.set_xlabel("Adam epoch")
    ax.set_ylabel("MSE (standardised target)")
    ax.set_title("training: thin = training rows, thick = validation rows, v = best epoch", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return fig


def _coefficient_boxes(d, plt):
    """Each term's coefficient at the common centre, one box per term over reference points and networks."""
    import torch

    from discovery.engine import shift_coefficients

    local, merged = d.local, d.merged
    C = torch.from_numpy(np.ascontiguousarray(local.coefficients))
    every = shift_coefficients(C, local.monomials, torch.from_numpy(local.centers),
                               torch.from_numpy(np.asarray(merged.center, dtype=np.float64))).numpy()
    terms = merged.terms
    order = np.argsort(-terms["contribution"].to_numpy())[:16]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 2), 4), layout="constrained")
    ax.boxplot([every[:, i, :].reshape(-1) for i in order], showfliers=True)
    ax.set_xticks(range(1, len(order) + 1), [str(terms["term"].iloc[i]) for i in order], rotation=45, ha="right")
    for k, i in enumerate(order):
        if terms["kept"].iloc[i]:
            ax.plot(k + 1, terms["coefficient"].iloc[i], "r*", ms=10)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("coefficient at the common centre")
    ax.set_title(f"coefficients across {len(local)} reference points x {local.coefficients.shape[2]} networks "
                 "(red: final)", fontsize=9)
    return fig


FIGURES = {
    "pareto": (_pareto, "Pareto front: every candidate formula of the expansion and of the cross-check engine, "
                        "complexity against RMSE on the validation rows (the line is the best error reached at each "
                        "complexity or below; the star is the recommended formula). The engine searched "
                        "every row not held out, these validation rows included."),
    "parity": (_parity, "Formula against observation on the scored rows; log-log axes in log space."),
    "residuals": (_residuals, "Residuals against each input on the scored rows (in words when they are zero "
                              "to round-off)."),
    "slices": (_slices, "The ensemble (band: the kept networks' minimum to maximum) and the formula along each "
                        "input with the others at their median, over the data rows nearest that line."),
    "training": (_training, "Training curves of every network (standardised MSE per Adam epoch)."),
    "coefficients": (_coefficient_boxes, "Spread of each term's coefficient over reference points and networks, "
                                         "as in the HOPE paper."),
}
"""Figure name -> (drawing function, caption), in the report's order."""
