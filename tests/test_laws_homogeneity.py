"""Homogeneity from exact derivatives (Euler's identity) and the decomposition step it allows.

``f(lambda x) = lambda^k f(x)`` holds for laws built from quantities of one kind (velocities,
lengths); then ``f = x_j^k g(x_i / x_j)`` has one input fewer. Each check runs on a small
trained ensemble where the property holds and on a look-alike where it does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch
from sklearn.cluster import KMeans

from discovery.decompose import decompose
from discovery.engine import expand
from discovery.fit import fit_ensemble
from discovery.interpret import homogeneity
from oracle import TwoInputLaw


def _rows(law, low, high, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, (n, len(low)))
    return X, law(*X.T)


def _report(law, low, high, n=1200):
    X, y = _rows(law, low, high, n)
    fit = fit_ensemble(X, y, members=4, hidden=(32, 32), max_epochs=300, patience=50, lbfgs_steps=100, seed=0,
                       progress=False)
    Z = (X[fit.train_index] - fit.x_mean) / fit.x_scale
    centres = KMeans(16, n_init=2, random_state=0).fit(Z).cluster_centers_
    return homogeneity(expand(fit.model, torch.from_numpy(centres), 2), units=fit)


def velocity_addition(v, w, c):
    return (v + w) / (1 + v * w / c**2)


def not_homogeneous(v, w, c):
    return (v + w) / (1 + v * w * c)


def test_a_relativistic_velocity_sum_is_homogeneous_of_degree_one(one_thread):
    r = _report(velocity_addition, [1, 1, 3], [5, 5, 10])
    assert r.holds and r.detail["degree"] == 1.0, (r.statistic, r.detail)


def test_an_inverse_length_is_homogeneous_of_degree_minus_one(one_thread):
    r = _report(lambda a, b, c: 1.0 / np.sqrt(a**2 + b * c), [1, 1, 1], [3, 3, 3])
    assert r.holds and r.detail["degree"] == -1.0, (r.statistic, r.detail)


def test_quiet_where_the_inputs_do_not_scale_together(one_thread):
    r = _report(not_homogeneous, [0.2, 0.2, 0.5], [1.0, 1.0, 2.0])
    assert not r.holds, (r.statistic, r.detail)


def test_homogeneity_of_exact_functions():
    points = torch.rand(25, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    r = homogeneity(expand(TwoInputLaw(lambda a, b: a**2 * b ** 1.5 / (a + b)), points, 1))
    assert r.holds and r.detail["degree"] == 2.5, r.detail
    r = homogeneity(expand(TwoInputLaw(lambda a, b: torch.exp(a / b) + a), points, 1))
    assert not r.holds, r.detail


def _steps(node):
    yield node
    for child in node.children:
        yield from _steps(child)


@pytest.mark.slow
def test_the_decomposition_divides_by_a_scale_and_reads_the_rest(one_thread):
    X, y = _rows(velocity_addition, [1, 1, 3], [5, 5, 10], 1000)
    d = decompose(X, y, ["v", "w", "c"], val_index=np.arange(800, 1000), fit_options={"members": 4})
    assert d.tree.test == "homogeneity" and "scale c" in d.tree.evidence, d.tree.to_dict()
    assert d.tree.children[0].variables == ["v/c", "w/c"]
    v, w, c = sympy.symbols("v w c", positive=True)
    found = d.expression.xreplace({sympy.Symbol(n): s for n, s in zip("vwc", (v, w, c))})
    found = found.xreplace({f: sympy.Rational(f"{float(f):.3g}") for f in found.atoms(sympy.Float)})
    assert sympy.simplify(found - velocity_addition(v, w, c)) == 0, d.expression


@pytest.mark.slow
def test_the_scale_leaves_ratios_below_one(one_thread):
    # K = c^2 (1/sqrt(1 - v^2/c^2) - 1) is homogeneous of degree 2 in (v, c); with c as the scale
    # the piece is gamma(v/c) - 1, which the leaf reads; with v it is a series in c/v that it
    # does not
    def kinetic(v, c):
        return c**2 * (1 / np.sqrt(1 - v**2 / c**2) - 1)

    X, y = _rows(kinetic, [1, 3], [2, 10], 1000)
    d = decompose(X, y, ["v", "c"], val_index=np.arange(800, 1000), fit_options={"members": 4})
    assert d.tree.test == "homogeneity" and "scale c" in d.tree.evidence, d.tree.to_dict()
    v, c = sympy.symbols("v c", positive=True)
    found = d.expression.xreplace({sympy.Symbol("v"): v, sympy.Symbol("c"): c})
    found = found.xreplace({f: sympy.Rational(f"{float(f):.3g}") for f in found.atoms(sympy.Float)})
    assert sympy.simplify(found - c**2 * (1 / sympy.sqrt(1 - v**2 / c**2) - 1)) == 0, d.expression


@pytest.mark.slow
def test_no_homogeneity_step_where_the_inputs_do_not_scale_together(one_thread):
    X, y = _rows(not_homogeneous, [0.2, 0.2, 0.5], [1.0, 1.0, 2.0], 1000)
    d = decompose(X, y, ["v", "w", "c"], val_index=np.arange(800, 1000), fit_options={"members": 4})
    assert not any(node.test == "homogeneity" for node in _steps(d.tree)), d.tree.to_dict()
