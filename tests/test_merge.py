"""Merging local polynomials into one global formula (synthetic expansions of known laws).

The merge decides terms from the local polynomials (consensus, spread) and then from a stepwise
least-squares refit on the data, so a test that names the consensus, the pruning or the spread
asserts on values only the local polynomials can give (each fails when they are zeroed); tests
of the data refit say so in their names.
"""

import math

import numpy as np
import pytest
import sympy
import torch

from discovery.engine.polynomial import evaluate, monomials, shift_coefficients
from discovery.errors import DataError
from discovery.merge import MergedFormula, choose_center, clean_number, merge, noise_level


def coefficients_of(table, terms):
    out = np.zeros(len(table))
    rows = [tuple(r) for r in table]
    for alpha, value in terms.items():
        out[rows.index(alpha)] = value
    return out


def polynomial_data(table, coef, X):
    c = torch.from_numpy(coef)[None, :, None]
    return evaluate(c, table, torch.zeros(1, table.shape[1], dtype=torch.float64), torch.from_numpy(X))[0, :, 0].numpy()


def local_expansions(table, coef, centers, rng, members=5, noise=0.01):
    """Exact local polynomials of ``sum coef x^alpha`` at ``centers`` plus coefficient noise
    growing with degree, as a trained network's expansions would have."""
    B = len(centers)
    c = torch.from_numpy(np.repeat(coef[None, :, None], B, axis=0))
    local = shift_coefficients(c, table, torch.zeros(B, table.shape[1], dtype=torch.float64), torch.from_numpy(centers))
    degree = table.sum(axis=1)[None, :, None]
    return local.numpy() + noise * (1 + degree) * rng.standard_normal((B, len(table), members))


def symbols(*names):
    return sympy.symbols(" ".join(names), real=True)


def test_paper_law_recovered_exactly_with_reasons():
    rng = np.random.default_rng(0)
    table = monomials(2, 3)
    true = coefficients_of(table, {(2, 0): 0.5, (0, 1): 0.5})
    X = rng.uniform(-1, 1, (2000, 2))
    y = polynomial_data(table, true, X)
    centers = X[rng.choice(len(X), 24, replace=False)]
    f = merge(table, local_expansions(table, true, centers, rng), centers, X, y, names=["x1", "x2"])
    x1, x2 = symbols("x1", "x2")
    assert isinstance(f, MergedFormula)
    assert sympy.expand(f.expression - (x1**2 + x2) / 2) == 0
    assert f.text() == "0.5*x1**2 + 0.5*x2" and f.latex() == r"0.5 x_{1}^{2} + 0.5 x_{2}"
    assert f.val_r2 > 1 - 1e-12 and f.center.tolist() == [0.0, 0.0]
    kept = f.terms[f.terms.kept]
    assert sorted(kept.exponents) == [(0, 1), (2, 0)]
    np.testing.assert_allclose(kept.consensus, 0.5, atol=0.02)
    pruned = f.terms[~f.terms.kept]
    assert len(pruned) == len(table) - 2 and all(r.startswith("pruned:") for r in pruned.reason)
    assert pruned.coefficient.eq(0).all() and pruned.refit.isna().all()
    X_new = rng.uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(f.predict(X_new), (X_new[:, 0] ** 2 + X_new[:, 1]) / 2, atol=1e-12)
    lam = sympy.lambdify((x1, x2), f.expression)
    np.testing.assert_allclose(lam(*X_new.T), f.predict(X_new), atol=1e-12)


