"""Regenerate the bundled example datasets: ``python datasets/generate.py``.

Every file is drawn from a fixed seed and written with full float64 precision (``%.17g``), so
rerunning this script reproduces identical bytes. ``README.md`` in this folder states each law.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Law:
    name: str
    law: str
    features: tuple[str, ...]
    target: str
    low: float
    high: float
    seed: int
    formula: Callable[..., np.ndarray]
    rows: int = 2000


LAWS = (
    Law("paper_quadratic", "y = (x1**2 + x2)/2", ("x1", "x2"), "y", -1.0, 1.0, 101,
        lambda x1, x2: (x1**2 + x2) / 2),
    Law("paper_five", "y = 0.5 + x1 + 0.6*x2*x3 - 0.8*x2*x4 + x1*x2*x3 - x3*x5",
        ("x1", "x2", "x3", "x4", "x5"), "y", -1.0, 1.0, 102,
        lambda x1, x2, x3, x4, x5: 0.5 + x1 + 0.6 * x2 * x3 - 0.8 * x2 * x4 + x1 * x2 * x3 - x3 * x5),
    Law("momentum", "p = m*v", ("m", "v"), "p", 1.0, 5.0, 103, lambda m, v: m * v),
    Law("energy", "E = m*c**2", ("m", "c"), "E", 1.0, 5.0, 104, lambda m, c: m * c**2),
    Law("gravitation", "F = 6.674*m1*m2/r**2", ("m1", "m2", "r"), "F", 1.0, 5.0, 105,
        lambda m1, m2, r: 6.674 * m1 * m2 / r**2),
    Law("torricelli", "v = sqrt(2*g*h)", ("g", "h"), "v", 1.0, 5.0, 106,
        lambda g, h: np.sqrt(2 * g * h)),
    Law("saddle", "y = x1**2 - x2**2 + 0.5*x1*x2", ("x1", "x2"), "y", -2.0, 2.0, 107,
        lambda x1, x2: x1**2 - x2**2 + 0.5 * x1 * x2),
    Law("sine_quadratic", "y = sin(x1) + 0.5*x2**2", ("x1", "x2"), "y", -2.0, 2.0, 108,
        lambda x1, x2: np.sin(x1) + 0.5 * x2**2),
    Law("gaussian", "y = exp(-x**2/2)/sqrt(2*pi)", ("x",), "y", -3.0, 3.0, 109,
        lambda x: np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi)),
)


def table(law: Law) -> pd.DataFrame:
    """The law's table: features uniform on [low, high]^p, noise-free target last."""
    rng = np.random.default_rng(law.seed)
    X = rng.uniform(law.low, law.high, size=(law.rows, len(law.features)))
    frame = pd.DataFrame(X, columns=list(law.features))
    frame[law.target] = law.formula(*X.T)
    return frame


def write(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            frame.to_csv(handle, index=False, float_format="%.17g", lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    for law in LAWS:
        path = HERE / f"{law.name}.csv"
        write(table(law), path)
        print(f"{path.name:22s} {law.rows} rows  {law.law}")


if __name__ == "__main__":
    main()
