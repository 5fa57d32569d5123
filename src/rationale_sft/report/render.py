"""Render report sections as one self-contained HTML page and as markdown (same content, same order).

A section is a title and a list of blocks: ``("p", text)``, ``("table", DataFrame of strings, caption)``,
``("img", file name, alt text)``, ``("absent", why)``, ``("pre", text)`` and ``("details", summary,
DataFrame of strings, caption)`` (a table folded away in the HTML). The HTML links PNGs by
relative path and loads nothing from elsewhere.

>>> s = Section("x", "X", [("p", "a < b"), ("table", pl.DataFrame({"k": ["1"]}), "cap")])
>>> "a &lt; b" in to_html([s], "T"), "| k |" in to_markdown([s], "T")
(True, True)
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import polars as pl

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}.table{max-width:100%;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f3f3f3}
caption{caption-side:top;text-align:left;font-style:italic;color:#555;padding-bottom:.3em}
figure{display:inline-block;vertical-align:top;margin:.4em 1.2em .4em 0;max-width:100%}
figcaption{font-size:.85em;color:#555}img{max-width:100%;border:1px solid #eee}
.absent{color:#8a6d3b;background:#fcf8e3;padding:.4em .7em;border-left:3px solid #f0ad4e}
.verdict{background:#eef6fb;border-left:4px solid #1b6ca8;padding:.6em 1em}
pre{background:#f7f7f7;padding:.5em;white-space:pre-wrap;font-size:.85em}
nav ul{columns:2;font-size:.9em}
"""


@dataclass
class Section:
    """One report section: an anchor key, a title and its blocks."""

    key: str
    title: str
    blocks: list[tuple] = field(default_factory=list)


def fmt(x, digits: int = 3) -> str:
    """A number for a table cell; missing values become an en dash.

    >>> fmt(0.73449), fmt(None), fmt(float("nan")), fmt(12)
    ('0.734', '–', '–', '12')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def fmt_p(p) -> str:
    """A p-value: three decimals, or ``<0.001``.

    >>> fmt_p(0.0004), fmt_p(0.0312), fmt_p(None)
    ('<0.001', '0.031', '–')
    """
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p) -> str:
    """A p-value in a sentence.

    >>> p_text(0.0004), p_text(0.0312)
    ('p < 0.001', 'p = 0.031')
    """
    text = fmt_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_ci(est, lo, hi, digits: int = 3) -> str:
    """``estimate [lo, hi]``.

    >>> fmt_ci(0.7, 0.65, 0.75), fmt_ci(0.7, None, None)
    ('0.700 [0.650, 0.750]', '0.700')
    """
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return fmt(est, digits)
    return f"{fmt(est, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def cell(v) -> str:
    """Table cell text: preformatted strings as they are, missing values as an en dash, numbers via fmt.

    >>> cell(None), cell("0.7 [0.6, 0.8]"), cell(0.71234)
    ('–', '0.7 [0.6, 0.8]', '0.712')
    """
    return v if isinstance(v, str) else fmt(v)


def to_html(sections: list[Section], title: str) -> str:
    """The whole report as one HTML document."""
    nav = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(_section_html(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n<nav><ul>{nav}</ul></nav>\n"
            f"{body}\n</body>\n</html>\n")


def _section_html(s: Section) -> str:
    parts = [f'<section id="{s.key}">', f"<h2>{html.escape(s.title)}</h2>"]
    for block in s.blocks:
        kind = block[0]
        if kind == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "verdict":
            parts.append(f'<div class="verdict"><p>{html.escape(block[1])}</p></div>')
        elif kind == "absent":
            parts.append(f'<p class="absent">{html.escape(block[1])}</p>')
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "img":
            parts.append(f'<figure><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}">'
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        elif kind == "table":
            parts.append(_table_html(block[1], block[2]))
        elif kind == "details":
            parts.append(f"<details><summary>{html.escape(block[1])}</summary>{_table_html(block[2], block[3])}"
                         "</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _table_html(df: pl.DataFrame, caption: str) -> str:
    """A table inside the text column: long names may break after a slash, and a table still wider than the
    column (many columns) scrolls sideways in its own box instead of running past the page."""
    head = "".join(f"<th>{_breakable(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_breakable(cell(v))}</td>" for v in row) + "</tr>" for row in df.rows())
    return (f'<div class="table"><table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _breakable(text: str) -> str:
    """Escaped text that may wrap after each slash (set names such as knowledge/knowledge/freeform/conditioned).

    >>> _breakable("a/b<c")
    'a/<wbr>b&lt;c'
    """
    return html.escape(text).replace("/", "/<wbr>")


def to_markdown(sections: list[Section], title: str) -> str:
    """The whole report as markdown (tables as pipe tables, figures as relative image links)."""
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for block in s.blocks:
            out += _block_md(block) + [""]
    return "\n".join(out).rstrip() + "\n"


def _block_md(block: tuple) -> list[str]:
    kind = block[0]
    if kind in ("p", "verdict"):
        return [block[1]]
    if kind == "absent":
        return [f"> {block[1]}"]
    if kind == "pre":
        return ["```", block[1], "```"]
    if kind == "img":
        return [f"![{block[2]}]({block[1]})"]
    df, caption = block[-2], block[-1] if kind == "table" else f"{block[1]}. {block[3]}"  # a details block unfolded
    cells = lambda vals: "| " + " | ".join(cell(v).replace("|", "\\|") for v in vals) + " |"  # noqa: E731
    return [f"*{caption}*", "", cells(df.columns), "|" + "---|" * len(df.columns)] + [cells(r) for r in df.rows()]
