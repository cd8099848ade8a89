"""List and remove the cached environments of pinned engine versions (tf@2.19.1 and the like).

A label such as `tf@2.19.1` makes `refconv run` build one environment per (engine, version) on first use,
under $XDG_CACHE_HOME/refconv/envs (default ~/.cache/refconv/envs):

  refconv envs                          # name, engine, version, size of each
  refconv envs --build tf@2.19.1        # build now (what a run would do on first use)
  refconv envs --remove tf@2.19.1
  refconv envs --remove-all
"""

from __future__ import annotations

import argparse

HELP = "list, build and remove cached environments of pinned engine versions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--build", default=None, metavar="A@V[,B@V]", help="build these environments now")
    p.add_argument("--remove", default=None, metavar="A@V[,B@V]", help="remove these cached environments")
    p.add_argument("--remove-all", action="store_true", help="remove every cached environment")
    p.add_argument("--allow-large", action="store_true", help="with --build: allow builds that pull several GB")


def _labels(text: str) -> list[tuple[str, str]]:
    import adapters
    from refconv import envs
    from refconv.errors import UsageError

    out = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        ref = adapters.parse(item)
        if not ref.version:
            raise UsageError(f"name a pinned version, e.g. tf@2.19.1, got {item!r}")
        envs.check_pin(ref.name, ref.version)
        out.append((ref.name, ref.version))
    return out


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def main(args: argparse.Namespace) -> int:
    import shutil

    from refconv import envs

    if args.build:
        for name, version in _labels(args.build):
            env = envs.ensure(f"{name}@{version}", allow_large=args.allow_large, progress=True)
            print(f"built {env.path}")
    if args.remove:
        for name, version in _labels(args.remove):
            print(f"removed {envs.remove(name, version)}")
    if args.remove_all:
        for entry in envs.cached():
            shutil.rmtree(entry["path"])
            print(f"removed {entry['path']}")
    if args.build or args.remove or args.remove_all:
        return 0
    found = envs.cached()
    print(f"{len(found)} environment(s) under {envs.cache_root()}")
    for entry in found:
        print(f"  {entry['name']:<24} {entry['engine']:<12} {entry['version']:<12} {_size(entry['bytes']):>9}")
    print(f"  total {_size(sum(e['bytes'] for e in found))}")
    return 0
