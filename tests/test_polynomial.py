"""Property tests of the truncated-polynomial algebra the engine is built on."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.engine import univariate as U
from discovery.engine.polynomial import (
    degree_slices,
    evaluate,
    monomials,
    n_terms,
    shift_coefficients,
)
from discovery.engine.series import Algebra

DT = torch.float64
shapes = st.tuples(st.integers(1, 3), st.integers(0, 5))  # (p, order)


def _random(seed: int, *shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT)


def _brute_product(table: np.ndarray, a: np.ndarray, b: np.ndarray, order: int) -> np.ndarray:
    index = {tuple(r): k for k, r in enumerate(table)}
    out = np.zeros_like(a)
    for i, j in itertools.product(range(len(table)), repeat=2):
        m = tuple(table[i] + table[j])
        if sum(m) <= order:
            out[index[m]] += a[i] * b[j]
    return out


def test_monomials_are_graded_and_complete():
    table = monomials(3, 4)
    assert len(table) == n_terms(3, 4) == math.comb(7, 4)
    assert len({tuple(r) for r in table}) == len(table)
    degrees = table.sum(axis=1)
    assert (np.diff(degrees) >= 0).all()
    for k, sl in enumerate(degree_slices(3, 4)):
        assert (degrees[sl] == k).all()
    assert table[1:4].tolist() == np.eye(3, dtype=int).tolist()


@settings(max_examples=30, deadline=None)
@given(shapes, st.integers(0, 2**31 - 1))
def test_product_matches_term_by_term_expansion(shape, seed):
    p, order = shape
    alg = Algebra(p, order)
    a, b = _random(seed, alg.n_terms, 2), _random(seed + 1, alg.n_terms, 2)
    got = alg.mul(a, b)
    for col in range(2):
        want = _brute_product(alg.monomials, a[:, col].numpy(), b[:, col].numpy(), order)
        np.testing.assert_allclose(got[:, col].numpy(), want, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(shapes, st.integers(0, 2**31 - 1))
def test_product_is_the_product_of_values_when_nothing_is_truncated(shape, seed):
    p, order = shape
    low = order // 2
    alg = Algebra(p, order)
    mask = torch.from_numpy(alg.monomials.sum(1) <= low).to(DT)
    a = _random(seed, alg.n_terms, 1) * mask[:, None]
    b = _random(seed + 7, alg.n_terms, 1) * mask[:, None]
    center = torch.zeros(1, p, dtype=DT)
    x = _random(seed + 3, 6, p)
    prod = alg.mul(a, b)
    lhs = evaluate(prod.T[:, :, None], alg.monomials, center, x)
    va = evaluate(a.T[:, :, None], alg.monomials, center, x)
    vb = evaluate(b.T[:, :, None], alg.monomials, center, x)
    torch.testing.assert_close(lhs, va * vb, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(shapes, st.integers(0, 2**31 - 1))
def test_shift_round_trip_and_value_preservation(shape, seed):
    p, order = shape
    table = monomials(p, order)
    coeffs = _random(seed, 2, len(table), 3)
    c0, c1 = _random(seed + 1, 2, p), _random(seed + 2, 2, p)
    shifted = shift_coefficients(coeffs, table, c0, c1)
    back = shift_coefficients(shifted, table, c1, c0)
    torch.testing.assert_close(back, coeffs, rtol=1e-9, atol=1e-9)
    x = _random(seed + 3, 5, p)
    torch.testing.assert_close(evaluate(shifted, table, c1, x), evaluate(coeffs, table, c0, x), rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(shapes, st.integers(0, 2**31 - 1))
def test_composition_equals_power_series_of_products(shape, seed):
    p, order = shape
    alg = Algebra(p, order)
    a = _random(seed, alg.n_terms, 4)
    c = _random(seed + 5, order + 1, 4)  # arbitrary univariate coefficients at a[0]
    got = alg.compose(a, c)
    v = a.clone()
    v[0] = 0
    want = torch.zeros_like(a)
    power = torch.zeros_like(a)
    power[0] = 1
    for k in range(order + 1):
        want = want + c[k] * power
        power = alg.mul(v, power)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)
    # The affine fast path gives the same result on an affine argument.
    affine = a.clone()
    affine[p + 1 :] = 0
    torch.testing.assert_close(alg.compose(affine, c, degree=1), alg.compose(affine, c), rtol=1e-11, atol=1e-11)


x_sym = sympy.Symbol("x", real=True)
JETS = {
    "exp": (U.exp, sympy.exp(x_sym), (-2.0, 2.0)),
    "log": (U.log, sympy.log(x_sym), (0.3, 3.0)),
    "tanh": (U.tanh, sympy.tanh(x_sym), (-2.0, 2.0)),
    "sigmoid": (U.sigmoid, 1 / (1 + sympy.exp(-x_sym)), (-3.0, 3.0)),
    "sin": (lambda a: U.sin_cos(a)[0], sympy.sin(x_sym), (-3.0, 3.0)),
    "cos": (lambda a: U.sin_cos(a)[1], sympy.cos(x_sym), (-3.0, 3.0)),
    "reciprocal": (U.reciprocal, 1 / x_sym, (0.5, 2.0)),
    "power_-1.5": (lambda a: U.power(a, -1.5), x_sym ** sympy.Rational(-3, 2), (0.5, 2.0)),
    "erf": (U.erf, sympy.erf(x_sym), (-1.5, 1.5)),
}


@pytest.mark.parametrize("name", sorted(JETS))
def test_univariate_recurrences_match_symbolic_derivatives(name):
    fn, expr, (lo, hi) = JETS[name]
    order = 7
    x0 = torch.linspace(lo, hi, 5, dtype=DT)
    got = fn(U.variable(x0, order))
    for k in range(order + 1):
        dk = sympy.lambdify(x_sym, sympy.diff(expr, x_sym, k) / math.factorial(k), "mpmath")
        want = torch.tensor([float(dk(float(v))) for v in x0], dtype=DT)
        torch.testing.assert_close(got[k], want, rtol=1e-11, atol=1e-13, msg=f"{name}, coefficient {k}")


def test_jet_product_and_chain_through_a_nonidentity_argument():
    # tanh(a(t)) with a(t) = 0.3 + 2t - t^2: compare with sympy's series.
    t = sympy.Symbol("t")
    order = 6
    a = torch.zeros(order + 1, 1, dtype=DT)
    a[0], a[1], a[2] = 0.3, 2.0, -1.0
    got = U.tanh(a)[:, 0]
    series = sympy.series(sympy.tanh(sympy.Rational(3, 10) + 2 * t - t**2), t, 0, order + 1).removeO()
    want = torch.tensor([float(series.coeff(t, k)) for k in range(order + 1)], dtype=DT)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
