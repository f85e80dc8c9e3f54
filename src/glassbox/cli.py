"""The ``glassbox`` command. Each part registers its own subcommands; parts load lazily.

The parser is built inside ``main`` (never at import time) and each part's ``register`` imports
only what it needs to describe its options, so ``glassbox --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

# Modules that define ``register(subparsers)``; each adds its own subcommands.
PARTS = (
    "glassbox.pipeline.cli",
    "glassbox.annotation.cli",
    "glassbox.deploy.cli",
    "glassbox.stack.cli",
    "glassbox.stack.serve_v2",  # glassbox serve-v2: the model or the explainer on MLServer (V2)
    "glassbox.batch.cli",  # after annotation's: it adds --workers/--ray-address to audit-labels
    "glassbox.monitor.cli",  # glassbox monitor serve: drift and outliers from the model's traffic
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
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        # Each subcommand sets ``func``; it returns the process exit code.
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, inside the try, not at interpreter exit
        return code
    except BrokenPipeError:
        # `glassbox status | head`: the reader closed the pipe. End quietly, as `yes | head` does, with
        # the status of a process killed by SIGPIPE (the Python docs' recipe; SIG_DFL for SIGPIPE would
        # also kill the command on a socket's EPIPE). Python flushes stdout again at exit: point it at
        # /dev/null so that flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
