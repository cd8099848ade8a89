"""Find the first release of an engine where a case's outcome changes (binary search over released versions).

The versions come from the registry (`pip index versions`); each one tried runs on its own cached
environment (see `refconv envs`), built on first use. Prints the outcome on every version tried and the
boundary:

  refconv bisect tf --case n2-2x1x1-k1x2x1-s1x2-same-f32-nobias
  refconv bisect tf:onednn=on --case ID --good 2.16.1 --bad 2.21.0
  refconv bisect onnxruntime --cases edge          # every case of the selection that fails on --bad
  refconv bisect tf --run reports/RUN              # every problem of RUN/findings.json on tf; fills
                                                   # present_since there and re-renders the reports
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "find the first engine release where a case's outcome changes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", metavar="ENGINE", help="engine adapter, optionally with options: tf, tf:onednn=on, "
                                                   "onnxruntime, jax, keras")
    p.add_argument("--case", default=None, metavar="ID", help="the case to bisect")
    p.add_argument("--cases", default=None, metavar="SEL",
                   help="bisect every case of a selection that does not pass on --bad (e.g. edge)")
    p.add_argument("--run", default=None, metavar="DIR",
                   help="bisect every problem of DIR/findings.json on this engine and fill its present_since")
    p.add_argument("--good", default=None, metavar="V", help="the old end (default: the oldest release)")
    p.add_argument("--bad", default=None, metavar="V", help="the new end (default: the newest release)")
    p.add_argument("--allow-large", action="store_true", help="allow environments that pull several GB (torch)")
    p.add_argument("--no-progress", action="store_true", help="no environment build status lines")


def main(args: argparse.Namespace) -> int:
    import adapters
    from refconv import bisect
    from refconv.errors import UsageError

    chosen = [name for name in ("case", "cases", "run") if getattr(args, name)]
    if len(chosen) != 1:
        raise UsageError("name exactly one of --case ID, --cases SEL, --run DIR")
    ref = adapters.parse(args.engine)
    if ref.version:
        raise UsageError(f"ENGINE is unpinned (bisect chooses versions), got {args.engine!r}")
    options = "".join(f":{k}={v}" for k, v in sorted(ref.options.items()))
    versions = bisect.window(bisect.released_versions(ref.name), args.good, args.bad)
    print(f"refconv bisect: {ref.name}{options} over {len(versions)} release(s) {versions[0]} .. {versions[-1]}")
    if args.case:
        _one(ref.name, options, args.case, versions, args)
        return 0
    if args.cases:
        return _selection(ref.name, options, args.cases, versions, args)
    return _run_dir(ref.name, options, Path(args.run), versions, args)


def _one(engine: str, options: str, case_id: str, versions: list[str], args: argparse.Namespace) -> Any:
    from refconv import bisect
    from refconv.spec import ConvSpec

    ConvSpec.from_id(case_id)  # a bad id fails here, in one line
    probe = bisect.probe_case(engine, case_id, options, allow_large=args.allow_large, progress=not args.no_progress)

    def printing(version: str) -> bisect.Trial:
        trial = probe(version)
        print(bisect.trial_line(trial), flush=True)
        return trial

    print(f"case {case_id}:")
    result = bisect.bisect(case_id, engine, versions, printing, lambda v: bisect.is_built(engine, v))
    print(f"  => {result.note}" + (f"; present since {result.present_since}" if result.present_since else ""))
    return result


def _selection(engine: str, options: str, selection: str, versions: list[str], args: argparse.Namespace) -> int:
    from refconv import bisect, cases

    for spec in cases.select(selection, seed=0):  # checked on --bad first: only its failures are bisected
        newest = bisect.probe_case(engine, spec.id, options, allow_large=args.allow_large,
                                   progress=not args.no_progress)(versions[-1])
        if newest.outcome in ("pass", "unsupported"):
            continue
        _one(engine, options, spec.id, versions, args)
    return 0


def _run_dir(engine: str, options: str, run_dir: Path, versions: list[str], args: argparse.Namespace) -> int:
    from refconv.errors import UsageError
    from refconv.report import write_reports

    path = run_dir / "findings.json"
    if not path.is_file():
        raise UsageError(f"{path} does not exist (refconv hunt writes it)")
    problems: list[dict[str, Any]] = json.loads(path.read_text())
    touched = 0
    for problem in problems:
        labels = [str(label) for label in problem.get("adapters", [])]
        if not any(label.split(":")[0].split("@")[0] == engine for label in labels) or not problem.get("minimal_case"):
            continue
        result = _one(engine, options, str(problem["minimal_case"]), versions, args)
        problem["present_since"] = result.present_since
        touched += 1
    if not touched:
        print(f"refconv bisect: no problem in {path} involves {engine}", file=sys.stderr)
        return 0
    path.write_text(json.dumps(problems, indent=2) + "\n")
    for written in write_reports(run_dir):
        print(f"wrote {written}")
    return 0
