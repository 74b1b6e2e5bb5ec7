"""HTML report with figures for a :class:`~discovery.result.Discovery` (folders: :mod:`discovery.folders`).

The report works offline: formulas are presentation MathML (rendered natively by browsers, no
script or font to fetch), figures are PNG files next to ``report.html`` with an SVG copy each,
and the page names no external URL. Figures: :mod:`discovery.figures`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import sympy
from sympy.printing.mathml import MathMLPresentationPrinter

__all__ = ["mathml", "write_report"]

_FOLD = 90  # longer cell texts are folded behind their first words

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;line-height:1.4;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
math[display=block]{font-size:1.6em;margin:.4em 0 .8em 0}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
td{max-width:38em;overflow-wrap:break-word}
td.long{min-width:16em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.pruned td{color:#777}
details summary{cursor:pointer}
code{background:#f4f4f4;padding:1px 4px;overflow-wrap:anywhere}
.figs{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
figure{margin:.5em 0;flex:1 1 520px;max-width:100%} figure h3{margin:.2em 0;font-size:1.05em} figcaption{font-size:.9em;color:#444;max-width:60em}
img{max-width:100%;height:auto}
.note{background:#f6f8fa;border-left:3px solid #8aa;padding:.4em .8em}
"""


class FormulaMathMLPrinter(MathMLPresentationPrinter):
    """Presentation MathML with floats rounded like :func:`discovery.symbolic.latex`.

    Examples
    --------
    >>> import sympy
    >>> m1, r = sympy.symbols("m1 r")
    >>> "<mn>6.674</mn>" in FormulaMathMLPrinter({"precision": 4}).doprint(6.67400001 * m1 / r**2)
    True
    """

    _default_settings = {**MathMLPresentationPrinter._default_settings, "precision": 4}

    def doprint(self, expr) -> str:
        from discovery.symbolic import _rounded

        return super().doprint(_rounded(expr, self._settings["precision"]))

    def _print_Float(self, expr):
        from discovery.symbolic import _float_parts

        mantissa, exponent = _float_parts(float(expr), self._settings["precision"])
        mn = self.dom.createElement("mn")
        mn.appendChild(self.dom.createTextNode(mantissa))
        if exponent is None:
            return mn
        row = self.dom.createElement("mrow")
        times = self.dom.createElement("mo")
        times.appendChild(self.dom.createTextNode("\u00d7"))
        power = self.dom.createElement("msup")
        ten = self.dom.createElement("mn")
        ten.appendChild(self.dom.createTextNode("10"))
        exp = self.dom.createElement("mn")
        exp.appendChild(self.dom.createTextNode(str(exponent)))
        power.appendChild(ten)
        power.appendChild(exp)
        for child in (mn, times, power):
            row.appendChild(child)
        return row


def mathml(expr: sympy.Basic, precision: int = 4, lhs: str | None = None, display: bool = True) -> str:
    """A formula as a ``<math>`` element (presentation MathML), optionally as ``lhs = expr``.

    Examples
    --------
    >>> import sympy
    >>> x = sympy.Symbol("x1")
    >>> mathml(x**2 / 2, lhs="y")[:54]
    '<math display="block"><mrow><mi>y</mi><mo>=</mo><mrow>'
    """
    body = FormulaMathMLPrinter({"precision": precision}).doprint(sympy.sympify(expr))
    # x_1 squared: one msubsup stacks both scripts; msup around msub puts the 2 after the 1
    body = re.sub(r"<msup><msub>(<mi>[^<]*</mi>)(<mi>[^<]*</mi>)</msub>(<mn>[^<]*</mn>|<mi>[^<]*</mi>)</msup>",
                  r"<msubsup>\1\2\3</msubsup>", body)
    if lhs is not None:
        body = f"<mrow><mi>{html.escape(lhs)}</mi><mo>=</mo>{body}</mrow>"
    mode = "block" if display else "inline"
    return f'<math display="{mode}">{body}</math>'


