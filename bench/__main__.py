"""Run the benchmarks: `python -m bench` (all of them) or `python -m bench raft_bench ...`.

Every module in this package whose name does not start with `_` is a benchmark with a
`main() -> int` that prints its figures; it runs with its own defaults (no arguments).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def available() -> list[str]:
    here = str(Path(__file__).resolve().parent)
    return sorted(m.name for m in pkgutil.iter_modules([here]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown!r}; available: {available()!r}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for name in names:
        print(f"=== bench {name} ===", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        saved, sys.argv = sys.argv, [name]
        try:
            code = module.main()
        except Exception as exc:
            print(f"bench {name} failed: {exc!r}", flush=True)
            code = 1
        finally:
            sys.argv = saved
        print(f"=== bench {name}: exit {code or 0} in {time.monotonic() - started:.1f}s ===\n", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
