"""The main side of the worker protocol: a batch of cases through every adapter's worker at once.

`evaluate_batch` computes each case's float64 reference and bound once (`ops.reference`, in this
process), pickles the batch once ([(case id, expected, bound)], repeats, keep) and sends the same bytes
to every adapter's worker; the workers rebuild the inputs from the case ids, run and compare there, and
stream back one compact `Reply` per case. Why the reference is computed here and shipped (not computed
in each worker, not in shared memory): see docs/architecture.md, "The worker protocol".

Isolation keeps its meaning per case: a worker that dies in the middle of a batch gives a `crashed`
answer for the case in flight, one that stays silent for `case_timeout` seconds on one case a `timeout`
answer (it is killed), and the rest of its batch is sent again to a fresh worker. A crash counts against a
case only when the case crashes a worker that ran nothing before it: a worker that had run other cases is
replaced and the case is run again first, alone, because an earlier case may have broken the process
(TensorFlow's filter gradient of some empty outputs writes garbage and the process dies on a later case).
If it then answers, that answer is its row, with a note in its warnings.

`run_batch(BatchTask) -> [CaseResult]` is what an executor (a thread pool, a Dask cluster) runs: plain
picklable data in and out, worker processes from this process's registry (`pool_for`).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_connections
from typing import Any

import numpy as np

from refconv import ops, provenance
from refconv.compare import Comparison
from refconv.pool import Pool
from refconv.serve import Reply, TimingLock, error_text, failed
from refconv.spec import ConvSpec
from refconv.worker import InProcessHandle, WorkerCrashed, WorkerHandle, WorkerLoadError, WorkerTimeout

MAX_BATCH = 64  # cases per batch at most: progress and Ctrl-C granularity against per-message overhead
FEED_CHUNK = 8  # cases per message: the next chunk's references are computed while the workers run this one
PREFETCH_BYTES = 256 * 2**20  # references computed while the workers start: their arrays' total size at most


@dataclass
class Answer:
    """One adapter's verdict on one case, with its timings (ms) and, on request, its output array."""

    label: str
    comparison: Comparison
    times_ms: list[float] = field(default_factory=list)
    actual: np.ndarray | None = None
    warnings: list[tuple[str, str, int]] = field(default_factory=list)  # (category, message, count)
    isa: str = ""  # the kernels the adapter reported for this case ('' : its worker's general answer applies)


@dataclass
class CaseResult:
    """One case's answers, with the host columns and adapter info of the process that ran it."""

    spec: ConvSpec
    answers: list[Answer]
    where: dict[str, Any] = field(default_factory=dict)  # provenance.host_columns() of the running process
    adapter_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> version, settings there
    error: str = ""  # refconv itself failed on this case (the reference, say): no answers, --resume retries


@dataclass(frozen=True)
class BatchTask:
    """Cases for some adapters: what an executor ships to `run_batch` (ids and labels, no arrays)."""

    cases: tuple[tuple[ConvSpec, tuple[str, ...]], ...]  # (spec, the adapters still to run on it)
    run_labels: tuple[str, ...]  # every adapter of the run: the key of the worker pool
    repeats: int = 3
    case_timeout: float = 60.0
    isolation: bool = True


@dataclass(frozen=True)
class CaseTask:
    """One case for some adapters (the one-case form of BatchTask, kept for callers of `run_case`)."""

    spec: ConvSpec
    labels: tuple[str, ...]
    run_labels: tuple[str, ...]
    repeats: int = 3
    case_timeout: float = 60.0
    isolation: bool = True


class Cancelled(Exception):
    """The run is stopping (Ctrl-C): the batch's unfinished answers are dropped, --resume redoes them."""


class Prefetch:
    """References computed ahead, in a thread, while the workers import their frameworks.

    Nothing is timed yet then, so the timing lock is not needed and the main process is otherwise idle
    (a torch worker's start is 2 s); `_feed` takes these instead of computing them under the lock, between
    the workers' timed calls. Stopped (`stop`) before the first batch; at most PREFETCH_BYTES are kept, and
    `forget` drops what a run did not use. A case whose reference fails is left to `_feed`, which records why.
    """

    def __init__(self, specs: Sequence[ConvSpec], budget_bytes: int = PREFETCH_BYTES) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(list(specs), budget_bytes), daemon=True,
                                        name="refconv-prefetch")
        self.computed = 0

    def start(self) -> Prefetch:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop after the reference in progress; the number computed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.computed

    def _work(self, specs: list[ConvSpec], budget: int) -> None:
        for spec in specs:
            if self._stop.is_set() or budget <= 0:
                return
            try:
                expected, bound = ops.reference(spec, ops.inputs(spec))
            except Exception:  # _feed computes it again and keeps the error on the case's result
                continue
            budget -= expected.nbytes + bound.nbytes
            with _PREFETCH_LOCK:
                _PREFETCHED[spec.id] = (expected, bound)
            self.computed += 1


