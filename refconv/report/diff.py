"""Compare two runs row by row, matched by (case_id, adapter label; the label carries the variant).

What counts as a regression (the exit code of `refconv compare` gates on it):
- an outcome change from pass to anything else (an adapter that starts declining a case it passed counts too);
- error growth: new bound_ratio > factor * max(base bound_ratio, 1), the floor of one rounding unit
  keeping exact-versus-one-ulp changes quiet;
- a timing regression: new median > time_factor * base median and slower by more than time_min_ms.
Other outcome changes (fixes, one failure turning into another) and cases present in one run only are
listed but do not gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from refconv.report import html as H
from refconv.report.load import load_run, run_path
from refconv.report.render import write_text
from refconv.thresholds import ERROR_FACTOR, TIME_FACTOR, TIME_MIN_MS

KEY = ["case_id", "adapter"]


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

    @property
    def regressions(self) -> int:
        """(case, adapter) pairs that gate: pass -> non-pass, error growth or a timing regression."""
        gating = [self.outcome_changes[self.outcome_changes["regression"]], self.error_growth, self.timing_regressions]
        return len(set().union(*(zip(t["case_id"], t["adapter"], strict=True) for t in gating)))

    @property
    def regressed(self) -> bool:
        return self.regressions > 0


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    # A resumed run may hold a pair twice; the last row written is the one that counts.
    return df.drop_duplicates(KEY, keep="last")


def compare_runs(
    base: pd.DataFrame, new: pd.DataFrame, error_factor: float = ERROR_FACTOR, time_factor: float = TIME_FACTOR,
    time_min_ms: float = TIME_MIN_MS,
) -> RunDiff:
    """Match rows of two loaded runs by (case_id, adapter) and collect what changed."""
    base, new = _dedupe(base), _dedupe(new)
    cols = KEY + ["outcome", "bound_ratio", "time_median_ms", "known_deviation", "error"]
    merged = base[cols].merge(new[cols], on=KEY, how="outer", suffixes=("_base", "_new"), indicator=True)
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
    only_base = merged[merged["_merge"] == "left_only"][KEY + ["outcome_base"]]
    only_new = merged[merged["_merge"] == "right_only"][KEY + ["outcome_new"]]
    change_cols = KEY + ["outcome_base", "outcome_new", "regression", "known_deviation_base", "known_deviation_new",
                         "error_new"]
    return RunDiff(
        outcome_changes=changes[change_cols].reset_index(drop=True),
        error_growth=grew[KEY + ["outcome_base", "outcome_new", "bound_ratio_base", "bound_ratio_new", "factor"]]
        .sort_values("factor", ascending=False).reset_index(drop=True),
        timing_regressions=slow[KEY + ["time_median_ms_base", "time_median_ms_new", "factor"]]
        .sort_values("factor", ascending=False).reset_index(drop=True),
        only_base=only_base.reset_index(drop=True), only_new=only_new.reset_index(drop=True),
        matched=len(both),
        settings={"error_factor": error_factor, "time_factor": time_factor, "time_min_ms": time_min_ms},
    )


def _sections(diff: RunDiff) -> list[tuple[str, str, pd.DataFrame]]:
    s = diff.settings
    return [
        ("changes", "Outcome changes (pass → other is a regression)", diff.outcome_changes),
        ("errors", f"Error growth (new bound_ratio > {s['error_factor']:g} × max(base, 1))", diff.error_growth),
        ("timings", f"Timing regressions (median > {s['time_factor']:g}× and > {s['time_min_ms']:g} ms slower)",
         diff.timing_regressions),
        ("only-base", "Only in the base run", diff.only_base),
        ("only-new", "Only in the new run", diff.only_new),
    ]


def verdict(diff: RunDiff) -> str:
    """One line: REGRESSED or OK with the counts."""
    head = "REGRESSED" if diff.regressed else "OK"
    return (f"{head}: {diff.regressions} regression(s) over {diff.matched} matched rows; "
            f"{len(diff.outcome_changes)} outcome change(s), {len(diff.error_growth)} error growth, "
            f"{len(diff.timing_regressions)} timing regression(s), {len(diff.only_base)} only in base, "
            f"{len(diff.only_new)} only in new")


def markdown(diff: RunDiff, base: str, new: str) -> str:
    parts = [f"# refconv compare\n\nbase: `{base}`  \nnew: `{new}`\n\n**{verdict(diff)}**\n"]
    for _, title, table in _sections(diff):
        parts += [f"\n## {title} ({len(table)})\n", H.md_table(table, index=False, cap=100)]
    return "\n".join(parts)


def html_page(diff: RunDiff, base: str, new: str) -> str:
    cls = "bad" if diff.regressed else "good"
    intro = (f"<p>base: <code>{H.esc(base)}</code><br>new: <code>{H.esc(new)}</code></p>"
             f'<p class="{cls}">{H.esc(verdict(diff))}</p>')
    sections = [(a, f"{t} ({len(df)})", H.table(df, index=False, cap=300)) for a, t, df in _sections(diff)]
    return H.page("refconv compare", sections, intro)


def write_comparison(
    base_dir: str | Path, new_dir: str | Path, out_dir: str | Path | None = None, **thresholds: float
) -> tuple[RunDiff, list[Path]]:
    """Load two run directories, compare them, and write compare.md and compare.html (into new_dir by default)."""
    base_path, new_path = run_path(base_dir), run_path(new_dir)
    diff = compare_runs(load_run(base_path), load_run(new_path), **thresholds)
    out = Path(out_dir) if out_dir is not None else new_path
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text(out / "compare.md", markdown(diff, str(base_path), str(new_path))),
             write_text(out / "compare.html", html_page(diff, str(base_path), str(new_path)))]
    return diff, paths
