"""Structure of a learned function from exact derivatives: separability and unused inputs.

Symmetries (``f`` depends on ``x_i - x_j``, ``x_i / x_j``, ...) and transforms that make ``f``
polynomial live in :mod:`discovery.interpret.symmetry`; both modules share the record and the
statistics defined here.

Every test reads an :class:`~discovery.engine.Expansion` at many reference points whose outputs
are the members of an ensemble (or a list of expansions, one per member, at the same points).
A property is accepted when its derivative statistic is indistinguishable from zero next to
the members' disagreement:

* additive separability of ``x_i`` and ``x_j``: ``d2f / dx_i dx_j = 0`` at every point;
* multiplicative separability: the same for ``log |f|`` (its Hessian is
  ``f_ij / f - f_i f_j / f^2``, the degree-2 part of the logarithm of the truncated series);
* no influence of ``x_i``: ``df / dx_i = 0`` at every point (judged by the pooled ratio of the
  ensemble-mean gradient to its standard error, see :func:`unused_variables`);
* ``f`` affine in ``x_i`` (``f = A(x_rest) + x_i B(x_rest)``): ``d2f / dx_i^2 = 0`` at every
  point (:func:`affine_variables`).

For a derivative ``D`` the statistic is ``median_b |mean_m D| / (std_m D / sqrt(M))`` over
points ``b`` and ``M`` members ``m``: the member mean over its standard error (a median
``|t|``). It is zero-like when it stays below ``threshold`` (default 3). A single model has
no spread; then the statistic is relative to the size of its peers (``rms`` of all second
derivatives, or of the gradient) and ``threshold`` is read as a fraction (default ``0.02``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from discovery.errors import ExpansionError

__all__ = [
    "StructureReport",
    "original_units",
    "additive_separability",
    "multiplicative_separability",
    "unused_variables",
    "affine_variables",
    "log_hessian",
]


@dataclass
class StructureReport:
    """Outcome of a structure test.

    Attributes
    ----------
    kind : str
        ``"additive"``, ``"multiplicative"``, ``"influence"``, ``"affine"``, or (from
        :mod:`discovery.interpret.symmetry`) ``"symmetry"``, ``"depends_through"``, ``"transform"``.
    statistic : numpy.ndarray
        ``(p, p)`` pairwise statistics (separability; the diagonal is NaN) or ``(p,)`` per input.
    threshold : float
        Values below it count as zero.
    groups : list of list of int
        Separability: inputs that must stay together (one group means no split). Influence:
        ``[[inputs with influence], [inputs without]]``. Affine: ``[[affine], [not affine]]``.
    members : int
        Ensemble members the spread came from (1: relative statistic).
    points_used : int
        Reference points that entered the statistic.
    holds : bool or None
        Verdict of a yes/no test (symmetries, transforms); ``None`` for the grouping tests.
    variables : list of int
        Inputs a yes/no test concerns.
    detail : dict
        Test-specific findings (e.g. the median relative identity residual, the degrees found).
    """

    kind: str
    statistic: np.ndarray
    threshold: float
    groups: list = field(default_factory=list)
    members: int = 1
    points_used: int = 0
    holds: bool | None = None
    variables: list = field(default_factory=list)
    detail: dict = field(default_factory=dict)

    @property
    def separable(self) -> bool:
        """True when the inputs split into more than one group."""
        return self.kind not in ("influence", "affine") and len(self.groups) > 1

    def __repr__(self) -> str:
        what = f"holds={self.holds}, variables={self.variables}" if self.holds is not None else f"groups={self.groups}"
        return (f"StructureReport(kind={self.kind!r}, {what}, threshold={self.threshold:g}, "
                f"members={self.members}, points={self.points_used})")


def _stack(expansions, call: str, min_order: int = 2):
    """Centres ``(B, p)``, coefficients ``(B, T, M)`` of every member, monomials and order."""
    items = list(expansions) if isinstance(expansions, (list, tuple)) else [expansions]
    if not items:
        raise ExpansionError(f"{call}: pass an Expansion (outputs = ensemble members) or a list of them")
    first = items[0]
    for e in items:
        if not hasattr(e, "monomials") or not hasattr(e, "coefficients"):
            raise ExpansionError(f"{call}: got {type(e).__name__}; pass expand(model, points, order=2) results")
        if e.order < min_order:
            raise ExpansionError(f"{call}: the expansion has order {e.order}; expand with order >= {min_order}")
        if e.center.shape != first.center.shape or not torch.equal(e.center, first.center):
            raise ExpansionError(f"{call}: the expansions are at different reference points; expand every "
                                 "member at the same points")
    coeffs = torch.cat([e.coefficients for e in items], dim=2).detach().cpu().to(torch.float64)
    return first.center.detach().cpu().to(torch.float64), coeffs, np.asarray(first.monomials), first.order


def original_units(expansion, units=None, *, call: str = "original_units(expansion)", min_order: int = 1):
    """Centres and Taylor coefficients of every member in the table's units.

    The ensemble of :func:`discovery.fit.fit_ensemble` sees ``z = (x - x_mean) / x_scale`` and
    predicts ``(y - y_mean) / y_scale``; the exact change of variables is
    ``c'_a = y_scale c_a / prod_i x_scale_i^a_i`` (plus ``y_mean`` on the constant term).

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        Outputs (or list entries) are ensemble members.
    units : object with ``x_mean``, ``x_scale``, ``y_mean``, ``y_scale``, optional
        Usually the :class:`~discovery.fit.FittedEnsemble`; ``None`` keeps the model's units.

    Returns
    -------
    center : torch.Tensor
        ``(B, p)`` reference points in original units.
    coefficients : torch.Tensor
        ``(B, T, M)`` float64.
    monomials : numpy.ndarray
        ``(T, p)`` exponents.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from types import SimpleNamespace
    >>> from discovery.engine import expand
    >>> net = torch.nn.Linear(1, 1, dtype=torch.float64)
    >>> units = SimpleNamespace(x_mean=np.array([10.0]), x_scale=np.array([2.0]), y_mean=1.0, y_scale=4.0)
    >>> x0, c, _ = original_units(expand(net, [[0.0]], 1), units)
    >>> float(x0[0, 0]), bool(torch.isclose(c[0, 1, 0], 2 * net.weight[0, 0]))
    (10.0, True)
    """
    center, coeffs, monomials, _ = _stack(expansion, call, min_order)
    if units is None:
        return center, coeffs, monomials
    x_mean = torch.as_tensor(np.asarray(units.x_mean, dtype=np.float64))
    x_scale = torch.as_tensor(np.asarray(units.x_scale, dtype=np.float64))
    powers = torch.as_tensor(monomials, dtype=torch.float64)
    factor = float(units.y_scale) / torch.prod(x_scale.unsqueeze(0) ** powers, dim=1)
    coeffs = coeffs * factor.view(1, -1, 1)
    coeffs[:, 0, :] += float(units.y_mean)
    return x_mean + x_scale * center, coeffs, monomials


def _derivatives(expansions, call: str, units=None):
    """Values ``(B, M)``, gradients ``(B, p, M)`` and Hessians ``(B, p, p, M)`` of every member."""
    _, coeffs, monomials = original_units(expansions, units, call=call, min_order=2)
    p = monomials.shape[1]
    index = {tuple(int(v) for v in row): k for k, row in enumerate(monomials)}
    value = coeffs[:, 0, :]
    grad = torch.stack([coeffs[:, index[tuple(int(i == a) for a in range(p))], :] for i in range(p)], dim=1)
    hess = torch.zeros(coeffs.shape[0], p, p, coeffs.shape[2], dtype=torch.float64)
    for i in range(p):
        for j in range(p):
            alpha = tuple(int(i == a) + int(j == a) for a in range(p))
            hess[:, i, j] = coeffs[:, index[alpha], :] * (2.0 if i == j else 1.0)
    return value, grad, hess


def _signal_to_spread(d: torch.Tensor, peers: torch.Tensor) -> np.ndarray:
    """``d`` (B, ..., M): median over points of ``|member mean| / standard error``.

    The standard error of the members' mean is ``spread / sqrt(M)``, so the statistic is a
    median ``|t|``: about 0.7-0.8 where ``d`` is zero and the members only scatter around it.
    The median keeps a few points where ``f`` is nearly singular (``log |f|`` near a zero of
    ``f``) or the members disagree wildly from deciding the verdict.
    """
    members = d.shape[-1]
    mean = d.mean(dim=-1)
    if members > 1:
        floor = max(1e-12 * float(peers.pow(2).mean().sqrt()), 1e-300)
        ratio = mean.abs() * members ** 0.5 / d.std(dim=-1).clamp(min=floor)
        return ratio.median(dim=0).values.numpy()
    scale = float(peers.mean(dim=-1).pow(2).mean().sqrt())
    return (mean.pow(2).mean(dim=0).sqrt() / max(scale, 1e-300)).numpy()


def _default_threshold(members: int, threshold):
    return float(threshold) if threshold is not None else (3.0 if members > 1 else 0.02)


def _groups(coupled: np.ndarray) -> list[list[int]]:
    """Connected components of the graph whose edges are the coupled pairs, ordered by their
    smallest input."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(csr_matrix(np.asarray(coupled, dtype=bool)), directed=False)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _pairwise_report(kind, hess, keep, threshold, members) -> StructureReport:
    hess = hess[keep]
    p = hess.shape[1]
    stat = np.full((p, p), np.nan)
    off = [(i, j) for i in range(p) for j in range(p) if i != j]
    if off:
        values = _signal_to_spread(torch.stack([hess[:, i, j] for i, j in off], dim=1), hess)
        for (i, j), v in zip(off, values):
            stat[i, j] = v
    thr = _default_threshold(members, threshold)
    coupled = np.nan_to_num(stat, nan=0.0) >= thr
    coupled = coupled | coupled.T
    return StructureReport(kind, stat, thr, _groups(coupled), members, int(keep.sum()))


