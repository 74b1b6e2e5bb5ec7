"""HOPE Table 2: how the weight scale of a network decides whether its Taylor series converges.

An MLP (width 512, depth 5 by default) gets weights and biases ~ U(-w0 / sigma_m, w0 / sigma_m)
with sigma_m = sqrt(fan_in of layer m) (the paper leaves sigma_m unspecified; with this choice
w0 = 1 is PyTorch's default initialisation). For w0 = 0.01 ... 100 the table lists
|f^(n)(x0) / f'(x0)| for n = 1..10 at x0 = 0.5, computed exactly by the Taylor engine.

    .venv/bin/python experiments/convergence.py [--width 512] [--depth 5] [--activation tanh]

Writes experiments/out/convergence.csv and convergence.md.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discovery.nn import Sine  # noqa: E402
from discovery.validation import convergence_table  # noqa: E402
from _output import write_text  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
W0 = (0.01, 0.1, 1.0, 10.0, 100.0)
ACTIVATIONS = {"tanh": nn.Tanh, "sine": Sine, "sigmoid": nn.Sigmoid}


def uniform_mlp(w0: float, width: int = 512, depth: int = 5, activation: str = "tanh", seed: int = 0) -> nn.Module:
    """MLP 1 -> width x (depth - 1) -> 1, every Linear layer ~ U(-w0/sqrt(fan_in), w0/sqrt(fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1] + [width] * (depth - 1) + [1]
    layers: list[nn.Module] = []
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = nn.Linear(fan_in, fan_out, dtype=torch.float64)
        bound = w0 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.weight.copy_((torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            layer.bias.copy_((torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        layers.append(layer)
        if k < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def table(width: int, depth: int, activation: str, order: int = 10, at: float = 0.5, seed: int = 0) -> pd.DataFrame:
    columns = {}
    for w0 in W0:
        net = uniform_mlp(w0, width, depth, activation, seed)
        columns[f"w0={w0:g}"] = convergence_table(net, [at], order)["x0"]
    return pd.DataFrame(columns)




def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh")
    parser.add_argument("--order", type=int, default=10)
    parser.add_argument("--at", type=float, default=0.5)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    frame = table(args.width, args.depth, args.activation, args.order, args.at)
    seconds = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    title = (f"|f^(n)/f'| at x0={args.at}, MLP width {args.width}, depth {args.depth}, {args.activation}, "
             f"W ~ U(-w0/sqrt(fan_in), w0/sqrt(fan_in)); {seconds:.1f} s for all five networks")
    body = frame.to_string(float_format=lambda v: f"{v:.2e}")
    print(title)
    print(body)
    stem = f"convergence_{args.activation}" if args.activation != "tanh" else "convergence"
    write_text(OUT / f"{stem}.csv", frame.to_csv())
    write_text(OUT / f"{stem}.md", f"{title}\n\n{frame.to_markdown(floatfmt='.2e') if _has_tabulate() else body}\n")
    return frame


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
