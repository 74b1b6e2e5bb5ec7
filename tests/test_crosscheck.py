"""Cross-check: real Operon recovers known laws, the equivalence checker is right on tricky pairs,
the recommendation follows held-out accuracy, and PySR's absence is handled cleanly."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest
import sympy

from discovery.crosscheck import (
    AGREE,
    DISAGREE,
    UP_TO_CONSTANTS,
    candidates_table,
    compare,
    equivalence,
    evaluate,
    polish,
    pysr_status,
    read_hall_of_fame,
    run_engine,
)
from discovery.crosscheck.operon import fit_operon, tree_to_sympy
from discovery.errors import CrosscheckError

x, y, z = sympy.symbols("x y z")
x1, x2, x3 = sympy.symbols("x1 x2 x3")
FAST = {"generations": 20, "n_threads": 1}  # deterministic: stops on generations, one thread


def _data(law, low, high, p, n=500, seed=0):
    X = np.random.default_rng(seed).uniform(low, high, (n, p))
    return X, law(X)


@pytest.fixture(scope="module")
def quadratic_search():
    X, t = _data(lambda X: (X[:, 0] ** 2 + X[:, 1]) / 2, -1, 1, 2, seed=1)
    return X, t, fit_operon(X, t, ["x1", "x2"], seed=0, **FAST)


def test_operon_recovers_paper_quadratic_exactly(quadratic_search):
    X, t, search = quadratic_search
    assert sympy.simplify(search.formula - (x1**2 + x2) / 2) == 0
    assert list(search.candidates.columns[:5]) == ["complexity", "loss", "score", "equation", "sympy_format"]
    assert search.candidates["complexity"].is_monotonic_increasing
    assert search.candidates["loss"].is_monotonic_decreasing


def test_operon_recovers_inverse_square_law_exactly():
    X, t = _data(lambda X: X[:, 0] * X[:, 1] / X[:, 2] ** 2, 1, 5, 3, seed=2)
    search = fit_operon(X, t, ["x1", "x2", "x3"], seed=0, **FAST)
    assert sympy.simplify(search.formula - x1 * x2 / x3**2) == 0


def test_operon_is_deterministic_for_a_seed():
    X, t = _data(lambda X: X[:, 0] * X[:, 1], -1, 1, 2, n=200, seed=3)
    a = fit_operon(X, t, ["x", "y"], seed=5, generations=4, n_threads=1)
    b = fit_operon(X, t, ["x", "y"], seed=5, generations=4, n_threads=1)
    assert list(a.candidates["equation"]) == list(b.candidates["equation"])


def test_tree_walk_reproduces_operons_own_evaluation():
    import pyoperon as op
    from pyoperon.sklearn import SymbolicRegressor

    X, t = _data(lambda X: np.sin(X[:, 0]) * X[:, 1] - 1 / (1.5 + X[:, 1]), -1, 1, 2, n=200, seed=4)
    reg = SymbolicRegressor(
        allowed_symbols="add,sub,mul,div,sin,exp,sqrt,square,constant,variable",
        objectives=["r2", "length"], optimizer_iterations=5, population_size=200, generations=5,
        n_threads=1, random_state=0,
    ).fit(X, t)
    syms = {h: sympy.Symbol(n) for h, n in zip(reg.variables_, ["a", "b"])}
    for member in reg.pareto_front_:
        ours = evaluate(tree_to_sympy(member["tree"], syms), X, ["a", "b"])
        theirs = reg.evaluate_model(member["tree"], X)
        assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max()), member["model"]
    # argument order of non-commutative nodes: b - 1.5 and 1.5 / b
    v = op.Node.Variable(1.0)
    v.HashValue = next(iter(reg.variables_))
    sub = op.Tree([op.Node.Constant(1.5), v, op.Node.Sub()]).UpdateNodes()
    div = op.Tree([v, op.Node.Constant(1.5), op.Node.Div()]).UpdateNodes()
    a = syms[v.HashValue]
    assert tree_to_sympy(sub, syms) == a - 1.5
    assert tree_to_sympy(div, syms) == 1.5 / a


def test_polish_restores_float32_constants_and_snaps_clean_numbers():
    X = np.random.default_rng(0).uniform(1, 5, (300, 3))
    t = 6.674 * X[:, 0] * X[:, 1] / X[:, 2] ** 2
    rough = sympy.Float(float(np.float32(6.674))) * x1 * x2 / x3**2 + sympy.Float(1e-7)
    assert polish(rough, X, t, ["x1", "x2", "x3"]) == sympy.Float(6.674) * x1 * x2 / x3**2


TRICKY = [
    ((x + y) ** 2, x**2 + 2 * x * y + y**2, (0.5, 2), AGREE),  # expanded vs factored
    (sympy.sqrt(x), x ** sympy.Float(0.5), (0.5, 2), AGREE),  # sqrt vs power 1/2
    (sympy.sqrt(x * y), sympy.sqrt(x) * sympy.sqrt(y), (0.5, 2), AGREE),  # needs positivity: numbers decide
    (sympy.log(x * y), sympy.log(x) + sympy.log(y), (0.5, 2), AGREE),
    (x - y, -(y - x), (-1, 1), AGREE),  # sign rearranged
    (x * y, -x * y, (-1, 1), UP_TO_CONSTANTS),  # sign flipped
    (x * y, x * y + 1, (-1, 1), UP_TO_CONSTANTS),  # constant offset
    (x * y, 3 * x * y, (-1, 1), UP_TO_CONSTANTS),  # constant factor
    (x**2 / 2 + y / 2, 0.50001 * x**2 + 0.49999 * y, (-1, 1), AGREE),  # constants within rtol
    (x**2 / 2 + y / 2, 0.6 * x**2 + 0.5 * y, (-1, 1), UP_TO_CONSTANTS),
    (sympy.sin(x), x - x**3 / 6, (-0.3, 0.3), DISAGREE),  # close values, different law
    (sympy.exp(x), 1 + x + x**2 / 2 + x**3 / 6, (-0.3, 0.3), DISAGREE),
    (sympy.exp(-(x**2) / 2) / sympy.sqrt(2 * sympy.pi), 0.3989 - 0.1995 * x**2 + 0.0499 * x**4, (-0.5, 0.5), DISAGREE),
    (x / y, x * y, (0.5, 2), DISAGREE),
    (x**2 - y**2 + x * y / 2, x**2 - 1.02 * y**2, (-2, 2), DISAGREE),  # a term missing
    (sympy.sin(x) + y, sympy.sin(x) + y + 1e-5 * x * y**3, (-1, 1), AGREE),  # a negligible extra term
    (6.674 * x * y / z**2, sympy.Float(6.674) * x * y * z**-2, (1, 5), AGREE),
]


@pytest.mark.parametrize("a,b,box,verdict", TRICKY, ids=[f"{a} ~ {b}" for a, b, _, _ in TRICKY])
def test_equivalence_on_tricky_pairs(a, b, box, verdict):
    X = np.random.default_rng(0).uniform(box[0], box[1], (300, 3))
    result = equivalence(a, b, X, ["x", "y", "z"])
    assert result.verdict == verdict, result.evidence


def test_equivalence_ignores_symbol_assumptions():
    X = np.random.default_rng(0).uniform(1, 2, (100, 1))
    xp = sympy.Symbol("x", positive=True)
    assert equivalence(xp**2, x * x, X, ["x"]).verdict == AGREE


def test_compare_recommends_operon_for_a_non_polynomial_law():
    X, t = _data(lambda X: np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2, -2, 2, 2, n=800, seed=5)
    local = x1 - sympy.Rational(4, 25) * x1**3 + x2**2 / 2  # a cubic Taylor-like approximation
    c = compare(local, X, t, ["x1", "x2"], **FAST)
    assert sympy.simplify(c.engine_formula - (sympy.sin(x1) + x2**2 / 2)) == 0
    assert c.verdict == DISAGREE
    assert c.recommended == "operon" and c.recommended_formula == c.engine_formula
    assert c.r2["operon"] > c.r2["expansion"] > 0.99
    assert "more accurate" in c.reason and "operon" in c.summary()


def test_compare_agrees_with_a_correct_expansion_and_keeps_it():
    X, t = _data(lambda X: (X[:, 0] ** 2 + X[:, 1]) / 2, -1, 1, 2, seed=1)
    c = compare(x1**2 / 2 + x2 / 2, X, t, ["x1", "x2"], **FAST)
    assert c.verdict == AGREE
    assert c.recommended == "expansion" and c.recommended_formula == x1**2 / 2 + x2 / 2
    assert c.reason.startswith("both agree; the expansion's formula is as simple or simpler")
    assert c.r2["expansion"] > 0.999999 and c.r2["operon"] > 0.999999


def test_compare_agrees_with_a_rough_expansion_and_prefers_the_simpler_engine_formula():
    X, t = _data(lambda X: (X[:, 0] ** 2 + X[:, 1]) / 2, -1, 1, 2, seed=1)
    rough = 0.5000001 * x1**2 + 0.4999999 * x2 + 1e-8  # the same law with float dust: more nodes
    c = compare(rough, X, t, ["x1", "x2"], **FAST)
    assert c.verdict == AGREE
    assert c.recommended == "operon" and sympy.simplify(c.recommended_formula - (x1**2 + x2) / 2) == 0
    assert c.reason.startswith("both agree; the operon formula is simpler")


def test_guided_search_sees_only_the_variables_that_matter():
    X, t = _data(lambda X: X[:, 0] * X[:, 2], -1, 1, 4, n=400, seed=6)
    names = ["a", "b", "c", "d"]
    search, how = run_engine(X, t, names, guide={"variables": ["a", "c"]}, seed=0, generations=10, n_threads=1)
    assert how == "variables a, c"
    assert {s.name for s in search.formula.free_symbols} <= {"a", "c"}
    assert sympy.simplify(search.formula - sympy.Symbol("a") * sympy.Symbol("c")) == 0


def test_guide_naming_an_unknown_column_is_an_error():
    X, t = _data(lambda X: X[:, 0], -1, 1, 2, n=50)
    with pytest.raises(CrosscheckError, match="not among the columns"):
        run_engine(X, t, ["a", "b"], guide=["a", "q"])


def test_pysr_absent_gives_one_clear_line_and_an_engine_failure():
    if "pysr" in sys.modules or __import__("importlib").util.find_spec("pysr") is not None:
        pytest.skip("PySR is installed here")
    from discovery.crosscheck.base import EngineFailure
    from discovery.crosscheck.pysr import fit_pysr

    ok, message = pysr_status()
    assert not ok
    assert "\n" not in message and "pip install discovery[pysr]" in message and "Julia" in message
    assert "Operon is used instead" not in message  # nothing else runs when PySR was asked for
    assert "pysr" not in sys.modules
    X = np.arange(20.0)[:, None]
    with pytest.raises(EngineFailure, match=r"fit_pysr\(X, y, names\): PySR is not installed"):
        fit_pysr(X, X[:, 0], ["x"])  # the real call: the probe answers, no engine is imitated
    with pytest.raises(EngineFailure, match=r"discovery\[pysr\]"):
        compare(x, X, np.arange(20.0), ["x"], engine="pysr")
    assert "pysr" not in sys.modules


def test_pysr_probe_times_out_instead_of_hanging_and_caches_the_verdict(tmp_path, monkeypatch):
    # a module that blocks on import, like pysr waiting for a Julia package download
    (tmp_path / "blocking_sr.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    ok, message = pysr_status(module="blocking_sr", timeout=1, cache_dir=tmp_path)
    assert not ok and "did not start within 1 s" in message and "discovery[pysr]" in message
    assert (tmp_path / "pysr_probe.json").exists()
    assert pysr_status(module="blocking_sr", timeout=1, cache_dir=tmp_path) == (ok, message)  # cached: instant


def test_hall_of_fame_is_rescored_on_local_data(tmp_path):
    X = np.random.default_rng(7).uniform(1, 5, (300, 3))
    F = 6.674 * X[:, 0] * X[:, 1] / X[:, 2] ** 2
    path = tmp_path / "hall_of_fame.csv"
    path.write_text(textwrap.dedent("""\
        Complexity,Loss,Equation
        1,999.0,"x0"
        3,99.0,"(x0 * x1)"
        5,9.0,"((x0 * x1) / x2)"
        7,1e-3,"(6.674 * ((x0 * x1) / square(x2)))"
        9,1e-4,"((6.674 * (x0 * x1)) / (x2 ^ 2.0)) + 0.0"
        """))
    before = path.read_bytes()
    search = read_hall_of_fame(path, X, F, ["m1", "m2", "r"])
    table = search.candidates
    m1, m2, r = sympy.symbols("m1 m2 r")
    assert search.formula == 6.674 * m1 * m2 / r**2
    assert table.loc[1, "equation"] == "m1*m2"
    assert table.loc[1, "loss"] == pytest.approx(np.mean((X[:, 0] * X[:, 1] - F) ** 2))
    assert table.loc[3, "loss"] < 1e-20 and table.loc[3, "r2"] == pytest.approx(1.0)
    expected = -(math.log(table.loc[2, "loss"]) - math.log(table.loc[1, "loss"])) / 2
    assert table.loc[2, "score"] == pytest.approx(expected)
    assert list(table["loss_reported"]) == [999.0, 99.0, 9.0, 1e-3, 1e-4]
    assert path.read_bytes() == before


def test_hall_of_fame_equations_that_give_no_number_are_scored_invalid_not_raised(tmp_path):
    X = np.random.default_rng(7).uniform(1, 5, (200, 2))
    t = X[:, 0] * X[:, 1]
    path = tmp_path / "hall_of_fame.csv"
    path.write_text(textwrap.dedent("""\
        Complexity,Loss,Equation
        1,9.0,"x0"
        3,1.0,"x0 / 0"
        4,1.0,"Derivative(x0, x1)"
        5,1e-9,"(x0 * x1)"
        6,1.0,"__import__('os').getcwd()"
        7,1.0,"frobnicate(x0)"
        9,1.0,"((x0 *"
        """))
    search = read_hall_of_fame(path, X, t, ["a", "b"])
    table = search.candidates
    assert list(table["complexity"]) == [1, 3, 4, 5, 6, 7, 9]  # every row kept, in order
    assert search.formula == sympy.Symbol("a") * sympy.Symbol("b")
    assert np.isinf(table.loc[[1, 2, 4, 5, 6], "loss"]).all() and table.loc[[1, 2, 4, 5, 6], "sympy_format"].isna().all()
    assert list(table["loss_reported"]) == [9.0, 1.0, 1.0, 1e-9, 1.0, 1.0, 1.0]


def test_hall_of_fame_without_pysr_columns_is_an_error(tmp_path):
    path = tmp_path / "hof.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(CrosscheckError, match="Complexity, Loss, Equation"):
        read_hall_of_fame(path, np.ones((3, 1)), np.ones(3), ["x"])


def test_gplearn_programs_convert_to_the_formula_gplearn_evaluates():
    from discovery.crosscheck.gplearn import fit_gplearn, program_to_sympy

    X, t = _data(lambda X: X[:, 0] * X[:, 1] + X[:, 0], 0.5, 2, 2, n=200, seed=8)
    search = fit_gplearn(X, t, ["a", "b"], generations=3, population_size=200, polish_constants=False)
    assert search.candidates.loc[search.best, "r2"] > 0.9
    from gplearn.genetic import SymbolicRegressor

    reg = SymbolicRegressor(population_size=200, generations=3, random_state=0).fit(X, t)
    expr = program_to_sympy(reg._program.program, sympy.symbols("a b"))
    assert np.allclose(evaluate(expr, X, ["a", "b"]), reg.predict(X))


def test_candidates_table_keeps_the_pareto_front_with_pysr_scores():
    X = np.linspace(1, 2, 50)[:, None]
    t = 2 * X[:, 0] ** 2 + 0.01 * np.sin(7 * X[:, 0])
    a = sympy.Symbol("a")
    table = candidates_table([a, 2 * a, 2 * a**2, 2 * a**2 + 0 * a + 1e-30, a + 5], X, t, ["a"])
    # the mean beats "a" at complexity 1 and "2*a" at 3; the rest is dominated by 2*a**2
    assert list(table["equation"][1:]) == ["2*a**2"]
    assert table.loc[0, "sympy_format"] == pytest.approx(t.mean()) and table.loc[0, "complexity"] == 1
    assert table.loc[0, "score"] == 0.0
    assert table.loc[1, "score"] == pytest.approx(-(math.log(table.loc[1, "loss"]) - math.log(table.loc[0, "loss"])) / 4)


def test_polish_snaps_within_noise_but_keeps_real_differences():
    rng = np.random.default_rng(9)
    X = rng.uniform(-1, 1, (2000, 2))
    clean = (X[:, 0] ** 2 + X[:, 1]) / 2
    t = clean + 0.01 * clean.std() * rng.standard_normal(2000)
    assert polish(0.5003 * x1**2 + 0.50004 * x2, X, t, ["x1", "x2"]) == x1**2 / 2 + x2 / 2
    t2 = 0.47 * X[:, 0] ** 2 + X[:, 1] / 2 + 0.01 * clean.std() * rng.standard_normal(2000)
    kept = polish(0.4703 * x1**2 + 0.5 * x2, X, t2, ["x1", "x2"])
    assert kept.coeff(x1**2) == pytest.approx(0.47, abs=2e-3)


def test_guide_from_formula_finds_variables_and_additive_parts():
    from discovery.crosscheck import guide_from_formula

    g = guide_from_formula(x1 - x1**3 / 6 + x3**2 / 2 + 1, ["x1", "x2", "x3"])
    assert g.variables == ["x1", "x3"] and g.additive == [["x1"], ["x3"]]
    assert guide_from_formula(x1 * x2 + x2 * x3, ["x1", "x2", "x3"]).additive is None


def test_equivalence_refit_counts_the_jacobians_evaluations_too(monkeypatch):
    # A form that cannot fit the target: the refit stops after 30 * (constants + 2) evaluations
    # in all, the Jacobian's included, and answers with the best residual it saw (uncapped it
    # takes about twice as many).
    import importlib

    eq = importlib.import_module("discovery.crosscheck.equivalence")

    x = sympy.Symbol("x")
    F = sympy.Float
    form = F(1.3) * sympy.exp(F(0.2) * x) / (F(1.1) + F(0.5) * x + F(0.3) * x**2 + F(0.7) * sympy.cos(F(2.0) * x))
    P = np.linspace(0.1, 3, 400)[:, None]
    target = np.exp(P[:, 0]) * np.cos(7.3 * P[:, 0] ** 2)
    calls = []
    real = sympy.lambdify

    def counting(*args, **kwargs):
        f = real(*args, **kwargs)
        return lambda *a: (calls.append(1), f(*a))[1]

    monkeypatch.setattr(sympy, "lambdify", counting)
    worst = eq._refit_residual(form, target, P, ["x"])
    constants = len(eq._template(form)[1])
    assert math.isfinite(worst) and worst > 0.01
    assert len(calls) <= 30 * (constants + 2) + 1


def test_polish_past_its_deadline_refits_but_snaps_nothing():
    import time

    x1, x2 = sympy.symbols("x1 x2")
    X = np.random.default_rng(2).uniform(-1, 1, (200, 2))
    t = 0.5 * X[:, 0] ** 2 + 0.25 * X[:, 1] + 1e-3 * np.random.default_rng(3).normal(size=200)
    rough = sympy.Float(0.4999) * x1**2 + sympy.Float(0.2501) * x2
    assert polish(rough, X, t, ["x1", "x2"]) == x1**2 / 2 + x2 / 4
    late = polish(rough, X, t, ["x1", "x2"], deadline=time.perf_counter() - 1.0)
    assert len(late.atoms(sympy.Float)) == 2  # refitted, not snapped
    assert abs(float(late.coeff(x1**2)) - 0.5) < 1e-3
