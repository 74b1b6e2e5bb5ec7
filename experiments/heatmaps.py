"""HOPE heat maps against perturbation analysis on scikit-learn's 8x8 digits.

    .venv/bin/python experiments/heatmaps.py [--images 64] [--order 4] [--dx 1.0]

Trains a small tanh CNN on ``load_digits`` (bundled, no download; seeded, a few seconds), then
for every class output computes the HOPE heat map (sum of unmixed derivatives times
``dx^k / k!``, HOPE Eq. 76-77) and the perturbation map (each pixel moved by ``dx``, the output
change measured) on held-out images, and reports their correlation per class and the time of
each. Perturbation is timed three ways: all pixels of all images in one batched pass, one pass
per pixel (as in the HOPE paper), and a sweep over several ``dx`` (one HOPE expansion serves
every ``dx``; perturbation must run again for each).

Writes ``experiments/out/heatmaps.csv``, ``heatmaps.md`` and ``heatmaps.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discovery.engine import expand  # noqa: E402
from discovery.interpret.heatmaps import (  # noqa: E402
    heatmap_correlation,
    hope_heatmap_from,
    perturbation_heatmap,
)

OUT = ROOT / "experiments" / "out"


def train_cnn(seed: int = 0, epochs: int = 20):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen)
    train, test = order[:1400], order[1400:]
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = train[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net = net.double().eval()
    with torch.no_grad():
        accuracy = float((net(x[test].double()).argmax(1) == y[test]).double().mean())
    return net, x[test].double(), y[test], accuracy


def best_of(fn, repeats: int = 3):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def per_pixel_perturbation(net, images, dx):
    """One forward pass per pixel (all images at once), as perturbation analysis is usually run."""
    B = images.shape[0]
    flat = images.reshape(B, -1)
    with torch.no_grad():
        base = net(images)
        maps = []
        for i in range(flat.shape[1]):
            moved = flat.clone()
            moved[:, i] += dx
            maps.append(net(moved.reshape(images.shape)) - base)
    return torch.stack(maps, dim=2).reshape(B, base.shape[1], *images.shape[1:])


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot(hope, pert, image, label, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 11, figsize=(16, 3.4))
    for row, (maps, name) in enumerate([(hope, "HOPE"), (pert, "perturbation")]):
        axes[row, 0].imshow(image, cmap="gray_r")
        axes[row, 0].set_title(f"digit {label}" if row == 0 else "", fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=9)
        for c in range(10):
            m = maps[c]
            lim = float(np.abs(m).max()) or 1.0
            axes[row, c + 1].imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
            if row == 0:
                axes[row, c + 1].set_title(f"class {c}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Output change per pixel (dx added to one pixel): HOPE series vs measured", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--dx", type=float, default=1.0, help="pixel change (inputs are scaled to [0, 1])")
    parser.add_argument("--sweep", type=int, default=16, help="number of dx values in the sweep timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps small-op timings free of thread hand-off noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net, images, labels, accuracy = train_cnn(args.seed)
    images, labels = images[:args.images], labels[:args.images]
    print(f"CNN test accuracy {accuracy:.3f}; {len(images)} held-out images, order {args.order}, dx {args.dx}")

    t_expand, u = best_of(lambda: expand(net, images, args.order, mixed=False))
    t_eval, hope = best_of(lambda: hope_heatmap_from(u, args.dx))
    t_batched, pert = best_of(lambda: perturbation_heatmap(net, images, args.dx))
    t_pixel, pert_pixel = best_of(lambda: per_pixel_perturbation(net, images, args.dx))
    assert torch.allclose(pert, pert_pixel, atol=1e-12)
    sweep = np.linspace(args.dx / args.sweep, args.dx, args.sweep)
    t_hope_sweep, _ = best_of(lambda: [hope_heatmap_from(u, d) for d in sweep])
    t_pert_sweep, _ = best_of(lambda: [perturbation_heatmap(net, images, d) for d in sweep], repeats=1)
    t_hope = t_expand + t_eval
    t_hope_sweep_total = t_expand + t_hope_sweep

    corr = heatmap_correlation(hope, pert)
    per_order = {k: heatmap_correlation(hope_heatmap_from(_truncated(u, k), args.dx), pert) for k in range(1, args.order + 1)}
    rows = [{"class": c, "correlation": float(corr[c]),
             **{f"corr_order{k}": float(per_order[k][c]) for k in per_order}} for c in range(10)]
    table = pd.DataFrame(rows)
    timing = pd.DataFrame([
        {"method": "HOPE (expand + map)", "seconds": t_hope, "ratio_perturbation_over_hope": 1.0},
        {"method": "perturbation, one batched pass", "seconds": t_batched, "ratio_perturbation_over_hope": t_batched / t_hope},
        {"method": "perturbation, one pass per pixel", "seconds": t_pixel, "ratio_perturbation_over_hope": t_pixel / t_hope},
        {"method": f"HOPE, {args.sweep} dx values", "seconds": t_hope_sweep_total, "ratio_perturbation_over_hope": 1.0},
        {"method": f"perturbation batched, {args.sweep} dx values", "seconds": t_pert_sweep,
         "ratio_perturbation_over_hope": t_pert_sweep / t_hope_sweep_total},
    ])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"min correlation {corr.min():.4f}, mean {corr.mean():.4f} (goal >= 0.9)")
    print(timing.to_string(index=False, float_format=lambda v: f"{v:.4f}"))

    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write(OUT / "heatmaps.csv", lambda tmp: pd.concat([table.assign(kind="correlation"),
                                                                timing.assign(kind="timing")]).to_csv(tmp, index=False))
    md = (f"# HOPE heat maps vs perturbation (8x8 digits, tanh CNN, accuracy {accuracy:.3f})\n\n"
          f"{len(images)} held-out images, order {args.order}, dx {args.dx} (pixels in [0, 1]).\n\n"
          f"{markdown(table)}\n\n{markdown(timing)}\n")
    atomic_write(OUT / "heatmaps.md", lambda tmp: Path(tmp).write_text(md))
    k = 0
    plot(hope[k].reshape(10, 8, 8).numpy(), pert[k].reshape(10, 8, 8).numpy(), images[k, 0].numpy(),
         int(labels[k]), OUT / "heatmaps.png")
    print(f"wrote {OUT / 'heatmaps.csv'}, heatmaps.md, heatmaps.png")


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, floats to four decimals."""
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _truncated(u, order):
    """The same unmixed expansion cut at a lower order."""
    from discovery.engine import UnmixedExpansion

    return UnmixedExpansion(u.center, u.coefficients[:, :order + 1], order, u.output_shape)


if __name__ == "__main__":
    main()
