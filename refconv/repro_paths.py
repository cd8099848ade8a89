"""Where a run's repro scripts live: repro/<case id>__<adapter>.py (shared by the forward and training-op writers)."""

from __future__ import annotations

import re
from pathlib import Path

REPRO_DIR = "repro"


def safe_name(label: str) -> str:
    """An adapter label as a file name: tf:onednn=off -> tf_onednn=off."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label)


def script_path(run_dir: Path, case_id: str, label: str) -> Path:
    """The repro script of one (case, adapter) finding."""
    return Path(run_dir) / REPRO_DIR / f"{case_id}__{safe_name(label)}.py"