def test_five_variable_law_kept_by_consensus_then_refit_on_noisy_target():
    rng = np.random.default_rng(1)
    table = monomials(5, 3)
    law = {(0, 0, 0, 0, 0): 0.5, (1, 0, 0, 0, 0): 1.0, (0, 1, 1, 0, 0): 0.6, (0, 1, 0, 1, 0): -0.8,
           (1, 1, 1, 0, 0): 1.0, (0, 0, 1, 0, 1): -1.0}
    true = coefficients_of(table, law)
    X = rng.uniform(-1, 1, (2000, 5))
    y = polynomial_data(table, true, X)
    y = y + 0.01 * y.std() * rng.standard_normal(len(y))
    centers = X[rng.choice(len(X), 32, replace=False)]
    f = merge(table, local_expansions(table, true, centers, rng), centers, X, y, names=[f"x{i}" for i in range(1, 6)])
    kept = f.terms[f.terms.kept]
    assert set(kept.exponents) == set(law)
    by_term = kept.set_index("exponents")
    for alpha, value in law.items():
        # the local polynomials alone put every law term near its value, well above its spread
        assert by_term.consensus[alpha] == pytest.approx(value, abs=0.05)
        assert by_term.reason[alpha].startswith("kept: consensus")
        assert float(by_term.coefficient[alpha]) == pytest.approx(value, rel=0.02)
    x1, x2, x3, x4, x5 = symbols("x1", "x2", "x3", "x4", "x5")
    truth = 0.5 + x1 + 0.6 * x2 * x3 - 0.8 * x2 * x4 + x1 * x2 * x3 - x3 * x5
    assert sympy.expand(f.expression - truth) == 0  # snapped to the clean values


def test_spurious_term_consistent_across_points_is_pruned_by_the_data():
    # All local polynomials share a bias term (a network artefact); the data do not support it.
    rng = np.random.default_rng(2)
    table = monomials(2, 2)
    true = coefficients_of(table, {(1, 1): 1.0})
    X = rng.uniform(1, 5, (1000, 2))
    y = polynomial_data(table, true, X)
    biased = true + coefficients_of(table, {(0, 2): 0.05})
    centers = X[rng.choice(len(X), 16, replace=False)]
    f = merge(table, local_expansions(table, biased, centers, rng, noise=1e-4), centers, X, y, names=["m", "v"])
    m, v = symbols("m", "v")
    assert f.expression == m * v
    row = f.terms.set_index("exponents").loc[[(0, 2)]].iloc[0]
    assert not row.kept and row.significance > 2 and "backward elimination" in row.reason


def test_far_from_origin_uses_the_data_mean_and_recentres_the_local_polynomials_there():
    rng = np.random.default_rng(3)
    X = rng.uniform(100, 110, (800, 2))
    center, reason = choose_center(X)
    np.testing.assert_allclose(center, X.mean(axis=0))
    assert "mean" in reason
    table = monomials(2, 3)
    y = 2 * X[:, 0] - X[:, 1] + 0.5 * (X[:, 0] - 105) ** 2
    # Local polynomials of that law taken at reference points, in powers of (x - point).
    centers = X[rng.choice(len(X), 12, replace=False)]
    local = np.zeros((12, len(table), 3))
    rows = [tuple(r) for r in table]
    for b, (a0, a1) in enumerate(centers):
        local[b, rows.index((0, 0))] = 2 * a0 - a1 + 0.5 * (a0 - 105) ** 2
        local[b, rows.index((1, 0))] = 2 + (a0 - 105)
        local[b, rows.index((0, 1))] = -1
        local[b, rows.index((2, 0))] = 0.5
    local += 1e-3 * rng.standard_normal(local.shape)
    f = merge(table, local, centers, X, y, names=["x1", "x2"])
    x1, x2 = symbols("x1", "x2")
    assert "mean" in f.center_reason
    # The local polynomials, shifted exactly from their points to the mean c, give the law's
    # coefficients in powers of (x - c); the higher-order terms are pruned as noise around 0.
    c1, c2 = f.center
    expected = {(0, 0): 2 * c1 - c2 + 0.5 * (c1 - 105) ** 2, (1, 0): 2 + (c1 - 105), (0, 1): -1.0, (2, 0): 0.5}
    by_term = f.terms.set_index("exponents")
    for alpha, value in expected.items():
        assert by_term.consensus[alpha] == pytest.approx(value, abs=0.05)
        assert by_term.reason[alpha].startswith("kept: consensus")
    for alpha in [(1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3)]:
        assert "within 2 x spread" in by_term.reason[alpha] and 0 < by_term.spread[alpha] < 0.05
    diff = sympy.Poly(sympy.expand(f.expression - (2 * x1 - x2 + 0.5 * (x1 - 105) ** 2)), x1, x2)
    assert max(abs(float(c)) for c in diff.coeffs()) < 1e-6
    assert f.val_r2 > 1 - 1e-10


