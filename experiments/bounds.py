"""HOPE Fig. 5: measured error e1 against the Lagrange bound e2 for Taylor orders 1..24 on [-6, 6].

A one-hidden-layer sine network (32 units, seeded) is trained on y = sin(x) + 0.5 sin(0.5 x) on
[-6, 6] and expanded at x0 = 0. For each order n, e1 = max |T_n(x) - f(x)| on the interval and
e2 = (max f^(n) - min f^(n)) / n! * 6^n, with the extremes of f^(n) from one batched expansion at
401 reference points. Sine networks are entire functions, so their series converge on any
interval once n! outgrows 6^n (tanh networks have complex poles that cap the convergence radius).

    .venv/bin/python experiments/bounds.py [--order 24]

Writes experiments/out/bounds.png, bounds.csv and bounds.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discovery.nn import Sine  # noqa: E402
from discovery.validation import validate  # noqa: E402
from _output import write_text  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
RADIUS = 6.0


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) + 0.5 * torch.sin(0.5 * x)


def train(steps: int = 1500, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 32), Sine(), nn.Linear(32, 1))
    with torch.no_grad():
        net[0].weight.uniform_(-1.0, 1.0)  # frequencies of the target's order
    x = torch.linspace(-RADIUS, RADIUS, 600).unsqueeze(1)
    y = target(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    net.training_rmse_ = float(loss.detach()) ** 0.5
    return net.double().eval()




def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=24)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    net = train(args.steps)
    start = time.perf_counter()
    v = validate(net, [0.0], RADIUS, args.order, points=1201, n_dense=401, tolerance=1e-3)
    seconds = time.perf_counter() - start
    frame = v.to_frame().drop(columns="input")
    frame["e1/e2"] = frame["e1"] / frame["e2"]
    head = (f"sine network 1-32-1 on sin(x) + 0.5 sin(0.5 x), training RMSE {net.training_rmse_:.2e}; "
            f"expansion at x0 = 0, interval [-{RADIUS:g}, {RADIUS:g}]; validate() took {seconds:.1f} s")
    body = frame.to_string(index=False, float_format=lambda x: f"{x:.3e}")
    summary = (f"e1 <= e2 at every order where the bound applies: {bool(frame.loc[frame['applies'], 'holds'].all())} "
               f"({int(frame['applies'].sum())} of {len(frame)} orders)\n{v.verdict}")
    print(head, body, summary, sep="\n\n")
    orders = sorted({2, 6, 10, 14, 18, args.order})
    v.plot(OUT / "bounds.png", orders=[n for n in orders if n <= args.order])
    write_text(OUT / "bounds.csv", frame.to_csv(index=False))
    write_text(OUT / "bounds.md", f"{head}\n\n```\n{body}\n```\n\n{summary}\n")
    return v


if __name__ == "__main__":
    main()
