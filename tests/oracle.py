"""Slow, independent references for the Taylor engine, and the networks the tests expand.

The oracles use nothing but nested ``torch.autograd.grad`` in float64; they share no code with
:mod:`discovery.engine`. Network factories build random MLPs, small CNNs and custom-forward
modules that ``torch.fx`` can trace.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from discovery.nn import Sine

__all__ = [
    "ACTIVATIONS",
    "all_partials",
    "pure_partials",
    "relative_errors",
    "assert_partials_match",
    "make_activation",
    "mlp",
    "points_away_from_kinks",
    "Lambda",
    "PolynomialNet",
    "CASES",
    "Case",
    "keys_used",
]


# -- oracles ------------------------------------------------------------------------------------


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = model(x)
    return y.reshape(y.shape[0], -1)


def all_partials(model: nn.Module, at, order: int) -> dict[tuple[int, ...], torch.Tensor]:
    """Every partial derivative ``d^alpha f`` with ``|alpha| <= order`` by nested autograd.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, p)`` to ``(B, ...)``; samples must not interact (eval mode).
    at : array-like (B, p)
    order : int

    Returns
    -------
    dict
        ``alpha -> (B, n_out)`` float64 tensors.

    Notes
    -----
    Samples are independent, so differentiating the batch sum gives each sample's derivative.
    Each ``alpha`` is reached from its parent ``alpha - e_i`` (``i`` its last non-zero index):
    one ``grad`` call per multi-index of degree ``< order`` and output.
    """
    x = torch.as_tensor(np.asarray(at), dtype=torch.float64).clone().requires_grad_(True)
    B, p = x.shape
    y = _outputs(model, x)
    n_out = y.shape[1]
    result: dict[tuple[int, ...], list] = {(0,) * p: [y[:, o] for o in range(n_out)]}
    frontier = [(0,) * p]
    for degree in range(order):
        last = degree + 1 == order
        nxt = []
        for beta in frontier:
            start = max([i for i in range(p) if beta[i]], default=0)
            kids = [tuple(b + (j == i) for j, b in enumerate(beta)) for i in range(start, p)]
            cols = [[] for _ in kids]
            for o in range(n_out):
                g = result[beta][o]
                if g.requires_grad:
                    (d,) = torch.autograd.grad(g.sum(), x, create_graph=not last, retain_graph=True,
                                               allow_unused=True)
                    d = torch.zeros_like(x) if d is None else d
                else:  # the parent is constant in x: all its derivatives vanish
                    d = torch.zeros_like(x)
                for c, i in enumerate(range(start, p)):
                    cols[c].append(d[:, i])
            for kid, col in zip(kids, cols):
                result[kid] = col
                nxt.append(kid)
        frontier = nxt
    return {a: torch.stack([v.detach() for v in vs], dim=1) for a, vs in result.items()}


def pure_partials(model: nn.Module, at, elements, order: int) -> torch.Tensor:
    """Pure derivatives ``d^k f / dx_i^k`` (``k = 0..order``) of selected input elements.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, *input_shape)`` to ``(B, ...)``.
    at : tensor (B, *input_shape)
    elements : sequence of int
        Flat indices into ``input_shape``.

    Returns
    -------
    tensor (order + 1, len(elements), B, n_out)
        Computed along the line ``t -> f(at + t e_i)`` with nested autograd in ``t``.
    """
    at = torch.as_tensor(at, dtype=torch.float64)
    B = at.shape[0]
    out = []
    for i in elements:
        t = torch.zeros(B, dtype=torch.float64, requires_grad=True)
        e = torch.zeros(at[0].numel(), dtype=torch.float64)
        e[i] = 1.0
        x = at + t.reshape(B, *([1] * (at.ndim - 1))) * e.reshape(at.shape[1:])
        y = _outputs(model, x)
        per_out = []
        for o in range(y.shape[1]):
            g = y[:, o]
            ks = [g.detach()]
            for k in range(order):
                if not g.requires_grad:
                    g = torch.zeros_like(g)
                else:
                    (g,) = torch.autograd.grad(g.sum(), t, create_graph=k + 1 < order, retain_graph=True,
                                               allow_unused=True)
                    g = torch.zeros(B, dtype=torch.float64) if g is None else g
                ks.append(g.detach())
            per_out.append(torch.stack(ks))  # (order+1, B)
        out.append(torch.stack(per_out, dim=-1))  # (order+1, B, n_out)
    return torch.stack(out, dim=1)


# -- comparison ---------------------------------------------------------------------------------


def relative_errors(ours: dict, oracle: dict) -> dict[int, tuple[float, tuple]]:
    """Worst error per total order, measured as ``|a - b| / max(|b|, scale_k)``.

    ``scale_k`` is the largest oracle magnitude over all derivatives of total order ``k``
    (all points and outputs), so derivatives that are tiny next to their peers of the same
    order do not make round-off look large. Returns ``k -> (error, worst alpha)``.
    """
    scale: dict[int, float] = {}
    for a, b in oracle.items():
        k = sum(a)
        scale[k] = max(scale.get(k, 0.0), float(b.abs().max()))
    worst: dict[int, tuple[float, tuple]] = {}
    for a, b in oracle.items():
        k = sum(a)
        denom = torch.clamp(b.abs(), min=max(scale[k], 1e-300))
        err = float(((ours[a] - b).abs() / denom).max())
        if k not in worst or err > worst[k][0]:
            worst[k] = (err, a)
    return worst


def assert_partials_match(expansion, oracle: dict, rtol: float = 1e-10, what: str = "") -> None:
    """Every ``expansion.derivative(alpha)`` agrees with the oracle to ``rtol`` (see above)."""
    ours = {a: expansion.derivative(a).detach().cpu().to(torch.float64) for a in oracle}
    for a, v in ours.items():
        assert v.shape == oracle[a].shape, f"{what}: derivative{a} has shape {tuple(v.shape)}, oracle {tuple(oracle[a].shape)}"
    worst = relative_errors(ours, oracle)
    bad = {k: v for k, v in worst.items() if not v[0] <= rtol}
    assert not bad, f"{what}: derivatives off by more than {rtol:g} (order: (error, worst alpha)): {bad}"


# -- networks -----------------------------------------------------------------------------------


class Lambda(nn.Module):
    """A module whose forward is a plain Python function (torch.fx traces through it)."""

    def __init__(self, fn, name: str = "lambda"):
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


ACTIVATIONS = {
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "sine": lambda: Sine(1.5),
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "elu": lambda: nn.ELU(0.7),
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": lambda: nn.SiLU(),
    "softplus": lambda: nn.Softplus(beta=1.5, threshold=1.0),
    "softsign": lambda: nn.Softsign(),
}

PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU)


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def mlp(p: int, width: int, depth: int, activation: str, n_out: int = 1, seed: int = 0,
        gain: float = 1.5) -> nn.Sequential:
    """A random float64 MLP with ``depth`` hidden layers of ``width`` units.

    ``gain`` scales PyTorch's default initialisation so that pre-activations spread over the
    non-linear range and higher derivatives are not negligible.
    """
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    fan_in = p
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), make_activation(activation)]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_out))
    net = nn.Sequential(*layers).double().eval()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(gain)
                m.bias.mul_(gain)
    return net


def _kink_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
             for m in model.modules() if isinstance(m, PIECEWISE_LINEAR + (nn.ELU, nn.Softsign, nn.Softplus))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def points_away_from_kinks(model: nn.Module, B: int, p: int, seed: int = 0, margin: float = 1e-3,
                           spread: float = 1.0) -> torch.Tensor:
    """``B`` random points where no piecewise activation input lies within ``margin`` of a kink."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for _ in range(1000):
        x = (torch.rand(1, p, generator=g, dtype=torch.float64) * 2 - 1) * spread
        kinks = []
        for m, z in zip([m for m in model.modules() if isinstance(m, PIECEWISE_LINEAR + (nn.ELU, nn.Softsign, nn.Softplus))],
                        _kink_inputs(model, x)):
            at = m.threshold / m.beta if isinstance(m, nn.Softplus) else 0.0
            kinks.append(float((z - at).abs().min()))
        if min(kinks, default=1.0) > margin:
            chosen.append(x)
            if len(chosen) == B:
                return torch.cat(chosen)
    raise RuntimeError("no points away from kinks found")


