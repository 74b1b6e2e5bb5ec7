"""solve_piece: closed forms of 1-3 input pieces from data and from exact series."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

from discovery.closedform import Piece, solve_piece
from discovery.errors import DataError
from oracle import OriginalUnits

N = 240
VAL = np.arange(0, N, 3)
BUDGET = 60.0
"""A cap well above the few seconds each call needs, so results do not depend on machine load."""

LAWS = {
    # name: (numpy law, SymPy truth as a function of the symbols, input range, inputs)
    "sin(2x)+1": (lambda x: np.sin(2 * x) + 1, lambda x: sympy.sin(2 * x) + 1, (0.1, 3.0), 1),
    "x*exp(-x)": (lambda x: x * np.exp(-x), lambda x: x * sympy.exp(-x), (0.0, 4.0), 1),
    "1/(1+x^2)": (lambda x: 1 / (1 + x**2), lambda x: 1 / (1 + x**2), (-2.0, 2.0), 1),
    "x**1.5": (lambda x: x**1.5, lambda x: x ** sympy.Rational(3, 2), (0.1, 4.0), 1),
    "arctan(x)": (np.arctan, sympy.atan, (-3.0, 3.0), 1),
    "log(1+x)": (lambda x: np.log(1 + x), lambda x: sympy.log(1 + x), (0.0, 4.0), 1),
    "sqrt(x^2+y^2)": (lambda x, y: np.sqrt(x**2 + y**2), lambda x, y: sympy.sqrt(x**2 + y**2), (-2.0, 2.0), 2),
    "exp(-x/y)": (lambda x, y: np.exp(-x / y), lambda x, y: sympy.exp(-x / y), (0.5, 2.0), 2),
    "(a+b)/(1+a*b)": (lambda a, b: (a + b) / (1 + a * b), lambda a, b: (a + b) / (1 + a * b), (0.0, 0.9), 2),
    # outer constants keep these from being a transformed polynomial: g of a monomial (pair)
    "2sin(xy)+1": (lambda x, y: 2 * np.sin(x * y) + 1, lambda x, y: 2 * sympy.sin(x * y) + 1, (0.0, 2.0), 2),
    "2exp(-x^2-y^2)+1": (lambda x, y: 2 * np.exp(-(x**2) - y**2) + 1,
                         lambda x, y: 2 * sympy.exp(-(x**2) - y**2) + 1, (-1.5, 1.5), 2),
}


def _data(name: str, noise: float, seed: int = 0):
    law, truth, (lo, hi), k = LAWS[name]
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, (N, k))
    y = law(*X.T)
    if noise:
        y = y + noise * np.std(y) * rng.standard_normal(N)
    names = ["x", "y"][:k]
    return X, y, names, truth


def same_form(found: sympy.Expr, truth: sympy.Expr, lo: float) -> bool:
    """Equal after rounding every constant of ``found`` to 3 significant digits (symbols taken
    positive when the inputs are, so that ``sqrt(x**3)`` and ``x**(3/2)`` compare equal)."""
    rounded = found.xreplace({f: sympy.Rational(f"{float(f):.3g}") for f in found.atoms(sympy.Float)})
    subs = {s: sympy.Symbol(s.name, positive=True) if lo > 0 else sympy.Symbol(s.name, real=True)
            for s in rounded.free_symbols | truth.free_symbols}
    a, b = rounded.xreplace(subs), truth.xreplace(subs)
    if sympy.simplify(a - b) == 0:
        return True
    return sympy.simplify(a / b) == 1


@pytest.mark.parametrize("name", list(LAWS))
def test_exact_recovery_from_noise_free_data(name):
    X, y, names, truth = _data(name, 0.0)
    piece = solve_piece(X, y, names, val_index=VAL, engine="off", time_budget=BUDGET)
    symbols = [sympy.Symbol(n) for n in names]
    assert isinstance(piece, Piece)
    assert same_form(piece.expression, truth(*symbols), LAWS[name][2][0]), (piece.expression, piece.evidence)
    assert not piece.method.startswith("approximate")
    assert piece.val_r2 > 1 - 1e-12


@pytest.mark.parametrize("law, truth", [
    # a loop's field along its axis, per unit field at the centre
    (lambda x: (1 + x**2) ** -1.5, lambda x: (1 + x**2) ** sympy.Rational(-3, 2)),
    (lambda x: (1 + x**2) ** 1.5, lambda x: (1 + x**2) ** sympy.Rational(3, 2)),
])
def test_three_halves_powers_from_noise_free_data(law, truth):
    # at 1 % noise the linearised |y|^(-2/3) fit amplifies the noise where y is small, and a
    # rational function wins: these forms are recovered from exact data (or a piece's series) only
    X = np.random.default_rng(0).uniform(0.0, 3.0, (N, 1))
    piece = solve_piece(X, law(X[:, 0]), ["x"], val_index=VAL, engine="off", time_budget=BUDGET)
    assert same_form(piece.expression, truth(sympy.Symbol("x")), 0.0), (piece.expression, piece.evidence)
    assert not piece.method.startswith("approximate")


@pytest.mark.parametrize("name", list(LAWS))
def test_right_form_with_one_percent_noise(name):
    X, y, names, truth = _data(name, 0.01, seed=1)
    piece = solve_piece(X, y, names, val_index=VAL, engine="off", time_budget=BUDGET)
    symbols = [sympy.Symbol(n) for n in names]
    assert same_form(piece.expression, truth(*symbols), LAWS[name][2][0]), (piece.expression, piece.evidence)
    assert not piece.method.startswith("approximate"), piece.evidence
    # the residual is the noise: val rmse within a few tens of percent of 1 % of the spread
    assert piece.val_rmse < 1.5 * 0.01 * np.std(y)


@pytest.mark.parametrize("law, truth, lo, hi", [
    # a piece cut from a law keeps its additive constant: kinetic energy over m c^2 is gamma - 1
    (lambda u: 3 / np.sqrt(1 - u**2) - 3, lambda u: 3 / sympy.sqrt(1 - u**2) - 3, 0.1, 0.67),
    (lambda x: 2 - 1 / np.sqrt(1 + x**2), lambda x: 2 - 1 / sympy.sqrt(1 + x**2), 0.0, 3.0),
])
@pytest.mark.parametrize("rows", [N, 5 * N])  # 5 N: the scan for the shift reads a subset of the training rows
def test_a_shifted_target_is_read_through_its_transform(law, truth, lo, hi, rows):
    X = np.random.default_rng(0).uniform(lo, hi, (rows, 1))
    piece = solve_piece(X, law(X[:, 0]), ["x"], val_index=np.arange(0, rows, 3), engine="off", time_budget=BUDGET)
    assert same_form(piece.expression, truth(sympy.Symbol("x")), lo), (piece.expression, piece.evidence)
    assert not piece.method.startswith("approximate"), piece.evidence


def test_shifted_forms_are_tried_only_where_no_form_fits_yet(monkeypatch):
    import discovery.closedform as closedform

    calls = []
    real = closedform.shifted_polynomials
    monkeypatch.setattr(closedform, "shifted_polynomials", lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(0)
    X = rng.uniform(-2.0, 2.0, (N, 1))
    y = 1 / (1 + X[:, 0] ** 2)
    exact = solve_piece(X, y, ["x"], val_index=VAL, engine="off", time_budget=BUDGET)
    assert calls == [], exact.evidence  # 1/y = 1 + x^2 fits to float64 first
    assert "shifted transformed polynomials not tried" in exact.evidence
    # with noise nothing fits to what the rows resolve, and the shifted forms compete
    solve_piece(X, y + 0.01 * rng.standard_normal(N), ["x"], val_index=VAL, engine="off", time_budget=BUDGET)
    assert calls == [1]


def test_a_root_of_a_sum_of_squared_products():
    # E = sqrt(p^2 c^2 + m^2 c^4): E^2 is a polynomial of degree 6 in the raw inputs (84 terms:
    # the rows must outnumber them twice over)
    X = np.random.default_rng(0).uniform(1.0, 3.0, (3 * N, 3))
    p, c, m = X.T
    piece = solve_piece(X, np.sqrt(p**2 * c**2 + m**2 * c**4), ["p", "c", "m"], val_index=np.arange(0, 3 * N, 3),
                        engine="off", time_budget=BUDGET)
    P, C, M = sympy.symbols("p c m")
    assert same_form(piece.expression, sympy.sqrt(P**2 * C**2 + M**2 * C**4), 1.0), piece.evidence
    assert not piece.method.startswith("approximate"), piece.evidence


def test_pure_noise_is_not_called_exact():
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (N, 1))
    y = rng.standard_normal(N)
    piece = solve_piece(X, y, ["x"], val_index=VAL, engine="off", time_budget=BUDGET)
    assert piece.method.startswith("approximate")
    assert piece.val_r2 < 0.1
    assert "not significantly better than a constant" in piece.evidence


def test_smooth_law_outside_the_families_is_approximate():
    # a Bessel function has no closed form in these families: whatever fits best leaves
    # smooth structure in its residuals, and the method says so
    from scipy.special import j0

    rng = np.random.default_rng(4)
    X = rng.uniform(0, 12, (N, 1))
    piece = solve_piece(X, j0(X[:, 0]), ["x"], val_index=VAL, engine="off", time_budget=BUDGET)
    assert piece.method.startswith("approximate"), (piece.expression, piece.evidence)


class _Sine(torch.nn.Module):
    def forward(self, x):
        return torch.sin(2 * x[:, 0]) + 1


class _Lorentzian(torch.nn.Module):
    def forward(self, x):
        return 1 / (1 + x[:, 0] ** 2)


@pytest.mark.parametrize("model, truth, lo, hi, family", [
    (_Sine(), lambda x: sympy.sin(2 * x) + 1, 0.1, 3.0, "series ODE"),
    (_Lorentzian(), lambda x: 1 / (1 + x**2), -2.0, 2.0, "series Pade"),
])
def test_model_series_propose_the_closed_form(model, truth, lo, hi, family):
    rng = np.random.default_rng(5)
    X = rng.uniform(lo, hi, (N, 1))
    with torch.no_grad():
        y = model(torch.as_tensor(X)).numpy()
    piece = solve_piece(X, y, ["x"], val_index=VAL, model=model, engine="off", time_budget=BUDGET)
    x = sympy.Symbol("x")
    rows = piece.candidates[piece.candidates["method"].str.startswith(family)]
    assert any(same_form(e, truth(x), lo) for e in rows["expression"]), rows
    assert same_form(piece.expression, truth(x), lo)
    assert "series tests" in piece.evidence


def test_names_with_spaces_and_unicode_become_symbols_as_given():
    rng = np.random.default_rng(6)
    X = rng.uniform(0.5, 2, (N, 2))
    names = ["x position", "Δt"]
    piece = solve_piece(X, X[:, 0] / X[:, 1], names, val_index=VAL, engine="off", time_budget=BUDGET)
    a, b = sympy.Symbol("x position"), sympy.Symbol("Δt")
    assert piece.expression.free_symbols == {a, b}
    assert sympy.simplify(piece.expression - a / b) == 0


def test_deterministic_given_seed():
    X, y, names, _ = _data("x*exp(-x)", 0.01, seed=2)
    p1 = solve_piece(X, y, names, val_index=VAL, engine="off", seed=7, time_budget=BUDGET)
    p2 = solve_piece(X, y, names, val_index=VAL, engine="off", seed=7, time_budget=BUDGET)
    assert p1.expression == p2.expression
    assert p1.candidates["expression"].map(str).tolist() == p2.candidates["expression"].map(str).tolist()


def test_time_budget_is_respected_and_reported():
    X, y, names, _ = _data("exp(-x/y)", 0.0)
    piece = solve_piece(X, y, names, val_index=VAL, engine="off", time_budget=0.05)
    assert "time budget" in piece.evidence
    assert np.isfinite(piece.val_rmse)


@pytest.mark.slow
def test_operon_front_joins_the_candidates():
    # slow: the first import of pyoperon.sklearn alone takes seconds
    pytest.importorskip("pyoperon")
    X, y, names, truth = _data("arctan(x)", 0.01, seed=3)
    piece = solve_piece(X, y, names, val_index=VAL, engine="operon", time_budget=20.0)
    operon = piece.candidates[piece.candidates["method"].str.startswith("operon")]
    assert len(operon) > 0, piece.evidence
    assert np.isfinite(operon["val_rmse"]).all()
    assert same_form(piece.expression, truth(sympy.Symbol("x")), -3.0)


def test_auto_engine_skips_operon_when_a_candidate_is_exact():
    X, y, names, _ = _data("1/(1+x^2)", 0.0)
    piece = solve_piece(X, y, names, val_index=VAL, engine="auto", time_budget=BUDGET)
    assert "Operon not run: a candidate already fits to what the data resolve" in piece.evidence
    assert not piece.candidates["method"].str.startswith("operon").any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(val_index=[]), "val_index"),
    (dict(val_index=[0, 1, 2, 3, 10_000]), "val_index"),
    (dict(val_index=VAL, engine="pysr"), "engine"),
])
def test_bad_arguments_raise_data_error(kwargs, message):
    X, y, names, _ = _data("log(1+x)", 0.0)
    with pytest.raises(DataError, match=message):
        solve_piece(X, y, names, **kwargs)


@pytest.mark.slow
def test_piece_read_from_a_trained_ensemble(one_thread):
    # the decomposition hands over the ensemble's own predictions: the members' disagreement,
    # not float64, sets what counts as an exact fit
    from discovery.fit import fit_ensemble

    rng = np.random.default_rng(8)
    X = rng.uniform(0.1, 3.0, (400, 1))
    y = np.sin(2 * X[:, 0]) + 1 + 0.01 * rng.standard_normal(400)
    fitted = fit_ensemble(X, y, members=4, hidden=(16, 16), max_epochs=300, progress=False, seed=0)
    model = OriginalUnits(fitted)
    with torch.no_grad():
        target = model(torch.as_tensor(X)).mean(dim=1).numpy()
    piece = solve_piece(X, target, ["x"], val_index=np.arange(0, 400, 4), model=model, engine="off", time_budget=BUDGET)
    assert same_form(piece.expression, sympy.sin(2 * sympy.Symbol("x")) + 1, 0.1), piece.evidence
    assert not piece.method.startswith("approximate"), piece.evidence
    assert "ensemble members disagree" in piece.evidence
