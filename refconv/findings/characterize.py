"""Characterize a failure: probe around its minimal case and infer the region where it fails.

`characterize(spec, fails, budget, seed)` runs `fails(probe) -> True | False | None` (None: the probe says
nothing, e.g. the adapter cannot express that case) on
1. the minimal case itself, then its neighbours one factor at a time (each field through a small domain);
2. rounds of seeded random probes, each half inside and half outside the region learned so far (the
   minimal case with 2-4 fields redrawn), until a round agrees with the region or the budget is spent.

The region is one conjunction of conditions in a known deviation's `when` form, over the spec's columns,
`refconv.deviations.derived` facts and the relations of `facts.relations` (sw_gt_sh, depthwise, ...). It is
learned by a greedy rule learner, as in subgroup discovery: start from "every case" and add the condition
(true on the minimal case) that raises the weighted relative accuracy most (coverage x lift of the failing
share), as long as it drops at least two passing probes and passes CN2's likelihood-ratio significance test,
so noise does not become conditions; then drop conditions whose removal keeps the precision.

On a fleet (`refconv hunt --dask`) a probe runs on one worker of each hardware kind and `fails` answers with
one verdict per kind: a list of (that kind's hardware facts, verdict), e.g. ({'isa': 'onednn:avx2',
'cpu_features': ...}, True). Each is its own sample, so `isa` and `cpu_features` are factors like any other
and a region may name the hardware it needs ("c_in = 1, isa = onednn:avx2"). Where they do not vary (one
machine, or workers alike) no condition on them can drop a passing probe, so none is ever learned.

Precision and recall are measured over every probe, the ones the region was learned from included. Probing
stops early once a fresh random round leaves the region explaining every probe; data-dependent bugs (only
a share of the cases in a region fail) spend the whole budget.

>>> from refconv.spec import ConvSpec
>>> spec = ConvSpec(n=2, h=2, w=2, c_in=1, c_out=1, kh=1, kw=1, strides=(1, 2))
>>> region = characterize(spec, lambda s: s.n >= 2 and s.c_in == 1, budget=150)
>>> region.conditions, region.precision, region.recall
({'c_in': 1, 'n': {'min': 2}}, 1.0, 1.0)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from refconv.errors import SpecError
from refconv.findings import facts as F
from refconv.spec import ConvSpec

# Values each field is probed at (one factor at a time, and redrawn from in the random rounds).
DOMAIN: dict[str, tuple[Any, ...]] = {
    "n": (1, 2, 3, 4), "h": (1, 2, 3, 4, 5, 8), "w": (1, 2, 3, 4, 5, 8), "c_in": (1, 2, 3, 4, 8),
    "c_out": (1, 2, 3, 4, 8), "kh": (1, 2, 3, 4), "kw": (1, 2, 3, 4), "sh": (1, 2, 3), "sw": (1, 2, 3),
    "dh": (1, 2, 3), "dw": (1, 2, 3), "groups": (1, 2, "depthwise"),
    "padding": ("SAME", "VALID", ((1, 0), (0, 1)), ((1, 1), (1, 1)), ((0, 2), (2, 0))),
    "dtype": ("float32", "float64", "float16", "bfloat16"), "layout": ("NHWC", "NCHW", "channels_last"),
    "bias": (True, False), "activation": (None, "relu"),
}
ROUND = 24  # probes per random round
MAX_ROUNDS = 6
MIN_DROPPED = 2  # passing probes a new condition must exclude
MIN_LRS = 2.0  # and its covered probes must differ from the parent's mix (CN2's likelihood ratio, ~85%)
OFAT_SHARE = 0.6  # at most this share of the budget goes to one-factor-at-a-time probes
FEATURES = F.NUMERIC + F.CATEGORICAL + F.BOOLEAN + F.HARDWARE
POSITIVE_COLUMNS = ("n", "h", "w", "c_in", "c_out", "kh", "kw", "sh", "sw", "dh", "dw", "groups")

Verdict = bool | None  # failed, passed, or nothing said (the adapter cannot run the case)
Fails = Callable[[ConvSpec], Verdict | list[tuple[dict[str, Any], Verdict]]]  # one verdict, or one per hardware kind
Sample = tuple[dict[str, Any], bool]


@dataclass
class Region:
    """Where a failure happens: conditions, how well they fit the probes, and the probe counts."""

    conditions: dict[str, Any]
    precision: float | None  # failing share of probes inside the conditions
    recall: float | None  # share of failing probes inside the conditions
    probes: int  # verdicts (True or False): one per probe, on a fleet one per probe and hardware kind
    inside: int = 0  # of those, inside the conditions
    failing: int = 0  # of those, failing
    skipped: int = 0  # probes that said nothing (None)
    samples: list[tuple[str, bool]] = field(default_factory=list)  # (case id, failed), in probe order


def with_field(spec: ConvSpec, name: str, value: Any) -> ConvSpec | None:
    """The case with one field set (sh/sw/dh/dw are halves of a pair); None when that is not a valid case."""
    changes: dict[str, Any]
    if name in ("sh", "sw"):
        changes = {"strides": (value, spec.strides[1]) if name == "sh" else (spec.strides[0], value)}
    elif name in ("dh", "dw"):
        changes = {"dilations": (value, spec.dilations[1]) if name == "dh" else (spec.dilations[0], value)}
    elif name == "groups":
        changes = _groups_changes(spec, value)
    elif name in ("c_in", "c_out") and spec.groups > 1 and value % spec.groups:
        changes = {name: value, "groups": 1}  # keep the probe: the case stops being grouped
    else:
        changes = {name: value}
    try:
        return spec.replace(name="", **changes)
    except (SpecError, TypeError, ValueError):
        return None


def _groups_changes(spec: ConvSpec, value: Any) -> dict[str, Any]:
    """groups k with the channels per group kept, or depthwise over the current input channels."""
    if value == "depthwise":
        c_in = max(spec.c_in, 2)
        return {"groups": c_in, "c_in": c_in, "c_out": c_in * max(1, spec.c_out // spec.c_in)}
    per_in, per_out = spec.c_in // spec.groups, spec.c_out // spec.groups
    return {"groups": value, "c_in": per_in * value, "c_out": per_out * value}


def neighbours(spec: ConvSpec) -> Iterator[ConvSpec]:
    """The case with one field changed, each field through its domain (invalid combinations skipped)."""
    seen = {spec.id}
    for name, values in DOMAIN.items():
        for value in values:
            probe = with_field(spec, name, value)
            if probe is not None and probe.id not in seen:
                seen.add(probe.id)
                yield probe


def perturb(spec: ConvSpec, rng: random.Random) -> ConvSpec | None:
    """The case with 2-4 random fields redrawn from their domains (None if the result is not valid)."""
    probe: ConvSpec | None = spec
    for name in rng.sample(sorted(DOMAIN), rng.randint(2, 4)):
        if probe is None:
            return None
        probe = with_field(probe, name, rng.choice(DOMAIN[name]))
    return probe


# --- the learner --------------------------------------------------------------------------------------


def _candidates(anchor: dict[str, Any], samples: list[Sample]) -> Iterator[tuple[str, Any]]:
    """Conditions true on the anchor (the minimal case): values, lists of values, one-sided ranges."""
    for column in FEATURES:
        a = anchor.get(column)
        if a is None and column != "activation":
            continue
        seen = {s[0].get(column) for s in samples}
        if column in F.NUMERIC:
            if not isinstance(a, (int, float)):
                continue
            numbers = sorted(v for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool))
            yield column, a
            for t in numbers:
                if t < a:
                    yield column, {"min": t + 1 if isinstance(t, int) else t}
                elif t > a:
                    yield column, {"max": t - 1 if isinstance(t, int) else t}
        else:
            yield column, a
            failing = sorted({s[0].get(column) for s in samples if s[1]}, key=repr)
            if a in failing and 1 < len(failing) < len(seen):
                yield column, failing


class _Masks:
    """Which samples each condition covers, as bit masks (cached): the learner's counts are popcounts."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.all = (1 << len(samples)) - 1
        self.failing = sum(1 << i for i, (_, failed) in enumerate(samples) if failed)
        self._cache: dict[tuple[str, str], int] = {}

    def of(self, column: str, wanted: Any) -> int:
        key = (column, repr(wanted))
        if key not in self._cache:
            self._cache[key] = sum(1 << i for i, (values, _) in enumerate(self.samples)
                                   if F.holds(values, {column: wanted}))
        return self._cache[key]

    def rule(self, rule: list[tuple[str, Any]]) -> int:
        mask = self.all
        for column, wanted in rule:
            mask &= self.of(column, wanted)
        return mask

    def counts(self, mask: int) -> tuple[int, int]:
        """(failing, passing) samples in the mask."""
        p = (mask & self.failing).bit_count()
        return p, mask.bit_count() - p

    def fit(self, rule: list[tuple[str, Any]]) -> tuple[float, float]:
        """(precision, recall) of a rule."""
        p, n = self.counts(self.rule(rule))
        total_p = self.failing.bit_count()
        return (p / (p + n) if p + n else 0.0, p / total_p if total_p else 0.0)


