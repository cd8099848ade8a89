"""Drive cases through adapter workers: reference once per case, compare, store every row as it finishes.

Flow of one case (`run_case`): the calling process computes the float64 reference and its error bound
once; each adapter's worker process (`refconv.worker`) rebuilds the same seeded inputs from the case id,
runs the adapter and returns its NHWC output and timings; `refconv.compare.compare` turns each output
into a `Comparison`. A dead worker becomes a `crashed` answer, a slow one a `timeout` answer, and the
worker is replaced for the next case. The main thread turns answers into rows (`build_rows`), writes a
repro script for every finding and appends the rows to the run directory (`refconv.store`).

The executor seam. `Runner(..., executor=...)` accepts anything with the `concurrent.futures.Executor`
interface (`submit(fn, *args) -> Future`, `shutdown(wait=...)`). The runner submits
`run_case(task: CaseTask) -> CaseResult` once per case: a module-level function whose argument and result
are plain picklable data (a frozen ConvSpec, labels, numbers, Comparison records; no arrays), and whose
worker processes come from a per-process registry (`pool_for`). So a cluster executor such as
`dask.distributed.Client(...).get_executor()` can replace the default `ThreadPoolExecutor(--workers)`
without changing the runner: each cluster process then keeps its own adapter workers. Storage, repro
scripts and known-deviation matching stay in the main process, which owns the run directory.

A `Cluster` (`refconv.distributed.DaskCluster`, `refconv run --dask`) supplies both the executor and the
adapters' versions and settings, asked on its workers instead of in this process. Each CaseResult carries the
host columns and adapter settings of the process that ran it, so every row names where it was made. A
(case, adapter) pair is stored once: a result that arrives again (a task rerun after its worker died) is dropped.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from refconv import deviations, ops, provenance, repro
from refconv.compare import TOLERANCE_C, Comparison, compare
from refconv.errors import UsageError
from refconv.rows import case_columns, flops
from refconv.spec import ConvSpec
from refconv.store import RunStore
from refconv.worker import Pool, WorkerCrashed, WorkerLoadError, WorkerTimeout, error_text

TABLES_EVERY_S = 30.0  # rewrite results.csv/.parquet this often while running (rows.jsonl is always current)
NO_REPRO = ("pass", "unsupported")


def new_run_id() -> str:
    """UTC timestamp plus 4 hex digits, e.g. 20261126-101500-3fa9."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class RunConfig:
    """The arguments of a run, stored in run.json so --resume repeats them exactly."""

    run_id: str
    selection: str
    seed: int
    adapters: list[str]
    cases: list[list[str]]  # [case id, case name] in run order
    repeats: int = 3
    case_timeout: float = 60.0
    workers: int = 1
    isolation: bool = True
    unavailable: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)

    def specs(self) -> list[ConvSpec]:
        return [ConvSpec.from_id(case_id).replace(name=name) for case_id, name in self.cases]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        try:
            return cls(**data)
        except TypeError as exc:
            raise UsageError(f"run.json does not describe a refconv run: {exc}") from None


@dataclass(frozen=True)
class CaseTask:
    """One case for some adapters: what an executor ships to `run_case`."""

    spec: ConvSpec
    labels: tuple[str, ...]  # the adapters still to run on this case
    run_labels: tuple[str, ...]  # every adapter of the run: the key of the worker pool
    repeats: int = 3
    case_timeout: float = 60.0
    isolation: bool = True


@dataclass
class Answer:
    """One adapter's verdict on one case, with its timings (ms) and, on request, its output array."""

    label: str
    comparison: Comparison
    times_ms: list[float] = field(default_factory=list)
    actual: np.ndarray | None = None


@dataclass
class CaseResult:
    """One case's answers, with the host columns and adapter info of the process that ran it."""

    spec: ConvSpec
    answers: list[Answer]
    where: dict[str, Any] = field(default_factory=dict)  # provenance.host_columns() of the running process
    adapter_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> version, settings there