_PREFETCHED: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_PREFETCH_LOCK = threading.Lock()


def _prefetched(spec: ConvSpec) -> tuple[np.ndarray, np.ndarray] | None:
    with _PREFETCH_LOCK:
        return _PREFETCHED.pop(spec.id, None)


def forget_prefetched() -> None:
    """Drop references computed ahead and not used (a run that stopped early)."""
    with _PREFETCH_LOCK:
        _PREFETCHED.clear()


_POOLS: dict[tuple[tuple[str, ...], bool], Pool] = {}
_POOLS_LOCK = threading.Lock()
STOP = threading.Event()


def pool_for(labels: Iterable[str], isolation: bool = True) -> Pool:
    """This process's worker pool for a set of adapter labels (created once)."""
    key = (tuple(labels), isolation)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = Pool(key[0], isolation)
        return _POOLS[key]


def all_pools() -> list[Pool]:
    """Every pool of this process (Ctrl-C kills their workers)."""
    with _POOLS_LOCK:
        return list(_POOLS.values())


def close_pools() -> None:
    """Stop every worker process of this process (the known deviations' toggle variants included)."""
    from refconv.witness import close_shared

    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
    close_shared()


@dataclass
class _Stream:
    """One adapter's share of a batch: the cases sent and not yet answered, and those still to send."""

    label: str
    handle: WorkerHandle
    todo: list[int]  # case indices not sent yet, in order
    pending: list[int] = field(default_factory=list)  # sent, answered in this order
    deadline: float = 0.0
    ran_others: bool = True  # may the worker have run other cases? (unknown for one alive before the batch)
    last: tuple[int, str] | None = None  # the last (case, label) its worker answered in this batch


def evaluate_batch(cases: Sequence[tuple[ConvSpec, Sequence[str]]], pool: Pool, repeats: int = 3,
                   case_timeout: float = 60.0, keep_arrays: bool = False,
                   references: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None) -> list[CaseResult]:
    """One CaseResult per case, answers in the order of its labels; raises Cancelled when the run is stopping."""
    run = _BatchRun(cases, pool, repeats, case_timeout, keep_arrays, references)
    run.drive()
    return run.finish()


