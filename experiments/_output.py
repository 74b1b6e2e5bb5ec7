"""Atomic outputs for the experiment scripts: each file is written under a temporary name in its
folder and renamed into place, so an interrupted run never leaves half a table behind."""

from __future__ import annotations

from pathlib import Path

from discovery.folders import atomic_write


def write_with(path: Path, write) -> Path:
    """Call ``write(temporary_path)`` and rename the result to ``path`` (folders are created)."""
    return atomic_write(path, write)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_with(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(fig, path: Path, **savefig_options) -> Path:
    """Save a Matplotlib figure to ``path`` atomically (the format follows the suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_options))


def markdown(frame) -> str:
    """A DataFrame as a Markdown table (floats with 4 significant digits)."""
    cols = list(frame.columns)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(lines)
