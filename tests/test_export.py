"""Formula exports (torch module, NumPy, JAX) against an independent oracle: SymPy's own
arbitrary-precision evaluation of the same expression, point by point."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sympy
import torch

from discovery.export import SUPPORTED, ExportError, to_jax, to_numpy, to_torch

a, b = sympy.symbols("a b")
NAMES = ["a", "b"]

# One case per supported operation, each with an input range where it is defined (a, b).
CASES = {
    "Add": (a + 2.5 * b - 3, (-2, 2)),
    "Mul": (-1.25 * a * b, (-2, 2)),
    "Pow": (a**3 + b ** sympy.Rational(3, 2) + a**-2 + b**0.37 + a ** (-sympy.Rational(1, 2)), (0.2, 3)),
    "sqrt": (sympy.sqrt(a * b) + 1 / sympy.sqrt(b), (0.2, 3)),
    "erf": (sympy.erf(0.7 * a - b), (-2, 2)),
    "exp": (1.5 * sympy.exp(-0.3 * a**2 + b), (-2, 2)),
    "log": (sympy.log(a) * 2.2 + sympy.log(b, 10), (0.2, 3)),
    "sin": (sympy.sin(2 * a + 0.1), (-3, 3)),
    "cos": (sympy.cos(a * b), (-3, 3)),
    "tan": (sympy.tan(0.4 * a), (-2, 2)),
    "asin": (sympy.asin(0.3 * a), (-2, 2)),
    "acos": (sympy.acos(0.3 * b), (-2, 2)),
    "atan": (sympy.atan(a / b), (0.2, 3)),
    "sinh": (sympy.sinh(a), (-2, 2)),
    "cosh": (sympy.cosh(b), (-2, 2)),
    "tanh": (sympy.tanh(a - b), (-2, 2)),
    "asinh": (sympy.asinh(a), (-2, 2)),
    "acosh": (sympy.acosh(1 + b**2), (-2, 2)),
    "atanh": (sympy.atanh(0.3 * a), (-2, 2)),
    "Abs": (sympy.Abs(a - b) + sympy.sqrt(sympy.Abs(a)), (-2, 2)),
    "sign": (sympy.sign(a - 0.1) * b, (-2, 2)),
    "floor": (sympy.floor(2 * a), (-2, 2)),
    "ceiling": (sympy.ceiling(2 * b), (-2, 2)),
    "Max": (sympy.Max(a, b, 0.5), (-2, 2)),
    "Min": (sympy.Min(a, 2 * b), (-2, 2)),
    "atan2": (sympy.atan2(a, b), (-2, 2)),
}


def _points(lo: float, hi: float) -> np.ndarray:
    return np.random.default_rng(0).uniform(lo, hi, (40, 2))


def _oracle(expr: sympy.Expr, X: np.ndarray) -> np.ndarray:
    return np.array([float(expr.evalf(30, subs={a: sympy.Float(r[0], 30), b: sympy.Float(r[1], 30)})) for r in X])


def test_every_supported_operation_has_a_case():
    assert sorted(CASES) == sorted(SUPPORTED)


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_and_numpy_match_sympy(name):
    expr, (lo, hi) = CASES[name]
    X = _points(lo, hi)
    expected = _oracle(expr, X)
    got_torch = to_torch(expr, NAMES)(torch.from_numpy(X)).detach().numpy()
    got_numpy = to_numpy(expr, NAMES)(X)
    np.testing.assert_allclose(got_torch, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_numpy, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jax_matches_sympy_in_float64(name):
    jax = pytest.importorskip("jax")
    expr, (lo, hi) = CASES[name]
    X = _points(lo, hi)
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        out = to_jax(expr, NAMES)
        got = np.asarray(out["callable"](jax.numpy.asarray(X), out["parameters"]))
    finally:
        jax.config.update("jax_enable_x64", previous)
    np.testing.assert_allclose(got, _oracle(expr, X), rtol=1e-12, atol=1e-12)


def test_float_constants_are_trainable_and_integer_powers_stay_exact():
    expr = 1.5 * a**2 * b**0.5 + 0.25
    module = to_torch(expr, NAMES)
    assert sorted(module.constants.tolist()) == [0.25, 0.5, 1.5]  # the exponent 2 is no parameter
    X = torch.tensor([[2.0, 4.0], [-3.0, 9.0]], dtype=torch.float64)
    module(X).sum().backward()
    grads = dict(zip(module.constants.tolist(), module.constants.grad.tolist()))
    np.testing.assert_allclose(grads[1.5], 4 * 2 + 9 * 3)  # d/dc of c a^2 sqrt(b)
    np.testing.assert_allclose(grads[0.25], 2.0)
    # a negative base under an integer power is fine; under a float power it is nan, as in NumPy
    assert torch.isfinite(module(X)).all()
    assert np.isnan(to_numpy(a**0.5, NAMES)(np.array([[-1.0, 0.0]])))[0]


def test_constant_formula_and_unused_columns():
    X = np.zeros((3, 2))
    np.testing.assert_array_equal(to_numpy(sympy.Float(2.5), NAMES)(X), [2.5, 2.5, 2.5])
    assert to_torch(sympy.Integer(3), NAMES)(torch.from_numpy(X)).shape == (3,)
    np.testing.assert_array_equal(to_numpy(2 * b, NAMES)(np.array([[7.0, 1.0]])), [2.0])


def test_names_match_symbols_whatever_their_assumptions():
    x = sympy.Symbol("temp (°C)", real=True)
    f = to_numpy(3 * x, ["temp (°C)"])
    np.testing.assert_array_equal(f(np.array([[2.0]])), [6.0])


def test_unknown_function_symbol_and_shape_are_refused():
    with pytest.raises(ExportError, match=r"^to_torch\(expr, names\): no rule for gamma .*supported: Abs, Add"):
        to_torch(sympy.gamma(a), NAMES)
    with pytest.raises(ExportError, match=r"^to_numpy\(expr, names\): the formula uses 'c'"):
        to_numpy(sympy.Symbol("c") + a, NAMES)
    with pytest.raises(ExportError, match=r"^FormulaModule\(X\): X has shape \(4, 3\)"):
        to_torch(a, NAMES)(torch.zeros(4, 3, dtype=torch.float64))


def test_module_state_dict_round_trips():
    module = to_torch(1.5 * sympy.exp(0.3 * a) + b, NAMES)
    state = pickle.loads(pickle.dumps(module.state_dict()))
    other = to_torch(2.0 * sympy.exp(0.1 * a) + b, NAMES)
    other.load_state_dict(state)
    X = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(other(X), module(X))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_module_runs_on_cuda_like_on_cpu():
    expr, (lo, hi) = CASES["exp"][0] + CASES["Pow"][0], (0.2, 2)
    X = torch.from_numpy(_points(lo, hi))
    module = to_torch(expr, NAMES)
    expected = module(X)
    got = module.to("cuda")(X.to("cuda")).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
