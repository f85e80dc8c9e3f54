"""Run every part's benchmark (`make bench`); `python -m benchmarks.run serving` runs one."""

from __future__ import annotations

import importlib
import sys

PARTS = ("fastpath", "serving", "explain", "annotation", "queue_list", "feedback", "deploy", "footprint")


def main(argv: list[str]) -> int:
    for part in argv or PARTS:
        module = importlib.import_module(f"benchmarks.{part}")
        print(f"== {part}", flush=True)
        path = module.main()
        print(path.read_text() if path else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
