"""Schedule a run: batches of cases through the adapters' workers, every row stored as its case finishes.

The parts of a run, one job each (docs/architecture.md):
- this module schedules: the run's configuration, which (case, adapter) pairs are missing, batches,
  the executor, progress, Ctrl-C, provenance, the summary;
- `refconv.batch` is the main side of the worker protocol: the reference once per case, one message per
  batch to every adapter's worker, per-case crash and timeout isolation (`run_batch`, `evaluate`, `pool_for`);
- `refconv.worker` / `refconv.serve` are the worker side: processes, and what a worker does with a case
  (inputs, call, timings, comparison);
- `refconv.results` turns answers into rows, repro scripts and warnings.json; `refconv.store` writes them.

The executor seam. `Runner(..., executor=...)` accepts anything with the `concurrent.futures.Executor`
interface (`submit(fn, *args) -> Future`, `shutdown(wait=...)`). The runner submits
`run_batch(task: BatchTask) -> [CaseResult]` once per batch: a module-level function whose argument and
result are plain picklable data (frozen ConvSpecs, labels, numbers, Comparison records; no arrays), and
whose worker processes come from a per-process registry (`pool_for`). So a cluster executor can replace
the default `ThreadPoolExecutor(--workers)`: each cluster process then keeps its own adapter workers.
Storage, repro scripts and known-deviation matching stay in the main process, which owns the run directory.

A `Cluster` (`refconv.distributed.DaskCluster`, `refconv run --dask`) supplies both the executor and the
adapters' versions and settings, asked on its workers instead of in this process. Each CaseResult carries the
host columns and adapter settings of the process that ran it, so every row names where it was made. A
(case, adapter) pair is stored once: a result that arrives again (a task rerun after its worker died) is dropped.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from refconv import ops, provenance
from refconv.batch import (
    MAX_BATCH,
    STOP,
    Answer,
    BatchTask,
    Cancelled,
    CaseResult,
    CaseTask,
    Prefetch,
    all_pools,
    close_pools,
    evaluate,
    evaluate_batch,
    forget_prefetched,
    pool_for,
    run_batch,
    run_case,
)
from refconv.errors import UsageError
from refconv.pool import Pool
from refconv.results import NO_REPRO, RowContext, WarningLog, build_rows, finish_rows, timing_columns
from refconv.spec import ConvSpec
from refconv.store import RunStore
from refconv.worker import WorkerLoadError, error_text, set_default_log_dir

__all__ = [
    "NO_REPRO", "Answer", "BatchTask", "Cancelled", "CaseResult", "CaseTask", "Cluster", "RowContext", "RunConfig",
    "RunSummary", "Runner", "build_rows", "close_pools", "evaluate", "evaluate_batch", "finish_rows", "new_run_id",
    "ops", "pool_for", "resume_hint", "run_batch", "run_case", "stop", "timing_columns",
]

TABLES_EVERY_S = 30.0  # rewrite results.csv/.parquet this often while running (rows.jsonl is always current)
BATCHES_PER_WORKER = 4  # at least this many batches per concurrent worker: the last ones finish together
LOGS_DIR = "logs"


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


class Cluster(Protocol):
    """Where a run executes when not in this process: an executor plus its workers' adapter info."""

    def start(self, labels: tuple[str, ...], isolation: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Load the adapters on the workers: ({label: version and settings}, cluster provenance)."""
        ...

    def executor(self) -> Executor:
        """The executor the cases are submitted to."""
        ...


def batch_size(cases: int, parallel: int) -> int:
    """Cases per batch: BATCHES_PER_WORKER batches per concurrent worker at least, MAX_BATCH at most."""
    return max(1, min(MAX_BATCH, math.ceil(cases / (max(1, parallel) * BATCHES_PER_WORKER))))


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
                 progress: bool = False, argv: list[str] | None = None, cluster: Cluster | None = None,
                 verbose: bool = False) -> None:
        self.store, self.config, self.executor, self.cluster = store, config, executor, cluster
        self.progress, self.verbose = progress, verbose
        self.argv = argv if argv is not None else list(sys.argv)
        self.errors: list[str] = []
        self.parallel = max(1, config.workers)  # batches in flight at once (a cluster's worker count)
        self._submitted: dict[Future[list[CaseResult]], str] = {}
        self._stored: set[tuple[str, str]] = set()
        self._warnings = WarningLog(store.dir, verbose)

    def tasks(self, done: set[tuple[str, str]]) -> list[BatchTask]:
        """The missing (case, adapter) pairs in batches, in run order."""
        cfg, cases = self.config, []
        for spec in cfg.specs():
            missing = tuple(label for label in cfg.adapters if (spec.id, label) not in done)
            if missing:
                cases.append((spec, missing))
        size = batch_size(len(cases), self.parallel)
        return [BatchTask(tuple(cases[i:i + size]), tuple(cfg.adapters), cfg.repeats, cfg.case_timeout, cfg.isolation)
                for i in range(0, len(cases), size)]

    def _start_workers(self) -> tuple[Pool | None, dict[str, dict[str, Any]], dict[str, Any]]:
        """(local pool or None, adapter info, cluster provenance or {}); a failing adapter is a UsageError."""
        labels = tuple(self.config.adapters)
        if self.cluster is not None:  # the adapters live on the cluster's workers, maybe not here at all
            info, cluster_prov = self.cluster.start(labels, self.config.isolation)
            self.executor = self.cluster.executor()
            self.parallel = max(1, len(cluster_prov.get("workers", {})))
            return None, info, cluster_prov
        pool = pool_for(labels, self.config.isolation)
        pool.log_dir = self.store.dir / LOGS_DIR  # the workers' output goes there, not to the terminal
        set_default_log_dir(pool.log_dir)  # and that of workers started for witnesses or relations
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
            self.store.check_resume(old, prov)  # other adapter or refconv versions: refused unless --force
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
        done = {(r["case_id"], r["adapter"]) for r in self.store.rows() if not r.get("relation")}  # not relation rows
        self._stored = set(done)
        tasks = self.tasks(done)
        ahead = None if self.cluster is not None else Prefetch([spec for t in tasks for spec, _ in t.cases]).start()
        try:
            pool, info, cluster_prov = self._start_workers()
        finally:
            if ahead is not None:  # stopped before the first timed call: the rest are computed under the timing lock
                ahead.stop()
                if sys.exc_info()[0] is not None:
                    forget_prefetched()
        prov = self._provenance(info)
        if cluster_prov:
            prov["cluster"] = cluster_prov
            self.store.write_json("provenance.json", prov)
        ctx = RowContext(cfg.run_id, info, provenance.row_columns(prov))
        STOP.clear()
        new_rows, interrupted = 0, False
        previous = _install_sigint()
        try:
            new_rows, interrupted = self._drive(tasks, ctx, len(cfg.cases) * len(cfg.adapters), len(done))
        finally:
            _restore_sigint(previous)
            if interrupted and pool is not None:
                pool.kill_all()
            forget_prefetched()
            self.store.close()
        rows = self._all_rows()
        paths = self.store.write_tables(rows)
        warnings_path = self._warnings.write()
        if warnings_path is not None:
            paths.append(warnings_path)
        hosts = _hosts(rows)
        if hosts:
            prov["hosts"] = hosts
        prov["finished_utc"] = "" if interrupted else provenance.utc_now()
        prov["interrupted"] = interrupted
        prov["main_process_frameworks"] = provenance.main_process_frameworks()
        paths.append(self.store.write_json("provenance.json", prov))
        close_pools()
        return RunSummary(self.store.dir, rows, new_rows, interrupted, paths, list(self.errors))

    def _drive(self, tasks: list[BatchTask], ctx: RowContext, total: int, done: int) -> tuple[int, bool]:
        own = self.executor is None  # a caller's executor (a cluster client's, say) is the caller's to shut down
        executor = self.executor or ThreadPoolExecutor(max(1, self.config.workers), thread_name_prefix="refconv-batch")
        bar = _progress(total, done, self.progress)
        self._submitted = {executor.submit(run_batch, task): task.cases[0][0].id for task in tasks}
        pending: set[Future[list[CaseResult]]] = set(self._submitted)
        new_rows, last_tables = 0, time.monotonic()
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    stored = self._store_results(future, ctx)
                    new_rows += stored
                    bar.update(stored)
                if STOP.is_set():
                    for future in pending:
                        future.cancel()
                    for pool in all_pools():
                        pool.kill_all()
                    for future in wait(pending).done:  # the in-flight batches end as Cancelled, or finished
                        new_rows += self._store_results(future, ctx)
                    return new_rows, True
                if time.monotonic() - last_tables > TABLES_EVERY_S:
                    self.store.write_tables(self._all_rows())
                    last_tables = time.monotonic()
            return new_rows, False
        finally:
            bar.close()
            if own:
                executor.shutdown(wait=True, cancel_futures=True)

    def _store_results(self, future: Future[list[CaseResult]], ctx: RowContext) -> int:
        """Store a finished batch's rows; the number of rows stored."""
        case_id = self._submitted.pop(future, "?")  # dropped so a cluster may forget the finished task
        if future.cancelled():
            return 0
        try:
            results = future.result()
        except Cancelled:
            return 0
        except Exception as exc:  # a bug on refconv's side: report it, keep the run going
            self._internal_error(f"batch from {case_id}", error_text(exc))
            return 0
        return sum(self._store_result(result, ctx) for result in results)

    def _internal_error(self, what: str, error: str) -> None:
        self.errors.append(f"{what}: {error}")
        print(f"refconv run: internal error on case {what}: {error}", file=sys.stderr)

    def _store_result(self, result: CaseResult, ctx: RowContext) -> int:
        if result.error:  # the reference failed, say: no rows, --resume retries the case
            self._internal_error(result.spec.id, result.error)
            return 0
        result = self._unstored(result)
        if not result.answers:
            return 0
        self._warnings.add(result)  # after dropping a result delivered twice, so nothing is counted twice
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
        return CaseResult(result.spec, fresh, result.where, result.adapter_info, result.error)

    def _all_rows(self) -> list[dict[str, Any]]:
        """Stored rows, one per (case, adapter) (the first stored wins), in case order then adapter order."""
        case_order = {case_id: i for i, (case_id, _) in enumerate(self.config.cases)}
        label_order = {label: i for i, label in enumerate(self.config.adapters)}
        unique: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in self.store.rows():  # relation rows (refconv.relations_run) are keyed by their relation too
            unique.setdefault((row["case_id"], row["adapter"], row.get("relation") or ""), row)
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
    """A tqdm bar of rows on stderr (rows/s, ETA) when asked for and stderr is a terminal; a no-op otherwise."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="row", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
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
        STOP.set()

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def stop() -> None:
    """Ask a running Runner to stop as Ctrl-C would (for embedding and tests)."""
    STOP.set()


def resume_hint(run_dir: Path) -> str:
    return f"refconv run --resume {os.fspath(run_dir)}"
