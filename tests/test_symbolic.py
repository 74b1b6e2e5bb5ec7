"""Polynomials as SymPy, exact unit algebra, log space and printing (exact strings)."""

import numpy as np
import pytest
import sympy
import torch

from discovery.engine.polynomial import evaluate, monomials
from discovery.symbolic import (
    clean_number,
    latex,
    latex_name,
    make_symbols,
    placeholders,
    polynomial_to_sympy,
    text,
    tidy,
    to_original_units,
)

x1, x2, m1, m2, r, g, h = sympy.symbols("x1 x2 m1 m2 r g h", real=True)


def test_polynomial_to_sympy_uses_names_and_center():
    table = monomials(2, 2)  # 1, x1, x2, x1^2, x1 x2, x2^2
    expr = polynomial_to_sympy(table, [1.0, 0, 2, 0, 0.5, 0], center=[1.0, -2.0], names=["x1", "x2"])
    assert sympy.expand(expr - (1 + 2 * (x2 + 2) + sympy.Rational(1, 2) * (x1 - 1) * (x2 + 2))) == 0
    assert "(x1 - 1)" in str(expr) and "(x2 + 2)" in str(expr)  # kept in centred form
    assert all(s.is_real for s in expr.free_symbols)


def test_polynomial_to_sympy_matches_numeric_evaluation():
    rng = np.random.default_rng(0)
    table = monomials(3, 3)
    coef = rng.standard_normal(len(table))
    center = rng.standard_normal(3)
    X = rng.standard_normal((5, 3))
    expr = polynomial_to_sympy(table, coef, center, ["a", "b", "c"])
    f = sympy.lambdify(sympy.symbols("a b c", real=True), expr)
    numeric = evaluate(torch.from_numpy(coef)[None, :, None], table, torch.from_numpy(center)[None], torch.from_numpy(X))
    np.testing.assert_allclose(f(*X.T), numeric[0, :, 0].numpy(), rtol=1e-12)


