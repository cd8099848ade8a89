"""The per-layer table that opens an audit's report (`refconv audit`): one line per model layer.

Built from the rows (their `layer` and `model` columns) and from run.json's `layers` list, which names
the layers the audit could not turn into a case. `records` is plain Python so the CLI prints the same table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from refconv.report import html as H
from refconv.report.words import case_words

OK = ("pass", "unsupported")


def has_layers(df: pd.DataFrame) -> bool:
    """Is this an audit run (rows that stand for model layers)?"""
    return "layer" in df.columns and bool((_text(df["layer"]) != "").any())


def _text(column: pd.Series) -> pd.Series:
    """A text column with missing values as '' (a run from before the column existed has NaN)."""
    values = column.astype(object)
    return values.where(values.notna(), "").astype(str)


def records(rows: Iterable[dict[str, Any]], layers: Iterable[dict[str, Any]] = ()) -> list[dict[str, str]]:
    """Per layer in model order: layer, geometry in words, engines beyond rounding and why, declined, repro."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = str(row.get("layer") or "")
        if not name:
            continue
        entry = table.setdefault(name, {"row": row, "deviating": [], "within": [], "declined": [], "repro": []})
        outcome = row["outcome"]
        if outcome == "pass":
            entry["within"].append(row["adapter"])
        elif outcome == "unsupported":
            entry["declined"].append(row["adapter"])
        else:
            entry["deviating"].append(f"{row['adapter']}: {outcome} ({row.get('known_deviation') or 'NEW'})")
            if row.get("repro"):
                entry["repro"].append(str(row["repro"]))
    out = [{"layer": name, "geometry": case_words(entry["row"]),
            "deviating": "; ".join(entry["deviating"]) or "none",
            "within rounding": ", ".join(entry["within"]) or "none",
            "declined": _declined(entry["declined"], entry["row"]), "repro": " ".join(entry["repro"])}
           for name, entry in table.items()]
    for layer in layers:
        if not layer.get("shape_known", True):
            out.append({"layer": str(layer["layer"]), "geometry": f"{layer.get('op_type', '')}: not audited",
                        "deviating": "", "within rounding": "", "declined": str(layer.get("skip", "")),
                        "repro": ""})
    return out


def _declined(labels: list[str], row: dict[str, Any]) -> str:
    if not labels:
        return ""
    reason = str(row.get("error", "")) if len(labels) > 1 and row["outcome"] == "unsupported" else ""
    return ", ".join(labels) + (f" ({reason})" if reason else "")


def frame(df: pd.DataFrame, arguments: dict[str, Any]) -> pd.DataFrame:
    """records() of a stored run as a DataFrame."""
    rows = df.assign(layer=_text(df["layer"])).to_dict("records")
    return pd.DataFrame(records([{str(k): v for k, v in row.items()} for row in rows], arguments.get("layers") or []))


def _intro(df: pd.DataFrame, table: pd.DataFrame) -> str:
    models = sorted({m for m in _text(df["model"]) if m})
    bad = int((~table["deviating"].isin(["none", ""])).sum())
    return (f"{len(table)} conv layer(s) of {', '.join(models) or 'the model'}, each run on every engine with its "
            f"geometry, dtype and weights: {bad} layer(s) with an engine beyond rounding. 'deviating' names each "
            "such engine, its outcome and the known deviation that explains it, or NEW.")


def html(df: pd.DataFrame, arguments: dict[str, Any]) -> str:
    """The layers section of report.html."""
    table = frame(df, arguments)
    links = {"repro": lambda value: " ".join(H.link(p, "repro") for p in str(value).split())}
    return f"<p>{H.esc(_intro(df, table))}</p>" + H.table(table, cap=None, index=False, cells=links)


def markdown(df: pd.DataFrame, arguments: dict[str, Any]) -> str:
    """The layers section of summary.md."""
    table = frame(df, arguments)
    return _intro(df, table) + "\n\n" + H.md_table(table, cap=None, index=False)
