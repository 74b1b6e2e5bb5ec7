"""HOPE heat maps against perturbation analysis on scikit-learn's 8x8 digits.

    .venv/bin/python experiments/heatmaps.py [--images 64] [--order 4] [--dx 1.0] [--size 8]

Trains a small tanh CNN on ``load_digits`` (bundled, no download; seeded, a few seconds), then
for every class output computes the HOPE heat map (sum of unmixed derivatives times
``dx^k / k!``, HOPE Eq. 76-77) and the perturbation map (each pixel moved by ``dx``, the output
change measured) on held-out images, and reports their correlation per class and the time of
each, all in one run, best of 3. Two HOPE methods:

- ``backward``: the HOPE paper's backward pass (one pass for all classes, pixels and images).
  Order 1 is the exact gradient; orders >= 2 leave out the cross terms between hidden units,
  so on this two-layer CNN they approximate the unmixed series.
- ``exact``: the Taylor engine's ``expand(net, images, order, mixed=False)``, exact unmixed
  derivatives, one univariate series per pixel.

Perturbation is timed as all pixels of all images in one batched pass, and as one pass per
pixel (as in the HOPE paper). The goal line: backward correlation >= 0.9 for every class and
>= 10x faster than the batched perturbation pass. A sweep over several ``dx`` shows that one
HOPE expansion serves every ``dx`` while perturbation must run again for each.

The backward pass carries 10 classes x order vectors per image, perturbation one copy per pixel,
so its lead grows with the pixel count: ``--size 28`` resamples the digits to 28x28 (MNIST's
size) and trains the same CNN there.

Writes ``experiments/out/heatmaps.csv``, ``heatmaps.md`` and ``heatmaps.png`` (with ``--size``
other than 8: ``heatmaps_<size>px.*``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from _output import save_figure, write_text, write_with  # noqa: E402

from discovery.engine import UnmixedExpansion, expand  # noqa: E402
from discovery.interpret.heatmaps import (  # noqa: E402
    backward_unmixed,
    heatmap_correlation,
    hope_heatmap,
    hope_heatmap_from,
    perturbation_heatmap,
)

OUT = ROOT / "experiments" / "out"
GOAL_CORRELATION, GOAL_SPEEDUP = 0.9, 10.0


def train_cnn(seed: int = 0, epochs: int = 20, size: int = 8):
    """The tanh CNN on the digits, resampled (bilinear) to ``size x size`` pixels when not 8."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    if size != 8:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen)
    train, test = order[:1400], order[1400:]
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 10))
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