class _BatchRun:
    """One batch through every adapter's worker: references fed chunk by chunk, replies collected as they come.

    The references of the next chunk are computed while the workers run the previous one (holding the pool's
    timing lock, so never during an adapter's timed calls); each chunk is one message per worker.
    """

    def __init__(self, cases: Sequence[tuple[ConvSpec, Sequence[str]]], pool: Pool, repeats: int,
                 case_timeout: float, keep: bool,
                 references: Sequence[tuple[np.ndarray, np.ndarray] | None] | None) -> None:
        self.cases, self.repeats, self.timeout, self.keep = cases, repeats, case_timeout, keep
        self.results = [CaseResult(spec, []) for spec, _ in cases]
        self.refs: list[Any] = list(references) if references is not None else [None] * len(cases)
        self.fed = len(cases) if references is not None else 0  # cases whose reference is computed
        self.replies: dict[tuple[int, str], Reply] = {}
        self.lock = TimingLock(pool.timing_lock_path())
        self.streams: list[_Stream] = []
        self.retried: dict[tuple[int, str], str] = {}  # (case, label) rerun alone after a crash -> that crash
        self.here: list[tuple[InProcessHandle, list[int]]] = []
        by_label: dict[str, list[int]] = {}
        for i, (_, labels) in enumerate(cases):
            for label in labels:
                by_label.setdefault(label, []).append(i)
        for label, indices in by_label.items():
            handle = pool.handle(label)
            if isinstance(handle, InProcessHandle):
                self.here.append((handle, indices))
            else:
                self.streams.append(_Stream(label, handle, indices))

    def drive(self) -> None:
        """Feed and collect until every stream is answered."""
        chunk = len(self.cases) if self.keep or self.here else FEED_CHUNK  # outputs kept: one message, no queue
        self._feed(chunk)
        for handle, indices in self.here:
            self._serve_here(handle, indices)
        while any(s.pending or s.todo for s in self.streams):
            if STOP.is_set():
                raise Cancelled(self.results[0].spec.id)
            needy = [s for s in self.streams if s.todo]
            if self.fed < len(self.cases) and (not needy or min(len(s.pending) for s in needy) <= chunk):
                self._feed(chunk)  # keep every worker's next chunk queued behind its current one
                continue
            self._collect_ready()

    def finish(self) -> list[CaseResult]:
        for i, (_, labels) in enumerate(self.cases):
            if self.refs[i] is not None:
                self.results[i].answers = [_answer(label, self.replies[(i, label)]) for label in labels]
        return self.results

    def _feed(self, count: int) -> None:
        """Compute the next `count` references and send the streams their cases among them."""
        indices = range(self.fed, min(self.fed + count, len(self.cases)))
        for i in indices:
            self.refs[i] = _prefetched(self.results[i].spec)
        todo = [i for i in indices if self.refs[i] is None]
        if todo:
            with self.lock.held():
                for i in todo:
                    self.refs[i] = _reference(self.results[i])
        self.fed = indices.stop
        blobs: dict[tuple[int, ...], bytes] = {}  # adapters that run the same cases share one pickled message
        for stream in self.streams:
            take = [i for i in stream.todo if i < self.fed]
            stream.todo = stream.todo[len(take):]
            ready = [i for i in take if self.refs[i] is not None]  # no reference: an error, no answers
            if ready:
                if tuple(ready) not in blobs:
                    blobs[tuple(ready)] = self._message(ready)
                self._send(stream, ready, blobs[tuple(ready)])

    def _message(self, indices: list[int]) -> bytes:
        items = [(self.results[i].spec.id, *self.refs[i]) for i in indices]
        return pickle.dumps(("batch", items, self.repeats, self.keep), protocol=pickle.HIGHEST_PROTOCOL)

    def _send(self, stream: _Stream, indices: list[int], blob: bytes, idle_deaths: int = 0) -> None:
        """Queue cases on a stream's worker; one that cannot be (re)started fails all its cases as crashed."""
        while stream.pending and not stream.handle.alive:  # it died with cases in flight: settle them first
            self._take(stream)  # its last replies, then the crash of the case in flight; the rest goes to a fresh one
        try:
            stream.handle.send_batch(blob)
        except WorkerLoadError as exc:  # a restart after a crash failed to load the adapter again
            self._fail_all(stream, indices, str(exc))
            return
        except (WorkerCrashed, WorkerTimeout, OSError) as exc:  # died between messages, or on its way up
            if isinstance(stream.handle, WorkerHandle) and (stream.pending or not idle_deaths):
                # it was dying while this message went out (a broken pipe): with cases in flight, settle those as
                # above, from the replies it sent and its death (each such death settles a case, so this ends);
                # with none, it died after its last answer (a case that broke the process): say so on that case,
                # once. Then this message goes to its successor, which may die in turn on a case in flight.
                if stream.pending:
                    self._settle_dead(stream)
                else:
                    self._note_death(stream, stream.handle.reap())
                    idle_deaths += 1
                self._send(stream, indices, blob, idle_deaths)
                return
            stream.handle.kill()
            self._fail_all(stream, indices, f"{stream.label} worker: {error_text(exc)}")
            return
        if not stream.pending:
            stream.deadline = time.monotonic() + self.timeout
        stream.pending.extend(indices)

    def _settle_dead(self, stream: _Stream) -> None:
        """Take what a dead worker answered, then its death (`_lost` sends the rest on to a fresh worker)."""
        dead = stream.handle.connection
        for _ in range(len(stream.pending)):
            if not stream.pending or stream.handle.connection is not dead:
                return
            self._take(stream)

    def _note_death(self, stream: _Stream, how: str) -> None:
        stream.ran_others = False
        if stream.last is not None and stream.last in self.replies:
            self.replies[stream.last].warnings.append(
                ("RefconvNote", f"the {stream.label} worker {how} after answering this case, before the next case "
                 "reached it", 1))

    def _fail_all(self, stream: _Stream, indices: list[int], error: str) -> None:
        for i in [*stream.pending, *indices, *stream.todo]:
            if i < self.fed and self.refs[i] is not None:
                self.replies[(i, stream.label)] = self._failed(i, "crashed", error)
        stream.pending, stream.todo = [], [i for i in stream.todo if i >= self.fed]
        # cases not fed yet are sent later, to a fresh attempt at starting the worker

    def _failed(self, i: int, kind: str, error: str) -> Reply:
        expected = self.refs[i][0]
        return Reply(failed(kind, self.results[i].spec, error, expected.shape, expected.size))

    def _collect_ready(self) -> None:
        """Wait for replies (at most until the nearest deadline) and take them; overdue workers are killed."""
        active = [s for s in self.streams if s.pending]
        if not active:
            return
        wait_s = max(0.0, min(min(s.deadline for s in active) - time.monotonic(), 0.5))
        ready = set(wait_connections([s.handle.connection for s in active], timeout=wait_s))
        for stream in active:
            began = time.monotonic()
            if stream.handle.connection in ready:
                self._take(stream)
            elif began >= stream.deadline:
                stream.handle.kill()
                error = (f"{stream.label} worker did not answer within {self.timeout:g} s "
                         f"(case {self.results[stream.pending[0]].spec.id}); killed")
                self._lost(stream, WorkerTimeout(error))
            blocked = time.monotonic() - began
            if blocked > 0.05:  # restarting one worker (a framework import) does not count against the others
                for other in active:
                    if other is not stream:
                        other.deadline += blocked

    def _take(self, stream: _Stream) -> None:
        """Read the reply the stream's worker has ready (or its death)."""
        i = stream.pending[0]
        try:
            _, reply = stream.handle.receive_case(self.timeout, f"case {self.results[i].spec.id}")
        except (WorkerCrashed, WorkerTimeout) as exc:
            self._lost(stream, exc)
            return
        key = (stream.pending.pop(0), stream.label)  # a worker answers its cases in order
        if key in self.retried:
            reply.warnings.append(("RefconvNote", f"the {stream.label} worker crashed on this case after running other "
                                   f"cases ({self.retried[key]}); run again alone in a fresh worker, it gave this "
                                   "answer", 1))
        self.replies[key] = reply
        stream.ran_others, stream.last = True, key
        stream.deadline = time.monotonic() + self.timeout

    def _lost(self, stream: _Stream, exc: Exception) -> None:
        """The case in flight ends crashed or timed out; the rest sent to that worker goes to a fresh one."""
        i = stream.pending.pop(0)
        if STOP.is_set():  # killed by our own Ctrl-C handling, not by the framework
            raise Cancelled(self.results[i].spec.id)
        rest, stream.pending = stream.pending, []
        crashed, ran_others, stream.ran_others = isinstance(exc, WorkerCrashed), stream.ran_others, False
        if crashed and ran_others and (i, stream.label) not in self.retried:
            self.retried[(i, stream.label)] = str(exc)  # an earlier case may have broken it: this one again, alone
            self._send(stream, [i], self._message([i]))
        else:
            error = str(exc)
            if (i, stream.label) in self.retried:
                error += f"; it crashed a worker that had run other cases first too ({self.retried[(i, stream.label)]})"
            self.replies[(i, stream.label)] = self._failed(i, "crashed" if crashed else "timeout", error)
        if rest:
            self._send(stream, rest, self._message(rest))

    def _serve_here(self, handle: InProcessHandle, indices: list[int]) -> None:
        for i in indices:
            if STOP.is_set():
                raise Cancelled(self.results[i].spec.id)
            if self.refs[i] is not None:
                expected, bound = self.refs[i]
                self.replies[(i, handle.label)] = handle.serve_case(self.results[i].spec.id, expected, bound,
                                                                    self.repeats, self.keep)


