"""Known deviations: reviewed data (refconv/data/known_deviations.toml), one entry per framework behaviour
that disagrees with the reference, each with a reason and an upstream link. A matching row keeps its
outcome and gains `known_deviation = <entry id>`; nothing is hidden.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Deviation:
    id: str
    adapter: str  # fnmatch pattern over the adapter label, e.g. "tf*"
    outcomes: tuple[str, ...]
    reason: str
    upstream: str
    when: dict[str, Any] = field(default_factory=dict)  # row column -> value or list of values (all must hold)

    def matches(self, row: dict[str, Any]) -> bool:
        if not fnmatch.fnmatchcase(str(row.get("adapter", "")), self.adapter):
            return False
        if row.get("outcome") not in self.outcomes:
            return False
        for column, wanted in self.when.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if row.get(column) not in values:
                return False
        return True


@cache
def load() -> tuple[Deviation, ...]:
    text = resources.files("refconv.data").joinpath("known_deviations.toml").read_text()
    out = []
    for entry_id, entry in tomllib.loads(text).items():
        out.append(Deviation(
            id=entry_id, adapter=entry["adapter"], outcomes=tuple(entry["outcomes"]), reason=entry["reason"],
            upstream=entry["upstream"], when=dict(entry.get("when", {})),
        ))
    return tuple(out)


def match(row: dict[str, Any]) -> str:
    """The id of the first known deviation that explains this row, or ''."""
    for deviation in load():
        if deviation.matches(row):
            return deviation.id
    return ""
