"""Closed forms of pieces the decomposition hands over, read from trained ensembles.

A piece's values come from an ensemble, whose error is smooth: families fitted with an
information criterion keep terms that follow it, and a tidy look-alike may tie with the law.
Each family below is checked on a small trained ensemble twice: on a law of its form (the
solver must return it) and on a look-alike outside it (the solver must not return that form).
The solver gets the ensemble as its model, as inside the decomposition.
"""

from __future__ import annotations

import numpy as np
import sympy
import torch

from discovery.closedform import solve_piece
from discovery.fit import fit_ensemble

BUDGET = 60.0  # far above what a call needs, so that results do not depend on machine load


def _piece(law, low, high, names, block=None, n=1200, seed=0):
    """solve_piece on the mean prediction of an ensemble trained on ``law``, with the ensemble as
    the model. With ``block``, the piece is the ensemble on the slice where the other inputs sit
    at their medians, as a multiplicative or additive split hands it over."""
    from discovery.slices import Restricted

    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, (n, len(low)))
    fit = fit_ensemble(X, law(*X.T), members=4, hidden=(32, 32), max_epochs=300, patience=50, lbfgs_steps=100,
                       seed=seed, progress=False)
    block = list(range(len(low))) if block is None else block
    source = Restricted(fit, block, np.median(X, axis=0))
    model = source.members_module()
    Xb = X[:, block]
    with torch.no_grad():
        y = model(torch.as_tensor(Xb)).mean(dim=1).numpy()
    return solve_piece(Xb, y, names, val_index=np.arange(0, n, 4), model=model, engine="off", time_budget=BUDGET)


def _same(found: sympy.Expr, truth: sympy.Expr, digits: int = 2) -> bool:
    """Equal after rounding every constant to ``digits`` significant digits (positive symbols)."""
    rounded = found.xreplace({f: sympy.Rational(f"{float(f):.{digits}g}") for f in found.atoms(sympy.Float)})
    pos = {s: sympy.Symbol(s.name, positive=True) for s in rounded.free_symbols | truth.free_symbols}
    a, b = rounded.xreplace(pos), truth.xreplace(pos)
    return sympy.simplify(a - b) == 0


N1, N2 = sympy.symbols("n1 n2")


def test_sum_of_two_monomials_is_found_on_an_ensemble():
    # Rydberg's bracket: the sum of two inverse squares, each in one input
    piece = _piece(lambda r, a, b: r / a**2 - r / b**2, [1, 1, 3], [2, 2, 5], ["n1", "n2"], block=[1, 2])
    terms = sympy.Add.make_args(sympy.expand(piece.expression))
    assert len(terms) <= 3 and {t.as_coeff_Mul()[1] for t in terms} <= {1 / N1**2, 1 / N2**2, sympy.S.One}, \
        (piece.method, piece.expression)


def test_sum_of_two_monomials_stays_quiet_on_a_curved_look_alike():
    # the same sum inside sinh, curved on the rows: no sum of two monomials explains it
    piece = _piece(lambda r, a, b: np.sinh(2 * r / a**2 - 2 * r / b**2), [1, 1, 3], [2, 2, 5], ["n1", "n2"],
                   block=[1, 2])
    assert not piece.method.startswith("monomial sum"), (piece.method, piece.expression)
    assert not piece.method.startswith("approximate"), (piece.method, piece.expression)


C, VR, VS, U = sympy.symbols("c vr vs u")


def test_rational_of_degree_zero_is_found_on_an_ensemble():
    # the sound Doppler factor: a denominator without constant, c - vs
    piece = _piece(lambda c, r, s: (c + r) / (c - s), [300, 0, 0], [350, 30, 30], ["c", "vr", "vs"])
    assert not piece.method.startswith("approximate"), (piece.method, piece.expression)
    assert _same(sympy.cancel(piece.expression), (C + VR) / (C - VS)), (piece.method, piece.expression)


def test_square_root_of_a_rational_is_found_on_an_ensemble():
    # the relativistic Doppler factor of u = v/c
    piece = _piece(lambda u: np.sqrt((1 + u) / (1 - u)), [0.1], [0.67], ["u"])
    assert not piece.method.startswith("approximate"), (piece.method, piece.expression)
    assert _same(piece.expression ** 2, (1 + U) / (1 - U)), (piece.method, piece.expression)


def test_square_root_of_a_rational_stays_quiet_on_a_look_alike():
    # a cube root of the same rational: its square is no rational of low degree the rows resolve
    piece = _piece(lambda u: np.cbrt(3 * (1 + u) / (1 - u)), [0.1], [0.67], ["u"])
    assert "square root of" not in piece.method, (piece.method, piece.expression)


def test_rational_of_degree_zero_stays_quiet_on_a_look_alike():
    # the same ratio to the power 3/2: of degree 0, but no rational
    piece = _piece(lambda c, r, s: ((c + r) / (c - s)) ** 1.5, [300, 0, 0], [350, 30, 30], ["c", "vr", "vs"])
    assert "normalised by" not in piece.method, (piece.method, piece.expression)
