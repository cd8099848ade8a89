"""Plots of a run as base64 PNG strings (matplotlib's Agg canvas, no pyplot state, no display needed).

Each plot samples at most MAX_POINTS rows per adapter, so a 20,000-row run renders in seconds and
the HTML stays small.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from refconv.report.summary import _timed, log_ratio

MAX_POINTS = 600
DPI = 90
MARKERS = "os^Dv<>ph*"


def _figure(width: float = 9.0, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="tight")  # constrained layout cost 1.4 s of 3.8


def to_base64(fig: Any) -> str:
    """The figure as a base64 PNG (what an <img src="data:image/png;base64,..."> embeds)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def sample(df: pd.DataFrame, n: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """At most n rows per adapter, drawn with a fixed seed so a re-render gives the same picture."""
    parts = [g if len(g) <= n else g.sample(n, random_state=seed) for _, g in df.groupby("adapter", sort=True)]
    return pd.concat(parts) if parts else df


def _tolerance_lines(ax: Any, df: pd.DataFrame, horizontal: bool = True) -> None:
    """One dashed line per group of dtypes sharing a C (16-bit dtypes get a per-case C: drawn at its lowest)."""
    per_dtype = df.groupby("dtype")["tolerance_c"].agg(["min", "max"]).dropna()
    groups: dict[tuple[float, float], list[str]] = {}
    for dtype, (low, high) in per_dtype.iterrows():
        groups.setdefault((float(f"{low:.2g}"), float(f"{high:.2g}")), []).append(str(dtype))
    for i, ((low, high), dtypes) in enumerate(sorted(groups.items())):
        c = f"C={low:g}" if low == high else f"C={low:g}…{high:g} per case"
        style = {"color": "crimson", "linestyle": ("--", ":", "-.")[i % 3], "linewidth": 1,
                 "label": f"tolerance {c} ({', '.join(dtypes)})"}
        if horizontal:
            ax.axhline(low, **style)
        else:
            ax.axvline(low, **style)


def ratio_distribution(df: pd.DataFrame) -> str | None:
    """bound_ratio per adapter on a log axis (jittered points over a box), with the tolerance line(s)."""
    rows = df[df["bound_ratio"].notna()]
    if rows.empty:
        return None
    adapters = sorted(rows["adapter"].unique())
    fig = _figure(9.0, 1.2 + 0.45 * max(len(adapters), 4))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    data = []
    for i, adapter in enumerate(adapters):
        values = log_ratio(rows.loc[rows["adapter"] == adapter, "bound_ratio"])
        data.append(values)
        shown = values if len(values) <= MAX_POINTS else rng.choice(values, MAX_POINTS, replace=False)
        ax.scatter(shown, i + rng.uniform(-0.25, 0.25, len(shown)), s=6, alpha=0.35, color=f"C{i % 10}")
    ax.boxplot(data, positions=range(len(adapters)), orientation="horizontal", widths=0.6, showfliers=False,
               medianprops={"color": "black"})
    ax.set_yticks(range(len(adapters)), [_short(a) for a in adapters])
    ax.set_xscale("log")
    _tolerance_lines(ax, rows, horizontal=False)
    ax.set_xlabel("bound_ratio = max |err| / (eps * (|x| conv |w| + |b|))   (0 drawn at 1e-3)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    return to_base64(fig)


def ratio_vs_k(df: pd.DataFrame) -> str | None:
    """bound_ratio against the reduction length K, log-log, one marker per adapter."""
    rows = sample(df[df["bound_ratio"].notna() & (df["K"] > 0)])
    if rows.empty:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for i, (adapter, g) in enumerate(rows.groupby("adapter", sort=True)):
        ax.scatter(g["K"], log_ratio(g["bound_ratio"]), s=10, alpha=0.5, marker=MARKERS[i % len(MARKERS)],
                   label=_short(str(adapter)), color=f"C{i % 10}")
    _tolerance_lines(ax, rows)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("reduction length K = kh * kw * c_in / groups")
    ax.set_ylabel("bound_ratio")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(True, alpha=0.3)
    return to_base64(fig)


def time_vs_flops(df: pd.DataFrame) -> str | None:
    """Median time against FLOPs per adapter (log-log), with the min-to-median spread as error bars."""
    timed = sample(_timed(df))
    if timed.empty:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for i, (adapter, g) in enumerate(timed.groupby("adapter", sort=True)):
        color = f"C{i % 10}"
        # One LineCollection for all bars: errorbar() per point is slow at thousands of points.
        ax.vlines(g["flops"], g["time_min_ms"].fillna(g["time_median_ms"]), g["time_median_ms"], colors=color,
                  linewidth=0.6, alpha=0.5)
        ax.scatter(g["flops"], g["time_median_ms"], s=8, marker=MARKERS[i % len(MARKERS)], alpha=0.5, color=color,
                   label=_short(str(adapter)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs (2 x multiply-adds)")
    ax.set_ylabel("median time [ms]  (bar down to min)")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(True, alpha=0.3)
    return to_base64(fig)


def gflops_per_adapter(df: pd.DataFrame) -> str | None:
    """GFLOP/s per adapter: box of the cases' median-time throughput, log axis."""
    timed = _timed(df)
    if timed.empty:
        return None
    adapters = sorted(timed["adapter"].unique())
    fig = _figure(9.0, 0.9 + 0.45 * max(len(adapters), 3))
    ax = fig.add_subplot()
    data = [timed.loc[timed["adapter"] == a, "gflops_calc"].to_numpy() for a in adapters]
    ax.boxplot(data, positions=range(len(adapters)), orientation="horizontal", widths=0.6,
               medianprops={"color": "black"}, flierprops={"markersize": 2, "alpha": 0.4})
    ax.set_yticks(range(len(adapters)), [_short(a) for a in adapters])
    ax.set_xscale("log")
    ax.set_xlabel("GFLOP/s (FLOPs / median time)")
    ax.grid(True, axis="x", alpha=0.3)
    return to_base64(fig)


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
