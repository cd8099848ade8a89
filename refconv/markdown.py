"""Markdown escaping for text that came from an adapter, a framework or findings.json (upstream reports, REPORT.md).

Code spans and fences are longer than any backtick run they hold, and text outside them has Markdown and HTML
specials escaped; `conditions_words` and `toml_inline` give a known deviation's `when` form in words and as data.

>>> conditions_words({"c_in": 1, "n": {"min": 2}, "dtype": ["float32", "bfloat16"]})
'c_in = 1 and n >= 2 and dtype is float32 or bfloat16'
>>> code_span("a `b` c")
'``a `b` c``'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

# --- Markdown escaping -------------------------------------------------------------------------


def md_text(value: Any) -> str:
    """Any text shown literally in Markdown: one line, HTML and Markdown specials escaped."""
    text = visible(" ".join(str(value).split()))
    text = re.sub(r"([\\`*_\[\]!|~{}])", r"\\\1", text)  # no [ or ], so no parenthesis can make a link
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def visible(text: str, keep: str = "") -> str:
    """Control characters (terminal escapes, \\r) and undecodable bytes an engine printed, as escapes."""
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)


def code_span(value: Any) -> str:
    """An inline code span that no backtick in the value can close early (one line)."""
    text = visible(" ".join(str(value).split())) or " "
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(text: str, info: str = "") -> str:
    """A fenced code block longer than any backtick run inside, so the text cannot end it."""
    text = visible(text, keep="\n\t")
    ticks = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}{info}\n{text.rstrip()}\n{ticks}\n"


def cell(text: str) -> str:
    """A table cell: pipes escaped (GitHub splits cells on them even inside code spans)."""
    return text.replace("|", "\\|")


def safe_href(href: Any) -> bool:
    """An http(s) URL or a relative path inside the run, with nothing that could end a Markdown link."""
    text = str(href or "")
    if re.fullmatch(r"https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+", text):
        return "(" not in text and ")" not in text
    return bool(re.fullmatch(r"[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*", text)) and ".." not in text.split("/")


def md_link(text: Any, href: Any) -> str:
    """[text](href) when the href is safe, else the href as a code span."""
    return f"[{md_text(text)}]({href})" if safe_href(href) else code_span(href or text)


# --- conditions ----------------------------------------------------------------------------------


def conditions_words(conditions: Mapping[str, Any]) -> str:
    """A known deviation's `when` form in words: 'c_in = 1 and n >= 2 and dtype is float32 or bfloat16'."""
    parts = []
    for key, wanted in conditions.items():
        if isinstance(wanted, Mapping):
            low, high = wanted.get("min"), wanted.get("max")
            if low is not None and high is not None:
                parts.append(f"{key} = {low}" if low == high else f"{low} <= {key} <= {high}")
            elif low is not None:
                parts.append(f"{key} >= {low}")
            elif high is not None:
                parts.append(f"{key} <= {high}")
        elif isinstance(wanted, (list, tuple)):
            parts.append(f"{key} is " + " or ".join(map(str, wanted)) if wanted else f"{key} is (nothing)")
        else:
            parts.append(f"{key} = {wanted}")
    return " and ".join(parts) or "(no conditions)"


def toml_inline(value: Any) -> str:
    """A value as TOML inline data (the form of known_deviations.toml's `when`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if np.isfinite(value) else json.dumps(str(value))
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {toml_inline(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
