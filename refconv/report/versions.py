"""Versions side by side: when a run holds one engine at several versions (tf@2.19.1, tf@2.20.0, tf).

Problems (rows) by version (columns), each cell the outcome over the problem's cases on that version and
the worst bound ratio; then each version's speed relative to the first (oldest) one: the geometric mean
over the cases both timed of the ratio of minimum times (refconv.report.speed).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from refconv.report import html as H
from refconv.report.speed import relative_speed

ROWS_CAP = 40


def _family(label: str) -> tuple[str, str]:
    """('tf', ':onednn=off') for 'tf@2.19.1:onednn=off': labels of one family differ by version only."""
    head, sep, options = label.partition(":")
    return head.partition("@")[0], sep + options


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split(" ")[0]))


def families(df: pd.DataFrame) -> list[list[str]]:
    """Groups of two or more labels of one engine (and options) at different versions, oldest first."""
    if df.empty or "adapter" not in df.columns:
        return []
    versions = df.groupby("adapter")["adapter_version"].agg(lambda s: next((v for v in s if v), ""))
    groups: dict[tuple[str, str], list[str]] = {}
    for label in versions.index:
        groups.setdefault(_family(str(label)), []).append(str(label))
    out = []
    for labels in groups.values():
        if len(labels) > 1 and any("@" in label.partition(":")[0] for label in labels):
            out.append(sorted(labels, key=lambda lab: _version_key(str(versions.get(lab, "")))))
    return out


def _cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "-"
    bad = rows[rows["outcome"] != "pass"]
    outcome = bad["outcome"].mode().iloc[0] if len(bad) else "pass"
    ratio = pd.to_numeric(rows["bound_ratio"], errors="coerce").max()
    share = f" {len(bad)}/{len(rows)}" if len(rows) > 1 else ""
    return f"{outcome}{share}" + ("" if pd.isna(ratio) else f" · {ratio:.3g}")


def matrix(df: pd.DataFrame, labels: list[str], problems: list[dict[str, Any]]) -> pd.DataFrame:
    """Problem × version: outcome (failing/cases when several) · worst bound ratio."""
    heads = [f"{label} ({_version(df, label)})" for label in labels]
    keyed: list[tuple[str, list[str]]] = []
    seen: set[tuple[str, ...]] = set()
    for p in problems:
        cases = [str(c) for c in p.get("cases") or [p.get("minimal_case")] if c]
        if set(map(str, p.get("adapters", []))) & set(labels) and tuple(sorted(cases)) not in seen:
            seen.add(tuple(sorted(cases)))
            keyed.append((str(p.get("title") or p.get("id")), cases))
    if not keyed:  # no grouped problems: the failing cases themselves
        failing = df[df["adapter"].isin(labels) & (df["outcome"] != "pass")]["case_id"].unique()
        keyed = [(str(c), [str(c)]) for c in failing]
    table = []
    for name, cases in keyed[:ROWS_CAP]:
        rows = df[df["case_id"].isin(cases)]
        table.append({"problem": name, **{h: _cell(rows[rows["adapter"] == lab]) for h, lab in zip(heads, labels,
                                                                                                   strict=True)}})
    return pd.DataFrame(table, columns=["problem", *heads])


def _version(df: pd.DataFrame, label: str) -> str:
    found = df.loc[df["adapter"] == label, "adapter_version"]
    return next((str(v).split(" ")[0] for v in found if v), "?")


def speed_line(df: pd.DataFrame, labels: list[str]) -> str:
    """'relative speed (time ratio to tf@2.19.1, geometric mean of minima): tf@2.20.0 0.97×, tf 1.02×'."""
    ratios = relative_speed(df, labels)
    if len(ratios) < 2:
        return ""
    parts = [f"{label} {ratio:.2f}×" for label, ratio in ratios.items() if label != labels[0]]
    return (f"Time relative to {labels[0]} (geometric mean over cases of the ratio of minimum times; "
            f"above 1 is slower): {', '.join(parts)}.")


def md_section(df: pd.DataFrame, problems: list[dict[str, Any]]) -> str:
    """The Markdown section, or '' when the run holds no engine at several versions."""
    out = []
    for labels in families(df):
        out += [f"\n### {H.md_inline(', '.join(labels))}\n", H.md_table(matrix(df, labels, problems), index=False,
                                                                       cap=ROWS_CAP), "", speed_line(df, labels)]
    return ("\n## Versions side by side\n" + "\n".join(out) + "\n") if out else ""


def html_section(df: pd.DataFrame, problems: list[dict[str, Any]]) -> str:
    """The HTML section body, or '' when the run holds no engine at several versions."""
    out = []
    for labels in families(df):
        out.append(f"<h3>{H.esc(', '.join(labels))}</h3>" + H.table(matrix(df, labels, problems), index=False,
                                                                    cap=ROWS_CAP)
                   + f"<p>{H.esc(speed_line(df, labels))}</p>")
    return "".join(out)
