"""Steps a node of :mod:`discovery.decompose` may take, from its structure tests, and their order.

A step is ``(margin, kind, evidence, argument)``: ``margin`` is the test's statistic over its
threshold (smaller is clearer), ``kind`` one of ``unused``, ``additive``, ``multiplicative``,
``symmetry``, ``homogeneity`` and ``affine``, ``evidence`` the sentence the tree shows, and
``argument`` what :func:`discovery.decompose` needs to apply it.
"""

from __future__ import annotations

import numpy as np

from discovery.errors import ExpansionError
from discovery.interpret.structure import affine_variables
from discovery.interpret.symmetry import homogeneity

__all__ = ["affine_steps", "homogeneity_steps", "labels", "order_steps", "split_steps"]


def labels(cols) -> list[str]:
    """A node's columns (SymPy formulas in the user's names) as the strings its tree shows."""
    return [str(c) for c in cols]


def order_steps(steps: list, n: int) -> list:
    """Steps of a node of ``n`` inputs, the one that leaves least to solve first: by the inputs
    of its largest sub-problem; then whether that sub-problem needs networks of its own (a
    symmetry, homogeneity or affine step on three or more inputs: its new columns are not the
    parent's, so a smaller ensemble is trained, where a split's pieces read the parent's
    networks on a slice); then how many sub-problems it makes; then its margin (statistic over
    threshold). On two inputs a dependence on ``a/b`` leaves one piece of one input where an
    additive split leaves two, and where both hold the symmetry is the sharper statement."""
    def reduction(step):
        kind, arg = step[1], step[3]
        if kind == "unused":
            return len(arg), 0, 1
        if kind in ("additive", "multiplicative"):
            return max(len(arg[0]), len(arg[1])), 0, 2
        return n - 1, int(n - 1 > 1), 2 if kind == "affine" else 1

    return sorted(steps, key=lambda step: (*reduction(step), step[0]))


def homogeneity_steps(e, fit, train: np.ndarray, cols) -> list:
    """Where no other test fires: ``f`` homogeneous of degree ``k`` in every input gives
    ``f = x_j^k g(x_i / x_j)``, one input fewer. Each ``x_j`` without zeros or sign change can
    be the scale. Scales whose ratios stay below 1 come first (``v/c`` rather than ``c/v``:
    series and polynomials in a ratio below 1 converge, and the leaf's families read them), then
    the steadiest (smallest coefficient of variation on the training rows), whose ratios stay
    best conditioned."""
    if len(cols) < 2:
        return []
    try:
        r = homogeneity(e, units=fit, names=labels(cols))
    except ExpansionError:
        return []
    if not r.holds:
        return []
    out = []
    for j in range(len(cols)):
        x = train[:, j]
        if np.all(x > 0) or np.all(x < 0):
            spread = float(np.std(x) / abs(np.mean(x)))
            above = sum(float(np.median(np.abs(train[:, i] / x))) > 1 for i in range(len(cols)) if i != j)
            # one test for every scale: the tie-break below the margin orders them (see order_steps)
            out.append((float(r.statistic) / r.threshold + 1e-6 * (above + min(spread, 0.999)), "homogeneity",
                        f"{r.detail['h']} (Euler identity residual |t| {float(r.statistic):.2f} < {r.threshold:g}, "
                        f"fitted degree {r.detail['fitted_degree']:.3f}): scale {cols[j]} (coefficient of variation "
                        f"{spread:.2f}, {above} ratios above 1)", (j, r.detail["degree"])))
    return out


def affine_steps(e, fit, cols) -> list:
    """Where no separability or symmetry fires: ``f`` affine in ``x_i`` (``d2f/dx_i^2 = 0``)
    gives ``f = A(rest) + x_i B(rest)``, two pieces of one input fewer; clearest first."""
    if len(cols) < 2:
        return []
    r = affine_variables(e, units=fit)
    return sorted((float(r.statistic[i]) / r.threshold, "affine",
                   f"affine in {cols[i]}: d2f/d{cols[i]}^2 median |t| {float(r.statistic[i]):.2f} < {r.threshold:g}, "
                   f"so f = A + {cols[i]}*B with B = df/d{cols[i]} from the networks' exact gradient", i)
                  for i in r.groups[0])


def split_steps(kind, report):
    """The additive or multiplicative split ``report`` found (first group | the rest), or none;
    its margin is the largest cross statistic between the two blocks over the threshold."""
    if not report.separable:
        return []
    A = report.groups[0]
    B = [i for g in report.groups[1:] for i in g]
    cross = np.nan_to_num(report.statistic[np.ix_(A, B)], nan=0.0)
    margin = float(cross.max()) / report.threshold
    return [(margin, kind, f"{kind} split {A} | {B}: largest cross statistic {float(cross.max()):.2f} < "
             f"{report.threshold:g}", (A, B))]