def plot(rows, image, label, path: Path) -> None:
    """One row of ten class maps per method, the digit on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 11, figsize=(16, 1.7 * len(rows)))
    for row, (name, maps) in enumerate(rows):
        axes[row, 0].imshow(image, cmap="gray_r")
        axes[row, 0].set_title(f"digit {label}" if row == 0 else "", fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=8)
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
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, floats to four significant decimals."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def truncated(u: UnmixedExpansion, order: int) -> UnmixedExpansion:
    """The same unmixed expansion cut at a lower order."""
    return UnmixedExpansion(u.center, u.coefficients[:, :order + 1], order, u.output_shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--dx", type=float, default=1.0, help="pixel change (inputs are scaled to [0, 1])")
    parser.add_argument("--sweep", type=int, default=16, help="number of dx values in the sweep timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=8,
                        help="image side in pixels, a multiple of 4 (8: the digits as they are; larger: resampled)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps small-op timings free of thread hand-off noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.size % 4:
        parser.error(f"--size {args.size}: must be a multiple of 4 (two 2x2 poolings)")

    net, images, labels, accuracy = train_cnn(args.seed, size=args.size)
    images, labels = images[:args.images], labels[:args.images]
    B, D = images.shape[0], images[0].numel()
    print(f"CNN test accuracy {accuracy:.3f}; {B} held-out images of {D} pixels, 10 classes, "
          f"order {args.order}, dx {args.dx}, {torch.get_num_threads()} torch thread(s), best of 3")

    timed = {
        "backward": best_of(lambda: hope_heatmap(net, images, args.order, args.dx, method="backward")),
        "exact": best_of(lambda: hope_heatmap(net, images, args.order, args.dx, method="exact")),
        "batched": best_of(lambda: perturbation_heatmap(net, images, args.dx)),
        "per_pixel": best_of(lambda: per_pixel_perturbation(net, images, args.dx)),
    }
    pert = timed["batched"][1]
    assert torch.allclose(pert, timed["per_pixel"][1], atol=1e-12)
    t_batched, t_pixel = timed["batched"][0], timed["per_pixel"][0]

    expansions = {"backward": backward_unmixed(net, images, args.order),
                  "exact": expand(net, images, args.order, mixed=False)}
    for method, u in expansions.items():  # the maps timed above are these expansions' maps
        assert torch.allclose(hope_heatmap_from(u, args.dx), timed[method][1], rtol=1e-12, atol=1e-14)

    corr = {m: heatmap_correlation(timed[m][1], pert) for m in expansions}
    rows = []
    for c in range(10):
        row = {"class": c}
        for m in expansions:
            row[f"{m}_corr"] = float(corr[m][c])
        for m, u in expansions.items():
            for k in range(1, args.order):
                row[f"{m}_corr_order{k}"] = float(heatmap_correlation(hope_heatmap_from(truncated(u, k), args.dx),
                                                                      pert)[c])
        rows.append(row)
    table = pd.DataFrame(rows)

    sweep = np.linspace(args.dx / args.sweep, args.dx, args.sweep)
    t_sweep = {m: timed[m][0] + best_of(lambda: [hope_heatmap_from(expansions[m], d) for d in sweep])[0]
               for m in expansions}
    t_pert_sweep, _ = best_of(lambda: [perturbation_heatmap(net, images, d) for d in sweep], repeats=1)

    def timing_row(method, seconds, note=""):
        return {"method": method, "seconds": seconds, "batched_perturbation_over_this": t_batched / seconds,
                "note": note}

    timing = pd.DataFrame([
        timing_row("HOPE backward (one backward pass + map)", timed["backward"][0],
                   f"{10 * args.order} backward vectors per image"),
        timing_row("HOPE exact (engine expand, mixed=False, + map)", timed["exact"][0],
                   f"{D} univariate series per image"),
        timing_row("perturbation, one batched pass", t_batched, f"{D} perturbed copies per image"),
        timing_row("perturbation, one pass per pixel", t_pixel, f"{D} passes"),
        timing_row(f"HOPE backward, {args.sweep} dx values", t_sweep["backward"], "one pass serves every dx"),
        timing_row(f"HOPE exact, {args.sweep} dx values", t_sweep["exact"], "one expansion serves every dx"),
        timing_row(f"perturbation batched, {args.sweep} dx values", t_pert_sweep, "one pass per dx"),
    ])

    speedup = {m: t_batched / timed[m][0] for m in expansions}
    speedup_pixel = {m: t_pixel / timed[m][0] for m in expansions}
    summary = []
    for m in expansions:
        summary.append(f"{m:8s}: correlation min {corr[m].min():.4f} mean {corr[m].mean():.4f}; "
                       f"{timed[m][0]:.4f} s, {speedup[m]:.2f}x the batched perturbation pass "
                       f"({t_batched:.4f} s), {speedup_pixel[m]:.2f}x the per-pixel passes ({t_pixel:.4f} s)")
    passed = corr["backward"].min() >= GOAL_CORRELATION and speedup["backward"] >= GOAL_SPEEDUP
    goal = (f"GOAL (backward: correlation >= {GOAL_CORRELATION} for every class and >= {GOAL_SPEEDUP:g}x faster "
            f"than the batched perturbation pass): {'PASS' if passed else 'FAIL'} - correlation "
            f"{'ok' if corr['backward'].min() >= GOAL_CORRELATION else 'below'} (min {corr['backward'].min():.4f}), "
            f"speed {'ok' if speedup['backward'] >= GOAL_SPEEDUP else 'short'} ({speedup['backward']:.2f}x)")
    work = (f"Work per image: the backward pass carries {10 * args.order} vectors (10 classes x order "
            f"{args.order}) from the outputs to the pixels; batched perturbation carries {D} perturbed copies "
            f"forward; the exact engine carries {D} series of {args.order + 1} coefficients.")

    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(timing.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\n".join(summary))
    print(work)
    print(goal)

    stem = "heatmaps" if args.size == 8 else f"heatmaps_{args.size}px"
    write_with(OUT / f"{stem}.csv", lambda tmp: pd.concat([table.assign(kind="correlation"),
                                                          timing.assign(kind="timing")]).to_csv(tmp, index=False))
    md = (f"# HOPE heat maps vs perturbation ({args.size}x{args.size} digits, tanh CNN, accuracy {accuracy:.3f})\n\n"
          f"{B} held-out images, order {args.order}, dx {args.dx} (pixels in [0, 1]), "
          f"{torch.get_num_threads()} torch thread(s), times best of 3 in one run.\n\n"
          "`backward`: the HOPE paper's backward pass; exact first order (the gradient), higher orders "
          "without the cross terms between hidden units (approximate for this two-layer CNN). "
          "`exact`: the Taylor engine's exact unmixed series.\n\n"
          f"{markdown(table)}\n\n{markdown(timing)}\n\n" + "\n".join(f"- {s}" for s in summary)
          + f"\n\n{work}\n\n**{goal}**\n")
    write_text(OUT / f"{stem}.md", md)
    k = 0
    side = (10, args.size, args.size)
    plot([("HOPE backward", timed["backward"][1][k].reshape(side).numpy()),
          ("HOPE exact", timed["exact"][1][k].reshape(side).numpy()),
          ("perturbation", pert[k].reshape(side).numpy())],
         images[k, 0].numpy(), int(labels[k]), OUT / f"{stem}.png")
    print(f"wrote {OUT / stem}.csv, {stem}.md, {stem}.png")


if __name__ == "__main__":
    main()
