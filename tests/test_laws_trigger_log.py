"""When decompose="auto" runs the decomposition although the expansion's formula is as accurate
as the networks: ``stages.log_series``.

In log space a formula ``y = s exp(P(log x))`` is a power law when ``P`` has degree 1; terms of
degree 2 or more are the local series of ``log |y|`` in ``log x``, which noise can make as
accurate as the networks on the rows while it is no closed form. Read from the merged formula of
a trained ensemble: it fires on a law that is no power law and stays quiet on a power law.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from discovery.pipeline import discover
from discovery.stages import log_series

FAST = {"max_epochs": 150, "patience": 50, "lbfgs_steps": 100, "hidden": (16, 16)}
COMMON = dict(target="y", order=2, space="log", crosscheck="off", decompose=False, members=3, progress=False,
              fit_options=FAST)


def _frame(law, n: int = 800, noise: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    X = rng.uniform([1.0, 1.0], [2.0, 3.0], (n, 2))
    y = law(*X.T)
    y = y + noise * np.std(y) * rng.standard_normal(n)
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": y})


def test_a_log_space_series_of_a_law_that_is_no_power_law_is_named(one_thread):
    d = discover(_frame(lambda a, b: 1 / a**2 - 0.2 / b**2), **COMMON)
    assert d.merged.space == "log"
    reason = log_series(d.merged)
    assert reason is not None and "degree 2 in log x" in reason, (reason, d.merged.expression)


def test_a_power_law_is_no_series(one_thread):
    d = discover(_frame(lambda a, b: 2 * a * b**2), **COMMON)
    assert d.merged.space == "log"
    assert log_series(d.merged) is None, d.merged.expression
