"""Group findings (non-pass rows, hunted problems) into distinct problems, each shown once.

`group_rows(rows)` groups a plain run's rows without running anything:
- rows that a known deviation explains go together by the deviation's id, across adapters;
- the rest go together when they share the adapter family (the label without its options, so `tf` and
  `tf:onednn=on` meet but `tf` and `torch` do not), the outcome, the broken relation (rows of metamorphic
  relations) and a signature: the set of degenerate facts of the case (`facts.DEGENERATE`: batch >= 2, one
  input or output channel, one output row or column, sw > sh, input short of the kernel, ...). A row joins
  the group whose signature is the largest non-empty subset of its own (a 9x9 case with c_in = 1, n = 3 and
  sw > sh joins the group of those three facts, though it lacks the 1x1 kernel of a smaller failing case),
  so each group's signature holds on every row in it. The signature becomes the problem's `conditions`; it
  is not a measured region (precision and recall stay null until `refconv hunt` characterizes it).
The smallest failing case (by element count: input + kernel + output) is the minimal case; `engines` holds
every adapter's outcome on it from the same rows.

`merge(problems)` groups hunted problems across adapters: same known deviation, or same outcome and the
same characterized conditions with each minimal case failing alike on the other's adapters; a broken
relation whose minimal case already fails directly (inside a case problem's region, same engine family)
is folded into that problem ("also breaks batch_split").

>>> row = {"case_id": "n2-3x3x1-k1x2x1-s1x2-same-f32", "adapter": "tf", "outcome": "mismatch",
...        "known_deviation": "", "n": 2, "h": 3, "w": 3, "c_in": 1, "c_out": 1, "kh": 1, "kw": 2,
...        "sh": 1, "sw": 2, "dh": 1, "dw": 1, "groups": 1, "out_h": 3, "out_w": 2, "repro": ""}
>>> [p.id for p in group_rows([row])]
['tf-mismatch-n2plus-c_in1-c_out1-sw_gt_sh-kh1']
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from refconv.errors import SpecError
from refconv.findings import facts as F
from refconv.findings.problem import Problem
from refconv.spec import ConvSpec

NOT_FINDINGS = ("pass", "unsupported")


def family(label: str) -> str:
    """The adapter without its options: 'tf:onednn=on' -> 'tf', 'pkg.mod:Class:k=v' -> 'pkg.mod:Class'."""
    return ":".join(part for part in label.split(":") if "=" not in part)


def size(row: dict[str, Any]) -> int:
    """Elements of a case: input + kernel + output (the minimal case is the smallest)."""
    try:
        return int(row["n"] * row["h"] * row["w"] * row["c_in"]
                   + row["kh"] * row["kw"] * (row["c_in"] // max(row.get("groups", 1), 1)) * row["c_out"]
                   + row["n"] * row.get("out_h", 0) * row.get("out_w", 0) * row["c_out"])
    except (KeyError, TypeError):
        return 1 << 62


def slug(*parts: str) -> str:
    """A stable id from words: lower case, [a-z0-9_-] only."""
    text = "-".join(p for p in parts if p)
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "problem"


def _token(column: str, wanted: Any) -> str:
    if isinstance(wanted, dict):
        low, high = wanted.get("min"), wanted.get("max")
        if low is not None and high is not None:
            return f"{column}{low}" if low == high else f"{column}{low}to{high}"
        return f"{column}{low}plus" if low is not None else f"{column}max{high}"
    if isinstance(wanted, list):
        return column + "_".join(str(v) for v in wanted)
    if wanted is True:
        return column
    if wanted is False:
        return f"no_{column}"
    return f"{column}{wanted}"


def condition_slug(when: dict[str, Any]) -> str:
    """Conditions as id tokens: {'n': {'min': 2}, 'c_in': 1} -> 'n2plus-c_in1'."""
    return "-".join(_token(c, w) for c, w in when.items())


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """The grouping key of a failing row: ('known', id) or ('new', family, outcome, relation, signature)."""
    known = str(row.get("known_deviation") or "")
    if known:
        return ("known", known)
    signature = F.degenerate(F.facts(row))
    relation = str(row.get("relation") or "")
    return ("new", family(str(row.get("adapter", ""))), str(row.get("outcome", "")), relation,
            json.dumps(signature, sort_keys=False))


def _known_when(deviation_id: str) -> dict[str, Any]:
    from refconv import deviations

    try:
        entries = deviations.load()
    except Exception:  # a malformed data file is the deviations module's error to report, not grouping's
        return {}
    for entry in entries:
        if entry.id == deviation_id:
            return dict(entry.when)
    return {}


def title(adapters: Iterable[str], outcome: str, when: dict[str, Any]) -> str:
    """One line: 'tf: mismatch when n >= 2, c_in = 1'."""
    return f"{', '.join(adapters)}: {outcome} when {F.describe(when)}"


def _problem(key: tuple[str, ...], failing: list[dict[str, Any]], by_case: dict[str, list[dict[str, Any]]]) -> Problem:
    smallest = min(failing, key=lambda r: (size(r), str(r["case_id"])))
    minimal = str(smallest["case_id"])
    adapters = sorted({str(r["adapter"]) for r in failing})
    outcome = Counter(str(r["outcome"]) for r in failing).most_common(1)[0][0]
    if key[0] == "known":
        known: str | None = key[1]
        when = _known_when(key[1])
        pid = key[1]
    else:
        known = None
        when = dict(json.loads(key[4]))
        if key[3]:
            when = {"relation": key[3], **when}
        pid = slug(key[1], outcome, condition_slug(when))
    cases = [minimal] + sorted({str(r["case_id"]) for r in failing} - {minimal})
    return Problem(
        id=pid, adapters=adapters, outcome=outcome, minimal_case=minimal, cases=cases, conditions=when,
        known_deviation=known, engines={str(r["adapter"]): str(r["outcome"]) for r in by_case.get(minimal, [])},
        repro=str(smallest.get("repro") or "") or None, title=title(adapters, outcome, when), rows=len(failing),
    )


def row_groups(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Failing rows by group key (see the module docstring): signatures folded into their largest subset."""
    exact: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("outcome") not in NOT_FINDINGS:
            exact.setdefault(row_key(row), []).append(row)
    folded: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key in sorted(exact, key=lambda k: (k[0], len(json.loads(k[-1])) if k[0] == "new" else 0, k)):
        target = key
        if key[0] == "new":
            mine = json.loads(key[-1]).items()
            subsets = [k for k in folded if k[:-1] == key[:-1] and json.loads(k[-1])  # {} says nothing of a cause
                       and all(item in mine for item in json.loads(k[-1]).items())]
            target = max(subsets, key=lambda k: len(json.loads(k[-1])), default=key)
        folded.setdefault(target, []).extend(exact[key])
    return folded


