"""``DiscoveryRegressor``: :func:`discovery.discover` as a scikit-learn estimator, with PySR's
candidates table, model selection and exports."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import time
import warnings

import numpy as np
import pandas as pd
import sympy
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from discovery.errors import DiscoveryWarning

__all__ = ["DiscoveryRegressor"]

MODEL_SELECTIONS = ("recommended", "best", "accuracy", "score")
_BEST_LOSS_FACTOR = 1.5  # PySR's "best": highest score among losses within 1.5x the lowest
_EXACT = 1e-12  # losses below this fraction of var(y) are float round-off: they count as equal


class DiscoveryRegressor(RegressorMixin, BaseEstimator):
    """Find a formula for ``y = f(X)`` and predict with it (scikit-learn API, PySR's method names).

    Parameters
    ----------
    order : int or "auto", default 2
        Taylor order of the local polynomials (``"auto"`` tries 1 to 4).
    space : {"auto", "raw", "log"}, default "auto"
        Variable space (see :func:`discovery.discover`).
    members : int, default 5
        Networks in the ensemble.
    hidden : tuple of int, default (32, 32)
        Hidden layer widths of each network.
    max_epochs, lbfgs_steps : int, optional
        Training budget (default: :data:`discovery.pipeline.FIT_DEFAULTS`).
    reference_points : "auto" or int, default "auto"
        Number of reference points.
    crosscheck : str, default "off"
        Cross-check engine (``"auto"``, ``"operon"``, ...); off by default inside pipelines.
    crosscheck_budget : float, default 30.0
        Seconds for the cross-check engine's search.
    model_selection : {"recommended", "best", "accuracy", "score"}, default "recommended"
        Which row of ``equations_`` ``predict``, ``sympy``, ``latex`` and the exports use when
        no ``index`` is given. ``"recommended"`` is :func:`discovery.discover`'s choice (the
        simplest formula within 5 % of the lowest validation RMSE, or the cross-check's
        recommendation). The others are PySR's: ``"accuracy"`` the lowest loss, ``"score"``
        the highest score, ``"best"`` the highest score among losses within 1.5x the lowest.
        Read at prediction time, so ``set_params`` after ``fit`` changes the choice.
    device : str, default "auto"
    random_state : int, RandomState or None
        Seed of everything random in ``fit``.
    progress : bool, default False
    warm_start : bool, default False
        As in PySR: a second ``fit`` re-uses the previous state. When the data (same shape and
        contents, same weights) and every setting but ``order`` and ``model_selection`` are
        unchanged, the formula is re-merged at the new ``order`` from the stored local
        polynomials (:attr:`Discovery.local`) without training the networks again; the result
        is then the one a fresh fit with the same seed gives. Otherwise (other data or
        settings, a cross-check, both spaces trained, a higher order than was expanded) the
        networks are trained from scratch, and ``warm_start_note_`` says why.

    Attributes
    ----------
    discovery_ : Discovery
        The full result (terms, local polynomials, report, ...).
    formula_ : sympy.Expr
        The recommended formula in ``feature_names_in_`` (or ``x0, x1, ...``).
    equations_ : pandas.DataFrame
        Every candidate: each (space, order) merge of the expansion and, when the cross-check
        ran, the engine's Pareto front. Columns as in PySR: ``complexity`` (expression-tree
        nodes), ``loss`` (MSE on the validation rows), ``score`` (``-d log(loss) / d
        complexity`` between consecutive entries of the Pareto front of loss against
        complexity, 0 for its first entry, NaN off the front), ``equation`` (text),
        ``sympy_format``, ``lambda_format`` (a NumPy function of ``X``); and ``r2``
        (validation R^2), ``source`` (``"expansion"`` or the engine), ``space``, ``order``,
        ``pareto`` and ``chosen`` (the recommended formula). The cross-check engine searched
        all non-test rows, so the validation rows are in its training data.
    n_features_in_, feature_names_in_
    warm_started_ : bool
        Whether the last ``fit`` re-used the previous networks (no training).
    warm_start_note_ : str
        How the last ``fit`` started: re-merged, or why it trained from scratch.

    Warns
    -----
    DiscoveryWarning
        Every warning of :func:`discovery.discover` (a formula that only approximates, a low
        score, ...), raised again from ``fit``; also kept in ``discovery_.warnings``.
    UserWarning
        When every column of ``X`` has mean 0 and standard deviation 1 (as after
        ``StandardScaler`` in a pipeline): the formula is then in z-scores, under the columns'
        names, not in their units. Put the scaler after, or leave it out, to read the law.

    Notes
    -----
    Column names of a DataFrame are used in the formula exactly (``"gamma"``, ``"I"``,
    ``"temp (°C)"``); see :mod:`discovery.symbolic` for how they print in LaTeX. Losses below
    ``1e-12 var(y)`` count as equal (float round-off) in the Pareto front, the score and the
    selections, so two exact formulas are not told apart by rounding.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    >>> model = DiscoveryRegressor(order=2, members=2, random_state=0).fit(X, (X[:, 0] ** 2 + X[:, 1]) / 2)
    >>> model.sympy()
    0.5*x0**2 + 0.5*x1
    >>> import torch
    >>> model.pytorch()(torch.as_tensor(X[:2])).shape
    torch.Size([2])
    """

    def __init__(self, order=2, space="auto", members=5, hidden=(32, 32), max_epochs=None, lbfgs_steps=None,
                 reference_points="auto", crosscheck="off", crosscheck_budget=30.0, model_selection="recommended",
                 device="auto", random_state=None, progress=False, warm_start=False):
        self.order = order
        self.space = space
        self.members = members
        self.hidden = hidden
        self.max_epochs = max_epochs
        self.lbfgs_steps = lbfgs_steps
        self.reference_points = reference_points
        self.crosscheck = crosscheck
        self.crosscheck_budget = crosscheck_budget
        self.model_selection = model_selection
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.warm_start = warm_start

    def fit(self, X, y, sample_weight=None):
        """Discover a formula for ``y`` from ``X``; returns ``self``.

        ``sample_weight`` (n,) non-negative row weights: each row's squared error counts ``w``
        times in training, in the merge's least squares and in its validation scores (an
        integer weight is a repeated row, 0 leaves the row out of every fit and score). Equal
        weights are the unweighted fit.
        """
        from discovery.pipeline import discover
        from discovery.symbolic import tidy

        call = "DiscoveryRegressor.fit(X, y, sample_weight)"
        self._check_model_selection("DiscoveryRegressor.fit(X, y)")
        previous = getattr(self, "_warm_state", None) if self.warm_start else None
        X, y = validate_data(self, X, y, y_numeric=True, ensure_min_samples=2, dtype=np.float64)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True, copy=True)
            if not weights.sum() > 0:
                raise ValueError(f"{call}: every sample weight is zero; give some rows a positive weight")
            if np.all(weights == weights[0]):
                weights = None  # every fit and score is invariant to a common factor of the weights
        if _looks_standardised(X):
            warnings.warn(
                "DiscoveryRegressor.fit(X, y): every column of X has mean 0 and standard deviation 1, as "
                "after StandardScaler; the formula will be in these z-scores (named after the columns), "
                "not in the columns' own units. Fit on the unscaled columns to find the law in their units",
                UserWarning,
                stacklevel=2,
            )
        names = [str(n) for n in getattr(self, "feature_names_in_", [f"x{i}" for i in range(X.shape[1])])]
        target = "y"
        while target in names:
            target += "_"
        frame = pd.DataFrame(np.column_stack([X, y]), columns=[*map(str, names), target])
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        fit_options = {"hidden": tuple(self.hidden)}
        if self.max_epochs is not None:
            fit_options["max_epochs"] = int(self.max_epochs)
            fit_options["patience"] = max(10, int(self.max_epochs) // 4)
        if self.lbfgs_steps is not None:
            fit_options["lbfgs_steps"] = int(self.lbfgs_steps)
        key = self._warm_key(X, y, weights, names)
        warm = None
        if self.warm_start:
            warm, self.warm_start_note_ = _warm_remerge(previous, key, self.order, weights)
        else:
            self.warm_start_note_ = "trained from scratch (warm_start=False)"
        if warm is not None:
            self.discovery_ = warm
            raised = [DiscoveryWarning(w) for w in warm.warnings]
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # data notes (dropped constant columns) stay on discovery_
                self.discovery_ = discover(
                    frame, target=target, order=self.order, space=self.space, seed=seed, device=self.device,
                    crosscheck=self.crosscheck, crosscheck_budget=float(self.crosscheck_budget), members=self.members,
                    reference_points=self.reference_points, progress=self.progress, fit_options=fit_options,
                    min_rows=2, sample_weight=weights,
                )
            raised = [w.message for w in caught if issubclass(w.category, DiscoveryWarning)]
        for message in raised:  # what changes what the formula is worth reaches the caller
            warnings.warn(message, stacklevel=2)
        self.warm_started_ = warm is not None
        self._warm_state = {"key": key, "discovery": self.discovery_, "weights": weights}
        self._names = names
        self._columns = [names.index(n) for n in self.discovery_.names]
        self.formula_ = tidy(_plain(self.discovery_.formula))
        self.equations_ = _equations(self.discovery_, names)
        return self

    def _warm_key(self, X: np.ndarray, y: np.ndarray, weights, names: list[str]) -> tuple:
        """What must not change for a warm start: the data (shape and a hash), the weights, the
        column names and every setting except ``order`` and the ones read after training."""
        digest = hashlib.sha256()
        for a in (X, y) + (() if weights is None else (weights,)):
            digest.update(np.ascontiguousarray(a).tobytes())
        later = ("order", "model_selection", "progress", "warm_start")
        settings = tuple(sorted((k, repr(v)) for k, v in self.get_params(deep=False).items() if k not in later))
        return X.shape, weights is None, digest.hexdigest(), tuple(names), settings

    # ----------------------------------------------------------------------------- choosing a row
    def _check_model_selection(self, call: str) -> None:
        if self.model_selection not in MODEL_SELECTIONS:
            raise ValueError(f"{call}: model_selection={self.model_selection!r}; pass one of "
                             f"{', '.join(map(repr, MODEL_SELECTIONS))}")

    def _row(self, index, call: str) -> int | None:
        """Row label of ``equations_`` to use; None means the recommended formula itself."""
        check_is_fitted(self, "discovery_")
        table = self.equations_
        if index is None:
            self._check_model_selection(call)
            if self.model_selection == "recommended":
                return None
            return select(table, self.model_selection)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or index not in table.index:
            raise ValueError(f"{call}: index={index!r}; pass a row of equations_ (0 to {len(table) - 1}) or None")
        return int(index)

    def _expression(self, index, call: str) -> sympy.Expr:
        row = self._row(index, call)
        return self.formula_ if row is None else self.equations_.loc[row, "sympy_format"]

    def get_best(self, index: int | None = None) -> pd.Series:
        """The row of ``equations_`` that ``model_selection`` (or ``index``) picks."""
        row = self._row(index, "DiscoveryRegressor.get_best(index)")
        return self.equations_.loc[int(np.flatnonzero(self.equations_["chosen"])[0]) if row is None else row]

    # ----------------------------------------------------------------------------- PySR's methods
    def predict(self, X, index: int | None = None) -> np.ndarray:
        """Evaluate the selected formula (or row ``index`` of ``equations_``) on ``X``."""
        from discovery.result import evaluate_formula

        call = "DiscoveryRegressor.predict(X, index)"
        row = self._row(index, call)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if row is None:
            return self.discovery_.predict(X[:, self._columns])
        return evaluate_formula(self.equations_.loc[row, "sympy_format"], X, self._names)

    def sympy(self, index: int | None = None) -> sympy.Expr:
        """The selected formula (or row ``index``) as SymPy, in the training columns' names."""
        return self._expression(index, "DiscoveryRegressor.sympy(index)")

    def latex(self, index: int | None = None, precision: int = 3) -> str:
        """LaTeX of the selected formula (or row ``index``) with ``precision`` significant digits."""
        from discovery.symbolic import latex

        return latex(self._expression(index, "DiscoveryRegressor.latex(index)"), precision=precision)

    def pytorch(self, index: int | None = None):
        """The selected formula (or row ``index``) as a float64 ``torch.nn.Module`` of ``X``
        (all ``n_features_in_`` columns); its float constants are trainable parameters.

        Examples
        --------
        >>> model.pytorch()(torch.as_tensor(X))  # doctest: +SKIP
        """
        from discovery.export import to_torch

        return to_torch(self._expression(index, "DiscoveryRegressor.pytorch(index)"), self._names)

    def numpy(self, index: int | None = None):
        """The selected formula (or row ``index``) as a NumPy function ``f(X) -> (n,)``."""
        from discovery.export import to_numpy

        return to_numpy(self._expression(index, "DiscoveryRegressor.numpy(index)"), self._names)

    def jax(self, index: int | None = None) -> dict:
        """The selected formula (or row ``index``) as ``{"callable": f, "parameters": p}`` with
        ``f(X, p)``, as PySR exports it; needs JAX (``pip install discovery[jax]``)."""
        from discovery.export import to_jax

        return to_jax(self._expression(index, "DiscoveryRegressor.jax(index)"), self._names)

    def latex_table(self, indices=None, precision: int = 3, columns=("equation", "complexity", "loss", "score")) -> str:
        """A booktabs LaTeX table of the candidates (rows ``indices``, default all), like PySR's.

        Needs ``\\usepackage{booktabs}``; equations are in math mode, numbers with ``precision``
        significant digits.
        """
        from discovery.symbolic import latex

        check_is_fitted(self, "discovery_")
        table = self.equations_
        rows = list(table.index) if indices is None else [self._row(i, "DiscoveryRegressor.latex_table(indices)")
                                                           for i in indices]
        known = {"equation", "complexity", "loss", "score", "r2", "source", "space", "order"}
        if not set(columns) <= known:
            raise ValueError(f"DiscoveryRegressor.latex_table(columns={list(columns)!r}): pass columns among "
                             f"{sorted(known)}")
        heads = {"equation": "Equation", "complexity": "Complexity", "loss": "Loss", "score": "Score",
                 "r2": "$R^2$", "source": "Source", "space": "Space", "order": "Order"}
        lines = [r"\begin{table}[h]", r"\begin{center}", r"\begin{tabular}{@{}" + "c" * len(columns) + "@{}}",
                 r"\toprule", " & ".join(heads[c] for c in columns) + r" \\", r"\midrule"]
        for r in rows:
            cells = []
            for c in columns:
                v = table.loc[r, c]
                if c == "equation":
                    cells.append(f"$y = {latex(table.loc[r, 'sympy_format'], precision=precision)}$")
                elif c in ("loss", "score", "r2"):
                    cells.append(_latex_number(v, precision))
                elif c in ("complexity", "order"):
                    cells.append("--" if pd.isna(v) else str(int(v)))
                else:
                    cells.append(str(v))
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{center}", r"\end{table}"]
        return "\n".join(lines)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags


