"""prune_terms: a term of a recombined formula that the validation rows do not need is dropped
(with every constant refitted), a term they need stays."""

import numpy as np
import sympy

from discovery.leaf import prune_terms

q, Ef, B, v, th = sympy.symbols("q Ef B v theta")
SYMBOLS = [q, Ef, B, v, th]


def _rows(noise=0.0):
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.uniform(1, 5, 1200) for _ in range(4)] + [rng.uniform(0, 3, 1200)])
    y = X[:, 0] * (X[:, 1] + X[:, 2] * X[:, 3] * np.sin(X[:, 4]))
    y = y + noise * np.sqrt(np.mean(y**2)) * rng.normal(size=len(y))
    return X, y, np.arange(800), np.arange(800, 1200)


def test_a_spurious_snapped_term_goes_and_the_rest_is_refitted_to_the_law():
    # what a leaf fitted on a piece's inexact data returned for the Lorentz force
    X, y, train, val = _rows()
    found = sympy.Float(0.323426) * q * (sympy.Rational(3, 100) * B * Ef * v + 3 * B * v * sympy.sin(th) + 3 * Ef)
    pruned, dropped = prune_terms(found, SYMBOLS, X, y, train, val)
    assert dropped == [sympy.Rational(3, 100) * B * Ef * v]
    ratio = sympy.simplify(pruned / (q * (Ef + B * v * sympy.sin(th))))
    assert ratio.is_number and abs(float(ratio) - 1) < 1e-9


def test_terms_the_law_has_stay_also_with_noise():
    X, y, train, val = _rows(noise=0.01)
    law = sympy.Float(1.0) * q * (Ef + B * v * sympy.sin(th))
    pruned, dropped = prune_terms(law, SYMBOLS, X, y, train, val)
    assert dropped == [] and pruned == law
