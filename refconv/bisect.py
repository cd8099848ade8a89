"""Since which release does a case fail? Binary search over an engine's released versions.

The versions come from the package registry through pip (`pip index versions <distribution>`), oldest
first. Each version tried runs the case on that version's environment (`refconv.envs`, built on first use)
and records the outcome; the search keeps "the good end's outcome" on one side and anything else on the
other, so it names the first version whose outcome differs from the good end's, with the last one that
did not. A version that cannot be installed here is skipped (recorded as unavailable). Already built
environments are preferred when they lie near the middle, which keeps the search logarithmic while
sparing builds.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from refconv import envs
from refconv.errors import UsageError

UNAVAILABLE = "unavailable"


@dataclass
class Trial:
    """The outcome of one case on one version."""

    version: str
    outcome: str
    bound_ratio: float = math.nan
    error: str = ""


@dataclass
class Bisection:
    """Every version tried (in the order tried) and the boundary found, if the outcome changed."""

    case_id: str
    engine: str
    trials: list[Trial] = field(default_factory=list)
    first_changed: str | None = None  # the first version whose outcome differs from the good end's
    last_same: str | None = None  # the version just before it (no version in between could be tried)
    note: str = ""

    def outcome_of(self, version: str | None) -> str:
        return next((t.outcome for t in self.trials if t.version == version), "")

    @property
    def present_since(self) -> str | None:
        """'2.16.0 (not in 2.15.1)' for findings.json; '2.12.0 or earlier (...)' when the oldest already fails."""
        if self.first_changed and self.last_same:
            return f"{self.first_changed} (not in {self.last_same})"
        tried = [t for t in self.trials if t.outcome != UNAVAILABLE]
        if tried and all(t.outcome == tried[0].outcome for t in tried) and tried[0].outcome != "pass":
            oldest = min((t.version for t in tried), key=version_key)
            return f"{oldest} or earlier (every release tried from {oldest} on fails the same way)"
        return None


def version_key(version: str) -> tuple[int, ...]:
    """A sort key for release versions: '2.15.0.post1' after '2.15.0', before '2.15.1'."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def parse_index_versions(text: str) -> list[str]:
    """The versions of `pip index versions` output, oldest first."""
    for line in text.splitlines():
        if line.strip().startswith("Available versions:"):
            found = [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
            return sorted(found, key=version_key)
    return []


def released_versions(engine: str) -> list[str]:
    """The engine's releases that pip can install for this Python, oldest first (from the registry)."""
    if engine not in envs.ENGINES:
        raise UsageError(f"cannot bisect {engine!r}; engines with versions: {', '.join(sorted(envs.ENGINES))}")
    dist = envs.ENGINES[engine][1]
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", dist, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    versions = parse_index_versions(proc.stdout)
    if not versions:
        raise UsageError(f"pip lists no versions of {dist}: {envs.pip_reason(proc.stderr.splitlines())}")
    return versions


def window(versions: list[str], good: str | None, bad: str | None) -> list[str]:
    """The versions from `good` (default the oldest) to `bad` (default the newest); UsageError for unknown ones."""
    for name, value in (("--good", good), ("--bad", bad)):
        if value is not None and value not in versions:
            raise UsageError(f"{name} {value} is not a released version; known: {', '.join(versions)}")
    lo = versions.index(good) if good else 0
    hi = versions.index(bad) if bad else len(versions) - 1
    if lo >= hi:
        raise UsageError(f"--good {versions[lo]} must be older than --bad {versions[hi]}")
    return versions[lo:hi + 1]


def bisect(case_id: str, engine: str, versions: list[str], probe: Callable[[str], Trial],
           is_cheap: Callable[[str], bool] = lambda v: False) -> Bisection:
    """Binary search over `versions` (oldest first) for the first whose outcome differs from the oldest's."""
    result = Bisection(case_id, engine)

    def run(index: int) -> Trial:
        trial = probe(versions[index])
        result.trials.append(trial)
        return trial

    lo, hi = 0, len(versions) - 1
    while lo < hi and run(lo).outcome == UNAVAILABLE:
        lo += 1
    while hi > lo and run(hi).outcome == UNAVAILABLE:
        hi -= 1
    if lo >= hi:
        result.note = "fewer than two versions could be tried"
        return result
    good = result.outcome_of(versions[lo])
    if result.outcome_of(versions[hi]) == good:
        result.note = f"same outcome ({good}) on {versions[lo]} and {versions[hi]}"
        return result
    skipped: set[int] = set()
    while True:
        candidates = [i for i in range(lo + 1, hi) if i not in skipped]
        if not candidates:
            break
        mid = _pick(candidates, versions, is_cheap)
        trial = run(mid)
        if trial.outcome == UNAVAILABLE:
            skipped.add(mid)
        elif trial.outcome == good:
            lo = mid
        else:
            hi = mid
    result.first_changed, result.last_same = versions[hi], versions[lo]
    between = [versions[i] for i in range(lo + 1, hi)]
    result.note = (f"first version with a different outcome: {versions[hi]} ({result.outcome_of(versions[hi])}); "
                   f"last with {good}: {versions[lo]}"
                   + (f"; untried in between (cannot be installed): {', '.join(between)}" if between else ""))
    return result


def _pick(candidates: list[int], versions: list[str], is_cheap: Callable[[str], bool]) -> int:
    """The middle candidate, or a cheap one (already built) within the middle half: still a halving step."""
    middle = candidates[len(candidates) // 2]
    quarter = max(1, len(candidates) // 4)
    near = [i for i in candidates[max(0, len(candidates) // 2 - quarter):len(candidates) // 2 + quarter + 1]
            if is_cheap(versions[i])]
    return min(near, key=lambda i: abs(i - middle)) if near else middle


def is_built(engine: str, version: str) -> bool:
    """Whether trying `version` needs no build: the local version, or a cached environment."""
    label = f"{engine}@{version}"
    return not envs.needs_env(label) or (envs.env_dir(engine, version) / envs.MARKER).exists()


def probe_case(engine: str, case_id: str, options: str = "", allow_large: bool = False, progress: bool = False,
               case_timeout: float = 120.0) -> Callable[[str], Trial]:
    """A probe that runs the case on `<engine>@<version><options>` and returns its outcome."""
    from refconv import runner
    from refconv.spec import ConvSpec

    spec = ConvSpec.from_id(case_id)

    def probe(version: str) -> Trial:
        label = f"{engine}@{version}{options}"
        try:
            if envs.needs_env(label):
                envs.ensure(label, allow_large=allow_large, progress=progress)
        except envs.EnvError as exc:
            return Trial(version, UNAVAILABLE, error=str(exc))
        pool = runner.pool_for([label])
        pool.log_dir = Path(tempfile.gettempdir()) / "refconv-bisect-logs"  # framework banners go there
        try:
            _, _, answers = runner.evaluate(spec, [label], pool, repeats=1, case_timeout=case_timeout)
        except Exception as exc:  # a worker that cannot start on that version (an import error) is unavailable
            return Trial(version, UNAVAILABLE, error=" ".join(str(exc).split())[:300])
        finally:
            runner.close_pools()  # one framework process at a time: TF versions are large
        comparison = answers[0].comparison
        error = " ".join(comparison.error.split())[:200]
        return Trial(version, comparison.outcome, float(comparison.bound_ratio), error)

    return probe


def trial_line(trial: Trial) -> str:
    """'  2.16.1  mismatch  bound ratio 1.2e+05' for the terminal."""
    extra = f"bound ratio {trial.bound_ratio:.3g}" if not math.isnan(trial.bound_ratio) else trial.error[:120]
    return f"  {trial.version:<14} {trial.outcome:<12} {extra}".rstrip()
