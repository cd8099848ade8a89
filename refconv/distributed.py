"""Sweeps on a Dask cluster: `refconv run --dask tcp://scheduler:8786` sends batches of cases to Dask workers.

The runner stays as it is: `DaskCluster` plugs into its executor seam (`Runner(..., cluster=...)`). Each
Dask worker process runs `refconv.batch.run_batch` on a batch of cases and keeps its own crash-isolated
adapter worker processes (`refconv.runner.pool_for`), so a framework that aborts on a remote machine still
becomes a `crashed` row. The main process keeps the run directory: rows stream back as batches finish and
are written exactly as in a local run, and --resume works the same. The relations phase then sends one task
per (case, adapter) through the same executor (`refconv.relations_run.check_remote`). The adapter workers
of a Dask worker write their output to that Dask worker's stderr (its log), not to the run directory.

Faults. A task whose Dask worker dies is rerun elsewhere by the scheduler. A result is fetched as soon as
its task finishes and the task is then released, so a worker that dies later costs no finished work; the
runner stores each (case, adapter) pair once, so a result delivered twice is dropped there. A task the
cluster gives up on (KilledWorker after repeated deaths, a lost scheduler) fails its case with an error the
runner reports; `refconv run --resume` runs it again.

Fleets. Workers may differ in hardware (another CPU, oneDNN capped by ONEDNN_MAX_CPU_ISA in a worker's
environment): every row carries the `isa` its case ran on and the `cpu_features` of the worker that ran it,
and provenance.json's `cluster.varies` names the adapters whose version, settings or kernels differ between
workers. A worker's hardware kind for an adapter is (its `isa`, its `cpu_features`); `DaskCluster.each_kind`
runs a case on one worker of every kind, side by side, which is how `refconv hunt --dask` tells a hardware
condition from a case condition.

Dask workers must not be daemon processes, because a daemon process may not start child processes (refconv's
adapter workers): start them with DASK_DISTRIBUTED__WORKER__DAEMON=False (docs/cluster.md).
`distributed` is imported only here, only when --dask is given; it is the optional extra `refconv[dask]`.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Executor, Future
from types import ModuleType
from typing import TYPE_CHECKING, Any

from refconv.errors import UsageError

if TYPE_CHECKING:
    from refconv.batch import CaseResult
    from refconv.spec import ConvSpec

CONNECT_TIMEOUT_S = 10.0  # an unreachable scheduler is reported after this long
WORKERS_TIMEOUT_S = 60.0  # how long a scheduler without workers is waited for
LOAD_SLACK_S = 60.0  # on top of refconv.worker.LOAD_TIMEOUT_S for the adapter check on every worker
EXTRA = "pip install 'refconv[dask]'"
DAEMON_FIX = "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (see docs/cluster.md)"

_STARTED: dict[tuple[tuple[str, ...], bool], dict[str, dict[str, Any]]] = {}  # per Dask worker process
_STARTED_LOCK = threading.Lock()


def import_distributed() -> ModuleType:
    """The `distributed` package, or a UsageError naming the extra that installs it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--dask needs the Dask 'distributed' package, which is not installed: {EXTRA}") from None
    return distributed


def connect(address: str, timeout: float | None = None) -> DaskCluster:
    """A client of the scheduler at `address`; UsageError when it cannot be reached within `timeout` s."""
    distributed = import_distributed()
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    _check_address(distributed, address)
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address: all one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s: {reason}") from None
    return DaskCluster(address, client)


def _check_address(distributed: ModuleType, address: str) -> None:
    """Refuse a malformed address up front (a Client built from one hangs for 20 s on its way out)."""
    try:
        scheme, location = distributed.comm.parse_address(address)
        if scheme in ("tcp", "tls"):
            distributed.comm.addressing.parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--dask wants a scheduler address like tcp://HOST:8786, got {address!r}: {exc}") from None


