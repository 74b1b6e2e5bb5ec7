"""How far a trained network's Taylor polynomial can be trusted: convergence table and error bounds.

* The convergence table (HOPE Table 2) lists ``|d^n f / dx_i^n| / |df / dx_i|`` at the centre for
  every input ``i`` and order ``n``, and a ``norm`` column: the Frobenius norm of the whole n-th
  derivative tensor (all mixed partials, each counted with its multiplicity) over the gradient's
  norm. For one input the columns agree.
* The Lagrange bounds (HOPE section 4.1, Eq. 63-66) are taken along the coordinate line of each
  input through the centre: with ``g(t) = f(center + t e_i)`` on ``[-r_i, r_i]`` and ``T_n`` its
  degree-n Taylor polynomial at ``t = 0``,
  ``f1, f2 = T_{n-1}(t) + {max, min} g^(n) / n! * t^n`` enclose both ``g`` and ``T_n``, and
  ``e2 = (max g^(n) - min g^(n)) / n! * r^n`` bounds the measured error ``e1 = max |T_n - g|``.
  The extremes of ``g^(n)`` come from one batched expansion at ``n_dense`` points per line, widened
  by ``h / 2 * max |g^(n+1)|`` (``h`` the grid spacing) so that the sampled extremes do not miss the
  true ones between grid points.
* The verdict is the largest radius ``r`` (per input, along its line) for which both ``e2(r)`` and
  ``e1(r)`` stay below ``tolerance`` times the output's range (the largest range over the lines).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from discovery.engine import Expansion, expand, n_terms
from discovery.errors import ExpansionError
from discovery.folders import atomic_write

__all__ = ["validate", "Validation", "convergence_table", "expand_command"]

_MAX_MIXED_TERMS = 20_000


def _derivative_norm(e: Expansion, order: int, output: int) -> np.ndarray:
    """Frobenius norm of the n-th derivative tensor at the centre, n = 0..order."""
    table = e.monomials
    degree = table.sum(axis=1)
    alpha_fact = np.array([np.prod([math.factorial(int(a)) for a in row]) for row in table], dtype=np.float64)
    c = e.coefficients[0, :, output].detach().cpu().numpy()
    # ||D^n f||^2 = sum over |alpha| = n of (n! / alpha!) * (alpha! c_alpha)^2
    sq = np.array([math.factorial(int(d)) for d in degree], dtype=np.float64) * alpha_fact * c**2
    return np.sqrt(np.bincount(degree, weights=sq, minlength=order + 1))


def convergence_table(model: nn.Module, at, order: int = 10, *, output: int = 0, names=None,
                      device=None) -> pd.DataFrame:
    """Ratios ``|d^n f / dx_i^n| / |df / dx_i|`` at one point, n = 1..order (HOPE Table 2).

    Parameters
    ----------
    model : torch.nn.Module
    at : array-like (p,)
        The point.
    order : int
        Highest derivative order.
    output : int
        Which output of the model.
    names : list of str, optional
        Input names (default ``x0 .. x{p-1}``).
    device : optional
        Where the expansion runs.

    Returns
    -------
    pandas.DataFrame
        Index ``n`` (1..order); one column per input (pure derivatives) and ``norm`` (all
        partials of order n, Frobenius norm, over the gradient norm; NaN when the model has too
        many inputs for a mixed expansion at this order).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    >>> convergence_table(net, [0.2], order=4).shape
    (4, 2)
    """
    point = np.asarray(at, dtype=np.float64).reshape(-1)
    p = point.size
    names = _names(names, p, f"convergence_table(model, at, order={order})")
    pure, norm, _ = _center_derivatives(model, point, order, output, device)
    return _ratios(pure, norm, names, order)


def _ratios(pure: np.ndarray, norm: np.ndarray, names: list, order: int) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = pd.DataFrame(np.abs(pure[1:] / pure[1]), columns=names, index=pd.RangeIndex(1, order + 1, name="n"))
        frame["norm"] = norm[1:] / norm[1]
    return frame


def _center_derivatives(model, point: np.ndarray, order: int, output: int, device):
    """Pure derivatives (order+1, p), derivative-tensor norms (order+1,) and the mixed expansion (or None)."""
    p = point.size
    if n_terms(p, order) <= _MAX_MIXED_TERMS:
        e = expand(model, point[None, :], order, device=device)
        _check_output(e.n_outputs, output)
        pure = np.empty((order + 1, p))
        for i in range(p):
            for k in range(order + 1):
                alpha = [0] * p
                alpha[i] = k
                pure[k, i] = float(e.derivative(tuple(alpha))[0, output])
        return pure, _derivative_norm(e, order, output), e
    u = expand(model, point[None, :], order, mixed=False, device=device)
    _check_output(u.n_outputs, output)
    pure = np.stack([u.unmixed(k)[0, output].reshape(-1).cpu().numpy() for k in range(order + 1)])
    return pure, np.full(order + 1, np.nan), None


def _check_output(n_outputs: int, output: int) -> None:
    if not 0 <= output < n_outputs:
        raise ExpansionError(f"validate(..., output={output}): the model has {n_outputs} output(s); "
                             f"pass output between 0 and {n_outputs - 1}")


def _names(names, p: int, call: str) -> list[str]:
    names = [f"x{i}" for i in range(p)] if names is None else [str(n) for n in names]
    if len(names) != p:
        raise ExpansionError(f"{call}: {len(names)} names for {p} inputs; pass one name per input")
    return names


@dataclass
class _Line:
    """Everything measured along one coordinate line ``center + t e_i``."""

    t: np.ndarray            # evaluation grid (points,)
    f: np.ndarray            # network on the grid
    taylor: np.ndarray       # (order+1,) Taylor coefficients of g at t = 0
    dense_t: np.ndarray      # (n_dense,)
    derivatives: np.ndarray  # (n_dense, order+2): g^(k) at each dense point
    spacing: float

    def polynomial(self, n: int, t: np.ndarray | None = None) -> np.ndarray:
        t = self.t if t is None else t
        return np.polynomial.polynomial.polyval(t, self.taylor[: n + 1])

    def extremes(self, n: int, within: float) -> tuple[float, float]:
        """Sampled max / min of g^(n) on ``|t| <= within``, widened by the between-point slack."""
        inside = np.abs(self.dense_t) <= within * (1 + 1e-12)
        d = self.derivatives[inside, n]
        slack = 0.5 * self.spacing * np.abs(self.derivatives[inside, n + 1]).max()
        return float(d.max() + slack), float(d.min() - slack)


@dataclass
class Validation:
    """Result of :func:`validate`: convergence, error bounds and the trusted radius.

    Attributes
    ----------
    center : (p,) array
    radius : (p,) array
        Half-width of the checked interval along each input.
    order : int
    names : list of str
    convergence : DataFrame
        See :func:`convergence_table`.
    bounds : DataFrame
        One row per (input, n): measured ``e1``, bound ``e2``, ``applies`` (``e2`` above the
        floating-point floor) and ``holds`` (``e1 <= e2``).
    trusted_radius : (p,) array
        Largest radius along each input where ``e1`` and ``e2`` of the order-``order`` polynomial
        stay below ``tolerance`` times the output range.
    tolerance : float
    expansion : Expansion or None
        The mixed expansion at the centre (None when too many inputs for ``order``).
    """

    center: np.ndarray
    radius: np.ndarray
    order: int
    names: list
    convergence: pd.DataFrame
    bounds: pd.DataFrame
    trusted_radius: np.ndarray
    tolerance: float
    output_range: np.ndarray
    expansion: Expansion | None = None
    lines: list = field(default_factory=list, repr=False)

    @property
    def trusted(self) -> bool:
        """Whether the whole requested interval is trusted along every input."""
        return bool(np.all(self.trusted_radius >= self.radius * (1 - 1e-9)))

    @property
    def verdict(self) -> str:
        parts = []
        for name, r, tr in zip(self.names, self.radius, self.trusted_radius):
            if tr >= r * (1 - 1e-9):
                parts.append(f"{name}: trusted on the whole radius {r:.4g}")
            elif tr > 0:
                parts.append(f"{name}: trusted up to radius {tr:.4g} of {r:.4g}")
            else:
                parts.append(f"{name}: not trusted at any checked radius")
        head = "TRUSTED" if self.trusted else "NOT TRUSTED on the whole interval"
        rows = self.bounds[self.bounds["applies"]]
        broken = int((~rows["holds"]).sum())
        tail = "; e1 <= e2 wherever the bound applies" if not broken else f"; e1 > e2 in {broken} case(s)"
        return (f"{head} (order {self.order}, tolerance {self.tolerance:g} x output range, along coordinate "
                f"lines): " + "; ".join(parts) + tail)

    def lagrange_bounds(self, n: int | None = None, input: int = 0) -> dict:
        """Curves of HOPE Eq. 63 along one input: ``t``, network ``f``, ``polynomial`` (degree n), ``f1``, ``f2``."""
        n = self.order if n is None else int(n)
        if not 1 <= n <= self.order:
            raise ExpansionError(f"lagrange_bounds(n={n}): n must be between 1 and the validated order {self.order}")
        line = self.lines[input]
        hi, lo = line.extremes(n, float(self.radius[input]))
        base = line.polynomial(n - 1)
        scale = line.t**n / math.factorial(n)
        return {"t": line.t, "x": line.t + self.center[input], "f": line.f, "polynomial": line.polynomial(n),
                "f1": base + hi * scale, "f2": base + lo * scale}

    def to_frame(self) -> pd.DataFrame:
        """One row per (input, n): ratio from the convergence table, e1, e2, applies, holds."""
        ratios = self.convergence[self.names].reset_index().melt(id_vars="n", var_name="input", value_name="ratio")
        return ratios.merge(self.bounds, on=["input", "n"], how="left")[
            ["input", "n", "ratio", "e1", "e2", "applies", "holds"]]

    def __str__(self) -> str:
        center = ", ".join(f"{c:.4g}" for c in self.center)
        radius = ", ".join(f"{r:.4g}" for r in self.radius)
        lines = [f"Validation at ({center}), radius ({radius}), order {self.order}", "",
                 "Convergence |d^n f/dx^n| / |df/dx| at the centre:",
                 self.convergence.to_string(float_format=lambda v: f"{v:.3e}"), "",
                 "Measured error e1 and Lagrange bound e2 on the interval:",
                 self.bounds.to_string(index=False, float_format=lambda v: f"{v:.3e}"), "",
                 self.verdict]
        return "\n".join(lines)

    def plot(self, path, input: int = 0, orders=None) -> Path:
        """Save a figure: convergence, e1 vs e2 per order, and f, polynomial, f1, f2 for a few orders.

        The file is written atomically; the format follows the suffix (``.png``, ``.pdf``, ...).
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if orders is None:
            orders = sorted({1, max(1, self.order // 3), max(1, 2 * self.order // 3), self.order})
        panels = 2 + len(orders)
        ncols = min(4, panels)
        nrows = -(-panels // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False)
        axes = axes.ravel()
        for ax in axes[panels:]:
            ax.axis("off")
        ax = axes[0]
        for col in self.convergence.columns:
            ax.semilogy(self.convergence.index, self.convergence[col], "o-", ms=3, label=col)
        ax.set(xlabel="order n", ylabel="|f^(n)| / |f'|", title="convergence at the centre")
        ax.legend(fontsize=7)
        ax = axes[1]
        rows = self.bounds[self.bounds["input"] == self.names[input]]
        ax.semilogy(rows["n"], rows["e1"], "o-", ms=3, label="e1 measured")
        ax.semilogy(rows["n"], rows["e2"], "s--", ms=3, label="e2 bound")
        ax.set(xlabel="order n", ylabel="max error", title=f"errors along {self.names[input]}")
        ax.legend(fontsize=7)
        for ax, n in zip(axes[2:], orders):
            c = self.lagrange_bounds(n, input)
            ax.plot(c["x"], c["f"], "k-", lw=2, label="network")
            ax.plot(c["x"], c["polynomial"], "C3--", label=f"Taylor n={n}")
            ax.plot(c["x"], c["f1"], "C0:", label="f1")
            ax.plot(c["x"], c["f2"], "C2:", label="f2")
            span = c["f"].max() - c["f"].min()
            ax.set_ylim(c["f"].min() - 0.5 * span - 1e-12, c["f"].max() + 0.5 * span + 1e-12)
            ax.set(xlabel=self.names[input], title=f"order {n}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        try:
            return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
        finally:
            plt.close(fig)


def validate(model: nn.Module, center, radius, order: int, *, points: int = 401, n_dense: int = 201,
             output: int = 0, tolerance: float = 1e-3, names=None, device=None) -> Validation:
    """Check a network's order-``order`` Taylor polynomial at ``center`` on ``center +- radius``.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(B, p)`` to ``(B, n_out)`` or ``(B,)``; traceable by the Taylor engine.
    center : array-like (p,)
    radius : float or array-like (p,)
        Half-width of the interval along each input.
    order : int
        Degree of the polynomial under test; bounds are reported for every n = 1..order.
    points : int
        Grid points per input line where the network and the polynomials are compared (e1).
    n_dense : int
        Reference points per input line of the one batched expansion that gives the extreme
        n-th derivatives (e2, f1, f2).
    output : int
        Which output to check.
    tolerance : float
        Trusted means ``e1`` and ``e2`` below ``tolerance`` times the output's range.
    names : list of str, optional
    device : optional
        Where the expansions run.

    Returns
    -------
    Validation

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> v = validate(net, [0.0], 0.5, order=6, points=101, n_dense=41)
    >>> bool(v.bounds["holds"].all())
    True
    """
    call = f"validate(model, center, radius, order={order})"
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ExpansionError(f"{call}: order must be an int >= 1 (e.g. order=8)")
    order = int(order)
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    p = c.size
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (p,)).copy() if np.ndim(radius) == 0 or np.size(radius) == p else None
    if r is None:
        raise ExpansionError(f"{call}: radius has {np.size(radius)} entries for {p} inputs; pass one number or one per input")
    if not np.all(np.isfinite(r) & (r > 0)) or not np.all(np.isfinite(c)):
        raise ExpansionError(f"{call}: center must be finite and radius positive and finite, got {c}, {r}")
    if points < 3 or n_dense < 3:
        raise ExpansionError(f"{call}: points and n_dense must be >= 3 (e.g. points=401, n_dense=201)")
    names = _names(names, p, call)
    pure, norm, expansion = _center_derivatives(model, c, order, output, device)
    convergence = _ratios(pure, norm, names, order)

    unit_dense = np.linspace(-1.0, 1.0, n_dense)
    unit_eval = np.linspace(-1.0, 1.0, points)
    dense = np.concatenate([c[None, :]] + [_line(c, i, unit_dense * r[i]) for i in range(p)])
    u = expand(model, dense, order + 1, mixed=False, device=device)  # one batched pass for every line
    _check_output(u.n_outputs, output)
    coef = u.coefficients[:, :, output].reshape(len(dense), order + 2, p).detach().cpu().numpy()
    facts = np.array([math.factorial(k) for k in range(order + 2)], dtype=np.float64)
    f_eval = _forward(model, np.concatenate([_line(c, i, unit_eval * r[i]) for i in range(p)]), output, device)

    lines, rows, trusted, ranges = [], [], np.zeros(p), np.zeros(p)
    for i in range(p):
        block = slice(1 + i * n_dense, 1 + (i + 1) * n_dense)
        line = _Line(t=unit_eval * r[i], f=f_eval[i * points:(i + 1) * points], taylor=coef[0, : order + 1, i],
                     dense_t=unit_dense * r[i], derivatives=coef[block, :, i] * facts, spacing=2 * r[i] / (n_dense - 1))
        lines.append(line)
        scale = max(float(np.abs(line.f).max()), float(np.abs(line.taylor).sum()), 1e-300)
        floor = 1e-10 * scale
        for n in range(1, order + 1):
            e1 = float(np.abs(line.polynomial(n) - line.f).max())
            hi, lo = line.extremes(n, r[i])
            e2 = (hi - lo) / facts[n] * r[i] ** n
            applies = e2 > floor
            rows.append({"input": names[i], "n": n, "e1": e1, "e2": e2, "applies": applies,
                         "holds": e1 <= e2 * (1 + 1e-9) + floor})
        ranges[i] = float(line.f.max() - line.f.min())
    # One yardstick for every line: an input without influence has no range of its own.
    yardstick = max(float(ranges.max()), 1e-12 * max(float(np.abs(f_eval).max()), 1e-300))
    for i, line in enumerate(lines):
        trusted[i] = _trusted_radius(line, order, tolerance * yardstick, facts[order])
    bounds = pd.DataFrame(rows, columns=["input", "n", "e1", "e2", "applies", "holds"])
    return Validation(center=c, radius=r, order=order, names=names, convergence=convergence, bounds=bounds,
                      trusted_radius=trusted, tolerance=float(tolerance), output_range=ranges,
                      expansion=expansion, lines=lines)


def _line(center: np.ndarray, i: int, t: np.ndarray) -> np.ndarray:
    pts = np.repeat(center[None, :], len(t), axis=0)
    pts[:, i] += t
    return pts


def _forward(model: nn.Module, x: np.ndarray, output: int, device) -> np.ndarray:
    net = copy.deepcopy(model).to(torch.float64)
    params = list(net.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    with torch.no_grad():
        y = net(torch.as_tensor(x, dtype=torch.float64, device=dev))
    y = y.reshape(len(x), -1)
    return y[:, output].cpu().numpy()


def _trusted_radius(line: _Line, order: int, tol: float, n_fact: float) -> float:
    """Largest grid radius with e1 and e2 of the order-``order`` polynomial below ``tol`` on all smaller radii."""
    radii = np.unique(np.abs(line.t))
    err = np.abs(line.polynomial(order) - line.f)
    best = 0.0
    for rad in radii[1:]:
        hi, lo = line.extremes(order, rad)
        e2 = (hi - lo) / n_fact * rad**order
        e1 = err[np.abs(line.t) <= rad * (1 + 1e-12)].max()
        if e2 > tol or e1 > tol:
            break
        best = float(rad)
    return best


def _parse_point(at) -> np.ndarray:
    if isinstance(at, str):
        try:
            return np.array([float(v) for v in at.replace(" ", "").split(",") if v], dtype=np.float64)
        except ValueError:
            raise ExpansionError(f"expand_command(model_path, at={at!r}, ...): at must be comma-separated numbers "
                                 "such as '0.1,0.2'") from None
    return np.asarray(at, dtype=np.float64).reshape(-1)


def expand_command(model_path, at, order: int, out=None, *, radius: float = 1.0, output: int = 0,
                   tolerance: float = 1e-3, names=None) -> str:
    """The ``discovery expand model.pt --at 0.1,0.2 --order 8`` command: load, expand, validate, report.

    Parameters
    ----------
    model_path : str, path-like or torch.nn.Module
        A model file (see :func:`discovery.modelio.load_model`) or a loaded network.
    at : str or array-like
        The expansion point, e.g. ``"0.1,0.2"``.
    order : int
        Degree of the polynomial.
    out : str or path-like, optional
        A directory that receives ``expansion.pt`` (loadable with ``Expansion.load``),
        ``validation.csv``, ``validation.png`` and ``report.txt``.
    radius, output, tolerance, names
        Passed to :func:`validate` (radius is the half-width checked along every input).

    Returns
    -------
    str
        The report: the polynomial, the convergence table, the error bounds and the verdict.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "net.pt")
    >>> torch.jit.script(net).save(path)
    >>> report = expand_command(path, "0.1,0.2", 4, radius=0.1)
    >>> print(report.splitlines()[0])
    Taylor polynomial of order 4 at (0.1, 0.2):
    >>> print(report.splitlines()[-1])  # doctest: +ELLIPSIS
    TRUSTED ...
    >>> folder.cleanup()
    """
    from discovery.modelio import load_model
    from discovery.symbolic import polynomial_to_sympy, text

    model = model_path if isinstance(model_path, nn.Module) else load_model(model_path)
    point = _parse_point(at)
    v = validate(model, point, radius, order, output=output, tolerance=tolerance, names=names)
    if v.expansion is not None:
        e = v.expansion
        coefficients = e.coefficients[0, :, output].detach().cpu().numpy()
        formula = text(polynomial_to_sympy(e.monomials, coefficients, point, v.names), precision=6)
    else:
        formula = "(too many inputs for a mixed polynomial at this order; lower --order)"
    report = f"Taylor polynomial of order {order} at ({', '.join(f'{x:g}' for x in point)}):\n{formula}\n\n{v}\n"
    if out is not None:
        from discovery.folders import write_folder

        def write(folder: Path) -> None:  # never into a folder discovery did not write (see write_folder)
            if v.expansion is not None:
                v.expansion.save(folder / "expansion.pt")
            _atomic_text(folder / "validation.csv", v.to_frame().to_csv(index=False))
            v.plot(folder / "validation.png")
            _atomic_text(folder / "report.txt", report)

        write_folder(out, write, f"expand_command(..., out={str(out)!r})")
    return report


def _atomic_text(path: Path, content: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(content))
