"""Recursive decomposition on trained ensembles: the tree's steps, the formula, and undone steps.

Every law is scored on fresh rows the decomposition never saw (a test set), besides the
validation R^2 it reports.
"""

import importlib.util
import json

import numpy as np
import pytest
import sympy
import torch

from discovery.decompose import Decomposition, decompose, polynomial_leaf, refit_constants
from discovery.errors import DataError

FAST = {"members": 3}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def rows(law, low, high, n, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, high, (n, len(low)))
    return X, law(*X.T) + noise * rng.normal(size=n)


def score_on_fresh_rows(d: Decomposition, names, law, low, high):
    X, y = rows(law, low, high, 500, seed=99)
    pred = sympy.lambdify([sympy.Symbol(n) for n in names], d.expression, "numpy")(*X.T)
    return 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)


def steps(node):
    yield node
    for child in node.children:
        yield from steps(child)


def test_product_with_an_exponential_of_a_ratio():
    law, low, high, names = (lambda x, y, z: x * np.exp(-y / z)), [0.5, 0.5, 1.0], [2.0, 2.0, 3.0], ["x", "y", "z"]
    X, y = rows(law, low, high, 1000, seed=0)
    d = decompose(X, y, names, val_index=np.arange(800, 1000), max_leaf_variables=1, fit_options=FAST)
    # x | (y, z) first: the split's pieces read these networks on a slice, where depending on y/z
    # would leave (x, y/z), as large, to a new ensemble; then y, z only through y / z
    assert d.tree.test == "multiplicative" and d.tree.evidence.startswith("multiplicative split [0] | [1, 2]"), \
        d.tree.to_dict()
    assert [c.variables for c in d.tree.children] == [["x"], ["y", "z"]]
    ratio = d.tree.children[1]
    assert ratio.test == "symmetry" and "y / z" in ratio.evidence, ratio.to_dict()
    assert d.val_r2 > 0.9999 and score_on_fresh_rows(d, names, law, low, high) > 0.9999
    x, yy, z = sympy.symbols("x y z")  # constants the validation rows cannot tell from zero are gone
    assert abs(float(d.expression.subs({x: 1.3, yy: 0.7, z: 1.9})) - 1.3 * np.exp(-0.7 / 1.9)) < 1e-9
    assert len(d.expression.atoms(sympy.Float)) <= 3, d.expression


def test_distance_is_read_through_a_difference():
    law, low, high, names = (lambda a, b, c: np.sqrt((a - b) ** 2 + c ** 2)), [-1, -1, 0.5], [1, 1, 1.5], list("abc")
    X, y = rows(law, low, high, 1500, seed=1)
    d = decompose(X, y, names, val_index=np.arange(1200, 1500), max_leaf_variables=2, fit_options=FAST)
    assert d.tree.test == "symmetry" and "a - b" in d.tree.evidence, d.tree.to_dict()
    (child,) = d.tree.children  # a - b becomes a column of the child, which the tests read again
    assert sorted(child.variables) == ["a - b", "c"], child.to_dict()
    assert child.exact(), child.to_dict()
    assert score_on_fresh_rows(d, names, law, low, high) > 0.9999


def test_unused_column_then_additive_split():
    law, low, high = (lambda a, b, c, d: np.exp(a) + b * c ** 2), [-1, -1, -1, -1], [1, 1, 1, 1]
    names = ["a", "b", "c", "d"]
    X, y = rows(law, low, high, 1500, seed=2)
    d = decompose(X, y, names, val_index=np.arange(1200, 1500), max_leaf_variables=2, fit_options=FAST)
    assert d.tree.test == "unused" and "d" in d.tree.evidence, d.tree.to_dict()
    (child,) = d.tree.children
    assert child.test == "additive"
    assert sorted(sorted(c.variables) for c in child.children) == [["a"], ["b", "c"]]
    assert sympy.Symbol("d") not in d.expression.free_symbols
    assert score_on_fresh_rows(d, names, law, low, high) > 0.999
    record = json.loads(json.dumps(d.to_dict(), allow_nan=False))  # strict JSON
    assert record["tree"]["test"] == "unused" and record["tree"]["children"][0]["test"] == "additive"


