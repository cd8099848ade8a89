"""Render one run: summary.md and report.html from the stored rows (measuring never happens here)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from refconv.report import html as H
from refconv.report import layers, plots, summary, versions
from refconv.report import problems as P
from refconv.report.load import load_run, read_json
from refconv.report.words import case_words, framework_arguments, numbers_words, spec_of

GEOMETRY_CAP = 25  # distinct geometries shown; the rest are counted
FINDINGS_CAP = 100  # rows shown per (adapter, outcome) group in HTML; the rest are counted
MD_FINDINGS_CAP = 30
PIVOTS = ("padding", "stride", "dilation", "groups", "dtype", "layout")
READ_ME = (
    "<p>Each row of this run is one (case, adapter) pair: the adapter's conv2d output was compared with a "
    "float64 NumPy reference on the same seeded inputs. <b>pass</b>: every element within tolerance; "
    "<b>mismatch</b>: same shape, values beyond tolerance; <b>wrong_shape</b>; <b>raised</b>: the framework "
    "raised where the reference returns a result (empty outputs included); <b>unsupported</b>: the adapter "
    "declined the case up front (not counted in the pass rate); <b>crashed</b>: its worker process died; "
    "<b>timeout</b>. <b>bound_ratio</b> = max |actual − expected| / (eps(dtype) · (|x| conv |w| + |b|)): the "
    "error in units of the rounding error any summation order may make; an element fails when its ratio "
    "exceeds the tolerance C of its dtype. Columns are documented in reports/README.md.</p>"
)


def write_reports(run_dir: str | Path) -> list[Path]:
    """Write summary.md and report.html (and upstream/<problem>.md) into a run directory; returns the two paths."""
    path = Path(run_dir)
    df = load_run(path)
    provenance = read_json(path, "provenance.json")
    arguments = read_json(path, "run.json")
    title = f"refconv run {run_id(df, path)}"
    problems, note = P.load(path, df)
    P.prepare(path, problems, df, provenance)  # writes upstream/<id>.md and fills each problem's links
    written = []
    warned = warnings_frame(path)
    for name, text in (("summary.md", markdown(df, provenance, arguments, title, problems, note) + md_warnings(warned)),
                       ("report.html", html_report(df, provenance, arguments, title, problems, note, warned))):
        written.append(write_text(path / name, text))
    return written  # the upstream reports sit in upstream/, linked from both


def write_text(path: Path, text: str) -> Path:
    """Write atomically: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", errors="backslashreplace")  # undecodable bytes an engine reported
    os.replace(tmp, path)
    return path


def run_id(df: pd.DataFrame, path: Path) -> str:
    ids = [i for i in df["run_id"].unique() if i]
    return ids[0] if len(ids) == 1 else path.resolve().name


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested provenance as dotted keys with short string values."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = " ".join(map(str, value)) if all(not isinstance(v, (dict, list)) for v in value) \
                else json.dumps(value)
        else:
            out[name] = str(value)
    return out


def overview(df: pd.DataFrame) -> pd.DataFrame:
    """outcomes(df) with each adapter's version, the kernels it ran (isa) and the pass rate in percent."""
    table = summary.outcomes(df)
    versions = df.groupby("adapter")["adapter_version"].agg(lambda s: ", ".join(sorted(set(s) - {""})))
    table.insert(0, "version", versions.reindex(table.index).fillna(""))
    isa = summary.kernels(df).reindex(table.index).fillna("")
    if (isa != "").any():  # a run older than the isa column has none to show
        table.insert(1, "isa", isa)
    table["pass_rate"] = (table["pass_rate"] * 100).round(1).map(lambda v: "" if pd.isna(v) else f"{v:g}%")
    return table


def cpu_line(df: pd.DataFrame, provenance: dict[str, Any]) -> str:
    """'CPU: <model>; features: x86-64-v4 avx2 ...' from the rows (several on a fleet), else provenance; '' if none."""
    cpu: dict[str, Any] = provenance["cpu"] if isinstance(provenance.get("cpu"), dict) else {}
    features = summary.cpu_features(df) or ([str(cpu["features"])] if cpu.get("features") else [])
    models = sorted(set(df["cpu_model"].astype(str)) - {""}) or ([str(cpu["model"])] if cpu.get("model") else [])
    if not (features or models):
        return ""
    return f"CPU: {' | '.join(models) or '(model not recorded)'}; features: {' | '.join(features) or '(not recorded)'}"


