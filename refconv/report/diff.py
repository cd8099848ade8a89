"""Compare two runs row by row, matched by (case_id, adapter label; the label carries the variant).

What counts as a regression (the exit code of `refconv compare` gates on it):
- an outcome change from pass to anything else (an adapter that starts declining a case it passed counts too);
- error growth: new bound_ratio > factor * max(base bound_ratio, 1), the floor of one rounding unit
  keeping exact-versus-one-ulp changes quiet;
- a speed regression of an adapter as a whole (refconv.report.speed): the geometric mean over cases of
  new/base minimum time, whose bootstrap confidence interval lies above time_factor. Per-row timing
  changes (median > time_factor * base and slower by more than time_min_ms) are listed, never gating alone.
Other outcome changes (fixes, one failure turning into another) and cases present in one run only are
listed but do not gate, unless `require_all` is set: then a row of the base run missing from the new run
regresses too. Two runs without a single row in common are an error (nothing was compared), and runs of
different case selections or seeds say so in `notes`.

Hardware is told from regressions: a matched row whose `isa` (the kernels the engine dispatched to) or
`cpu_features` (the CPU) differ between the runs ran other code, so it is set apart ("kernels changed") and
never counts as a regression or a fix; its outcome and error changes are listed in that section, which the
reports put first. A side that lacks the column (a run older than it) is unknown: not a change. Speed is
judged per adapter over its rows on unchanged kernels; its rows on changed kernels get their own line,
flagged and never gating. Exit statuses of `refconv compare` (EXIT_*): 0 nothing regressed, 1 a regression,
2 no shared row (or a usage error), 3 nothing regressed but rows whose kernels changed differ in outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from refconv.errors import UsageError
from refconv.report import html as H
from refconv.report.load import load_run, read_json, run_path
from refconv.report.render import write_text
from refconv.report.speed import COLUMNS as SPEED_COLUMNS
from refconv.report.speed import CONFIDENCE, speed_table
from refconv.thresholds import ERROR_FACTOR, TIME_FACTOR, TIME_MIN_MS

KEY = ["case_id", "adapter"]
HARDWARE = ("isa", "cpu_features")  # row columns naming the kernels and the CPU (refconv.hardware)
EXIT_OK, EXIT_REGRESSED, EXIT_NO_SHARED_ROWS, EXIT_HARDWARE_ONLY = 0, 1, 2, 3
KERNEL_COLUMNS = ["adapter", "isa_base", "isa_new", "cpu_features_base", "cpu_features_new", "rows",
                  "outcome_changes"]
# A later row kind (metamorphic relations) adds a `relation` column: rows then differ by it too.
OPTIONAL_KEY = ("relation",)


def row_key(*frames: pd.DataFrame) -> list[str]:
    """The columns that identify a row across runs: KEY plus any optional key column some frame has."""
    return KEY + [c for c in OPTIONAL_KEY if any(c in f.columns for f in frames)]


@dataclass
class RunDiff:
    """The differences between a base run and a new run, one DataFrame per kind."""

    outcome_changes: pd.DataFrame
    error_growth: pd.DataFrame
    timing_regressions: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    matched: int
    settings: dict[str, float] = field(default_factory=dict)
    key: list[str] = field(default_factory=lambda: list(KEY))
    require_all: bool = False
    notes: list[str] = field(default_factory=list)  # what makes the two runs not like for like
    speed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SPEED_COLUMNS))  # per adapter
    # matched rows whose kernels or CPU changed (set apart), and the same summed up per adapter and change
    hardware_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    kernel_changes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=KERNEL_COLUMNS))

    @property
    def regressions(self) -> int:
        """Rows that gate (pass -> non-pass, error growth; with require_all, a missing row) plus slower adapters."""
        gating = [self.outcome_changes[self.outcome_changes["regression"]], self.error_growth]
        if self.require_all:
            gating.append(self.only_base)
        rows = len(set().union(*(zip(*(t[k] for k in self.key), strict=True) for t in gating)))
        return rows + int(self.speed["regression"].sum())

    @property
    def regressed(self) -> bool:
        return self.regressions > 0

    @property
    def hardware_outcome_changes(self) -> int:
        """Rows on changed kernels whose outcome differs (set apart: never regressions or fixes)."""
        rows = self.hardware_rows
        return int((rows["outcome_base"] != rows["outcome_new"]).sum()) if len(rows) else 0

    @property
    def exit_status(self) -> int:
        """1 regressed; 3 no regression but outcomes differ on rows whose kernels changed; 0 otherwise."""
        if self.regressed:
            return EXIT_REGRESSED
        return EXIT_HARDWARE_ONLY if self.hardware_outcome_changes else EXIT_OK


def _dedupe(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    # A resumed run may hold a pair twice; the last row written is the one that counts.
    for column in key[len(KEY):]:  # an optional key column: absent or empty reads as ''
        values = df[column] if column in df.columns else pd.Series("", index=df.index)
        df = df.assign(**{column: values.astype(object).where(values.notna(), "").astype(str)})
    return df.drop_duplicates(key, keep="last")


def compare_runs(
    base: pd.DataFrame, new: pd.DataFrame, error_factor: float = ERROR_FACTOR, time_factor: float = TIME_FACTOR,
    time_min_ms: float = TIME_MIN_MS, require_all: bool = False,
) -> RunDiff:
    """Match rows of two loaded runs by (case_id, adapter[, relation]) and collect what changed."""
    key = row_key(base, new)
    base, new = _with_hardware(_dedupe(base, key)), _with_hardware(_dedupe(new, key))
    cols = key + ["outcome", "bound_ratio", "time_median_ms", "known_deviation", "error", *HARDWARE]
    cols += [c for c in ("time_min_ms",) if c in base.columns and c in new.columns]  # the speed judgement's input
    merged = base[cols].merge(new[cols], on=key, how="outer", suffixes=("_base", "_new"), indicator=True)
    matched = merged[merged["_merge"] == "both"]
    changed = hardware_changed(matched)
    both = matched[~changed]  # like for like: the same kernels on the same CPU (or not known to differ)
    changes = both[both["outcome_base"] != both["outcome_new"]].copy()
    changes["regression"] = (changes["outcome_base"] == "pass") & (changes["outcome_new"] != "pass")
    changes = changes.sort_values(["regression", "adapter", "case_id"], ascending=[False, True, True])
    ratio_b, ratio_n = both["bound_ratio_base"], both["bound_ratio_new"]
    grew = both[(ratio_n > error_factor * ratio_b.clip(lower=1.0).fillna(1.0)) & ratio_b.notna()].copy()
    grew["factor"] = grew["bound_ratio_new"] / grew["bound_ratio_base"].clip(lower=1.0)
    time_b, time_n = both["time_median_ms_base"], both["time_median_ms_new"]
    slow = both[(time_n > time_factor * time_b) & (time_n - time_b > time_min_ms)].copy()
    slow["factor"] = slow["time_median_ms_new"] / slow["time_median_ms_base"]
    only_base = merged[merged["_merge"] == "left_only"][key + ["outcome_base"]]
    only_new = merged[merged["_merge"] == "right_only"][key + ["outcome_new"]]
    change_cols = key + ["outcome_base", "outcome_new", "regression", "known_deviation_base", "known_deviation_new",
                         "error_new"]
    hardware = matched[changed]
    return RunDiff(
        outcome_changes=changes[change_cols].reset_index(drop=True),
        error_growth=grew[key + ["outcome_base", "outcome_new", "bound_ratio_base", "bound_ratio_new", "factor"]]
        .sort_values("factor", ascending=False).reset_index(drop=True),
        timing_regressions=slow[key + ["time_median_ms_base", "time_median_ms_new", "factor"]]
        .sort_values("factor", ascending=False).reset_index(drop=True),
        only_base=only_base.reset_index(drop=True), only_new=only_new.reset_index(drop=True),
        matched=len(matched),
        settings={"error_factor": error_factor, "time_factor": time_factor, "time_min_ms": time_min_ms},
        key=key, require_all=require_all, speed=_speed(both, hardware, time_factor),
        hardware_rows=_hardware_rows(hardware, key), kernel_changes=kernel_changes(hardware),
    )


def _with_hardware(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with isa and cpu_features as text; absent (an older run) or missing reads as '' (unknown)."""
    for column in HARDWARE:
        values = df[column] if column in df.columns else pd.Series("", index=df.index)
        df = df.assign(**{column: values.astype(object).where(values.notna(), "").astype(str).str.strip()})
    return df


