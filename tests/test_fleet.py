"""Fleets: Dask workers that differ in hardware. One machine stands in for two: a loopback cluster whose two
workers cap oneDNN differently (ONEDNN_MAX_CPU_ISA in each worker's environment, set before the worker process
starts), and a planted third-party adapter that fails on one region of cases only under the AVX2 cap. Rows must
name each worker's `isa` and `cpu_features`; the hunt must characterize the problem's hardware condition."""

from __future__ import annotations

import json
import os
import time

import pytest

from refconv import distributed as refconv_dask
from refconv import hardware, hunt, runner
from refconv.cli import main as cli
from refconv.spec import ConvSpec
from refconv.store import RunStore

LOOPBACK = "127.0.0.1"
CAPPED = "fleet_adapters:Capped"
START_S = 60
AVX2 = hardware.onednn_isa("avx2")
BEST = hardware.onednn_isa(hardware.onednn_level_in_force({}))  # what the uncapped worker dispatches to

pytestmark = pytest.mark.skipif(
    "avx2" not in hardware.onednn_levels() or BEST == AVX2,
    reason="needs a CPU with a oneDNN level above AVX2, so that capping one worker at AVX2 makes two kinds")


def region(spec: ConvSpec) -> bool:
    """The planted bug's case region (tests/fleet_adapters.py)."""
    return spec.c_in == 1 and spec.strides[1] >= 2


def small_cases() -> list[ConvSpec]:
    """16 small cases, alternately inside and outside the region, so that every batch of two holds one of each."""
    inside = [ConvSpec(n=1, h=h, w=w, c_in=1, c_out=c, kh=1, kw=k, strides=(1, 2))
              for h, w, c, k in [(3, 4, 1, 1), (4, 5, 2, 2), (5, 6, 1, 2), (4, 4, 3, 1)]]
    inside += [s.replace(padding="VALID") for s in inside]
    outside = [s.replace(c_in=2) if i % 2 else s.replace(strides=(1, 1)) for i, s in enumerate(inside)]
    return [s for pair in zip(inside, outside, strict=True) for s in pair]


@pytest.fixture(scope="module")
def fleet():
    """A loopback cluster of two worker processes, one with oneDNN capped at AVX2, one uncapped ('ALL')."""
    dask = pytest.importorskip("dask", reason="dask is not installed")
    distributed = pytest.importorskip("distributed", reason="the Dask 'distributed' package is not installed")

    def worker(cap: str) -> dict:
        # the nanny sets `env` in the new worker process before it starts: before any framework is imported there
        return {"cls": distributed.Nanny, "options": {"nthreads": 1, "host": LOOPBACK,
                                                      "env": {"ONEDNN_MAX_CPU_ISA": cap}}}

    scheduler = {"cls": distributed.Scheduler, "options": {"host": LOOPBACK, "dashboard": False}}
    environ = dict(os.environ)
    # non-daemon workers, so each may start refconv's adapter worker processes (docs/cluster.md)
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = distributed.SpecCluster(workers={"avx2": worker("AVX2"), "best": worker("ALL")},
                                          scheduler=scheduler)
        try:
            assert cluster.scheduler_address.startswith(f"tcp://{LOOPBACK}:")
            yield cluster
        finally:
            cluster.close(timeout=30)
            os.environ.clear()  # the nanny writes its pre-spawn variables into this process's environment
            os.environ.update(environ)


@pytest.fixture
def connected(fleet):
    """refconv's client of the fleet, both workers up, disconnected after the test."""
    client = refconv_dask.connect(fleet.scheduler_address, timeout=20)
    try:
        client.client.wait_for_workers(2, timeout=START_S)
        yield client
    finally:
        client.close()


def test_rows_name_each_workers_isa_and_the_hunt_finds_the_hardware_condition(tmp_path, connected, capsys):
    started = time.monotonic()
    specs = small_cases()
    out = tmp_path / "run"
    code = cli(["run", "--dask", connected.address, "--cases", ",".join(s.id for s in specs), "--adapters", CAPPED,
                "--repeats", "1", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = RunStore(out).rows()
    assert len(rows) == len(specs)
    # each row names the kernels of the worker that ran it, and that worker's CPU
    assert {r["isa"] for r in rows} == {AVX2, BEST}
    assert {r["cpu_features"] for r in rows} == {hardware.cpu_features()}
    for row in rows:
        wrong = row["isa"] == AVX2 and region(ConvSpec.from_id(row["case_id"]))
        assert row["outcome"] == ("mismatch" if wrong else "pass"), row
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["cluster"]["varies"] == [CAPPED]
    assert {w["adapters"][CAPPED]["isa"] for w in prov["cluster"]["workers"].values()} == {AVX2, BEST}

    # the hunt on the fleet: every probe on both workers, so the region can name the hardware it needs
    found = fleet_hunt(tmp_path / "hunt", connected, specs)
    (problem,) = [p for p in found.problems if p.probes]
    conditions = problem.conditions
    assert conditions["isa"] == AVX2 and conditions["c_in"] == 1
    assert conditions.get("sw") in ({"min": 2}, 2) or conditions.get("sw_gt_sh") is True
    assert "cpu_features" not in conditions  # one CPU: never a factor
    assert problem.precision == 1.0 and problem.recall == 1.0
    assert problem.engines == {CAPPED: "mismatch", "numpy": "pass"}
    minimal = [r for r in found.rows if r["case_name"].startswith(hunt.MINIMAL_PREFIX)]
    assert {(r["adapter"], r["isa"], r["outcome"]) for r in minimal if r["adapter"] == CAPPED} == \
        {(CAPPED, AVX2, "mismatch"), (CAPPED, BEST, "pass")}  # the minimal case rerun on both kinds
    print(f"fleet test: {time.monotonic() - started:.1f} s; {problem.title}; "
          f"precision {problem.precision}, recall {problem.recall} over {problem.probes} verdicts")


def fleet_hunt(path, cluster, specs: list[ConvSpec]) -> hunt.HuntSummary:
    """A hunt through the Python API over the given search cases, on the fleet, stopping at one problem."""
    run_config = runner.RunConfig(run_id="fleet-hunt", selection="fleet", seed=0, adapters=[CAPPED],
                                  cases=[[s.id, ""] for s in specs], repeats=1, case_timeout=30.0)
    config = hunt.HuntConfig(adapters=[CAPPED], engines=["numpy"], budget_s=45.0, max_problems=1)
    return hunt.Hunt(RunStore.create(path), config, run_config, cluster=cluster).run()
