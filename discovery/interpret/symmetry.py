"""Symmetries and polynomial-making transforms of a learned function, from exact derivatives.

Two families of yes/no tests, both read in the table's units (pass ``units=`` the fitted
ensemble, whose standardisation is undone exactly) and judged against the members'
disagreement like the tests of :mod:`discovery.interpret.structure`:

* ``f`` depends on the inputs ``S`` only through ``h(x_S)``: the gradient of ``f`` stays parallel
  to that of ``h``, so every 2x2 minor ``f_a h_b - f_b h_a`` vanishes. The classic pairs are
  ``x_i - x_j`` (``f_i + f_j = 0``), ``x_i + x_j`` (``f_i - f_j = 0``), ``x_i x_j``
  (``x_i f_i - x_j f_j = 0``) and ``x_i / x_j`` (``x_i f_i + x_j f_j = 0``).
* ``T(f)`` (or ``f`` read in ``u = T(x_i)``) is a polynomial of degree ``d``: the Taylor
  coefficients of degree ``> d`` of the composed series vanish. The composition is exact
  (series algebra of the engine), not a finite difference.

With members, the statistic is the median over points of ``|member mean| / standard error`` of
the normalised residual (a minor divided by ``|grad f| |grad h|``, or a coefficient), its
largest value over the residuals of a test; the property holds below ``threshold`` (default 3).
A single model has no spread: the statistic is then the median relative residual and the
threshold a fraction (default 0.02), which suits exact functions.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from discovery.engine import univariate as U
from discovery.engine.series import Algebra
from discovery.errors import ExpansionError
from discovery.interpret.structure import StructureReport, _default_threshold, _signal_to_spread, original_units

__all__ = ["PAIR_KINDS", "TARGET_TRANSFORMS", "INPUT_TRANSFORMS", "depends_through", "pair_symmetry",
           "symmetries", "homogeneity", "polynomial_transforms"]

#: Gradient of ``h(x_i, x_j)`` for the pair symmetries (columns ``i``, ``j``).
PAIR_KINDS: dict[str, Callable[[torch.Tensor, torch.Tensor], tuple]] = {
    "difference": lambda a, b: (torch.ones_like(a), -torch.ones_like(b)),
    "sum": lambda a, b: (torch.ones_like(a), torch.ones_like(b)),
    "product": lambda a, b: (b, a),
    "ratio": lambda a, b: (1.0 / b, -a / (b * b)),
}
_PAIR_TEXT = {"difference": "{} - {}", "sum": "{} + {}", "product": "{} * {}", "ratio": "{} / {}"}


def _relative_floor(x: torch.Tensor, fraction: float = 0.05) -> torch.Tensor:
    """Points where ``|x|`` is at least ``fraction`` of its median (elsewhere a ratio is unstable).

    The median, not the rms: one point where ``h`` blows up (``x_i / x_j`` near ``x_j = 0``) must
    not push every other point under the floor.
    """
    return x.abs() >= fraction * float(x.abs().median())


def _verdict(residual: torch.Tensor, members: int, threshold) -> tuple[float, float]:
    """Statistic and threshold of residuals ``(B, K, M)`` (largest over the ``K`` identities)."""
    thr = _default_threshold(members, threshold)
    if members > 1:
        return float(np.max(_signal_to_spread(residual, residual))), thr
    return float(residual.mean(dim=-1).abs().median(dim=0).values.max()), thr


def depends_through(expansion, variables: Sequence[int], h_gradient: Callable, *, units=None,
                    threshold: float | None = None, label: str = "h") -> StructureReport:
    """Does ``f`` depend on ``x_S`` (``S = variables``) only through one combination ``h(x_S)``?

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        Order >= 1 at many reference points; outputs (or list entries) are ensemble members.
    variables : sequence of int
        The inputs ``S`` (at least two).
    h_gradient : callable
        ``h_gradient(x)`` with ``x`` the ``(B, len(S))`` reference points of those inputs in the
        table's units returns ``(B, len(S))``: the gradient of ``h``.
    units : FittedEnsemble or similar, optional
        Standardisation to undo (``x_mean``, ``x_scale``, ``y_mean``, ``y_scale``).
    threshold : float, optional
        See the module notes.
    label : str
        How ``h`` is named in the report.

    Returns
    -------
    StructureReport
        ``kind="depends_through"``; ``holds``; ``detail`` has ``h`` and the median relative
        residual.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.sin(x[:, :1] ** 2 + x[:, 1:2] ** 2)
    >>> e = expand(F(), torch.rand(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1, 1)
    >>> depends_through(e, [0, 1], lambda x: 2 * x, label="x0**2 + x1**2").holds
    True
    """
    call = f"depends_through(expansion, variables={list(variables)!r}, h_gradient)"
    center, coeffs, monomials = original_units(expansion, units, call=call, min_order=1)
    S = [int(v) for v in variables]
    p = monomials.shape[1]
    if len(S) < 2 or len(set(S)) != len(S) or not all(0 <= v < p for v in S):
        raise ExpansionError(f"{call}: pass at least two distinct inputs among 0..{p - 1}")
    rows = [int(np.flatnonzero((monomials == np.eye(p, dtype=monomials.dtype)[v]).all(axis=1))[0]) for v in S]
    grad = coeffs[:, rows, :]  # (B, k, M): first-order coefficients are the gradient
    hg = torch.as_tensor(np.asarray(h_gradient(center[:, S]), dtype=np.float64))
    if hg.shape != (center.shape[0], len(S)):
        raise ExpansionError(f"{call}: h_gradient returned shape {tuple(hg.shape)}; expected "
                             f"({center.shape[0]}, {len(S)})")
    size = grad.pow(2).sum(dim=1).sqrt() * hg.pow(2).sum(dim=1, keepdim=True).sqrt()  # (B, M)
    keep = _relative_floor(grad.pow(2).sum(dim=1).sqrt().mean(dim=-1)) & torch.isfinite(hg).all(dim=1)
    keep &= _relative_floor(hg.pow(2).sum(dim=1).sqrt())
    if int(keep.sum()) < 2:
        raise ExpansionError(f"{call}: f (or h) is flat in these inputs at almost every reference point")
    minors = [(grad[:, a] * hg[:, b, None] - grad[:, b] * hg[:, a, None]) / size.clamp(min=1e-300)
              for a in range(len(S)) for b in range(a + 1, len(S))]
    residual = torch.stack(minors, dim=1)[keep]
    stat, thr = _verdict(residual, residual.shape[-1], threshold)
    relative = float(residual.mean(dim=-1).abs().median(dim=0).values.max())
    return StructureReport("depends_through", np.array(stat), thr, [], residual.shape[-1], int(keep.sum()),
                           holds=bool(stat < thr), variables=S, detail={"h": label, "relative_residual": relative})


def pair_symmetry(expansion, i: int, j: int, kind: str, *, units=None, threshold: float | None = None,
                  names: Sequence[str] | None = None) -> StructureReport:
    """Does ``f`` depend on ``x_i`` and ``x_j`` only through ``x_i - x_j`` (``kind="difference"``),
    ``x_i + x_j`` (``"sum"``), ``x_i * x_j`` (``"product"``) or ``x_i / x_j`` (``"ratio"``)?

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.exp(x[:, :1] - x[:, 1:2]) + x[:, 2:3]
    >>> e = expand(F(), torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), 1)
    >>> pair_symmetry(e, 0, 1, "difference").holds, pair_symmetry(e, 0, 1, "ratio").holds
    (True, False)
    """
    if kind not in PAIR_KINDS:
        raise ExpansionError(f"pair_symmetry(expansion, {i}, {j}, kind={kind!r}): pass one of {sorted(PAIR_KINDS)}")
    names = list(names) if names is not None else None
    label = _PAIR_TEXT[kind].format(*(names[i], names[j]) if names else (f"x{i}", f"x{j}"))
    report = depends_through(expansion, [i, j], lambda x: torch.stack(PAIR_KINDS[kind](x[:, 0], x[:, 1]), dim=1),
                             units=units, threshold=threshold, label=label)
    report.kind = "symmetry"
    report.detail["pair"] = kind
    return report


def symmetries(expansion, *, units=None, threshold: float | None = None, variables: Sequence[int] | None = None,
               kinds: Sequence[str] = tuple(PAIR_KINDS), names: Sequence[str] | None = None) -> list[StructureReport]:
    """Every pair symmetry of the inputs ``variables`` (default all), clearest holding ones first.

    Pairs whose test cannot be read (``f`` flat in them; ``x_j`` zero for a ratio) are skipped.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.log(x[:, :1] / x[:, 1:2]) * x[:, 2:3]
    >>> e = expand(F(), torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5, 1)
    >>> [(r.variables, r.detail["pair"]) for r in symmetries(e) if r.holds]
    [([0, 1], 'ratio')]
    """
    _, coeffs, monomials = original_units(expansion, units, call="symmetries(expansion)", min_order=1)
    S = list(range(monomials.shape[1])) if variables is None else [int(v) for v in variables]
    out = []
    for a in range(len(S)):
        for b in range(a + 1, len(S)):
            for kind in kinds:
                try:
                    out.append(pair_symmetry(expansion, S[a], S[b], kind, units=units, threshold=threshold,
                                             names=names))
                except ExpansionError:
                    continue
    return sorted(out, key=lambda r: (not r.holds, float(r.statistic) / r.threshold))


def homogeneity(expansion, variables: Sequence[int] | None = None, *, units=None, threshold: float | None = None,
                names: Sequence[str] | None = None, max_degree: float = 4.0) -> StructureReport:
    """Is ``f`` homogeneous in the inputs ``S``: ``f(lambda x_S, x_rest) = lambda^k f(x)`` for a
    clean degree ``k`` (a multiple of 1/2 up to ``max_degree`` in size)?

    Euler's identity ``sum_{i in S} x_i f_i = k f`` is tested at every reference point. ``k`` is
    the least-squares degree of the members' mean, rounded to a multiple of 1/2 (laws built from
    measured quantities have integer or half-integer degrees in quantities of one kind); the
    residual ``(sum x_i f_i - k f) / (|grad_S f . x_S| + |k f|)`` is judged against the members'
    disagreement like the pair symmetries. Where it holds, ``f = x_j^k g(x_i / x_j, x_rest)``
    for any ``j`` in ``S``: one input fewer.

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        Order >= 1 at many reference points; outputs (or list entries) are ensemble members.
    variables : sequence of int, optional
        ``S`` (default every input); at least two.
    units : FittedEnsemble or similar, optional
        Standardisation to undo: the scaling acts on the table's units.

    Returns
    -------
    StructureReport
        ``kind="homogeneity"``; ``holds``; ``detail`` has ``degree`` (the rounded ``k``, a float),
        ``fitted_degree`` and the median relative residual.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return (x[:, :1] + x[:, 1:2]) / (1 + x[:, :1] * x[:, 1:2] / x[:, 2:3] ** 2)
    >>> e = expand(F(), torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5, 1)
    >>> r = homogeneity(e)
    >>> r.holds, r.detail["degree"]
    (True, 1.0)
    """
    call = "homogeneity(expansion)"
    center, coeffs, monomials = original_units(expansion, units, call=call, min_order=1)
    p = monomials.shape[1]
    S = list(range(p)) if variables is None else [int(v) for v in variables]
    if len(S) < 2 or len(set(S)) != len(S) or not all(0 <= v < p for v in S):
        raise ExpansionError(f"{call}: pass at least two distinct inputs among 0..{p - 1}")
    rows = [int(np.flatnonzero((monomials == np.eye(p, dtype=monomials.dtype)[v]).all(axis=1))[0]) for v in S]
    value = coeffs[:, 0, :]  # (B, M)
    euler = (coeffs[:, rows, :] * center[:, S].unsqueeze(-1)).sum(dim=1)  # sum_i x_i f_i, (B, M)
    keep = _relative_floor(value.mean(dim=-1))  # near a zero of f the relative residual is unstable
    if int(keep.sum()) < 2:
        raise ExpansionError(f"{call}: f is zero at almost every reference point")
    f, g = value[keep].mean(dim=-1), euler[keep].mean(dim=-1)
    fitted = float((f * g).sum() / f.pow(2).sum().clamp(min=1e-300))
    degree = float(np.clip(round(2.0 * fitted) / 2.0, -max_degree, max_degree))
    size = (euler[keep].abs() + abs(degree) * value[keep].abs()).mean(dim=-1, keepdim=True).clamp(min=1e-300)
    residual = ((euler[keep] - degree * value[keep]) / size).unsqueeze(1)  # (B, 1, M)
    stat, thr = _verdict(residual, residual.shape[-1], threshold)
    relative = float(residual.mean(dim=-1).abs().median())
    label = ", ".join(names[v] for v in S) if names is not None else ", ".join(f"x{v}" for v in S)
    return StructureReport("homogeneity", np.array(stat), thr, [], residual.shape[-1], int(keep.sum()),
                           holds=bool(stat < thr), variables=S,
                           detail={"degree": degree, "fitted_degree": fitted, "relative_residual": relative,
                                   "h": f"homogeneous of degree {degree:g} in {label}"})


# -- transforms that make f polynomial ---------------------------------------------------------

def _arcsin(v0: torch.Tensor, n: int) -> torch.Tensor:
    a = U.variable(v0, n)
    one_minus_square = -U.mul(a, a)
    one_minus_square[0] += 1.0  # a constant enters the value only, not every coefficient of the jet
    return U.integrate_derivative(a, U.power(one_minus_square, -0.5), torch.asin(v0))


#: Univariate Taylor coefficients ``T(v0 + t)`` of the target transforms and their domains.
TARGET_TRANSFORMS: dict[str, tuple] = {
    "identity": (lambda v0, n: U.variable(v0, n), lambda v: torch.ones_like(v, dtype=torch.bool)),
    "square": (lambda v0, n: U.power(U.variable(v0, n), 2.0), lambda v: torch.ones_like(v, dtype=torch.bool)),
    "sqrt": (lambda v0, n: U.power(U.variable(v0, n), 0.5), lambda v: v > 0),
    "reciprocal": (lambda v0, n: U.reciprocal(U.variable(v0, n)), lambda v: v != 0),
    "reciprocal_square": (lambda v0, n: U.power(U.variable(v0, n), -2.0), lambda v: v != 0),
    "log": (lambda v0, n: U.log(U.variable(v0, n)), lambda v: v > 0),
    "exp": (lambda v0, n: U.exp_at(v0, n), lambda v: v.abs() < 50),
    "arcsin": (_arcsin, lambda v: v.abs() < 1),
    "sin": (lambda v0, n: U.sin_cos_at(v0, n)[0], lambda v: v.abs() < math.pi / 2),  # where asin inverts it
}
#: Input transforms ``u = T(x)`` as the Taylor coefficients of the inverse ``x(u0 + t)``.
INPUT_TRANSFORMS: dict[str, tuple] = {
    "reciprocal": (lambda x0: 1.0 / x0, lambda u0, n: U.reciprocal(U.variable(u0, n)), lambda x: x != 0),
    "log": (torch.log, lambda u0, n: U.exp_at(u0, n), lambda x: x > 0),
    "sqrt": (torch.sqrt, lambda u0, n: U.power(U.variable(u0, n), 2.0), lambda x: x > 0),
    "sin": (torch.sin, _arcsin, lambda x: x.abs() < math.pi / 2),
}
_TARGET_TEXT = {"identity": "y", "square": "y**2", "sqrt": "sqrt(y)", "reciprocal": "1/y",
                "reciprocal_square": "1/y**2", "log": "log(y)", "exp": "exp(y)", "arcsin": "asin(y)", "sin": "sin(y)"}
_INPUT_TEXT = {"reciprocal": "1/{}", "log": "log({})", "sqrt": "sqrt({})", "sin": "sin({})"}


def _embed(univariate: torch.Tensor, algebra: Algebra, variable: int) -> torch.Tensor:
    """Series ``(T, ...)`` in every variable from a univariate one in ``variable``."""
    out = univariate.new_zeros((algebra.n_terms, *univariate.shape[1:]))
    for k in range(univariate.shape[0]):
        alpha = np.zeros(algebra.p, dtype=algebra.monomials.dtype)
        alpha[variable] = k
        out[int(np.flatnonzero((algebra.monomials == alpha).all(axis=1))[0])] = univariate[k]
    return out


def _substitute(coeffs: torch.Tensor, algebra: Algebra, variable: int, dx: torch.Tensor) -> torch.Tensor:
    """``f`` (series ``(T, B, M)`` in ``dx``) with ``dx_variable`` replaced by the series ``dx``."""
    mono = algebra.monomials
    index = {tuple(int(v) for v in row): t for t, row in enumerate(mono)}
    result = torch.zeros_like(coeffs)
    power = _embed(torch.eye(algebra.order + 1, 1, dtype=coeffs.dtype).expand(-1, dx.shape[1]), algebra, variable)
    power = power.unsqueeze(-1)  # dx^0 = 1
    for k in range(algebra.order + 1):
        rest = torch.zeros_like(coeffs)
        for t, row in enumerate(mono):
            if row[variable] == k:
                shifted = tuple(int(v) - (k if a == variable else 0) for a, v in enumerate(row))
                rest[index[shifted]] = coeffs[t]
        result = result + algebra.mul(rest, power.expand_as(coeffs))
        power = algebra.mul(power.expand_as(coeffs), dx.unsqueeze(-1).expand_as(coeffs))
    return result


def _high_degree_statistics(series: torch.Tensor, degrees: np.ndarray, length: torch.Tensor, order: int,
                            members: int, threshold) -> list[float]:
    """Statistic of "the coefficients of degree > d vanish" for ``d = 0 .. order - 1``.

    Coefficients are scaled by the spread of the reference points (``length``, per input) so
    the single-model fraction compares like with like.
    """
    stats = []
    for d in range(order):
        rows = np.flatnonzero(degrees > d)
        high = series[rows]  # (K, B, M)
        if members > 1:
            stats.append(float(np.max(_signal_to_spread(high.permute(1, 0, 2), high))))
        else:
            # per point: the high-degree part relative to every non-constant coefficient there
            scale = (series[1:, :, 0] * length[1:].unsqueeze(1)).pow(2).mean(dim=0).sqrt().clamp(min=1e-300)
            ratio = (high[:, :, 0] * length[rows].unsqueeze(1)).pow(2).mean(dim=0).sqrt() / scale
            stats.append(float(ratio.median()))
    return stats


def polynomial_transforms(expansion, *, units=None, threshold: float | None = None,
                          target: Sequence[str] = tuple(TARGET_TRANSFORMS),
                          inputs: Sequence[str] = tuple(INPUT_TRANSFORMS),
                          names: Sequence[str] | None = None) -> list[StructureReport]:
    """Transforms of the target or of one input under which ``f`` becomes a low-degree polynomial.

    For each target transform ``T`` the series of ``T(f)`` is composed exactly from the series
    of ``f``; for each input transform ``u = T(x_i)`` the series of ``f`` is re-expanded in ``u``
    (``x_i = T^{-1}(u)`` substituted). The lowest degree ``d < order`` whose higher coefficients
    all vanish (statistic below threshold at the reference points) is the transform's degree.
    Transforms undefined at some reference point (``log`` of a sign-changing ``f``, ``asin`` of
    ``|f| >= 1``) are skipped; a sign-definite negative ``f`` is read as ``-f``.

    Parameters
    ----------
    expansion : Expansion or list of Expansion
        Order >= 2 (order 3 or more separates degrees 1 and 2).
    units : FittedEnsemble or similar, optional
        Standardisation to undo: transforms act on the table's units.
    target, inputs : sequence of str
        Keys of :data:`TARGET_TRANSFORMS` and :data:`INPUT_TRANSFORMS` to try.

    Returns
    -------
    list of StructureReport
        One per transform tried, ``kind="transform"``, holding ones first (lowest degree, then
        clearest); ``detail`` has ``transform`` (text), ``on`` (``"target"`` or an input
        index), ``degree`` (``None`` when no degree below the order fits) and the statistic per
        degree.

    Examples
    --------
    >>> import torch
    >>> from discovery.engine import expand
    >>> class F(torch.nn.Module):
    ...     def forward(self, x):
    ...         return 1.0 / (1.0 + x[:, :1] ** 2 + x[:, 1:2])
    >>> e = expand(F(), torch.rand(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), 3)
    >>> best = polynomial_transforms(e)[0]
    >>> best.detail["transform"], best.detail["degree"]
    ('1/y', 2)
    """
    call = "polynomial_transforms(expansion)"
    center, coeffs, monomials = original_units(expansion, units, call=call, min_order=2)
    B, T, M = coeffs.shape
    p = monomials.shape[1]
    order = int(monomials.sum(axis=1).max())
    algebra = Algebra(p, order)
    if not np.array_equal(algebra.monomials, monomials):
        raise ExpansionError(f"{call}: unexpected monomial table; pass expand(...) results")
    degrees = monomials.sum(axis=1)
    spread = center.std(dim=0) if B > 1 else torch.ones(p, dtype=torch.float64)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    series = coeffs.permute(1, 0, 2).contiguous()  # (T, B, M)
    value = series[0]
    sign = torch.sign(value.mean(dim=1)).unsqueeze(1)
    sign = sign if bool((sign == sign[0]).all()) and bool((torch.sign(value) == sign).all()) else None
    reports = []

    def add(text, on, transformed, length):
        stats = _high_degree_statistics(transformed, degrees, length, order, M, threshold)
        thr = _default_threshold(M, threshold)
        degree = next((d for d, s in enumerate(stats) if s < thr), None)
        stat = stats[degree] if degree is not None else stats[-1]
        reports.append(StructureReport("transform", np.array(stat), thr, [], M, B, holds=degree is not None,
                                       variables=list(range(p)) if on == "target" else [on],
                                       detail={"transform": text, "on": on, "degree": degree,
                                               "by_degree": [round(s, 4) for s in stats]}))

    length_x = torch.prod(spread.unsqueeze(0) ** torch.as_tensor(monomials, dtype=torch.float64), dim=1)
    for name in target:
        if name not in TARGET_TRANSFORMS:
            raise ExpansionError(f"{call}: unknown target transform {name!r}; pass some of {sorted(TARGET_TRANSFORMS)}")
        coefficients_of, domain = TARGET_TRANSFORMS[name]
        v = value if sign is None or name == "identity" else value * sign
        if name in ("sqrt", "log") and sign is None:
            continue
        if not bool(domain(v).all()) or (name.startswith("reciprocal") and not bool(_relative_floor(v).all())):
            continue
        with np.errstate(all="ignore"):
            fc = coefficients_of(v, order)  # (order + 1, B, M)
        a = series if sign is None or name == "identity" else series * sign
        transformed = algebra.compose(a, fc)
        if torch.isfinite(transformed).all():
            add(_TARGET_TEXT[name], "target", transformed, length_x)
    for i in range(p):
        label = names[i] if names is not None else f"x{i}"
        for name in inputs:
            if name not in INPUT_TRANSFORMS:
                raise ExpansionError(f"{call}: unknown input transform {name!r}; pass some of "
                                     f"{sorted(INPUT_TRANSFORMS)}")
            forward, inverse_coefficients, domain = INPUT_TRANSFORMS[name]
            x0 = center[:, i]
            if not bool(domain(x0).all()):
                continue
            u0 = forward(x0)
            dx = inverse_coefficients(u0, order)  # (order + 1, B): x(u0 + t)
            dx = torch.cat([torch.zeros_like(dx[:1]), dx[1:]])  # deviation from x0
            transformed = _substitute(series, algebra, i, _embed(dx, algebra, i))
            u_spread = u0.std() if B > 1 and float(u0.std()) > 0 else torch.tensor(1.0, dtype=torch.float64)
            length_u = length_x * (u_spread / spread[i]) ** torch.as_tensor(monomials[:, i], dtype=torch.float64)
            if torch.isfinite(transformed).all():
                add(_INPUT_TEXT[name].format(label), i, transformed, length_u)
    return sorted(reports, key=lambda r: (not r.holds, r.detail["degree"] if r.holds else math.inf,
                                          float(r.statistic) / r.threshold))
