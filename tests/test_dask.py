"""Sweeps on a Dask cluster: a real scheduler and two worker processes on 127.0.0.1, never another address.

The same rows locally and through the cluster (timings and host fields aside), a crash on a remote worker
as a `crashed` row, a Dask worker killed mid-run (no row lost, none duplicated), resume through the cluster,
and the one-line errors: distributed missing, scheduler unreachable, daemon workers.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from refconv import cases, runner
from refconv import distributed as refconv_dask  # imports Dask only when used
from refconv.cli import main as cli
from refconv.errors import UsageError
from refconv.report import hosts, normalize, outcomes_by_host
from refconv.report.render import html_report, markdown
from refconv.store import RunStore


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


needs_dask = pytest.mark.skipif(not _importable("distributed"),
                                reason="the Dask 'distributed' package is not installed (pip install 'refconv[dask]')")

LOOPBACK = "127.0.0.1"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CLUSTER_START_S = 60
FAKE = "fake_adapters:Faulty"
# Small edge cases with odd heights (5, 9) and even (4): the segv adapter crashes on the odd ones.
EDGE = ["n1-5x5x3-k1x1x4-s1x1-same-f32", "n1-4x4x1-k2x2x1-s2x2-same-f32", "n1-9x9x2-k3x3x3-s3x3-same-f32"]
# Columns that legitimately differ between a local and a cluster run of the same sweep.
WHERE_COLUMNS = {"time_ms", "time_min_ms", "time_median_ms", "gflops", "host", "cpu_model", "python",
                 "numpy_version", "refconv_version", "git_commit", "worker"}


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-thread worker processes on 127.0.0.1, closed at the end."""
    dask = pytest.importorskip("dask", reason="dask is not installed")
    distributed = pytest.importorskip("distributed", reason="the Dask 'distributed' package is not installed")
    # Non-daemon workers, so each may start refconv's adapter worker processes; the settings must hold for
    # as long as the cluster lives, because the nanny reads them again when it restarts a killed worker.
    # The nanny would set OMP/MKL/OPENBLAS_NUM_THREADS=1 for its workers (and in this process's environment):
    # unset here, so workers thread like the local runs they are compared with.
    settings = {"distributed.worker.daemon": False,
                **{f"distributed.nanny.pre-spawn-environ.{name}": None for name in THREAD_VARS}}
    environ = dict(os.environ)
    with dask.config.set(settings):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host=LOOPBACK,
                                         dashboard_address=None, timeout=CLUSTER_START_S)
        try:
            assert local.scheduler_address.startswith(f"tcp://{LOOPBACK}:")
            yield local
        finally:
            local.close(timeout=30)
            os.environ.clear()  # the nanny writes its pre-spawn variables into this process's environment
            os.environ.update(environ)


@pytest.fixture
def dask_cluster(cluster):
    """refconv's client of the module's cluster, disconnected after the test."""
    connected = refconv_dask.connect(cluster.scheduler_address, timeout=20)
    try:
        connected.client.wait_for_workers(2, timeout=CLUSTER_START_S)
        yield connected
    finally:
        connected.close()


def config(labels: list[str], case_ids: list[str], run_id: str = "dask-test") -> runner.RunConfig:
    return runner.RunConfig(run_id=run_id, selection="test", seed=0, adapters=labels,
                            cases=[[c, ""] for c in case_ids], repeats=1, case_timeout=30.0)


def run(path: Path, cfg: runner.RunConfig, cluster: Any = None) -> runner.RunSummary:
    return runner.Runner(RunStore.create(path), cfg, argv=["test"], cluster=cluster).run()