def test_standardised_polynomial_converts_to_known_polynomial_in_x():
    # y = 3 + 2 x1 - x1 x2 + 0.25 x2^2 written in z = (x - mean)/scale, target (y - 7)/4.
    table = monomials(2, 2)
    mean, scale, y_mean, y_scale = np.array([1.5, -2.0]), np.array([2.0, 0.5]), 7.0, 4.0
    true_x = {(0, 0): 3.0, (1, 0): 2.0, (1, 1): -1.0, (0, 2): 0.25}
    coef_x = np.array([true_x.get(tuple(a), 0.0) for a in table])
    z0 = np.array([0.3, -0.4])
    x0 = mean + scale * z0
    # Local polynomial of the true law at x0, then expressed in z around z0 by hand.
    shifted = __import__("discovery.engine.polynomial", fromlist=["shift_coefficients"]).shift_coefficients(
        torch.from_numpy(coef_x)[None, :, None], table, torch.zeros(1, 2, dtype=torch.float64), torch.from_numpy(x0)
    )[0, :, 0].numpy()
    coef_z = shifted * np.prod(scale[None, :] ** table, axis=1) / y_scale
    coef_z[0] -= y_mean / y_scale
    back, center = to_original_units(table, coef_z, z0, mean, scale, y_mean, y_scale)
    np.testing.assert_allclose(center, x0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(back, shifted, rtol=1e-13, atol=1e-13)
    expr = sympy.expand(polynomial_to_sympy(table, back, center, ["x1", "x2"]))
    expected = 3 + 2 * x1 - x1 * x2 + sympy.Rational(1, 4) * x2**2
    assert all(abs(float(c)) < 1e-12 for c in sympy.Poly(expr - expected, x1, x2).coeffs())


def test_to_original_units_batched_shapes():
    table = monomials(2, 1)
    coefs = np.ones((4, 3, 5))
    out, centers = to_original_units(table, torch.from_numpy(coefs), np.zeros((4, 2)), [0, 0], [2.0, 4.0], 1.0, 8.0)
    assert out.shape == (4, 3, 5) and centers.shape == (4, 2)
    np.testing.assert_allclose(out[0, :, 0], [9.0, 4.0, 2.0])
    with pytest.raises(ValueError, match=r"to_original_units\(.*pass shape \(4, 3\)"):
        to_original_units(table, np.ones((4, 2)), np.zeros((4, 2)), [0, 0], [1, 1], 0.0, 1.0)


def test_log_space_affine_is_a_power_law():
    table = monomials(3, 2)
    coef = np.zeros(len(table))
    coef[:4] = [np.log(6.674), 1.0, 1.0, -2.0]
    expr = polynomial_to_sympy(table, coef, None, ["m1", "m2", "r"], space="log")
    assert expr.free_symbols == {m1, m2, r}
    assert sympy.simplify(expr / (m1 * m2 / r**2)).is_Float
    assert latex(expr, precision=4) == r"\frac{6.674 m_{1} m_{2}}{r^{2}}"
    # Exact exponents and an exact prefactor stay exact, also away from the origin.
    c = [sympy.log(2, evaluate=False) + sympy.Rational(1, 8), sympy.Rational(1, 2), 0, 0, 0, 0]
    expr = polynomial_to_sympy(monomials(2, 2), c, [0.25, 0.0], ["g", "h"], space="log")
    assert expr == 2 * sympy.sqrt(g)
    exact = [sympy.log(sympy.Float(6.674), evaluate=False), 1, 1, -2]
    assert polynomial_to_sympy(monomials(3, 1), exact, None, ["m1", "m2", "r"], space="log").args[0] == sympy.Float(6.674)


def test_log_space_non_affine_and_negative_sign():
    table = monomials(1, 2)
    expr = polynomial_to_sympy(table, [0.0, 1.0, 0.5], None, ["x"], space="log", sign=-1)
    x = sympy.Symbol("x", real=True)
    assert expr == -sympy.exp(sympy.log(x) + sympy.Float(0.5) * sympy.log(x) ** 2)


@pytest.mark.parametrize(
    "expr, precision, expected",
    [
        (0.5 * x1**2 + 0.5 * x2, 3, r"0.5 x_{1}^{2} + 0.5 x_{2}"),
        (0.49999 * x1**2 + 0.50001 * x2, 3, r"0.5 x_{1}^{2} + 0.5 x_{2}"),
        (6.674 * m1 * m2 / r**2, 4, r"\frac{6.674 m_{1} m_{2}}{r^{2}}"),
        (6.674 * m1 * m2 / r**2, 3, r"\frac{6.67 m_{1} m_{2}}{r^{2}}"),
        (1.0 * x1**2 - 1.0 * x2**2 + 0.5 * x1 * x2, 3, r"x_{1}^{2} + 0.5 x_{1} x_{2} - x_{2}^{2}"),
        (2.0 * x1 - 3.0, 3, r"2 x_{1} - 3"),
        (1.41421356 * g**0.5 * h**0.5, 3, r"1.41 \sqrt{g} \sqrt{h}"),
        (x1**0.2500001 * x2**-1.5, 3, r"\frac{\sqrt[4]{x_{1}}}{x_{2}^{\frac{3}{2}}}"),
        (x1**0.37, 3, r"x_{1}^{0.37}"),
        (2.5e-7 * x1, 3, r"2.5 \cdot 10^{-7} x_{1}"),
        (1234567.0 * x1, 3, r"1.23 \cdot 10^{6} x_{1}"),
        (0.25 * (x1 - 3.0) ** 2, 3, r"0.25 \left(x_{1} - 3\right)^{2}"),
    ],
)
def test_latex_exact_strings(expr, precision, expected):
    assert latex(expr, precision=precision) == expected


@pytest.mark.parametrize(
    "expr, precision, expected",
    [
        (0.49999 * x1**2 + 0.50001 * x2, 3, "0.5*x1**2 + 0.5*x2"),
        (6.67401 * m1 * m2 / r**2, 4, "6.674*m1*m2/r**2"),
        (1.0 * x1 - 2.0 * x2, 3, "x1 - 2*x2"),
        (x1**0.5000001, 3, "sqrt(x1)"),
        (2.5e-7 * x1, 2, "2.5e-7*x1"),
    ],
)
def test_text_exact_strings(expr, precision, expected):
    assert text(expr, precision=precision) == expected


def test_printing_does_not_change_the_expression():
    expr = 0.49999 * x1
    latex(expr, precision=2)
    assert expr.coeff(x1) == sympy.Float(0.49999)


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(ValueError, match="one coefficient per row"):
        polynomial_to_sympy(monomials(2, 1), [1.0, 2.0])
    with pytest.raises(ValueError, match="one name per variable"):
        polynomial_to_sympy(monomials(2, 1), [1.0, 2.0, 3.0], names=["a"])
    with pytest.raises(ValueError, match="precision >= 1"):
        latex(x1, precision=0)


# ------------------------------------------------------------------------------ column names


@pytest.mark.parametrize("name", ["gamma", "I", "E", "S", "pi", "lambda", "sin", "temp (°C)", "flow rate", "2theta", "Δp"])
def test_symbols_carry_the_column_name_exactly(name):
    # these were renamed to gamma_, I_, E_, temp___C_ ... before
    (symbol,) = make_symbols([name], 1)
    assert symbol.name == name and symbol.is_real
    expr = polynomial_to_sympy(monomials(1, 2), [0.0, 2.0, 0.5], names=[name])
    assert {s.name for s in expr.free_symbols} == {name}
    assert text(expr) == f"0.5*{name}**2 + 2*{name}"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("x1", r"x_{1}"),
        ("m_1", r"m_{1}"),
        ("velocity", r"velocity"),
        ("gamma", r"\gamma"),  # the user spelled a Greek letter: it prints as one
        ("I", r"I"),
        ("E", r"E"),
        ("temp (°C)", r"\mathrm{temp\ (°C)}"),
        ("flow rate", r"\mathrm{flow\ rate}"),
        ("2theta", r"\mathrm{2theta}"),
        ("a_b_c", r"\mathrm{a\_b\_c}"),
        ("x__1", r"\mathrm{x\_\_1}"),
        ("rate%", r"\mathrm{rate\%}"),
        ("Δp", r"\mathrm{Δp}"),
    ],
)
def test_latex_of_column_names(name, expected):
    assert latex_name(name) == expected
    assert latex(sympy.Symbol(name, real=True)) == expected


