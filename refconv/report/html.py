"""Small builders for one self-contained HTML page: escaped text, capped tables, inline SVG pictures.

Every string that came from a run (error messages, framework versions, case names) goes through
`esc`; links are only made from relative paths inside the run and from http(s) URLs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1100px;margin:0 auto;padding:16px 20px 48px}
h1{font-size:1.6em;margin:.4em 0}h2{border-bottom:2px solid #d8dee8;padding-bottom:4px;margin-top:2em}
h3{margin:1.4em 0 .4em;font-size:1.08em}
p,li{max-width:80ch}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em;font-size:13px;table-layout:auto}
th,td{border:1px solid #d8dee8;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:break-word}
td.brk{overflow-wrap:anywhere}
th{background:#eef1f6}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#f5f7fa}
code,.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f0f2f5;padding:6px;margin:4px 0;font-size:12px}
figure.plot{margin:.5em 0}
figure.plot svg{max-width:100%;height:auto;display:block;border:1px solid #e3e7ee;background:#fff}
nav ul{columns:2;padding-left:1.2em}
.small{color:#5a6372;font-size:12.5px}
.bad{color:#b3261e;font-weight:600}.good{color:#1b7a3a;font-weight:600}
.pill{display:inline-block;padding:0 6px;border-radius:8px;background:#eef1f6;font-size:12px}
tr.dev td{background:#fff5d6}
.devnote{background:#fff5d6;padding:4px 8px;border-left:4px solid #e0b400;max-width:none}
details{margin:.4em 0}summary{cursor:pointer}
.problem{border-left:4px solid #d8dee8;padding:2px 12px;margin:1em 0;background:#fff}
.problem h3{margin-top:.6em}.pill.bad{background:#fde7e5}
.scroll{overflow-x:auto}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes included, so it is safe inside attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers short and readable: ints as ints, floats in %g, NaN as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return fmt(f, digits)


def link(href: str, text: str) -> str:
    """<a> for an http(s) URL or a relative path inside the run; anything else is shown as text only."""
    safe = href.startswith(("http://", "https://")) or (
        bool(href) and not href.startswith(("/", "\\")) and ":" not in href and ".." not in href.split("/")
    )
    if not safe:
        return esc(text)
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def upstream(url: str) -> str:
    """The upstream reference of a known deviation: a link when it is a URL, 'not filed yet' for TODO."""
    if url.startswith(("http://", "https://")):
        return link(url, url)
    return '<span class="small">upstream: not filed yet</span>' if url in ("", "TODO") else esc(url)


def table(
    df: pd.DataFrame, cap: int | None = 200, index: bool = True, cells: dict[str, Callable[[Any], str]] | None = None
) -> str:
    """A DataFrame as an HTML table: escaped cells, numbers right-aligned, at most `cap` rows plus a count."""
    if df is None or df.empty:
        return '<p class="small">(none)</p>'
    cells = cells or {}
    shown = df if cap is None else df.head(cap)
    index_names = [n if n is not None else "" for n in shown.index.names] if index else []
    head = "".join(f"<th>{esc(n)}</th>" for n in index_names)
    head += "".join(f"<th>{_header(c)}</th>" for c in shown.columns)
    body = []
    for idx, row in zip(shown.index, shown.itertuples(index=False, name=None), strict=True):
        keys = (idx if isinstance(idx, tuple) else (idx,)) if index else ()
        tds = "".join(f"<td>{esc(k)}</td>" for k in keys)
        for col, value in zip(shown.columns, row, strict=True):
            render = cells.get(col if isinstance(col, str) else "")
            if render is not None:
                tds += f"<td>{render(value)}</td>"
            elif _is_number(value):
                tds += f'<td class="num">{esc(fmt(value))}</td>'
            else:
                text = esc(value)
                # Ids and paths have no spaces: let them break anywhere rather than widen the page.
                tds += f'<td class="brk">{text}</td>' if len(text) > 16 and " " not in text else f"<td>{text}</td>"
        body.append(f"<tr>{tds}</tr>")
    more = "" if cap is None or len(df) <= cap else f'<p class="small">… and {len(df) - cap} more rows not shown.</p>'
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{more}'


def _header(col: Any) -> str:
    return esc(_col_name(col)).replace("_", "_<wbr>")


def _col_name(col: Any) -> str:
    return " ".join(str(c) for c in col) if isinstance(col, tuple) else str(col)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or hasattr(value, "dtype")


def figure(svg: str | None, alt: str) -> str:
    """An inline SVG picture named by `alt` (role="img", aria-label and <title>), or a note when there was
    nothing to plot."""
    if not svg:
        return f'<p class="small">(no data to plot: {esc(alt)})</p>'
    if not svg.startswith("<svg "):
        raise ValueError(f"figure: expected an <svg> element, got {svg[:20]!r}")
    head, body = svg.split(">", 1)  # the root's attributes are ours (refconv.report.svg): no '>' inside them
    return f'<figure class="plot">{head} role="img" aria-label="{esc(alt)}"><title>{esc(alt)}</title>{body}</figure>'


def section(anchor: str, title: str, body: str) -> str:
    """An <h2> section with an anchor the table of contents links to."""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, sections: Iterable[tuple[str, str, str]], intro: str = "") -> str:
    """The whole self-contained page: inline CSS, a table of contents, no scripts, no external resources."""
    sections = list(sections)
    toc = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{esc(title)}</h1>{intro}<nav><ul>{toc}</ul></nav>{body}</main></body></html>"
    )


def md_table(df: pd.DataFrame, cap: int | None = 50, index: bool = True) -> str:
    """A DataFrame as a GitHub Markdown table (pipes escaped, numbers in %g), capped with a count."""
    if df is None or df.empty:
        return "_(none)_\n"
    shown = df if cap is None else df.head(cap)
    names = ([str(n or "") for n in shown.index.names] if index else []) + [_col_name(c) for c in shown.columns]
    lines = ["| " + " | ".join(_md(n) for n in names) + " |", "|" + "---|" * len(names)]
    for idx, row in zip(shown.index, shown.itertuples(index=False, name=None), strict=True):
        keys = list(idx if isinstance(idx, tuple) else (idx,)) if index else []
        lines.append("| " + " | ".join(_md(fmt(v)) for v in keys + list(row)) + " |")
    more = "" if cap is None or len(df) <= cap else f"\n_… and {len(df) - cap} more rows._\n"
    return "\n".join(lines) + "\n" + more


def md_inline(text: Any) -> str:
    """Text inside a Markdown line or table cell: one line, pipes escaped, HTML specials as entities (Markdown
    renders raw HTML), control characters (\\r, terminal escapes) as visible escapes."""
    text = html.escape(" ".join(str(text).split("\n")), quote=False).replace("|", "\\|")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


_md = md_inline