def comparable(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for row in rows:
        key = (row["case_id"], row["adapter"])
        assert key not in out, f"duplicate row {key}"
        out[key] = {k: v for k, v in row.items() if k not in WHERE_COLUMNS}
    return out


def stored_keys(run_dir: Path) -> list[tuple[str, str]]:
    return [(r["case_id"], r["adapter"]) for r in RunStore(run_dir).rows()]


def test_local_and_cluster_runs_give_the_same_rows_and_remote_crashes_become_crashed_rows(tmp_path, dask_cluster):
    ids = EDGE + [s.id for s in cases.select("random:10", seed=3)]
    segv = f"{FAKE}:mode=segv:on=odd"
    cfg = config(["numpy", segv], ids)
    local = run(tmp_path / "local", cfg)
    remote = run(tmp_path / "remote", config(["numpy", segv], ids), cluster=dask_cluster)
    assert not local.errors and not remote.errors
    assert comparable(local.rows) == comparable(remote.rows)
    assert len(remote.rows) == 2 * len(ids)
    by_key = {(r["case_id"], r["adapter"]): r for r in remote.rows}
    crashed = by_key[(EDGE[0], segv)]  # a SIGSEGV inside an adapter worker of a Dask worker
    assert crashed["outcome"] == "crashed" and "SIGSEGV" in crashed["error"]
    assert by_key[(EDGE[1], segv)]["outcome"] == "pass"  # the restarted adapter worker goes on
    # every remote row names the Dask worker that made it; both workers took part; local rows name none
    workers = {r["worker"] for r in remote.rows}
    assert "" not in workers and len(workers) == 2
    assert all(f"tcp://{LOOPBACK}:" in w for w in workers)
    assert {r["worker"] for r in local.rows} == {""}
    assert {r["host"] for r in remote.rows} == {socket.gethostname()}
    prov = json.loads((tmp_path / "remote" / "provenance.json").read_text())
    for worker in prov["cluster"]["workers"].values():  # the fixture unset Dask's single-thread defaults
        assert {k: worker["env"].get(k) for k in THREAD_VARS} == {k: os.environ.get(k) for k in THREAD_VARS}
    assert prov["cluster"]["scheduler"] == dask_cluster.address
    assert len(prov["cluster"]["workers"]) == 2
    assert all(w["adapters"]["numpy"]["version"] for w in prov["cluster"]["workers"].values())
    assert sum(h["rows"] for h in prov["hosts"]) == len(remote.rows)
    assert "hosts" not in json.loads((tmp_path / "local" / "provenance.json").read_text())


def test_a_dask_worker_killed_mid_run_loses_no_row_and_duplicates_none(tmp_path, cluster, dask_cluster):
    ids = [s.id for s in cases.select("random:40", seed=5)]
    slow = f"{FAKE}:mode=slow:delay=0.15"  # long enough that the kill lands while cases are in flight
    cfg = config([slow], ids)
    pids = dask_cluster.client.run(os.getpid)
    victim_address, victim = sorted(pids.items())[0]
    out = tmp_path / "run"
    killed = threading.Event()

    def kill_after_some_rows() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = out / "rows.jsonl"
            if rows.exists() and sum(1 for r in RunStore(out).rows() if victim_address in r["worker"]) >= 3:
                os.kill(victim, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_some_rows, daemon=True)
    killer.start()
    summary = run(out, cfg, cluster=dask_cluster)
    killer.join(10)
    assert killed.is_set(), "the worker was never killed: the run ended too early to test anything"
    assert not summary.errors and not summary.interrupted
    keys = stored_keys(out)
    assert len(keys) == len(set(keys)) == len(ids)  # nothing lost, nothing stored twice
    assert {r["outcome"] for r in summary.rows} <= {"pass", "unsupported"}  # no case failed for the kill
    workers = {r["worker"] for r in summary.rows}
    assert any(victim_address in w for w in workers)  # the killed worker's finished rows are kept
    assert len(workers) >= 2
    dask_cluster.client.wait_for_workers(2, timeout=CLUSTER_START_S)  # the nanny restarts it for later tests


def test_resume_through_the_cluster_runs_only_the_missing_pairs(tmp_path, dask_cluster, capsys):
    ids = [s.id for s in cases.select("random:8", seed=7)]
    out = tmp_path / "run"
    first = run(out, config(["numpy"], ids), cluster=dask_cluster)
    assert len(first.rows) == len(ids)
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    (out / "rows.jsonl").write_text("".join(lines[:3]))  # as if the run had been killed after three rows
    kept = [json.loads(line) for line in lines[:3]]
    code = cli(["run", "--resume", str(out), "--dask", dask_cluster.address, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = RunStore(out).rows()
    keys = [(r["case_id"], r["adapter"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(ids)
    assert rows[:3] == kept  # finished rows are not recomputed
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == len(ids) and (frame["worker"] != "").all()


def test_relations_run_on_the_cluster_and_give_the_local_rows(tmp_path, dask_cluster, capsys):
    ids = "n2-5x5x2-k3x3x2-s1x1-same-f32,n2-6x6x4-k3x3x4-s2x2-valid-f32-g2"
    argv = ["run", "--cases", ids, "--adapters", "numpy", "--relations", "batch_split,layout", "--no-progress",
            "--repeats", "1"]
    assert cli([*argv, "--out", str(tmp_path / "local")]) == 0, capsys.readouterr().err
    assert cli([*argv, "--out", str(tmp_path / "remote"), "--dask", dask_cluster.address]) == 0, \
        capsys.readouterr().err

    def relation_rows(name: str) -> dict[tuple[str, str, str], dict[str, Any]]:
        rows = [r for r in RunStore(tmp_path / name).rows() if r.get("relation")]
        return {(r["case_id"], r["adapter"], r["relation"]): r for r in rows}

    local, remote = relation_rows("local"), relation_rows("remote")
    assert len(local) == 4 and set(local) == set(remote)  # 2 cases x 2 relations, none skipped on the cluster
    assert all(r["outcome"] == "pass" for r in remote.values())
    assert all(f"tcp://{LOOPBACK}:" in r["worker"] for r in remote.values())  # made on a Dask worker
    for key, row in local.items():  # two runs: their run ids differ, like where and when they ran
        assert {k: v for k, v in row.items() if k not in {*WHERE_COLUMNS, "run_id"}} == \
            {k: v for k, v in remote[key].items() if k not in {*WHERE_COLUMNS, "run_id"}}


def test_runner_stores_each_pair_once_when_a_result_arrives_again(tmp_path):
    # A case listed twice delivers its result twice, as a rerun cluster task may: one row per pair.
    cfg = config(["numpy"], [EDGE[0], EDGE[1], EDGE[0]])
    summary = run(tmp_path / "run", cfg, cluster=None)
    assert sorted(stored_keys(tmp_path / "run")) == sorted({(EDGE[0], "numpy"), (EDGE[1], "numpy")})
    assert summary.new_rows == 2


@needs_dask
def test_unreachable_scheduler_is_one_line_within_the_timeout(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(UsageError, match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:\d+' within 2 s"):
        refconv_dask.connect(f"tcp://{LOOPBACK}:{port}", timeout=2)
    assert time.monotonic() - start < 30


@needs_dask
def test_cli_unreachable_scheduler_exits_2_and_leaves_no_run_dir(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(refconv_dask, "CONNECT_TIMEOUT_S", 2.0)
    out = tmp_path / "run"
    code = cli(["run", "--dask", f"tcp://{LOOPBACK}:{port}", "--cases", "random:2", "--adapters", "numpy",
                "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0]
    assert not out.exists()


def test_cli_without_distributed_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    code = cli(["run", "--dask", f"tcp://{LOOPBACK}:8786", "--cases", "random:2", "--adapters", "numpy",
                "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'refconv[dask]'" in err[0]


@pytest.mark.parametrize("argv", [["--case", EDGE[0]], ["--workers", "2"]])
def test_cli_refuses_options_that_do_not_apply_to_a_cluster(argv, capsys):
    assert cli(["run", "--dask", f"tcp://{LOOPBACK}:8786", "--adapters", "numpy", *argv]) == 2
    assert "--dask" in capsys.readouterr().err


def _check_in_daemon(queue: Any) -> None:
    queue.put(refconv_dask.check_worker(("numpy",), True)["error"])


def test_a_daemon_worker_is_refused_with_the_fix():
    # A Dask worker is a daemon process by default, and a daemon may not start adapter worker processes.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_check_in_daemon, args=(queue,), daemon=True)
    process.start()
    try:
        error = queue.get(timeout=60)
    finally:
        process.join(10)
    assert "daemon process" in error and "DASK_DISTRIBUTED__WORKER__DAEMON=False" in error


@needs_dask
def test_cli_malformed_address_is_one_line_at_once(tmp_path, capsys):
    start = time.monotonic()
    code = cli(["run", "--dask", "nonsense", "--cases", "random:2", "--adapters", "numpy",
                "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "tcp://HOST:8786" in err[0] and "'nonsense'" in err[0]
    assert time.monotonic() - start < 5


def test_cli_an_adapter_the_workers_cannot_load_is_one_line_naming_the_worker(tmp_path, dask_cluster, capsys):
    out = tmp_path / "run"
    code = cli(["run", "--dask", dask_cluster.address, "--cases", "random:2", "--adapters", "numpy,tensorflw",
                "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Dask worker tcp://127.0.0.1:" in err[-1] and "unknown adapter 'tensorflw'" in err[-1]
    assert not out.exists()  # checked on the workers before the run directory is made


def _two_host_rows() -> Any:
    return normalize(pd.DataFrame({
        "case_id": [EDGE[0], EDGE[1], EDGE[0], EDGE[1]], "adapter": ["numpy"] * 4,
        "outcome": ["pass", "mismatch", "pass", "pass"], "host": ["box-a", "box-a", "box-b", "box-b"],
        "worker": ["a (tcp://10.0.0.2:4000)"] * 2 + ["b (tcp://10.0.0.3:4000)"] * 2,
        "cpu_model": ["EPYC", "EPYC", "Xeon", "Xeon"], "adapter_version": ["2.4"] * 4,
    }))


def test_reports_group_by_host_when_more_than_one_host_ran():
    df = _two_host_rows()
    table = hosts(df)
    assert list(table.index) == ["box-a", "box-b"]
    assert table.loc["box-a", "findings"] == 1 and table.loc["box-b", "findings"] == 0
    assert table.loc["box-b", "cpu_model"] == "Xeon" and table.loc["box-a", "workers"] == 1
    by_host = outcomes_by_host(df)
    assert by_host.loc[("box-a", "numpy"), "mismatch"] == 1 and by_host.loc[("box-b", "numpy"), "pass"] == 2
    assert 'id="hosts"' in html_report(df, {}, {}, "t") and "## Hosts" in markdown(df, {}, {}, "t")
    one_host = df[df["host"] == "box-a"]
    assert 'id="hosts"' not in html_report(one_host, {}, {}, "t") and "## Hosts" not in markdown(one_host, {}, {}, "t")


def _worker(isa: str, cpu: str = "x86-64-v4 avx2 avx512f") -> dict[str, Any]:
    return {"host": "box", "adapters": {"torch": {"version": "2.13", "settings": {}, "isa": isa, "cpu_features": cpu},
                                        "numpy": {"version": "2.3", "settings": {}, "isa": "", "cpu_features": cpu}}}


def test_an_adapter_whose_kernels_differ_between_workers_varies_and_each_kind_has_one_worker():
    workers = {"tcp://10.0.0.2:1": _worker("onednn:avx2"), "tcp://10.0.0.3:1": _worker("onednn:avx512_core_amx"),
               "tcp://10.0.0.4:1": _worker("onednn:avx2"), "tcp://10.0.0.5:1": _worker("onednn:avx2", "x86-64-v3 avx2")}
    assert refconv_dask._varies(workers, ("numpy", "torch")) == ["numpy", "torch"]  # numpy: another CPU
    assert refconv_dask._varies({a: workers[a] for a in list(workers)[:3:2]}, ("numpy", "torch")) == []
    client = types.SimpleNamespace(ncores=lambda: dict.fromkeys(workers, 1))  # every worker still there
    cluster = refconv_dask.DaskCluster("tcp://10.0.0.1:8786", client=client)
    cluster._started[(("torch",), True)] = ({}, {"workers": workers})  # as if checked in: no cluster needed
    assert cluster.kinds("torch", True) == {  # workers alike in isa and CPU are one kind: the first of them probes
        "onednn:avx2 on x86-64-v4 avx2 avx512f": "tcp://10.0.0.2:1",
        "onednn:avx512_core_amx on x86-64-v4 avx2 avx512f": "tcp://10.0.0.3:1",
        "onednn:avx2 on x86-64-v3 avx2": "tcp://10.0.0.5:1"}