def test_data_refit_is_snapped_only_when_validation_error_allows():
    rng = np.random.default_rng(4)
    table = monomials(1, 2)
    X = rng.uniform(-1, 1, (2000, 1))
    y = 0.5 * X[:, 0] ** 2 + 0.02 * rng.standard_normal(2000)
    true = coefficients_of(table, {(2,): 0.5})
    centers = X[:10]
    f = merge(table, local_expansions(table, true, centers, rng), centers, X, y, names=["x"])
    row = f.terms.set_index("exponents").loc[[(2,)]].iloc[0]
    assert row.refit != 0.5 and abs(row.refit - 0.5) < 0.01
    assert row.coefficient == 0.5 and row.snapped.endswith("-> 0.5")
    assert f.val_rmse <= f.refit_val_rmse * 1.01
    # Without noise, a coefficient that is genuinely not clean stays as fitted.
    y2 = 0.4987 * X[:, 0] ** 2
    f2 = merge(table, local_expansions(table, true, centers, rng), centers, X, y2, names=["x"])
    assert float(f2.coefficients[0]) == pytest.approx(0.4987, rel=1e-9)


def test_clean_number():
    assert clean_number(0.49999, 1e-4)[0] == 0.5
    assert clean_number(6.67401, 1e-4)[0] == 6.674
    assert clean_number(-2.00003, 1e-4) == (-2.0, sympy.Integer(-2))
    assert clean_number(0.33334, 1e-4) == (pytest.approx(1 / 3), sympy.Rational(1, 3))
    assert clean_number(1.4142136, 1e-6)[1] == sympy.sqrt(2)
    assert clean_number(6.2831853, 1e-6)[1] == 2 * sympy.pi
    assert clean_number(0.250001, 1e-4, kind="exponent")[1] == sympy.Rational(1, 4)
    assert clean_number(0.37, 1e-3, kind="exponent") is None
    assert clean_number(0.123456789, 1e-9) is None
    assert clean_number(1e-5, 1e-3) is not None and clean_number(1e-5, 1e-3)[0] != 0


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_power_law_in_log_space_has_exact_exponents(noise):
    rng = np.random.default_rng(5)
    X = rng.uniform(1, 5, (2000, 3))
    y = 6.674 * X[:, 0] * X[:, 1] / X[:, 2] ** 2 * (1 + noise * rng.standard_normal(2000))
    table = monomials(3, 2)
    true = coefficients_of(table, {(0, 0, 0): math.log(6.674), (1, 0, 0): 1, (0, 1, 0): 1, (0, 0, 1): -2})
    U = np.log(X)
    centers = U[rng.choice(len(U), 24, replace=False)]
    f = merge(table, local_expansions(table, true, centers, rng), centers, X, y, names=["m1", "m2", "r"], space="log")
    m1, m2, r = symbols("m1", "m2", "r")
    prefactor = f.expression / (m1 * m2 / r**2)
    assert prefactor.is_Number and float(prefactor) == pytest.approx(6.674, rel=0.002 + noise / 10)
    assert f.expression.as_powers_dict()[r] == -2 and f.expression.as_powers_dict()[m1] == 1
    by_term = f.terms.set_index("exponents")
    for alpha, value in {(1, 0, 0): 1, (0, 1, 0): 1, (0, 0, 1): -2}.items():  # from the local polynomials
        assert by_term.consensus[alpha] == pytest.approx(value, abs=0.05)
        assert by_term.reason[alpha].startswith("kept: consensus")
    if noise == 0:
        assert f.latex(precision=4) == r"\frac{6.674 m_{1} m_{2}}{r^{2}}"
    assert f.val_r2 > 0.999


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_square_root_law_in_log_space(noise):
    rng = np.random.default_rng(6)
    X = rng.uniform(1, 5, (2000, 2))
    y = np.sqrt(2 * X[:, 0] * X[:, 1]) + noise * rng.standard_normal(2000)
    table = monomials(2, 3)
    true = coefficients_of(table, {(0, 0): 0.5 * math.log(2), (1, 0): 0.5, (0, 1): 0.5})
    centers = np.log(X[:16])
    f = merge(table, local_expansions(table, true, centers, rng), centers, X, y, names=["g", "h"], space="log")
    g, h = symbols("g", "h")
    by_term = f.terms.set_index("exponents")
    for alpha in [(1, 0), (0, 1)]:  # the exponents 1/2 come from the local polynomials' consensus
        assert by_term.consensus[alpha] == pytest.approx(0.5, abs=0.05) and by_term.reason[alpha].startswith("kept")
    if noise == 0:
        # exact data pin the prefactor to 1e-12: sqrt(2) is beyond coincidence
        assert f.expression == sympy.sqrt(2) * sympy.sqrt(g) * sympy.sqrt(h)
        assert f.latex() == r"\sqrt{2} \sqrt{g} \sqrt{h}"
    else:
        # 1 % noise knows the prefactor to about 1e-4: a decimal, not a claim of sqrt(2)
        prefactor = f.expression / (sympy.sqrt(g) * sympy.sqrt(h))
        assert isinstance(prefactor, sympy.Float) and float(prefactor) == pytest.approx(math.sqrt(2), rel=1e-3)
        assert f.latex() == r"1.41 \sqrt{g} \sqrt{h}"