# --------------------------------------------------------------------------------------------- warm start
def _warm_remerge(previous: dict | None, key: tuple, order, weights) -> tuple:
    """``(Discovery re-merged at `order` from the previous fit's local polynomials, note)``, or
    ``(None, why the networks must be trained again)``.

    The re-merge repeats what ``discover`` does after training, per order: the same merge on
    the same rows with the same seed, and the same choice among the orders. So it is exactly
    the result of a fresh fit, provided the fresh fit would train the same networks on the
    same rows and expand them at the same points, which the checks below make sure of.
    """
    from discovery.fit import fit_ensemble
    from discovery.pipeline import MAX_ORDER, _orders, _warnings, discover
    from discovery.spaces import choose
    from discovery.stages import Candidate, judged_rows, merge_orders
    from discovery.trust import split_rows

    if previous is None:
        return None, "trained from scratch (no previous fit)"
    if previous["key"] != key:
        return None, "trained from scratch (the data, weights or settings other than order changed)"
    d = previous["discovery"]
    orders = _orders(order, "DiscoveryRegressor.fit(X, y)")
    old_orders = _orders(d.settings["order"], "DiscoveryRegressor.fit(X, y)")
    local = d.local
    if d.crosscheck is not None or d.settings.get("crosscheck", "off") != "off":
        return None, "trained from scratch (a cross-check would have to search again)"
    spaces = sorted(set(d.candidates["space"]))
    if len(spaces) != 1:
        return None, "trained from scratch (both spaces were trained; only the chosen one's polynomials are kept)"
    if d.settings["space"] == "auto" and min(max(orders), MAX_ORDER) != min(max(old_orders), MAX_ORDER):
        # discover's space screen uses a polynomial of the highest order: it could pick another space
        return None, "trained from scratch (space='auto' is screened at the highest order, which changed)"
    if max(orders) > int(local.monomials.sum(axis=1).max()):
        return None, f"trained from scratch (the stored expansion has order {int(local.monomials.sum(axis=1).max())} < {max(orders)})"
    params = inspect.signature(discover).parameters
    val_fraction = d.settings["fit"].get("val_fraction", inspect.signature(fit_ensemble).parameters["val_fraction"].default)
    rows = split_rows(len(d.y), params["test_fraction"].default, val_fraction, d.settings["seed"])
    if not (np.array_equal(rows.fit, d.fit_index) and np.array_equal(rows.test, d.test_index)):
        return None, "trained from scratch (the stored row sets do not match discover's split)"

    start = time.perf_counter()
    sp, seed, fitted = local.space, d.settings["seed"], d.fitted
    X_fit, y_fit = d.X[d.fit_index], d.y[d.fit_index]
    fit_weights = None if weights is None else weights[d.fit_index]
    candidates = [{**Candidate(sp, k, merged).row(), "merged": merged}  # as discover merges each order
                  for k, merged in merge_orders(local, orders, X_fit, y_fit, d.names, fitted.val_index, seed,
                                                fit_weights)]
    best, space_reason, order_reason = choose(candidates, [sp], d.space_reason, orders, y_fit)
    table = pd.DataFrame([{k: v for k, v in c.items() if k != "merged"} for c in candidates])
    table["chosen"] = [c is best for c in candidates]
    table["sympy_format"] = [c["merged"].expression for c in candidates]
    seconds = time.perf_counter() - start
    note = (f"warm start: re-merged at order {order} from the stored order-{int(local.monomials.sum(axis=1).max())} local polynomials "
            "(networks not retrained)")
    fields = {f.name for f in dataclasses.fields(d)}
    # a decomposition belongs to the formula it was run for: the re-merged one is judged afresh below
    later = {k: v for k, v in (("decomposition", None), ("chosen", "expansion"), ("chosen_reason", "")) if k in fields}
    notes = [n for n in d.notes if not n.startswith("decomposition")]
    new = dataclasses.replace(
        d, expansion_formula=best["merged"].expression, merged=best["merged"], space_reason=space_reason,
        order=int(best["order"]), order_reason=order_reason, candidates=table,
        structure=d.structure if max(orders) >= 2 else None,  # discover tests structure from order 2
        timings={f"merge {sp}": seconds, "total": seconds}, notes=[*notes, note],
        settings={**d.settings, "order": order}, warnings=[], **later,
    )
    judged = judged_rows(rows, seed)
    judged = judged, new.predict_network(new.X[judged])
    if _decomposition_due(new, judged):
        return None, ("trained from scratch (at this order the formula only approximates the networks, so "
                      "discover would decompose)")
    new.warnings.extend(_warnings(new, rows, judged, None, None))
    return new, note