def _verdict(df: pd.DataFrame) -> tuple[int, int, int]:
    found = summary.findings(df)
    return len(found), int((found["known_deviation"] != "").sum()), df["adapter"].nunique()


# --- HTML ----------------------------------------------------------------------------------------


def html_report(df: pd.DataFrame, provenance: dict[str, Any], arguments: dict[str, Any], title: str,
                problems: list[dict[str, Any]] | None = None, note: str = "",
                warned: pd.DataFrame | None = None) -> str:
    """The whole report.html as a string; `problems` default to the rows grouped (no upstream links)."""
    problems = P.load_rows(df) if problems is None else problems
    n_find, n_known, n_adapters = _verdict(df)
    n_problems, _, n_new = P.headline(problems, df)
    verdict = (
        f'<p><span class="{"bad" if n_find > n_known else "good"}">{n_find} finding(s)</span> '
        f"({n_known} explained by known deviations) over {len(df)} rows, {df['case_id'].nunique()} cases, "
        f"{n_adapters} adapter(s): {n_problems} distinct problem(s), {n_new} new.</p>"
        + (f"<p>{H.esc(line)}</p>" if (line := cpu_line(df, provenance)) else "") + READ_ME
    )
    sections = [
        ("overview", "Overview", _html_overview(df, provenance, arguments)),
        *([("hosts", "Hosts", _html_hosts(df))] if summary.multi_host(df) else []),
        *([("ops", "Outcomes per op", H.table(summary.outcomes_by_op(df), cap=None))] if summary.multi_op(df) else []),
        ("findings", "Findings", P.html_section(problems, df, note)
         + (_folded(_html_findings(df), df) if problems else _html_findings(df))),
        *([("versions", "Versions side by side", side)] if (side := versions.html_section(df, problems)) else []),
        ("errors", "Where the errors sit", _html_errors(df)),
        ("geometry", "Padding geometry (SAME cases)", _html_geometry(df)),
        ("timings", "Timings", _html_timings(df)),
        ("capability", "Capability matrix", _html_capability(df)),
        ("deviations", DEVIATIONS_TITLE, _html_deviations(df)),
        *([("warnings", "Warnings", WARNINGS_NOTE + H.table(warned, cap=None, index=False))]
          if warned is not None and len(warned) else []),
    ]
    if layers.has_layers(df):  # an audit (refconv audit): the model's layers come first
        sections.insert(0, ("layers", "Layers", layers.html(df, arguments)))
    return H.page(title, sections, verdict)


# Provenance fields shown in the overview; the whole record is one click away (it runs to a hundred lines).
KEY_PROVENANCE = ("refconv_version", "git.commit", "python", "numpy_version", "cpu.model", "cpu.features",
                  "cpu.usable_cores",
                  "host", "started_utc", "finished_utc", "command")


def _html_overview(df: pd.DataFrame, provenance: dict[str, Any], arguments: dict[str, Any]) -> str:
    out = "<h3>Outcomes per adapter</h3>" + H.table(overview(df), cap=None)
    flat_provenance = flatten(provenance)
    key = [(k, flat_provenance[k]) for k in KEY_PROVENANCE if k in flat_provenance]
    if key:
        rows = "".join(f"<tr><th>{H.esc(k)}</th><td>{_long(v)}</td></tr>" for k, v in key)
        out += f"<h3>Provenance</h3><table>{rows}</table>"
    for name, data in (("All provenance (versions, settings, environment of every adapter)", provenance),
                       ("Run arguments", arguments)):
        flat = flatten(data)
        if not flat:
            out += f'<p class="small">{name}: not recorded.</p>'
            continue
        rows = "".join(f"<tr><th>{H.esc(k)}</th><td>{_long(v)}</td></tr>" for k, v in flat.items())
        out += f"<details><summary>{name}</summary><table>{rows}</table></details>"
    return out