def test_non_polynomial_law_gives_a_reasonable_approximation():
    rng = np.random.default_rng(7)
    table = monomials(2, 3)
    X = rng.uniform(-1, 1, (1500, 2))
    y = np.sin(X[:, 0]) + X[:, 1]
    centers = X[:20]
    rows = [tuple(r) for r in table]
    local = np.zeros((20, len(table), 1))
    for b, (a, c) in enumerate(centers):
        derivs = [math.sin(a), math.cos(a), -math.sin(a), -math.cos(a)]
        for k in range(4):
            local[b, rows.index((k, 0))] = derivs[k] / math.factorial(k)
        local[b, rows.index((0, 0))] += c
        local[b, rows.index((0, 1))] = 1.0
    f = merge(table, local, centers, X, y, names=["x1", "x2"])
    assert f.val_r2 > 0.9999
    kept = set(f.terms[f.terms.kept].exponents)
    assert {(1, 0), (0, 1), (3, 0)} <= kept and (1, 1) not in kept
    # The local Taylor polynomials of sin, re-centred at 0, agree on its series: x - x^3/6.
    by_term = f.terms.set_index("exponents")
    assert by_term.consensus[(1, 0)] == pytest.approx(1.0, abs=0.02)
    assert by_term.consensus[(3, 0)] == pytest.approx(-1 / 6, abs=0.02)
    assert by_term.consensus[(0, 1)] == pytest.approx(1.0, abs=1e-12)
    # A cubic that approximates sin leaves structure in its residuals: nothing is called exact.
    assert (f.terms.snapped == "").all() and not any(n.startswith("snapped") for n in f.notes)
    assert any(n.startswith("not snapped: the refit is not accurate to the noise level") for n in f.notes)


def test_bad_inputs_raise_with_call_form():
    table = monomials(2, 1)
    X = np.ones((20, 2))
    with pytest.raises(ValueError, match=r"^merge\(monomials, coefficients, centers, X, y\): centers"):
        merge(table, np.zeros((4, 3, 2)), np.zeros((3, 2)), X, np.ones(20))
    with pytest.raises(DataError, match="log space needs positive variables"):
        merge(table, np.zeros((4, 3, 2)), np.zeros((4, 2)), -X, np.ones(20), space="log")
    with pytest.raises(DataError, match="one sign"):
        merge(table, np.zeros((4, 3, 2)), np.zeros((4, 2)), X, np.r_[np.ones(10), -np.ones(10)], space="log")


