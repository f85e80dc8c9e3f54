"""The ``glassbox`` command. Each part registers its own subcommands; parts load lazily.

The parser is built inside ``main`` (never at import time) and each part's ``register`` imports
only what it needs to describe its options, so ``glassbox --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define ``register(subparsers)``; each adds its own subcommands.
PARTS = (
    "glassbox.pipeline.cli",
    "glassbox.annotation.cli",
    "glassbox.deploy.cli",
    "glassbox.stack.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassbox",
        description="Serve a tabular classifier with its explanation, its metrics and a review queue.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # that part is not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Each subcommand sets ``func``; it returns the process exit code.
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
