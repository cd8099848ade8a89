"""Pinned engine versions (tf@2.19.1): labels, environments in the cache, the worker on another interpreter.

Most tests use a fake environment whose `python` is this interpreter (so nothing is downloaded); one slow
test builds a real one (onnxruntime 1.31.1, beside the local onnxruntime) under a temporary cache.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest

import adapters
from refconv import envs, runner
from refconv.cli import main as cli
from refconv.remote import RemoteHandle
from refconv.worker import WorkerCrashed, WorkerTimeout

CASES = "n1-4x4x1-k3x3x1-s1x1-same-f32,n1-5x5x2-k2x2x3-s2x2-valid-f64"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "refconv" / "envs"


def fake_env(root: Path, name: str, version: str) -> Path:
    """An environment directory whose interpreter is this one (the engine is whatever is installed here)."""
    path = root / f"{envs.ENGINES[name][0]}-{version}"
    (path / "bin").mkdir(parents=True)
    (path / "lib" / "python3" / "site-packages").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    (path / envs.MARKER).write_text(json.dumps({"engine": name, "version": version, "requirements": []}))
    return path


def test_a_label_pins_a_version_with_options():
    ref = adapters.parse("tf@2.19.1:onednn=off")
    assert (ref.name, ref.version, ref.options) == ("tf", "2.19.1", {"onednn": "off"})
    assert ref.label == "tf@2.19.1:onednn=off" and adapters.parse(ref.label) == ref
    assert adapters.parse("tf").version == "" and adapters.parse("tf").label == "tf"
    assert envs.unpinned("tf@2.19.1:onednn=off") == "tf:onednn=off"
    with pytest.raises(adapters.AdapterError, match="version is empty"):
        adapters.parse("tf@")


def test_unpinnable_engines_and_large_builds_are_refused_with_the_reason(cache):
    assert "cannot pin a version" in adapters.unavailable_reason("numpy@1.0")
    with pytest.raises(envs.EnvError, match="--allow-large"):
        envs.ensure("torch@2.4.0")
    assert not cache.exists() or not any(cache.iterdir())  # nothing was built


def test_pip_reason_is_one_line_without_the_version_list():
    lines = ["Looking in indexes: x", "ERROR: Could not find a version that satisfies the requirement "
             "onnxruntime==9.9 (from versions: 1.15.1, 1.16.0)", "ERROR: No matching distribution found"]
    assert envs.pip_reason(lines) == "Could not find a version that satisfies the requirement onnxruntime==9.9"


def test_a_version_installed_here_needs_no_environment():
    local = envs.local_version("scipy")
    if local is None:
        pytest.skip("scipy is not installed")
    assert not envs.needs_env(f"scipy@{local}") and envs.needs_env("scipy@0.0.1")


def test_remote_worker_answers_dies_and_restarts_like_a_spawn_worker(cache):
    env = fake_env(cache, "scipy", "0.0.1")
    handle = RemoteHandle("numpy", env / "bin" / "python")
    try:
        info = handle.start()
        assert info["pid"] != os.getpid() and handle.alive
        assert handle.call("refconv.worker:describe_adapter")["version"] == info["version"]
        os.kill(handle._process.pid, signal.SIGSEGV)
        with pytest.raises(WorkerCrashed, match="SIGSEGV"):
            handle._receive(10, "waiting")
        assert handle.call("refconv.worker:describe_adapter")["pid"] != info["pid"]  # a fresh process
        assert handle.restarts == 1
        with pytest.raises(WorkerTimeout):
            handle._receive(0.2, "nothing asked")  # no answer in time: killed
        assert not handle.alive
    finally:
        handle.close()
    assert not handle.alive


@pytest.mark.slow  # two worker processes and a whole run: ~30 s on a busy 2-core machine
@pytest.mark.skipif(envs.local_version("scipy") is None, reason="scipy is not installed")
def test_a_run_holds_a_pinned_version_beside_the_local_one(cache, tmp_path, capsys, monkeypatch):
    fake_env(cache, "scipy", "0.0.1")

    def no_such_version(name: str, version: str, path: Path, progress: bool) -> None:  # pip's answer, offline
        raise envs.EnvError(f"pip install scipy=={version} failed: Could not find a version that satisfies the "
                            f"requirement scipy=={version}")

    monkeypatch.setattr(envs, "_build", no_such_version)
    out = tmp_path / "run"
    code = cli(["run", "--adapters", "scipy@0.0.1,scipy,scipy@999.0", "--cases", CASES, "--relations", "none",
                "--out", str(out), "--no-progress"])
    runner.close_pools()
    assert code == 0
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert sorted(df["adapter"].unique()) == ["scipy", "scipy@0.0.1"]
    # a fake environment runs the scipy installed here: the row says which version really ran
    assert set(df["adapter_version"]) == {envs.local_version("scipy")}
    unavailable = json.loads((out / "run.json").read_text())["unavailable"]
    assert list(unavailable) == ["scipy@999.0"] and "scipy==999.0" in unavailable["scipy@999.0"]
    assert "skipped adapter scipy@999.0" in capsys.readouterr().err
    assert "## Versions side by side" in (out / "summary.md").read_text()
    assert (cache / "scipy-0.0.1" / "lib" / "python3" / "site-packages" / "refconv" / "envs.py").is_file()


def test_envs_lists_and_removes(cache, capsys):
    fake_env(cache, "scipy", "0.0.1")
    fake_env(cache, "onnxruntime", "1.2.3")
    assert cli(["envs"]) == 0
    out = capsys.readouterr().out
    assert "2 environment(s)" in out and "scipy-0.0.1" in out and "onnxruntime-1.2.3" in out
    assert cli(["envs", "--remove", "scipy@0.0.1"]) == 0
    assert not (cache / "scipy-0.0.1").exists() and (cache / "onnxruntime-1.2.3").exists()
    assert cli(["envs", "--remove", "scipy@0.0.1"]) == 2  # none left: one line, exit 2
    assert "no cached environment" in capsys.readouterr().err
    assert cli(["envs", "--remove-all"]) == 0
    assert envs.cached() == []


@pytest.mark.slow
@pytest.mark.skipif(envs.local_version("onnxruntime") is None, reason="onnxruntime is not installed")
def test_two_real_onnxruntime_versions_side_by_side(cache, tmp_path):
    """Builds onnxruntime 1.31.1 from the registry into a temporary cache (about a minute) and runs it."""
    local = envs.local_version("onnxruntime")
    other = "1.31.1" if local != "1.31.1" else "1.32.0"
    try:
        envs.ensure(f"onnxruntime@{other}")
    except envs.EnvError as exc:
        if "Could not find" in str(exc) or "connection" in str(exc).lower():
            pytest.skip(f"the package registry is unreachable: {exc}")
        raise
    out = tmp_path / "run"
    assert cli(["run", "--adapters", f"onnxruntime@{other},onnxruntime", "--cases", CASES, "--relations", "none",
                "--out", str(out), "--no-progress"]) == 0
    runner.close_pools()
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    versions = df.groupby("adapter")["adapter_version"].first().str.split(" ").str[0].to_dict()
    assert versions == {f"onnxruntime@{other}": other, "onnxruntime": local}
    assert cli(["compare", str(out), str(out), "--out", str(tmp_path / "cmp")]) == 0