def write_report(d, folder: Path) -> Path:
    """Write ``report.html`` and its figures (PNG, plus an SVG copy of each) into ``folder`` (which must exist)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from discovery.figures import FIGURES, pareto_points, residual_message
    from discovery.symbolic import text

    folder = Path(folder)
    figures = []
    for name, (draw, caption) in FIGURES.items():
        fig = draw(d, plt)
        if fig is None:
            continue
        try:
            fig.savefig(folder / f"{name}.png", dpi=100)
            fig.savefig(folder / f"{name}.svg")
        finally:
            plt.close(fig)
        figures.append((name, caption))

    e = html.escape
    r2, rmse = d._scores(d.formula)
    where = "held-out" if len(d.test_index) else "all"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>discovery: {e(d.target_name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Formula for {e(d.target_name)}</h1>",
        mathml(d.formula, precision=4, lhs=d.target_name),
        f"<p>Full precision: <code>{e(d.target_name)} = {e(text(d.formula, precision=12))}</code></p>",
        "<table>",
        f"<tr><th>R<sup>2</sup> / RMSE ({where} rows: {len(d.score_index)})</th><td>{r2:.6f} / {rmse:.4g}</td></tr>",
        f"<tr><th>space</th><td>{e(d.space_reason or d.space)}</td></tr>",
        f"<tr><th>order</th><td>{e(d.order_reason)}</td></tr>",
        f"<tr><th>reference points</th><td>{len(d.local)} (networks kept: {len(d.members_kept)} of {d.fitted.members})</td></tr>",
        f"<tr><th>data</th><td>{e(str(d.source or 'DataFrame'))}: {len(d.y)} rows, features {e(', '.join(d.names))}</td></tr>",
    ]
    if d.structure is not None:
        parts.append(f"<tr><th>structure</th><td>{e(d.structure['summary'])}</td></tr>")
    parts += [f"<tr><th>time</th><td>{e(', '.join(f'{k} {v:.2f} s' for k, v in d.timings.items()))}</td></tr>",
              "</table>"]
    parts += _crosscheck_section(d, text)
    parts += _decomposition_section(d)
    notes = list(d.notes) + list(d.merged.notes) + list(d.data_warnings)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_fold(n)}</li>" for n in notes) + "</ul>")

    captions = dict(figures)
    parts.append("<h2>Accuracy</h2><div class='figs'>")
    parts += [_figure(name, captions.pop(name)) for name in ("pareto", "parity") if name in captions]
    parts.append("</div>")
    message = residual_message(d)
    captions_residuals = captions.pop("residuals", None)
    if message is not None:  # words read better than a picture of words; residuals.png says the same
        parts.append(f"<p class='note'><b>Residuals:</b> {e(message)}</p>")
    elif captions_residuals is not None:
        parts.append(_figure("residuals", captions_residuals))
    parts.append("<h2>Candidate formulas (Pareto front)</h2>")
    parts.append(_table(pareto_points(d), numeric={"val_rmse": "{:.4g}"}, mark="chosen"))
    parts += _terms_section(d)
    parts.append("<h2>Networks and coefficients</h2><div class='figs'>")
    parts += [_figure(name, caption) for name, caption in captions.items()]
    parts.append("</div>")
    parts.append("</body></html>")
    path = folder / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _decomposition_section(d) -> list[str]:
    """The decomposition's tree of tests and pieces, each with its evidence, as nested lists."""
    dec = getattr(d, "decomposition", None)
    if dec is None:
        return []
    e = html.escape
    chosen = "chosen" if getattr(d, "chosen", None) == "decomposition" else "not chosen"

    def node(n) -> str:
        head = f"<b>{e(n.test)}</b> [{e(', '.join(str(v) for v in n.variables))}]"
        if n.method:
            head += f" ({e(n.method)})"
        if n.expression:
            head += f": <code>{e(n.expression)}</code>"
        children = "".join(node(c) for c in n.children)
        return f"<li>{head}<br><small>{_fold(n.evidence)}</small>{'<ul>' + children + '</ul>' if children else ''}</li>"

    parts = [f"<h2>Decomposition ({chosen}; validation R<sup>2</sup> {dec.val_r2:.6f})</h2>",
             f"<p><code>{e(str(dec.expression))}</code></p>", f"<ul class='tree'>{node(dec.tree)}</ul>"]
    if dec.notes:
        parts.append("<ul>" + "".join(f"<li>{_fold(n)}</li>" for n in dec.notes) + "</ul>")
    return parts


def _figure(name: str, caption: str) -> str:
    e = html.escape
    return (f"<figure><h3>{e(name)}</h3><img src='{name}.png' alt='{e(name)} figure'>"
            f"<figcaption>{e(caption)} <a href='{name}.svg'>SVG</a></figcaption></figure>")


