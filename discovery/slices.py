"""Slices of a trained ensemble: the pieces a split or a homogeneity step hands down, and the gradients
an affine step reads.

A split's piece ``g(x_A) = f(x_A, x_B*)`` is the parent's function with the other block held at
an anchor row; :class:`Restricted` reads it from the parent's members through a fixed linear
embedding, so its exact derivatives (and the members' disagreement about them) need no new
network. Used by :mod:`discovery.decompose`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PAIRS", "InUnits", "OnLine", "Restricted", "away_from_zero", "on_line", "slope_along"]


class Restricted:
    """The parent's ensemble with the columns outside ``block`` held at ``anchor``.

    A split's piece ``g(x_A) = f(x_A, x_B*)`` is the parent's function on a slice, so its exact
    derivatives (and the members' disagreement about them) come from the parent's members
    through one fixed linear embedding; no new network is trained, and a bias the parent's
    members share is not mistaken for structure of the piece.
    """

    def __init__(self, parent, block, anchor):
        self.parent, self.block, self.anchor = parent, list(block), np.asarray(anchor, dtype=np.float64)
        self.x_mean, self.x_scale = parent.x_mean[self.block], parent.x_scale[self.block]
        self.y_mean, self.y_scale = parent.y_mean, parent.y_scale
        embed = torch.nn.Linear(len(self.block), len(parent.x_mean), dtype=torch.float64)
        with torch.no_grad():
            embed.weight.zero_()
            embed.weight[self.block, range(len(self.block))] = 1.0
            bias = (self.anchor - parent.x_mean) / parent.x_scale
            bias[self.block] = 0.0
            embed.bias.copy_(torch.from_numpy(bias))
        embed.requires_grad_(False)
        self.model = torch.nn.Sequential(embed, parent.model)

    def members_module(self) -> torch.nn.Module:
        """The piece in the table's units, one output per member: what a leaf solver expands."""
        return InUnits(self.model, self.x_mean, self.x_scale, self.y_mean, self.y_scale)

    def predict(self, X) -> np.ndarray:
        full = np.repeat(self.anchor[None, :], len(X), axis=0)
        full[:, self.block] = X
        return self.parent.predict(full)


class OnLine(Restricted):
    """``g(u) = f(x_i = alpha u + beta, x_j = s) / power``: the one column a two-input node's
    symmetry or homogeneity step leaves, read on the parent's members.

    ``f`` depends on ``x_i, x_j`` only through ``u`` (``x_i / x_j``, ``x_i - x_j``, ...; or is
    ``x_j^k g(x_i / x_j)``), so ``g`` is the parent's function on a line of the plane, which
    :class:`Restricted`'s embedding reaches with the input's mean and scale mapped through
    ``x_i = alpha u + beta`` and the output's divided by ``power``. The leaf of ``u`` then reads
    the members' exact series and their disagreement instead of rows alone. :func:`on_line`
    builds it for each pair.
    """

    def __init__(self, parent, i: int, j: int, s: float, alpha: float, beta: float = 0.0, power: float = 1.0):
        anchor = np.asarray(parent.x_mean, dtype=np.float64).copy()  # only the held column, j, is read
        anchor[j] = s
        super().__init__(parent, [i], anchor)
        self.alpha, self.beta, self.power = float(alpha), float(beta), float(power)
        self.x_mean, self.x_scale = (self.x_mean - self.beta) / self.alpha, self.x_scale / self.alpha
        self.y_mean, self.y_scale = self.y_mean / self.power, self.y_scale / self.power

    def predict(self, U) -> np.ndarray:
        return super().predict(self.alpha * np.asarray(U, dtype=np.float64) + self.beta) / self.power


#: The new column of a pair symmetry, for SymPy columns and NumPy rows alike.
PAIRS = {"difference": lambda a, b: a - b, "sum": lambda a, b: a + b, "product": lambda a, b: a * b,
         "ratio": lambda a, b: a / b}


def _line(pair: str, s: float) -> tuple[float, float]:
    """``(alpha, beta)`` of ``x_i = alpha u + beta`` on the line ``x_j = s``."""
    return {"ratio": (s, 0.0), "product": (1.0 / s if s else 0.0, 0.0), "difference": (1.0, s), "sum": (1.0, -s)}[pair]


def on_line(parent, pair: str, i: int, j: int, rows: np.ndarray, degree: float = 0.0) -> OnLine | None:
    """The :class:`OnLine` source of ``u`` = ``pair`` of ``x_i, x_j`` (``"ratio"`` with
    ``degree`` for a homogeneity step), or ``None`` where no line without a zero ``s`` exists.

    ``s`` is the ``x_j`` quantile (5 % to 95 %) whose line keeps most training ``rows`` inside
    the range of ``x_i`` they were trained on (the members are not read where they extrapolate),
    nearest the median among equals."""
    xi, xj = rows[:, i], rows[:, j]
    u = PAIRS[pair](xi, xj)
    lo, hi = float(xi.min()), float(xi.max())
    best = None
    for q in np.linspace(0.05, 0.95, 19):
        s = float(np.quantile(xj, q))
        if s == 0 and pair in ("ratio", "product"):
            continue
        alpha, beta = _line(pair, s)
        outside = float(np.mean((alpha * u + beta < lo) | (alpha * u + beta > hi)))
        key = (outside, abs(q - 0.5))
        best = min(best, (key, s)) if best else (key, s)
    if best is None:
        return None
    s = best[1]
    power = s ** degree if degree else 1.0
    if not (np.isfinite(power) and power != 0):  # a fractional power of a negative scale
        return None
    alpha, beta = _line(pair, s)
    return OnLine(parent, i, j, s, alpha, beta, power)


class InUnits(torch.nn.Module):
    """``y_mean + y_scale * model((x - x_mean) / x_scale)``: a standardised ensemble in table units."""

    def __init__(self, model, x_mean, x_scale, y_mean, y_scale):
        super().__init__()
        self.model = model
        self.register_buffer("x_mean", torch.as_tensor(np.asarray(x_mean, dtype=np.float64)))
        self.register_buffer("x_scale", torch.as_tensor(np.asarray(x_scale, dtype=np.float64)))
        self.y_mean, self.y_scale = float(y_mean), float(y_scale)

    def forward(self, x):
        return self.y_mean + self.y_scale * self.model((x - self.x_mean) / self.x_scale)


def slope_along(fit, X: np.ndarray, i: int) -> np.ndarray:
    """Ensemble-mean ``df/dx_i`` at the rows ``X`` (table units), by autograd through the members."""
    module = fit.members_module() if isinstance(fit, Restricted) else InUnits(
        fit.model, fit.x_mean, fit.x_scale, fit.y_mean, fit.y_scale)
    dtype = next(module.parameters()).dtype
    out = []
    for rows in np.array_split(np.arange(len(X)), max(1, len(X) // 4096)):
        x = torch.as_tensor(X[rows], dtype=dtype).requires_grad_(True)
        (g,) = torch.autograd.grad(module(x).reshape(len(rows), -1).mean(dim=1).sum(), x)
        out.append(g[:, i].detach().to(torch.float64).numpy())
    return np.concatenate(out)


def away_from_zero(fit, rows: np.ndarray, anchor: np.ndarray, A, B) -> np.ndarray:
    """Anchor of a product's slices. The piece ``g(x_A) = f(x_A, x_B*)`` is read through the
    factor ``h(x_B*)``, which the median ``x_B`` may put near a zero (``A sin(k x - omega t)``
    with the phase's median near 0 leaves the ``A`` slice flat: all noise). So ``x_B*`` is the
    training row's ``x_B`` nearest the median among those where ``|f(x_A*, x_B)|`` is in its
    top quarter, and likewise ``x_A*`` given that ``x_B*``."""
    out = anchor.copy()
    scale = np.std(rows, axis=0)
    scale[scale == 0] = 1.0
    for chosen, held in ((B, A), (A, B)):
        trial = rows.copy()
        trial[:, held] = out[held]
        size = np.abs(fit.predict(trial))
        strong = rows[size >= np.quantile(size, 0.75)]
        near = np.argmin(np.sum(((strong[:, chosen] - anchor[chosen]) / scale[chosen]) ** 2, axis=1))
        out[chosen] = strong[near, chosen]
    return out
