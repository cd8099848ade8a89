"""Plots of a run as inline SVG strings, drawn by refconv.report.svg (no matplotlib on the report path).

Each plot samples at most MAX_POINTS rows per adapter, with a fixed seed, so a 20,000-row run renders in
milliseconds, the HTML stays small, and a re-render gives the same bytes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from refconv.report import svg
from refconv.report.summary import _timed, log_ratio

MAX_POINTS = 600
DPI = 90  # the heights below are in inches, as when these were matplotlib figures
TOLERANCE = "#dc143c"  # crimson
# The plots copy only these columns: filtering and sampling all of a run's columns took half their time.
RATIO_COLUMNS = ["adapter", "dtype", "K", "bound_ratio", "tolerance_c"]
TIME_COLUMNS = ["adapter", "flops", "time_median_ms", "time_min_ms"]


def sample(df: pd.DataFrame, n: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """At most n rows per adapter, drawn with a fixed seed so a re-render gives the same picture."""
    parts = [g if len(g) <= n else g.sample(n, random_state=seed) for _, g in df.groupby("adapter", sort=True)]
    return pd.concat(parts) if parts else df


def _ratios(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with a bound_ratio, only the columns the ratio plots use (a run's frame has ~150)."""
    rows = df[RATIO_COLUMNS]
    return rows[rows["bound_ratio"].notna()]


def _tolerances(df: pd.DataFrame) -> list[tuple[float, str]]:
    """(C, legend label) per group of dtypes sharing a C (16-bit dtypes get a per-case C: drawn at its lowest)."""
    per_dtype = df.groupby("dtype")["tolerance_c"].agg(["min", "max"]).dropna()
    groups: dict[tuple[float, float], list[str]] = {}
    for dtype, (low, high) in per_dtype.iterrows():
        groups.setdefault((float(f"{low:.2g}"), float(f"{high:.2g}")), []).append(str(dtype))
    lines = []
    for (low, high), dtypes in sorted(groups.items()):
        c = f"C={low:g}" if low == high else f"C={low:g}…{high:g} per case"
        lines.append((low, f"tolerance {c} ({', '.join(dtypes)})"))
    return lines


def _draw_tolerances(chart: svg.Chart, lines: list[tuple[float, str]], axis: str) -> None:
    for i, (value, label) in enumerate(lines):
        chart.reference(value, axis, TOLERANCE, svg.DASHES[i % len(svg.DASHES)], label)


def _style(i: int) -> tuple[str, str]:
    """The i-th adapter's colour and marker."""
    return svg.PALETTE[i % len(svg.PALETTE)], svg.MARKERS[i % len(svg.MARKERS)]


def _height(inches: float) -> int:
    return round(inches * DPI)


def ratio_distribution(df: pd.DataFrame) -> str | None:
    """bound_ratio per adapter on a log axis (jittered points over a box), with the tolerance line(s)."""
    rows = _ratios(df)
    if rows.empty:
        return None
    adapters = sorted(rows["adapter"].unique())
    values = [log_ratio(rows.loc[rows["adapter"] == a, "bound_ratio"]) for a in adapters]
    lines = _tolerances(rows)
    x = svg.log_scale(*values, [c for c, _ in lines])
    if x is None:
        return None
    chart = svg.Chart(x, svg.category_scale([_short(a) for a in adapters]), _height(1.2 + 0.45 * max(len(adapters), 4)),
                      xlabel="bound_ratio = max |err| / (eps * (|x| conv |w| + |b|))   (0 drawn at 1e-3)", grid="x")
    rng = np.random.default_rng(0)
    for i, (adapter, v) in enumerate(zip(adapters, values, strict=True)):
        shown = v if len(v) <= MAX_POINTS else rng.choice(v, MAX_POINTS, replace=False)
        chart.points(shown, i + rng.uniform(-0.25, 0.25, len(shown)), _style(i)[0], r=1.6, opacity=0.35,
                     title=f"{adapter} ({len(v)} rows)")
    for i, (adapter, v) in enumerate(zip(adapters, values, strict=True)):
        stats = svg.box_stats(v)
        if stats is not None:
            chart.box(stats, i, title=_box_title(adapter, stats, len(v)))
    _draw_tolerances(chart, lines, "x")
    return chart.svg()


