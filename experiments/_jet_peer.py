"""The engine against JAX's Taylor mode (``jax.experimental.jet``): one case per worker process.

Used by ``experiments/engine_speed.py --peer jet``; JAX is a benchmark dependency only (the
``test`` extra), never imported by the package.

Cases (float64, ``jax_enable_x64``; the same weights in both):

- a: 10x256 tanh MLP, p = 1, order 10, 1 point;
- b: the same at 1,000 points (jet batched over points);
- c: 784-256-128-1 tanh MLP, all 7,840 pure derivatives up to order 10 (``expand(...,
  mixed=False)``; jet batched over the 784 unit directions);
- d: the 10x256 tanh MLP, every partial derivative (mixed) for p = 2, 3, 5 at orders 4, 6, 10
  at 1 point. jet propagates one univariate series along each of the ``C(n + p - 1, p - 1)``
  directions ``r`` with integer entries summing to ``n`` (Griewank, Utke and Walther 2000,
  batched over directions) and recovers the degree-``d`` coefficients of every ``d <= n``
  from the ``d``-th directional coefficients by the interpolation ``y_d(r) / d! = sum_{|a|=d}
  c_a r^a`` (a precomputed least-squares inverse per degree, applied inside the jitted
  function; the directions with ``|r| = n`` determine every degree ``d <= n``);
- e: a SIREN (sine activations, ``w0 = 30`` on the first layer, 1 on the others, 5x256), p = 1,
  order 10, 1,000 points.

Timing: both jitted/warmed up once, then engine and jet alternated, best of 5 (best of 2 when
one engine call takes more than 5 s). Achieved GFLOP/s counts only the linear maps (2 in out
multiply-adds per structurally nonzero coefficient row and layer: the engine's rows are its
monomials, jet's ``order + 1`` per direction and point, and for both only the degree <= 1 rows
of the first layer's affine input, as XLA folds the constant zero series), divided by the best
time; the peak is a float64
2048^3 ``torch.matmul`` on the same device, thread count and run.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

CASES = {
    "a": dict(net="tanh 10x256", sizes=[1] + [256] * 10 + [1], act="tanh", mode="mixed", p=1, order=10, points=1),
    "b": dict(net="tanh 10x256", sizes=[1] + [256] * 10 + [1], act="tanh", mode="mixed", p=1, order=10, points=1000),
    "c": dict(net="tanh 784-256-128-1", sizes=[784, 256, 128, 1], act="tanh", mode="unmixed", p=784, order=10,
              points=1),
    **{f"d{p}-{n}": dict(net="tanh 10x256", sizes=[p] + [256] * 10 + [1], act="tanh", mode="mixed", p=p, order=n,
                         points=1) for p in (2, 3, 5) for n in (4, 6, 10)},
    "e": dict(net="SIREN 5x256 (w0=30)", sizes=[1] + [256] * 5 + [1], act="sine", mode="mixed", p=1, order=10,
              points=1000),
}


def configure_threads(threads: int, device: str) -> None:
    """Thread settings that must precede importing torch and jax."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["JAX_PLATFORMS"] = "cuda" if device == "cuda" else "cpu"
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["XLA_FLAGS"] = flags.strip()


def build_model(case: dict, device: str):
    import torch
    from torch import nn

    from discovery.nn import Sine

    torch.manual_seed(0)
    sizes = case["sizes"]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        if case["act"] == "sine":  # SIREN initialisation (Sitzmann et al. 2020)
            bound = 1.0 / a if i == 0 else math.sqrt(6.0 / a) / 30.0
            nn.init.uniform_(lin.weight, -bound, bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh() if case["act"] == "tanh" else Sine(30.0 if i == 0 else 1.0))
    return nn.Sequential(*layers).double().eval().to(device)


def _jax_function(model):
    import jax.numpy as jnp
    from torch import nn

    from discovery.nn import Sine

    steps, params = [], []
    for m in model:
        if isinstance(m, nn.Linear):
            steps.append(("linear", len(params)))
            params.append((jnp.asarray(m.weight.detach().cpu().numpy()), jnp.asarray(m.bias.detach().cpu().numpy())))
        elif isinstance(m, Sine):
            steps.append(("sine", m.w0))
        else:
            steps.append(("tanh", None))

    def f(weights, x):  # (rows, p) -> (rows, outputs)
        for kind, arg in steps:
            if kind == "linear":
                w, b = weights[arg]
                x = x @ w.T + b
            elif kind == "sine":
                x = jnp.sin(arg * x)
            else:
                x = jnp.tanh(x)
        return x

    # The weights are arguments of the jitted function, not constants XLA could fold.
    return f, params


def _directions(p: int, n: int) -> np.ndarray:
    from discovery.engine.polynomial import monomials

    exps = monomials(p, n)
    return exps[exps.sum(1) == n].astype(np.float64)


def _interpolation(p: int, n: int):
    """Per degree d = 1..n: the matrix taking the d-th directional coefficients (divided by d!)
    to the engine's monomials of degree d, and the directions."""
    from discovery.engine.polynomial import monomials

    R = _directions(p, n)
    exps = monomials(p, n)
    mats = []
    for d in range(1, n + 1):
        alpha = exps[exps.sum(1) == d]
        V = np.prod(R[:, None, :] ** alpha[None, :, :], axis=2)  # (directions, terms of degree d)
        mats.append(np.linalg.pinv(V) / math.factorial(d))
    return R, mats


