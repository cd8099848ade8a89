"""`refconv hunt`: search for failures within a time budget, then shrink, characterize and group each one.

Phases (each named on stderr and in the progress bar's description):
1. search: the runner runs the search cases (the `cover` source when it exists, then the seeded random
   sweep) until its share of the budget is spent; rows, repro scripts and known deviations as in `run`.
2. leads: the non-pass rows are grouped as `refconv.findings.group` groups a run (known deviation, or
   adapter family, outcome and degenerate facts); each group is a lead, NEW ones first.
3. per lead: shrink its smallest case (`findings.shrink`), characterize the minimal case
   (`findings.characterize`), rerun the minimal case on every engine (rows stored, so it gets a repro script)
   and write the upstream report (`refconv.upstream`, where present). A lead whose case already lies in a
   characterized problem's region (same adapter family and outcome) joins that problem without probing.
4. while budget is left: search more, then process the new leads. At the end problems with one
   characterization whose minimal cases fail alike on each other's adapters are merged (`group.merge`), and
   leads there was no time for are kept as uncharacterized problems.

Every "does it still fail the same way" question is one case through `refconv.runner.evaluate` in the
adapter's worker process (no timing repeats): same adapter, same outcome (for mismatch, still beyond
tolerance). On a Dask cluster (`refconv hunt --dask`, a fleet whose workers may differ in hardware) the search
runs on the cluster and each question is asked of one worker of every hardware kind (`DaskCluster.each_kind`):
one verdict per kind, with its `isa` and `cpu_features`, so the characterization can name the hardware a
problem needs, with its precision and recall; the minimal case is rerun on every kind too. The metamorphic
relations phase is left out there (its probes are not pinned to a kind). findings.json is rewritten after
each problem, hunt.json holds the arguments and the time spent, probes.jsonl every probe's outcome (on a fleet,
one per hardware kind); Ctrl-C keeps all of it and `refconv hunt --resume DIR` goes on.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from refconv import deviations, provenance, runner
from refconv.errors import SpecError, UsageError
from refconv.findings import group as G
from refconv.findings.characterize import characterize
from refconv.findings.facts import facts, holds
from refconv.findings.problem import FINDINGS_FILE, Problem, dump, load
from refconv.findings.shrink import shrink
from refconv.rows import case_columns
from refconv.spec import ConvSpec
from refconv.store import RunStore

HUNT_FILE = "hunt.json"
PROBES_FILE = "probes.jsonl"
SEARCH_SHARE = 0.4  # of the budget left, spent searching before the leads are worked on
MIN_ROUND_S = 5.0  # a search round or a lead needs at least this much budget left
RANDOM_PER_S = 10  # random cases planned per second of budget (the search stops at its deadline anyway)
MAX_RANDOM = 20000
MINIMAL_PREFIX = "minimal:"  # case_name of the rows that rerun a problem's minimal case on every engine
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str) -> float:
    """Seconds from '60s', '10m', '1h' or '90'; anything else, or zero, is a UsageError.

    >>> parse_budget("10m"), parse_budget("1.5h"), parse_budget("45")
    (600.0, 5400.0, 45.0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"budget must be a positive duration like 60s, 10m or 1h, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass
class HuntConfig:
    """The arguments of a hunt, stored in hunt.json so --resume repeats them."""

    adapters: list[str]
    engines: list[str]
    budget_s: float
    seed: int = 0
    spent_s: float = 0.0
    shrink_calls: int = 200  # "still fails?" calls per lead
    probes: int = 160  # characterization probes per lead
    max_problems: int = 0  # stop once this many problems are characterized (0: spend the whole budget)
    case_timeout: float = 30.0
    isolation: bool = True
    done: list[str] = field(default_factory=list)  # keys of the leads already worked on
    unreproduced: list[str] = field(default_factory=list)  # keys of leads whose case did not fail again
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HuntConfig:
        try:
            return cls(**data)
        except TypeError as exc:
            raise UsageError(f"hunt.json does not describe a refconv hunt: {exc}") from None


def relation_cases(budget_s: float) -> int:
    """Cases the relations are checked on: 2 for a minute, 6 (the run's default) at 3 minutes, 12 at most."""
    return int(min(12, max(2, budget_s // 30)))


def search_cases(seed: int, budget_s: float) -> tuple[str, list[ConvSpec]]:
    """(selection, cases): the cover source when it exists, then enough random cases for the budget."""
    from refconv import cases

    count = int(min(MAX_RANDOM, max(200, budget_s * RANDOM_PER_S)))
    parts = []
    try:
        cases.select("cover", seed=seed)
        parts.append("cover")
    except SpecError:  # no cover source in this version: random alone
        pass
    parts.append(f"random:{count}")
    selection = ",".join(parts)
    return selection, cases.select(selection, seed=seed)


@dataclass
class Lead:
    """A group of failing rows to shrink from its smallest case."""

    key: str
    rows: list[dict[str, Any]]
    label: str  # the adapter the case is shrunk and characterized on
    outcome: str
    known: str | None
    relation: str = ""  # a broken metamorphic relation's name (refconv.relations_run rows), or ''

    @property
    def smallest(self) -> dict[str, Any]:
        return min(self.rows, key=lambda r: (G.size(r), str(r["case_id"])))


def leads(rows: list[dict[str, Any]], adapters: list[str]) -> list[Lead]:
    """The run's failing rows of the hunted adapters as leads, NEW ones and bigger groups first."""
    found = [row for row in rows if row.get("adapter") in adapters
             and not str(row.get("case_name", "")).startswith(MINIMAL_PREFIX)]
    out = []
    for group_key, members in G.row_groups(found).items():
        key = json.dumps(group_key)
        first = min(members, key=lambda r: (adapters.index(r["adapter"]), G.size(r)))
        out.append(Lead(key, members, str(first["adapter"]), str(first["outcome"]),
                        str(first.get("known_deviation") or "") or None, str(first.get("relation") or "")))
    return sorted(out, key=lambda lead: (lead.known is not None, -len(lead.rows), lead.key))


class _DeadlineExecutor(ThreadPoolExecutor):
    """The runner's executor for a search round: cases submitted after the deadline end as Cancelled."""

    def __init__(self, deadline: float, stopped: threading.Event, workers: int = 1) -> None:
        super().__init__(max(1, workers), thread_name_prefix="refconv-hunt")
        self.deadline, self.stopped = deadline, stopped

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._guarded, fn, *args, **kwargs)

    def _guarded(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.stopped.is_set() or time.monotonic() >= self.deadline:
            raise runner.Cancelled("hunt budget spent")  # the runner drops it; --resume or a later round runs it
        return fn(*args, **kwargs)


@dataclass
class HuntSummary:
    run_dir: Path
    problems: list[Problem]
    rows: list[dict[str, Any]]
    interrupted: bool
    probes: int
    paths: list[Path]


class Hunt:
    """One hunt into a run directory: search rounds and leads until the budget is spent or Ctrl-C."""

    def __init__(self, store: RunStore, config: HuntConfig, run_config: runner.RunConfig, progress: bool = False,
                 argv: list[str] | None = None, cluster: Any = None) -> None:
        self.store, self.config, self.run_config = store, config, run_config
        self.cluster = cluster  # a refconv.distributed.DaskCluster: search and probes on its workers
        self.progress, self.argv = progress, argv if argv is not None else list(sys.argv)
        self.stopped = threading.Event()
        self.problems: list[Problem] = []
        # (adapter, case id) -> outcome; on a fleet ('<adapter>|fleet', case id) -> [(hardware facts, outcome)]
        self.probes: dict[tuple[str, str], Any] = {}
        self.engine_info: dict[str, dict[str, Any]] = {}  # engines' versions and settings, for provenance.json
        self._started = time.monotonic()
        self._spent_before = config.spent_s
        self._search_done = False

    # --- budget ---------------------------------------------------------------------------------
    def left(self) -> float:
        return self.config.budget_s - self._spent_before - (time.monotonic() - self._started)

    def enough(self) -> bool:
        """Whether to go on: budget left, no Ctrl-C, problem limit not reached."""
        if self.stopped.is_set() or self.left() < 1.0:
            return False
        limit = self.config.max_problems
        return not limit or sum(p.probes > 0 for p in self.problems) < limit

    # --- the whole hunt ------------------------------------------------------------------------
    def run(self) -> HuntSummary:
        """Search, shrink, characterize, group; Ctrl-C keeps everything found so far."""
        self._load_state()
        interrupted = False
        try:
            while self.enough():
                if not self._search_done:
                    left = self.left()
                    self.search(time.monotonic() + min(left, max(MIN_ROUND_S, SEARCH_SHARE * left)))
                    self.relations()
                if self.stopped.is_set():
                    break
                todo = [lead for lead in leads(self.store.rows(), self.config.adapters)
                        if lead.key not in self.config.done]
                if not todo and self._search_done:
                    break  # every search case ran and every lead is worked on
                self.work(todo)
        except (runner.Cancelled, KeyboardInterrupt):  # Ctrl-C between phases, or a probe cancelled by it
            self.stopped.set()
        finally:
            interrupted = self.stopped.is_set()
            paths = self.finish()
        return HuntSummary(self.store.dir, self.problems, self.store.rows(), interrupted,
                           len(self.probes), paths)

    def search(self, deadline: float) -> None:
        """One search round through the runner (rows stored as `refconv run` stores them)."""
        self._phase(f"search ({max(0.0, deadline - time.monotonic()):.0f} s)")
        if self.cluster is not None:
            cluster = _DeadlineCluster(self.cluster, time.time() + deadline - time.monotonic())
            try:
                summary = runner.Runner(self.store, self.run_config, progress=self.progress, argv=self.argv,
                                        cluster=cluster).run()
            finally:
                cluster.shutdown()
        else:
            executor = _DeadlineExecutor(deadline, self.stopped)
            try:
                summary = runner.Runner(self.store, self.run_config, executor=executor, progress=self.progress,
                                        argv=self.argv).run()
            finally:
                executor.shutdown(wait=True, cancel_futures=True)
        if summary.interrupted:
            self.stopped.set()
        done = {(r["case_id"], r["adapter"]) for r in summary.rows}
        self._search_done = all((case_id, label) in done for case_id, _ in self.run_config.cases
                                for label in self.run_config.adapters)
        self._save()

    def relations(self) -> None:
        """The metamorphic relations through each hunted adapter on a few search cases (once; --resume goes on).

        Runs `refconv.relations_run`'s phase where this refconv has it: a broken relation is a row with a
        `relation` column and outcome `broken`, which becomes a lead like any other.
        """
        if self.cluster is not None:  # a relation probe runs on one adapter worker, not on every hardware kind
            return
        try:
            from refconv import relations_run
        except ImportError:
            return
        if not (self.store.dir / relations_run.PLAN_FILE).exists():
            relations_run.write_plan(self.store.dir, relations_run.parse_names(None), relation_cases(
                self.config.budget_s))
        self._phase("relations")
        _, interrupted = relations_run.run_phase(self.store, self.run_config, self.progress)
        if interrupted:
            self.stopped.set()

    def work(self, todo: list[Lead]) -> None:
        """Shrink, characterize and report each lead while the budget lasts."""
        previous = _install_sigint(self.stopped)
        try:
            for i, lead in enumerate(todo):
                if not self.enough():
                    return  # the rest become uncharacterized problems at the end (`_unworked`)
                self.lead(lead, time.monotonic() + self.left() / min(3, len(todo) - i))
                self.config.done.append(lead.key)
                self._save()
        finally:
            _restore_sigint(previous)

    # --- one lead --------------------------------------------------------------------------------
    def lead(self, lead: Lead, deadline: float) -> None:
        """Shrink, characterize, rerun on the engines, report: one problem, or more cases for a known one."""
        row = lead.smallest
        if self._join(lead, values=facts(row)) is not None:
            return
        fails = self.fails_same(lead.label, lead.outcome, None if lead.known else row, relation=lead.relation)
        spec = ConvSpec.from_id(str(row["case_id"]))
        if not _failed(fails(spec)):  # it did not fail the same way again: kept as found, not shrunk
            print(f"refconv hunt: {lead.label} {lead.outcome} on {spec.id} did not reproduce; kept uncharacterized",
                  file=sys.stderr)
            self.config.unreproduced.append(lead.key)
            return
        bar = _Bar(self.progress, self.config.shrink_calls, f"shrink {lead.label} {lead.outcome}")
        minimal = shrink(spec, bar.counting(lambda s: _failed(fails(s))), self.config.shrink_calls,
                         deadline=min(deadline, time.monotonic() + 0.5 * max(0.0, deadline - time.monotonic())))
        bar.close()
        if self._join(lead, minimal=minimal.id) is not None:
            return  # shrunk onto a problem already characterized
        bar = _Bar(self.progress, self.config.probes, f"characterize {minimal.id}")
        region = characterize(minimal, bar.counting(fails), self.config.probes, seed=self.config.seed,
                              deadline=deadline)
        bar.close()
        self._phase(f"engines on {minimal.id}")
        pid = lead.known or G.slug(G.family(lead.label), lead.outcome, lead.relation,
                                   G.condition_slug(region.conditions))[:90]
        engine_rows = _failing_side(self.rerun(minimal, pid, lead.relation, lead.label), lead.label, lead.outcome)
        engines = {str(r["adapter"]): str(r["outcome"]) for r in engine_rows}
        mine = next((r for r in engine_rows if r["adapter"] == lead.label), {})
        known = lead.known or (str(mine.get("known_deviation") or "") or None)
        # the variants of the same engine that fail alike join it; other engines stay side by side in `engines`
        adapters = sorted({str(r["adapter"]) for r in lead.rows} | {
            label for label, outcome in engines.items()
            if outcome == lead.outcome and G.family(label) == G.family(lead.label)})
        cases = [minimal.id] + sorted({str(r["case_id"]) for r in lead.rows} - {minimal.id})
        conditions = {"relation": lead.relation, **region.conditions} if lead.relation else region.conditions
        problem = Problem(
            id=pid, adapters=adapters, outcome=lead.outcome, minimal_case=minimal.id, cases=cases,
            conditions=conditions, precision=region.precision, recall=region.recall, probes=region.probes,
            known_deviation=known, engines=engines, repro=str(mine.get("repro") or "") or None,
            title=G.title(adapters, lead.outcome, conditions), rows=len(lead.rows),
        )
        problem.upstream_report = self.upstream(problem)
        self.problems = G.unique_ids([*self.problems, problem])
        self._save()

    def _join(self, lead: Lead, values: dict[str, Any] | None = None, minimal: str = "") -> Problem | None:
        """The characterized problem of the same kind (adapter family, outcome, known deviation) whose region
        holds this lead's case, or whose minimal case this lead shrank to; the lead's cases are added to it."""
        for problem in self.problems:
            same_kind = problem.probes and problem.outcome == lead.outcome and \
                problem.known_deviation == lead.known and \
                any(G.family(a) == G.family(lead.label) for a in problem.adapters)
            inside = values is not None and bool(problem.conditions) and holds(values, problem.conditions)
            if same_kind and (inside or minimal == problem.minimal_case):
                problem.cases += sorted({str(r["case_id"]) for r in lead.rows} - set(problem.cases))
                problem.adapters = sorted(set(problem.adapters) | {str(r["adapter"]) for r in lead.rows})
                problem.rows += len(lead.rows)
                self._save()
                return problem
        return None

    def fails_same(self, label: str, outcome: str, new: dict[str, Any] | None,
                   relation: str = "") -> Callable[[ConvSpec], Any]:
        """The callback of shrink and characterize: True/False, or None where the adapter cannot run the case;
        on a fleet a list of (hardware facts, that verdict), one per hardware kind.

        Same adapter and outcome (for a relation lead: the same relation, broken again). For a NEW lead (`new`:
        its row) also inside no known deviation's region that its own case is outside of, witness or not, so
        shrinking never drifts into a known problem's region and calls that the new one.
        """
        pool = runner.pool_for([label], self.config.isolation)
        allowed = _regions({**new, "adapter": label, "outcome": outcome}) if new is not None else set()

        def judge(spec: ConvSpec, got: str, hardware: dict[str, Any]) -> bool | None:
            if got in ("unsupported", "not_applicable"):
                return None
            if got != outcome:
                return False
            row = {**case_columns(spec), **hardware, "adapter": label, "outcome": got, "relation": relation}
            return new is None or _regions(row) <= allowed

        def verdict(spec: ConvSpec) -> Any:
            if self.stopped.is_set():
                raise runner.Cancelled(spec.id)
            if self.cluster is not None and not relation:
                return [(hardware, judge(spec, got, hardware)) for hardware, got in self._on_fleet(label, spec)]
            key = (f"{label}|{relation}" if relation else label, spec.id)
            got = self.probes.get(key)
            if got is None:
                got = self._relation(pool, label, spec, relation) if relation else \
                    runner.evaluate(spec, [label], pool, 0, self.config.case_timeout)[2][0].comparison.outcome
                self.probes[key] = got
                self._log_probe(key[0], spec.id, got)
            return judge(spec, got, {})

        return verdict

    def _on_fleet(self, label: str, spec: ConvSpec) -> list[tuple[dict[str, Any], str]]:
        """(hardware facts, outcome) of the case on one worker of each hardware kind (asked once, logged)."""
        key = (f"{label}|fleet", spec.id)
        got = self.probes.get(key)
        if got is None:
            results = self.cluster.each_kind(spec, (label,), label, 0, self.config.case_timeout, self.config.isolation)
            got = [(hardware_facts(r, a), a.comparison.outcome) for r in results for a in r.answers]
            if got:  # no worker answered: asked again next time
                self.probes[key] = got
                self._log_probe(key[0], spec.id, got)
        return list(got)

    def _relation(self, pool: Any, label: str, spec: ConvSpec, relation: str) -> str:
        """One relation on one case in the adapter's worker: its verdict's outcome."""
        from refconv import relations_run

        # the relation phase's own worker call (crashed / timeout / raised verdicts included)
        (verdict,) = relations_run._call(pool.handle(label), spec, [relation], self.config.case_timeout)
        return str(verdict["outcome"])

    def rerun(self, spec: ConvSpec, problem_id: str, relation: str = "", label: str = "") -> list[dict[str, Any]]:
        """The minimal case on every engine (the case, or the relation), stored as rows named
        'minimal:<problem id>' (a case row gets its repro script); on a fleet, on each hardware kind of `label`."""
        labels = list(dict.fromkeys([*self.config.adapters, *self.config.engines]))
        named = spec.replace(name=MINIMAL_PREFIX + problem_id)
        if self.cluster is not None and not relation:
            return self._rerun_fleet(named, labels, label or labels[0])
        answers, info = [], {}
        for label in labels:  # one worker per adapter, the one the probes used
            pool = runner.pool_for([label], self.config.isolation)
            if not relation:
                answers += runner.evaluate(named, [label], pool, 1, self.config.case_timeout)[2]
            info[label] = getattr(pool.handle(label), "info", None) or {}
        self.engine_info.update({label: data for label, data in info.items() if data})
        prov = self._provenance()
        if relation:
            return self._rerun_relation(named, labels, info, relation, provenance.row_columns(prov))
        result = runner.CaseResult(named, answers, {}, info)
        rows = runner.build_rows(result, runner.RowContext(self.run_config.run_id, info, provenance.row_columns(prov)))
        runner.finish_rows(self.store.dir, result, rows)
        self.store.append(rows)
        return rows

    def _rerun_fleet(self, spec: ConvSpec, labels: list[str], kind_of: str) -> list[dict[str, Any]]:
        """The minimal case through every engine on one worker of each hardware kind of adapter `kind_of`."""
        results = self.cluster.each_kind(spec, tuple(labels), kind_of, 1, self.config.case_timeout,
                                         self.config.isolation)
        for result in results:
            self.engine_info.update({k: v for k, v in result.adapter_info.items() if k not in self.engine_info})
        columns = provenance.row_columns(self._provenance())
        rows: list[dict[str, Any]] = []
        for result in results:  # each row names the worker and hardware that made it (its host columns)
            made = runner.build_rows(result, runner.RowContext(self.run_config.run_id, result.adapter_info, columns))
            runner.finish_rows(self.store.dir, result, made)
            rows += made
        self.store.append(rows)
        return rows

    def _rerun_relation(self, spec: ConvSpec, labels: list[str], info: dict[str, dict[str, Any]], relation: str,
                        columns: dict[str, Any]) -> list[dict[str, Any]]:
        from refconv import relations_run

        rows = []
        for label in labels:
            pool = runner.pool_for([label], self.config.isolation)
            verdicts = relations_run._call(pool.handle(label), spec, [relation], self.config.case_timeout)
            rows += relations_run.relation_rows(spec, label, verdicts, info[label],
                                                {"run_id": self.run_config.run_id, **columns})
        self.store.append(rows)
        return rows

    def _provenance(self) -> dict[str, Any]:
        """provenance.json with the engines' versions and settings added (as their workers reported them);
        a later search round rewrites it, so this runs again at the end."""
        prov: dict[str, Any] = self._read("provenance.json", {})
        adapters = prov.setdefault("adapters", {})
        for label, data in self.engine_info.items():
            adapters.setdefault(label, data)
        self.store.write_json("provenance.json", prov)
        return prov

    def _read(self, name: str, default: Any) -> Any:
        return self.store.read_json(name) if (self.store.dir / name).exists() else default

    def upstream(self, problem: Problem) -> str | None:
        """upstream/<id>.md through refconv.upstream.write_report where it exists; its path or None."""
        try:
            from refconv import upstream
        except ImportError:
            return None
        try:
            path = Path(upstream.write_report(self.store.dir, problem.to_dict(), self.store.rows(),
                                              self._read("provenance.json", {})))
        except Exception as exc:  # the problem stands without its report; say why
            print(f"refconv hunt: warning: no upstream report for {problem.id}: {exc}", file=sys.stderr)
            return None
        try:
            return str(path.relative_to(self.store.dir))
        except ValueError:
            return str(path)

    # --- state on disk ----------------------------------------------------------------------------
    def _load_state(self) -> None:
        path = self.store.dir / FINDINGS_FILE
        if path.exists():
            self.problems = load(self.store.read_json(FINDINGS_FILE))
        probes = self.store.dir / PROBES_FILE
        if probes.exists():
            for line in probes.read_text().splitlines():
                try:
                    item = json.loads(line)
                    got = item["outcome"]  # a fleet probe's: [[hardware facts, outcome], ...]
                    self.probes[(item["adapter"], item["case_id"])] = \
                        got if isinstance(got, str) else [(dict(hw), str(o)) for hw, o in got]
                except (ValueError, KeyError, TypeError):  # a torn last line from a killed hunt
                    continue

    def _log_probe(self, label: str, case_id: str, outcome: Any) -> None:
        with open(self.store.dir / PROBES_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"adapter": label, "case_id": case_id, "outcome": outcome}) + "\n")

    def _save(self) -> None:
        self.config.spent_s = self._spent_before + (time.monotonic() - self._started)
        self.store.write_json(HUNT_FILE, self.config.to_dict())
        self.store.write_json(FINDINGS_FILE, dump(self.problems))

    def finish(self) -> list[Path]:
        """Merge, keep unworked leads, write findings.json, tables (with minimal_case) and the report."""
        self.problems = G.unique_ids(G.merge(self.problems + self._unworked()))
        self._save()
        if self.engine_info:
            self._provenance()
        rows = self.store.rows()
        minimal: dict[tuple[str, str, str], str] = {}
        for p in self.problems:  # a relation row belongs to its relation's problem, else to the case's
            relation = str(p.conditions.get("relation", "")) if p.outcome == "broken" else ""
            for case_id, label in itertools.product(p.cases, p.adapters):
                minimal.setdefault((case_id, label, relation), p.minimal_case)
        for row in rows:
            if row.get("outcome") not in G.NOT_FINDINGS:
                key = _row_id(row)
                row["minimal_case"] = minimal.get(key) or minimal.get((key[0], key[1], ""), "")
        paths = [*self.store.write_tables(rows), self.store.dir / FINDINGS_FILE, self.store.dir / HUNT_FILE]
        try:
            from refconv.report import write_reports

            paths.extend(write_reports(self.store.dir))
        except Exception as exc:  # the findings are safe on disk; a rendering failure must not hide them
            print(f"refconv hunt: warning: report rendering failed: {exc}", file=sys.stderr)
        runner.close_pools()
        return paths

    def _unworked(self) -> list[Problem]:
        """Leads not worked on (no budget left, Ctrl-C, did not reproduce) as uncharacterized problems, unless
        their smallest case lies in a characterized problem's region (then they join it)."""
        rows = self.store.rows()
        left = [lead for lead in leads(rows, self.config.adapters)
                if lead.key not in self.config.done or lead.key in self.config.unreproduced]
        left = [lead for lead in left if lead.key in self.config.unreproduced  # joining costs no probe
                or self._join(lead, values=facts(lead.smallest)) is None]
        failing = {_row_id(r) for lead in left for r in lead.rows}
        if not failing:
            return []
        cases = {case_id for case_id, _, _ in failing}
        return G.group_rows([r for r in rows if r["case_id"] in cases and (
            _row_id(r) in failing or r.get("outcome") in G.NOT_FINDINGS)])

    def _phase(self, words: str) -> None:
        if self.progress:
            print(f"refconv hunt: {words}; {max(0.0, self.left()):.0f} s of budget left", file=sys.stderr)


def _failed(verdict: Any) -> bool:
    """Did a probe fail the same way: its verdict True, or on a fleet on at least one hardware kind."""
    if isinstance(verdict, list):
        return any(v is True for _, v in verdict)
    return verdict is True


def hardware_facts(result: runner.CaseResult, answer: runner.Answer) -> dict[str, Any]:
    """The hardware an answer was made on: the kernels it ran (`isa`) and the CPU's features (`cpu_features`)."""
    info = result.adapter_info.get(answer.label, {})
    return {"isa": answer.isa or str(info.get("isa", "")),
            "cpu_features": str(result.where.get("cpu_features") or info.get("cpu_features", ""))}


def _failing_side(rows: list[dict[str, Any]], label: str, outcome: str) -> list[dict[str, Any]]:
    """The rerun's rows of the worker where `label` failed with `outcome` (all of them when one process ran it)."""
    sides: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        sides.setdefault(str(row.get("worker") or ""), []).append(row)
    for side in sides.values():
        if any(r["adapter"] == label and r["outcome"] == outcome for r in side):
            return side
    return next(iter(sides.values()), [])


class _DeadlineCluster:
    """A search round's view of a Dask cluster: a batch that starts after the deadline ends as Cancelled."""

    def __init__(self, cluster: Any, deadline: float) -> None:
        self.cluster, self.deadline = cluster, deadline  # the deadline in wall-clock time: workers read it
        self._executors: list[Executor] = []

    def start(self, labels: tuple[str, ...], isolation: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        return self.cluster.start(labels, isolation)  # type: ignore[no-any-return]

    def executor(self) -> Executor:
        executor = _WallDeadlineExecutor(self.cluster.executor(), self.deadline)
        self._executors.append(executor)
        return executor

    def shutdown(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=True, cancel_futures=True)


class _WallDeadlineExecutor(Executor):
    """Wraps a cluster's executor: each task first checks the wall-clock deadline where it runs."""

    def __init__(self, inner: Executor, deadline: float) -> None:
        self.inner, self.deadline = inner, deadline

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.inner.submit(_before_deadline, self.deadline, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait, cancel_futures=cancel_futures)


def _before_deadline(deadline: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run on a cluster worker: fn(*args), unless the search round's deadline has passed (the runner drops it)."""
    if time.time() >= deadline:
        raise runner.Cancelled("hunt budget spent")
    return fn(*args, **kwargs)


def _regions(row: dict[str, Any]) -> set[str]:
    """Ids of the known deviations whose region (adapter, outcome, `when`) holds the row, witnessed or not."""
    return {entry.id for entry in deviations.load() if entry.matches(row)}


def _row_id(row: dict[str, Any]) -> tuple[str, str, str]:
    """A row's key in a run: (case id, adapter, relation or '')."""
    return (str(row["case_id"]), str(row["adapter"]), str(row.get("relation") or ""))


class _Bar:
    """A tqdm bar on stderr whose description names the phase; counts the calls of a callback."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="probe", file=sys.stderr, dynamic_ncols=True, leave=False)

    def counting(self, fn: Callable[[ConvSpec], Any]) -> Callable[[ConvSpec], Any]:
        def counted(spec: ConvSpec) -> Any:
            if self.bar is not None:
                self.bar.update(1)
            return fn(spec)

        return counted

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _install_sigint(stopped: threading.Event) -> Any:
    """Ctrl-C while leads are worked on: stop after the current case, keep everything found."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        stopped.set()

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