class DaskExecutor(Executor):
    """A concurrent.futures executor over a Dask client: each result is fetched, then its task released.

    Unlike `Client.get_executor()`, a finished task does not stay in cluster memory while the run goes on,
    so a worker that dies later is not asked to recompute work whose row is already on disk.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._running: set[Any] = set()
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run fn(*args, **kwargs) on the cluster (pure=False: every submission is its own task)."""
        if self._shutdown:
            raise RuntimeError("cannot submit to a DaskExecutor after shutdown")
        done: Future[Any] = Future()
        task = self._client.submit(fn, *args, pure=False, **kwargs)
        with self._lock:
            self._running.add(task)
        done.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        task.add_done_callback(lambda t: self._deliver(t, done))
        return done

    def _deliver(self, task: Any, done: Future[Any]) -> None:
        """Copy the task's outcome into `done` (in the client's callback thread), then release the task."""
        try:
            if not done.set_running_or_notify_cancel():  # the runner cancelled it (Ctrl-C)
                return
            if task.status == "finished":
                done.set_result(task.result())
            elif task.status == "cancelled":  # not asked for by the runner: the cluster dropped it
                done.set_exception(RuntimeError(f"the Dask cluster cancelled task {task.key} (scheduler lost?)"))
            else:
                done.set_exception(task.exception())
        except BaseException as exc:  # fetching the result failed (connection lost, ...): the case's error
            if not done.done():
                done.set_exception(exc)
        finally:
            with self._lock:
                self._running.discard(task)
            task.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; cancel the unfinished ones when asked (the client is the caller's to close)."""
        self._shutdown = True
        if cancel_futures:
            with self._lock:
                running = list(self._running)
            if running:
                self._client.cancel(running)


class DaskCluster:
    """A connected Dask client as a `refconv.runner.Cluster`: checks the workers, then executes batches of cases."""

    def __init__(self, address: str, client: Any) -> None:
        self.address, self.client = address, client
        self._started: dict[tuple[tuple[str, ...], bool], tuple[dict[str, dict[str, Any]], dict[str, Any]]] = {}

    def executor(self) -> DaskExecutor:
        """A fresh executor over this client."""
        return DaskExecutor(self.client)

    def workers(self, timeout: float = WORKERS_TIMEOUT_S) -> list[str]:
        """The addresses of the scheduler's workers, waiting up to `timeout` s for the first one."""
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except Exception:
            raise UsageError(f"the Dask scheduler at {self.address} has no workers after {timeout:g} s; "
                             f"start some with: dask worker {self.address}") from None
        return sorted(self.client.ncores())  # {address: threads}, in every distributed version

    def start(self, labels: tuple[str, ...], isolation: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Load the adapters on every worker: ({label: info of the first worker}, cluster provenance).

        A worker that cannot run them (a missing framework, a daemon process) is a UsageError naming it.
        Asked once per label set: `refconv run` checks before it creates the run directory, the runner again.
        """
        key = (tuple(labels), isolation)
        if key not in self._started:
            self._started[key] = self._start(key[0], isolation)
        return self._started[key]

    def _start(self, labels: tuple[str, ...], isolation: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        from refconv.worker import LOAD_TIMEOUT_S

        addresses = self.workers()
        tasks = {address: self.client.submit(check_worker, labels, isolation, workers=[address],
                                             allow_other_workers=False, pure=False) for address in addresses}
        found: dict[str, dict[str, Any]] = {}
        for address, task in tasks.items():
            try:
                found[address] = task.result(timeout=LOAD_TIMEOUT_S + LOAD_SLACK_S)
            except Exception as exc:
                raise UsageError(f"Dask worker {address} did not check in: {type(exc).__name__}: {exc}") from None
            finally:
                task.release()
        for address, answer in found.items():
            if answer.get("error"):
                raise UsageError(f"Dask worker {address} ({answer['host']['host']}): {answer['error']}")
        first = found[addresses[0]]["adapters"]
        workers = {address: {**answer["host"], "adapters": answer["adapters"]} for address, answer in found.items()}
        return first, {"scheduler": self.address, "workers": workers, "varies": _varies(workers, labels)}

    def kinds(self, label: str, isolation: bool) -> dict[str, str]:
        """{hardware kind: the first worker with it} for one adapter (see `kind`); its workers are started.

        Asked again when a worker it named is gone (a restarted worker has a new address): a task pinned to a
        gone worker would wait for it until it timed out.
        """
        _, prov = self.start((label,), isolation)
        if not set(prov["workers"]) <= set(self.client.ncores()):
            self._started.pop(((label,), isolation), None)
            _, prov = self.start((label,), isolation)
        out: dict[str, str] = {}
        for address, worker in sorted(prov["workers"].items()):
            out.setdefault(kind(worker["adapters"].get(label, {})), address)
        return out

    def each_kind(self, spec: ConvSpec, labels: tuple[str, ...], kind_of: str, repeats: int, case_timeout: float,
                  isolation: bool) -> list[CaseResult]:
        """One case through `labels` on one worker of each hardware kind of adapter `kind_of`, side by side.

        A worker that gives no answer in time (died, lost) is left out: its kind says nothing on this case.
        """
        from refconv.batch import BatchTask, run_batch
        from refconv.worker import LOAD_TIMEOUT_S

        task = BatchTask(((spec, labels),), labels, repeats, case_timeout, isolation)
        # pinned: the point is which hardware answers, so the scheduler may not move the task elsewhere
        futures = {address: self.client.submit(run_batch, task, workers=[address], allow_other_workers=False,
                                               pure=False) for address in self.kinds(kind_of, isolation).values()}
        timeout = LOAD_TIMEOUT_S + LOAD_SLACK_S + case_timeout * len(labels)  # a new label set starts its workers
        results: list[CaseResult] = []
        try:
            for address, future in futures.items():
                try:
                    results += future.result(timeout=timeout)
                except Exception as exc:  # a lost worker: the other kinds still answer
                    future.cancel()
                    print(f"refconv: Dask worker {address} gave no answer on {spec.id}: {type(exc).__name__}: {exc}",
                          file=sys.stderr)
        finally:
            for future in futures.values():
                future.release()
        return results

    def close(self) -> None:
        """Disconnect the client (the cluster keeps running)."""
        self.client.close()


def kind(info: dict[str, Any]) -> str:
    """A worker's hardware kind for an adapter, from its hello info: 'onednn:avx2 on x86-64-v4 avx2 ...'."""
    return f"{info.get('isa', '')} on {info.get('cpu_features', '')}"


def _varies(workers: dict[str, dict[str, Any]], labels: tuple[str, ...]) -> list[str]:
    """Labels whose version, settings or hardware kind differ between workers (the rows then tell them apart)."""
    out = []
    for label in labels:
        seen = {(w["adapters"][label].get("version"), repr(w["adapters"][label].get("settings")),
                 kind(w["adapters"][label])) for w in workers.values()}
        if len(seen) > 1:
            out.append(label)
    return out


def check_worker(labels: tuple[str, ...], isolation: bool) -> dict[str, Any]:
    """Run on a Dask worker: start its adapter workers once; {'host', 'adapters', 'error'} for provenance."""
    import multiprocessing

    from refconv import provenance, runner
    from refconv.worker import WorkerLoadError

    host = provenance.host_provenance()
    if isolation and multiprocessing.current_process().daemon:
        return {"host": host, "adapters": {}, "error": "the worker is a daemon process, which cannot start "
                f"refconv's adapter worker processes; {DAEMON_FIX}, or run with --no-isolation"}
    key = (tuple(labels), isolation)
    with _STARTED_LOCK:  # once per process: a second run on the same cluster reuses the started workers
        if key not in _STARTED:
            pool = runner.pool_for(labels, isolation)
            try:
                _STARTED[key] = pool.start()
            except WorkerLoadError as exc:
                pool.close()
                return {"host": host, "adapters": {}, "error": str(exc)}
    return {"host": host, "adapters": _STARTED[key], "error": ""}