def _reference(result: CaseResult) -> tuple[np.ndarray, np.ndarray] | None:
    """The case's (expected, bound), or None with the error kept on the result (a bug on refconv's side)."""
    try:
        return ops.reference(result.spec, ops.inputs(result.spec))
    except Exception as exc:
        result.error = error_text(exc)
        return None


def _answer(label: str, reply: Reply) -> Answer:
    return Answer(label, reply.comparison, list(reply.times_ms), reply.output, list(reply.warnings), reply.isa)


def evaluate(spec: ConvSpec, labels: Iterable[str], pool: Pool, repeats: int = 3, case_timeout: float = 60.0,
             keep_arrays: bool = False) -> tuple[np.ndarray, np.ndarray, list[Answer]]:
    """(expected, bound, one Answer per label) for one case; raises Cancelled when the run is stopping."""
    expected, bound = ops.reference(spec, ops.inputs(spec))
    (result,) = evaluate_batch([(spec, tuple(labels))], pool, repeats, case_timeout, keep_arrays,
                               references=[(expected, bound)])
    return expected, bound, result.answers


def run_batch(task: BatchTask) -> list[CaseResult]:
    """The unit of work an executor runs: a batch of cases through the adapters named for each."""
    pool = pool_for(task.run_labels, task.isolation)
    results = evaluate_batch(task.cases, pool, task.repeats, task.case_timeout)
    where = provenance.host_columns()
    for result, (_, labels) in zip(results, task.cases, strict=True):
        info = {label: pool.handle(label).info for label in labels}
        result.where = where
        result.adapter_info = {k: v for k, v in info.items() if v}
    return results


def run_case(task: CaseTask) -> CaseResult:
    """One case (the one-case form of `run_batch`)."""
    batch = BatchTask(((task.spec, task.labels),), task.run_labels, task.repeats, task.case_timeout, task.isolation)
    (result,) = run_batch(batch)
    if result.error:
        raise RuntimeError(result.error)
    return result