def _wracc(p: int, n: int, total_p: int, total: int) -> float:
    """Weighted relative accuracy of covering p failing and n passing probes: coverage x precision lift."""
    return (p + n) / total * ((p / (p + n) if p + n else 0.0) - total_p / total)


def _lrs(p1: int, n1: int, p0: int, n0: int) -> float:
    """CN2's likelihood ratio statistic: how far (p1, n1) is from the mix of (p0, n0) (chi-square, 1 dof)."""
    total1, total0 = p1 + n1, p0 + n0
    out = 0.0
    for observed, share in ((p1, p0 / total0), (n1, n0 / total0)):
        if observed:
            out += observed * math.log(observed / (share * total1))
    return 2 * out


def _rank(column: str, wanted: Any) -> int:
    """Tie-break: plain values before lists before ranges; raw columns before derived facts."""
    kind = 0 if not isinstance(wanted, (dict, list)) else 1 if isinstance(wanted, list) else 2
    derived = 0 if column in POSITIVE_COLUMNS or column in F.CATEGORICAL or column == "bias" else 1
    return kind * 2 + derived


def learn(anchor: dict[str, Any], samples: list[Sample]) -> list[tuple[str, Any]]:
    """One conjunction that holds on the anchor and separates failing from passing samples (greedy, pruned)."""
    masks = _Masks(samples)
    total, total_p = len(samples), masks.failing.bit_count()
    if not total_p:
        return []
    options = list(_candidates(anchor, samples))
    rule: list[tuple[str, Any]] = []
    covered = masks.all
    score = _wracc(total_p, total - total_p, total_p, total)
    while True:
        p0, n0 = masks.counts(covered)
        if not n0:
            break
        best: tuple[float, int, int, str, Any] | None = None
        for column, wanted in options:
            p1, n1 = masks.counts(covered & masks.of(column, wanted))
            if n0 - n1 < MIN_DROPPED or _lrs(p1, n1, p0, n0) < MIN_LRS:  # noise, not a condition
                continue
            key = (_wracc(p1, n1, total_p, total), p1, -_rank(column, wanted))
            if best is None or key > best[:3]:
                best = (*key, column, wanted)
        if best is None or best[0] <= score:
            break
        score = best[0]
        rule.append((best[3], best[4]))
        covered &= masks.of(best[3], best[4])
    return _prune(_swap(_prune(rule, masks), options, masks), masks)


