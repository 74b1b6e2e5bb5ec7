"""Deadlines as :func:`time.perf_counter` times, shared by every stage that stops at one."""

from __future__ import annotations

import time


def expired(deadline: float | None) -> bool:
    """``deadline`` (a :func:`time.perf_counter` time, ``None``: none) has passed."""
    return deadline is not None and time.perf_counter() >= deadline
