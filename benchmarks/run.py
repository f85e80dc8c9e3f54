"""Run every part's benchmark (`make bench`); `python -m benchmarks.run serving` runs one."""

from __future__ import annotations

import importlib
import sys

PARTS = (
    "fastpath",
    "serving",
    "monitoring",  # the drift/outlier monitor: its cost to the model, its throughput, detection power
    "stack_monitor",  # the monitor in the local stack: start-up cost, shift -> flag -> series -> alert
    "v2",  # the model on MLServer (V2) beside MLServer's sklearn runtime and Seldon v1
    "explain",
    "attributions",
    "batch",
    "annotation",
    "queue_list",
    "review_page",
    "feedback",
    "deploy",
    "footprint",
)


def main(argv: list[str]) -> int:
    for part in argv or PARTS:
        module = importlib.import_module(f"benchmarks.{part}")
        print(f"== {part}", flush=True)
        path = module.main()
        print(path.read_text() if path else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
