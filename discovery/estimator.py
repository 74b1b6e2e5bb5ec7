"""``DiscoveryRegressor``: :func:`discovery.discover` as a scikit-learn estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import sympy
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from discovery.errors import DiscoveryWarning

__all__ = ["DiscoveryRegressor"]


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
    device : str, default "auto"
    random_state : int, RandomState or None
        Seed of everything random in ``fit``.
    progress : bool, default False

    Attributes
    ----------
    discovery_ : Discovery
        The full result (terms, local polynomials, report, ...).
    formula_ : sympy.Expr
        The recommended formula in ``feature_names_in_`` (or ``x0, x1, ...``).
    equations_ : pandas.DataFrame
        Every (space, order) candidate with ``complexity``, ``loss`` (validation MSE), ``score``
        and ``equation``, like PySR's table.
    n_features_in_, feature_names_in_

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
    ``"temp (°C)"``); see :mod:`discovery.symbolic` for how they print in LaTeX.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    >>> model = DiscoveryRegressor(order=2, members=2, random_state=0).fit(X, (X[:, 0] ** 2 + X[:, 1]) / 2)
    >>> model.sympy()
    0.5*x0**2 + 0.5*x1
    """

    def __init__(self, order=2, space="auto", members=5, hidden=(32, 32), max_epochs=None, lbfgs_steps=None,
                 reference_points="auto", crosscheck="off", device="auto", random_state=None, progress=False):
        self.order = order
        self.space = space
        self.members = members
        self.hidden = hidden
        self.max_epochs = max_epochs
        self.lbfgs_steps = lbfgs_steps
        self.reference_points = reference_points
        self.crosscheck = crosscheck
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y):
        """Discover a formula for ``y`` from ``X``; returns ``self``."""
        from discovery.pipeline import discover
        from discovery.symbolic import tidy

        X, y = validate_data(self, X, y, y_numeric=True, ensure_min_samples=2, dtype=np.float64)
        if _looks_standardised(X):
            warnings.warn(
                f"DiscoveryRegressor.fit(X, y): every column of X has mean 0 and standard deviation 1, as "
                f"after StandardScaler; the formula will be in these z-scores (named after the columns), "
                f"not in the columns' own units. Fit on the unscaled columns to find the law in their units",
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # data notes (dropped constant columns) stay on discovery_
            self.discovery_ = discover(
                frame, target=target, order=self.order, space=self.space, seed=seed, device=self.device,
                crosscheck=self.crosscheck, members=self.members, reference_points=self.reference_points,
                progress=self.progress, fit_options=fit_options, min_rows=2,
            )
        for w in caught:  # what changes what the formula is worth reaches the caller
            if issubclass(w.category, DiscoveryWarning):
                warnings.warn(w.message, stacklevel=2)
        self._columns = [names.index(n) for n in self.discovery_.names]
        formula = self.discovery_.formula
        self.formula_ = tidy(formula.xreplace({s: sympy.Symbol(s.name) for s in formula.free_symbols}))
        c = self.discovery_.candidates
        self.equations_ = pd.DataFrame({
            "complexity": c["complexity"], "loss": c["val_rmse"] ** 2, "score": c["val_r2"],
            "equation": c["formula"], "space": c["space"], "order": c["order"], "chosen": c["chosen"],
        })
        return self

    def predict(self, X) -> np.ndarray:
        """Evaluate the discovered formula on ``X``."""
        check_is_fitted(self, "discovery_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.discovery_.predict(X[:, self._columns])

    def sympy(self) -> sympy.Expr:
        """The discovered formula as SymPy, in the training columns' names."""
        check_is_fitted(self, "discovery_")
        return self.formula_

    def latex(self, precision: int = 3) -> str:
        """LaTeX of the discovered formula with ``precision`` significant digits."""
        from discovery.symbolic import latex

        check_is_fitted(self, "discovery_")
        return latex(self.formula_, precision=precision)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags


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