def test_a_split_the_tests_cannot_rule_out_is_undone_when_it_hurts():
    # 0.2 a b hides in the members' spread on 300 noisy rows; the direct fit of all rows sees it
    law, low, high = (lambda a, b: a + b + 0.2 * a * b), [-1, -1], [1, 1]
    X, y = rows(law, low, high, 400, seed=0, noise=0.1)
    d = decompose(X, y, ["a", "b"], val_index=np.arange(300, 400), max_leaf_variables=1, fit_options=FAST)
    assert d.tree.test == "leaf"
    assert any(note.startswith("undone: additive step") for note in d.notes), d.notes
    assert d.val_rmse < 0.105  # the noise level: the kept formula has the coupling
    assert sympy.Symbol("a") * sympy.Symbol("b") in sympy.expand(d.expression).as_coefficients_dict()


def test_spent_budget_solves_the_whole_table_as_one_piece():
    X, y = rows(lambda a, b, c: a * b + c, [-1, -1, -1], [1, 1, 1], 300, seed=3)
    d = decompose(X, y, list("abc"), val_index=np.arange(200, 300), time_budget=0.0, max_leaf_variables=1)
    assert d.tree.test == "leaf" and any("time budget spent" in n for n in d.notes)
    assert d.val_r2 > 0.999999


def test_a_custom_leaf_solver_gets_the_pieces():
    seen = []

    def leaf(Xp, yp, piece_names, *, val_index, seed, time_budget):
        seen.append(list(piece_names))
        return polynomial_leaf(Xp, yp, piece_names, val_index=val_index, seed=seed, time_budget=time_budget)

    X, y = rows(lambda a, b: np.exp(a - b), [0, 0], [1, 1], 800, seed=4)
    d = decompose(X, y, ["a", "b"], val_index=np.arange(600, 800), max_leaf_variables=1, fit_options=FAST,
                  solve_leaf=leaf)
    # the pieces only (a - b as a new column first); a node of two columns is never given whole to
    # a leaf that allows one (the sparse polynomial fit is its undecomposed baseline)
    assert seen[0] == ["u0"] and all(len(s) == 1 for s in seen), seen
    assert d.tree.test in ("symmetry", "multiplicative"), d.tree.to_dict()
    assert score_on_fresh_rows(d, ["a", "b"], lambda a, b: np.exp(a - b), [0, 0], [1, 1]) > 0.9999


def test_default_leaf_solver():
    from discovery.decompose import _default_leaf

    if importlib.util.find_spec("discovery.closedform") is None:
        assert _default_leaf() is polynomial_leaf
    else:
        from discovery.closedform import solve_piece

        assert _default_leaf() is solve_piece


# -- the built-in leaf and the constant refit --------------------------------------------------

@pytest.mark.parametrize("law, low, method", [
    (lambda a, b: (a + b) / (1 + a * b), [0, 0], "rational"),
    (lambda a, b: 2 * a * b ** 2 - b + 0.5, [-1, -1], "polynomial"),
    (lambda a, b: np.sqrt(a ** 2 + b ** 2), [0.5, 0.5], "sqrt-polynomial"),
    (lambda a, b: 3 * a ** 1.5 * np.exp(-b), [0.5, 0.5], "log-polynomial"),
])
def test_polynomial_leaf_recovers_exact_forms(law, low, method):
    X, y = rows(law, low, [2, 2], 300, seed=5)
    piece = polynomial_leaf(X, y, ["a", "b"], val_index=np.arange(200, 300))
    assert piece.method == method and piece.val_rmse < 1e-8 * np.std(y), piece.evidence
    Xt, yt = rows(law, low, [2, 2], 100, seed=6)
    pred = sympy.lambdify(sympy.symbols("a b"), piece.expression, "numpy")(*Xt.T)
    assert np.max(np.abs(pred - yt)) < 1e-6 * np.max(np.abs(yt))


def test_refit_constants_moves_every_float_jointly():
    x, z = sympy.symbols("x z")
    X = np.random.default_rng(7).uniform(0.5, 2, (200, 2))
    y = 1.7 * X[:, 0] / (1 + 0.3 * X[:, 1])
    start = sympy.Float(1.0) * x / (1 + sympy.Float(0.1) * z)
    fitted = refit_constants(start, [x, z], X, y)
    assert sorted(round(float(f), 8) for f in fitted.atoms(sympy.Float)) == [0.3, 1.7]