def group_rows(rows: list[dict[str, Any]]) -> list[Problem]:
    """Distinct problems among a run's rows (pass all rows: passes fill `engines`); NEW problems first."""
    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(str(row.get("case_id", "")), []).append(row)
    problems = [_problem(key, failing, by_case) for key, failing in row_groups(rows).items()]
    return unique_ids(sorted(problems, key=lambda p: (p.known_deviation is not None, -p.rows, p.id)))


def unique_ids(problems: list[Problem]) -> list[Problem]:
    """Suffix -2, -3, ... onto repeated ids so each problem has its own."""
    seen: Counter[str] = Counter()
    for problem in problems:
        seen[problem.id] += 1
        if seen[problem.id] > 1:
            problem.id = f"{problem.id}-{seen[problem.id]}"
    return problems


def _alike(p: Problem, q: Problem) -> bool:
    """One cause: the same known deviation, or one characterization whose minimal cases fail alike."""
    if p.known_deviation or q.known_deviation:
        return p.known_deviation == q.known_deviation
    if p.outcome != q.outcome or not p.probes or not q.probes or p.conditions != q.conditions:
        return False
    return all(q.engines.get(a) == p.outcome for a in p.adapters) and \
        all(p.engines.get(a) == q.outcome for a in q.adapters)


def _explains(p: Problem, q: Problem) -> bool:
    """Does the case problem `p` account for the broken relation `q`: same engine family, and q's minimal case
    already fails directly (it is p's minimal case, or lies in p's characterized region)?"""
    if q.outcome != "broken" or p.outcome == "broken" or not p.probes:
        return False
    if not {family(a) for a in p.adapters} & {family(a) for a in q.adapters}:
        return False
    if q.minimal_case == p.minimal_case:
        return True
    try:
        values = F.facts_of(ConvSpec.from_id(q.minimal_case))
    except SpecError:
        return False
    return bool(p.conditions) and F.holds(values, p.conditions)


def merge(problems: list[Problem]) -> list[Problem]:
    """Problems with one cause as one (see `_alike`), and broken relations a case problem accounts for
    (`_explains`) folded into it; the first keeps its id, minimal case and region."""
    out: list[Problem] = []
    also: dict[int, list[str]] = {}  # id(kept problem) -> relations folded into it
    for problem in sorted(problems, key=lambda p: p.outcome == "broken"):  # case problems first (stable)
        twin = next((kept for kept in out if _alike(kept, problem) or _explains(kept, problem)), None)
        if twin is None:
            out.append(problem)
            continue
        if twin.outcome != problem.outcome:
            relations = also.setdefault(id(twin), [])
            relations.append(str(problem.conditions.get("relation", "a relation")))
            twin.title = f"{title(twin.adapters, twin.outcome, twin.conditions)}; also breaks {', '.join(relations)}"
        else:
            twin.adapters = sorted(set(twin.adapters) | set(problem.adapters))
            twin.engines = {**problem.engines, **twin.engines}
            twin.probes = max(twin.probes, problem.probes)  # the region was measured once, not summed
        twin.cases += [c for c in problem.cases if c not in twin.cases]
        twin.rows += problem.rows
        if twin.outcome == problem.outcome:
            twin.title = title(twin.adapters, twin.outcome, twin.conditions)
    return out
