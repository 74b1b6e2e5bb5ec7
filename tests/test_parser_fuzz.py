"""Engine output the cross-check cannot use is dropped or scored invalid, never an exception.

Hypothesis builds random expression trees with every atom an engine can produce (``zoo`` from a
division by a constant 0, ``nan``, ``oo``, imaginary constants, unevaluated derivatives,
``Piecewise``, functions SymPy does not know, kinks such as ``Abs`` and ``Min``), and random
Operon trees (real ``pyoperon`` nodes, constants of 0 included), and runs them through the same
code the cross-check runs on an engine's front.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery.crosscheck import equivalence, evaluate, finish
from discovery.crosscheck.base import candidates_table, try_evaluate, usable
from discovery.crosscheck.pysr import read_hall_of_fame

a, b = sympy.symbols("a b")
NAMES = ["a", "b"]
X = np.random.default_rng(0).uniform(-2, 2, (60, 2))
T = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

f, g = sympy.Function("f"), sympy.Function("g")
LEAVES = st.one_of(
    st.sampled_from([a, b, sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I, sympy.S.Zero, sympy.S.One,
                     sympy.pi, sympy.E, sympy.Float(0.0), sympy.Rational(1, 3)]),
    st.floats(-1e3, 1e3, allow_nan=False).map(sympy.Float),
    st.integers(-5, 5).map(sympy.Integer),
)
UNARY = [sympy.sin, sympy.cos, sympy.exp, sympy.log, sympy.sqrt, sympy.Abs, sympy.sign, sympy.floor, sympy.tanh,
         lambda u: g(u), lambda u: u * sympy.Derivative(f(a), a), lambda u: sympy.Subs(f(a), a, u),
         lambda u: sympy.Piecewise((u, a > 0), (0, True)), lambda u: sympy.Piecewise((u, b < 0)),
         lambda u: 1 / u, lambda u: -u, lambda u: u**2, lambda u: u ** sympy.Rational(1, 2),
         lambda u: u ** sympy.Float(1.5), lambda u: sympy.Integral(u, a)]
BINARY = [lambda u, v: u + v, lambda u, v: u * v, lambda u, v: u - v, lambda u, v: u / v, sympy.Min, sympy.Max,
          lambda u, v: u ** (v if v.is_Atom and not (v.is_Integer and abs(v) > 3) else 2)]


def _apply(parts):
    op, *args = parts
    try:
        return op(*args)
    except (ValueError, TypeError, ZeroDivisionError):  # SymPy refuses to build it (Min(zoo, ...)): no candidate
        return args[0]


EXPRS = st.recursive(
    LEAVES,
    lambda kids: st.one_of(
        st.tuples(st.sampled_from(UNARY), kids).map(_apply),
        st.tuples(st.sampled_from(BINARY), kids, kids).map(_apply),
    ),
    max_leaves=6,
)


@FUZZ
@given(st.lists(EXPRS, min_size=1, max_size=4))
def test_any_candidate_front_gives_a_usable_table_or_drops_the_candidate(exprs):
    table, best = finish(exprs, X, T, NAMES)
    assert np.all(np.isfinite(table["loss"]))  # every kept candidate is a number everywhere on X
    chosen = table.loc[best, "sympy_format"]
    assert usable(chosen) is not None
    assert np.all(np.isfinite(evaluate(chosen, X, NAMES)))  # the strict evaluator accepts it
    for e in exprs:
        pred = try_evaluate(e, X, NAMES)
        assert pred is None or pred.shape == (len(X),)
    # the comparison the cross-check makes next must not fail either
    verdict = equivalence(sympy.sin(a) + b**2 / 2, chosen, X, NAMES).verdict
    assert verdict in ("agree", "equivalent up to constants", "disagree")


@FUZZ
@given(EXPRS)
def test_unusable_atoms_are_dropped_not_scored(expr):
    table = candidates_table([expr], X, T, NAMES)
    kept = list(table["sympy_format"])
    bad = expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I) or bool(
        expr.atoms(sympy.Derivative, sympy.Subs, sympy.Integral, sympy.core.function.AppliedUndef))
    if bad:
        assert all(k != expr for k in kept)  # only the mean (and never the unusable formula) is left


@FUZZ
@given(st.lists(EXPRS, min_size=1, max_size=4))
def test_hall_of_fame_with_any_equation_is_rescored_without_error(tmp_path_factory, exprs):
    path = tmp_path_factory.mktemp("hof") / "hall_of_fame.csv"
    rows = ["Complexity,Loss,Equation", '1,1.0,"x0"']
    rows += [f'{i + 2},1.0,"{str(e).replace(chr(34), "")}"' for i, e in enumerate(exprs)]
    path.write_text("\n".join(rows) + "\n")
    search = read_hall_of_fame(path, X, T, NAMES)
    table = search.candidates
    assert len(table) == len(exprs) + 1  # every row kept: unusable ones scored invalid
    assert np.isfinite(table.loc[search.best, "loss"])
    invalid = ~np.isfinite(table["loss"])
    assert table.loc[invalid, "sympy_format"].isna().all() or (table.loc[invalid, "r2"] == -np.inf).all()


# ---------------------------------------------------------------------------------------------
# real Operon trees

op = pytest.importorskip("pyoperon")
OPERON_BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Aq"]
OPERON_UNARY = ["Exp", "Log", "Sin", "Cos", "Sqrt", "Square", "Tan", "Tanh", "Cbrt"]
OPERON_LEAVES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e30, -1e-30]).map(lambda v: ("Constant", v)),
    st.floats(-10, 10, allow_nan=False).map(lambda v: ("Constant", v)),
    st.tuples(st.sampled_from([0, 1]), st.sampled_from([0.0, 1.0, -2.5, 3.0])).map(lambda t: ("Variable", t)),
)
OPERON_TREES = st.recursive(
    OPERON_LEAVES,
    lambda kids: st.one_of(st.tuples(st.sampled_from(OPERON_UNARY), kids),
                           st.tuples(st.sampled_from(OPERON_BINARY), kids, kids)),
    max_leaves=6,
)


def _postfix(node, hashes) -> list:
    """Operon's postfix order: the first argument is the subtree just before its parent."""
    kind = node[0]
    if kind == "Constant":
        return [op.Node.Constant(node[1])]
    if kind == "Variable":
        v = op.Node.Variable(node[1][1])
        v.HashValue = hashes[node[1][0]]
        return [v]
    out = []
    for child in reversed(node[1:]):
        out += _postfix(child, hashes)
    return out + [getattr(op.Node, kind)()]


@FUZZ
@given(st.lists(OPERON_TREES, min_size=1, max_size=4))
def test_operon_trees_of_any_shape_convert_and_score_without_error(trees):
    from discovery.crosscheck.operon import tree_to_sympy

    hashes = [1001, 2002]
    symbols = {hashes[0]: sympy.Symbol("a", real=True), hashes[1]: sympy.Symbol("b", real=True)}
    plain = {s: sympy.Symbol(s.name) for s in symbols.values()}
    exprs = [tree_to_sympy(op.Tree(_postfix(t, hashes)).UpdateNodes(), symbols).xreplace(plain) for t in trees]
    table, best = finish(exprs, X, T, NAMES)
    assert np.all(np.isfinite(table["loss"]))
    assert np.all(np.isfinite(evaluate(table.loc[best, "sympy_format"], X, NAMES)))
