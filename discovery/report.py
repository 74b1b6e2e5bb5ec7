"""HTML report with PNG figures for a :class:`~discovery.result.Discovery`, and atomic folders.

Figures (matplotlib, Agg backend): the spread of every candidate coefficient across reference
points (box plots, as in the HOPE paper), a parity plot, residuals against each variable, and the
network against the formula along 1-D slices through the data's median.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from discovery.errors import DiscoveryError

__all__ = ["check_folder", "write_folder", "write_report"]

_MARKERS = ("result.json", "report.html")


def check_folder(directory, call: str, source: str | None = None) -> Path:
    """Raise unless ``directory`` may receive a result folder (see :func:`write_folder`)."""
    target = Path(directory)
    if source is not None:
        src = Path(source).resolve()
        if src == target.resolve() or target.resolve() in src.parents:
            raise DiscoveryError(f"{call}: {target} holds the input file {source}; pass another folder")
    if target.exists():
        if not target.is_dir():
            raise DiscoveryError(f"{call}: {target} exists and is not a folder; pass a folder path")
        entries = list(target.iterdir())
        if entries and not any((target / m).exists() for m in _MARKERS):
            raise DiscoveryError(
                f"{call}: {target} exists and is not an earlier result folder; pass a new or empty folder"
            )
    return target


def write_folder(directory, write: Callable[[Path], None], call: str, source: str | None = None) -> Path:
    """Fill a new temporary folder with ``write(tmp)`` and rename it to ``directory``.

    An existing ``directory`` is replaced only when it is an earlier result folder (it holds
    ``result.json`` or ``report.html``) and does not hold the input file ``source``.

    Examples
    --------
    >>> import tempfile
    >>> parent = tempfile.TemporaryDirectory()
    >>> out = write_folder(Path(parent.name) / "out", lambda tmp: (tmp / "a.txt").write_text("hi"), "demo")
    >>> out.name, [f.name for f in out.iterdir()], (out / "a.txt").read_text()
    ('out', ['a.txt'], 'hi')
    >>> parent.cleanup()
    """
    target = check_folder(directory, call, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_report(d, folder: Path) -> Path:
    """Write ``report.html`` and its PNG figures into ``folder`` (which must exist)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from discovery.symbolic import latex, text

    folder = Path(folder)
    figures = []
    for name, draw in (("coefficients.png", _coefficient_boxes), ("parity.png", _parity),
                       ("residuals.png", _residuals), ("slices.png", _slices)):
        fig = draw(d, plt)
        if fig is not None:
            fig.savefig(folder / name, dpi=110, bbox_inches="tight")
            plt.close(fig)
            figures.append(name)

    r2, rmse = d._scores(d.formula)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>discovery: {e(d.target_name)}</title>",
        "<script>MathJax={tex:{inlineMath:[['$','$']]}}</script>",
        "<script async src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js'></script>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "code{background:#f4f4f4;padding:1px 4px}img{max-width:100%}</style></head><body>",
        f"<h1>{e(d.target_name)} = <code>{e(text(d.formula, precision=6))}</code></h1>",
        f"<p>$${e(latex(d.formula, precision=4))}$$</p>",
        "<table>",
        f"<tr><th>R<sup>2</sup> / RMSE ({'held-out' if len(d.test_index) else 'all'} rows, {len(d.score_index)})</th>"
        f"<td>{r2:.6f} / {rmse:.4g}</td></tr>",
        f"<tr><th>space</th><td>{e(d.space_reason or d.space)}</td></tr>",
        f"<tr><th>order</th><td>{e(d.order_reason)}</td></tr>",
        f"<tr><th>reference points</th><td>{len(d.local)} (networks kept: {len(d.members_kept)} of {d.fitted.members})</td></tr>",
        f"<tr><th>data</th><td>{e(str(d.source or 'DataFrame'))}: {len(d.y)} rows, features {e(', '.join(d.names))}</td></tr>",
        f"<tr><th>time</th><td>{e(', '.join(f'{k} {v:.2f} s' for k, v in d.timings.items()))}</td></tr>",
        "</table>",
    ]
    if d.crosscheck is not None:
        c = d.crosscheck
        er2, _ = d._scores(d.expansion_formula)
        parts += [
            f"<h2>Cross-check with {e(c.engine)}: {e(c.verdict)}</h2>",
            "<table><tr><th></th><th>expansion (HOPE)</th><th>" + e(c.engine) + "</th></tr>",
            f"<tr><th>formula</th><td><code>{e(text(c.expansion_formula, precision=6))}</code></td>"
            f"<td><code>{e(text(c.engine_formula, precision=6))}</code></td></tr>",
            f"<tr><th>R<sup>2</sup> held-out</th><td>{c.r2['expansion']:.6f}</td><td>{c.r2[c.engine]:.6f}</td></tr>",
            f"<tr><th>complexity</th><td>{c.complexity['expansion']}</td><td>{c.complexity[c.engine]}</td></tr>",
            "</table>",
            f"<p><b>Recommended: {e(c.recommended)}</b> ({e(c.reason)}).</p>",
            "<ul>" + "".join(f"<li>{e(x)}</li>" for x in c.evidence) + "</ul>",
        ]
        if c.recommended != "expansion":
            parts.append(f"<p>The expansion's formula (R<sup>2</sup> {er2:.6f}) is the local polynomial approximation "
                         "of the recommended formula.</p>")
    notes = list(d.notes) + list(d.merged.notes) + list(d.data_warnings)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>Terms</h2>")
    parts.append(d.terms.drop(columns=["exponents"], errors="ignore").to_html(index=False, float_format=lambda v: f"{v:.6g}"))
    parts.append("<h2>Candidates (space, order)</h2>")
    parts.append(d.candidates.to_html(index=False, float_format=lambda v: f"{v:.6g}"))
    for name in figures:
        parts.append(f"<h2>{e(name[:-4])}</h2><img src='{name}' alt='{e(name[:-4])}'>")
    parts.append("</body></html>")
    path = folder / "report.html"
    path.write_text("\n".join(parts))
    return path


