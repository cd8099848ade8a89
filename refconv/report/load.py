"""Read a run directory back: its rows (Parquet first, CSV otherwise), provenance and arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from refconv.errors import UsageError
from refconv.rows import COLUMNS

# Columns that hold text; missing values are read back as '' so filters like df.error != '' behave.
TEXT_COLUMNS = (
    "run_id", "case_id", "case_name", "values", "layer", "model",
    "dtype", "padding", "layout", "activation", "adapter", "relation", "adapter_version",
    "outcome", "known_deviation", "expected_shape", "actual_shape", "actual_dtype", "error", "settings", "repro",
    "isa", "host", "cpu_model", "cpu_features", "python", "numpy_version", "refconv_version", "git_commit", "worker",
)
NUMERIC_COLUMNS = (
    "n", "h", "w", "c_in", "c_out", "kh", "kw", "sh", "sw", "dh", "dw", "groups", "pad_top", "pad_bottom",
    "pad_left", "pad_right", "out_h", "out_w", "seed", "K", "flops", "n_elements", "mismatched", "max_abs_err",
    "max_rel_err", "bound_ratio", "max_ulp", "tolerance_c", "time_ms", "time_min_ms", "time_median_ms", "repeats",
    "gflops",
)
# Where the rows are read from, first found wins: the tables are authoritative; rows.jsonl (appended
# while a run goes) lets a run killed before its tables were written still be reported.
ROW_FILES = ("results.parquet", "results.csv", "rows.jsonl")
# The columns a report cannot do without; everything else is filled in when absent.
REQUIRED = ("case_id", "adapter", "outcome")


def run_path(run_dir: str | Path) -> Path:
    """The run directory as a Path, or a UsageError naming what is wrong with it."""
    path = Path(run_dir)
    if not path.exists():
        raise UsageError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise UsageError(f"{str(path)!r} is not a directory (expected a run directory with results.parquet)")
    if not any((path / name).is_file() for name in ROW_FILES):
        raise UsageError(f"{str(path)!r} is not a run directory: it has none of {', '.join(ROW_FILES)}")
    return path


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """The rows of a run (results.parquet, else results.csv, else rows.jsonl), typed, with derived columns added.

    Unknown extra columns are kept as they are; missing known columns are added empty, so a report of an
    older or partial run still renders.
    """
    path = run_path(run_dir)
    source = next(path / name for name in ROW_FILES if (path / name).is_file())
    try:
        if source.suffix == ".parquet":
            df = pd.read_parquet(source)
        elif source.suffix == ".csv":
            df = pd.read_csv(source, keep_default_na=False, na_values=[""], low_memory=False)
        else:
            df = pd.DataFrame(_json_lines(source))
    except Exception as exc:  # a truncated or foreign file: one line, not a pyarrow traceback
        raise UsageError(f"cannot read the rows of {str(path)!r}: {type(exc).__name__}: {exc}") from None
    return normalize(df, where=str(path))


def _json_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # the torn last line of a killed run
            continue
    return rows


def normalize(df: pd.DataFrame, where: str = "rows") -> pd.DataFrame:
    """Coerce column types, add missing columns empty, and add the derived columns the report groups by."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UsageError(f"{where} lacks the column(s) {', '.join(missing)}; is it a refconv run?")
    df = df.copy()
    for column in COLUMNS:
        if column not in df.columns:
            df[column] = "" if column in TEXT_COLUMNS else float("nan")
    for column in TEXT_COLUMNS:
        values = df[column].astype(object)
        df[column] = values.where(values.notna(), "").astype(str)
    for column in NUMERIC_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    for column in ("bias", "empty_output"):
        df[column] = df[column].map(_as_bool)
    return add_derived(df)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    try:
        return bool(value) and value == value  # NaN is not true
    except (TypeError, ValueError):
        return False


def add_derived(df: pd.DataFrame) -> pd.DataFrame:
    """framework and variant (from the adapter label 'tf:onednn=off'), stride, dilation and time columns."""
    labels = df["adapter"].astype(str)
    df["framework"] = labels.str.split(":", n=1).str[0]
    df["variant"] = labels.str.partition(":")[2]
    df["stride"] = _pair(df["sh"], df["sw"])
    df["dilation"] = _pair(df["dh"], df["dw"])
    # time_ms is the median by contract; an older run may only have one of the two.
    df["time_median_ms"] = df["time_median_ms"].fillna(df["time_ms"])
    return df


def _pair(a: pd.Series, b: pd.Series) -> pd.Series:
    def fmt(v: Any) -> str:
        return "?" if pd.isna(v) else str(int(v))

    return a.map(fmt) + "x" + b.map(fmt)


def read_json(run_dir: str | Path, name: str) -> dict[str, Any]:
    """provenance.json or run.json of a run as a dict; {} when absent, {'unreadable': reason} when broken."""
    path = Path(run_dir) / name
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"unreadable": f"{name}: {exc}"}
    return data if isinstance(data, dict) else {"value": data}