class Cluster(Protocol):
    """Where a run executes when not in this process: an executor plus its workers' adapter info."""

    def start(self, labels: tuple[str, ...], isolation: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Load the adapters on the workers: ({label: version and settings}, cluster provenance)."""
        ...

    def executor(self) -> Executor:
        """The executor the cases are submitted to."""
        ...


class Cancelled(Exception):
    """The run is stopping (Ctrl-C): the case's unfinished answers are dropped, --resume redoes them."""


_POOLS: dict[tuple[tuple[str, ...], bool], Pool] = {}
_POOLS_LOCK = threading.Lock()
_STOP = threading.Event()


def pool_for(labels: Iterable[str], isolation: bool = True) -> Pool:
    """This process's worker pool for a set of adapter labels (created once)."""
    key = (tuple(labels), isolation)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = Pool(key[0], isolation)
        return _POOLS[key]


def close_pools() -> None:
    """Stop every worker process of this process."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def _answer(label: str, spec: ConvSpec, expected: np.ndarray, bound: np.ndarray, reply: dict[str, Any],
            keep: bool) -> Answer:
    c = TOLERANCE_C[spec.dtype]
    shape = tuple(expected.shape)
    if reply["kind"] != "output":
        return Answer(label, Comparison(reply["kind"], shape, None, expected.size, tolerance_c=c, error=reply["error"]))
    try:
        comparison = compare(spec, expected, bound, reply["output"])
    except Exception as exc:  # an output compare cannot read (object dtype, ...) is the adapter's failure
        comparison = Comparison("raised", shape, None, expected.size, tolerance_c=c,
                                error=f"returned a value that cannot be compared: {error_text(exc)}")
    return Answer(label, comparison, list(reply["times_ms"]), reply["output"] if keep else None)


def evaluate(spec: ConvSpec, labels: Iterable[str], pool: Pool, repeats: int = 3, case_timeout: float = 60.0,
             keep_arrays: bool = False) -> tuple[np.ndarray, np.ndarray, list[Answer]]:
    """(expected, bound, one Answer per label) for one case; raises Cancelled when the run is stopping."""
    expected, bound = ops.reference(spec, ops.inputs(spec))
    answers = []
    for label in labels:
        if _STOP.is_set():
            raise Cancelled(spec.id)
        try:
            reply = pool.handle(label).request(spec.id, repeats, case_timeout)
        except (WorkerCrashed, WorkerTimeout) as exc:
            if _STOP.is_set():  # killed by our own Ctrl-C handling, not by the framework
                raise Cancelled(spec.id) from None
            kind = "crashed" if isinstance(exc, WorkerCrashed) else "timeout"
            reply = {"kind": kind, "error": str(exc), "times_ms": []}
        except WorkerLoadError as exc:  # a restart after a crash failed to load the adapter again
            reply = {"kind": "crashed", "error": str(exc), "times_ms": []}
        answers.append(_answer(label, spec, expected, bound, reply, keep_arrays))
    return expected, bound, answers


def run_case(task: CaseTask) -> CaseResult:
    """The unit of work an executor runs: one case through the adapters named in the task."""
    pool = pool_for(task.run_labels, task.isolation)
    _, _, answers = evaluate(task.spec, task.labels, pool, task.repeats, task.case_timeout)
    info = {label: pool.handle(label).info for label in task.labels}
    return CaseResult(task.spec, answers, provenance.host_columns(), {k: v for k, v in info.items() if v})


# --- rows ------------------------------------------------------------------------------------


def timing_columns(spec: ConvSpec, times_ms: list[float]) -> dict[str, Any]:
    """time_ms (= median), min, median, repeats and GFLOP/s at the median; NaN without timings."""
    if not times_ms:
        nan = float("nan")
        return {"time_ms": nan, "time_min_ms": nan, "time_median_ms": nan, "repeats": 0, "gflops": nan}
    median = statistics.median(times_ms)
    return {
        "time_ms": median, "time_min_ms": min(times_ms), "time_median_ms": median, "repeats": len(times_ms),
        "gflops": flops(spec) / (median * 1e6) if median > 0 else float("nan"),
    }


@dataclass
class RowContext:
    """What every row of a run shares: run id, adapter versions and settings, provenance columns."""

    run_id: str
    adapter_info: dict[str, dict[str, Any]]
    provenance_columns: dict[str, Any]


def build_rows(result: CaseResult, ctx: RowContext) -> list[dict[str, Any]]:
    """One row per answer, in rows.COLUMNS terms (repro and known_deviation filled by `finish_rows`)."""
    case = case_columns(result.spec)
    rows = []
    for answer in result.answers:
        info = result.adapter_info.get(answer.label) or ctx.adapter_info.get(answer.label, {})
        row: dict[str, Any] = {"run_id": ctx.run_id, **case, "adapter": answer.label,
                               "adapter_version": info.get("version", "")}
        row.update(answer.comparison.as_row())
        row.update(timing_columns(result.spec, answer.times_ms))
        row["settings"] = json.dumps(info.get("settings", {}), sort_keys=True)
        row["repro"] = ""
        row["known_deviation"] = ""
        row.update(ctx.provenance_columns)
        row.update(result.where)  # the host that ran the case, where it differs from this one
        rows.append(row)
    return rows


def finish_rows(run_dir: Path, result: CaseResult, rows: list[dict[str, Any]]) -> None:
    """Known deviations for every row; a repro script (and the inputs) for every finding."""
    inputs = None
    for answer, row in zip(result.answers, rows, strict=True):
        row["known_deviation"] = deviations.match(row)
        if row["outcome"] in NO_REPRO:
            continue
        inputs = inputs or ops.inputs(result.spec)
        message = answer.comparison.message(answer.label, result.spec)
        row["repro"] = repro.write(run_dir, result.spec, answer.label, message, *inputs)


# --- the run -----------------------------------------------------------------------------------


@dataclass
class RunSummary:
    run_dir: Path
    rows: list[dict[str, Any]]
    new_rows: int
    interrupted: bool
    paths: list[Path]
    errors: list[str] = field(default_factory=list)  # cases refconv itself failed on (no rows; --resume retries)


class Runner:
    """Runs a RunConfig into a RunStore; finished (case, adapter) pairs already stored are skipped."""

    def __init__(self, store: RunStore, config: RunConfig, executor: Executor | None = None,
                 progress: bool = False, argv: list[str] | None = None, cluster: Cluster | None = None) -> None:
        self.store, self.config, self.executor, self.cluster = store, config, executor, cluster
        self.progress = progress
        self.argv = argv if argv is not None else list(sys.argv)
        self.errors: list[str] = []
        self._submitted: dict[Future[CaseResult], str] = {}
        self._stored: set[tuple[str, str]] = set()

    def tasks(self, done: set[tuple[str, str]]) -> list[CaseTask]:
        cfg, out = self.config, []
        for spec in cfg.specs():
            missing = tuple(label for label in cfg.adapters if (spec.id, label) not in done)
            if missing:
                out.append(CaseTask(spec, missing, tuple(cfg.adapters), cfg.repeats, cfg.case_timeout, cfg.isolation))
        return out

    def _start_workers(self) -> tuple[Pool | None, dict[str, dict[str, Any]], dict[str, Any]]:
        """(local pool or None, adapter info, cluster provenance or {}); a failing adapter is a UsageError."""
        labels = tuple(self.config.adapters)
        if self.cluster is not None:  # the adapters live on the cluster's workers, maybe not here at all
            info, cluster_prov = self.cluster.start(labels, self.config.isolation)
            self.executor = self.cluster.executor()
            return None, info, cluster_prov
        pool = pool_for(labels, self.config.isolation)
        try:
            info = pool.start()
        except WorkerLoadError as exc:
            pool.close()
            raise UsageError(str(exc)) from None
        return pool, info, {}

    def _provenance(self, info: dict[str, dict[str, Any]]) -> dict[str, Any]:
        started = provenance.utc_now()
        prov = provenance.collect(self.argv, info, self.config.unavailable, started)
        path = self.store.dir / "provenance.json"
        if path.exists():  # a resumed run keeps its first start time and records each resumption
            old = self.store.read_json("provenance.json")
            prov["started_utc"] = old.get("started_utc", started)
            prov["resumed_utc"] = [*old.get("resumed_utc", []), started]
            prov["command"] = old.get("command", prov["command"])
            prov["resume_commands"] = [*old.get("resume_commands", []), self.argv]
        self.store.write_json("provenance.json", prov)
        return prov

    def run(self) -> RunSummary:
        """Run every missing (case, adapter) pair; Ctrl-C stops cleanly with every finished row kept."""
        cfg = self.config
        self.store.write_json("run.json", cfg.to_dict())
        done = {(r["case_id"], r["adapter"]) for r in self.store.rows()}
        self._stored = set(done)
        tasks = self.tasks(done)
        pool, info, cluster_prov = self._start_workers()
        prov = self._provenance(info)
        if cluster_prov:
            prov["cluster"] = cluster_prov
            self.store.write_json("provenance.json", prov)
        ctx = RowContext(cfg.run_id, info, provenance.row_columns(prov))
        _STOP.clear()
        new_rows, interrupted = 0, False
        previous = _install_sigint()
        try:
            new_rows, interrupted = self._drive(tasks, ctx, len(cfg.cases))
        finally:
            _restore_sigint(previous)
            if interrupted and pool is not None:
                pool.kill_all()
            self.store.close()
        rows = self._all_rows()
        paths = self.store.write_tables(rows)
        hosts = _hosts(rows)
        if hosts:
            prov["hosts"] = hosts
        prov["finished_utc"] = "" if interrupted else provenance.utc_now()
        prov["interrupted"] = interrupted
        prov["main_process_frameworks"] = provenance.main_process_frameworks()
        paths.append(self.store.write_json("provenance.json", prov))
        close_pools()
        return RunSummary(self.store.dir, rows, new_rows, interrupted, paths, list(self.errors))

    def _drive(self, tasks: list[CaseTask], ctx: RowContext, total: int) -> tuple[int, bool]:
        own = self.executor is None  # a caller's executor (a cluster client's, say) is the caller's to shut down
        executor = self.executor or ThreadPoolExecutor(max(1, self.config.workers), thread_name_prefix="refconv-case")
        bar = _progress(total, total - len(tasks), self.progress)
        self._submitted = {executor.submit(run_case, task): task.spec.id for task in tasks}
        pending: set[Future[CaseResult]] = set(self._submitted)
        new_rows, last_tables = 0, time.monotonic()
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    new_rows += self._store_result(future, ctx)
                    bar.update(1)
                if _STOP.is_set():
                    for future in pending:
                        future.cancel()
                    for pool in list(_POOLS.values()):
                        pool.kill_all()
                    for future in wait(pending).done:  # the in-flight cases end as Cancelled, or finished
                        new_rows += self._store_result(future, ctx)
                    return new_rows, True
                if time.monotonic() - last_tables > TABLES_EVERY_S:
                    self.store.write_tables(self._all_rows())
                    last_tables = time.monotonic()
            return new_rows, False
        finally:
            bar.close()
            if own:
                executor.shutdown(wait=True, cancel_futures=True)

    def _store_result(self, future: Future[CaseResult], ctx: RowContext) -> int:
        case_id = self._submitted.pop(future, "?")  # dropped so a cluster may forget the finished task
        if future.cancelled():
            return 0
        try:
            result = future.result()
        except Cancelled:
            return 0
        except Exception as exc:  # a bug on refconv's side (the reference, say): report it, keep the run going
            self.errors.append(f"{case_id}: {error_text(exc)}")
            print(f"refconv run: internal error on case {case_id}: {error_text(exc)}", file=sys.stderr)
            return 0
        result = self._unstored(result)
        if not result.answers:
            return 0
        rows = build_rows(result, ctx)
        finish_rows(self.store.dir, result, rows)
        self.store.append(rows)
        self._stored.update((result.spec.id, answer.label) for answer in result.answers)
        return len(rows)

    def _unstored(self, result: CaseResult) -> CaseResult:
        """The result without answers already stored (a cluster may deliver a rerun task's result again)."""
        fresh = [a for a in result.answers if (result.spec.id, a.label) not in self._stored]
        if len(fresh) == len(result.answers):
            return result
        return CaseResult(result.spec, fresh, result.where, result.adapter_info)

    def _all_rows(self) -> list[dict[str, Any]]:
        """Stored rows, one per (case, adapter) (the first stored wins), in case order then adapter order."""
        case_order = {case_id: i for i, (case_id, _) in enumerate(self.config.cases)}
        label_order = {label: i for i, label in enumerate(self.config.adapters)}
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.store.rows():
            unique.setdefault((row["case_id"], row["adapter"]), row)
        return sorted(unique.values(), key=lambda r: (case_order.get(r["case_id"], len(case_order)),
                                                      label_order.get(r["adapter"], len(label_order))))


def _hosts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct (host, worker, cpu_model) with row counts when a cluster ran the rows; [] for a local run."""
    counts: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (str(row.get("host", "")), str(row.get("worker", "")), str(row.get("cpu_model", "")))
        counts[key] = counts.get(key, 0) + 1
    if all(not worker for _, worker, _ in counts):
        return []
    return [{"host": h, "worker": w, "cpu_model": c, "rows": n} for (h, w, c), n in sorted(counts.items())]


def _progress(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when asked for and stderr is a terminal; a no-op otherwise."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="case", file=sys.stderr, dynamic_ncols=True)
    return _NoBar()


class _NoBar:
    def update(self, n: int) -> None:
        """No bar."""

    def close(self) -> None:
        """No bar."""


def _install_sigint() -> Any:
    """Ctrl-C sets the stop flag instead of raising somewhere in the middle of a write."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        _STOP.set()

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def stop() -> None:
    """Ask a running Runner to stop as Ctrl-C would (for embedding and tests)."""
    _STOP.set()


def resume_hint(run_dir: Path) -> str:
    return f"refconv run --resume {os.fspath(run_dir)}"