def _swap(rule: list[tuple[str, Any]], options: list[tuple[str, Any]], masks: _Masks) -> list[tuple[str, Any]]:
    """Replace conditions by ones that keep the precision and raise the recall (greedy growth picks proxies:
    `K = 1` where the cause is a non-empty output, say); repeated until nothing improves."""
    improved = True
    while improved:
        improved = False
        precision, recall = masks.fit(rule)
        for i in range(len(rule)):
            for option in options:
                trial = rule[:i] + [option] + rule[i + 1:]
                p, r = masks.fit(trial)
                if p >= precision and r > recall:
                    rule, precision, recall, improved = trial, p, r, True
    return rule


def _prune(rule: list[tuple[str, Any]], masks: _Masks) -> list[tuple[str, Any]]:
    """Drop conditions (last added first) whose removal keeps the precision."""
    for condition in list(reversed(rule)):
        shorter = [c for c in rule if c is not condition]
        if masks.fit(shorter)[0] >= masks.fit(rule)[0]:
            rule = shorter
    return rule


def as_when(rule: list[tuple[str, Any]]) -> dict[str, Any]:
    """A rule as a `when` mapping: ranges on one column merged, one-value ranges written as the value."""
    when: dict[str, Any] = {}
    for column, wanted in rule:
        old = when.get(column)
        if isinstance(wanted, dict) and isinstance(old, dict):
            low = max(v for v in (old.get("min"), wanted.get("min")) if v is not None) \
                if "min" in old or "min" in wanted else None
            high = min(v for v in (old.get("max"), wanted.get("max")) if v is not None) \
                if "max" in old or "max" in wanted else None
            wanted = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
        when[column] = wanted
    for column, wanted in list(when.items()):
        if isinstance(wanted, dict):
            low = wanted.get("min", 1 if column in POSITIVE_COLUMNS else 0)
            if wanted.get("max") == low:
                when[column] = low
    return dict(sorted(when.items()))


