"""Engine versions as a variant: one cached Python environment per (engine, version), built on first use.

An adapter label may pin its engine's version (`tf@2.19.1`, `onnxruntime@1.31.1:opt=...`). `ensure(ref)`
returns the environment that holds that version: `<cache>/refconv/envs/<engine>-<version>`, made with
`python -m venv` and pip (the engine's packages at that version, resolved together with numpy and
ml_dtypes), plus refconv's own packages (`refconv`, `adapters`) copied from the running source, which is
what `pip install --no-deps` of it would put there without a build step; they are copied again whenever
the running source changes (a fingerprint), so the worker always speaks this process's protocol. The
adapter's worker then runs on that environment's interpreter (`refconv.remote.RemoteHandle`). A pin equal
to the version installed here needs no environment: the ordinary worker runs it.

Nothing here imports a framework. A failed build raises `EnvError` with pip's reason in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refconv.errors import RefconvError

MARKER = "refconv-env.json"
# adapter name -> (environment key, the distribution whose version the pin names, requirements; {v} = version)
ENGINES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tf": ("tf", "tensorflow-cpu", ("tensorflow-cpu=={v}",)),
    "keras": ("keras", "keras", ("keras=={v}", "tensorflow-cpu")),
    "onnxruntime": ("onnxruntime", "onnxruntime", ("onnxruntime=={v}", "onnx")),
    "onnx-ref": ("onnx", "onnx", ("onnx=={v}",)),
    "jax": ("jax", "jax", ("jax[cpu]=={v}",)),
    "torch": ("torch", "torch", ("torch=={v}",)),
    "torch-nn": ("torch", "torch", ("torch=={v}",)),
    "scipy": ("scipy", "scipy", ("scipy=={v}",)),
}
LIGHT_DEPS = ("numpy", "ml_dtypes")  # what refconv's worker side imports besides the engine
LOCAL_TORCH_CPU = "2.13.0"  # the CPU wheel in pip's find-links here; any other torch pulls GB of CUDA wheels
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+!-]*$")
BUILD_TIMEOUT_S = 3600.0


class EnvError(RefconvError):
    """An environment that cannot be built or used; the message is one line (pip's reason when pip failed)."""


@dataclass(frozen=True)
class Env:
    """One built environment."""

    engine: str
    version: str
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def name(self) -> str:
        return self.path.name


def cache_root() -> Path:
    """<XDG_CACHE_HOME or ~/.cache>/refconv/envs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "refconv" / "envs"


def split_label(label: str) -> tuple[str, str]:
    """('tf', '2.19.1') for 'tf@2.19.1:onednn=off'; ('tf', '') for an unpinned label."""
    head = label.split(":", 1)[0]
    name, _, version = head.partition("@")
    return name, version


def unpinned(label: str) -> str:
    """'tf@2.19.1:onednn=off' -> 'tf:onednn=off' (the label known deviations and toggles speak)."""
    name, version = split_label(label)
    return label.replace(f"{name}@{version}", name, 1) if version else label


def check_pin(name: str, version: str) -> None:
    """SpecError-like one-line refusal of a pin refconv cannot build."""
    if name not in ENGINES:
        raise EnvError(f"adapter {name!r} cannot pin a version; pinnable: {', '.join(sorted(ENGINES))}")
    if not VERSION_RE.match(version):
        raise EnvError(f"bad version {version!r} in '{name}@{version}'")


def large_reason(name: str, version: str) -> str | None:
    """Why a build would pull several GB (refused unless --allow-large), or None."""
    if ENGINES.get(name, ("",))[0] == "torch" and version != LOCAL_TORCH_CPU:
        return (f"torch {version} has no CPU wheel here (only {LOCAL_TORCH_CPU}); pip would pull several GB of CUDA "
                "wheels; pass --allow-large to build it anyway")
    return None


def requirements(name: str, version: str) -> list[str]:
    """The pip requirements of an environment: the engine at `version`, with refconv's light dependencies."""
    key, _, reqs = ENGINES[name]
    pinned = version + "+cpu" if key == "torch" and version == LOCAL_TORCH_CPU else version
    return [r.format(v=pinned) for r in reqs] + list(LIGHT_DEPS)


def local_version(name: str) -> str | None:
    """The version of the engine's distribution installed in this environment, or None."""
    dist = ENGINES[name][1]
    for candidate in (dist, dist.replace("-cpu", "")):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(candidate).split("+")[0]
    return None


def needs_env(label: str) -> bool:
    """Whether a label's worker must run on a built environment (a pin other than the local version)."""
    name, version = split_label(label)
    return bool(version) and name in ENGINES and local_version(name) != version


def env_dir(name: str, version: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"{ENGINES[name][0]}-{version}"


def cached(root: Path | None = None) -> list[dict[str, Any]]:
    """Every built environment: name, engine, version, path, size in bytes, refconv fingerprint."""
    root = root or cache_root()
    out = []
    for marker in sorted(root.glob(f"*/{MARKER}")):
        data = json.loads(marker.read_text())
        out.append({"name": marker.parent.name, "engine": data.get("engine", ""), "version": data.get("version", ""),
                    "path": str(marker.parent), "bytes": dir_size(marker.parent)})
    return out


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def remove(name: str, version: str, root: Path | None = None) -> Path:
    """Delete one cached environment; EnvError when there is none."""
    path = env_dir(name, version, root)
    if not (path / MARKER).exists():
        raise EnvError(f"no cached environment {path.name} under {path.parent}")
    shutil.rmtree(path)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per environment across processes (two runs asking for tf@2.19.1 build it once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(label: str, allow_large: bool = False, progress: bool = False, root: Path | None = None) -> Env:
    """The environment for a pinned label, built now if it is not cached; EnvError with the reason otherwise."""
    name, version = split_label(label)
    check_pin(name, version)
    if not allow_large and (reason := large_reason(name, version)):
        raise EnvError(reason)
    path = env_dir(name, version, root)
    with _locked(path):
        if not (path / MARKER).exists():
            _build(name, version, path, progress)
        elif "requirements" not in json.loads((path / MARKER).read_text()):  # made by hand: add the light deps
            _complete(name, version, path, progress)
        _sync_refconv(path)
    return Env(name, version, path)


def _build(name: str, version: str, path: Path, progress: bool) -> None:
    """venv + pip into <path>.building, checked, then renamed into place (a half-built env is never used)."""
    tmp = path.with_name(path.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    reqs = requirements(name, version)
    status = _Status(f"env {path.name}", progress)
    started = time.monotonic()
    try:
        _check_call([sys.executable, "-m", "venv", str(tmp)], "python -m venv", status)
        python = str(tmp / "bin" / "python")
        _check_call([python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *reqs],
                    f"pip install {' '.join(reqs)}", status)
        got = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({ENGINES[name][1]!r}))"],
                             capture_output=True, text=True, timeout=120).stdout.strip()
        if got.split("+")[0] != version:
            raise EnvError(f"pip installed {ENGINES[name][1]} {got or '(nothing)'} where {version} was asked for")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        status.close("failed")
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    (path / MARKER).write_text(json.dumps({"engine": name, "version": version, "requirements": reqs,
                                           "built_s": round(time.monotonic() - started, 1)}) + "\n")
    status.close(f"built in {time.monotonic() - started:.0f} s")


def _complete(name: str, version: str, path: Path, progress: bool) -> None:
    """Install refconv's light dependencies beside the engine (resolved with the pin, which stays)."""
    reqs = requirements(name, version)
    status = _Status(f"env {path.name}", progress)
    _check_call([str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                 "--progress-bar", "off", *reqs], f"pip install {' '.join(reqs)}", status)
    (path / MARKER).write_text(json.dumps({"engine": name, "version": version, "requirements": reqs}) + "\n")
    status.close("ready")


def _check_call(cmd: list[str], what: str, status: _Status) -> None:
    """Run a build step, its output feeding the status line; EnvError with the tool's reason in one line."""
    # A project's own pin file (tox sets PIP_CONSTRAINT to constraints.txt) would forbid the very version asked for.
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        status.note(line)
    if proc.wait(BUILD_TIMEOUT_S) != 0:
        raise EnvError(f"{what} failed: {pip_reason(lines)}")


def pip_reason(lines: list[str]) -> str:
    """pip's reason in one line: its first 'ERROR:' line (without the long version list), else the last line."""
    errors = [line for line in lines if line.startswith("ERROR:")]
    text = errors[0] if errors else next((line for line in reversed(lines) if line.strip()), "(no output)")
    text = re.sub(r"\(from versions: [^)]*\)", "", text)
    return " ".join(text.removeprefix("ERROR:").split())[:300]


STEPS = ("Collecting", "Downloading", "Installing", "Successfully", "ERROR")  # pip's lines worth a glance


class _Status:
    """One status line per environment build on stderr (a tqdm bar showing elapsed time and pip's last step)."""

    def __init__(self, desc: str, enabled: bool) -> None:
        self.bar: Any = None
        self.desc, self.plain = desc, enabled and not sys.stderr.isatty()  # a log file gets two lines, no bar
        self._stop = threading.Event()
        if self.plain:
            print(f"{desc}: building", file=sys.stderr, flush=True)
        elif enabled:
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, bar_format="{desc}: {elapsed} {postfix}", file=sys.stderr, dynamic_ncols=True)
            threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def note(self, line: str) -> None:
        if self.bar is not None and line.startswith(STEPS):
            self.bar.set_postfix_str(line.strip()[:60], refresh=False)

    def close(self, text: str) -> None:
        self._stop.set()
        if self.plain:
            print(f"{self.desc}: {text}", file=sys.stderr, flush=True)
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
            self.bar.close()


def _sources() -> list[Path]:
    """The running refconv's packages (refconv/ and adapters/)."""
    import adapters
    import refconv

    return [Path(refconv.__file__).parent, Path(adapters.__file__).parent]


def fingerprint(sources: list[Path] | None = None) -> str:
    """A hash of the running refconv's source files (the worker protocol lives there)."""
    digest = hashlib.sha256()
    for src in sources or _sources():
        for file in sorted(src.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(src.parent)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def site_packages(path: Path) -> Path:
    found = sorted(path.glob("lib/python*/site-packages"))
    if not found:
        raise EnvError(f"environment {path} has no site-packages")
    return found[0]


def _sync_refconv(path: Path) -> None:
    """Copy the running refconv's packages into the environment when they changed since the last copy."""
    sources = _sources()
    stamp = fingerprint(sources)
    stamp_file = path / "refconv-source.txt"
    if stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return
    site = site_packages(path)
    for src in sources:
        shutil.rmtree(site / src.name, ignore_errors=True)
        shutil.copytree(src, site / src.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stamp_file.write_text(stamp + "\n")


def prepare(labels: list[str], allow_large: bool = False, progress: bool = False) -> dict[str, str]:
    """Build the environments of every pinned label now; {label: reason} for those that cannot be built."""
    failed: dict[str, str] = {}
    for label in labels:
        if needs_env(label):
            try:
                ensure(label, allow_large=allow_large, progress=progress)
            except EnvError as exc:
                failed[label] = str(exc)
    return failed
