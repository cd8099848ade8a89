"""A run directory on disk: append-only rows, atomically rewritten tables, and JSON metadata.

Layout of `reports/<run-id>/`:
- rows.jsonl: one JSON row per line, appended as cases finish (flushed each batch, fsynced at most once a
  second), so a run killed at any moment keeps every finished row; a torn last line is ignored and cut off.
- results.csv, results.parquet: the same rows in COLUMNS order, rewritten whole (temp file + os.replace)
  periodically and at the end, so they are never half-written.
- run.json (the run's arguments and case list, for --resume), provenance.json, repro/.
- .lock: held (fcntl.flock) by the one process writing the run, with its pid inside, so a second
  `refconv run --resume` on the same directory stops at once instead of interleaving rows.

A failed write (disk full) raises StoreWriteError with the resume command; the batch that failed is cut
off again, so rows.jsonl keeps exactly the rows finished before it. `check_resume` refuses to resume a run
made with other adapter or refconv versions unless forced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from refconv.errors import RefconvError, UsageError
from refconv.rows import COLUMNS, clean_text

ROWS_FILE = "rows.jsonl"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
FSYNC_EVERY_S = 1.0


class StoreWriteError(RefconvError):
    """Writing the run directory failed (disk full, ...); finished rows are kept and --resume continues."""


class RunLocked(UsageError):
    """Another process is writing this run directory."""


# Locks this process holds: resolved run dir -> open lock file. A process may open its own run again
# (a test resuming in-process); another process may not.
_HELD: dict[str, Any] = {}
_HELD_LOCK = threading.Lock()


def _lock(path: Path) -> None:
    """Take the run directory's lock for this process, or raise RunLocked naming the holder's pid."""
    key = str(path.resolve())
    with _HELD_LOCK:
        if key in _HELD:
            return
        lock_path = path / LOCK_FILE
        f = open(lock_path, "a+")  # noqa: SIM115 (held until the process ends or unlock())
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(f"{path} is in use by another refconv run (pid {holder}); wait for it to finish "
                                f"or stop it, then resume") from None
            raise UsageError(f"cannot lock the run directory {path}: {exc.strerror or exc}") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD[key] = f


def unlock(run_dir: Path | str) -> None:
    """Release this process's lock on a run directory (it is released at exit anyway)."""
    with _HELD_LOCK:
        f = _HELD.pop(str(Path(run_dir).resolve()), None)
    if f is not None:
        f.close()


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` (os.write may write part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def version_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How two provenance records differ in refconv's and the adapters' versions, one phrase each."""
    out = []
    if old.get("refconv_version") != new.get("refconv_version"):
        out.append(f"refconv {old.get('refconv_version')!r} -> {new.get('refconv_version')!r}")
    old_ad, new_ad = old.get("adapters") or {}, new.get("adapters") or {}
    for label in sorted(set(old_ad) & set(new_ad)):
        was, now = (old_ad[label] or {}).get("version"), (new_ad[label] or {}).get("version")
        if was != now:
            out.append(f"{label} {was!r} -> {now!r}")
    return out


def _json_default(value: Any) -> Any:
    """NumPy scalars and tuples as plain JSON."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every string encodable (an adapter's text may hold undecodable bytes)."""
    # ASCII text (nearly every key and value) cannot hold a surrogate: checked in C, not re-encoded, and a row
    # of ASCII text only is returned as it is (no copy: 2 rows per case pass here twice)
    for k, v in row.items():
        if not k.isascii() or (isinstance(v, str) and not v.isascii()):
            break
    else:
        return row
    return {k if k.isascii() else clean_text(k): clean_text(v) if isinstance(v, str) and not v.isascii() else v
            for k, v in row.items()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder, then rename over `path` (readers never see half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; reports are shared like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write(path, lambda tmp: _write_text(tmp, text))


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


class RunStore:
    """The files of one run directory."""

    def __init__(self, run_dir: Path, force: bool = False) -> None:
        self.dir = Path(run_dir)
        self.force = force  # resume even where adapter or refconv versions changed (check_resume)
        self._rows_fd: int | None = None
        self._last_sync = 0.0

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path | str) -> RunStore:
        """A new run directory, locked; an existing or running run there, or an unwritable folder, is a UsageError."""
        path = Path(run_dir)
        if (path / RUN_FILE).exists():
            raise UsageError(f"{path} already holds a run; use --resume {path} to finish it or choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-probe"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"cannot write the output folder {path}: {exc.strerror or exc}") from None
        _lock(path)
        if (path / RUN_FILE).exists():  # another process created it between the check and the lock
            unlock(path)
            raise UsageError(f"{path} already holds a run; use --resume {path} to finish it or choose another --out")
        return cls(path)

    @classmethod
    def open(cls, run_dir: Path | str, force: bool = False) -> RunStore:
        """An existing run directory (for --resume), locked; one without run.json, or running, is a UsageError."""
        path = Path(run_dir)
        if not (path / RUN_FILE).is_file():
            raise UsageError(f"{path} is not a refconv run directory (no {RUN_FILE})")
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write the run directory {path}")
        _lock(path)
        return cls(path, force)

    def unlock(self) -> None:
        """Let another process write this run directory (the lock also ends with this process)."""
        unlock(self.dir)

    def check_resume(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Refuse to add rows made with other versions to a run (provenance records), unless forced."""
        changed = version_difference(old, new)
        if changed and not self.force:
            raise UsageError(f"{self.dir} was run with other versions ({'; '.join(changed)}); its rows would mix "
                             f"them. Start a new run, or pass --force to resume anyway")

    # --- metadata ----------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> Path:
        path = self.dir / name
        write_json(path, data)
        return path

    def read_json(self, name: str) -> Any:
        path = self.dir / name
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None

    # --- rows --------------------------------------------------------------------------------
    @property
    def rows_path(self) -> Path:
        return self.dir / ROWS_FILE

    def rows(self) -> list[dict[str, Any]]:
        """Every complete stored row (a torn last line from a killed run is skipped)."""
        if not self.rows_path.exists():
            return []
        out = []
        for line in self.rows_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out.append(row)
        return out

    def _open_rows(self) -> int:
        if self._rows_fd is None:
            self._cut_torn_tail()
            self._rows_fd = os.open(self.rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        return self._rows_fd

    def _cut_torn_tail(self) -> None:
        """A run killed mid-write may leave a line without its newline: cut it so appends start clean."""
        if not self.rows_path.exists():
            return
        data = self.rows_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.rows_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append a batch of rows as one write, fsynced at most once a second; StoreWriteError if it fails.

        A batch that fails halfway is cut off again, so the file holds whole rows only.
        """
        text = "".join(json.dumps(_clean(row), default=_json_default) + "\n" for row in rows)
        if not text:
            return
        try:
            fd = self._open_rows()
            start = os.fstat(fd).st_size
        except OSError as exc:
            raise self._write_error(exc) from None
        try:
            _write_fd(fd, text.encode("utf-8", "surrogateescape"))
            now = time.monotonic()
            if now - self._last_sync >= FSYNC_EVERY_S:
                os.fsync(fd)
                self._last_sync = now
        except OSError as exc:
            with contextlib.suppress(OSError):  # if even this fails, resume cuts the torn tail (_cut_torn_tail)
                os.ftruncate(fd, start)  # the rows stored before this batch stay, whole
            raise self._write_error(exc) from None

    def _write_error(self, exc: OSError) -> StoreWriteError:
        return StoreWriteError(
            f"cannot write {self.rows_path}: {exc.strerror or exc}; every finished row is kept; "
            f"once fixed, continue with: refconv run --resume {os.fspath(self.dir)}")

    def close(self) -> None:
        """Sync and close rows.jsonl; never raises (a failed sync was reported by the append that failed)."""
        if self._rows_fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._rows_fd)
            os.close(self._rows_fd)
            self._rows_fd = None

    # --- tables ------------------------------------------------------------------------------
    def write_tables(self, rows: Sequence[dict[str, Any]]) -> list[Path]:
        """results.csv and results.parquet in COLUMNS order (extra columns after), each written atomically."""
        import pandas as pd

        extra = sorted({k for row in rows for k in row} - set(COLUMNS))
        frame = pd.DataFrame([_clean(row) for row in rows], columns=list(COLUMNS) + extra)
        csv_path, parquet_path = self.dir / "results.csv", self.dir / "results.parquet"
        atomic_write(csv_path, lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write(parquet_path, lambda tmp: frame.to_parquet(tmp, index=False))
        return [csv_path, parquet_path]