# --- the probing ----------------------------------------------------------------------------------------


class _Prober:
    """Runs probes once each, within a budget and deadline, and keeps (facts, failed) samples."""

    def __init__(self, fails: Fails, budget: int, deadline: float | None) -> None:
        self.fails, self.budget, self.deadline = fails, budget, deadline
        self.calls, self.skipped = 0, 0
        self.samples: list[Sample] = []
        self.log: list[tuple[str, bool]] = []
        self.seen: set[str] = set()

    @property
    def spent(self) -> bool:
        return self.calls >= self.budget or (self.deadline is not None and time.monotonic() >= self.deadline)

    def probe(self, spec: ConvSpec) -> None:
        if spec.id in self.seen or self.spent:
            return
        self.seen.add(spec.id)
        self.calls += 1
        answer = self.fails(spec)
        told = [(hw, v) for hw, v in (answer if isinstance(answer, list) else [({}, answer)]) if v is not None]
        if not told:
            self.skipped += 1
            return
        case = F.facts_of(spec)
        for hardware, verdict in told:
            self.samples.append(({**case, **hardware}, bool(verdict)))
            self.log.append((spec.id, bool(verdict)))


def _random_round(spec: ConvSpec, when: dict[str, Any], prober: _Prober, rng: random.Random, size: int) -> None:
    """Up to `size` new probes, half inside `when` and half outside, drawn around the minimal case."""
    want = {True: size // 2, False: size - size // 2}
    for _ in range(size * 40):
        if prober.spent or not any(want.values()):
            return
        probe = perturb(spec, rng)
        if probe is None or probe.id in prober.seen:
            continue
        inside = F.holds(F.facts_of(probe), F.case_part(when))  # every hardware kind runs it anyway
        if want[inside] > 0 or not when:
            want[inside if want[inside] > 0 else not inside] -= 1
            prober.probe(probe)


def characterize(spec: ConvSpec, fails: Fails, budget: int = 160, seed: int = 0,
                 deadline: float | None = None) -> Region:
    """Probe around a minimal failing case and return the region it fails in (see the module docstring)."""
    rng = random.Random(seed)
    prober = _Prober(fails, budget, deadline)
    prober.probe(spec)
    ofat = _Prober(fails, max(1, int(budget * OFAT_SHARE)), deadline)
    ofat.seen, ofat.samples, ofat.log = prober.seen, prober.samples, prober.log
    for probe in neighbours(spec):
        ofat.probe(probe)
    prober.calls += ofat.calls
    prober.skipped += ofat.skipped
    anchor = _anchor(spec, prober.samples)
    rule = learn(anchor, prober.samples)
    for _ in range(MAX_ROUNDS):
        if prober.spent:
            break
        before = len(prober.samples)
        _random_round(spec, as_when(rule), prober, rng, ROUND)
        fresh = prober.samples[before:]
        if fresh and all(F.holds(v, as_when(rule)) == failed for v, failed in prober.samples):
            break  # the region explains every probe, the fresh round included: stop probing
        rule = learn(anchor, prober.samples)
    return measure(as_when(rule), prober)


def _anchor(spec: ConvSpec, samples: list[Sample]) -> dict[str, Any]:
    """The minimal case's facts, with the hardware of its first failing verdict (probed first) where it has one."""
    own = [values for values, failed in samples if failed and values.get("case_id", spec.id) == spec.id]
    return own[0] if own else F.facts_of(spec)


def measure(when: dict[str, Any], prober: _Prober) -> Region:
    """Precision, recall and counts of a region over the probes."""
    inside = [failed for values, failed in prober.samples if F.holds(values, when)]
    failing = sum(failed for _, failed in prober.samples)
    hits = sum(inside)
    return Region(
        conditions=when, precision=hits / len(inside) if inside else None,
        recall=hits / failing if failing else None, probes=len(prober.samples), inside=len(inside),
        failing=failing, skipped=prober.skipped, samples=list(prober.log),
    )
