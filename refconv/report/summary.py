"""Summaries of a run as plain DataFrames, for notebooks and for the rendered reports.

>>> from refconv.report import load_run, outcomes, worst, by  # doctest: +SKIP
>>> df = load_run("reports/20261126-101500-ab12")             # doctest: +SKIP
>>> outcomes(df); worst(df, 10); by(df, "padding")            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from refconv import deviations as _deviations
from refconv.compare import OUTCOMES

# Outcomes that are findings: the adapter computed something other than the reference, or failed.
FINDING_OUTCOMES = tuple(o for o in OUTCOMES if o not in ("pass", "unsupported"))
# Names `by` accepts besides any column: the pairs are derived by load.add_derived.
BY_ALIASES = {"strides": "stride", "dilations": "dilation", "kind": "padding"}


def outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """Adapter x outcome counts, with total, and pass_rate = pass / (total - unsupported).

    Unsupported cases were declined up front, so they count neither for nor against the pass rate.
    """
    table = pd.crosstab(df["adapter"], df["outcome"])
    present = set(table.columns) | {"pass", "unsupported"}
    columns = [o for o in OUTCOMES if o in present] + sorted(present - set(OUTCOMES))
    table = table.reindex(columns=columns, fill_value=0)
    table["total"] = table[columns].sum(axis=1)
    ran = table["total"] - table["unsupported"]
    table["pass_rate"] = (table["pass"] / ran.where(ran > 0)).round(4)
    table.columns.name = None
    return table


def multi_op(df: pd.DataFrame) -> bool:
    """Do the rows check more than one op (conv2d and the training ops, docs/training.md)?"""
    return "op" in df.columns and df["op"].nunique() > 1


def outcomes_by_op(df: pd.DataFrame) -> pd.DataFrame:
    """outcomes() per op: index (op, adapter), ops in refconv.spec.OPS order."""
    from refconv.spec import OPS

    column = df["op"] if "op" in df.columns else pd.Series("conv2d", index=df.index)
    parts = {op: outcomes(df[column == op]) for op in OPS if (column == op).any()}
    table = pd.concat(parts, names=["op", "adapter"]).fillna(0)
    return table.astype({c: int for c in table.columns if c != "pass_rate"})


def findings(df: pd.DataFrame) -> pd.DataFrame:
    """Every row whose outcome is a finding (not pass, not unsupported), worst first within adapter and outcome.

    Known deviations stay in, labelled by their id in `known_deviation`.
    """
    rows = df[df["outcome"].isin(FINDING_OUTCOMES) | ~df["outcome"].isin(OUTCOMES)].copy()
    rank = {o: i for i, o in enumerate(OUTCOMES)}
    rows["_rank"] = rows["outcome"].map(rank).fillna(len(OUTCOMES))
    rows = rows.sort_values(["adapter", "_rank", "bound_ratio", "case_id"], ascending=[True, True, False, True],
                            na_position="last")
    return rows.drop(columns="_rank")


def worst(df: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The n rows with the largest bound_ratio (rows that produced a comparable output)."""
    cols = ["case_id", "adapter", "outcome", "dtype", "K", "bound_ratio", "tolerance_c", "max_abs_err",
            "max_rel_err", "max_ulp", "mismatched", "n_elements", "known_deviation"]
    rows = df[df["bound_ratio"].notna()]
    return rows.nlargest(n, "bound_ratio")[cols].reset_index(drop=True)


