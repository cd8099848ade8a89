"""The report's lead: distinct problems ("N problems in M failing rows"), each once, before the per-row detail.

Problems come from the run's findings.json (`refconv hunt` writes it) when there is one, else from grouping
the rows (`refconv.findings.group.group_rows`); this module renders them and never groups by itself. For
each problem: the minimal case in words, its characterization (conditions, precision, recall, probes when
measured), the kernels its failing rows ran (their `isa`), every engine's outcome and kernels on the minimal case
side by side (with the bound ratio where a row of that case exists), the known deviation that explains it or NEW,
and links to its repro script and its upstream report (`refconv.upstream`, written here for every problem).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from refconv import upstream
from refconv.errors import RefconvError
from refconv.report import html as H
from refconv.report.words import case_words, geometry_words, spec_of
from refconv.repro import safe_name
from refconv.rows import case_columns

FINDINGS_FILE = "findings.json"
PROBLEMS_CAP = 100  # problems rendered (and upstream reports written); the rest are counted


def load(run_dir: Path, df: pd.DataFrame) -> tuple[list[dict[str, Any]], str]:
    """(problems as dicts, a note when they could not be had): findings.json, else the rows grouped."""
    path = Path(run_dir) / FINDINGS_FILE
    if path.is_file():
        try:
            from refconv.findings.problem import load as load_problems

            loaded = load_problems(json.loads(path.read_text(encoding="utf-8")))
            return [upstream.normalize(p) for p in loaded], ""
        except (ValueError, OSError, RefconvError) as exc:  # a broken file must not stop the report
            grouped, more = grouped_rows(df)
            note = f"{FINDINGS_FILE} could not be read ({exc}); problems below are grouped from the rows. {more}"
            return grouped, " ".join(note.split())
    return grouped_rows(df)


def grouped_rows(df: pd.DataFrame) -> tuple[list[dict[str, Any]], str]:
    """(the rows grouped into problems by refconv.findings.group, a note when grouping failed)."""
    try:
        from refconv.findings.group import NOT_FINDINGS, group_rows
    except ImportError:  # a refconv without the findings package: rows only
        return [], ""
    if "outcome" in df and "case_id" in df:  # a problem reads its failing cases' rows only (passes fill `engines`)
        failing = df.loc[~df["outcome"].isin(NOT_FINDINGS), "case_id"].unique()
        df = df[df["case_id"].isin(failing)]
    records = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
    try:
        return [upstream.normalize(p) for p in group_rows(records)], ""
    except (ValueError, TypeError, KeyError) as exc:  # rows the grouping cannot read must not stop the report
        note = f"The failing rows could not be grouped into problems ({exc}); they are listed below."
        return [], " ".join(note.split())


def load_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows grouped into problems (refconv.findings.group); [] where that is not possible."""
    return grouped_rows(df)[0]


def prepare(run_dir: Path, problems: list[dict[str, Any]], df: pd.DataFrame,
            provenance: dict[str, Any]) -> list[Path]:
    """Write each shown problem's upstream report and fill in its `repro` and `upstream_report` links."""
    # Only the rows a report reads: its minimal case's, and one per adapter for versions (not 10^5 dicts).
    needed = _minimal_rows(problems, df)
    records = pd.concat([needed, df.drop_duplicates("adapter")]).to_dict("records")
    written = []
    for problem in problems[:PROBLEMS_CAP]:
        path = upstream.write_report(run_dir, problem, records, provenance)
        problem["upstream_report"] = path.relative_to(run_dir).as_posix()
        if not problem.get("repro"):
            label = upstream.repro_label(problem)
            row = next((r for r in records if r.get("case_id") == problem.get("minimal_case")
                        and r.get("adapter") == label and r.get("repro")), None)
            problem["repro"] = row["repro"] if row else path.with_suffix(".py").relative_to(run_dir).as_posix()
        written.append(path)
    return written


def headline(problems: list[dict[str, Any]], df: pd.DataFrame) -> tuple[int, int, int]:
    """(problems, failing rows, problems no known deviation explains)."""
    from refconv.report.summary import findings

    return len(problems), len(findings(df)), sum(1 for p in problems if not p.get("known_deviation"))


