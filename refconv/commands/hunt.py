"""Hunt for failures within a time budget: search, shrink each failure to a minimal case, characterize the
region where it fails, rerun it on every engine, and group the findings into distinct problems.

Writes the usual run directory (rows, results.csv/.parquet, repro scripts, report) plus findings.json (one
entry per problem: minimal case, conditions, precision and recall of the region, every engine's outcome,
repro and upstream report paths), hunt.json and probes.jsonl. Ctrl-C keeps everything found so far;
`refconv hunt --resume DIR` goes on with the budget that is left. See docs/hunting.md.

  refconv hunt --adapters tf,torch --budget 10m
  refconv hunt --adapters mypkg.conv:MyConv --budget 60s --engines numpy
  refconv hunt --adapters torch --engines numpy --budget 10m --dask tcp://127.0.0.1:8786

With --dask the search and every probe run on a Dask cluster's workers, each probe on one worker of every
hardware kind (adapter isa and CPU features), so a problem's conditions may name the hardware it needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "search within a time budget, then shrink, characterize and group each failure (findings.json)"


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapters", default=None, metavar="A,B",
                   help="adapters to hunt, e.g. tf,torch or package.module:Class (required unless --resume)")
    p.add_argument("--budget", default=None, metavar="TIME",
                   help="time to spend: 60s, 10m, 1h (default 10m; with --resume, that much more)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="seed of the search and probes (default 0)")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default reports/<run-id>)")
    p.add_argument("--engines", default=None, metavar="A,B",
                   help="adapters each minimal case is rerun on, side by side (default: every available built-in)")
    p.add_argument("--problems", type=_non_negative_int, default=None, metavar="N",
                   help="stop once N problems are characterized (default 0: spend the whole budget)")
    p.add_argument("--case-timeout", type=float, default=None, metavar="S",
                   help="seconds one adapter may take on one case (default 30)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="go on with an interrupted hunt")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="hunt on a Dask cluster, e.g. tcp://127.0.0.1:8786: the search there, each probe on one worker "
                        "of every hardware kind, so conditions may name the hardware (needs refconv[dask])")
    p.add_argument("--no-isolation", action="store_true", help="run adapters in this process (debugging)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from refconv import hunt, runner
    from refconv.store import RunStore

    if args.resume:
        store = RunStore.open(args.resume)
        config = hunt.HuntConfig.from_dict(store.read_json(hunt.HUNT_FILE))
        run_config = runner.RunConfig.from_dict(store.read_json("run.json"))
        if args.budget is not None:  # a resumed hunt may be given more time
            config.budget_s = config.spent_s + hunt.parse_budget(args.budget)
    else:
        config, run_config = _new(args)
        store = None
    if args.no_isolation:
        config.isolation = run_config.isolation = False
    cluster = _connect(args.dask, config) if args.dask else None  # before the run directory: a failure leaves none
    try:
        if store is None:
            store = RunStore.create(Path(args.out) if args.out else Path("reports") / run_config.run_id)
            store.write_json(hunt.HUNT_FILE, config.to_dict())
        for label, reason in config.unavailable.items():
            print(f"refconv hunt: engine {label} skipped: {reason}", file=sys.stderr)
        summary = hunt.Hunt(store, config, run_config, progress=not args.no_progress, cluster=cluster).run()
    finally:
        if cluster is not None:
            cluster.close()
    _print(summary)
    if summary.interrupted:
        print(f"refconv hunt: interrupted; findings so far kept. Continue with:\n"
              f"  refconv hunt --resume {summary.run_dir}", file=sys.stderr)
        return 130
    return 0


def _new(args: argparse.Namespace) -> tuple[Any, Any]:
    from refconv import hunt, runner
    from refconv.commands.run import resolve_adapters
    from refconv.errors import UsageError

    if not args.adapters:
        raise UsageError("name the adapters to hunt with --adapters, e.g. --adapters tf,torch")
    budget = hunt.parse_budget(args.budget if args.budget is not None else "10m")
    if args.case_timeout is not None and not args.case_timeout > 0:
        raise UsageError(f"--case-timeout must be a positive number of seconds, got {args.case_timeout}")
    labels, _ = resolve_adapters(args.adapters, local=args.dask is None)  # a fleet's workers check them
    engines, skipped = resolve_adapters(args.engines, local=args.dask is None)
    seed = args.seed or 0
    selection, specs = hunt.search_cases(seed, budget)
    run_config = runner.RunConfig(
        run_id=runner.new_run_id(), selection=selection, seed=seed, adapters=labels,
        cases=[[s.id, s.name] for s in specs], repeats=1,
        case_timeout=args.case_timeout or 30.0, isolation=not args.no_isolation, argv=list(sys.argv),
    )
    config = hunt.HuntConfig(
        adapters=labels, engines=[e for e in engines if e not in labels], budget_s=budget, seed=seed,
        max_problems=args.problems or 0, case_timeout=args.case_timeout or 30.0,
        isolation=not args.no_isolation, unavailable=skipped,
    )
    return config, run_config


def _connect(address: str, config: Any) -> Any:
    """A client of the hunt's Dask cluster, whose every worker has loaded the adapters and engines."""
    from refconv import distributed

    cluster = distributed.connect(address)
    try:
        cluster.start(tuple(dict.fromkeys([*config.adapters, *config.engines])), config.isolation)
    except BaseException:
        cluster.close()
        raise
    print(f"refconv hunt: Dask scheduler {address}, {len(cluster.workers())} worker(s)", file=sys.stderr)
    return cluster


def _print(summary: Any) -> None:
    from refconv.findings.facts import describe

    rows = [r for r in summary.rows if r.get("outcome") not in ("pass", "unsupported")]
    print(f"{len(summary.problems)} problem(s) in {len(rows)} failing row(s); {summary.probes} probes")
    for p in summary.problems:
        known = f"known deviation {p.known_deviation}" if p.known_deviation else "NEW"
        measured = "" if p.precision is None else \
            f"; precision {p.precision:.2f}, recall {p.recall or 0:.2f} over {p.probes} probes"
        print(f"- {p.id} [{known}]: {', '.join(p.adapters)} {p.outcome}")
        print(f"    minimal case {p.minimal_case}; when {describe(p.conditions)}{measured}")
        if p.engines:
            print("    engines: " + ", ".join(f"{k} {v}" for k, v in p.engines.items()))
    print("wrote:")
    for path in summary.paths:
        print(f"  {path}")