def hardware_changed(merged: pd.DataFrame) -> pd.Series:
    """Matched rows whose isa or cpu_features differ, both sides known ('' is unknown, never a change)."""
    changed = pd.Series(False, index=merged.index)
    for column in HARDWARE:
        base, new = merged[f"{column}_base"], merged[f"{column}_new"]
        changed |= (base != "") & (new != "") & (base != new)
    return changed


def _hardware_rows(hardware: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The rows on changed kernels: both kernels, both outcomes and bound ratios, outcome changes first."""
    rows = hardware.assign(outcome_changed=hardware["outcome_base"] != hardware["outcome_new"])
    rows = rows.sort_values(["outcome_changed", "adapter", "case_id"], ascending=[False, True, True])
    cols = key + ["isa_base", "isa_new", "outcome_base", "outcome_new", "bound_ratio_base", "bound_ratio_new"]
    return rows[cols].reset_index(drop=True)


def kernel_changes(hardware: pd.DataFrame) -> pd.DataFrame:
    """Per adapter and change of kernels or CPU: the rows it covers and how many of them changed outcome."""
    if hardware.empty:
        return pd.DataFrame(columns=KERNEL_COLUMNS)
    work = hardware.assign(_changed=(hardware["outcome_base"] != hardware["outcome_new"]).astype(int))
    groups = work.groupby(KERNEL_COLUMNS[:5], sort=True)
    table = groups.agg(rows=("_changed", "size"), outcome_changes=("_changed", "sum")).reset_index()
    return table[KERNEL_COLUMNS]


def kernel_words(change: dict[str, Any]) -> str:
    """'tf: onednn:avx512_core_amx -> onednn:avx2 (4 rows, 2 outcome changes)', the CPU named when it changed."""
    isa_b, isa_n = change["isa_base"] or "?", change["isa_new"] or "?"
    kernels = f"{isa_b} -> {isa_n}" if isa_b != isa_n else f"{isa_b} (same kernels)"
    cpu_b, cpu_n = change["cpu_features_base"], change["cpu_features_new"]
    cpu = f"; CPU {cpu_b} -> {cpu_n}" if cpu_b and cpu_n and cpu_b != cpu_n else ""
    return (f"{change['adapter']}: {kernels}{cpu} ({int(change['rows'])} row(s), "
            f"{int(change['outcome_changes'])} outcome change(s))")


def hardware_lines(diff: RunDiff) -> list[str]:
    """The kernels-changed statement, one line per adapter and change ([] when the kernels are the same)."""
    rows = len(diff.hardware_rows)
    if not rows:
        return []
    head = (f"KERNELS CHANGED: {rows} of {diff.matched} matched row(s) ran on other kernels or another CPU "
            f"(isa or cpu_features differ); set apart, never counted as regressions or fixes; "
            f"{diff.hardware_outcome_changes} of them changed outcome")
    changes = [{str(k): v for k, v in c.items()} for c in diff.kernel_changes.to_dict("records")]
    return [head] + [f"kernels changed: {kernel_words(c)}" for c in changes]


def _speed(both: pd.DataFrame, hardware: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Speed per adapter on unchanged kernels (gating), and on changed kernels (flagged, never gating)."""
    same = speed_table(both, factor).assign(kernels="same", flag="")
    if hardware.empty:
        return same
    changed = speed_table(hardware, factor)
    flag = changed["regression"].map({True: "kernels changed; slower beyond the factor: not gated",
                                      False: "kernels changed: not gated"})
    changed = changed.assign(kernels="changed", flag=flag, regression=False)
    parts = [t for t in (same, changed) if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else same


def _sections(diff: RunDiff) -> list[tuple[str, str, pd.DataFrame]]:
    s = diff.settings
    kernels = [("kernels", "Kernels changed (isa or cpu_features differ: set apart, never regressions or fixes)",
                diff.kernel_changes), ("kernel-rows", "Rows on changed kernels", diff.hardware_rows)]
    return (kernels if len(diff.hardware_rows) else []) + [
        ("changes", "Outcome changes (pass → other is a regression)", diff.outcome_changes),
        ("errors", f"Error growth (new bound_ratio > {s['error_factor']:g} × max(base, 1))", diff.error_growth),
        ("speed", f"Speed per adapter (geometric mean of new/base minimum time over cases, {CONFIDENCE:.0%} "
                  f"bootstrap interval; regresses when its lower end > {s['time_factor']:g}; rows on changed "
                  "kernels judged apart, flagged, never gating)", diff.speed),
        ("timings", f"Per-row timing changes (median > {s['time_factor']:g}× and > {s['time_min_ms']:g} ms slower; "
                    "listed, never gating alone)", diff.timing_regressions),
        ("only-base", "Only in the base run" + (" (missing from the new run: regressions, --require-all)"
                                                if diff.require_all else ""), diff.only_base),
        ("only-new", "Only in the new run", diff.only_new),
    ]


def verdict(diff: RunDiff) -> str:
    """One line: REGRESSED, KERNELS CHANGED (no regression; outcomes differ on changed kernels) or OK, with counts."""
    head = {EXIT_REGRESSED: "REGRESSED", EXIT_HARDWARE_ONLY: "OK, KERNELS CHANGED"}.get(diff.exit_status, "OK")
    apart = f" ({len(diff.hardware_rows)} on changed kernels, set apart)" if len(diff.hardware_rows) else ""
    return (f"{head}: {diff.regressions} regression(s) over {diff.matched} matched rows{apart}; "
            f"{len(diff.outcome_changes)} outcome change(s), {len(diff.error_growth)} error growth, "
            f"{int(diff.speed['regression'].sum())} slower adapter(s), "
            f"{len(diff.timing_regressions)} per-row timing change(s), {len(diff.only_base)} only in base, "
            f"{len(diff.only_new)} only in new")


def describe_runs(base: pd.DataFrame, new: pd.DataFrame, base_name: str, new_name: str) -> str:
    """One line naming both runs' adapters and case counts (for the no-overlap error)."""

    def one(df: pd.DataFrame, name: str) -> str:
        labels = sorted(df["adapter"].astype(str).unique()) if "adapter" in df.columns else []
        cases = df["case_id"].nunique() if "case_id" in df.columns else 0
        return f"{name} has adapter(s) {', '.join(map(repr, labels)) or 'none'} over {cases} case(s)"

    return f"{one(base, 'base ' + repr(base_name))}; {one(new, 'new ' + repr(new_name))}"


def run_notes(base_args: dict[str, Any], new_args: dict[str, Any], diff: RunDiff) -> list[str]:
    """What makes two runs not like for like: their case selections, seeds or case lists differ; partial overlap."""
    notes = []
    for key, words in (("selection", "case selections"), ("seed", "seeds")):
        if key in base_args and key in new_args and base_args[key] != new_args[key]:
            notes.append(f"the runs have different {words}: base {base_args[key]!r}, new {new_args[key]!r}")
    if "cases" in base_args and "cases" in new_args and base_args["cases"] != new_args["cases"] and not notes:
        notes.append("the runs have different case lists (run.json)")
    if len(diff.only_base) or len(diff.only_new):
        notes.append(f"partial overlap: {diff.matched} row(s) matched, {len(diff.only_base)} only in base, "
                     f"{len(diff.only_new)} only in new" + (" (missing rows regress: --require-all)"
                                                            if diff.require_all and len(diff.only_base) else ""))
    return notes


def markdown(diff: RunDiff, base: str, new: str) -> str:
    """compare.md: the kernels-changed statement first, then the verdict, notes and one section per kind."""
    parts = [f"# refconv compare\n\nbase: `{base}`  \nnew: `{new}`\n"]
    lines = [H.md_inline(line.replace(" -> ", " → ")) for line in hardware_lines(diff)]
    parts += [f"- **{line}**" if i == 0 else f"- {line}" for i, line in enumerate(lines)]
    parts += [f"\n**{verdict(diff)}**\n"]
    parts += [f"- note: {note}" for note in diff.notes]
    for _, title, table in _sections(diff):
        parts += [f"\n## {title} ({len(table)})\n", H.md_table(table, index=False, cap=100)]
    return "\n".join(parts)


def html_page(diff: RunDiff, base: str, new: str) -> str:
    """compare.html: the kernels-changed statement first, then the verdict, notes and the sections."""
    cls = "bad" if diff.regressed else "good"
    kernels = "".join(f"<p><b>{H.esc(line)}</b></p>" if i == 0 else f'<p class="small">{H.esc(line)}</p>'
                      for i, line in enumerate(hardware_lines(diff)))
    intro = (f"<p>base: <code>{H.esc(base)}</code><br>new: <code>{H.esc(new)}</code></p>{kernels}"
             f'<p class="{cls}">{H.esc(verdict(diff))}</p>'
             + "".join(f"<p>note: {H.esc(note)}</p>" for note in diff.notes))
    sections = [(a, f"{t} ({len(df)})", H.table(df, index=False, cap=300)) for a, t, df in _sections(diff)]
    return H.page("refconv compare", sections, intro)


def write_comparison(
    base_dir: str | Path, new_dir: str | Path, out_dir: str | Path | None = None, **thresholds: Any
) -> tuple[RunDiff, list[Path]]:
    """Load two run directories, compare them, and write compare.md and compare.html (into new_dir by default)."""
    base_path, new_path = run_path(base_dir), run_path(new_dir)
    base, new = load_run(base_path), load_run(new_path)
    diff = compare_runs(base, new, **thresholds)
    if diff.matched == 0:
        raise UsageError(f"the runs share no row, nothing to compare: "
                         f"{describe_runs(base, new, str(base_path), str(new_path))}")
    diff.notes = run_notes(read_json(base_path, "run.json"), read_json(new_path, "run.json"), diff)
    out = Path(out_dir) if out_dir is not None else new_path
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text(out / "compare.md", markdown(diff, str(base_path), str(new_path))),
             write_text(out / "compare.html", html_page(diff, str(base_path), str(new_path)))]
    return diff, paths