def _html_hosts(df: pd.DataFrame) -> str:
    """Only rendered when more than one host ran the rows: what each host is, its outcomes and its timings."""
    out = ("<p>More than one host ran this sweep (refconv run --dask). Each row names its host and Dask worker; "
           "outcomes and timings are grouped by host below, as machines and builds may differ.</p>")
    out += H.table(summary.hosts(df), cap=None)
    out += "<h3>Outcomes per host and adapter</h3>" + H.table(overview_by_host(df), cap=None)
    table = summary.timings_by_host(df)
    if not table.empty:
        out += "<h3>Timings per host and adapter</h3>" + H.table(table, cap=None)
    return out


def overview_by_host(df: pd.DataFrame) -> pd.DataFrame:
    """outcomes_by_host(df) with the pass rate in percent."""
    table = summary.outcomes_by_host(df)
    table["pass_rate"] = (table["pass_rate"] * 100).round(1).map(lambda v: "" if pd.isna(v) else f"{v:g}%")
    return table


def _long(text: str, limit: int = 240) -> str:
    if len(text) <= limit:
        return H.esc(text)
    return f"<details><summary>{H.esc(text[:limit])}…</summary><code>{H.esc(text)}</code></details>"


def _html_findings(df: pd.DataFrame) -> str:
    found = summary.findings(df)
    if found.empty:
        return '<p class="good">No findings: every case an adapter accepted matched the reference.</p>'
    dev = {d.id: d for d in _deviation_entries()}
    parts = [f"<p>{len(found)} rows, grouped by adapter and outcome, worst first. Known deviations are shown "
             "(highlighted), never hidden.</p>"]
    for (adapter, outcome), group in found.groupby(["adapter", "outcome"], sort=False):
        n_known = int((group["known_deviation"] != "").sum())
        parts.append(f'<h3 id="f-{H.esc(adapter)}-{H.esc(outcome)}">{H.esc(adapter)} — {H.esc(outcome)} '
                     f'<span class="pill">{len(group)}</span>'
                     + (f' <span class="pill">{n_known} known</span>' if n_known else "") + "</h3>")
        parts.append(_deviation_notes(group, dev))
        # Unexplained findings first: they are the news; known deviations follow, still listed.
        group = group.assign(_known=group["known_deviation"] != "").sort_values("_known", kind="stable")
        rows = [_finding_row(row) for row in group.head(FINDINGS_CAP).to_dict("records")]
        parts.append('<table><thead><tr><th style="width:34%">case</th><th style="width:22%">numbers</th>'
                     '<th>error / known deviation</th><th style="width:9%">repro</th></tr></thead>'
                     f'<tbody>{"".join(rows)}</tbody></table>')
        if len(group) > FINDINGS_CAP:
            parts.append(f'<p class="small">… and {len(group) - FINDINGS_CAP} more in this group '
                         "(all rows are in results.parquet).</p>")
    return "".join(parts)


def _folded(detail: str, df: pd.DataFrame) -> str:
    """The per-row findings under a <details>, folded: the problems above are the lead."""
    n = len(summary.findings(df))
    if not n:
        return detail
    return (f'<details id="rows-detail"><summary>Per-row detail: {n} failing row(s) by adapter and outcome</summary>'
            f"{detail}</details>")


def _deviation_notes(group: pd.DataFrame, dev: dict[str, Any]) -> str:
    """One line per known deviation in a findings group: its reason and upstream link, said once."""
    notes = []
    for dev_id, count in group.loc[group["known_deviation"] != "", "known_deviation"].value_counts().items():
        entry = dev.get(str(dev_id))
        reason = f"{H.esc(entry.reason)} {H.upstream(entry.upstream)}" if entry else "(not in the data file)"
        notes.append(f'<p class="devnote" id="{H.esc(_dev_anchor(str(dev_id), group))}"><b>known deviation</b> '
                     f"<code>{H.esc(dev_id)}</code> ({count} row(s) below): {reason}</p>")
    return "".join(notes)


def _dev_anchor(dev_id: str, group: pd.DataFrame) -> str:
    first = group.iloc[0]
    return f"dev-{dev_id}-{first['adapter']}-{first['outcome']}"


