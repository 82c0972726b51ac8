"""`python -m bench [name ...]`: run every `bench/bench_*.py` (or the named ones) in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    failed = 0
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as error:  # a broken benchmark must not hide the others' figures
            failed += 1
            print(f"{name} FAILED: {error!r}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
