"""DiscoveryRegressor: scikit-learn's estimator checks and a real recovery through the sklearn API."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import sympy
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from discovery.estimator import DiscoveryRegressor

FAST = dict(order=1, members=2, hidden=(8,), max_epochs=40, lbfgs_steps=20, reference_points=4, random_state=0)



# Every check applies and passes but sample-weight equivalence: predictions come from a formula, so
# they are invariant to row order and subsets, and small data (down to 2 rows) is accepted.
def _expected_failed_checks(estimator) -> dict:
    return {"check_sample_weight_equivalence_on_dense_data": (
        "discover splits rows at random into training, validation and test sets: a row repeated k times can "
        "land in several sets, a row of weight k in one, so the fits agree in distribution, not row for row")}


@parametrize_with_checks([DiscoveryRegressor(**FAST)], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_recovers_quadratic_with_column_names():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.uniform(-1, 1, (600, 2)), columns=["a", "b"])
    y = (X["a"] ** 2 + X["b"]) / 2
    model = DiscoveryRegressor(order=2, members=3, random_state=0, space="raw").fit(X, y)
    a, b = sympy.symbols("a b")
    assert sympy.simplify(model.sympy() - (a**2 + b) / 2) == 0
    assert model.latex() == "0.5 a^{2} + 0.5 b"
    np.testing.assert_allclose(model.predict(X.iloc[:5]), y.iloc[:5], rtol=1e-9, atol=1e-12)
    assert model.equations_["chosen"].sum() == 1


def test_standardised_inputs_warn_and_a_poor_z_score_fit_is_not_snapped():
    # A law in raw units (y = m v / r) behind a StandardScaler: a quadratic in z-scores fits it
    # to R^2 0.96 only. It was returned under snapped fractions (-5/3, 17/6, ...) as if exact.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.uniform(1, 5, (500, 3)), columns=["m", "v", "r"])
    y = X["m"] * X["v"] / X["r"]
    regressor = DiscoveryRegressor(order=2, members=2, hidden=(16, 16), max_epochs=100, lbfgs_steps=50,
                                   reference_points=8, random_state=0)
    model = make_pipeline(StandardScaler(), regressor)
    with pytest.warns(UserWarning, match=r"^DiscoveryRegressor.fit\(X, y\): every column of X has mean 0 .* z-scores"):
        model.fit(X, y)
    merged = regressor.discovery_.merged
    assert merged.val_r2 < 0.99
    assert not [n for n in merged.notes if n.startswith("snapped")]
    assert any(n.startswith("not snapped: the refit is not accurate to the noise level") for n in merged.notes)
    assert not regressor.sympy().atoms(sympy.Rational) - {sympy.Integer(1), sympy.Integer(-1), sympy.Integer(2)}


def test_raw_inputs_do_not_warn_about_standardisation():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 2))  # mean and spread near, but not exactly at, 0 and 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DiscoveryRegressor(**FAST).fit(X, X[:, 0] + 2 * X[:, 1])


def test_column_names_that_sympy_defines_are_kept_in_the_formula():
    # They came back as gamma_, I_, E_ and temp___C_ in formulas and LaTeX.
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.uniform(-1, 1, (400, 3)), columns=["gamma", "I", "temp (°C)"])
    y = 2 * X["gamma"] + X["I"] - 3 * X["temp (°C)"]
    model = DiscoveryRegressor(**{**FAST, "order": 1}, space="raw").fit(X, y)
    gamma, current, temp = sympy.Symbol("gamma"), sympy.Symbol("I"), sympy.Symbol("temp (°C)")
    assert model.sympy() == 2 * gamma + current - 3 * temp
    assert model.latex() == r"I + 2 \gamma - 3 \mathrm{temp\ (°C)}"
    np.testing.assert_allclose(model.predict(X.iloc[:5]), y.iloc[:5], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# PySR's table, selection and exports

SMALL = dict(members=2, max_epochs=50, lbfgs_steps=20, reference_points=8, random_state=0)


def _law(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    # not a polynomial and not a power law: every order and both spaces give different formulas
    X = np.random.default_rng(seed).uniform(0.5, 2.0, (300, 2))
    return X, np.sin(2 * X[:, 0]) + X[:, 0] * X[:, 1]


@pytest.fixture(scope="module")
def fitted_models():
    X, y = _law()
    raw = DiscoveryRegressor(order="auto", space="raw", **SMALL).fit(X, y)
    log = DiscoveryRegressor(order="auto", space="log", **SMALL).fit(X, y)
    return X, y, {"raw": raw, "log": log}


def _assert_exports_equal_predict(model, X):
    assert len(model.equations_) >= 4
    for i in model.equations_.index:
        expected = model.predict(X, index=i)
        scale = np.max(np.abs(expected))
        by_torch = model.pytorch(index=i)(torch.from_numpy(X)).detach().numpy()
        by_numpy = model.numpy(index=i)(X)
        by_table = model.equations_.loc[i, "lambda_format"](X)
        for got in (by_torch, by_numpy, by_table):
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("space", ["raw", "log"])
def test_exports_equal_predict_for_every_candidate(fitted_models, space):
    X, _, models = fitted_models
    model = models[space]
    _assert_exports_equal_predict(model, X)
    # the log-space candidates hold exp, log and float powers; the raw ones are polynomials
    funcs = set().union(*(e.atoms(sympy.Function) for e in model.equations_["sympy_format"]))
    if space == "log":
        assert {type(f) for f in funcs} >= {sympy.exp, sympy.log}
    # the default export is the recommended formula
    np.testing.assert_allclose(model.numpy()(X), model.predict(X), rtol=1e-12, atol=1e-12)


def test_exports_equal_predict_with_the_crosscheck_front():
    pytest.importorskip("pyoperon")
    X, y = _law()
    model = DiscoveryRegressor(order=2, space="raw", crosscheck="operon", crosscheck_budget=2, **SMALL).fit(X, y)
    sources = set(model.equations_["source"])
    assert {"expansion", "operon"} <= sources <= {"expansion", "decomposition", "operon"}, sources
    engine = model.equations_[model.equations_["source"] == "operon"]
    assert len(engine) >= 2  # the engine's whole front, not only its choice
    _assert_exports_equal_predict(model, X)
    # the recommended formula (the expansion's or the engine's) is one marked row of the table
    chosen = model.equations_[model.equations_["chosen"]]
    assert len(chosen) == 1 and chosen["source"].iloc[0] == model.discovery_.recommended
    np.testing.assert_allclose(model.predict(X, index=int(chosen.index[0])), model.predict(X), rtol=1e-12, atol=1e-12)


def test_table_losses_are_the_validation_errors_of_the_pipeline(fitted_models):
    # the expansion's candidates were scored by the pipeline on its validation rows: the table's
    # loss is the same number, so both used the same rows
    X, y, models = fitted_models
    for model in models.values():
        table, c = model.equations_, model.discovery_.candidates
        np.testing.assert_allclose(table["loss"].iloc[: len(c)], c["val_rmse"] ** 2, rtol=1e-9)
        np.testing.assert_allclose(table["r2"].iloc[: len(c)], c["val_r2"], rtol=1e-9)
        assert table["chosen"].sum() == 1
        assert list(table.columns[:6]) == ["complexity", "loss", "score", "equation", "sympy_format", "lambda_format"]


def test_pareto_front_and_score_follow_pysr():
    from discovery.estimator import pareto_scores

    complexity = np.array([3, 1, 5, 5, 7, 9])
    loss = np.array([0.1, 1.0, 0.2, 0.01, 0.02, 1e-30])
    front, score = pareto_scores(complexity, loss, floor=1e-20)
    assert front.tolist() == [1, 0, 3, 5]
    expected = [0.0, -np.log(0.1 / 1.0) / 2, -np.log(0.01 / 0.1) / 2, -np.log(1e-20 / 0.01) / 4]
    np.testing.assert_allclose(score, expected)
    # below round-off a more complex formula is no improvement
    front, _ = pareto_scores(np.array([3, 5]), np.array([1e-25, 1e-30]), floor=1e-20)
    assert front.tolist() == [0]


def _table(complexity, loss) -> pd.DataFrame:
    from discovery.estimator import pareto_scores

    t = pd.DataFrame({"complexity": complexity, "loss": loss, "score": np.nan, "pareto": False})
    front, score = pareto_scores(np.asarray(complexity), np.asarray(loss), 1e-20)
    t.loc[front, "pareto"] = True
    t.loc[front, "score"] = score
    t.attrs["loss_floor"] = 1e-20
    return t


def test_model_selection_rules():
    from discovery.estimator import select

    #            0    1     2     3      4
    t = _table([1, 3, 5, 9, 15], [1.0, 0.1, 0.011, 0.009, 0.008])
    assert select(t, "accuracy") == 4
    assert select(t, "score") == 1  # log(10)/2 beats log(0.1/0.011)/2
    # "best": losses within 1.5 x 0.008 are rows 2, 3, 4; row 2 has the highest score of those
    assert select(t, "best") == 2


def test_index_and_model_selection_on_a_fitted_model(fitted_models):
    X, _, models = fitted_models
    model = models["raw"]
    table = model.equations_
    for selection in ("best", "accuracy", "score"):
        model.set_params(model_selection=selection)
        from discovery.estimator import select

        row = select(table, selection)
        assert model.sympy() == table.loc[row, "sympy_format"]
        np.testing.assert_array_equal(model.predict(X), model.predict(X, index=row))
        assert model.latex() == model.latex(index=row)
    model.set_params(model_selection="recommended")
    chosen = int(np.flatnonzero(table["chosen"])[0])
    assert model.sympy() == model.sympy(index=chosen) == model.formula_
    np.testing.assert_allclose(model.predict(X), model.predict(X, index=chosen), rtol=1e-12)
    with pytest.raises(ValueError, match=r"^DiscoveryRegressor.predict\(X, index\): index=99; pass a row"):
        model.predict(X, index=99)
    model.set_params(model_selection="fastest")
    with pytest.raises(ValueError, match=r"^DiscoveryRegressor.sympy\(index\): model_selection='fastest'"):
        model.sympy()
    model.set_params(model_selection="recommended")


def test_invalid_model_selection_is_refused_by_fit():
    X, y = _law()
    with pytest.raises(ValueError, match=r"^DiscoveryRegressor.fit\(X, y\): model_selection='fast'; pass one of"):
        DiscoveryRegressor(model_selection="fast").fit(X, y)


def test_latex_table(fitted_models):
    _, _, models = fitted_models
    model = models["raw"]
    lines = model.latex_table().splitlines()
    assert lines[:6] == [r"\begin{table}[h]", r"\begin{center}", r"\begin{tabular}{@{}cccc@{}}", r"\toprule",
                         r"Equation & Complexity & Loss & Score \\", r"\midrule"]
    assert lines[-4:] == [r"\bottomrule", r"\end{tabular}", r"\end{center}", r"\end{table}"]
    body = lines[6:-4]
    assert len(body) == len(model.equations_)
    row = model.equations_.iloc[0]
    cells = body[0].removesuffix(r" \\").split(" & ")
    assert cells[:2] == [f"$y = {model.latex(index=0)}$", str(row["complexity"])]
    assert float(cells[2]) == pytest.approx(row["loss"], rel=5e-3) and cells[3] == "0"  # 3 digits; first on the front
    picked = model.latex_table(indices=[1], columns=("equation", "r2")).splitlines()
    assert picked[4] == r"Equation & $R^2$ \\" and len(picked) == 11


def test_lambda_format_pickles(fitted_models):
    import pickle

    X, _, models = fitted_models
    model = pickle.loads(pickle.dumps(models["log"]))
    np.testing.assert_allclose(model.equations_.loc[1, "lambda_format"](X), model.predict(X, index=1), rtol=1e-12)


def test_jax_export_matches_predict(fitted_models):
    jax = pytest.importorskip("jax")
    X, _, models = fitted_models
    model = models["log"]
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        out = model.jax(index=2)
        got = np.asarray(out["callable"](jax.numpy.asarray(X), out["parameters"]))
    finally:
        jax.config.update("jax_enable_x64", previous)
    np.testing.assert_allclose(got, model.predict(X, index=2), rtol=1e-12)
