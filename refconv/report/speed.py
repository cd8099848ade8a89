"""Speed of each adapter across two runs, judged in aggregate so one noisy row never gates.

Per case, the ratio new/base of the minimum time over the repeats (`time_min_ms`: the least disturbed
call; a median moves with whatever else the machine runs). Per adapter, the geometric mean of those ratios
with a percentile bootstrap confidence interval over cases (numpy, seeded: the same runs give the same
interval). An adapter regresses only when the interval's lower end exceeds the factor: "slower by more
than the factor, with confidence", not "one row looked slower".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
BOOTSTRAP = 2000  # resamples; the interval's ends move by well under 1% between seeds at this count
SEED = 0
MIN_CASES = 3  # fewer matched timings than this cannot gate: the interval is a single ratio
COLUMNS = ["adapter", "cases", "speed_ratio", "ci_low", "ci_high", "regression"]


def bootstrap_ci(logs: np.ndarray, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `logs` (log ratios), resampling cases with replacement."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(logs), size=(resamples, len(logs)))
    means = logs[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def case_ratios(both: pd.DataFrame, column: str = "time_min_ms") -> pd.DataFrame:
    """adapter, case_id, ratio (new/base) for the matched rows timed in both runs (`<column>_base/_new`)."""
    base, new = both[f"{column}_base"].astype(float), both[f"{column}_new"].astype(float)
    ok = (base > 0) & (new > 0) & np.isfinite(base) & np.isfinite(new)
    return pd.DataFrame({"adapter": both.loc[ok, "adapter"].astype(str), "case_id": both.loc[ok, "case_id"],
                         "ratio": new[ok] / base[ok]})


def speed_table(both: pd.DataFrame, factor: float, column: str = "time_min_ms", confidence: float = CONFIDENCE,
                seed: int = SEED) -> pd.DataFrame:
    """One row per adapter: matched timed cases, geometric-mean ratio, its interval, whether it regresses."""
    if f"{column}_base" not in both.columns or both[f"{column}_base"].isna().all():
        column = "time_median_ms"  # runs written before time_min_ms existed
    if f"{column}_base" not in both.columns:
        return pd.DataFrame(columns=COLUMNS)
    ratios = case_ratios(both, column)
    out = []
    for adapter, group in ratios.groupby("adapter", sort=True):
        logs = np.log(group["ratio"].to_numpy(dtype=float))
        low, high = bootstrap_ci(logs, confidence, seed=seed)
        n = len(logs)
        out.append({"adapter": adapter, "cases": n, "speed_ratio": math.exp(float(logs.mean())),
                    "ci_low": math.exp(low), "ci_high": math.exp(high),
                    "regression": bool(n >= MIN_CASES and math.exp(low) > factor)})
    return pd.DataFrame(out, columns=COLUMNS)


def relative_speed(rows: pd.DataFrame, labels: list[str], column: str = "time_min_ms") -> dict[str, float]:
    """Within one run: each label's geometric-mean time ratio to the first label over the cases both timed."""
    if column not in rows.columns or not labels:
        return {}
    timed = rows.assign(**{column: pd.to_numeric(rows[column], errors="coerce")})  # '' from a raw CSV: untimed
    times = timed.pivot_table(index="case_id", columns="adapter", values=column, aggfunc="min")
    first = labels[0]
    out: dict[str, float] = {first: 1.0} if first in times.columns else {}
    for label in labels[1:]:
        if first not in times.columns or label not in times.columns:
            continue
        pair = times[[first, label]].astype(float)
        values = pair.to_numpy()
        pair = pair[(values > 0).all(axis=1) & np.isfinite(values).all(axis=1)]
        if len(pair):
            out[label] = math.exp(float(np.log(pair[label] / pair[first]).mean()))
    return out