def _finding_row(row: dict[Any, Any]) -> str:
    name = f' <span class="pill">{H.esc(row["case_name"])}</span>' if row.get("case_name") else ""
    case = f'<span class="id">{H.esc(row["case_id"])}</span>{name}<br>{H.esc(case_words(row))}'
    error = f"<pre>{H.esc(_clip(row.get('error', '')))}</pre>" if row.get("error") else ""
    known = row.get("known_deviation", "")
    cls = ""
    if known:
        cls = ' class="dev"'
        error += f"known deviation <code>{H.esc(known)}</code> (reason above)"
    repro = H.link(row["repro"], "script") if row.get("repro") else ""
    return f"<tr{cls}><td>{case}</td><td>{H.esc(numbers_words(row))}</td><td>{error}</td><td>{repro}</td></tr>"


def _clip(text: str, limit: int = 800) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def _deviation_entries() -> tuple[Any, ...]:
    from refconv import deviations

    return deviations.load()


def _html_errors(df: pd.DataFrame) -> str:
    out = ("<p>bound_ratio per adapter (log scale; the dashed line is the tolerance C: points right of it "
           "fail).</p>" + H.figure(plots.ratio_distribution(df), "bound_ratio per adapter"))
    out += "<h3>Error against the reduction length K</h3>" + H.figure(plots.ratio_vs_k(df), "bound_ratio vs K")
    worst = summary.worst(df, 20)[["case_id", "adapter", "outcome", "dtype", "K", "bound_ratio", "tolerance_c",
                                    "max_abs_err", "mismatched", "known_deviation"]]
    out += "<h3>Worst 20 rows by bound_ratio</h3>" + H.table(worst, index=False)
    out += ("<h3>Breakdown</h3><p class='small'>Per value and adapter: rows, findings, and max bound_ratio. "
            "A cell reads <code>findings/rows · max ratio</code>.</p>")
    for column in PIVOTS:
        out += f"<h3>by {H.esc(column)}</h3>" + H.table(compact_pivot(df, column), cap=60)
    return out


