"""Closed forms proposed by a model's exact Taylor series (1-D pieces).

The series at many reference points give exact derivatives ``f, f', f''`` there; linear
differential equations with few constants are tested on them by least squares, and each one
that holds names a basis whose rate is read off the equation:

- ``f'' = alpha f + beta``: ``sin/cos(omega x)`` (alpha < 0) or ``exp(+-lambda x)`` (alpha > 0);
- ``f' = alpha f + beta``: ``exp(alpha x)``;
- ``(x + c) f'' + f' = 0``: ``log(x + c)``;
- ``(x + c) f'' = (r - 1) f'``: ``(x + c)**r``.

The amplitudes are then fitted on training rows, and Pade approximants ``[L/M]`` of the series
at the middle reference point are proposed as rational functions. Every proposal is judged on
validation rows like any other candidate: the series propose, the data decide.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import sympy

from discovery.closedform.fitting import Candidate

REFERENCE_POINTS = 16
PADE_ORDER = 8


def series_coefficients(model, centers: np.ndarray, order: int) -> np.ndarray:
    """Taylor coefficients ``f^(j)(x0)/j!`` of ``model`` at 1-D ``centers``: (R, order + 1),
    averaged over the model's outputs (ensemble members)."""
    import torch

    from discovery.engine import expand

    e = expand(model, torch.as_tensor(centers[:, None], dtype=torch.float64), order)
    return e.coefficients.detach().cpu().numpy().mean(axis=2)


def _ode_proposals(x0: np.ndarray, c: np.ndarray) -> list[tuple[str, list[tuple[sympy.Expr, callable]]]]:
    """Bases named by the differential equations that the derivatives satisfy best."""
    f0, f1, f2 = c[:, 0], c[:, 1], 2 * c[:, 2]
    one = np.ones_like(f0)
    out = []
    (alpha, beta), *_ = np.linalg.lstsq(np.column_stack([f0, one]), f2, rcond=None)
    if alpha < 0:
        w = math.sqrt(-alpha)
        out.append((f"f'' = {alpha:.6g} f + {beta:.6g}: sin/cos({w:.6g} x)",
                    [(lambda s, w=w: sympy.sin(sympy.Float(w) * s), lambda x, w=w: np.sin(w * x)),
                     (lambda s, w=w: sympy.cos(sympy.Float(w) * s), lambda x, w=w: np.cos(w * x))]))
    elif alpha > 0:
        lam = math.sqrt(alpha)
        out.append((f"f'' = {alpha:.6g} f + {beta:.6g}: exp(+-{lam:.6g} x)",
                    [(lambda s, v=lam: sympy.exp(sympy.Float(v) * s), lambda x, v=lam: np.exp(v * x)),
                     (lambda s, v=lam: sympy.exp(sympy.Float(-v) * s), lambda x, v=lam: np.exp(-v * x))]))
    (alpha, beta), *_ = np.linalg.lstsq(np.column_stack([f0, one]), f1, rcond=None)
    out.append((f"f' = {alpha:.6g} f + {beta:.6g}: exp({alpha:.6g} x)",
                [(lambda s, v=alpha: sympy.exp(sympy.Float(v) * s), lambda x, v=alpha: np.exp(v * x))]))
    # (x + c) f'' + f' = 0  ->  x f'' + f' = -c f''
    (cc,), *_ = np.linalg.lstsq(f2[:, None], -(x0 * f2 + f1), rcond=None)
    out.append((f"(x + {cc:.6g}) f'' + f' = 0: log(x + {cc:.6g})",
                [(lambda s, v=cc: sympy.log(s + sympy.Float(v)), lambda x, v=cc: np.log(x + v))]))
    # (x + c) f'' = (r - 1) f'  ->  x f'' = -c f'' + (r - 1) f'
    (cc, rm1), *_ = np.linalg.lstsq(np.column_stack([f2, f1]), x0 * f2, rcond=None)
    cc = -cc
    r = rm1 + 1
    out.append((f"(x + {cc:.6g}) f'' = {rm1:.6g} f': (x + {cc:.6g})**{r:.6g}",
                [(lambda s, v=cc, r=r: (s + sympy.Float(v)) ** sympy.Float(r), lambda x, v=cc, r=r: (x + v) ** r)]))
    return out


def _pade(a: np.ndarray, L: int, M: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Pade coefficients (p, q with q[0] = 1) of the series ``a`` (needs ``L + M + 1`` terms)."""
    if M == 0:
        return a[: L + 1].copy(), np.array([1.0])
    A = np.array([[a[L + i - j] if L + i - j >= 0 else 0.0 for j in range(1, M + 1)] for i in range(1, M + 1)])
    rhs = -a[L + 1 : L + M + 1]
    try:
        q = np.linalg.solve(A, rhs)
    except np.linalg.LinAlgError:
        return None
    q = np.concatenate([[1.0], q])
    p = np.array([sum(q[j] * a[i - j] for j in range(0, min(i, M) + 1)) for i in range(L + 1)])
    return p, q


def series_candidates(model, X, y, xs, train) -> Iterator[Candidate]:
    """Candidates from the exact series of ``model`` for a 1-D piece."""
    x, s = X[:, 0], xs[0]
    centers = np.quantile(x[train], np.linspace(0.05, 0.95, REFERENCE_POINTS))
    c = series_coefficients(model, centers, 4)
    one = np.ones(len(x))
    for label, basis in _ode_proposals(centers, c):
        with np.errstate(all="ignore"):
            B = np.column_stack([fn(x) for _, fn in basis] + [one])
        if not np.all(np.isfinite(B)):
            continue
        coef, *_ = np.linalg.lstsq(B[train], y[train], rcond=None)
        pred = B @ coef

        def build(coef=coef, basis=basis):
            return sympy.Add(*[sympy.Float(float(a)) * sym(s) for a, (sym, _) in zip(coef, basis)],
                             sympy.Float(float(coef[-1])))

        yield Candidate("series ODE", build, pred, label)
    x0 = float(np.median(x[train]))
    a = series_coefficients(model, np.array([x0]), PADE_ORDER)[0]
    shift = np.polynomial.Polynomial([-x0, 1.0])
    for M in range(1, PADE_ORDER + 1):
        for L in range(0, PADE_ORDER + 1 - M):
            pq = _pade(a, L, M)
            if pq is None:
                continue
            # back to powers of x, with Q(0) = 1 where Q(0) is not 0
            p = np.polynomial.Polynomial(pq[0])(shift).coef
            q = np.polynomial.Polynomial(pq[1])(shift).coef
            if abs(q[0]) > 1e-12 * np.max(np.abs(q)):
                p, q = p / q[0], q / q[0]
            Q = np.polyval(q[::-1], x)
            if not (np.all(Q > 0) or np.all(Q < 0)):
                continue
            pred = np.polyval(p[::-1], x) / Q

            def build(p=p, q=q):
                P = sympy.Add(*[sympy.Float(float(v)) * s**i for i, v in enumerate(p)])
                Qs = sympy.Add(*[(1 if i == 0 and v == 1 else sympy.Float(float(v))) * s**i for i, v in enumerate(q)])
                return P / Qs

            yield Candidate("series Pade", build, pred, f"Pade [{L}/{M}] at x = {x0:.6g}")
