"""Time of Hessian-vector products and 3rd-order directional derivatives, three engines side by side.

    .venv/bin/python experiments/csfd_speed.py [--points 256] [--width 64] [--depth 4]

For random tanh MLPs with several input sizes it times, in one run:

* Hessian-vector products ``H v`` at ``B`` points: complex-step backpropagation
  (``csfd_hvp``), the Taylor engine (order-2 expansion, Hessian contracted with ``v``) and
  autograd (double backward);
* 3rd-order directional derivatives along one direction per point: the complex-step engine
  (``csfd_derivative``, order 3), the Taylor engine on the line ``t -> f(x + t d)`` (a 1-input
  expansion of order 3) and on the full input (all mixed terms contracted with ``d``), and
  nested autograd in ``t``.

Every result is checked against autograd before it is timed. Writes
``experiments/out/csfd_speed.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discovery.engine import expand  # noqa: E402
from discovery.engine.csfd import csfd_derivative, csfd_hvp  # noqa: E402
from _output import write_text  # noqa: E402

OUT = ROOT / "experiments" / "out"


class Line(nn.Module):
    """``t -> net(at + t * d)`` for per-point ``at`` and ``d``: the Taylor engine's 1-D view."""

    def __init__(self, net: nn.Module, at: torch.Tensor, d: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("at", at)
        self.register_buffer("d", d)

    def forward(self, t):
        return self.net(self.at + t * self.d)


def mlp(p: int, width: int, depth: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, fan_in = [], p
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.Tanh()]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, 1)).double().eval()


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def autograd_hvp(net, x, v):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv


def taylor_hvp(net, x, v):
    e = expand(net, x, 2)
    p = x.shape[1]
    mono = torch.as_tensor(e.monomials)
    second = mono.sum(dim=1) == 2
    c = e.coefficients[:, second, 0]  # (B, T2)
    rows = mono[second]
    hess = torch.zeros(x.shape[0], p, p, dtype=x.dtype)
    i = rows.argmax(dim=1)
    j = p - 1 - rows.flip(1).argmax(dim=1)
    hess[:, i, j] = c * torch.where(i == j, 2.0, 1.0)
    hess[:, j, i] = hess[:, i, j]
    return torch.einsum("bij,bj->bi", hess, v)


def autograd_third(net, x, d):
    t = torch.zeros(x.shape[0], 1, dtype=x.dtype, requires_grad=True)
    g = net(x + t * d).sum()
    for k in range(3):
        (g,) = torch.autograd.grad(g, t, create_graph=k < 2)
        g = g.sum() if k < 2 else g
    return g


def taylor_line_third(net, x, d):
    e = expand(Line(net, x, d), torch.zeros(x.shape[0], 1, dtype=x.dtype), 3)
    return e.derivative((3,))


def taylor_full_third(net, x, d):
    e = expand(net, x, 3)
    mono = torch.as_tensor(e.monomials)
    rows = mono.sum(dim=1) == 3
    powers = (d[:, None, :] ** mono[rows][None]).prod(dim=2)
    return 6.0 * torch.einsum("bt,bt->b", e.coefficients[:, rows, 0], powers).unsqueeze(1)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--inputs", default="2,8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps small-op timings free of thread hand-off noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for p in [int(v) for v in args.inputs.split(",")]:
        net = mlp(p, args.width, args.depth)
        gen = torch.Generator().manual_seed(p)
        x = torch.rand(args.points, p, generator=gen, dtype=torch.float64) * 2 - 1
        v = torch.randn(args.points, p, generator=gen, dtype=torch.float64)
        ref_hvp = autograd_hvp(net, x, v)
        ref_third = autograd_third(net, x, v)
        tasks = [
            ("HVP", "complex step (CSFD-BP)", lambda: csfd_hvp(net, x, v)[:, 0], ref_hvp),
            ("HVP", "Taylor engine (order 2, contracted)", lambda: taylor_hvp(net, x, v), ref_hvp),
            ("HVP", "autograd (double backward)", lambda: autograd_hvp(net, x, v), ref_hvp),
            ("d3 along v", "complex step (order 3)", lambda: csfd_derivative(net, x, v, 3), ref_third),
            ("d3 along v", "Taylor engine (line, order 3)", lambda: taylor_line_third(net, x, v), ref_third),
            ("d3 along v", "autograd (nested, 3 levels)", lambda: autograd_third(net, x, v), ref_third),
        ]
        if math.comb(p + 3, 3) <= 10_000:
            tasks.insert(5, ("d3 along v", "Taylor engine (all mixed terms)", lambda: taylor_full_third(net, x, v),
                             ref_third))
        for quantity, method, fn, ref in tasks:
            seconds, out = best_of(fn, args.repeats)
            err = float((out - ref).abs().max() / ref.abs().max())
            rows.append({"inputs": p, "quantity": quantity, "method": method, "ms": 1e3 * seconds,
                         "rel_error_vs_autograd": err})
            print(f"p={p:3d} {quantity:10s} {method:38s} {1e3 * seconds:9.2f} ms   rel err {err:.1e}")
    table = pd.DataFrame(rows)
    auto = table[table.method.str.startswith("autograd")].set_index(["inputs", "quantity"]).ms
    table["speedup_vs_autograd"] = [auto[(r.inputs, r.quantity)] / r.ms for r in table.itertuples()]
    OUT.mkdir(parents=True, exist_ok=True)
    write_text(OUT / "csfd_speed.csv", table.to_csv(index=False))
    head = (f"# HVP and 3rd-order directional derivatives: {args.points} points, tanh MLP "
            f"width {args.width}, depth {args.depth}, float64, {torch.get_num_threads()} threads\n\n")
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |")
    write_text(OUT / "csfd_speed.md", head + "\n".join(lines) + "\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {OUT / 'csfd_speed.csv'} and .md")


if __name__ == "__main__":
    main()
