"""``glassbox monitor serve``: the drift and outlier monitor as an HTTP service (uvicorn)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    monitor = subparsers.add_parser("monitor", help="the drift and outlier monitor fed by the model")
    commands = monitor.add_subparsers(dest="monitor_command", required=True, metavar="SUBCOMMAND")
    serve = commands.add_parser("serve", help="start the HTTP service (settings from GLASSBOX_MONITOR_*)")
    serve.add_argument("--host", help="bind address (default GLASSBOX_MONITOR_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default GLASSBOX_MONITOR_PORT, 8600)")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from glassbox.errors import GlassboxError
    from glassbox.monitor.app import create_app
    from glassbox.monitor.settings import MonitorSettings

    try:
        settings = MonitorSettings()
        app = create_app(settings)
    except (GlassboxError, ValueError) as exc:
        print(f"glassbox monitor: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    # One process: the windows live in its memory (the time window's clock runs in its event loop).
    uvicorn.run(
        app, host=args.host or settings.host, port=args.port or settings.port, log_level="info",
        access_log=False, timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds - 1)),
    )  # fmt: skip
    return 0