def test_decompose_rejects_bad_inputs():
    X, y = rows(lambda a, b: a + b, [0, 0], [1, 1], 50, seed=8)
    with pytest.raises(DataError, match="val_index"):
        decompose(X, y, ["a", "b"], val_index=[])
    with pytest.raises(DataError, match="names"):
        decompose(X, y, ["a"], val_index=[1, 2])


def test_a_piece_reads_the_parents_exact_derivatives_on_its_slice():
    from types import SimpleNamespace

    from discovery.slices import Restricted
    from discovery.engine import expand

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    parent = SimpleNamespace(model=net, x_mean=np.array([1.0, -2.0, 0.5]), x_scale=np.array([2.0, 0.5, 3.0]),
                             y_mean=0.0, y_scale=1.0)
    anchor = np.array([0.3, -1.0, 2.0])
    piece = Restricted(parent, [0, 2], anchor)
    z_child = torch.tensor([[0.2, -0.4], [1.0, 0.5]], dtype=torch.float64)
    z_parent = torch.stack([z_child[:, 0], torch.full((2,), (anchor[1] + 2.0) / 0.5, dtype=torch.float64),
                            z_child[:, 1]], dim=1)
    child, full = expand(piece.model, z_child, 3), expand(net, z_parent, 3)
    for alpha in [(0, 0), (1, 0), (0, 1), (2, 1), (0, 3)]:
        torch.testing.assert_close(child.derivative(alpha), full.derivative((alpha[0], 0, alpha[1])), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("pair, degree, s", [("ratio", 0.0, 1.7), ("ratio", 2.0, -0.8), ("ratio", 0.5, 2.5),
                                              ("product", 0.0, -1.3), ("difference", 0.0, 0.4), ("sum", 0.0, -2.0)])
def test_the_column_a_pair_leaves_is_read_on_a_line_of_the_parents_members(pair, degree, s):
    from types import SimpleNamespace

    from discovery.slices import OnLine, _line

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x_mean, x_scale, y_mean, y_scale = np.array([0.5, -1.0]), np.array([2.0, 0.7]), 1.5, 3.0

    def f(X):  # the members' mean in table units
        with torch.no_grad():
            out = net(torch.from_numpy((np.asarray(X) - x_mean) / x_scale)).mean(dim=1).numpy()
        return y_mean + y_scale * out

    parent = SimpleNamespace(model=net, x_mean=x_mean, x_scale=x_scale, y_mean=y_mean, y_scale=y_scale, predict=f)
    u = np.linspace(-1.5, 1.5, 7)
    x_i = {"ratio": u * s, "product": u / s, "difference": u + s, "sum": u - s}[pair]  # x_i given u, x_j = s
    expected = f(np.column_stack([x_i, np.full_like(u, s)])) / s**degree
    source = OnLine(parent, 0, 1, s, *_line(pair, s), s**degree if degree else 1.0)
    np.testing.assert_allclose(source.predict(u[:, None]), expected, rtol=1e-12)
    with torch.no_grad():
        members = source.members_module()(torch.from_numpy(u[:, None])).mean(dim=1).numpy()
    np.testing.assert_allclose(members, expected, rtol=1e-12)


# -- the tests decide first, also on nodes a leaf could take whole --------------------------------

def test_a_small_node_is_split_by_the_tests_before_any_leaf_sees_it_whole():
    from discovery.closedform import solve_piece

    seen = []

    def leaf(Xp, yp, piece_names, *, val_index, seed, time_budget, model=None, engine="auto"):
        seen.append(list(piece_names))
        return solve_piece(Xp, yp, piece_names, val_index=val_index, seed=seed, time_budget=time_budget,
                           model=model, engine="off")

    law, low, high = (lambda x, y, z: x * np.exp(-y / z)), [1, 1, 1], [2, 2, 2]
    X, y = rows(law, low, high, 900, seed=3)
    d = decompose(X, y, list("xyz"), val_index=np.arange(700, 900), fit_options=FAST, solve_leaf=leaf)
    assert d.tree.test != "leaf" and d.tree.exact(), d.tree.to_dict()
    assert all(len(s) < 3 for s in seen), seen  # the three columns never went to one leaf
    assert score_on_fresh_rows(d, list("xyz"), law, low, high) > 0.99999


def test_a_node_the_tests_cannot_split_goes_whole_to_the_leaf_without_a_search_engine():
    calls = []

    def leaf(Xp, yp, piece_names, *, val_index, seed, time_budget, model=None, engine="auto"):
        calls.append((list(piece_names), engine, model is not None))
        return polynomial_leaf(Xp, yp, piece_names, val_index=val_index, seed=seed, time_budget=time_budget)

    law, low, high = (lambda a, b: np.sin(a * b + a)), [0, 0], [1.5, 1.5]
    X, y = rows(law, low, high, 800, seed=5)
    d = decompose(X, y, ["a", "b"], val_index=np.arange(600, 800), fit_options=FAST, solve_leaf=leaf)
    assert d.tree.test == "leaf", d.tree.to_dict()
    # the whole table's node: Operon on the whole law is the cross-check's job, not the leaf's
    assert (["a", "b"], "off", False) in calls, calls


def test_the_root_reads_the_callers_ensemble_instead_of_training_one(monkeypatch):
    import discovery.decompose as dec
    from discovery.fit import fit_ensemble

    law, low, high = (lambda x, y: x * np.exp(-y)), [1, 0], [2, 1]
    X, y = rows(law, low, high, 800, seed=6)
    val = np.arange(600, 800)
    given = fit_ensemble(X[:600], y[:600], members=3, seed=0, progress=False)
    trained = []
    monkeypatch.setattr(dec, "fit_ensemble", lambda *a, **k: trained.append(k) or fit_ensemble(*a, **k))
    d = decompose(X, y, ["x", "y"], val_index=val, fit_options=FAST, ensemble=given)
    assert trained == [], trained  # the split's pieces read the given members on a slice
    assert d.tree.test == "multiplicative" and d.tree.exact(), d.tree.to_dict()
    assert score_on_fresh_rows(d, ["x", "y"], law, low, high) > 0.99999


def test_an_affine_law_splits_into_intercept_and_slope_read_from_the_gradient():
    # an incline's acceleration: g (sin(theta) - mu cos(theta)); the (theta, mu) node is affine in mu
    law, low, high = (lambda theta, mu: np.sin(theta) - mu * np.cos(theta)), [0.1, 0.0], [1.4, 0.8]
    X, y = rows(law, low, high, 1200, seed=7)
    d = decompose(X, y, ["theta", "mu"], val_index=np.arange(900, 1200), fit_options=FAST)
    assert d.tree.test == "affine" and "affine in mu" in d.tree.evidence, d.tree.to_dict()
    assert d.tree.exact(), d.tree.to_dict()
    Xf, yf = rows(law, low, high, 500, seed=99)  # exact on fresh rows: sin(theta - pi/2) is -cos(theta)
    pred = sympy.lambdify(sympy.symbols("theta mu"), d.expression, "numpy")(*Xf.T)
    assert np.max(np.abs(pred - yf)) < 1e-9, d.expression


def test_tied_pieces_are_settled_on_the_parents_rows():
    # a leaf that cannot tell its forms apart hands back exp(x) and lists x**2 and x as just as
    # good; in m*(r1**2 + r2**2)/2 (1 % noise) the parent's rows keep the forms that need no offset
    from discovery.leaf import Piece, rms_error

    def leaf(Xp, yp, piece_names, *, val_index, seed, time_budget, model=None, engine="auto"):
        x = sympy.Symbol(piece_names[0])
        train = np.setdiff1d(np.arange(len(yp)), val_index)
        fitted = []
        for form in (sympy.exp(x), x**2, x):
            column = sympy.lambdify(x, form, "numpy")(Xp[:, 0])
            A = np.stack([column, np.ones_like(column)], axis=1)
            (a, d), *_ = np.linalg.lstsq(A[train], yp[train], rcond=None)
            fitted.append((sympy.Float(a) * form + sympy.Float(d), rms_error(A[val_index] @ [a, d], yp[val_index])))
        (chosen, rmse), *others = fitted
        return Piece(chosen, rmse, "one of three forms", "", tuple(e for e, _ in others))

    law, low, high = (lambda m, r1, r2: m * (r1**2 + r2**2) / 2), [1, 0.5, 1], [5, 1, 2]
    X, y = rows(law, low, high, 1200, seed=8)
    y = y + 0.01 * np.sqrt(np.mean(y**2)) * np.random.default_rng(8).normal(size=len(y))
    d = decompose(X, y, ["m", "r1", "r2"], val_index=np.arange(900, 1200), max_leaf_variables=1, fit_options=FAST,
                  solve_leaf=leaf)
    m, r1, r2 = sympy.symbols("m r1 r2")
    assert d.tree.test == "multiplicative", (d.tree.to_dict(), d.notes)  # kept, not undone
    assert not d.expression.has(sympy.exp), (d.expression, d.notes)
    assert sympy.diff(d.expression, r1, 3) == 0 and sympy.diff(d.expression, r2, 3) == 0, d.expression
    assert sympy.diff(d.expression, m, 2) == 0, d.expression
    assert any(n.startswith("tie settled on the parent's rows") for n in d.notes), d.notes
    assert score_on_fresh_rows(d, ["m", "r1", "r2"], law, low, high) > 0.9999


def test_a_products_slices_avoid_the_zeros_of_the_other_factor():
    # a sin(x) with x centred on 0: the slice through the median x is a*sin(0), flat and all
    # noise, from which the a piece read a constant; the slice is taken where sin(x) is large
    # (the training rows' x come in pairs +-u, so their median is 0 exactly)
    rng = np.random.default_rng(3)
    u = rng.uniform(0, 1.5, 450)
    X = np.column_stack([rng.uniform(1, 3, 1200), np.concatenate([u, -u, rng.uniform(-1.5, 1.5, 300)])])
    y = X[:, 0] * np.sin(X[:, 1])
    y = y + 0.01 * np.sqrt(np.mean(y**2)) * rng.normal(size=len(y))
    d = decompose(X, y, ["a", "x"], val_index=np.arange(900, 1200), max_leaf_variables=1, fit_options=FAST)
    assert d.tree.test == "multiplicative", (d.tree.to_dict(), d.notes)
    a, x = sympy.symbols("a x")
    piece = sympy.sympify(d.tree.children[0].expression)
    assert d.tree.children[0].variables == ["a"] and sympy.diff(piece, a) != 0, d.tree.to_dict()
    assert sympy.diff(d.expression, a, 2) == 0, d.expression
    rounded = d.expression.xreplace({f: sympy.Rational(f"{float(f):.3g}") for f in d.expression.atoms(sympy.Float)})
    assert sympy.simplify(rounded - a * sympy.sin(x)) == 0, d.expression


def test_the_step_that_leaves_least_to_solve_goes_first():
    from discovery.steps import order_steps

    additive = (0.2, "additive", "", ([0], [1]))
    ratio = (0.6, "symmetry", "", ((0, 1), "ratio"))
    # two inputs: a/b leaves one piece of one input, the split two; margins come after
    assert [s[1] for s in order_steps([additive, ratio], 2)] == ["symmetry", "additive"]
    # six inputs: a 3 | 3 split leaves less than a symmetry's five
    halves = (0.9, "multiplicative", "", ([0, 1, 2], [3, 4, 5]))
    assert [s[1] for s in order_steps([ratio, halves], 6)] == ["multiplicative", "symmetry"]
    # three inputs: omega0 | (v, c) reads the parent's networks on a slice; depending on v/c leaves
    # (omega0, v/c), as large, for a new and smaller ensemble
    split = (0.9, "multiplicative", "", ([0], [1, 2]))
    symmetry = (0.1, "symmetry", "", ((1, 2), "ratio"))
    assert [s[1] for s in order_steps([symmetry, split], 3)] == ["multiplicative", "symmetry"]
    # equal reductions: the clearer margin first
    other = (0.1, "symmetry", "", ((2, 3), "difference"))
    assert [s[0] for s in order_steps([ratio, other], 6)] == [0.1, 0.6]
