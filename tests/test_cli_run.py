"""`refconv run` end to end: crash + hang + kill -9 + resume loses nothing; Ctrl-C; --case; bad input exits 2."""

from __future__ import annotations

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

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE = "fake_adapters:Faulty"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "TF_CPP_MIN_LOG_LEVEL": "2"}


def refconv(*argv: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "refconv", "run", *argv], env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


def stored_lines(run_dir: Path) -> list[str]:
    path = run_dir / "rows.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def wait_for_rows(proc: subprocess.Popen, run_dir: Path, count: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while len(stored_lines(run_dir)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.1)


def test_crash_hang_and_kill_9_lose_no_row_and_resume_completes(tmp_path):
    run_dir = tmp_path / "run"
    # random:16 with seed 5: five odd heights (segv), one n1-6x6 case (hang), float16/bfloat16/NCHW/empty cases
    labels = ["numpy", f"{FAKE}:mode=segv:on=odd", f"{FAKE}:mode=hang:on=n1-6x6", f"{FAKE}:mode=slow:delay=0.15",
              f"{FAKE}:mode=wrong:on=even"]
    proc = refconv("--cases", "random:16", "--seed", "5", "--adapters", ",".join(labels), "--case-timeout", "2",
                   "--repeats", "1", "--out", str(run_dir), "--no-progress")
    wait_for_rows(proc, run_dir, 30)
    proc.send_signal(signal.SIGKILL)  # kill -9 of the main process, mid-run
    proc.communicate()
    before = [json.loads(line) for line in stored_lines(run_dir) if line.endswith("}")]
    assert len(before) >= 30

    resumed = refconv("--resume", str(run_dir), "--no-progress")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    frame = pd.read_parquet(run_dir / "results.parquet")
    n_cases = len(json.loads((run_dir / "run.json").read_text())["cases"])
    assert len(frame) == n_cases * len(labels)
    assert not frame.duplicated(["case_id", "adapter"]).any()
    by_key = frame.set_index(["case_id", "adapter"])
    for row in before:  # every row finished before the kill survives, unchanged (not recomputed)
        kept = by_key.loc[(row["case_id"], row["adapter"])]
        assert kept["outcome"] == row["outcome"] and kept["run_id"] == row["run_id"]
        assert kept["time_ms"] == row["time_ms"] or (pd.isna(kept["time_ms"]) and row["time_ms"] != row["time_ms"])
    outcomes = frame.groupby("adapter")["outcome"].agg(set).to_dict()
    assert outcomes["numpy"] == {"pass", "unsupported"}
    assert "crashed" in outcomes[labels[1]] and "timeout" in outcomes[labels[2]] and "mismatch" in outcomes[labels[4]]
    findings = frame[~frame["outcome"].isin(["pass", "unsupported"])]
    assert len(findings) and all((run_dir / path).is_file() for path in findings["repro"])
    # a repro script reproduces its finding with numpy alone (the fake adapter goes through adapters.load)
    script = run_dir / findings[findings["outcome"] == "mismatch"]["repro"].iloc[0]
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env(), cwd=tmp_path)
    assert proc.returncode == 1 and "REPRODUCED: 1 / " in proc.stdout, proc.stdout + proc.stderr
    crash = run_dir / findings[findings["outcome"] == "crashed"]["repro"].iloc[0]
    proc = subprocess.run([sys.executable, str(crash)], capture_output=True, text=True, env=env(), cwd=tmp_path)
    assert proc.returncode == -signal.SIGSEGV
    assert "wrote:" in out and "results.parquet" in out


