"""`compare` judges speed per adapter in aggregate: noise never gates, a real 2x slowdown always does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from adapters.base import Prepared
from adapters.numpy_ref import NumpyAdapter
from refconv import runner
from refconv.report import compare_runs, load_run, normalize
from refconv.report.speed import MIN_CASES, bootstrap_ci, speed_table
from refconv.spec import ConvSpec
from refconv.store import RunStore

CASES = [f"n1-{h}x{h}x2-k3x3x2-s1x1-same-f32" for h in range(4, 16)]
STEADY = "test_speed_gate:Steady"
WORK_ENV = "REFCONV_TEST_WORK_FILE"
WORK_UNIT_S = 0.002  # one unit of the steady adapter's busy wait: ten times a small numpy conv


class Steady(NumpyAdapter):
    """The numpy adapter plus N milliseconds of busy waiting per call, timed on the wall clock.

    N is read from the file $REFCONV_TEST_WORK_FILE when a case is prepared, so one process can be made
    exactly twice as slow between two runs. The wait spins on `time.perf_counter` until N ms have passed,
    so twice N costs twice the time whatever the load, cache or allocator do: a repeated sort, used before,
    gained speed on its second pass (warm cache, reused pages) and made "twice the work" only 1.4-1.9x the time.
    """

    name = "steady"

    def prepare(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: ConvSpec) -> Prepared:
        prepared = super().prepare(x, w, b, spec)
        seconds = int(Path(os.environ[WORK_ENV]).read_text()) * WORK_UNIT_S

        def call() -> Any:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
            return prepared.call()

        return Prepared(call, prepared.fetch)


def _rows(ratios: list[float], adapter: str = "tf") -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(ratios)
    base = {"case_id": [f"c{i}" for i in range(n)], "adapter": [adapter] * n, "outcome": ["pass"] * n,
            "time_min_ms": [1.0] * n, "time_median_ms": [1.0] * n}
    new = {**base, "time_min_ms": ratios, "time_median_ms": ratios}
    return normalize(pd.DataFrame(base)), normalize(pd.DataFrame(new))


def test_one_slow_row_is_listed_but_never_gates():
    diff = compare_runs(*_rows([1.0] * 19 + [10.0]))
    assert diff.timing_regressions["case_id"].tolist() == ["c19"]
    assert not diff.regressed


def test_a_uniform_slowdown_gates_with_its_interval():
    diff = compare_runs(*_rows([2.0, 2.1, 1.9, 2.0, 2.2, 1.95]))
    row = diff.speed.iloc[0]
    assert row["regression"] and diff.regressed
    assert row["ci_low"] > 1.5 and row["ci_low"] <= row["speed_ratio"] <= row["ci_high"]
    assert row["speed_ratio"] == pytest.approx(np.exp(np.mean(np.log([2.0, 2.1, 1.9, 2.0, 2.2, 1.95]))))


def test_a_slowdown_below_the_factor_or_on_too_few_cases_does_not_gate():
    assert not compare_runs(*_rows([1.3] * 10)).regressed  # certain, but within the factor
    assert not compare_runs(*_rows([3.0] * (MIN_CASES - 1))).regressed  # one or two rows cannot gate alone


def test_bootstrap_is_seeded_and_brackets_the_mean():
    logs = np.log(np.array([0.9, 1.1, 1.0, 1.2, 0.95]))
    assert bootstrap_ci(logs) == bootstrap_ci(logs)
    low, high = bootstrap_ci(logs)
    assert low <= logs.mean() <= high


def test_speed_table_falls_back_to_medians_for_old_runs():
    both = pd.DataFrame({"adapter": ["a"] * 4, "case_id": list("wxyz"), "time_median_ms_base": [1.0] * 4,
                         "time_median_ms_new": [4.0] * 4})
    assert speed_table(both, 1.5)["regression"].tolist() == [True]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A function that sets the steady adapter's workload for the next run (1 to start)."""
    work_file = tmp_path / "work"
    work_file.write_text("1")
    monkeypatch.setenv(WORK_ENV, str(work_file))
    return lambda n: work_file.write_text(str(n))


def _run(path: Path) -> pd.DataFrame:
    """A run of numpy and the steady adapter in this process (no worker start-up: a second per run at most)."""
    config = runner.RunConfig(run_id=path.name, selection="x", seed=0, adapters=["numpy", STEADY],
                              cases=[[c, ""] for c in CASES], repeats=5, case_timeout=30.0, isolation=False)
    try:
        runner.Runner(RunStore.create(path), config, argv=["test"]).run()
    finally:
        runner.close_pools()
    return load_run(path)


@pytest.fixture
def cpu_hog():
    """A process that spins on a core for the length of the test."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield hog
    finally:
        hog.kill()
        hog.wait()


@pytest.mark.timing  # tox runs the timing tests alone, after the rest: load from other tests is not noise
@pytest.mark.slow  # ten runs under load: ~40 s on a busy 2-core machine
def test_identical_runs_under_a_cpu_hog_never_gate(tmp_path, work, cpu_hog):
    for attempt in range(5):
        diff = compare_runs(_run(tmp_path / f"base{attempt}"), _run(tmp_path / f"new{attempt}"))
        assert not diff.regressed, diff.speed.to_string()
        assert len(diff.speed) == 2  # both adapters were judged


@pytest.mark.timing
@pytest.mark.slow  # ten runs: ~30 s on a busy 2-core machine
def test_an_adapter_twice_as_slow_gates_every_time(tmp_path, work):
    for attempt in range(5):
        work(1)
        base = _run(tmp_path / f"base{attempt}")
        work(2)
        diff = compare_runs(base, _run(tmp_path / f"new{attempt}"))
        judged = diff.speed.set_index("adapter")
        assert judged.loc[STEADY, "regression"], judged.to_string()
        assert not judged.loc["numpy", "regression"], judged.to_string()
        assert diff.regressed