def by(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per value of `column` (padding, stride, dilation, groups, dtype, ...) and adapter: rows, findings, max ratio.

    Columns are a MultiIndex (statistic, adapter): rows, findings (non-pass, non-unsupported) and the
    max and median bound_ratio.
    """
    column = BY_ALIASES.get(column, column)
    if column not in df.columns:
        raise KeyError(f"no column {column!r}; try padding, stride, dilation, groups, dtype, layout, K")
    work = df[list(dict.fromkeys([column, "adapter", "outcome", "bound_ratio"]))]  # not all ~70 columns, 8 times
    work = work.assign(_finding=work["outcome"].isin(FINDING_OUTCOMES).astype(int))
    grouped = work.groupby([column, "adapter"], dropna=False, observed=True)
    stats = grouped.agg(rows=("outcome", "size"), findings=("_finding", "sum"),
                        max_bound_ratio=("bound_ratio", "max"), median_bound_ratio=("bound_ratio", "median"))
    table = pd.DataFrame(stats.unstack("adapter"))
    table.columns = table.columns.set_names(["statistic", "adapter"])
    return table


def timings(df: pd.DataFrame) -> pd.DataFrame:
    """Per adapter: timed rows, median time, GFLOP/s min/median/max, and the min-to-median spread of repeats.

    Rows without a time (unsupported, raised, crashed, empty outputs) are left out; spread is the
    median over cases of time_median_ms / time_min_ms, 1.0 meaning perfectly steady repeats.
    """
    timed = _timed(df)
    if timed.empty:
        return pd.DataFrame(columns=["timed", "median_ms", "gflops_min", "gflops_median", "gflops_max", "spread"])
    groups = timed.groupby("adapter")
    table = pd.DataFrame({
        "timed": groups.size(),
        "median_ms": groups["time_median_ms"].median(),
        "gflops_min": groups["gflops_calc"].min(),
        "gflops_median": groups["gflops_calc"].median(),
        "gflops_max": groups["gflops_calc"].max(),
        "spread": groups["spread"].median(),
    })
    return table


def _timed(df: pd.DataFrame) -> pd.DataFrame:
    t = df[(df["time_median_ms"] > 0) & (df["flops"] > 0)].copy()
    # Recompute from the stored FLOPs and median so old and new runs agree on the definition.
    t["gflops_calc"] = t["flops"] / (t["time_median_ms"] * 1e6)
    t["spread"] = t["time_median_ms"] / t["time_min_ms"].where(t["time_min_ms"] > 0)
    return t


def capability(df: pd.DataFrame) -> pd.DataFrame:
    """Feature x adapter: 'yes', 'no' or 'k/n' (cases not declined), derived from the unsupported rows.

    A feature is a value of a case dimension the run exercised (dtype=bfloat16, layout=NCHW, groups>1,
    dilation>1, padding=EXPLICIT, ...). Only features that some adapter declined at least once are listed,
    plus the dtypes and layouts, so the matrix stays short.
    """
    features = _features(df)
    if not features:
        return pd.DataFrame()
    adapters = sorted(df["adapter"].unique())
    declined = df["outcome"] == "unsupported"
    table: dict[str, dict[str, str]] = {}
    for adapter in adapters:
        mine = df["adapter"] == adapter
        # A feature the adapter declines every time explains those rows; other features are then judged
        # on the remaining rows, so float32 does not look partial because channels_last float32 cases were declined.
        never = [m for m in features.values() if (m & mine).any() and not (m & mine & ~declined).any()]
        explained = pd.concat(never, axis=1).any(axis=1) if never else pd.Series(False, index=df.index)
        for name, mask in features.items():
            here = mask & mine
            if here.any() and not (here & ~declined).any():
                cell = "no"
            else:
                rest = here & ~explained
                total, ok = int(rest.sum()), int((rest & ~declined).sum())
                cell = "-" if not here.any() else "yes" if ok == total else f"{ok}/{total}"
            table.setdefault(name, {})[adapter] = cell
    out = pd.DataFrame.from_dict(table, orient="index")[adapters]
    out.index.name = "feature"
    keep = [i for i in out.index if i.startswith(("dtype=", "layout=")) or (out.loc[i] != "yes").any()]
    return out.loc[keep]


def _features(df: pd.DataFrame) -> dict[str, pd.Series]:
    features: dict[str, pd.Series] = {}
    for column in ("dtype", "layout", "padding"):
        for value in sorted(df[column].dropna().unique()):
            features[f"{column}={value}"] = df[column] == value
    checks = {
        "groups>1": df["groups"] > 1,
        "depthwise": (df["groups"] > 1) & (df["groups"] == df["c_in"]),
        "dilation>1": (df["dh"] > 1) | (df["dw"] > 1),
        "stride>1": (df["sh"] > 1) | (df["sw"] > 1),
        "unequal strides": df["sh"] != df["sw"],
        "activation=relu": df["activation"] == "relu",
        "no bias": ~df["bias"].astype(bool),
        "empty output": df["empty_output"].astype(bool),
        "batch>1": df["n"] > 1,
    }
    features.update({k: v for k, v in checks.items() if v.any()})
    return features


def unsupported_reasons(df: pd.DataFrame) -> pd.DataFrame:
    """Per adapter, each distinct reason it gave for declining a case, with the count and one example case."""
    rows = df[df["outcome"] == "unsupported"]
    if rows.empty:
        return pd.DataFrame(columns=["adapter", "reason", "cases", "example"])
    grouped = rows.groupby(["adapter", "error"], sort=True)
    out = grouped.agg(cases=("case_id", "size"), example=("case_id", "first")).reset_index()
    return out.rename(columns={"error": "reason"}).sort_values(["adapter", "cases"], ascending=[True, False])


def deviations(df: pd.DataFrame) -> pd.DataFrame:
    """The known deviations that applied in this run: id, adapter, outcomes, rows, reason and upstream link."""
    rows = df[df["known_deviation"] != ""]
    cols = ["deviation", "adapter", "outcomes", "rows", "reason", "upstream"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    entries = {d.id: d for d in _deviations.load()}
    out = []
    for (dev_id, adapter), group in rows.groupby(["known_deviation", "adapter"], sort=True):
        entry = entries.get(str(dev_id))
        out.append({
            "deviation": dev_id, "adapter": adapter,
            "outcomes": ", ".join(f"{o} {n}" for o, n in group["outcome"].value_counts().items()),
            "rows": len(group),
            "reason": entry.reason if entry else "(not in refconv/data/known_deviations.toml)",
            "upstream": entry.upstream if entry else "",
        })
    return pd.DataFrame(out, columns=cols)


STATUS_COLUMNS = ["deviation", "status", "adapter", "outcomes", "rows", "detail", "hardware", "measured", "reason",
                  "upstream"]


def deviation_status(entry: _deviations.Deviation, df: pd.DataFrame,
                     records: list[dict[str, Any]] | None = None) -> _deviations.EntryStatus:
    """refconv.deviations.classify over the run's rows of the entry's adapters (and the rows it explains); rows
    without isa and cpu_features (an older run) are unknown hardware, so never make it 'not applicable here'."""
    records = _status_records(df, (entry,)) if records is None else records
    covered = {label for label in {r["adapter"] for r in records} if entry.covers(label)}  # each label once
    mine = [r for r in records if r["adapter"] in covered or r["known_deviation"] == entry.id]
    found = _deviations.classify(entry, mine)
    if found.status == _deviations.NOT_APPLICABLE and not any(r["isa"] or r["cpu_features"] for r in mine):
        return dataclasses.replace(found, status=_deviations.NOT_EXERCISED)
    return found


def _status_records(df: pd.DataFrame, entries: Iterable[_deviations.Deviation]) -> list[dict[str, Any]]:
    """The rows as dicts of the columns a classification reads (the case, the outcome, the entries' `when` keys)."""
    from refconv.rows import CASE_COLUMNS

    wanted = {"adapter", "relation", "outcome", "known_deviation", "isa", "cpu_features", *CASE_COLUMNS}
    wanted |= {key for entry in entries for key in entry.when}
    columns = [c for c in df.columns if c in wanted]
    return [{str(k): v for k, v in r.items()} for r in df[columns].astype(object).to_dict("records")]


def deviation_statuses(df: pd.DataFrame, entries: tuple[_deviations.Deviation, ...] | None = None) -> pd.DataFrame:
    """Every known deviation of the run's adapters with its status here: applied ones per adapter, then the rest."""
    labels = sorted(df["adapter"].astype(str).unique())
    by_id = {d.id: d for d in (_deviations.load() if entries is None else entries)}
    relevant = [d for d in by_id.values() if any(d.covers(label) for label in labels)]
    records = _status_records(df, relevant)
    applied = deviations(df).assign(status=_deviations.APPLIED)
    out: list[dict[str, Any]] = []
    for r in applied.to_dict("records"):
        entry = by_id.get(str(r["deviation"]))
        detail = deviation_status(entry, df, records).describe(entry) if entry else ""
        out.append({**{str(k): v for k, v in r.items()}, "detail": detail, **_entry_columns(entry)})
    for entry in relevant:
        if entry.id in set(applied["deviation"]):
            continue
        found = deviation_status(entry, df, records)
        out.append({"deviation": entry.id, "status": found.status,
                    "adapter": ", ".join(label for label in labels if entry.covers(label)),
                    "outcomes": ", ".join(entry.outcomes), "rows": 0, "detail": found.describe(entry),
                    "reason": entry.reason, "upstream": entry.upstream, **_entry_columns(entry)})
    table = pd.DataFrame(out, columns=STATUS_COLUMNS)
    order = {s: i for i, s in enumerate(_deviations.STATUSES)}
    rank = table["status"].map(order).fillna(len(order))
    return table.assign(_rank=rank).sort_values(["_rank", "deviation"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def _entry_columns(entry: _deviations.Deviation | None) -> dict[str, str]:
    """An entry's hardware conditions in words ('any' without) and where it was measured."""
    if entry is None:
        return {"hardware": "", "measured": ""}
    return {"hardware": entry.describe_hardware() or "any", "measured": entry.measured}


def kernels(df: pd.DataFrame) -> pd.Series:
    """Per adapter, the distinct kernels its rows ran (isa), e.g. 'onednn:avx512_core_amx, eigen'."""
    return df.groupby("adapter")["isa"].agg(lambda s: ", ".join(sorted(set(s.astype(str)) - {""})))


def cpu_features(df: pd.DataFrame) -> list[str]:
    """The distinct CPU feature texts of the run's rows (one on a single machine)."""
    return sorted(set(df["cpu_features"].astype(str)) - {""}) if "cpu_features" in df.columns else []


def same_geometry(df: pd.DataFrame) -> pd.DataFrame:
    """Distinct SAME geometries per axis: input, kernel, stride, dilation, out, pads before/after, and findings.

    `asymmetric` marks an odd padding total, where frameworks that pad symmetrically must pad first.
    """
    same = df[df["padding"] == "SAME"]
    cols = ["axis", "in", "k", "s", "d", "out", "before", "after", "asymmetric", "rows", "findings"]
    if same.empty:
        return pd.DataFrame(columns=cols)
    is_finding = same["outcome"].isin(FINDING_OUTCOMES)
    parts = []
    for name, size, k, s, d, out, before, after in (
        ("rows", "h", "kh", "sh", "dh", "out_h", "pad_top", "pad_bottom"),
        ("cols", "w", "kw", "sw", "dw", "out_w", "pad_left", "pad_right"),
    ):
        part = pd.DataFrame({
            "axis": name, "in": same[size], "k": same[k], "s": same[s], "d": same[d], "out": same[out],
            "before": same[before], "after": same[after], "findings": is_finding.astype(int), "rows": 1,
        })
        parts.append(part)
    allp = pd.concat(parts, ignore_index=True)
    keys = ["axis", "in", "k", "s", "d", "out", "before", "after"]
    table = allp.groupby(keys, dropna=False).agg(rows=("rows", "sum"), findings=("findings", "sum")).reset_index()
    table["asymmetric"] = table["before"] != table["after"]
    table = table.sort_values(["findings", "asymmetric", "axis", "in", "k", "s"], ascending=[False, False, True,
                                                                                                True, True, True])
    return table[cols].reset_index(drop=True)


def log_ratio(values: pd.Series, floor: float = 1e-3) -> np.ndarray:
    """bound_ratio values made plottable on a log axis: zeros and tiny values sit at `floor`, inf at 1e12."""
    v = values.to_numpy(dtype=float)
    v = np.where(np.isposinf(v), 1e12, v)
    return np.clip(v, floor, None)


# --- hosts (a sweep spread over a Dask cluster) ------------------------------------------------------


def host_names(df: pd.DataFrame) -> list[str]:
    """The distinct non-empty hosts that ran rows, sorted."""
    return sorted(h for h in df["host"].astype(str).unique() if h)


def multi_host(df: pd.DataFrame) -> bool:
    """True when more than one host ran the rows (the reports then group by host)."""
    return len(host_names(df)) > 1


def hosts(df: pd.DataFrame) -> pd.DataFrame:
    """Per host: rows, findings, Dask workers, CPU model, Python, refconv commit and each adapter's version."""
    cols = ["rows", "findings", "workers", "cpu_model", "python", "git_commit", "adapters"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    work = df.assign(_finding=df["outcome"].isin(FINDING_OUTCOMES).astype(int))
    out = []
    for host, group in work.groupby("host", sort=True):
        versions = group.groupby("adapter")["adapter_version"].agg(lambda s: "/".join(sorted(set(s) - {""})))
        out.append({
            "host": host, "rows": len(group), "findings": int(group["_finding"].sum()),
            "workers": len(set(group["worker"]) - {""}),
            "cpu_model": _distinct(group["cpu_model"]), "python": _distinct(group["python"]),
            "git_commit": _distinct(group["git_commit"].str[:10]),
            "adapters": ", ".join(f"{a} {v}" for a, v in versions.items()),
        })
    return pd.DataFrame(out).set_index("host")[cols]


def outcomes_by_host(df: pd.DataFrame) -> pd.DataFrame:
    """outcomes() per host: index (host, adapter)."""
    parts = {host: outcomes(group) for host, group in df.groupby("host", sort=True)}
    if not parts:
        return outcomes(df)
    table = pd.concat(parts, names=["host", "adapter"]).fillna(0)
    counts = [c for c in table.columns if c != "pass_rate"]
    table[counts] = table[counts].astype(int)
    return table


def timings_by_host(df: pd.DataFrame) -> pd.DataFrame:
    """timings() per host: index (host, adapter); machines differ, so times are compared within a host."""
    parts = {host: timings(group) for host, group in df.groupby("host", sort=True)}
    parts = {host: table for host, table in parts.items() if not table.empty}
    if not parts:
        return timings(df.iloc[:0])
    return pd.concat(parts, names=["host", "adapter"])


def _distinct(values: pd.Series) -> str:
    return ", ".join(sorted(set(values.astype(str)) - {""}))