def _decomposition_due(d, judged) -> bool:
    """Whether ``discover`` would run its decomposition on this result's formula (``decompose``
    "on", or "auto" where the formula only approximates the networks on the validation rows of
    ``judged``, given with the networks' prediction there)."""
    mode = d.settings.get("decompose", "off")
    if mode in ("off", False):
        return False
    if mode != "auto":
        return True
    from discovery.result import evaluate_formula
    from discovery.stages import approximates

    val, network_val = judged
    return approximates(d.y[val], evaluate_formula(d.expansion_formula, d.X[val], d.names), network_val) is not None


# --------------------------------------------------------------------------------------------- the table
def _plain(expr: sympy.Basic) -> sympy.Basic:
    """``expr`` over plain ``Symbol(name)``: the symbols users build, whatever assumptions the
    pipeline attached."""
    expr = sympy.sympify(expr)
    return expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols})


class _NumpyFormula:
    """``lambda_format``: a NumPy function of ``X``, compiled on first call and picklable (the
    compiled closures are dropped on pickling)."""

    def __init__(self, expr: sympy.Expr, names: list[str]):
        self.expression, self.names, self._f = expr, names, None

    def __call__(self, X) -> np.ndarray:
        from discovery.export import to_numpy

        if self._f is None:
            self._f = to_numpy(self.expression, self.names)
        return self._f(X)

    def __getstate__(self):
        return {"expression": self.expression, "names": self.names, "_f": None}

    def __repr__(self) -> str:
        return f"lambda_format({self.expression})"


