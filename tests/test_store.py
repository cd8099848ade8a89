"""The run directory under stress: one writer at a time, a full disk mid-run, resuming with other versions."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from refconv import store as store_module
from refconv.cli import main as cli
from refconv.store import RunLocked, RunStore, version_difference

CASES = "n1-4x4x1-k2x2x1-s2x2-same-f32,n1-5x5x2-k3x3x2-s1x1-valid-f32,n1-3x3x1-k1x1x1-s1x1-same-f64"
ROOT = Path(__file__).resolve().parent.parent


def _run(out: Path, *extra: str) -> int:
    return cli(["run", "--cases", CASES, "--adapters", "numpy", "--no-isolation", "--no-progress",
                "--repeats", "0", "--out", str(out), *extra])


def _rows(path: Path) -> list[dict]:
    lines = (path / "rows.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line whole: a torn one would raise here


def _keys(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(case, adapter, relation) of each row: a run also holds metamorphic relation rows."""
    return [(r["case_id"], r["adapter"], r.get("relation") or "") for r in rows]


def _conv_cases(rows: list[dict]) -> list[str]:
    return sorted(r["case_id"] for r in rows if not r.get("relation"))


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that opens the run directory and keeps it (as a running `refconv run` does)."""
    code = textwrap.dedent(f"""
        import sys, time
        from refconv.store import RunStore
        RunStore.open({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _stored_run(out: Path) -> None:
    """A run directory as `refconv run` leaves it before its first row (run.json only)."""
    from refconv import runner

    store = RunStore.create(out)
    config = runner.RunConfig(run_id="t", selection=CASES, seed=0, adapters=["numpy"],
                              cases=[[c, ""] for c in CASES.split(",")], repeats=0, isolation=False)
    store.write_json("run.json", config.to_dict())
    (out / "rows.jsonl").write_text("")
    store.unlock()


def test_a_second_writer_on_the_same_run_stops_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    _stored_run(out)
    before = (out / "rows.jsonl").read_bytes()
    holder = _hold_lock(out)
    try:
        with pytest.raises(RunLocked, match=f"in use by another refconv run \\(pid {holder.pid}\\)"):
            RunStore.open(out)
        capsys.readouterr()
        assert cli(["run", "--resume", str(out), "--no-progress", "--no-isolation"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"pid {holder.pid}" in err
        assert (out / "rows.jsonl").read_bytes() == before  # nothing interleaved
    finally:
        holder.kill()
        holder.wait()
    store_module.unlock(out)
    RunStore.open(out).unlock()  # free once the holder is gone


def test_create_on_a_directory_being_written_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    holder = _hold_lock(out)
    try:
        (out / "run.json").unlink()  # as if the holder had not written run.json yet
        with pytest.raises(RunLocked):
            RunStore.create(out)
    finally:
        holder.kill()
        holder.wait()


def test_a_full_disk_mid_run_stops_cleanly_with_the_resume_hint_and_keeps_every_finished_row(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real, calls = store_module._write_fd, []

    def fill_up(fd: int, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, data)
        real(fd, data[: len(data) // 2])  # half a batch reaches the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_fd", fill_up)
    assert _run(out) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No space left on device" in err and "Traceback" not in err
    assert f"refconv run --resume {out}" in err
    kept = _rows(out)  # every line whole: the half-written second batch was cut off
    assert len(kept) >= 1 and len(kept) == (out / "rows.jsonl").read_text().count("\n")
    monkeypatch.setattr(store_module, "_write_fd", real)
    assert cli(["run", "--resume", str(out), "--no-progress", "--no-isolation"]) == 0
    rows = _rows(out)
    assert _conv_cases(rows) == sorted(CASES.split(","))
    assert len(set(_keys(rows))) == len(rows)  # nothing written twice
    assert rows[: len(kept)] == kept


def test_a_failing_repro_write_is_one_line_with_the_resume_hint(tmp_path, monkeypatch, capsys):
    from refconv import repro

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", "repro/x.py")

    monkeypatch.setattr(repro, "write", full)
    out = tmp_path / "run"
    code = cli(["run", "--cases", "n1-4x4x1-k2x2x1-s2x2-same-f32", "--adapters", "hostile_adapters:HostileWrong",
                "--no-isolation", "--no-progress", "--repeats", "0", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and f"refconv run --resume {out}" in err, err


def _age_provenance(out: Path, **changes: str) -> None:
    prov = json.loads((out / "provenance.json").read_text())
    for label, version in changes.items():
        if label == "refconv":
            prov["refconv_version"] = version
        else:
            prov["adapters"][label]["version"] = version
    (out / "provenance.json").write_text(json.dumps(prov))


def test_resume_with_other_versions_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["run", "--cases", CASES.split(",")[0], "--adapters", "numpy", "--no-isolation", "--no-progress",
                "--repeats", "0", "--out", str(out)]) == 0
    _age_provenance(out, numpy="0.0-old", refconv="0.0.1")
    capsys.readouterr()
    assert cli(["run", "--resume", str(out), "--no-progress", "--no-isolation"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "numpy '0.0-old' -> " in err and "refconv '0.0.1' -> " in err and "--force" in err
    assert cli(["run", "--resume", str(out), "--no-progress", "--no-isolation", "--force"]) == 0


def test_force_without_resume_is_a_usage_error(tmp_path, capsys):
    assert _run(tmp_path / "run", "--force") == 2
    assert "--force applies to --resume only" in capsys.readouterr().err


def test_version_difference_names_each_change():
    old = {"refconv_version": "1", "adapters": {"tf": {"version": "2.20"}, "torch": {"version": "2.13"}}}
    new = {"refconv_version": "1", "adapters": {"tf": {"version": "2.21"}, "torch": {"version": "2.13"}}}
    assert version_difference(old, new) == ["tf '2.20' -> '2.21'"]
    assert version_difference(old, old) == []


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_directory_leave_one_run_with_each_row_once(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "refconv", "run", "--cases", CASES, "--adapters", "numpy", "--no-isolation",
            "--no-progress", "--repeats", "0", "--out", str(out)]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(loser) == 1 and ("in use by another refconv run" in loser[0] or "already holds a run" in loser[0])
    rows = _rows(out)
    assert _conv_cases(rows) == sorted(CASES.split(","))
    assert len(set(_keys(rows))) == len(rows)  # nothing interleaved or written twice