class PolynomialNet(nn.Module):
    """An MLP whose activation is ``x -> x**2``: exactly a polynomial of degree ``2**depth``."""

    def __init__(self, p: int, width: int, depth: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList([nn.Linear(p if i == 0 else width, width) for i in range(depth)])
        self.out = nn.Linear(width, 1)
        self.double().eval()

    def forward(self, x):
        for layer in self.layers:
            x = layer(x) ** 2
        return self.out(x)


def multi_indices(p: int, order: int):
    """All ``alpha`` with ``|alpha| <= order`` (graded)."""
    return [a for k in range(order + 1) for a in itertools.product(range(k + 1), repeat=p) if sum(a) == k]


def factorial_of(alpha) -> float:
    return float(np.prod([math.factorial(a) for a in alpha]))


# -- one small model per group of registered rules ----------------------------------------------

P = 2  # inputs of every rule case


class Forms(nn.Module):
    """``out(sum_k c_k * form_k(pre(lin(x))))``: every form of one op side by side."""

    def __init__(self, forms, pre=None, width: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(P, width)
        self.mods = nn.ModuleList([f for f in forms if isinstance(f, nn.Module)])
        self.forms = forms
        self.pre = pre
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.lin(x)
        if self.pre is not None:
            h = self.pre(h)
        total = 0.0
        for k, form in enumerate(self.forms):
            total = total + (0.5 + 0.25 * k) * form(h)
        return self.out(total)


def _positive(h):
    return 1.0 + h * h


@dataclass
class Case:
    name: str
    build: object  # () -> nn.Module (float64, eval)
    reference: object = None  # model -> model for the oracle, when it must differ


def _forms(forms, pre=None):
    return lambda: Forms(forms, pre).double().eval()


class Arithmetic(nn.Module):
    """Two branches combined by one family of arithmetic ops (``kind``)."""

    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(1)
        self.kind = kind
        self.a = nn.Linear(P, 5)
        self.b = nn.Linear(P, 5)
        self.out = nn.Linear(5, 1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        pos = 2.0 + torch.sin(b)
        if self.kind == "add_sub":
            t = torch.add(a, b, alpha=0.5) + a.add(b) + torch.sub(a, b, alpha=2) - a.sub(b) + (3 - a) + (a + 1)
            t = t + (-a) + torch.neg(b) + a.neg()
        elif self.kind == "mul_div":
            t = a * b + torch.mul(a, 0.5) + a.mul(b) + 2 * a + a / 3
            t = t + a / pos + torch.div(a, pos) + a.div(pos) + torch.true_divide(b, pos) + a.true_divide(pos) + 1 / pos
        elif self.kind == "square":
            t = torch.square(b) + b.square()
        else:  # powers: integer, real, series exponent, constant base
            t = a ** 3 + pos ** 2.5 + a.pow(2) + torch.pow(pos, a) + 2.0 ** a
        return self.out(t * 0.1)


class Matmul(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.w = nn.Parameter(torch.randn(P, 4))
        self.w2 = nn.Parameter(torch.randn(4, 4))
        self.lw = nn.Parameter(torch.randn(4, 4))
        self.lb = nn.Parameter(torch.randn(4))
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        h = torch.tanh(x @ self.w)
        h = torch.sin(torch.matmul(h, self.w2)) + h.matmul(self.w2)
        h = torch.tanh(F.linear(h, self.lw, self.lb)) + F.linear(h, self.lw)
        return self.out(h)


class Shapes(nn.Module):
    """Shape plumbing; ``plain`` drops ``.float()``/``.detach()`` for the oracle."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.lin = nn.Linear(P, 12)
        self.out = nn.Linear(12, 1)
        self.plain = False

    def forward(self, x):
        n = x.size(0)
        h = torch.tanh(self.lin(x))                        # (n, 12)
        if not self.plain:
            h = h.float().double().detach()
        h = h.contiguous().clone().double()
        g = h.view(n, 3, 4)
        g = g.reshape(n, 4, 3).reshape(x.shape[0], 3, 4)
        g = torch.reshape(g, (n, 12)).unflatten(1, (3, 4))
        g = torch.unflatten(torch.flatten(g, 1), 1, (3, 4))
        g = g.flatten(1).unflatten(1, (3, 4))
        g = torch.unsqueeze(g, 1).unsqueeze(-1)            # (n, 1, 3, 4, 1)
        g = torch.squeeze(g, -1).squeeze(1).unsqueeze(2).squeeze()  # (n, 3, 4) (n > 1)
        g = g.permute(0, 2, 1) + torch.permute(g, (0, 2, 1))       # (n, 4, 3)
        g = g.transpose(1, 2) * torch.transpose(g, 1, 2)            # (n, 3, 4)
        s = g.sum(1) + torch.sum(g, dim=2, keepdim=True)[:, :, 0].sum(1, keepdim=True)
        m = g.mean(dim=(1, 2), keepdim=False).unsqueeze(1) + torch.mean(g, 1)
        parts = torch.cat([s, m], dim=1) + torch.concat([m, s], 1)  # (n, 8)
        st = torch.stack([parts, -parts], dim=1).flatten(1)        # (n, 16)
        st = st[:, :12] + g.reshape(n, g.dim() * 4)
        return self.out(st)


def _shapes_reference(model):
    model.plain = True
    return model


def _image_head(c, h, w):
    return nn.Sequential(nn.Linear(P, c * h * w), nn.Unflatten(1, (c, h, w)))


def _signal_head(c, length):
    return nn.Sequential(nn.Linear(P, c * length), nn.Unflatten(1, (c, length)))


def _seq(*layers, seed: int = 4):
    def build():
        torch.manual_seed(seed)
        net = nn.Sequential(*[layer() if callable(layer) and not isinstance(layer, nn.Module) else layer
                              for layer in layers]).double().eval()
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
        return net

    return build


CASES = [
    Case("tanh", _forms([nn.Tanh(), torch.tanh, F.tanh, lambda h: h.tanh()])),
    Case("sigmoid", _forms([nn.Sigmoid(), torch.sigmoid, F.sigmoid, lambda h: h.sigmoid()])),
    Case("sin_cos", _forms([Sine(2.5), torch.sin, lambda h: h.sin(), torch.cos, lambda h: h.cos()])),
    Case("exp", _forms([torch.exp, lambda h: h.exp()], pre=torch.tanh)),
    Case("log", _forms([torch.log, lambda h: h.log()], pre=_positive)),
    Case("sqrt_rsqrt", _forms([torch.sqrt, lambda h: h.sqrt(), torch.rsqrt, lambda h: h.rsqrt()], pre=_positive)),
    Case("reciprocal", _forms([torch.reciprocal, lambda h: h.reciprocal()], pre=_positive)),
    Case("relu", _forms([nn.ReLU(), torch.relu, F.relu, lambda h: h.relu()])),
    Case("abs", _forms([torch.abs, abs, lambda h: h.abs()])),
    Case("leaky_relu", _forms([nn.LeakyReLU(0.2), lambda h: F.leaky_relu(h, 0.05)])),
    Case("elu", _forms([nn.ELU(0.7), lambda h: F.elu(h, alpha=1.3)])),
    Case("gelu", _forms([nn.GELU(), nn.GELU(approximate="tanh"), F.gelu, lambda h: F.gelu(h, approximate="tanh")])),
    Case("silu", _forms([nn.SiLU(), F.silu])),
    Case("softsign", _forms([nn.Softsign(), F.softsign])),
    Case("softplus", _forms([nn.Softplus(beta=2.0, threshold=1.0), F.softplus, lambda h: F.softplus(h, beta=0.5)])),
    Case("add_sub", lambda: Arithmetic("add_sub").double().eval()),
    Case("mul_div", lambda: Arithmetic("mul_div").double().eval()),
    Case("square", lambda: Arithmetic("square").double().eval()),
    Case("matmul_linear", lambda: Matmul().double().eval()),
    Case("shapes", lambda: Shapes().double().eval(), _shapes_reference),
    Case("conv2d", _seq(lambda: _image_head(2, 7, 7),
                        lambda: nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2), nn.Tanh,
                        lambda: nn.Conv2d(4, 3, 2, bias=False), nn.Flatten(), lambda: nn.Linear(27, 1))),
    Case("pool2d", _seq(lambda: _image_head(2, 8, 8), nn.Sigmoid, lambda: nn.AvgPool2d(2, stride=1),
                        lambda: nn.MaxPool2d(2), lambda: nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(),
                        lambda: nn.Linear(8, 1))),
    Case("conv1d_pool1d", _seq(lambda: _signal_head(2, 16),
                               lambda: nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2), nn.Tanh,
                               lambda: nn.AvgPool1d(2), lambda: nn.MaxPool1d(2, stride=1),
                               lambda: nn.AdaptiveAvgPool1d(2), nn.Flatten(), lambda: nn.Linear(8, 1))),
    Case("batchnorm", _seq(lambda: _image_head(3, 4, 4), lambda: nn.BatchNorm2d(3), nn.Tanh, nn.Flatten(),
                           lambda: nn.Linear(48, 6), lambda: nn.BatchNorm1d(6), nn.Tanh, lambda: nn.Linear(6, 1))),
    Case("dropout_identity", _seq(lambda: _image_head(2, 3, 3), lambda: nn.Dropout2d(0.3), nn.Tanh,
                                  lambda: nn.Flatten(2), lambda: nn.Dropout1d(0.3), nn.Flatten(),
                                  lambda: nn.Dropout(0.5), lambda: nn.AlphaDropout(0.2), nn.Identity,
                                  lambda: nn.Linear(18, 1))),
]


class Residual(nn.Module):
    """Residual blocks, two branches multiplied and divided, concatenated, then a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.inp = nn.Linear(P, 6)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(2)])
        self.out = nn.Linear(12, 1)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        a = torch.sin(h)
        b = torch.exp(-0.5 * h * h)
        return self.out(torch.cat([a * b, a / (1.0 + b) - torch.log(1.0 + h**2)], dim=1))


class _FDropout(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.4, training=False)


CASES.append(Case("functional_dropout", _seq(lambda: nn.Linear(P, 4), nn.Tanh, _FDropout, lambda: nn.Linear(4, 1))))
CASES.append(Case("residual_branches", lambda: Residual().double().eval()))
CASES.append(Case("pow", lambda: Arithmetic("pow").double().eval()))

BY_NAME = {c.name: c for c in CASES}


# -- which registry keys a case exercises -------------------------------------------------------

def _registered_class(cls, registry):
    for c in cls.__mro__:
        if c in registry:
            return c
    return None


class _LeafTracer(fx.Tracer):
    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def is_leaf_module(self, m, qualname):
        return _registered_class(type(m), self.registry) is not None or super().is_leaf_module(m, qualname)


# torch.fx records these functions as the tensor method they call; a case that calls them
# covers their registry entry through that method.
TRACED_AS_METHOD = {F.tanh: "tanh", F.sigmoid: "sigmoid"}


def keys_used(model: nn.Module, registry) -> set:
    """Registry keys hit when ``model`` is traced the way the engine traces it."""
    graph = _LeafTracer(registry).trace(model)
    used = set()
    for node in graph.nodes:
        if node.op == "call_module":
            key = _registered_class(type(model.get_submodule(node.target)), registry)
        elif node.op in ("call_function", "call_method"):
            key = node.target
        else:
            continue
        if key is not None and _in(key, registry):
            used.add(key)
    for fn, method in TRACED_AS_METHOD.items():
        if _in(fn, registry) and method in used:
            used.add(fn)
    return used


def _in(key, registry) -> bool:
    try:
        return key in registry
    except TypeError:
        return False


class OriginalUnits(torch.nn.Module):
    """A fitted ensemble as a module on inputs and outputs in the table's units, one output per
    member (what the decomposition hands a piece)."""

    def __init__(self, fitted):
        super().__init__()
        self.net = fitted.model
        self.register_buffer("x_mean", torch.as_tensor(fitted.x_mean))
        self.register_buffer("x_scale", torch.as_tensor(fitted.x_scale))
        self.y_mean, self.y_scale = float(fitted.y_mean), float(fitted.y_scale)

    def forward(self, x):
        return self.y_mean + self.y_scale * self.net((x - self.x_mean) / self.x_scale)


class TwoInputLaw(torch.nn.Module):
    """``fn(x0, x1)`` as a one-output module, for expanding a known law of two inputs."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x[:, 0], x[:, 1]).unsqueeze(1)