def _equations(d, names: list[str]) -> pd.DataFrame:
    """Every candidate of ``d`` scored on the validation rows, PySR's columns and Pareto score."""
    from discovery.crosscheck.base import complexity
    from discovery.result import evaluate_formula
    from discovery.symbolic import text, tidy

    entries = []  # (plain expression, source, space, order)
    c = d.candidates
    for _, r in c.iterrows():
        expr = r["sympy_format"] if "sympy_format" in c.columns else sympy.sympify(r["formula"])
        entries.append((_plain(expr), "expansion", r["space"], int(r["order"])))
    if d.crosscheck is not None:
        for expr in d.crosscheck.candidates["sympy_format"]:
            entries.append((_plain(expr), d.crosscheck.engine, "raw", np.nan))
    recommended = _plain(d.formula)
    if d.recommended == "expansion":  # the candidate the pipeline chose; d.formula is its formula
        chosen = [bool(v) for v in c["chosen"]] + [False] * (len(entries) - len(c))
    else:
        chosen = [e[1] == d.recommended and e[0] == recommended for e in entries]
    if not any(chosen):  # e.g. a guided engine's formula assembled from parts: list it too
        entries.append((recommended, d.recommended, "raw", np.nan))
        chosen.append(True)

    val = d.fit_index[d.fitted.val_index] if len(d.fitted.val_index) else d.fit_index
    X, y = d.X[val], d.y[val]
    exprs = [tidy(e[0]) for e in entries]
    loss, r2 = [], []
    for e in exprs:
        pred = evaluate_formula(e, X, d.names)
        if not np.all(np.isfinite(pred)):
            loss.append(math.inf)
            r2.append(-math.inf)
            continue
        loss.append(float(np.mean((pred - y) ** 2)))
        r2.append(float(r2_score(y, pred)) if len(y) > 1 else math.nan)
    table = pd.DataFrame({
        "complexity": [complexity(e) for e in exprs],
        "loss": loss,
        "score": np.nan,
        "equation": [text(e, precision=6) for e in exprs],
        "sympy_format": exprs,
        "lambda_format": [_NumpyFormula(e, names) for e in exprs],
        "r2": r2,
        "source": [e[1] for e in entries],
        "space": [e[2] for e in entries],
        "order": pd.array([e[3] for e in entries], dtype="Int64"),
        "pareto": False,
        "chosen": chosen,
    })
    floor = _EXACT * float(np.var(y)) if len(y) > 1 and np.var(y) > 0 else np.finfo(np.float64).tiny
    front, score = pareto_scores(table["complexity"].to_numpy(), table["loss"].to_numpy(), floor)
    table.loc[front, "pareto"] = True
    table.loc[front, "score"] = score
    table.attrs["loss_floor"] = floor
    return table


