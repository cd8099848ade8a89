"""`refconv hunt` end to end: a planted third-party bug that needs a 4-way conjunction is found, shrunk,
characterized and grouped; Ctrl-C keeps what was found and --resume goes on; bad input exits 2."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from refconv.cli import main
from refconv.hunt import parse_budget
from refconv.spec import ConvSpec

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PLANTED = "planted_adapters:Planted"


def hunt(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    return subprocess.Popen([sys.executable, "-m", "refconv", "hunt", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def findings(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "findings.json").read_text())


def test_planted_four_way_conjunction_is_found_shrunk_and_characterized(tmp_path):
    run_dir = tmp_path / "hunt"
    proc = hunt("--adapters", PLANTED, "--engines", "numpy", "--budget", "60s", "--problems", "1",
                "--out", str(run_dir), "--no-progress")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    problems = [p for p in findings(run_dir) if p["probes"]]
    assert len(problems) == 1, problems
    (p,) = problems
    assert p["adapters"] == [PLANTED] and p["outcome"] == "mismatch" and p["known_deviation"] is None
    minimal = ConvSpec.from_id(p["minimal_case"])
    assert minimal.n <= 2 and max(minimal.h, minimal.w, minimal.c_in, minimal.c_out) <= 4
    # the conjunction's fields: batch, input channels, the stride relation, the bias
    conditions = p["conditions"]
    assert conditions["n"] == {"min": 2} and conditions["c_in"] == 1 and conditions["bias"] is True
    assert conditions.get("sw_gt_sh") is True or {"sh", "sw"} <= set(conditions)
    assert p["precision"] >= 0.9 and p["recall"] >= 0.9 and p["probes"] >= 50
    assert p["engines"] == {PLANTED: "mismatch", "numpy": "pass"}
    assert p["minimal_case"] in p["cases"] and p["rows"] >= 1
    assert (run_dir / p["repro"]).is_file()
    if p["upstream_report"] is not None:
        assert (run_dir / p["upstream_report"]).is_file()
    # the tables: the minimal case's rerun on every engine, and each failing row names its minimal case
    table = pd.read_csv(run_dir / "results.csv")
    assert set(table[table["case_id"] == p["minimal_case"]]["adapter"]) == {PLANTED, "numpy"}
    failing = table[(table["adapter"] == PLANTED) & (table["outcome"] == "mismatch")]
    assert set(failing["minimal_case"]) == {p["minimal_case"]}
    probes = (run_dir / "probes.jsonl").read_text().splitlines()
    assert len(probes) >= p["probes"]
    assert "1 problem(s)" in out and p["id"] in out


@pytest.mark.slow  # two hunts, about 30 s
def test_ctrl_c_keeps_what_was_found_and_resume_goes_on(tmp_path):
    run_dir = tmp_path / "hunt"
    proc = hunt("--adapters", PLANTED, "--engines", "numpy", "--budget", "40s", "--problems", "1",
                "--out", str(run_dir), "--no-progress", "--seed", "2")
    deadline = time.monotonic() + 120
    rows = run_dir / "rows.jsonl"
    while not (rows.exists() and len(rows.read_text().splitlines()) >= 40):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the hunt made no progress"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"refconv hunt --resume {run_dir}" in err
    kept = len(rows.read_text().splitlines())
    assert kept >= 40 and json.loads((run_dir / "hunt.json").read_text())["spent_s"] > 0
    assert isinstance(findings(run_dir), list)

    resumed = hunt("--resume", str(run_dir), "--budget", "60s", "--no-progress")  # 60 s more, whatever was spent
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert len(rows.read_text().splitlines()) > kept
    assert [p["outcome"] for p in findings(run_dir) if p["probes"]] == ["mismatch"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--adapters", "numpy", "--budget", "soon"], "budget must be a positive duration"),
    (["--adapters", "numpy", "--budget", "0s"], "budget must be a positive duration"),
    (["--budget", "10s"], "name the adapters"),
    (["--adapters", "nosuch", "--budget", "10s"], "nosuch"),
    (["--resume", "/nonexistent/run"], "not a refconv run directory"),
    # before the run dir; without Dask (the core env) the one line names the missing package instead
    (["--adapters", "numpy", "--budget", "10s", "--dask", "nonsense"],
     "tcp://HOST:8786" if importlib.util.find_spec("distributed") else "needs the Dask 'distributed' package"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["hunt", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_budget_units():
    assert [parse_budget(t) for t in ("60s", "10m", "1h", "90", " 2.5m ")] == [60.0, 600.0, 3600.0, 90.0, 150.0]


def test_a_cluster_search_round_drops_the_batches_that_start_after_its_deadline():
    from concurrent.futures import ThreadPoolExecutor

    from refconv import hunt as H
    from refconv import runner

    class Cluster:  # a cluster's executor runs the task where the deadline is checked: here, a thread
        def executor(self) -> ThreadPoolExecutor:
            return ThreadPoolExecutor(1)

    late = H._DeadlineCluster(Cluster(), time.time() - 1)
    with pytest.raises(runner.Cancelled):  # the runner stores nothing for it; a later round runs the case
        late.executor().submit(len, [1]).result(timeout=10)
    on_time = H._DeadlineCluster(Cluster(), time.time() + 60)
    assert on_time.executor().submit(len, [1, 2]).result(timeout=10) == 2
    late.shutdown()
    on_time.shutdown()