def test_ctrl_c_stops_cleanly_and_prints_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    proc = refconv("--cases", "edge", "--adapters", f"numpy,{FAKE}:mode=slow:delay=0.3", "--out", str(run_dir),
                   "--repeats", "0", "--no-progress")
    wait_for_rows(proc, run_dir, 6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"refconv run --resume {run_dir}" in err and "Traceback" not in err
    frame = pd.read_parquet(run_dir / "results.parquet")  # written on the way out
    assert 6 <= len(frame) < 2 * 61 and not frame.duplicated(["case_id", "adapter"]).any()
    assert json.loads((run_dir / "provenance.json").read_text())["interrupted"] is True


def test_case_prints_the_full_comparison(capsys):
    assert main(["run", "--case", "n1-6x6x2-k3x3x2-s2x2-same-f32", "--adapters", f"numpy,{FAKE}:mode=wrong"]) == 1
    out = capsys.readouterr().out
    assert "case n1-6x6x2-k3x3x2-s2x2-same-f32" in out and "6x6 input" in out
    assert "pads top 0, bottom 1, left 0, right 1" in out
    assert "numpy: pass" in out and "1 / 18 elements beyond tolerance" in out
    assert "worst elements" in out and "(0, 0, 0, 0):" in out


def test_case_names_the_known_deviation_that_explains_a_row(capsys):
    pytest.importorskip("torch", reason="torch is not installed")
    argv = ["run", "--case", "n1-2x2x2-k3x3x2-s1x1-valid-f32", "--adapters", "torch", "--no-isolation"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "torch: raised:" in out and "known deviation torch_empty_output_raises:" in out
    assert "https://github.com/pytorch/pytorch/issues/17247" in out


def test_case_with_a_passing_adapter_exits_0(capsys):
    assert main(["run", "--case", "n1-5x5x3-k1x1x4-s1x1-same-f32", "--adapters", "numpy", "--no-isolation"]) == 0
    assert "numpy: pass" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "text"), [
    (["--adapters", "tensorflw"], "unknown adapter 'tensorflw'; available: "),
    (["--adapters", "no_such_module:Thing"], "is unavailable: module 'no_such_module' cannot be found"),
    (["--case", "n1-bad", "--adapters", "numpy"], "malformed case id 'n1-bad'"),
    (["--cases", "n1-bad", "--adapters", "numpy"], "malformed case id 'n1-bad'"),
    (["--cases", "bogus", "--adapters", "numpy"], "unknown case source 'bogus'"),
    (["--adapters", "numpy", "--out", "/etc/hostname/run"], "cannot write the output folder"),
    (["--resume", "/tmp"], "/tmp is not a refconv run directory"),
])
def test_bad_input_is_one_line_and_exit_2(argv, text, capsys):
    assert main(["run", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refconv run: error: ") and text in err, err


def test_unknown_option_exits_2():
    proc = subprocess.run([sys.executable, "-m", "refconv", "run", "--bogus"], capture_output=True, text=True,
                          env=env())
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_existing_run_dir_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["run", "--cases", "n1-5x5x3-k1x1x4-s1x1-same-f32", "--adapters", "numpy", "--out", out,
                 "--no-progress"]) == 0
    assert main(["run", "--cases", "n1-5x5x3-k1x1x4-s1x1-same-f32", "--adapters", "numpy", "--out", out]) == 2
    assert "already holds a run; use --resume" in capsys.readouterr().err


def test_run_where_every_case_fails_inside_refconv_prints_one_line(tmp_path, monkeypatch, capsys):
    from refconv import ops

    def broken(spec, values):
        raise RuntimeError("reference broke")

    monkeypatch.setattr(ops, "reference", broken)
    out = tmp_path / "run"
    assert main(["run", "--cases", "n1-5x5x3-k1x1x4-s1x1-same-f32", "--adapters", "numpy", "--out", str(out),
                 "--no-isolation", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == f"refconv run: no rows in {out}; 1 case(s) failed inside refconv"
    assert "reference broke" in captured.err and "Traceback" not in captured.out + captured.err


def test_torch_finding_repro_script_reproduces(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed")
    out = tmp_path / "run"
    case = "n1-2x2x2-k3x3x2-s1x1-valid-f32"  # VALID with the input one pixel smaller than the kernel: empty output
    proc = refconv("--cases", case, "--adapters", "torch", "--out", str(out), "--repeats", "1", "--no-progress")
    assert proc.wait(timeout=300) == 0, proc.communicate()
    assert json.loads((out / "provenance.json").read_text())["main_process_frameworks"] == []  # torch: worker only
    frame = pd.read_parquet(out / "results.parquet")
    (row,) = frame.to_dict("records")
    if row["outcome"] == "pass":
        pytest.skip("this torch returns the empty output: nothing to reproduce")
    script = subprocess.run([sys.executable, str(out / row["repro"])], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    assert script.returncode == 1 and "REPRODUCED" in script.stdout, script.stdout + script.stderr
