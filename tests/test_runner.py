"""The runner: crash and hang isolation, rows kept on disk, timings, reproducible cases and references."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refconv import batch, cases, runner
from refconv.inputs import make_inputs
from refconv.reference import for_spec
from refconv.rows import COLUMNS
from refconv.store import RunStore

FAKE = "fake_adapters:Faulty"
# Four small edge cases: heights 5, 5, 4, 9 (odd, odd, even, odd).
CASE_IDS = [
    "n1-5x5x3-k1x1x4-s1x1-same-f32",
    "n1-5x6x3-k1x1x4-s2x2-same-f32",
    "n1-4x4x1-k2x2x1-s2x2-same-f32",
    "n1-9x9x2-k3x3x3-s3x3-same-f32",
]


def make_config(labels: list[str], case_ids: list[str] = CASE_IDS, **kw: object) -> runner.RunConfig:
    options = {"repeats": 2, "case_timeout": 20.0, **kw}
    return runner.RunConfig(run_id="test-run", selection=",".join(case_ids), seed=0, adapters=labels,
                            cases=[[c, ""] for c in case_ids], **options)  # type: ignore[arg-type]


def run(tmp_path: Path, labels: list[str], **kw: object) -> runner.RunSummary:
    store = RunStore.create(tmp_path / "run")
    return runner.Runner(store, make_config(labels, **kw), argv=["test"]).run()


def by_key(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["case_id"], r["adapter"]): r for r in rows}


def test_crashing_and_hanging_adapters_do_not_stop_the_run(tmp_path):
    segv, abort, hang = f"{FAKE}:mode=segv:on=odd", f"{FAKE}:mode=abort:on=n1-4x4", f"{FAKE}:mode=hang:on=n1-5x6"
    summary = run(tmp_path, ["numpy", segv, abort, hang], case_timeout=2.0)
    rows = by_key(summary.rows)
    assert len(rows) == len(CASE_IDS) * 4 and not summary.interrupted
    assert all(rows[(c, "numpy")]["outcome"] == "pass" for c in CASE_IDS)
    # segv on odd heights: crashed rows naming the signal; the restarted worker passes the even case
    assert rows[(CASE_IDS[0], segv)]["outcome"] == "crashed"
    assert "SIGSEGV" in rows[(CASE_IDS[0], segv)]["error"]
    assert rows[(CASE_IDS[2], segv)]["outcome"] == "pass"
    assert rows[(CASE_IDS[3], segv)]["outcome"] == "crashed"
    assert rows[(CASE_IDS[2], abort)]["outcome"] == "crashed" and "SIGABRT" in rows[(CASE_IDS[2], abort)]["error"]
    assert rows[(CASE_IDS[3], abort)]["outcome"] == "pass"
    # hang: timeout row, the worker is replaced and the next case passes
    assert rows[(CASE_IDS[1], hang)]["outcome"] == "timeout" and "2 s" in rows[(CASE_IDS[1], hang)]["error"]
    assert rows[(CASE_IDS[2], hang)]["outcome"] == "pass"
    for row in rows.values():
        if row["outcome"] in ("pass", "unsupported"):
            assert row["repro"] == ""
        else:
            assert (summary.run_dir / row["repro"]).is_file(), row


@pytest.mark.parametrize(("mode", "outcome", "text"), [
    ("exit", "crashed", "exited with code 3"),
    ("raise", "raised", "ValueError: fake adapter refuses"),
    ("shape", "wrong_shape", "got shape"),
    ("wrong", "mismatch", ""),
])
def test_each_failure_mode_has_its_outcome(tmp_path, mode, outcome, text):
    label = f"{FAKE}:mode={mode}"
    summary = run(tmp_path, [label], case_ids=CASE_IDS[:1])
    (row,) = summary.rows
    assert row["outcome"] == outcome and text in row["error"]
    assert (summary.run_dir / row["repro"]).is_file()


def test_rows_have_every_column_timings_and_provenance(tmp_path):
    nchw = "n1-5x5x2-k3x3x2-s1x1-same-f32-nchw"
    summary = run(tmp_path, ["numpy", "fake_adapters:Plain"], case_ids=[*CASE_IDS[:2], nchw], repeats=3)
    rows = by_key(summary.rows)
    for row in summary.rows:
        assert set(COLUMNS) <= set(row)
    numpy_row = rows[(CASE_IDS[0], "numpy")]
    assert numpy_row["repeats"] == 3 and numpy_row["time_min_ms"] <= numpy_row["time_median_ms"]
    assert numpy_row["time_ms"] == numpy_row["time_median_ms"]
    assert math.isclose(numpy_row["gflops"], numpy_row["flops"] / (numpy_row["time_ms"] * 1e6))
    assert json.loads(numpy_row["settings"])["accumulation"].startswith("case dtype")
    assert numpy_row["adapter_version"] == np.__version__ and numpy_row["numpy_version"] == np.__version__
    plain = rows[(nchw, "fake_adapters:Plain")]
    assert plain["outcome"] == "unsupported" and plain["error"] == "plain adapter declines NCHW"
    assert rows[(CASE_IDS[0], "fake_adapters:Plain")]["repeats"] == 3  # timed through conv2d
    prov = json.loads((summary.run_dir / "provenance.json").read_text())
    assert prov["adapters"]["numpy"]["version"] == np.__version__ and prov["finished_utc"]
    assert prov["main_process_frameworks"] == [] or "tensorflow" in sys.modules or "torch" in sys.modules
    assert prov["cpu"]["logical_cores"] >= 1 and prov["command"] == ["test"]
    stored = RunStore(summary.run_dir)
    assert len(stored.rows()) == len(summary.rows)


def test_tables_match_rows_file_and_keep_column_order(tmp_path):
    import pandas as pd

    summary = run(tmp_path, ["numpy"], case_ids=CASE_IDS[:2])
    frame = pd.read_parquet(summary.run_dir / "results.parquet")
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert list(frame["case_id"]) == CASE_IDS[:2]
    csv = pd.read_csv(summary.run_dir / "results.csv")
    assert list(csv["outcome"]) == ["pass", "pass"]


def test_resume_runs_only_missing_pairs(tmp_path):
    store = RunStore.create(tmp_path / "run")
    config = make_config(["numpy"])
    first = runner.Runner(store, make_config(["numpy"], case_ids=CASE_IDS[:2]), argv=["a"]).run()
    before = {k: v["time_ms"] for k, v in by_key(first.rows).items()}
    resumed = runner.Runner(RunStore.open(tmp_path / "run"), config, argv=["b"]).run()
    assert resumed.new_rows == 2 and len(resumed.rows) == 4
    after = by_key(resumed.rows)
    assert all(after[k]["time_ms"] == t for k, t in before.items())  # not recomputed
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["command"] == ["a"] and prov["resume_commands"] == [["b"]]


def test_parallel_workers_give_the_same_outcomes(tmp_path):
    one = run(tmp_path / "one", ["numpy", f"{FAKE}:mode=wrong:on=odd"], workers=1)
    two = run(tmp_path / "two", ["numpy", f"{FAKE}:mode=wrong:on=odd"], workers=2)
    outcomes = {k: (r["outcome"], r["max_abs_err"]) for k, r in by_key(one.rows).items()}
    assert outcomes == {k: (r["outcome"], r["max_abs_err"]) for k, r in by_key(two.rows).items()}
    assert [r["case_id"] for r in one.rows] == [r["case_id"] for r in two.rows]


def test_no_isolation_runs_in_process(tmp_path):
    summary = run(tmp_path, ["numpy", f"{FAKE}:mode=raise:on=odd"], isolation=False)
    rows = by_key(summary.rows)
    assert rows[(CASE_IDS[0], f"{FAKE}:mode=raise:on=odd")]["outcome"] == "raised"
    assert rows[(CASE_IDS[2], f"{FAKE}:mode=raise:on=odd")]["outcome"] == "pass"


def test_a_custom_executor_is_used(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, fn, *args, **kwargs):  # type: ignore[override]
            Counting.submitted += 1
            return super().submit(fn, *args, **kwargs)

    store = RunStore.create(tmp_path / "run")
    summary = runner.Runner(store, make_config(["numpy"]), executor=Counting(1), argv=[]).run()
    assert Counting.submitted == len(CASE_IDS) and len(summary.rows) == len(CASE_IDS)


def test_store_skips_and_cuts_a_torn_last_line(tmp_path):
    store = RunStore.create(tmp_path / "run")
    store.append([{"case_id": "a", "adapter": "x"}])
    store.close()
    with open(store.rows_path, "a") as f:
        f.write('{"case_id": "b", "adap')  # a kill -9 in the middle of a write
    assert [r["case_id"] for r in store.rows()] == ["a"]
    store.append([{"case_id": "c", "adapter": "x"}])
    store.close()
    assert [r["case_id"] for r in store.rows()] == ["a", "c"]


def _reference_digest(selection: str, seed: int) -> str:
    digest = hashlib.sha256()
    for spec in cases.select(selection, seed=seed):
        digest.update(spec.id.encode())
        for array in for_spec(spec, *make_inputs(spec)):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_same_selection_and_seed_give_identical_cases_and_bit_identical_references():
    assert [s.id for s in cases.select("edge,random:40", seed=3)] == [s.id for s in cases.select("edge,random:40", 3)]
    here = _reference_digest("edge,random:40", 3)
    code = "from test_runner import _reference_digest; print(_reference_digest('edge,random:40', 3))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=env).stdout.strip()
    assert here == there  # a fresh process (a rerun) computes the same bits
    assert here != _reference_digest("edge,random:40", 4)


def test_an_internal_error_on_one_case_keeps_the_run_going_and_resume_retries_it(tmp_path, monkeypatch):
    real = runner.ops.reference

    def broken(spec, *arrays):
        if spec.id == CASE_IDS[1]:
            raise ValueError("reference bug")
        return real(spec, *arrays)

    monkeypatch.setattr(runner.ops, "reference", broken)
    summary = run(tmp_path, ["numpy"])
    assert summary.errors == [f"{CASE_IDS[1]}: ValueError: reference bug"]
    assert sorted(r["case_id"] for r in summary.rows) == sorted(set(CASE_IDS) - {CASE_IDS[1]})
    monkeypatch.setattr(runner.ops, "reference", real)
    resumed = runner.Runner(RunStore.open(tmp_path / "run"), make_config(["numpy"]), argv=[]).run()
    assert resumed.new_rows == 1 and [r["case_id"] for r in resumed.rows] == CASE_IDS



def test_call_runs_a_named_function_next_to_the_adapter_in_its_worker():
    from refconv.worker import InProcessHandle, WorkerCallError, WorkerHandle

    for handle in (WorkerHandle("numpy"), InProcessHandle("numpy")):
        try:
            info = handle.call("refconv.worker:describe_adapter", timeout=120)
            assert info["pid"] == (os.getpid() if isinstance(handle, InProcessHandle) else handle._process.pid)
            with pytest.raises(WorkerCallError, match="no_such_function"):
                handle.call("refconv.worker:no_such_function", timeout=120)
        finally:
            handle.close()


@pytest.mark.parametrize(("mode", "outcome", "text", "chunk"), [
    ("segv", "crashed", "SIGSEGV", 8), ("abort", "crashed", "SIGABRT", 8), ("exit", "crashed", "exited with code 3", 8),
    ("hang", "timeout", "within 2 s", 8), ("segv", "crashed", "SIGSEGV", 1), ("hang", "timeout", "within 2 s", 1),
])
def test_a_fault_in_the_middle_of_a_batch_ends_that_case_and_the_rest_runs_in_a_fresh_worker(mode, outcome, text, chunk,
                                                                                            monkeypatch):
    # one batch of four cases; the faulty adapter misbehaves on the third only (n1-4x4...); with chunk 1 each case
    # is its own message, queued behind the one in flight when the worker dies
    monkeypatch.setattr(batch, "FEED_CHUNK", chunk)
    faulty = f"{FAKE}:mode={mode}:on=n1-4x4"
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS]
    pool = runner.pool_for(["numpy", faulty])
    try:
        results = runner.evaluate_batch([(s, ("numpy", faulty)) for s in specs], pool, repeats=1, case_timeout=2.0)
        outcomes = [[a.comparison.outcome for a in r.answers] for r in results]
        assert outcomes == [["pass", "pass"], ["pass", "pass"], ["pass", outcome], ["pass", "pass"]]
        failed = results[2].answers[1].comparison
        assert text in failed.error and CASE_IDS[2] in failed.error
        # a crash on a worker that ran other cases first is checked once more, alone, in a fresh worker
        assert pool.handle(faulty).restarts == (2 if outcome == "crashed" else 1)
        assert pool.handle("numpy").restarts == 0
        if outcome == "crashed":
            assert "had run other cases first too" in failed.error
        assert all(a.actual is None for r in results for a in r.answers)  # no arrays travel unless asked
    finally:
        runner.close_pools()


def test_a_crash_caused_by_an_earlier_case_does_not_count_against_the_innocent_case():
    # the poison case (n1-4x4...) answers right but breaks its process: the next case's call segfaults there
    poison = f"{FAKE}:mode=poison:on=n1-4x4"
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS]
    pool = runner.pool_for(["numpy", poison])
    try:
        results = runner.evaluate_batch([(s, ("numpy", poison)) for s in specs], pool, repeats=1, case_timeout=20.0)
        answers = [r.answers[1] for r in results]
        assert [a.comparison.outcome for a in answers] == ["pass"] * 4  # the case after the poison too
        note = [w for w in answers[3].warnings if w[0] == "RefconvNote"]
        assert len(note) == 1 and "SIGSEGV" in note[0][1] and "alone in a fresh worker" in note[0][1]
        assert not any(w[0] == "RefconvNote" for a in answers[:3] for w in a.warnings)
        assert pool.handle(poison).restarts == 1
    finally:
        runner.close_pools()


@pytest.mark.parametrize("delay", ["0.1", "0.4"])
def test_a_worker_that_dies_after_answering_costs_no_other_case_a_row(monkeypatch, delay):
    # the worker segfaults shortly after answering the first case, while the next messages are on their way
    # (each case its own message): no case may be reported crashed for it, whichever moment the death lands
    monkeypatch.setattr(batch, "FEED_CHUNK", 1)
    dying = f"{FAKE}:mode=die_after:on={CASE_IDS[0]}:delay={delay}"
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS]
    pool = runner.pool_for(["numpy", dying])
    try:
        results = runner.evaluate_batch([(s, ("numpy", dying)) for s in specs], pool, repeats=1, case_timeout=20.0)
        assert [r.answers[1].comparison.outcome for r in results] == ["pass"] * 4
    finally:
        runner.close_pools()


def test_a_wrong_output_travels_back_for_its_witness_and_a_right_one_does_not():
    wrong = f"{FAKE}:mode=wrong:on=odd"
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS[:2]]
    pool = runner.pool_for(["numpy", wrong])
    try:
        results = runner.evaluate_batch([(s, ("numpy", wrong)) for s in specs], pool, repeats=1)
        answers = {(r.spec.id, a.label): a for r in results for a in r.answers}
        assert answers[(CASE_IDS[0], wrong)].comparison.outcome == "mismatch"  # the first case is "odd"
        kept = answers[(CASE_IDS[0], wrong)].actual
        expected = runner.ops.reference(specs[0], runner.ops.inputs(specs[0]))[0]
        assert kept is not None and kept.shape == expected.shape and not np.allclose(kept, expected)
        assert all(answers[key].actual is None for key in answers if answers[key].comparison.outcome == "pass")
    finally:
        runner.close_pools()


def test_large_wrong_outputs_coming_back_while_large_references_go_out_do_not_deadlock():
    # A worker sending back a kept 1.2 MB output while the main process sends it the next chunk's 20 MB of
    # references: both sides once blocked in send for ever (the worker read its next message only after
    # answering). The worker now reads its messages as they arrive.
    import threading

    wrong = f"{FAKE}:mode=wrong"
    specs = [cases.ConvSpec.from_id(f"n1-96x96x8-k1x1x16-s1x1-valid-f32-r{i}") for i in range(20)]
    pool = runner.pool_for([wrong])
    outcomes: list[str] = []

    def go() -> None:
        results = runner.evaluate_batch([(s, (wrong,)) for s in specs], pool, repeats=1, case_timeout=30.0)
        outcomes.extend(a.comparison.outcome for r in results for a in r.answers)

    thread = threading.Thread(target=go, daemon=True)
    try:
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the batch deadlocked"
    finally:
        runner.close_pools()
    assert outcomes == ["mismatch"] * 20


def test_references_computed_ahead_are_used_once_and_give_the_same_rows(monkeypatch):
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS[:3]]
    pool = runner.pool_for(["numpy"])
    try:
        plain = runner.evaluate_batch([(s, ("numpy",)) for s in specs], pool, repeats=1)
        ahead = batch.Prefetch(specs[:2]).start()
        deadline = time.monotonic() + 30
        while ahead.computed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ahead.stop() == 2
        calls: list[str] = []
        real = runner.ops.reference
        monkeypatch.setattr(runner.ops, "reference", lambda spec, values: calls.append(spec.id) or real(spec, values))
        results = runner.evaluate_batch([(s, ("numpy",)) for s in specs], pool, repeats=1)
    finally:
        runner.close_pools()
        batch.forget_prefetched()
    assert calls == [specs[2].id]  # only the case not computed ahead
    assert batch._PREFETCHED == {}  # each taken once
    assert [r.answers[0].comparison for r in results] == [r.answers[0].comparison for r in plain]


def test_a_prefetch_stops_at_its_memory_budget():
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS[:3]]
    ahead = batch.Prefetch(specs, budget_bytes=1).start()
    try:
        ahead._thread.join(30)  # it ends by itself, after the first case has spent the budget
        assert ahead.stop() == 1 and list(batch._PREFETCHED) == [specs[0].id]
    finally:
        batch.forget_prefetched()


def test_a_batch_computes_each_reference_once_and_keeps_arrays_only_on_request(monkeypatch):
    calls: list[str] = []
    real = runner.ops.reference

    def counting(spec, values):
        calls.append(spec.id)
        return real(spec, values)

    monkeypatch.setattr(runner.ops, "reference", counting)
    specs = [cases.ConvSpec.from_id(c) for c in CASE_IDS[:2]]
    pool = runner.pool_for(["numpy", "fake_adapters:Plain"])
    try:
        results = runner.evaluate_batch([(s, ("numpy", "fake_adapters:Plain")) for s in specs], pool, repeats=1)
        assert calls == CASE_IDS[:2]  # once per case, whatever the number of adapters
        expected, _, answers = runner.evaluate(specs[0], ["numpy"], pool, repeats=1, keep_arrays=True)
        assert answers[0].actual is not None and answers[0].actual.shape == expected.shape
    finally:
        runner.close_pools()
    assert [[a.comparison.outcome for a in r.answers] for r in results] == [["pass", "pass"]] * 2


def test_worker_output_goes_to_the_run_logs_and_warnings_are_counted(tmp_path):
    summary = run(tmp_path, ["numpy", "fake_adapters:Noisy"], case_ids=CASE_IDS[:3], repeats=2)
    logs = summary.run_dir / "logs"
    text = (logs / "fake_adapters_Noisy.log").read_text()
    assert (logs / "numpy.log").is_file() and "hello on stdout" in text and "hello on stderr" in text
    (entry,) = json.loads((summary.run_dir / "warnings.json").read_text())
    assert entry["adapter"] == "fake_adapters:Noisy" and entry["category"] == "UserWarning"
    assert entry["count"] == 3 * 3 and entry["first_case"] == CASE_IDS[0]  # warm-up + 2 repeats, per case
    assert entry["message"] == "fake adapter warns on every call"
    from refconv.report import write_reports

    write_reports(summary.run_dir)  # listed once in both reports, with its count and first case
    md, html = (summary.run_dir / "summary.md").read_text(), (summary.run_dir / "report.html").read_text()
    section = md.split("## Warnings")[1]
    assert "fake adapter warns on every call" in section and CASE_IDS[0] in section
    assert 'id="warnings"' in html and html.count("fake adapter warns on every call") == 1


def test_the_warning_log_counts_merges_across_resumes_and_prints_live_only_when_verbose(tmp_path, capsys):
    from refconv.batch import Answer, CaseResult
    from refconv.compare import Comparison
    from refconv.results import WarningLog

    def result(case_id: str, count: int) -> CaseResult:
        answer = Answer("torch", Comparison("pass", (1,), (1,)), warnings=[("UserWarning", "padding copy", count)])
        return CaseResult(cases.ConvSpec.from_id(case_id), [answer])

    quiet = WarningLog(tmp_path)
    quiet.add(result(CASE_IDS[0], 2))
    quiet.add(result(CASE_IDS[1], 3))
    quiet.write()
    assert capsys.readouterr().err == ""
    loud = WarningLog(tmp_path, verbose=True)  # a resumed run goes on counting
    loud.add(result(CASE_IDS[2], 1))
    loud.add(CaseResult(cases.ConvSpec.from_id(CASE_IDS[3]),
                        [Answer("tf", Comparison("pass", (1,), (1,)), warnings=[("DeprecationWarning", "old", 1)])]))
    loud.write()
    assert capsys.readouterr().err.splitlines() == [f"refconv run: tf warned on {CASE_IDS[3]}: DeprecationWarning: old"]
    entries = json.loads((tmp_path / "warnings.json").read_text())
    assert [(e["adapter"], e["count"], e["first_case"]) for e in entries] == [("torch", 6, CASE_IDS[0]),
                                                                              ("tf", 1, CASE_IDS[3])]
