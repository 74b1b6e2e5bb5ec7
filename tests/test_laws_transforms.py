"""Transforms that make a piece polynomial (1/y^2, sin y, sin x), read from trained ensembles.

Each property is checked on a small trained ensemble twice: on a law where it holds (the exact
series test, or the closed-form solver, must find it) and on a look-alike where it does not
(they must stay quiet). The closed-form solver gets the ensemble as its model, as inside the
decomposition: the members' disagreement, not float64, sets what counts as an exact fit.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch
from sklearn.cluster import KMeans

from discovery.closedform import solve_piece
from discovery.engine import expand
from discovery.fit import fit_ensemble
from discovery.interpret import polynomial_transforms
from oracle import OriginalUnits, TwoInputLaw

BUDGET = 60.0  # far above what a call needs, so that results do not depend on machine load


def _fit(law, low, high, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, (n, len(low)))
    fit = fit_ensemble(X, law(*X.T), members=4, hidden=(32, 32), max_epochs=300, patience=50, lbfgs_steps=100,
                       seed=seed, progress=False)
    return X, fit


def _transforms(law, low, high, n=1200) -> dict:
    """Degree found per transform (None: not polynomial below order 3) for an ensemble of ``law``."""
    X, fit = _fit(law, low, high, n)
    Z = (X[fit.train_index] - fit.x_mean) / fit.x_scale
    centres = KMeans(16, n_init=2, random_state=0).fit(Z).cluster_centers_
    e = expand(fit.model, torch.from_numpy(centres), 3)
    return {r.detail["transform"]: r.detail["degree"] for r in polynomial_transforms(e, units=fit)}


def _piece(law, low, high, names, n=600):
    """solve_piece on the ensemble's mean prediction, with the ensemble as the model."""
    X, fit = _fit(law, low, high, n)
    model = OriginalUnits(fit)
    with torch.no_grad():
        y = model(torch.as_tensor(X)).mean(dim=1).numpy()
    return solve_piece(X, y, names, val_index=np.arange(0, n, 4), model=model, engine="off", time_budget=BUDGET)


def _same(found: sympy.Expr, truth: sympy.Expr) -> bool:
    """Equal after rounding every constant to 3 significant digits (positive symbols)."""
    rounded = found.xreplace({f: sympy.Rational(f"{float(f):.3g}") for f in found.atoms(sympy.Float)})
    pos = {s: sympy.Symbol(s.name, positive=True) for s in rounded.free_symbols | truth.free_symbols}
    a, b = rounded.xreplace(pos), truth.xreplace(pos)
    return sympy.simplify(a - b) == 0 or sympy.simplify(a / b) == 1


# -- the exact series test (polynomial_transforms) -------------------------------------------------

def test_the_inverse_square_of_a_lorentz_factor_is_polynomial(one_thread):
    found = _transforms(lambda u: 1.0 / np.sqrt(1.0 - u**2), [0.05], [0.75])
    assert found["1/y**2"] == 2, found  # 1 - u^2
    assert found["y"] is None and found["1/y"] is None, found


def test_no_polynomial_inverse_square_of_an_exponential(one_thread):
    found = _transforms(lambda u: np.exp(u), [0.0], [2.0])
    assert found["1/y**2"] is None and found["log(y)"] == 1, found


def test_the_sine_of_an_arcsine_is_polynomial(one_thread):
    found = _transforms(lambda u: np.arcsin(u), [0.0], [0.9])
    assert found["sin(y)"] == 1, found
    assert found["y"] is None, found


def test_no_polynomial_sine_of_an_arctangent(one_thread):
    found = _transforms(lambda u: np.arctan(u), [0.0], [1.5])
    assert found["sin(y)"] is None, found  # u / sqrt(1 + u^2)


def test_a_sine_is_polynomial_in_the_sine_of_its_input(one_thread):
    found = _transforms(lambda t: 2.0 * np.sin(t), [0.1], [1.5])
    assert found["sin(x0)"] == 1, found
    assert found["y"] is None, found


def test_a_cosine_is_not_polynomial_in_the_sine_of_its_input(one_thread):
    found = _transforms(lambda t: 2.0 * np.cos(t), [0.1], [1.5])
    assert found["sin(x0)"] is None, found  # cos t = sqrt(1 - sin^2 t)


# -- the closed-form solver on pieces read from a trained ensemble -------------------------------

@pytest.mark.slow
def test_a_lorentz_factor_piece_is_solved_through_its_inverse_square(one_thread):
    piece = _piece(lambda u: 1.0 / np.sqrt(1.0 - u**2), [0.05], [0.75], ["u"])
    u = sympy.Symbol("u")
    # the 1/y^2 polynomial, or the square root of a rational whose numerator snapped to a constant: one form
    assert ("for 1/y^2" in piece.method or "square root of" in piece.method) \
        and not piece.method.startswith("approximate"), piece.evidence
    assert _same(piece.expression, 1 / sympy.sqrt(1 - u**2)), piece.expression


@pytest.mark.slow
def test_a_power_that_is_no_inverse_square_root_is_not_read_as_one(one_thread):
    # 1/y^2 = (1 - u^2)^0.8: a long Taylor polynomial may still match it within the members'
    # disagreement, but no low-degree one (the lorentz factor's is degree 2)
    piece = _piece(lambda u: (1.0 - u**2) ** -0.4, [0.05], [0.75], ["u"])
    low = [f"(degree {d}) in x for 1/y^2" for d in (1, 2)] + [f"(degree {d}) in x^2 for 1/y^2" for d in (1, 2)]
    assert not any(text in piece.method for text in low), piece.evidence


@pytest.mark.slow
def test_an_angle_of_refraction_is_solved_through_its_sine(one_thread):
    piece = _piece(lambda r, t: np.arcsin(r * np.sin(t)), [0.4, 0.1], [1.0, 1.5], ["r", "t"])
    r, t = sympy.symbols("r t")
    assert "for sin y" in piece.method and not piece.method.startswith("approximate"), piece.evidence
    assert _same(piece.expression, sympy.asin(r * sympy.sin(t))), piece.expression


@pytest.mark.slow
def test_an_arctangent_is_not_read_through_its_sine(one_thread):
    piece = _piece(lambda r, t: np.arctan(r * np.sin(t)), [0.4, 0.1], [1.0, 1.5], ["r", "t"])
    assert "for sin y" not in piece.method, piece.evidence


# -- exact functions (single model) ---------------------------------------------------------------

@pytest.mark.parametrize("fn, expected", [
    (lambda a, b: torch.sin(0.5 * a + 0.3 * b), ("asin(y)", 1)),  # the arcsine's series, every coefficient
    (lambda a, b: 2.0 * a * torch.sin(b), ("sin(x1)", 2)),
    (lambda a, b: 1.0 / torch.sqrt(1.0 + a ** 2 + b), ("1/y**2", 2)),
])
def test_transforms_of_exact_functions(fn, expected):
    points = torch.rand(25, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.2
    best = polynomial_transforms(expand(TwoInputLaw(fn), points, 3))[0]
    assert (best.detail["transform"], best.detail["degree"]) == expected, best.detail