def additive_separability(expansion, *, threshold: float | None = None) -> StructureReport:
    """Which inputs can be split into additive parts ``f = g(x_A) + h(x_B)``.

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        Order >= 2, at many reference points; outputs (or list entries) are ensemble members.
    threshold : float, optional
        Median ``|t|`` (member mean over its standard error) under which a mixed partial
        counts as zero (default 3; for a single model, a fraction of the rms second
        derivative, default 0.02).

    Returns
    -------
    StructureReport
        ``groups`` are the additive blocks.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return (x[:, :1] ** 2 + torch.sin(x[:, 1:2]))
    >>> additive_separability(expand(F(), torch.rand(20, 2, dtype=torch.float64), 2)).groups
    [[0], [1]]
    """
    _, _, hess = _derivatives(expansion, "additive_separability(expansion)")
    keep = torch.ones(hess.shape[0], dtype=torch.bool)
    return _pairwise_report("additive", hess, keep, threshold, hess.shape[-1])


def log_hessian(value: torch.Tensor, grad: torch.Tensor, hess: torch.Tensor) -> torch.Tensor:
    """Hessian of ``log |f|``: ``f_ij / f - f_i f_j / f^2`` (exact, from the series of ``f``)."""
    v = value.unsqueeze(1).unsqueeze(1)
    return hess / v - grad.unsqueeze(2) * grad.unsqueeze(1) / (v * v)


