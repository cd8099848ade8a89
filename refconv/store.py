"""A run directory on disk: append-only rows, atomically rewritten tables, and JSON metadata.

Layout of `reports/<run-id>/`:
- rows.jsonl: one JSON row per line, appended as cases finish (flushed each batch, fsynced at most once a
  second), so a run killed at any moment keeps every finished row; a torn last line is ignored and cut off.
- results.csv, results.parquet: the same rows in COLUMNS order, rewritten whole (temp file + os.replace)
  periodically and at the end, so they are never half-written.
- run.json (the run's arguments and case list, for --resume), provenance.json, repro/.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from refconv.errors import UsageError
from refconv.rows import COLUMNS

ROWS_FILE = "rows.jsonl"
RUN_FILE = "run.json"
FSYNC_EVERY_S = 1.0


def _json_default(value: Any) -> Any:
    """NumPy scalars and tuples as plain JSON."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


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

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self._rows_file: Any = None
        self._last_sync = 0.0

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path | str) -> RunStore:
        """A new run directory; an existing run there, or a folder that cannot be written, is a UsageError."""
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
        return cls(path)

    @classmethod
    def open(cls, run_dir: Path | str) -> RunStore:
        """An existing run directory (for --resume); one without run.json is a UsageError."""
        path = Path(run_dir)
        if not (path / RUN_FILE).is_file():
            raise UsageError(f"{path} is not a refconv run directory (no {RUN_FILE})")
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write the run directory {path}")
        return cls(path)

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

    def _open_rows(self) -> Any:
        if self._rows_file is None:
            self._cut_torn_tail()
            self._rows_file = open(self.rows_path, "a", encoding="utf-8")  # noqa: SIM115 (held for the run)
        return self._rows_file

    def _cut_torn_tail(self) -> None:
        """A run killed mid-write may leave a line without its newline: cut it so appends start clean."""
        if not self.rows_path.exists():
            return
        data = self.rows_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.rows_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append a batch of rows as one write, flushed now and fsynced at most once a second."""
        text = "".join(json.dumps(row, default=_json_default) + "\n" for row in rows)
        if not text:
            return
        f = self._open_rows()
        f.write(text)
        f.flush()
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_EVERY_S:
            os.fsync(f.fileno())
            self._last_sync = now

    def close(self) -> None:
        if self._rows_file is not None:
            self._rows_file.flush()
            os.fsync(self._rows_file.fileno())
            self._rows_file.close()
            self._rows_file = None

    # --- tables ------------------------------------------------------------------------------
    def write_tables(self, rows: Sequence[dict[str, Any]]) -> list[Path]:
        """results.csv and results.parquet in COLUMNS order (extra columns after), each written atomically."""
        import pandas as pd

        extra = sorted({k for row in rows for k in row} - set(COLUMNS))
        frame = pd.DataFrame(list(rows), columns=list(COLUMNS) + extra)
        csv_path, parquet_path = self.dir / "results.csv", self.dir / "results.parquet"
        atomic_write(csv_path, lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write(parquet_path, lambda tmp: frame.to_parquet(tmp, index=False))
        return [csv_path, parquet_path]
