"""The HTML report renders offline in a real browser, its figures show what a reader needs, and a
saved result reads back with ``Discovery.load``."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import discovery
from discovery import Discovery
from discovery.errors import DiscoveryError

DATA = Path(__file__).resolve().parent.parent / "datasets"
SMALL = dict(members=2, fit_options={"max_epochs": 50, "lbfgs_steps": 20}, crosscheck="off", progress=False, seed=0)


@pytest.fixture(scope="module")
def gravitation(tmp_path_factory):
    """A power law (log space, exact fit) saved with its report."""
    d = discovery.discover(DATA / "gravitation.csv", order=2, **SMALL)
    folder = d.save(tmp_path_factory.mktemp("gravitation") / "result")
    return d, folder


@pytest.fixture(scope="module")
def quadratic(tmp_path_factory):
    """A raw-space polynomial with 1 % noise added to the target: residuals are not round-off."""
    table = pd.read_csv(DATA / "paper_quadratic.csv")
    rng = np.random.default_rng(0)
    target = table.columns[-1]
    table[target] = table[target] + 0.01 * table[target].std() * rng.standard_normal(len(table))
    d = discovery.discover(table, order=2, space="raw", **SMALL)
    folder = d.save(tmp_path_factory.mktemp("quadratic") / "result")
    return d, folder


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# Appended to a copy of the report: records what the browser did with every image and formula.
_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (i) {
    return {src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0};
  });
  var maths = Array.from(document.getElementsByTagName('math')).map(function (m) {
    var box = m.getBoundingClientRect();
    return {width: box.width, height: box.height, font: parseFloat(getComputedStyle(m).fontSize),
            display: m.getAttribute('display')};
  });
  var resources = performance.getEntriesByType('resource').map(function (r) { return r.name; });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({imgs: imgs, maths: maths, resources: resources, width: document.body.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


def _render(report: Path, tmp_path: Path) -> dict:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (install the Debian package `chromium`, or run `make test` as root)")
    page = report.parent / "probe.html"  # same folder, so relative image paths resolve as in the report
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}",
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network at all
           f"--log-net-log={tmp_path / 'net.json'}",  # every request the network stack saw
           "--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        page.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the browser produced no probe output: {done.stderr[-2000:]}"
    import html

    probe = json.loads(html.unescape(found.group(1)))
    # The browser's own background services also use the network; the page's requests are the
    # ones isolated under the page's file:// origin.
    events = json.loads((tmp_path / "net.json").read_text())["events"]
    probe["requests"] = sorted({e["params"]["url"] for e in events
                                if "url" in e.get("params", {})
                                and "file://" in str(e["params"].get("network_isolation_key", ""))})
    return probe


def test_report_renders_offline_in_chromium(gravitation, tmp_path):
    d, folder = gravitation
    report = folder / "report.html"
    text = report.read_text(encoding="utf-8")
    assert "$$" not in text and "mathjax" not in text.lower()
    assert not re.search(r"(?i)\b(?:src|href)\s*=\s*['\"]?\s*(?:https?:)?//", text), "an external URL in src/href"
    assert not re.search(r"(?i)https?://", text), "an external URL in the page"
    assert "<math" in text and "<mfrac>" in text  # F = 6.674 m1 m2 / r^2 as presentation MathML

    probe = _render(report, tmp_path)
    assert probe["requests"] == [], f"the page asked the network for {probe['requests']}"
    assert all(r.startswith("file://") for r in probe["resources"]), probe["resources"]
    assert len(probe["imgs"]) >= 5
    broken = [i["src"] for i in probe["imgs"] if not i["loaded"]]
    assert not broken, f"images that did not load: {broken}"
    headline = probe["maths"][0]
    # natively laid-out MathML: the fraction stacks numerator over denominator, so the formula is
    # taller than one line of its own font; unrendered MathML would be one line of run-on text
    assert headline["display"] == "block" and headline["width"] > 0
    assert headline["height"] > 1.6 * headline["font"], headline
    assert probe["width"] <= 1280, "the page scrolls sideways at 1280 px"


def test_report_figures_and_tables_say_what_they_show(gravitation):
    d, folder = gravitation
    html = (folder / "report.html").read_text(encoding="utf-8")
    for name in ("pareto", "parity", "slices", "training", "coefficients"):
        assert (folder / f"{name}.png").stat().st_size > 1000 and (folder / f"{name}.svg").is_file()
    # an exact fit: no empty residual panel but the reason in words
    assert "zero to round-off" in html and "src='residuals.png'" not in html
    # log space: the constant term is the log of the prefactor, and its exponential is shown
    const = float(d.terms.loc[d.terms["term"] == "1", "coefficient"].iloc[0])
    assert d.space == "log" and f"exp({const:.6g}) = <b>{np.exp(const):.6g}</b>" in html
    assert "6.674" in f"{np.exp(const):.6g}"


def test_long_table_text_is_folded_but_kept_whole():
    from discovery.report import _table

    reason = "pruned: backward elimination, validation RMSE 3.49e-15 without it stays within 1% of 4.71e-15 " * 2
    html = _table(pd.DataFrame({"term": ["x1", "x2"], "coefficient": [0.5, 0.25], "reason": [reason, "kept"]}),
                  numeric={"coefficient": "{:.6g}"})
    folded = re.search(r"<details><summary>(.*?)</summary>(.*?)</details>", html)
    assert folded and folded.group(2) == reason and len(folded.group(1)) < 100
    assert "<td>kept</td>" in html and "<td class='num'>0.25</td>" in html


def test_parity_is_log_log_and_slices_show_data_and_spread_in_log_space(gravitation):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from discovery.figures import FIGURES

    d, _ = gravitation
    parity = FIGURES["parity"][0](d, plt)
    ax = parity.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    slices = FIGURES["slices"][0](d, plt)
    for j, ax in enumerate(slices.axes):
        band = [c for c in ax.collections if c.get_label().startswith("networks min-max")]
        assert band, "no ensemble band"
        data = [line for line in ax.lines if line.get_label().startswith("data")]
        assert data and len(data[0].get_xdata()) >= 10
        # the points shown are rows of the table, not model output
        x, y = data[0].get_data()
        rows = {(a, b) for a, b in zip(d.X[:, j], d.y)}
        assert all((a, b) in rows for a, b in zip(x, y))
    plt.close("all")


def test_pareto_front_lists_every_candidate_and_marks_the_chosen(tmp_path):
    from discovery.figures import pareto_points

    d = discovery.discover(DATA / "paper_quadratic.csv", order="auto", space="raw", **SMALL)
    points = pareto_points(d)
    assert len(points) == len(d.candidates) == 4
    assert points["chosen"].sum() == 1
    chosen = points[points["chosen"]].iloc[0]
    assert chosen["complexity"] == d.candidates.loc[d.candidates["chosen"], "complexity"].iloc[0]
    assert np.allclose(points["val_rmse"], d.candidates["val_rmse"])


def test_noisy_fit_gets_a_residual_plot(quadratic):
    from discovery.figures import residual_message

    d, folder = quadratic
    assert residual_message(d) is None
    assert (folder / "residuals.png").stat().st_size > 1000
    # the same result with the target replaced by the formula's values is exact to round-off
    exact = dataclasses.replace(d, y=d.predict(d.X))
    assert "zero to round-off" in residual_message(exact)


def test_load_round_trips_a_saved_result(gravitation, quadratic):
    for d, folder in (gravitation, quadratic):
        e = Discovery.load(folder)
        assert isinstance(e, Discovery)
        assert e.formula == d.formula and e.text(precision=17) == d.text(precision=17)
        assert (e.r2, e.rmse) == (d.r2, d.rmse)
        pd.testing.assert_frame_equal(e.terms.reset_index(drop=True), d.terms.reset_index(drop=True), check_dtype=False)
        assert (e.space, e.order, e.names, e.target_name) == (d.space, d.order, d.names, d.target_name)
        assert e.notes == list(d.notes) + list(d.merged.notes)
        X = d.X[:20]
        np.testing.assert_allclose(e.predict(X), d.predict(X), rtol=1e-12)
        np.testing.assert_allclose(e.predict_network(X), d.predict_network(X), rtol=1e-9, atol=1e-12 * np.abs(d.y).max())


def test_load_evaluates_no_code(tmp_path, gravitation):
    from discovery.load import parse_formula

    _, folder = gravitation
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    saved = json.loads((copy / "result.json").read_text())
    saved["formula_srepr"] = "__import__('os').system('touch " + str(tmp_path / "pwned") + "')"
    (copy / "result.json").write_text(json.dumps(saved))
    with pytest.raises(DiscoveryError, match="not allowed|unknown name"):
        Discovery.load(copy)
    assert not (tmp_path / "pwned").exists()
    assert str(parse_formula("Mul(Float('6.674', precision=53), Pow(Symbol('r', real=True), Integer(-2)))")) == "6.674/r**2"


@pytest.mark.filterwarnings("ignore:load_table")
def test_pareto_front_and_report_include_the_crosscheck_engine(tmp_path):
    pytest.importorskip("pyoperon")
    from discovery.figures import pareto_points
    from discovery.symbolic import text

    options = {**SMALL, "crosscheck": "operon"}
    d = discovery.discover(DATA / "energy.csv", order=2, crosscheck_budget=10,
                           crosscheck_options={"generations": 20, "n_threads": 1}, **options)
    assert d.crosscheck is not None, d.notes
    points = pareto_points(d)
    engine = points[points["source"] == d.crosscheck.engine]
    assert len(engine) >= len(d.crosscheck.candidates) >= 1
    assert len(points) == len(engine) + len(d.candidates)
    chosen = points[points["chosen"]]
    assert len(chosen) == 1 and chosen["formula"].iloc[0] == text(d.formula, precision=6)
    assert np.isfinite(engine["val_rmse"]).all()
    html = (d.save(tmp_path / "r") / "report.html").read_text(encoding="utf-8")
    assert f"Cross-check with {d.crosscheck.engine}" in html
    assert html.count("<math") >= 3  # the headline and both compared formulas
    assert not re.search(r"(?i)https?://", html)


def test_notebook_display_uses_mathml_not_tex(gravitation):
    d, _ = gravitation
    shown = d._repr_html_()
    assert "<math" in shown and "<mfrac>" in shown and "$$" not in shown


def test_panels_of_a_large_table_draw_a_sample_and_say_so(quadratic, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from discovery import figures

    d, _ = quadratic
    scored = len(d.score_index)
    monkeypatch.setattr(figures, "_SHOWN_ROWS", scored // 4)  # as a table four times too large to draw
    for name in ("parity", "residuals"):
        fig = figures.FIGURES[name][0](d, plt)
        points = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "None"]
        assert points and all(len(line.get_xdata()) == scored // 4 for line in points)
        title = fig.axes[0].get_title() if name == "parity" else fig._suptitle.get_text()
        assert f"{scored // 4} of {scored}" in title
        plt.close(fig)
    res = d.y[d.score_index] - d.predict(d.X[d.score_index])
    assert f"RMSE {float(np.sqrt(np.mean(res ** 2))):.3g} on all of them" in fig._suptitle.get_text()
