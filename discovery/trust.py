"""What ``discover`` may use each row for, and the warnings that say when an answer should not
be trusted as it stands.

Three disjoint row sets:

- **training** rows fit the networks' weights, the merge's least-squares refit and the
  cross-check engine's search;
- **validation** rows make every choice: which networks are kept, the space, the order, the
  terms, snapping, and the recommendation between the expansion and the cross-check;
- **test** rows are used only for the final reported scores.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from discovery._rows import within
from discovery.crosscheck.base import paired_gain
from discovery.errors import DiscoveryError

__all__ = ["RowSets", "split_rows", "check_fit_rows", "assess", "only_approximates", "R2_TARGET"]

R2_TARGET = 0.999
"""Test R^2 below this is reported: noisy data, or a formula that misses part of the law."""

_Z = 2.0  # a difference counts when it exceeds two standard errors of the paired mean


@dataclass(frozen=True)
class RowSets:
    """Sorted row indices of the table for each use (disjoint).

    Attributes
    ----------
    train, validation, test : numpy.ndarray
        See the module docstring.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    @functools.cached_property
    def fit(self) -> np.ndarray:
        """Training and validation rows together (everything but the test rows), sorted."""
        return np.sort(np.concatenate([self.train, self.validation]))


def split_rows(n: int, test_fraction: float, val_fraction: float, seed: int) -> RowSets:
    """The three row sets of ``discover`` for ``n`` rows.

    Test rows are a seeded ``test_fraction`` of all rows (none below 50 rows). The rest are split
    the way :func:`discovery.fit.fit_ensemble` splits the rows it is given with the same ``seed``
    and ``val_fraction``; ``discover`` checks after every fit that the networks used exactly
    these validation rows.

    Examples
    --------
    >>> r = split_rows(100, 0.2, 0.2, seed=0)
    >>> len(r.train), len(r.validation), len(r.test)
    (64, 16, 20)
    """
    rng = np.random.default_rng(seed)
    n_test = int(round(test_fraction * n)) if n >= 50 else 0
    perm = rng.permutation(n)
    test = np.sort(perm[:n_test])
    fit = np.sort(perm[n_test:])
    # fit_ensemble: rng = default_rng(seed); one draw seeds torch; then a permutation of its rows
    inner = np.random.default_rng(seed)
    inner.integers(2**62)
    order = inner.permutation(len(fit))
    n_val = int(round(len(fit) * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = min(max(n_val, 1), len(fit) - 2)
    return RowSets(train=fit[np.sort(order[n_val:])], validation=fit[np.sort(order[:n_val])], test=test)


def check_fit_rows(rows: RowSets, fitted, call: str) -> None:
    """Raise when the networks trained or validated on rows outside their set (a defect).

    ``discover`` hands its split to :func:`discovery.fit.fit_ensemble`; on a large table the
    networks use a sample of each part, so the check is containment, not equality.
    """
    fit = rows.fit
    n = int(fit[-1]) + 1 if len(fit) else 0
    if not (within(fit[fitted.val_index], rows.validation, n) and within(fit[fitted.train_index], rows.train, n)):
        raise DiscoveryError(
            f"{call}: the networks' training or validation rows left their set; the row sets would overlap"
        )


def only_approximates(y_val: np.ndarray, formula_val: np.ndarray, network_val: np.ndarray) -> bool:
    """The networks fit the validation rows significantly better than the formula (paired test,
    beyond the round-off of exact formulas and networks): the formula misses part of the law."""
    lack, lack_se = paired_gain(y_val, network_val, formula_val)
    floor = 1e-12 * float(np.mean(y_val**2))  # round-off of exact formulas and networks
    return bool(lack > _Z * lack_se and lack > floor)


def assess(
    *,
    y_val: np.ndarray,
    formula_val: np.ndarray,
    network_val: np.ndarray,
    train_mean: float,
    test_r2: float | None,
    approximate_by: str,
    crosscheck_missing: str | None,
    defaulted_target: str | None,
    target: str,
) -> list[str]:
    """Warnings for a result, each a sentence saying what is wrong and what it means.

    Parameters
    ----------
    y_val, formula_val, network_val : arrays
        Target, the delivered formula's values and the networks' mean prediction on the
        validation rows.
    train_mean : float
        Mean target of the training rows (the constant a formula must beat).
    test_r2 : float or None
        R^2 of the delivered formula on the test rows (None when there are none).
    approximate_by : str
        Which formula is delivered (for the message).
    crosscheck_missing : str or None
        Why a requested cross-check did not run.
    defaulted_target : str or None
        The column used as target when none was given.
    target : str
    """
    out: list[str] = []
    if defaulted_target is not None:
        out.append(f"no target given: the last column {defaulted_target!r} was explained; pass target=... "
                   "to explain another column")
    if crosscheck_missing is not None:
        out.append(f"no cross-check ran: {crosscheck_missing}")
    gain, se = paired_gain(y_val, formula_val, np.full_like(y_val, train_mean))
    constant = False
    if gain <= _Z * se:
        constant = True
        out.append(f"the formula is no better than the constant {train_mean:.4g} (the training mean) on the "
                   f"validation rows (it lowers the squared error by {gain:.3g} +- {se:.3g} per row): {target} may "
                   "not depend on these columns, or the data are mostly noise")
    elif test_r2 is not None and not test_r2 > 0:
        constant = True
        out.append(f"the formula is no better than a constant on the test rows (R^2 {test_r2:.3g}), although it is "
                   "on the validation rows: the test rows may not follow the law the other rows follow")
    if not constant and only_approximates(y_val, formula_val, network_val):
        rmse_f = math.sqrt(float(np.mean((y_val - formula_val) ** 2)))
        rmse_n = math.sqrt(float(np.mean((y_val - network_val) ** 2)))
        out.append(f"the {approximate_by} formula only approximates: the trained networks fit the validation rows "
                   f"better (RMSE {rmse_n:.4g} against {rmse_f:.4g}), so the law has a part the formula lacks "
                   "(a Taylor polynomial of a non-polynomial law, or missing terms)")
    if test_r2 is not None and not constant and not test_r2 >= R2_TARGET:
        out.append(f"R^2 on the test rows is {test_r2:.4g}, below {R2_TARGET}: noisy data or a formula that "
                   "misses part of the law")
    if test_r2 is None:
        out.append("no rows were held out for testing (fewer than 50 rows): the reported scores are on rows "
                   "used for fitting and choosing, so they are optimistic")
    return out