def test_data_refit_far_from_origin_but_sparse_at_origin_is_read_at_origin():
    # The move to the origin works on the data refit (the local polynomials only seed it).
    rng = np.random.default_rng(8)
    table = monomials(2, 3)
    true = coefficients_of(table, {(1, 1): 1.0})
    X = rng.uniform(10, 12, (1000, 2))
    y = polynomial_data(table, true, X) * (1 + 0.001 * rng.standard_normal(1000))
    centers = X[:12]
    f = merge(table, local_expansions(table, true, centers, rng, noise=1e-4), centers, X, y, names=["p", "q"])
    p_, q_ = symbols("p", "q")
    assert f.expression == p_ * q_
    assert f.center.tolist() == [0.0, 0.0] and "moved to the origin" in f.center_reason
    assert f.terms.set_index("exponents").loc[[(1, 1)]].iloc[0].kept


@pytest.mark.slow
def test_fitted_ensemble_merges_to_the_paper_law():
    fit = pytest.importorskip("discovery.fit")
    from discovery.engine import expand
    from discovery.symbolic import to_original_units

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (600, 2))
    y = (X[:, 0] ** 2 + X[:, 1]) / 2
    ens = fit.fit_ensemble(
        X, y, members=2, hidden=(16, 16), seed=0, max_epochs=300, patience=100, lbfgs_steps=200, progress=False
    )
    points = (X[rng.choice(len(X), 16, replace=False)] - ens.x_mean) / ens.x_scale
    e = expand(ens.model, torch.from_numpy(points), 3)
    C, centers = to_original_units(e.monomials, e.coefficients, e.center, ens.x_mean, ens.x_scale, ens.y_mean, ens.y_scale)
    f = merge(e.monomials, C, centers, X, y, names=["x1", "x2"], val_index=ens.val_index)
    x1, x2 = symbols("x1", "x2")
    assert sympy.expand(f.expression - (x1**2 + x2) / 2) == 0
    assert f.val_r2 > 0.999999
    # The networks' own expansions already agree on the law before the data refit.
    kept = f.terms[f.terms.kept].set_index("exponents")
    np.testing.assert_allclose(kept.consensus[[(2, 0), (0, 1)]], 0.5, rtol=0.3)


def test_to_dict_is_json_ready():
    import json

    rng = np.random.default_rng(9)
    table = monomials(2, 2)
    true = coefficients_of(table, {(1, 1): 2.0})
    X = rng.uniform(-1, 1, (300, 2))
    y = polynomial_data(table, true, X)
    f = merge(table, local_expansions(table, true, X[:8], rng), X[:8], X, y, names=["a", "b"])
    d = json.loads(json.dumps(f.to_dict()))
    assert d["formula"] == "2*a*b" and d["complexity"] == 1 and len(d["terms"]) == len(table)
    assert sympy.sympify(f.text()) == sympy.sympify(d["formula"])
    kept = [t for t in d["terms"] if t["kept"]]
    assert kept[0]["exponents"] == [1, 1] and kept[0]["coefficient"] == 2.0
    # the local polynomials' consensus and spread travel with the terms
    assert kept[0]["consensus"] == pytest.approx(2.0, abs=0.05) and 0 < kept[0]["spread"] < 0.1
    assert kept[0]["reason"].startswith("kept: consensus")


def test_the_papers_three_local_polynomials_merge_to_its_law():
    # HOPE paper, eq. (72): 2nd-order expansions of an MLP fitted to y = (x1^2 + x2)/2 at three points.
    table = monomials(2, 2)
    local = np.array(
        [
            [-0.01, 0.00, 0.51, 0.55, -0.00, 0.03],
            [0.38, 0.54, 0.51, 0.53, 0.06, 0.03],
            [-0.13, -0.51, 0.49, 0.50, -0.07, 0.02],
        ]
    )
    centers = np.array([[0.0, 0.0], [0.5, 0.5], [-0.5, -0.5]])
    rng = np.random.default_rng(10)
    X = rng.uniform(-1, 1, (400, 2))
    f = merge(table, local, centers, X, (X[:, 0] ** 2 + X[:, 1]) / 2, names=["x1", "x2"])
    assert f.latex() == r"0.5 x_{1}^{2} + 0.5 x_{2}"
    by_term = f.terms.set_index("term")
    assert by_term.loc["x1**2", "consensus"] == pytest.approx(0.53, abs=0.03)
    assert not by_term.loc["x1*x2", "kept"] and by_term.loc["x1*x2", "reason"].startswith("pruned:")