def pareto_scores(complexity: np.ndarray, loss: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows on the Pareto front of loss against complexity (simplest first) and PySR's score of
    each, ``-(log loss_i - log loss_{i-1}) / (complexity_i - complexity_{i-1})``, 0 for the first.

    Losses are floored at ``floor`` (round-off), so a formula is on the front only when its
    loss is below that of every simpler one by more than round-off.

    Examples
    --------
    >>> front, score = pareto_scores(np.array([3, 1, 5, 5]), np.array([0.1, 1.0, 0.2, 0.01]), 1e-12)
    >>> front.tolist(), np.round(score, 3).tolist()
    ([1, 0, 3], [0.0, 1.151, 1.151])
    """
    eff = np.maximum(np.asarray(loss, dtype=np.float64), floor)
    front: list[int] = []
    for i in np.lexsort((eff, complexity)):
        if not np.isfinite(eff[i]) or (front and eff[i] >= eff[front[-1]]):
            continue
        if front and complexity[i] == complexity[front[-1]]:
            continue
        front.append(int(i))
    idx = np.asarray(front, dtype=np.int64)
    score = np.zeros(len(idx))
    if len(idx) > 1:
        score[1:] = -np.diff(np.log(eff[idx])) / np.diff(np.asarray(complexity, dtype=np.float64)[idx])
    return idx, score


def select(table: pd.DataFrame, model_selection: str) -> int:
    """Row label that PySR's ``model_selection`` picks from an ``equations_`` table: "accuracy"
    the lowest loss, "score" the highest score, "best" the highest score among losses within
    1.5x the lowest. Losses under ``table.attrs["loss_floor"]`` (round-off) count as equal."""
    front = table[table["pareto"]]
    if front.empty:
        raise ValueError(f"select(table, {model_selection!r}): no candidate has a finite validation loss")
    # every Pareto entry has a lower loss than the simpler ones: the last is the most accurate
    if model_selection == "accuracy":
        return int(front.index[-1])
    if model_selection == "score":
        return int(front["score"].idxmax())
    eff = np.maximum(front["loss"].to_numpy(), table.attrs.get("loss_floor", 0.0))
    ok = front[eff <= _BEST_LOSS_FACTOR * eff[-1]]
    return int(ok["score"].idxmax())


def _latex_number(v: float, precision: int) -> str:
    if v is None or pd.isna(v):
        return "--"
    if not math.isfinite(v):
        return r"\infty" if v > 0 else r"-\infty"
    s = f"{v:.{precision}g}"
    if "e" in s:
        mantissa, exp = s.split("e")
        return f"${mantissa} \\cdot 10^{{{int(exp)}}}$"
    return s


def _looks_standardised(X: np.ndarray) -> bool:
    """Every column has mean 0 and standard deviation 1 (either ``ddof``) to rounding: the mark
    a scaler leaves, which raw measurements essentially never carry by chance."""
    if X.shape[0] < 3:
        return False
    tol = 1e-6
    mean = X.mean(axis=0)
    std0, std1 = X.std(axis=0), X.std(axis=0, ddof=1)
    unit = (np.abs(std0 - 1) <= tol) | (np.abs(std1 - 1) <= tol)
    return bool(np.all(np.abs(mean) <= tol) and np.all(unit))
