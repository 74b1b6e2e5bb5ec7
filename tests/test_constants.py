"""Constants of a recombined formula: coefficients that noisy rows give twice as two close
numbers are tied, phases snap to quarter turns, a refit keeps a tie, and a formula that turns
complex on the rows evaluates to nan."""

import numpy as np
import sympy

from discovery.leaf import evaluate, refit_constants, snap_constants, tie_coefficients

J, w, m, v = sympy.symbols("J omega m v")
SYMBOLS = [J, w, m, v]


def _rotating_body(noise, second=0.5):
    # kinetic energy of a rolling body: J w^2 / 2 + m v^2 / 2 (or another second coefficient)
    rng = np.random.default_rng(11)
    X = rng.uniform(1, 3, (1200, 4))
    y = 0.5 * X[:, 0] * X[:, 1] ** 2 + second * X[:, 2] * X[:, 3] ** 2
    return X, y + noise * np.sqrt(np.mean(y**2)) * rng.normal(size=len(y)), np.arange(900), np.arange(900, 1200)


def test_two_close_coefficients_of_noisy_rows_become_one():
    X, y, train, val = _rotating_body(0.01)
    found = sympy.Float(0.49962) * J * w**2 + sympy.Float(0.50051) * m * v**2
    tied, said = tie_coefficients(found, SYMBOLS, X, y, train, val)
    assert len({abs(f) for f in tied.atoms(sympy.Float)}) == 1, tied
    assert len(said) == 1 and "0.49962*J*omega**2" in said[0] and "0.50051*m*v**2" in said[0], said
    ratio = sympy.simplify(tied / (J * w**2 + m * v**2))
    assert ratio.is_number and abs(float(ratio) - 0.5) < 2e-3


def test_a_refit_moves_a_shared_coefficient_as_one_constant_whatever_its_signs():
    X, y, train, val = _rotating_body(0.01, second=-0.5)
    c = sympy.Float(0.612345)
    refitted = refit_constants(c * J * w**2 - c * m * v**2, SYMBOLS, X[train], y[train])
    sizes = {abs(f) for f in refitted.atoms(sympy.Float)}
    assert len(sizes) == 1 and abs(float(sizes.pop()) - 0.5) < 2e-3, refitted


def test_coefficients_the_rows_tell_apart_stay_apart():
    X, y, train, val = _rotating_body(0.0, second=0.51)  # 2 % apart, noise-free rows see it
    found = sympy.Float(0.5) * J * w**2 + sympy.Float(0.51) * m * v**2
    tied, said = tie_coefficients(found, SYMBOLS, X, y, train, val)
    assert said == [] and tied == found


def test_a_phase_near_a_quarter_turn_snaps_and_the_sine_becomes_a_cosine():
    x = sympy.Symbol("x")
    X = np.linspace(0, 3, 200)[:, None]
    found = -sympy.Float(0.99999) * sympy.sin(x - sympy.Float(1.57069))
    assert snap_constants(found, [x], X, np.cos(X[:, 0])) == sympy.Float(0.99999) * sympy.cos(x)
    # a phase of 1.5 is no quarter turn; and 1.5707 as a coefficient is not claimed as pi/2
    assert snap_constants(sympy.sin(x + sympy.Float(1.5)), [x], X, np.sin(X[:, 0] + 1.5)).has(sympy.Float(1.5))
    noisy = 1.5707 * X[:, 0] + 0.01 * np.random.default_rng(2).normal(size=len(X))  # pi/2 would fit these
    slope = sympy.Float(1.5707) * x
    assert snap_constants(slope, [x], X, noisy) == slope


def test_a_formula_that_turns_complex_evaluates_to_nan():
    # a constant zeroed by pruning can leave sqrt(-2.0), which SymPy turns into 1.414*I
    x = sympy.Symbol("x")
    out = evaluate(x * sympy.sqrt(sympy.Float(-2.0)), [x], np.array([[1.0], [3.0]]))
    assert np.all(np.isnan(out))
    assert evaluate(sympy.sqrt(x - 2), [x], np.array([[3.0]]))[0] == 1.0