def test_coefficient_of_a_boolean_column_is_not_read_as_pi():
    # y = 2 x1 + 1.0465 b with b in {0, 1}: the data know 1.0465 to about 1e-3, where pi/3
    # (1.0472) also fits; that is a coincidence, not evidence for pi.
    rng = np.random.default_rng(11)
    X = np.column_stack([rng.uniform(-1, 1, 2000), rng.integers(0, 2, 2000).astype(float)])
    y = 2 * X[:, 0] + 1.0465 * X[:, 1] + 0.01 * rng.standard_normal(2000)
    table = monomials(2, 1)
    true = coefficients_of(table, {(1, 0): 2.0, (0, 1): 1.0465})
    f = merge(table, local_expansions(table, true, X[:12], rng), X[:12], X, y, names=["x1", "b"])
    x1, b = symbols("x1", "b")
    assert not f.expression.has(sympy.pi)
    assert f.text() == "1.05*b + 2*x1" and f.text(precision=4) == "1.046*b + 2*x1"
    assert "snapped [0, 1]: 1.04644 -> 1.046" in f.notes


@pytest.mark.parametrize("law", ["exp", "ratio"])
def test_poor_refit_of_exact_data_is_not_snapped(law):
    # Quadratic polynomials fit these laws to R^2 0.87-0.95: fractions like 11/6 or -4/3 would
    # only be noise of the approximation made to look exact.
    rng = np.random.default_rng(12)
    X = rng.uniform(-1, 1, (1000, 2))
    y = np.exp(1.5 * X[:, 0]) * X[:, 1] if law == "exp" else X[:, 0] / (1.2 + X[:, 1])
    table = monomials(2, 2)
    f = merge(table, np.full((4, len(table), 2), 0.1), X[:4], X, y, names=["a", "b"])
    assert 0.8 < f.val_r2 < 0.99
    assert not f.expression.atoms(sympy.Rational) - {sympy.Integer(1), sympy.Integer(-1)}
    np.testing.assert_array_equal(f.coefficients, f.refit_coefficients)
    assert (f.terms.snapped == "").all()
    assert any(n.startswith("not snapped: the refit is not accurate to the noise level") for n in f.notes)


def test_noise_level_from_neighbours_sees_through_smooth_error_and_flags_it():
    rng = np.random.default_rng(13)
    V = rng.uniform(-1, 1, (3000, 2))
    noise = 0.05 * rng.standard_normal(3000)
    sigma, lack = noise_level(V, noise)
    assert sigma == pytest.approx(0.05, rel=0.05) and abs(lack) < 3
    smooth = 0.3 * (V[:, 0] ** 2 - 1 / 3)  # what a fit missing the x^2 term leaves
    sigma2, lack2 = noise_level(V, noise + smooth)
    assert sigma2 == pytest.approx(0.05, rel=0.1) and lack2 > 10
    # replicated rows: each row's neighbour is its replicate, whose difference is pure noise
    twice = np.repeat(V[:500], 2, axis=0)
    rep_noise = 0.02 * rng.standard_normal(1000)
    sigma3, _ = noise_level(twice, rep_noise + np.repeat(np.sin(5 * V[:500, 0]), 2))
    assert sigma3 == pytest.approx(0.02, rel=0.15)


def test_the_design_matrix_in_row_blocks_equals_one_pass(monkeypatch):
    import discovery.refit as merge_module

    rng = np.random.default_rng(0)
    V = rng.uniform(-2, 2, (1001, 3))
    table = monomials(3, 3)
    center = np.array([0.3, -0.1, 0.7])
    whole = merge_module.design(V, table, center)
    monkeypatch.setattr(merge_module, "_DESIGN_ELEMENTS", 500)  # blocks of a few rows
    np.testing.assert_array_equal(merge_module.design(V, table, center), whole)
    assert whole.shape == (1001, len(table))
    # every column is its monomial, as the engine's polynomial evaluation computes it
    eye = torch.eye(len(table), dtype=torch.float64)[None]
    reference = evaluate(eye, table, torch.from_numpy(center)[None], torch.from_numpy(V))[0].numpy()
    np.testing.assert_allclose(whole, reference, rtol=1e-13, atol=1e-13)


