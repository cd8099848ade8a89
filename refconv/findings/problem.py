"""`Problem`: one distinct failure, the unit of findings.json and of the report's problems section.

A problem groups findings (non-pass rows) with one cause: which adapters fail, how, the minimal case
that shows it, the region where it happens (conditions in a known deviation's `when` form) and how well
that region was measured. Every field is JSON-safe; `Problem.from_dict(p.to_dict()) == p`.

>>> p = Problem(id="tf-mismatch-c_in1", adapters=["tf"], outcome="mismatch",
...             minimal_case="n2-2x1x1-k1x2x1-s1x2-same-f32", cases=["n2-2x1x1-k1x2x1-s1x2-same-f32"])
>>> Problem.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from refconv.errors import UsageError

FINDINGS_FILE = "findings.json"


@dataclass
class Problem:
    """One problem: the fields of a findings.json entry (see docs/hunting.md for each one)."""

    id: str  # stable slug, e.g. a known deviation's id or 'torch-mismatch-c_in1-n2plus'
    adapters: list[str]  # labels that fail this way
    outcome: str  # mismatch, raised, wrong_shape, crashed, timeout, broken
    minimal_case: str  # case id of the smallest case that shows it
    cases: list[str]  # case ids that showed it (minimal case first)
    conditions: dict[str, Any] = field(default_factory=dict)  # a known deviation's `when` form
    precision: float | None = None  # failing share of probed cases inside `conditions`
    recall: float | None = None  # share of failing probes that lie inside `conditions`
    probes: int = 0  # cases run to characterize it (0: not characterized)
    known_deviation: str | None = None  # id of the reviewed entry that explains it, or None (NEW)
    engines: dict[str, str] = field(default_factory=dict)  # adapter label -> outcome on the minimal case
    repro: str | None = None  # repro script of the minimal case, relative to the run directory
    upstream_report: str | None = None  # markdown bug report, relative to the run directory
    title: str = ""  # one line in words
    present_since: str | None = None  # filled by bisection
    rows: int = 0  # failing rows in the group

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict in field order."""
        return _plain(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Back from `to_dict` (unknown keys are ignored, so older readers accept newer files)."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise UsageError(f"not a findings.json problem: {exc}") from None


def _plain(value: Any) -> Any:
    """Tuples to lists, NumPy scalars to Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def dump(problems: list[Problem]) -> list[dict[str, Any]]:
    """findings.json's content: a list of problem dicts."""
    return [p.to_dict() for p in problems]


def load(data: Any) -> list[Problem]:
    """Problems from findings.json's parsed content; anything but a list of dicts is a UsageError."""
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise UsageError("findings.json must hold a list of problem objects")
    return [Problem.from_dict(d) for d in data]