def compact_pivot(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """by(df, column) folded into one readable cell per adapter: 'findings/rows · max ratio'."""
    table = summary.by(df, column)
    adapters = sorted({str(col[1]) for col in table.columns})
    out = pd.DataFrame(index=table.index)
    for a in adapters:
        cells = []
        for r, f, m in zip(table[("rows", a)], table[("findings", a)], table[("max_bound_ratio", a)], strict=True):
            if pd.isna(r) or r == 0:
                cells.append("")
            else:
                cells.append(f"{int(f)}/{int(r)}" + ("" if pd.isna(m) else f" · {m:.3g}"))
        out[a] = cells
    return out


def _html_geometry(df: pd.DataFrame) -> str:
    geometry = summary.same_geometry(df)
    if geometry.empty:
        return '<p class="small">No SAME cases in this run.</p>'
    out = ("<p>TensorFlow's rule: out = ceil(in / s), total = max((out − 1)·s + k_eff − in, 0), before = total // 2, "
           "after = the rest (an odd total puts the extra pixel after). Distinct geometries per axis, those with "
           "findings and asymmetric pads first:</p>" + H.table(geometry, cap=GEOMETRY_CAP, index=False))
    told = framework_table(df)
    if told.empty:
        return out
    constant = {c: told[c].iloc[0] for c in ("tf", "jax", "onnx") if c in told and told[c].nunique() == 1}
    said = "; ".join(f"{k}: <code>{H.esc(v)}</code>" for k, v in constant.items())
    out += (f"<h3>What each framework is told</h3><p>For every SAME case below, {said}. The rest vary per case "
            "(PyTorch pads symmetrically, so an asymmetric SAME is padded with F.pad first):</p>"
            + H.table(told.drop(columns=list(constant)), cap=GEOMETRY_CAP, index=False))
    return out


def framework_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per distinct SAME case geometry (cases with findings first): pads applied and each framework's arguments."""
    same = df[df["padding"] == "SAME"].assign(finding=lambda d: d["outcome"].isin(summary.FINDING_OUTCOMES))
    per_case = same.groupby("case_id", sort=False).agg(
        findings=("finding", "sum"), **{k: (k, "first") for k in GEOMETRY_KEY + PAD_COLUMNS})
    per_case = per_case.reset_index().sort_values(["findings", "case_id"], ascending=[False, True])
    per_case = per_case.drop_duplicates(GEOMETRY_KEY)
    rows = []
    for r in per_case.to_dict("records"):
        spec = spec_of(str(r["case_id"]))
        if spec is None:
            continue
        pads = "/".join(str(int(r[k])) for k in PAD_COLUMNS)
        rows.append({"case": r["case_id"], "findings": int(r["findings"]), "pads t/b/l/r": pads,
                     **framework_arguments(spec)})
    return pd.DataFrame(rows)


GEOMETRY_KEY = ["h", "w", "kh", "kw", "sh", "sw", "dh", "dw"]
PAD_COLUMNS = ["pad_top", "pad_bottom", "pad_left", "pad_right"]


def _html_timings(df: pd.DataFrame) -> str:
    table = summary.timings(df)
    if table.empty:
        return '<p class="small">No timed rows.</p>'
    return ("<p>Only the framework call is timed (inputs prepared beforehand); time is the median of the "
            "repeats, spread = median / min.</p>" + H.table(table, cap=None)
            + H.figure(plots.time_vs_flops(df), "time vs FLOPs") + H.figure(plots.gflops_per_adapter(df), "GFLOP/s"))


def _html_capability(df: pd.DataFrame) -> str:
    matrix = summary.capability(df)
    out = ("<p>Derived from the rows: for each feature the run exercised, 'yes' when the adapter accepted every "
           "such case, 'no' when it declined all, k/n otherwise ('-': not exercised).</p>" + H.table(matrix, cap=None))
    return out + "<h3>Reasons given for declining</h3>" + H.table(summary.unsupported_reasons(df), index=False)


DEVIATIONS_TITLE = "Known deviations that applied, and those that did not here"
DEVIATIONS_NOTE = (
    "Every known deviation of this run's adapters, with its status here: <b>applied</b>: it explains rows of this "
    "run; <b>fixed here?</b>: rows of its adapters fall inside its conditions, hardware included, but it explains "
    "none; <b>not applicable here</b>: no row of its adapters ran on the kernels and CPU it needs (its hardware "
    "conditions); <b>not exercised</b>: no row of its adapters inside its conditions.")


def _html_deviations(df: pd.DataFrame) -> str:
    table = summary.deviation_statuses(df)
    return f"<p>{DEVIATIONS_NOTE}</p>" + H.table(table, index=False, cells={"upstream": H.upstream})


# --- Markdown ------------------------------------------------------------------------------------


def markdown(df: pd.DataFrame, provenance: dict[str, Any], arguments: dict[str, Any], title: str,
             problems: list[dict[str, Any]] | None = None, note: str = "") -> str:
    """The whole summary.md as a string (the short form of report.html)."""
    problems = P.load_rows(df) if problems is None else problems
    n_find, n_known, n_adapters = _verdict(df)
    cpu = cpu_line(df, provenance)
    parts = [f"# {title}\n", f"**{n_find} finding(s)** ({n_known} explained by known deviations) over {len(df)} "
             f"rows, {df['case_id'].nunique()} cases, {n_adapters} adapter(s). Details, plots: report.html.\n"
             + (f"\n{H.md_inline(cpu)}\n" if cpu else ""),
             "## Outcomes per adapter\n", H.md_table(overview(df), cap=None)]
    if layers.has_layers(df):  # an audit (refconv audit): the model's layers come first
        parts[2:2] = ["## Layers\n", layers.markdown(df, arguments), "\n"]
    if summary.multi_op(df):  # the training ops (docs/training.md): each op's outcomes per engine
        parts += ["\n## Outcomes per op and adapter\n", H.md_table(summary.outcomes_by_op(df), cap=None)]
    # Problems lead, right after the outcomes; the rows they group come last, under Per-row detail.
    lead = P.md_section(problems, df, note)
    parts += ["\n## Findings\n", lead if problems else lead + _md_findings(df)]
    parts += [versions.md_section(df, problems)]  # '' unless one engine runs at several versions (tf@2.19.1, tf)
    if summary.multi_host(df):
        parts += ["\n## Hosts\n", H.md_table(summary.hosts(df), cap=None),
                  "\n### Outcomes per host and adapter\n", H.md_table(overview_by_host(df), cap=None)]
    flat = flatten({k: v for k, v in provenance.items() if k != "cluster"})  # per-worker detail: report.html
    keys = [k for k in flat if not k.endswith("flags")]
    if keys:
        parts += ["\n## Provenance\n", H.md_table(pd.DataFrame({"value": [flat[k][:200] for k in keys]},
                                                               index=pd.Index(keys, name="key")), cap=None)]
    parts += ["\n## Worst rows by bound_ratio\n", H.md_table(summary.worst(df, 10), index=False)]
    for column in ("padding", "dtype"):
        parts += [f"\n### by {column} (findings/rows · max ratio)\n", H.md_table(compact_pivot(df, column))]
    parts += ["\n## Timings\n", H.md_table(summary.timings(df), cap=None)]
    parts += ["\n## Capability\n", H.md_table(summary.capability(df), cap=None)]
    deviations = summary.deviation_statuses(df).drop(columns=["reason"])  # the reasons: report.html
    note = H.md_inline(re.sub("</?b>", "", DEVIATIONS_NOTE))
    parts += [f"\n## {DEVIATIONS_TITLE}\n", note + "\n", H.md_table(deviations, index=False, cap=None)]
    if problems:
        parts += ["\n## Per-row detail\n", "Every failing row, by adapter and outcome (the problems above group "
                  "them).\n", _md_findings(df)]
    return "\n".join(parts)


def _md_findings(df: pd.DataFrame) -> str:
    found = summary.findings(df)
    if found.empty:
        return "No findings: every case an adapter accepted matched the reference.\n"
    lines = []
    for (adapter, outcome), group in found.groupby(["adapter", "outcome"], sort=False):
        lines.append(f"\n### {H.md_inline(adapter)}: {outcome} ({len(group)})\n")
        for row in group.head(MD_FINDINGS_CAP).to_dict("records"):
            extra = f" — known deviation `{row['known_deviation']}`" if row["known_deviation"] else ""
            repro = f" — repro: [{row['repro']}]({row['repro']})" if row["repro"] else ""
            numbers = numbers_words(row)
            error = _clip(H.md_inline(row["error"]), 200)  # an engine's text: no raw HTML, one line
            lines.append(f"- `{row['case_id']}`: {case_words(row)}. {numbers}"
                         f"{'. ' + error if error else ''}{extra}{repro}")
        if len(group) > MD_FINDINGS_CAP:
            lines.append(f"- … and {len(group) - MD_FINDINGS_CAP} more (report.html, results.parquet)")
    return "\n".join(lines) + "\n"


# --- framework warnings (warnings.json, written by the runner) ---------------------------------------

WARNINGS_NOTE = ("<p>Python warnings the frameworks raised in the adapters' workers, each listed once: how often, "
                 "and the first case that raised it. The workers' full output is in logs/&lt;adapter&gt;.log.</p>")


def warnings_frame(run_dir: str | Path) -> pd.DataFrame:
    """warnings.json as a table (adapter, category, count, first_case, message); empty when there is none."""
    path = Path(run_dir) / "warnings.json"
    columns = ["adapter", "category", "count", "first_case", "message"]
    try:
        entries = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError):
        entries = []
    frame = pd.DataFrame([e for e in entries if isinstance(e, dict)], columns=columns)
    return frame.sort_values(["count", "adapter"], ascending=[False, True], kind="stable").reset_index(drop=True)


def md_warnings(warned: pd.DataFrame) -> str:
    """The '## Warnings' section of summary.md, or '' without warnings."""
    if warned.empty:
        return ""
    short = warned.assign(message=[str(m).splitlines()[0][:160] for m in warned["message"]])
    return ("\n\n## Warnings\n\nPython warnings raised in the adapters' workers, each once (count, first case); "
            "the workers' output is in logs/.\n\n" + H.md_table(short, cap=30, index=False) + "\n")