def test_latex_and_text_of_a_formula_in_unusual_names():
    t, gamma, current = make_symbols(["temp (°C)", "gamma", "I"], 3)
    expr = sympy.Float(0.5) * t**2 + 3 * gamma * current
    assert latex(expr) == r"3 I \gamma + 0.5 \mathrm{temp\ (°C)}^{2}"
    assert text(expr) == "3*I*gamma + 0.5*temp (°C)**2"
    assert latex(t / (1 + gamma)) == r"\frac{\mathrm{temp\ (°C)}}{\gamma + 1}"


def test_placeholders_map_parser_safe_names_back_to_the_users_symbols():
    names = ["temp (°C)", "gamma", "I"]
    safe, back = placeholders(names)
    assert safe == ["x0", "x1", "x2"]
    parsed = sympy.parse_expr("2*x0 + x1*x2")  # what a text-based engine returns
    assert parsed.xreplace(back) == 2 * sympy.Symbol("temp (°C)", real=True) + make_symbols(names, 3)[1] * make_symbols(names, 3)[2]
    # a column literally called x1 moves the stand-ins aside, keeping the map one-to-one
    safe2, back2 = placeholders(["x1", "y"])
    assert safe2 == ["_x0", "_x1"] and [back2[sympy.Symbol(s)].name for s in safe2] == ["x1", "y"]


# --------------------------------------------------------------------------- tidy printing


V, pr, gamma_, a, b = sympy.symbols("V pr gamma a b", real=True)


@pytest.mark.parametrize(
    "expr, expected_text, expected_latex",
    [
        (-4 * V * pr / (4 - 4 * gamma_), "-V*pr/(1 - gamma)", r"- \frac{V pr}{1 - \gamma}"),
        (10 * x1 / (10 * x2 + 10), "x1/(x2 + 1)", r"\frac{x_{1}}{x_{2} + 1}"),
        (-x1 / (-x2 - 1), "x1/(x2 + 1)", r"\frac{x_{1}}{x_{2} + 1}"),
        (6 * x1 / (4 * x2 + 2), "3*x1/(2*x2 + 1)", r"\frac{3 x_{1}}{2 x_{2} + 1}"),
        (sympy.Float(2.5) * a / (sympy.Float(5.0) * b + 5), "0.5*a/(b + 1)", r"\frac{0.5 a}{b + 1}"),
        (x1 / (3 * x2 + 3), "x1/(3*x2 + 3)", r"\frac{x_{1}}{3 x_{2} + 3}"),  # nothing shared: unchanged
        (x1**2 / 2 + x2 / 2, "x1**2/2 + x2/2", r"\frac{x_{1}^{2}}{2} + \frac{x_{2}}{2}"),  # sums stay expanded
        (4 * sympy.sin(2 * x1 / (2 * x2 + 2)), "4*sin(x1/(x2 + 1))", r"4 \sin{\left(\frac{x_{1}}{x_{2} + 1} \right)}"),
    ],
)
def test_formulas_print_with_common_factors_cancelled(expr, expected_text, expected_latex):
    assert text(expr) == expected_text
    assert latex(expr) == expected_latex


def test_tidy_keeps_the_value():
    rng = np.random.default_rng(14)
    exprs = [-4 * V * pr / (4 - 4 * gamma_), 10 * a / (10 * b + 10), -a / (-b - 1), 6 * a / (4 * b + 2) + a**2 / 3,
             sympy.exp(-2 * a / (6 * b - 2)) / (4 * b**2 + 2)]
    for expr in exprs:
        symbols = sorted(expr.free_symbols, key=lambda s: s.name)
        values = rng.uniform(2, 3, (20, len(symbols)))
        before = sympy.lambdify(symbols, expr)(*values.T)
        after = sympy.lambdify(symbols, tidy(expr))(*values.T)
        np.testing.assert_allclose(after, before, rtol=1e-14)


def test_pi_and_square_roots_need_strong_evidence():
    # 1.0472 is pi/3 to 5e-5: at a tolerance of 1e-4 that is a coincidence (the crosscheck's
    # middle snapping pass), at 1e-7 it is evidence.
    assert clean_number(1.0472, 1e-4) == (1.0472, sympy.Float(1.0472))
    assert clean_number(1.04719755, 1e-7)[1] == sympy.pi / 3
    assert clean_number(1.4142, 1e-3)[1] != sympy.sqrt(2)
    assert clean_number(1.41421356, 1e-7)[1] == sympy.sqrt(2)
