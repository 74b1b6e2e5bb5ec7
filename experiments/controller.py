"""HOPE section 5.5: a network level controller for a single tank, replaced by its cubic polynomial.

The plant is G(s) = K / (T s + 1) with K = 1, T = 1 (inflow q1 -> level h), set point h_s = 10,
error e = h_s - h. The controller network q1 = f(e) is trained on the staircase labels of Eq. 74
in normalised units (input e / 10, target f(e) / 10 - 1, Eq. 75), then expanded to order 3 at
e = 0 and replaced by that polynomial (valid on the normalised range [-1, 1]; both controllers
clip e / 10 to it). Both closed loops are simulated (RK4, dt = 0.02 s, 5 s) from several
initial levels and initial inflows. The inflow reaches the tank through a valve with a
first-order lag (time constant 0.2 s) so that the initial inflow is a state of the loop; the
paper does not say how its initial inflow enters.

Then the time of one controller call is measured for batch sizes 1 ... 4096, network against
polynomial (torch module and NumPy function) in one run, interleaved, best of several repeats.

    .venv/bin/python experiments/controller.py [--steps 600] [--threads 1]

Writes experiments/out/controller_trajectories.png, controller_timing.csv/.md, controller.md.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discovery.engine import expand  # noqa: E402
from discovery.surrogate import PolynomialModule, expansion_size, to_numpy_function  # noqa: E402
from discovery.validation import validate  # noqa: E402
from _output import save_figure, write_text  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
H_SET, K, T_PLANT, VALVE_LAG = 10.0, 1.0, 1.0, 0.2
BATCHES = (1, 4, 16, 64, 256, 1024, 4096)


def staircase(e: np.ndarray) -> np.ndarray:
    """Training labels of HOPE Eq. 74: inflow for a level error e in (-10, 10]."""
    return np.select([e > 6, e > 2, e > -2, e > -6], [20.0, 15.0, 10.0, 5.0], 0.0)


def train_controller(steps: int = 600, seed: int = 0, weight_decay: float = 1e-2) -> nn.Module:
    """A smooth tanh MLP q1/10 - 1 = g(e/10), trained with the L2 loss of Eq. 75 (seeded).

    Weight decay keeps the weights small, so the network stays the smooth ramp the paper
    describes instead of chasing the staircase's jumps (which would also make its Taylor series
    at e = 0 a poor global stand-in; see HOPE section 4.2).
    """
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    e = torch.linspace(-10, 10, 2001)[1:]
    x = (e / 10).unsqueeze(1)
    y = torch.as_tensor(staircase(e.numpy()) / 10 - 1, dtype=torch.float32).unsqueeze(1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.sqrt(((net(x) - y) ** 2).mean())
        loss.backward()
        opt.step()
    net.training_loss_ = float(loss.detach())
    return net.eval()


def simulate(controller, h0: np.ndarray, q0: np.ndarray, dt: float = 0.02, t_end: float = 5.0):
    """RK4 of T h' = -h + K q, lag q' = (q_cmd - q) / VALVE_LAG, q_cmd = 10 (g(clip(e/10)) + 1).

    ``controller`` maps a float32 tensor ``(B, 1)`` of normalised errors to ``(B, 1)``.
    Returns times ``(N,)``, levels and inflows ``(N, B)``.
    """
    def command(h):
        e = np.clip((H_SET - h) / 10.0, -1.0, 1.0)
        with torch.inference_mode():
            g = controller(torch.as_tensor(e, dtype=torch.float32).unsqueeze(1))
        return 10.0 * (np.asarray(g, dtype=np.float64).reshape(-1) + 1.0)

    def rhs(state):
        h, q = state
        return np.stack([(-h + K * q) / T_PLANT, (command(h) - q) / VALVE_LAG])

    n = int(round(t_end / dt))
    state = np.stack([np.asarray(h0, float), np.asarray(q0, float)])
    history = [state]
    for _ in range(n):
        k1 = rhs(state)
        k2 = rhs(state + 0.5 * dt * k1)
        k3 = rhs(state + 0.5 * dt * k2)
        k4 = rhs(state + dt * k3)
        state = state + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        history.append(state)
    hist = np.stack(history)
    return np.arange(n + 1) * dt, hist[:, 0], hist[:, 1]


def time_call(fn, x, min_time: float = 0.05, repeats: int = 7, sync=lambda: None) -> float:
    """Best over ``repeats`` of the mean seconds per call (each repeat runs for ~``min_time``).

    ``sync`` waits for queued device work (``torch.cuda.synchronize`` on a GPU).
    """
    fn(x)
    sync()
    n, start = 1, time.perf_counter()
    while time.perf_counter() - start < min_time / 5:
        fn(x)
        n += 1
    per_repeat = max(1, int(n * 5 * min_time / max(time.perf_counter() - start, 1e-9) / 5))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_repeat):
            fn(x)
        sync()
        best = min(best, (time.perf_counter() - start) / per_repeat)
    return best


def timing_table(net: nn.Module, poly: nn.Module, numpy_fn, seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    gen = torch.Generator().manual_seed(seed)
    net, poly = net.to(device), poly.to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    rows = []
    for b in BATCHES:
        x = torch.rand(b, 1, generator=gen) * 2 - 1
        xn = x.numpy().astype(np.float64)
        x = x.to(device)
        with torch.inference_mode():
            t_net = time_call(net, x, sync=sync)
            t_poly = time_call(poly, x, sync=sync)
        t_np = time_call(numpy_fn, xn)
        rows.append({"batch": b, "network_ms": 1e3 * t_net, "polynomial_torch_ms": 1e3 * t_poly,
                     "polynomial_numpy_ms": 1e3 * t_np, "speedup_torch": t_net / t_poly, "speedup_numpy": t_net / t_np})
    return pd.DataFrame(rows)


def plot(t, runs, labels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (h_net, q_net), (h_poly, q_poly) = runs
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for j in range(h_net.shape[1]):
        color = f"C{j % 10}"
        axes[0].plot(t, h_net[:, j], color=color, lw=2, alpha=0.6)
        axes[0].plot(t, h_poly[:, j], color="k", ls="--", lw=0.8)
        axes[1].plot(t, q_net[:, j], color=color, lw=2, alpha=0.6, label=labels[j] if j < 10 else None)
        axes[1].plot(t, q_poly[:, j], color="k", ls="--", lw=0.8)
    axes[0].axhline(H_SET, color="grey", lw=0.5)
    axes[0].set(xlabel="time (s)", ylabel="level h", title="level: network (colour) vs cubic polynomial (dashed)")
    axes[1].set(xlabel="time (s)", ylabel="inflow q1", title="inflow")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)




def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps of the controller network")
    parser.add_argument("--device", default="cpu", help="where the timed torch calls run (cpu or cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing (same for both)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    net = train_controller(args.steps)
    expansion = expand(net, [0.0], 3)
    poly = PolynomialModule(expansion, dtype=torch.float32).eval()
    numpy_fn = to_numpy_function(expansion)
    grid = torch.linspace(-1, 1, 2001).unsqueeze(1)
    with torch.inference_mode():
        fit_gap = float((net(grid) - poly(grid)).abs().max())
    check = validate(net, [0.0], 1.0, order=3, points=401, n_dense=101, tolerance=1e-2)

    h0 = np.array([0.0, 4.0, 8.0, 12.0, 16.0, 20.0])
    q0 = np.array([0.0, 10.0, 20.0])
    H0, Q0 = (a.ravel() for a in np.meshgrid(h0, q0, indexing="ij"))
    labels = [f"h0={h:g}, q0={q:g}" for h, q in zip(H0, Q0)]
    t, h_net, q_net = simulate(net, H0, Q0)
    _, h_poly, q_poly = simulate(poly, H0, Q0)
    dev_h = float(np.abs(h_net - h_poly).max())
    dev_q = float(np.abs(q_net - q_poly).max())
    plot(t, [(h_net, q_net), (h_poly, q_poly)], labels, OUT / "controller_trajectories.png")

    torch.set_num_threads(args.threads)
    timing = timing_table(net, poly, numpy_fn, device=args.device)
    sizes = expansion_size(expansion, net, dtype=torch.float32)

    coeffs = expansion.coefficients[0, :, 0].tolist()
    poly_text = " + ".join(f"{c:+.4f} e^{k}" for k, c in enumerate(coeffs)).replace("+ +", "+ ").replace("+ -", "- ")
    lines = [
        "# Single-tank level controller: network vs its cubic Taylor polynomial",
        "",
        f"controller network 1-16-16-1 tanh (AdamW, weight decay 1e-2), training RMS error {net.training_loss_:.4f} (normalised units)",
        f"cubic polynomial at e=0 (normalised): g(e) = {poly_text}",
        f"max |network - polynomial| on [-1, 1] (normalised output): {fit_gap:.4f}",
        f"validate(order 3, radius 1): {check.verdict}",
        "",
        f"closed loops from {len(H0)} initial states (h0 in {h0.tolist()}, q0 in {q0.tolist()}), 5 s:",
        f"max |h_network - h_polynomial| = {dev_h:.4f}   (levels; set point {H_SET:g})",
        f"max |q_network - q_polynomial| = {dev_q:.4f}   (inflows)",
        f"final levels: network {np.round(h_net[-1], 3).tolist()}",
        f"              polynomial {np.round(h_poly[-1], 3).tolist()}",
        "",
        f"model size: network state_dict {sizes['network_bytes']} B (file {sizes['network_file_bytes']} B); "
        f"polynomial {sizes['polynomial_bytes']} B of numbers (file {sizes['polynomial_file_bytes']} B); "
        f"ratio {sizes['ratio']:.0f}x",
        "",
        f"inference time per call (ms), float32, torch on {args.device} (NumPy on CPU), torch threads={args.threads}, best of 7 repeats, one run:",
        timing.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
    ]
    report = "\n".join(lines)
    print(report)
    suffix = "" if args.device == "cpu" else f"_{torch.device(args.device).type}"
    write_text(OUT / f"controller{suffix}.md", report + "\n")
    write_text(OUT / f"controller_timing{suffix}.csv", timing.to_csv(index=False))
    return {"deviation_h": dev_h, "deviation_q": dev_q, "timing": timing, "sizes": sizes}


if __name__ == "__main__":
    main()
