"""The stages of discover() on their own: the clock, the choice between the expansion's and the
decomposition's formula, and what the command line and the estimator show of the warnings."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sympy

from discovery import stages
from discovery.cli import main
from discovery.errors import DiscoveryWarning
from discovery.estimator import DiscoveryRegressor
from discovery.trust import split_rows


def test_clock_times_and_logs_each_stage_once(caplog):
    clock = stages.Clock(budget=100.0)
    with caplog.at_level(logging.INFO, logger="discovery"):
        with clock.stage("fit raw"):
            pass
        with pytest.raises(ZeroDivisionError), clock.stage("merge raw"):
            1 / 0
    assert list(clock.timings) == ["fit raw"]  # a stage that raised is not reported as done
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["fit raw"]
    assert 0 < clock.left() <= 100.0
    assert stages.Clock(None).left() == float("inf")


def _split(y: np.ndarray, X: np.ndarray) -> stages.Split:
    table = SimpleNamespace(target_name="y", renamed={}, source=None, warnings=[])
    return stages.Split(table, X, y, ["a", "b"], split_rows(len(y), 0.2, 0.2, seed=0))


def _choice(expr) -> stages.Choice:
    return stages.Choice(stages.Candidate("raw", 2, SimpleNamespace(expression=expr)), "", "", pd.DataFrame())


def test_propose_takes_the_significantly_better_formula_then_the_simpler():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 2, (400, 2))
    a, b = sympy.symbols("a b", real=True)
    y = X[:, 0] * np.exp(-X[:, 1])
    s = _split(y, X)
    exact = sympy.Symbol("a") * sympy.exp(-sympy.Symbol("b"))  # the decomposition's symbols are plain
    taylor = sympy.series(sympy.exp(-b), b, 1.5, 3).removeO() * a  # what a quadratic expansion looks like
    dec = stages.Decomposed(True, "decompose=True", SimpleNamespace(expression=exact))
    p = stages.propose(s, _choice(sympy.expand(taylor)), dec)
    assert p.source == "decomposition" and p.formula == exact and p.reason.startswith("decomposition: more accurate")
    # the same formula in a longer form: as accurate, so the simpler one is taken
    longer = a * (sympy.exp(-b) * (1 + b**2) - b**2 * sympy.exp(-b))  # kept unexpanded
    p = stages.propose(s, _choice(longer), dec)
    assert p.source == "decomposition" and "as accurate" in p.reason and "simpler" in p.reason
    p = stages.propose(s, _choice(a * sympy.exp(-b)), dec)
    assert p.source == "expansion" and "no more complex" in p.reason
    assert stages.propose(s, _choice(taylor), stages.Decomposed(False, "decompose=False")).source == "expansion"


@pytest.fixture()
def quadratic_csv(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, (120, 2))
    path = tmp_path / "q.csv"
    pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "y": X[:, 0] ** 2 + X[:, 1]}).to_csv(path, index=False)
    return path


def test_command_line_prints_each_warning_once_and_logs_each_stage(quadratic_csv, tmp_path, capsys):
    code = main(["run", str(quadratic_csv), "--members", "2", "--crosscheck", "off", "--no-report",
                 "--decompose", "off", "--time-budget", "90", "--out", str(tmp_path / "res")])
    captured = capsys.readouterr()
    assert code == 0
    both = captured.out + captured.err
    assert both.count("no target given") == 1 and "warning: no target given" in captured.out  # in the summary
    logged = [line for line in captured.err.splitlines() if line.startswith("discovery: ") and
              line.endswith(" s elapsed)")]  # the stage lines (the training may log its own as well)
    assert [line.split(":")[1].strip() for line in logged] == ["load", "fit raw", "expand raw", "merge raw", "choose"]
    import json

    settings = json.loads((tmp_path / "res" / "result.json").read_text())["settings"]
    assert settings["decompose"] == "off" and settings["time_budget"] == 90.0


def test_a_budget_too_small_for_the_cross_check_skips_it_and_says_so(quadratic_csv):
    from discovery.pipeline import discover

    with pytest.warns(DiscoveryWarning, match="no cross-check ran: the time budget"):
        d = discover(quadratic_csv, target="y", crosscheck="operon", members=2, progress=False, time_budget=1)
    assert d.crosscheck is None and d.settings["time_budget"] == 1.0
    assert any(n.startswith("cross-check with operon cut: the time budget of 1 s") for n in d.notes)


def test_command_line_quiet_logs_nothing(quadratic_csv, tmp_path, capsys):
    code = main(["run", str(quadratic_csv), "--members", "2", "--crosscheck", "off", "--no-report", "--quiet",
                 "--out", str(tmp_path / "res")])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert logging.getLogger("discovery").handlers == []  # the command leaves no handler behind


def test_estimator_raises_the_discovery_warnings_again():
    rng = np.random.default_rng(6)
    X = rng.uniform(-1, 1, (200, 2))
    y = rng.standard_normal(200)  # no law: the formula is no better than a constant
    model = DiscoveryRegressor(order=1, members=2, hidden=(8,), max_epochs=30, lbfgs_steps=10, reference_points=4,
                               random_state=0)
    with pytest.warns(DiscoveryWarning, match="no better than the constant") as record:
        model.fit(X, y)
    raised = [str(w.message) for w in record if issubclass(w.category, DiscoveryWarning)]
    assert len(raised) == len(model.discovery_.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X[:3])  # predicting warns about nothing


def test_a_large_validation_set_is_judged_on_a_seeded_sample(monkeypatch):
    # The formula-against-networks judgments (decomposition trigger, warnings) read at most
    # _JUDGE_ROWS validation rows: one ensemble prediction of them, shared by both.
    from discovery.fit import FittedEnsemble
    from discovery.pipeline import discover

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 2, (1500, 3))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X[:, 0] * np.exp(-X[:, 1] / X[:, 2])})
    monkeypatch.setattr(stages, "_JUDGE_ROWS", 40)
    sizes, predict = [], FittedEnsemble.predict_members
    monkeypatch.setattr(FittedEnsemble, "predict_members", lambda self, X: sizes.append(len(X)) or predict(self, X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = discover(frame, target="y", order=2, space="raw", crosscheck="off", members=2, progress=False,
                     decompose=False, fit_options={"max_epochs": 150, "lbfgs_steps": 50, "hidden": (16, 16)})
    assert sizes.count(40) == 1  # one prediction on the sample, none on all validation rows
    assert len(d.fit_index[d.fitted.val_index]) not in sizes
    assert any(w.startswith("the expansion's formula only approximates") for w in d.warnings)
    rows = split_rows(1500, 0.2, 0.2, d.settings["seed"])
    judged = stages.judged_rows(rows, d.settings["seed"])
    assert len(judged) == 40 and set(judged) <= set(rows.validation)


def _momentum() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 2, (300, 2))
    return pd.DataFrame({"m": X[:, 0], "v": X[:, 1], "p": X[:, 0] * X[:, 1] + np.sin(X[:, 1])})


def test_the_crosscheck_says_when_it_starts_off_a_terminal(caplog):
    from discovery.pipeline import discover

    with caplog.at_level(logging.INFO, logger="discovery"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        discover(_momentum(), target="p", order=2, members=2, crosscheck="operon", crosscheck_budget=2,
                 progress=False, decompose=False, fit_options={"max_epochs": 30, "lbfgs_steps": 5})
    lines = [r.getMessage() for r in caplog.records if r.name == "discovery"]
    start = lines.index("crosscheck: operon searching, at most 2 s")
    assert any(line.startswith("crosscheck: ") and line.endswith("elapsed)") for line in lines[start + 1:])


def test_the_crosscheck_moves_a_bar_over_its_budget_on_a_terminal(monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    with stages._engine_progress("operon", 3, progress=True):
        import time

        time.sleep(1.6)  # an engine call that holds no lock
    shown = screen.getvalue()
    assert "crosscheck: operon" in shown and "/3" in shown
    assert "1/3" in shown  # the thread moved it while the call ran
