"""Run the cells of a benchmark on the Dask cluster machinery of ``discover_many``.

``--workers N`` starts a local cluster of N one-thread worker processes (as ``discover_many``
does, without Dask's malloc trimming; they find this repository and ``experiments/`` through
``PYTHONPATH``); ``--scheduler ADDR`` uses a running cluster whose workers were started with the
same ``PYTHONPATH``. Each cell runs with one torch thread; results come back in the order
the cells were given, whatever order they finish in.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterable

EXPERIMENTS = Path(__file__).resolve().parent


def _in_worker(fn: Callable, args: tuple, threads: int):
    from discovery.many import _threads

    with _threads(threads):
        return fn(*args)


def run_cells(fn: Callable, cells: Iterable[tuple], *, workers: int = 0, scheduler: str | None = None,
              threads: int = 1, done: Callable | None = None) -> list:
    """``[fn(*cell) for cell in cells]``, on a cluster when ``workers`` or ``scheduler`` is given.

    ``done(i, result)`` is called as each cell finishes (in finishing order). A cell that raises
    raises here, as it would in the loop.
    """
    cells = list(cells)
    if not workers and scheduler is None:
        results = []
        for i, cell in enumerate(cells):
            results.append(fn(*cell))
            if done:
                done(i, results[-1])
        return results
    from distributed import as_completed

    from discovery.many import _connect

    results: list = [None] * len(cells)
    # Cells of a script are pickled by value, the modules they use by name: workers must find them.
    paths = [str(EXPERIMENTS.parent), str(EXPERIMENTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    with _connect(scheduler, workers, None, "benchmark --workers/--scheduler") as client:
        batch = uuid.uuid4().hex[:8]
        futures = {client.submit(_in_worker, fn, cell, threads, pure=False, key=f"cell-{batch}-{i}"): i
                   for i, cell in enumerate(cells)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if done:
                done(i, results[i])
    return results
