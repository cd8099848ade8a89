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
    base, new = _dedupe(base, key), _dedupe(new, key)
    cols = key + ["outcome", "bound_ratio", "time_median_ms", "known_deviation", "error"]
    cols += [c for c in ("time_min_ms",) if c in base.columns and c in new.columns]  # the speed judgement's input
    merged = base[cols].merge(new[cols], on=key, how="outer", suffixes=("_base", "_new"), indicator=True)
    both = merged[merged["_merge"] == "both"]
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
    return RunDiff(
        outcome_changes=changes[change_cols].reset_index(drop=True),
        error_growth=grew[key + ["outcome_base", "outcome_new", "bound_ratio_base", "bound_ratio_new", "factor"]]
        .sort_values("factor", ascending=False).reset_index(drop=True),
        timing_regressions=slow[key + ["time_median_ms_base", "time_median_ms_new", "factor"]]
        .sort_values("factor", ascending=False).reset_index(drop=True),
        only_base=only_base.reset_index(drop=True), only_new=only_new.reset_index(drop=True),
        matched=len(both),
        settings={"error_factor": error_factor, "time_factor": time_factor, "time_min_ms": time_min_ms},
        key=key, require_all=require_all, speed=speed_table(both, time_factor),
    )


def _sections(diff: RunDiff) -> list[tuple[str, str, pd.DataFrame]]:
    s = diff.settings
    return [
        ("changes", "Outcome changes (pass → other is a regression)", diff.outcome_changes),
        ("errors", f"Error growth (new bound_ratio > {s['error_factor']:g} × max(base, 1))", diff.error_growth),
        ("speed", f"Speed per adapter (geometric mean of new/base minimum time over cases, {CONFIDENCE:.0%} "
                  f"bootstrap interval; regresses when its lower end > {s['time_factor']:g})", diff.speed),
        ("timings", f"Per-row timing changes (median > {s['time_factor']:g}× and > {s['time_min_ms']:g} ms slower; "
                    "listed, never gating alone)", diff.timing_regressions),
        ("only-base", "Only in the base run" + (" (missing from the new run: regressions, --require-all)"
                                                if diff.require_all else ""), diff.only_base),
        ("only-new", "Only in the new run", diff.only_new),
    ]


def verdict(diff: RunDiff) -> str:
    """One line: REGRESSED or OK with the counts."""
    head = "REGRESSED" if diff.regressed else "OK"
    return (f"{head}: {diff.regressions} regression(s) over {diff.matched} matched rows; "
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
    parts = [f"# refconv compare\n\nbase: `{base}`  \nnew: `{new}`\n\n**{verdict(diff)}**\n"]
    parts += [f"- note: {note}" for note in diff.notes]
    for _, title, table in _sections(diff):
        parts += [f"\n## {title} ({len(table)})\n", H.md_table(table, index=False, cap=100)]
    return "\n".join(parts)


def html_page(diff: RunDiff, base: str, new: str) -> str:
    cls = "bad" if diff.regressed else "good"
    intro = (f"<p>base: <code>{H.esc(base)}</code><br>new: <code>{H.esc(new)}</code></p>"
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