def jet_callable(case: dict, model, x):
    """A jitted jet computation of the case, its arguments (weights, points) and a function
    turning its result into the engine's layout (for the agreement check).

    The network is applied to a batch of rows (``x @ W.T + b``), one row per point, direction
    or point and direction, which is what ``vmap`` over a one-point function produces; written
    batched it ran 2x faster than ``jax.vmap`` of the one-point jet in our measurements, so the
    faster form is the peer.
    """
    import jax
    import jax.numpy as jnp
    from jax.experimental.jet import jet

    f, params = _jax_function(model)
    n = case["order"]
    xj = jnp.asarray(x.cpu().numpy())
    if case["mode"] == "unmixed" or case["p"] == 1:
        # p = 1: direction 1 at every point; unmixed: unit direction i on row i.
        unmixed = case["mode"] == "unmixed"
        rows, p = (xj.shape[1], xj.shape[1]) if unmixed else (xj.shape[0], 1)
        first = jnp.eye(rows, dtype=xj.dtype) if unmixed else jnp.ones((rows, 1), dtype=xj.dtype)
        zeros = [jnp.zeros((rows, p), dtype=xj.dtype)] * (n - 1)

        def series(w, points):
            start = jnp.broadcast_to(points[:1], (rows, p)) if unmixed else points
            y0, ys = jet(lambda z: f(w, z), (start,), ([first] + zeros,))
            return jnp.stack([y0] + list(ys), 1)  # (rows, n + 1, outputs)

        scale = np.array([1.0 / math.factorial(k) for k in range(n + 1)])
        if unmixed:  # (D, n + 1, outputs) -> (n + 1, outputs, D), Taylor coefficients
            return jax.jit(series), (params, xj), lambda out: np.transpose(np.asarray(out), (1, 2, 0)) * scale[:, None, None]
        return jax.jit(series), (params, xj), lambda out: np.asarray(out) * scale[None, :, None]
    p = case["p"]
    R, mats = _interpolation(p, n)
    Rj = jnp.asarray(R)
    Mj = [jnp.asarray(m) for m in mats]
    zeros = [jnp.zeros(R.shape, dtype=xj.dtype)] * (n - 1)

    def all_partials(w, points):
        start = jnp.broadcast_to(points[:1], R.shape)
        y0, ys = jet(lambda z: f(w, z), (start,), ([Rj] + zeros,))  # ys[d - 1]: (directions, outputs)
        return jnp.concatenate([y0[:1]] + [Mj[d - 1] @ ys[d - 1] for d in range(1, n + 1)])

    return jax.jit(all_partials), (params, xj), lambda out: np.asarray(out)[None]


def linear_flops(case: dict, method: str) -> float:
    """Multiply-adds x 2 of the linear maps the method applies (see the module docstring)."""
    from discovery.engine.polynomial import n_terms

    sizes, n, B, p = case["sizes"], case["order"], case["points"], case["p"]
    layer = [2.0 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    if method == "jet":
        dirs = p if case["mode"] == "unmixed" else (1 if p == 1 else len(_directions(p, n)))
        return (layer[0] * min(2, n + 1) + sum(layer[1:]) * (n + 1)) * B * dirs
    if case["mode"] == "unmixed":
        return layer[0] * B * p * min(2, n + 1) + sum(layer[1:]) * B * p * (n + 1)
    return layer[0] * B * min(p + 1, n_terms(p, n)) + sum(layer[1:]) * B * n_terms(p, n)


def run_case(name: str, threads: int, device: str, repeats: int = 5) -> dict:
    import jax
    import torch

    import discovery

    jax.config.update("jax_enable_x64", True)
    torch.set_num_threads(threads)
    case = CASES[name]
    model = build_model(case, device)
    g = torch.Generator().manual_seed(1)
    width = case["sizes"][0]
    x = (torch.rand(case["points"], width, generator=g, dtype=torch.float64) - 0.5).to(device)
    mixed = case["mode"] == "mixed"

    def engine():
        e = discovery.expand(model, x, case["order"], mixed=mixed)
        if device == "cuda":
            torch.cuda.synchronize()
        return e

    fn, args, to_engine = jet_callable(case, model, x)
    start = time.perf_counter()
    e = engine()
    engine_first = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    jet_compile = time.perf_counter() - start
    ours = e.coefficients.detach().cpu().numpy()
    if not mixed:
        ours = ours[0]  # (n + 1, outputs, D)
    theirs = to_engine(out)
    agreement = float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(ours)), 1e-300))
    if engine_first > 5.0:
        repeats = min(repeats, 2)
    t_engine, t_jet = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        engine()
        t_engine.append(time.perf_counter() - start)
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t_jet.append(time.perf_counter() - start)
    return {"case": name, "engine_s": min(t_engine), "jet_s": min(t_jet), "jet_compile_s": jet_compile,
            "engine_first_s": engine_first, "repeats": repeats, "agreement": agreement,
            "engine_flops": linear_flops(case, "engine"), "jet_flops": linear_flops(case, "jet")}


def gemm_peak(threads: int, device: str, size: int = 2048) -> float:
    """Best-of-3 GFLOP/s of a float64 ``size^3`` torch matmul."""
    import torch

    torch.set_num_threads(threads)
    a = torch.rand(size, size, dtype=torch.float64, device=device)
    b = torch.rand(size, size, dtype=torch.float64, device=device)
    best = math.inf
    for _ in range(4):
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9
