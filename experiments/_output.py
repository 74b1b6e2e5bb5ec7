"""Atomic outputs for the experiment scripts: each file is written under a temporary name in its
folder and renamed into place, so an interrupted run never leaves half a table behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_with(path: Path, write) -> Path:
    """Call ``write(temporary_path)`` and rename the result to ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_with(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(fig, path: Path, **savefig_options) -> Path:
    """Save a Matplotlib figure to ``path`` atomically (the format follows the suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_options))
