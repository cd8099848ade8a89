"""Metamorphic relations inside a run: every adapter held against itself, oracle-free, one row per relation.

After the case rows, `run_phase` checks the relations of `refconv.metamorphic` (batch split, linearity,
layouts, groups split, padding then VALID, ...) on a budgeted set of the run's cases, through each
adapter in its own worker process: the worker runs `check_in_worker` via `WorkerHandle.call`, which
rebuilds the case from its id and returns compact verdicts. Each verdict becomes a row keyed by
(case_id, adapter, relation) with outcome `pass`, `broken` (the two sides differ beyond the bound model's
tolerance), `unsupported` (the adapter declined a derived case), `raised`, `crashed` or `timeout`.
Relations that do not apply to a case (batch split at batch 1, ...) give no row. The plan (relation
names and cases) is written to relations.json in the run directory, so `--resume` finishes it and never
recomputes a stored relation row.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refconv import deviations, metamorphic, provenance
from refconv.errors import UsageError
from refconv.padding import output_hw
from refconv.rows import case_columns
from refconv.spec import ConvSpec

PLAN_FILE = "relations.json"
DEFAULT_BUDGET = 6  # cases; ~10 relations x every adapter each (docs/cases.md has the wall-time measurement)
TARGET = "refconv.relations_run:check_in_worker"
Verdict = dict[str, Any]


class _Probe(Exception):
    """Raised by the probing conv: the relation got as far as calling the engine, so it applies."""


def parse_names(text: str | None) -> list[str]:
    """'all', 'none' or comma-separated relation names, as a list; an unknown name is a UsageError."""
    if text is None or text.strip() == "all":
        return list(metamorphic.RELATIONS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in metamorphic.RELATIONS]
    if unknown or not names:
        raise UsageError(f"unknown relation {', '.join(unknown) or repr(text)}; "
                         f"available: {', '.join(metamorphic.RELATIONS)}, all, none")
    return list(dict.fromkeys(names))


def applicable(name: str, spec: ConvSpec) -> bool:
    """Does the relation say something about this case (batch split needs batch >= 2, ...)?"""

    def probe(*args: Any) -> Any:
        raise _Probe

    if getattr(spec, "values", "normal") != "normal":  # metamorphic.check skips special-value cases
        return False
    try:
        with np.errstate(all="ignore"):  # Inf - 3 Inf in a derived input: judged by the verdict, never printed
            result = metamorphic.RELATIONS[name](probe, spec)
    except _Probe:
        return True
    return not result.skipped


def check_in_worker(adapter: Any, case_id: str, names: Sequence[str]) -> list[Verdict]:
    """Run in the adapter's worker: each named relation on the case, as small picklable verdicts."""
    from refconv.worker import error_text

    spec = ConvSpec.from_id(case_id)
    conv = metamorphic.adapter_conv(adapter)
    verdicts = []
    for name in names:
        try:
            result = metamorphic.check(name, conv, spec)
        except Exception as exc:  # the engine raised on one of the relation's calls
            verdicts.append({"relation": name, "outcome": "raised", "error": error_text(exc)})
            continue
        verdicts.append(_verdict(result))
    return verdicts


def _verdict(result: metamorphic.RelationResult) -> Verdict:
    if result.skipped:
        outcome = "unsupported" if result.skipped.startswith("declined") else "not_applicable"
        return {"relation": result.relation, "outcome": outcome, "error": result.skipped}
    return {"relation": result.relation, "outcome": "pass" if result.ok else "broken",
            "bound_ratio": result.bound_ratio, "tolerance_c": result.tolerance_c, "error": result.detail}


# --- the plan --------------------------------------------------------------------------------------


def pick_cases(specs: Iterable[ConvSpec], names: Sequence[str], budget: int, seed: int) -> list[ConvSpec]:
    """Up to `budget` forward cases with a non-empty output, cover cases first (degenerate geometry), seeded."""
    pool = [s for s in specs if getattr(s, "op", "conv2d") == "conv2d" and 0 not in output_hw(s)
            and any(applicable(n, s) for n in names)]
    rng = random.Random(f"relations-{seed}")
    rng.shuffle(pool)
    pool.sort(key=lambda s: not s.name.startswith("cover"))  # stable: shuffled cover cases, then the rest
    return pool[:budget]


def write_plan(run_dir: Path, names: Sequence[str], budget: int) -> None:
    """Record the relations asked for (the cases are picked when the phase starts)."""
    from refconv.store import write_json

    write_json(Path(run_dir) / PLAN_FILE, {"relations": list(names), "budget": budget, "cases": None})


def read_plan(run_dir: Path) -> dict[str, Any] | None:
    """relations.json of a run, or None for a run without relations."""
    import json

    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else None


# --- the phase -------------------------------------------------------------------------------------