def multiplicative_separability(expansion, *, output_offset: float = 0.0, output_scale: float = 1.0,
                                threshold: float | None = None, min_relative_value: float = 0.05,
                                units=None) -> StructureReport:
    """Which inputs split into factors ``f = g(x_A) * h(x_B)``: additive separability of ``log |f|``.

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        As for :func:`additive_separability`.
    output_offset, output_scale : float
        The modelled quantity is ``output_offset + output_scale * network`` (pass the target
        standardisation: a shift breaks products, so it must be undone first).
    threshold : float, optional
        As for :func:`additive_separability`.
    min_relative_value : float
        Points where ``|f|`` is below this fraction of its rms (near a zero of ``f``, where
        ``log |f|`` is singular) are left out.
    units : FittedEnsemble or similar, optional
        Reads the expansion in the table's units (``x_mean``, ``x_scale``, ``y_mean``,
        ``y_scale``); replaces ``output_offset`` / ``output_scale``.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x[:, :1] * torch.exp(-x[:, 1:2])
    >>> points = torch.rand(20, 2, dtype=torch.float64) + 0.5
    >>> multiplicative_separability(expand(F(), points, 2)).groups
    [[0], [1]]
    """
    call = "multiplicative_separability(expansion)"
    value, grad, hess = _derivatives(expansion, call, units)
    value = output_offset + output_scale * value
    grad, hess = output_scale * grad, output_scale * hess
    mean = value.mean(dim=1)
    keep = mean.abs() >= min_relative_value * float(mean.pow(2).mean().sqrt())
    # every member must agree on the sign, or log |f| is not defined for the ensemble
    keep &= (torch.sign(value) == torch.sign(mean).unsqueeze(1)).all(dim=1)
    if int(keep.sum()) < 2:
        raise ExpansionError(f"{call}: f is zero or changes sign at almost every reference point; "
                             "pass output_offset/output_scale so the expansion models the raw target, "
                             "or choose reference points where it does not vanish")
    return _pairwise_report("multiplicative", log_hessian(value, grad, hess), keep, threshold, value.shape[1])