def _minimal_rows(problems: list[dict[str, Any]], df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the shown problems' minimal cases (filtered once: a run may hold 10^5 rows)."""
    return df[df["case_id"].isin([str(p.get("minimal_case", "")) for p in problems[:PROBLEMS_CAP]])]


def _engine_rows(problem: dict[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """Each engine's answer on the minimal case: outcome, bound ratio and max abs error where a row exists."""
    case = str(problem.get("minimal_case", ""))
    engines = {str(k): str(v) for k, v in (problem.get("engines") or {}).items()}
    failing = [str(a) for a in problem.get("adapters") or []]
    mine = df[df["case_id"] == case]
    labels = list(dict.fromkeys([*failing, *engines, *mine["adapter"].astype(str)]))
    out = []
    for label in labels:
        row = mine[mine["adapter"] == label]
        first = row.iloc[0] if len(row) else None
        outcome = engines.get(label) or (str(first["outcome"]) if first is not None else "(not run)")
        out.append({"engine": label, "outcome": outcome, "kernels": str(first["isa"]) if first is not None else "",
                    "bound_ratio": first["bound_ratio"] if first is not None else float("nan"),
                    "max_abs_err": first["max_abs_err"] if first is not None else float("nan"),
                    "fails here": "yes" if label in failing else ""})
    table = pd.DataFrame(out)
    if "kernels" in table and not (table["kernels"] != "").any():
        table = table.drop(columns="kernels")  # a run older than the isa column: no empty column
    return table


def kernels(problem: dict[str, Any], df: pd.DataFrame) -> str:
    """The kernels the problem's failing rows ran: 'onednn:avx512_core_amx (3 rows)'; its own `isa` field first."""
    if problem.get("isa"):  # a findings.json that records them
        found = problem["isa"]
        return ", ".join(map(str, found)) if isinstance(found, (list, tuple)) else str(found)
    if "isa" not in df.columns:
        return ""
    adapters = [str(a) for a in problem.get("adapters") or []]
    cases = [str(c) for c in problem.get("cases") or []] or [str(problem.get("minimal_case", ""))]
    mine = df[df["adapter"].isin(adapters) & df["case_id"].isin(cases) & (df["outcome"] != "pass")]
    counts = mine["isa"].astype(str).value_counts()
    return ", ".join(f"{isa} ({n} row{'s' if n != 1 else ''})" for isa, n in counts.items() if isa)


def _case_text(problem: dict[str, Any]) -> str:
    case = str(problem.get("minimal_case", ""))
    spec = spec_of(case)
    if spec is None:
        return case_words({"case_id": case})
    return f"{spec.describe()}: {geometry_words(case_columns(spec))}"


def _characterization(problem: dict[str, Any]) -> str:
    """Conditions in words, and how well they were measured (or that they were not)."""
    conditions = problem.get("conditions") or {}
    words = upstream.conditions_words(conditions) if conditions else "no shared condition"
    if int(problem.get("probes") or 0) or problem.get("precision") is not None:
        return (f"{words}; precision {_share(problem.get('precision'))}, recall {_share(problem.get('recall'))}, "
                f"{int(problem.get('probes') or 0)} probes")
    if problem.get("known_deviation"):
        return f"{words} (the known deviation's region)"
    return f"{words} (what its failing cases share; not yet characterized by probes)"


def _share(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "?"


def _deviation_upstream(dev_id: str) -> str:
    try:
        from refconv import deviations

        entry = next((d for d in deviations.load() if d.id == dev_id), None)
    except RefconvError:
        return ""
    return entry.upstream if entry else ""


# --- HTML ----------------------------------------------------------------------------------------


def html_section(problems: list[dict[str, Any]], df: pd.DataFrame, note: str = "") -> str:
    """The problems, each once, as HTML (the lead of the Findings section)."""
    n, rows, new = headline(problems, df)
    if not problems:
        return f'<p class="small">{H.esc(note)}</p>' if note else ""
    out = [f'<p><span class="{"bad" if new else "good"}">{n} problem(s) in {rows} failing row(s)</span>'
           f" ({new} new, {n - new} explained by known deviations). Each problem is shown once, with its smallest "
           "case and every engine's answer on it; the rows follow, folded.</p>"]
    if note:
        out.append(f'<p class="small">{H.esc(note)}</p>')
    cases = _minimal_rows(problems, df)
    for i, problem in enumerate(problems[:PROBLEMS_CAP], 1):
        out.append(_html_problem(i, problem, cases, kernels(problem, df)))
    if len(problems) > PROBLEMS_CAP:
        out.append(f'<p class="small">… and {len(problems) - PROBLEMS_CAP} more problems (findings.json).</p>')
    return "".join(out)


def _html_problem(i: int, problem: dict[str, Any], df: pd.DataFrame, isa: str = "") -> str:
    dev = str(problem.get("known_deviation") or "")
    badge = '<span class="pill">known</span>' if dev else '<span class="pill bad">NEW</span>'
    known = (f"<p><b>known deviation</b> <code>{H.esc(dev)}</code>: {H.upstream(_deviation_upstream(dev))}</p>"
             if dev else "<p><b>NEW</b>: no known deviation explains it.</p>")
    label = " ".join(str(problem.get("title") or upstream.title(problem)).split())
    links = " · ".join(x for x in (H.link(str(problem.get("repro") or ""), "repro script"),
                                   H.link(str(problem.get("upstream_report") or ""), "upstream report")) if x)
    since = (f"<p>Present since {H.esc(problem['present_since'])}.</p>" if problem.get("present_since") else "")
    cases = problem.get("cases") or []
    engines = H.table(_engine_rows(problem, df), index=False, cap=None)
    return (f'<div class="problem" id="problem-{H.esc(safe_name(str(problem.get("id", ""))))}">'
            f"<h3>{i}. {H.esc(label)} {badge}</h3>{known}"
            f'<p><b>minimal case</b> <span class="id">{H.esc(problem.get("minimal_case", ""))}</span>: '
            f"{H.esc(_case_text(problem))}</p>"
            f"<p><b>where</b>: {H.esc(_characterization(problem))}</p>"
            + (f"<p><b>kernels</b>: {H.esc(isa)}</p>" if isa else "") +
            f"<p><b>seen in</b> {int(problem.get('rows') or 0)} failing row(s) over {len(cases)} case(s); "
            f"failing: {H.esc(', '.join(map(str, problem.get('adapters') or [])))}. {links}</p>{since}"
            f"<p><b>engines on the minimal case</b>:</p>{engines}</div>")


# --- Markdown ------------------------------------------------------------------------------------


def md_section(problems: list[dict[str, Any]], df: pd.DataFrame, note: str = "") -> str:
    """The problems, each once, as Markdown (the lead of summary.md's findings)."""
    n, rows, new = headline(problems, df)
    if not problems:
        return f"_{upstream.md_text(note)}_\n" if note else ""
    out = [f"**{n} problem(s) in {rows} failing row(s)** ({new} new, {n - new} explained by known deviations); "
           "the rows follow below, under Per-row detail.\n"]
    if note:
        out.append(f"_{upstream.md_text(note)}_\n")
    cases = _minimal_rows(problems, df)
    for i, problem in enumerate(problems[:PROBLEMS_CAP], 1):
        out.append(_md_problem(i, problem, cases, kernels(problem, df)))
    if len(problems) > PROBLEMS_CAP:
        out.append(f"… and {len(problems) - PROBLEMS_CAP} more problems (findings.json).\n")
    return "\n".join(out)


def _md_problem(i: int, problem: dict[str, Any], df: pd.DataFrame, isa: str = "") -> str:
    md, code = upstream.md_text, upstream.code_span
    dev = str(problem.get("known_deviation") or "")
    if dev:
        link = _deviation_upstream(dev)
        status = f"known deviation {code(dev)}" + (f" ({upstream.md_link(link, link)})" if link.startswith("http")
                                                   else "")
    else:
        status = "**NEW**"
    links = [upstream.md_link(name, problem.get(key)) for key, name in (("repro", "repro script"),
                                                                         ("upstream_report", "upstream report"))
             if problem.get(key)]
    engines = _engine_rows(problem, df)
    shown = "kernels" in engines.columns
    table = ["| engine | outcome |" + (" kernels |" if shown else "") + " bound ratio | max abs err |",
             "|---|---|" + ("---|" if shown else "") + "---|---|"]
    for r in engines.to_dict("records"):
        kernel_cell = [code(r["kernels"]) if r["kernels"] else ""] if shown else []
        cells = [code(r["engine"]) + (" (fails)" if r["fails here"] else ""), md(r["outcome"]), *kernel_cell,
                 md(H.fmt(r["bound_ratio"])), md(H.fmt(r["max_abs_err"]))]
        table.append("| " + " | ".join(upstream.cell(c) for c in cells) + " |")
    lines = [f"### {i}. {md(problem.get('title') or upstream.title(problem))}\n",
             f"- {status}; {int(problem.get('rows') or 0)} failing row(s) over {len(problem.get('cases') or [])} "
             f"case(s); {' · '.join(links)}",
             f"- minimal case {code(problem.get('minimal_case', ''))}: {md(_case_text(problem))}",
             f"- where: {code(_characterization(problem))}"]
    if isa:
        lines.append(f"- kernels: {code(isa)}")
    if problem.get("present_since"):
        lines.append(f"- present since {md(problem['present_since'])}")
    return "\n".join(lines) + "\n\n" + "\n".join(table) + "\n"