def _crosscheck_section(d, text) -> list[str]:
    c = d.crosscheck
    if c is None:
        return []
    e = html.escape
    er2, _ = d._scores(d.expansion_formula)
    parts = [
        f"<h2>Cross-check with {e(c.engine)}: {e(c.verdict)}</h2>",
        "<div class='scroll'><table><tr><th></th><th>expansion (HOPE)</th><th>" + e(c.engine) + "</th></tr>",
        f"<tr><th>formula</th><td>{mathml(c.expansion_formula, display=False)}</td>"
        f"<td>{mathml(c.engine_formula, display=False)}</td></tr>",
        f"<tr><th>text</th><td><code>{e(text(c.expansion_formula, precision=6))}</code></td>"
        f"<td><code>{e(text(c.engine_formula, precision=6))}</code></td></tr>",
        f"<tr><th>R<sup>2</sup> held-out</th><td>{c.r2['expansion']:.6f}</td><td>{c.r2[c.engine]:.6f}</td></tr>",
        f"<tr><th>complexity</th><td>{c.complexity['expansion']}</td><td>{c.complexity[c.engine]}</td></tr>",
        "</table></div>",
        f"<p><b>Recommended: {e(c.recommended)}</b> ({e(c.reason)}).</p>",
        "<ul>" + "".join(f"<li>{_fold(x)}</li>" for x in c.evidence) + "</ul>",
    ]
    if c.recommended != "expansion":
        parts.append(f"<p>The expansion's formula (R<sup>2</sup> {er2:.6f}) is the local polynomial approximation "
                     "of the recommended formula.</p>")
    return parts


def _terms_section(d) -> list[str]:
    """The terms table; in log space with a note on what the constant term means."""
    # terms.csv keeps every column; the page shows what fits beside the reason at 1280 px
    terms = d.terms.drop(columns=["exponents", "refit", "trimmed_mean", "degree"], errors="ignore")
    parts = ["<h2>Terms of the expansion's formula</h2>"]
    if d.space == "log":
        sign = d.local.sign
        center = np.asarray(getattr(d.merged, "center", np.zeros(len(d.names))), dtype=np.float64)
        y = "|" + d.target_name + "|" if sign < 0 else d.target_name
        constant = terms.index[terms["term"].astype(str) == "1"]
        parts.append(f"<p class='note'>In log space the terms are powers of log(x) and the coefficients fit "
                     f"log({html.escape(y)}).")
        if len(constant):
            c0 = float(terms.loc[constant[0], "coefficient"])
            value = sign * np.exp(c0)
            meaning = ("log of the prefactor" + ("'s magnitude" if sign < 0 else "") if not np.any(center) else
                       "log " + html.escape(y) + " at the common centre")
            minus = "-" if sign < 0 else ""
            parts.append(f" The constant term <code>1</code> is the {meaning}: {minus}exp({c0:.6g}) = "
                         f"<b>{value:.6g}</b>.")
            terms = terms.copy()
            terms["term"] = terms["term"].astype(object)
            terms.loc[constant[0], "term"] = "1 (log prefactor)" if not np.any(center) else "1 (log at centre)"
        parts.append("</p>")
    numeric = {c: "{:.4g}" for c in terms.columns if c not in ("term", "kept", "reason", "snapped")}
    numeric["coefficient"] = "{:.6g}"
    parts.append(_table(terms, numeric=numeric, dim="kept"))
    return parts


def _fold(value) -> str:
    """Escaped text; long text folded behind its first words."""
    s = str(value)
    if len(s) <= _FOLD:
        return html.escape(s)
    head = s[:_FOLD].rsplit(" ", 1)[0]
    return f"<details><summary>{html.escape(head)} ...</summary>{html.escape(s)}</details>"


def _table(frame: pd.DataFrame, numeric: dict[str, str] | None = None, mark: str | None = None,
           dim: str | None = None) -> str:
    """An HTML table of ``frame``: numbers right-aligned in ``numeric``'s formats, long text folded,
    the row where ``mark`` is true in bold, rows where ``dim`` is false greyed."""
    numeric = numeric or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, r in frame.iterrows():
        cells = []
        for c in frame.columns:
            v = r[c]
            if c in numeric and isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                shown = "" if pd.isna(v) else numeric[c].format(float(v))
                cells.append(f"<td class='num'>{shown}</td>")
            else:
                shown = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                cls = " class='long'" if len(shown) > 30 else ""
                cells.append(f"<td{cls}>{_fold(shown)}</td>")
        style = " style='font-weight:bold'" if mark is not None and bool(r[mark]) else ""
        cls = " class='pruned'" if dim is not None and not bool(r[dim]) else ""
        rows.append(f"<tr{cls}{style}>{''.join(cells)}</tr>")
    return f"<div class='scroll'><table><tr>{head}</tr>{''.join(rows)}</table></div>"