def unused_variables(expansion, *, threshold: float | None = None) -> StructureReport:
    """Inputs the function does not depend on: ``df / dx_i = 0`` at every reference point.

    With members, the statistic of input ``i`` is the pooled z-score of the ensemble-mean
    gradient, ``sqrt(mean_b g_ib^2 / mean_b (s_ib^2 / M))`` (``g`` the member mean, ``s`` the
    member standard deviation at point ``b``, ``M`` members): about 1 for an input the members
    only disagree about, large for an input with influence. Pooling over points (rather than a
    median of per-point ratios) keeps an input whose gradient vanishes on part of the domain
    (``d(x1 x2)/dx1 = x2``) from being declared unused, and dividing by the standard error
    rather than the spread keeps a few noisy columns from hiding everything (with 17 noise
    columns the old per-point ratio called every input unused). A single model has no spread;
    then the statistic is the rms gradient relative to the largest input's (in standardised
    units) and ``threshold`` is a fraction (default 0.02).

    Returns
    -------
    StructureReport
        ``statistic`` per input; ``groups = [used, unused]``.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.sin(x[:, :1]) + 0 * x[:, 1:2]
    >>> unused_variables(expand(F(), torch.rand(20, 2, dtype=torch.float64), 2)).groups
    [[0], [1]]
    """
    _, grad, _ = _derivatives(expansion, "unused_variables(expansion)")
    members = grad.shape[-1]
    mean = grad.mean(dim=-1)
    signal = mean.pow(2).mean(dim=0).sqrt()
    if members > 1:
        standard_error = (grad.var(dim=-1) / members).mean(dim=0).sqrt()
        floor = max(1e-12 * float(signal.max()), 1e-300)
        stat = (signal / standard_error.clamp(min=floor)).numpy()
    else:  # relative to the largest input's influence, not the average
        stat = (signal / signal.max().clamp(min=1e-300)).numpy()
    thr = _default_threshold(members, threshold)
    used = [i for i in range(grad.shape[1]) if stat[i] >= thr]
    unused = [i for i in range(grad.shape[1]) if stat[i] < thr]
    return StructureReport("influence", stat, thr, [used, unused], members, grad.shape[0])


def affine_variables(expansion, *, threshold: float | None = None, units=None) -> StructureReport:
    """Inputs in which ``f`` is affine: ``f = A(x_rest) + x_i B(x_rest)``, i.e. ``d2f / dx_i^2 = 0``
    at every reference point.

    The statistic of input ``i`` is the median ``|t|`` of ``d2f / dx_i^2`` (member mean over its
    standard error), as for the mixed partials of :func:`additive_separability`. ``B`` is then
    ``df / dx_i``, which the ensemble's exact gradient gives wherever ``A`` and ``B`` are not
    separable in another way (``x_i sin(a) + cos(a)``). An input without influence is affine too;
    :func:`unused_variables` says which.

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        Order >= 2, at many reference points; outputs (or list entries) are ensemble members.
    threshold : float, optional
        As for :func:`additive_separability`.
    units : FittedEnsemble or similar, optional
        Reads the expansion in the table's units (the verdict does not depend on it).

    Returns
    -------
    StructureReport
        ``statistic`` per input; ``groups = [affine, not affine]``.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.sin(x[:, :1]) - x[:, 1:2] * torch.cos(x[:, :1])
    >>> affine_variables(expand(F(), torch.rand(20, 2, dtype=torch.float64), 2)).groups
    [[1], [0]]
    """
    _, _, hess = _derivatives(expansion, "affine_variables(expansion)", units)
    p, members = hess.shape[1], hess.shape[-1]
    diagonal = torch.stack([hess[:, i, i] for i in range(p)], dim=1)
    stat = _signal_to_spread(diagonal, hess)
    thr = _default_threshold(members, threshold)
    affine = [i for i in range(p) if stat[i] < thr]
    return StructureReport("affine", stat, thr, [affine, [i for i in range(p) if i not in affine]], members,
                           hess.shape[0])