def _coefficient_boxes(d, plt):
    """Each term's coefficient at the common centre, one box per term over reference points and networks."""
    import torch

    from discovery.engine import shift_coefficients

    local, merged = d.local, d.merged
    C = torch.from_numpy(np.ascontiguousarray(local.coefficients))
    every = shift_coefficients(C, local.monomials, torch.from_numpy(local.centers),
                               torch.from_numpy(np.asarray(merged.center, dtype=np.float64))).numpy()
    terms = merged.terms
    order = np.argsort(-terms["contribution"].to_numpy())[:16]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 2), 4))
    data = [every[:, i, :].reshape(-1) for i in order]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(order) + 1), [str(terms["term"].iloc[i]) for i in order], rotation=45, ha="right")
    for k, i in enumerate(order):
        if terms["kept"].iloc[i]:
            ax.plot(k + 1, terms["coefficient"].iloc[i], "r*", ms=10)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("coefficient at the common centre")
    ax.set_title(f"coefficients across {len(local)} reference points x {local.coefficients.shape[2]} networks (red: final)")
    return fig


def _parity(d, plt):
    idx = d.score_index
    pred = d.predict(d.X[idx])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(d.y[idx], pred, ".", ms=3)
    lo, hi = float(np.min(d.y[idx])), float(np.max(d.y[idx]))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel(f"{d.target_name} (observed)")
    ax.set_ylabel(f"{d.target_name} (formula)")
    ax.set_title("parity on held-out rows" if len(d.test_index) else "parity")
    return fig


def _residuals(d, plt):
    idx = d.score_index
    res = d.y[idx] - d.predict(d.X[idx])
    p = len(d.names)
    fig, axes = plt.subplots(1, p, figsize=(3.2 * p, 3), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.plot(d.X[idx, j], res, ".", ms=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(d.names[j])
    axes[0][0].set_ylabel("residual")
    return fig


def _slices(d, plt):
    p = len(d.names)
    median = np.median(d.X, axis=0)
    fig, axes = plt.subplots(1, p, figsize=(3.2 * p, 3), squeeze=False)
    for j, ax in enumerate(axes[0]):
        grid = np.repeat(median[None, :], 200, axis=0)
        grid[:, j] = np.linspace(d.X[:, j].min(), d.X[:, j].max(), 200)
        ax.plot(grid[:, j], d.predict_network(grid), "-", label="network")
        ax.plot(grid[:, j], d.predict(grid), "--", label="formula")
        ax.set_xlabel(d.names[j])
    axes[0][0].set_ylabel(d.target_name)
    axes[0][0].legend()
    fig.suptitle("network vs formula along slices through the median")
    return fig