def test_a_large_table_never_builds_every_terms_column_on_every_row(monkeypatch):
    # 200,000 rows x 66 order-2 terms in 10 variables would be 106 MB per copy; selection reads a
    # subsample, and only the kept terms' columns are built on every row.
    import tracemalloc

    rng = np.random.default_rng(1)
    n, p = 200_000, 10
    X = rng.uniform(-1, 1, (n, p))
    y = 0.5 * X[:, 0] ** 2 + X[:, 1] * X[:, 2] + 0.3 * X[:, 3]
    table = monomials(p, 2)
    centers = rng.uniform(-0.5, 0.5, (8, p))
    coefficients = np.repeat(_law_at(table, centers), 3, axis=2)  # three agreeing members
    tracemalloc.start()
    m = merge(table, coefficients, centers, X, y, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(m.expression) == "0.5*x0**2 + x1*x2 + 0.3*x3"
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"
    assert m.rows == {"selection_train": 20_000, "selection_validation": 5_000, "refit": 160_000, "validation": 40_000}


def _law_at(table, centers):
    """Coefficients ``(B, T, 1)`` of 0.5*x0**2 + x1*x2 + 0.3*x3 expanded at each centre."""
    at_origin = np.zeros(len(table))
    for alpha, value in (((2,), 0.5), ((0, 1, 1), 1.0), ((0, 0, 0, 1), 0.3)):
        row = np.zeros(table.shape[1], dtype=table.dtype)
        row[: len(alpha)] = alpha
        at_origin[np.flatnonzero((table == row).all(axis=1))] = value
    C = torch.from_numpy(np.tile(at_origin[None, :, None], (len(centers), 1, 1)))
    zero = torch.zeros(len(centers), table.shape[1], dtype=torch.float64)
    return shift_coefficients(C, table, zero, torch.from_numpy(centers)).numpy()


@pytest.mark.parametrize("block_elements", [None, 70])
def test_subset_fits_from_one_qr_equal_direct_least_squares(block_elements, monkeypatch):
    # Every selection and snapping fit reuses one QR of the training design (factored in row
    # blocks: 70 elements makes blocks of 28 rows); check each against a direct weighted
    # least-squares solve on the chosen columns with the others fixed.
    import discovery.refit as merge_module
    from discovery.refit import Fitter

    if block_elements:
        monkeypatch.setattr(merge_module, "_DESIGN_ELEMENTS", block_elements)

    rng = np.random.default_rng(5)
    n, T = 400, 6
    D = np.column_stack([np.ones(n), rng.normal(size=(n, T - 1)) * [1, 10, 0.1, 3, 1e3]])
    t = D @ rng.normal(size=T) + 0.01 * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    train, val = np.arange(300), np.arange(300, n)
    fitter = Fitter(D, t, t, train, val, "raw", 1.0, w)
    for free, fixed in (([0, 1, 2, 3, 4, 5], {}), ([1, 3], {0: 0.25}), ([0, 2, 5], {1: -1.0, 4: 0.003})):
        coef, rmse, se = fitter.fit(free, fixed)
        sw = np.sqrt(w[train])
        rest = t[train] - D[np.ix_(train, list(fixed))] @ np.array(list(fixed.values()))
        A = D[np.ix_(train, free)] * sw[:, None]
        sol, *_ = np.linalg.lstsq(A, rest * sw, rcond=None)
        np.testing.assert_allclose(coef[free], sol, rtol=1e-10, atol=1e-12)
        assert all(coef[j] == v for j, v in fixed.items())
        r = rest * sw - A @ sol
        expected_se = np.sqrt(np.diag(np.linalg.inv(A.T @ A)) * (r @ r) / (len(train) - len(free)))
        np.testing.assert_allclose(se[free], expected_se, rtol=1e-8)
        pred = D[val] @ coef
        assert rmse == pytest.approx(np.sqrt(np.average((pred - t[val]) ** 2, weights=w[val])), rel=1e-12)