def relation_rows(spec: ConvSpec, label: str, verdicts: Iterable[Verdict], info: dict[str, Any],
                  base: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows in rows.COLUMNS terms for one case and adapter (not-applicable verdicts give none)."""
    import json

    case = case_columns(spec)
    rows = []
    for v in verdicts:
        if v["outcome"] == "not_applicable":
            continue
        row: dict[str, Any] = {
            **base, **case, "adapter": label, "relation": v["relation"], "adapter_version": info.get("version", ""),
            "outcome": v["outcome"], "bound_ratio": v.get("bound_ratio", float("nan")),
            "tolerance_c": v.get("tolerance_c", float("nan")), "error": v.get("error", ""),
            "settings": json.dumps(info.get("settings", {}), sort_keys=True), "isa": info.get("isa", ""),
            "repro": "", "repeats": 0,
        }
        row["known_deviation"] = deviations.match(row)
        rows.append(row)
    return rows


def run_phase(store: Any, config: Any, progress: bool = False, executor: Any = None) -> tuple[int, bool]:
    """Check the planned relations not yet stored; (new rows, interrupted). Rows are appended as they come.

    With `executor` (a Dask cluster's, `refconv run --dask`) each (case, adapter) check runs on the cluster, in
    the adapter workers that the cluster's batches used, and its rows carry that worker's host columns.
    """
    plan = read_plan(store.dir)
    if not plan or not plan.get("relations"):
        return 0, False
    names, run_specs = list(plan["relations"]), {s.id: s for s in config.specs()}
    if plan.get("cases") is None:
        picked = pick_cases(run_specs.values(), names, int(plan.get("budget", DEFAULT_BUDGET)), config.seed)
        plan["cases"] = [s.id for s in picked]
        store.write_json(PLAN_FILE, plan)
    specs = [run_specs.get(c) or ConvSpec.from_id(c) for c in plan["cases"]]
    done = {(r["case_id"], r["adapter"], r.get("relation")) for r in store.rows() if r.get("relation")}
    todo = [(s, label, [n for n in names if applicable(n, s) and (s.id, label, n) not in done])
            for s in specs for label in config.adapters]
    todo = [t for t in todo if t[2]]
    base = {"run_id": config.run_id, **_provenance_columns(store)}
    if executor is not None:
        return _run_on_cluster(store, config, todo, base, executor, progress)
    new_rows, interrupted = 0, False
    from refconv import runner

    pool = runner.pool_for(tuple(config.adapters), config.isolation)
    bar = _bar(len(todo), progress)
    try:
        for spec, label, missing in todo:
            rows = relation_rows(spec, label, _call(pool.handle(label), spec, missing, config.case_timeout),
                                 pool.handle(label).info, base)
            store.append(rows)
            new_rows += len(rows)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        store.close()
        runner.close_pools()
    return new_rows, interrupted


def _run_on_cluster(store: Any, config: Any, todo: list[tuple[ConvSpec, str, list[str]]], base: dict[str, Any],
                    executor: Any, progress: bool) -> tuple[int, bool]:
    """The phase's checks as cluster tasks; a task the cluster loses is reported and left for --resume."""
    from concurrent.futures import as_completed

    labels = tuple(config.adapters)
    futures = {executor.submit(check_remote, label, spec.id, missing, config.case_timeout, labels, config.isolation):
               (spec, label) for spec, label, missing in todo}
    new_rows, interrupted = 0, False
    bar = _bar(len(todo), progress)
    try:
        for future in as_completed(futures):
            spec, label = futures[future]
            try:
                verdicts, info, where = future.result()
            except Exception as exc:  # the cluster gave the task up (a worker died twice, a lost scheduler)
                print(f"refconv run: relations of {spec.id} on {label} not checked: {type(exc).__name__}: {exc}; "
                      "refconv run --resume checks them", file=sys.stderr)
                continue
            rows = relation_rows(spec, label, verdicts, info, {**base, **where})
            store.append(rows)
            new_rows += len(rows)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        for future in futures:
            future.cancel()
    finally:
        bar.close()
        store.close()
    return new_rows, interrupted


def check_remote(label: str, case_id: str, names: list[str], case_timeout: float, labels: tuple[str, ...],
                 isolation: bool) -> tuple[list[Verdict], dict[str, Any], dict[str, Any]]:
    """Run on a Dask worker: (verdicts, the adapter's info there, that worker's host columns)."""
    from refconv import runner

    handle = runner.pool_for(labels, isolation).handle(label)  # the workers this Dask worker's batches use
    verdicts = _call(handle, ConvSpec.from_id(case_id), list(names), case_timeout)
    return verdicts, handle.info, provenance.host_columns()


def _call(handle: Any, spec: ConvSpec, names: list[str], case_timeout: float) -> list[Verdict]:
    """The worker's verdicts; a dead or hung worker gives crashed / timeout verdicts for every relation asked."""
    from refconv.worker import WorkerCallError, WorkerCrashed, WorkerLoadError, WorkerTimeout

    try:
        return list(handle.call(TARGET, spec.id, names, timeout=case_timeout * len(names)))
    except WorkerTimeout as exc:
        outcome, error = "timeout", str(exc)
    except (WorkerCrashed, WorkerLoadError) as exc:
        outcome, error = "crashed", str(exc)
    except WorkerCallError as exc:  # a bug on refconv's side in the worker: say so on every row
        outcome, error = "raised", str(exc)
    return [{"relation": n, "outcome": outcome, "error": error} for n in names]


def _provenance_columns(store: Any) -> dict[str, Any]:
    path = Path(store.dir) / "provenance.json"
    return provenance.row_columns(store.read_json("provenance.json")) if path.is_file() else {}


def ordered(rows: Iterable[dict[str, Any]], config: Any) -> list[dict[str, Any]]:
    """One row per (case, adapter, relation), the first stored wins, in case, adapter, relation order."""
    unique: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        unique.setdefault((row["case_id"], row["adapter"], row.get("relation") or ""), row)
    cases = {case_id: i for i, (case_id, *_) in enumerate(config.cases)}
    labels = {label: i for i, label in enumerate(config.adapters)}
    relations = {name: i + 1 for i, name in enumerate(metamorphic.RELATIONS)}
    return sorted(unique.values(), key=lambda r: (cases.get(r["case_id"], len(cases)),
                                                  labels.get(r["adapter"], len(labels)),
                                                  relations.get(r.get("relation") or "", 0)))


def _bar(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr for the relation phase when asked for and stderr is a terminal."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="check", desc="relations", file=sys.stderr, dynamic_ncols=True)
    return _NoBar()


class _NoBar:
    def update(self, n: int) -> None:
        """No bar."""

    def close(self) -> None:
        """No bar."""