def ratio_vs_k(df: pd.DataFrame) -> str | None:
    """bound_ratio against the reduction length K, log-log, one marker per adapter."""
    rows = _ratios(df)
    rows = sample(rows[rows["K"] > 0])
    if rows.empty:
        return None
    lines = _tolerances(rows)
    groups = [(str(a), g["K"].to_numpy(dtype=float), log_ratio(g["bound_ratio"]))
              for a, g in rows.groupby("adapter", sort=True)]
    x = svg.log_scale(*(k for _, k, _ in groups))
    y = svg.log_scale(*(r for _, _, r in groups), [c for c, _ in lines])
    if x is None or y is None:
        return None
    chart = svg.Chart(x, y, _height(4.2), xlabel="reduction length K = kh * kw * c_in / groups", ylabel="bound_ratio")
    for i, (adapter, k, ratio) in enumerate(groups):
        colour, marker = _style(i)
        chart.points(k, ratio, colour, marker, r=2.1, title=adapter, label=_short(adapter))
    _draw_tolerances(chart, lines, "y")
    return chart.svg()


def time_vs_flops(df: pd.DataFrame) -> str | None:
    """Median time against FLOPs per adapter (log-log), with a bar from each median down to its min."""
    timed = sample(_timed(df[TIME_COLUMNS]))
    if timed.empty:
        return None
    groups = [(str(a), g["flops"].to_numpy(dtype=float), g["time_median_ms"].to_numpy(dtype=float),
               g["time_min_ms"].fillna(g["time_median_ms"]).to_numpy(dtype=float))
              for a, g in timed.groupby("adapter", sort=True)]
    x = svg.log_scale(*(f for _, f, _, _ in groups))
    y = svg.log_scale(*(t for _, _, t, _ in groups), *(m for _, _, _, m in groups))
    if x is None or y is None:
        return None
    chart = svg.Chart(x, y, _height(4.2), xlabel="FLOPs (2 x multiply-adds)",
                      ylabel="median time [ms]  (bar down to min)")
    for i, (adapter, flops, median, low) in enumerate(groups):
        colour, marker = _style(i)
        chart.bars(flops, low, median, colour, title=f"{adapter}: min to median")
        chart.points(flops, median, colour, marker, r=1.9, title=adapter, label=_short(adapter))
    return chart.svg()


def gflops_per_adapter(df: pd.DataFrame) -> str | None:
    """GFLOP/s per adapter: box of the cases' median-time throughput, log axis."""
    timed = _timed(df[TIME_COLUMNS])
    if timed.empty:
        return None
    adapters = sorted(timed["adapter"].unique())
    data = [timed.loc[timed["adapter"] == a, "gflops_calc"].to_numpy(dtype=float) for a in adapters]
    x = svg.log_scale(*data)
    if x is None:
        return None
    chart = svg.Chart(x, svg.category_scale([_short(a) for a in adapters]), _height(0.9 + 0.45 * max(len(adapters), 3)),
                      xlabel="GFLOP/s (FLOPs / median time)", grid="x")
    for i, (adapter, v) in enumerate(zip(adapters, data, strict=True)):
        stats = svg.box_stats(v[v > 0])  # the log axis has no place for 0
        if stats is not None:
            chart.box(stats, i, title=_box_title(adapter, stats, len(v)), fliers=MAX_POINTS)
    return chart.svg()


def _box_title(adapter: str, stats: svg.BoxStats, n: int) -> str:
    return f"{adapter}: median {stats.median:.3g}, quartiles {stats.q1:.3g} to {stats.q3:.3g} ({n} rows)"


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
