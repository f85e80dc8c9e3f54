"""``glassbox up | down | status | logs | demo``: the local stack from the command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from glassbox.errors import GlassboxError


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up", help="start the local stack: model, explainer, queue, monitor, gateway, Prometheus"
    )
    up.add_argument("--detach", action="store_true", help="return once all is healthy; stop with `down`")
    up.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even if installed")
    up.add_argument(
        "--protocol",
        choices=["seldon", "v2"],
        help="seldon: Seldon v1 microservices; v2: MLServer (Open Inference Protocol, needs `make "
        "install-v2`) (default: GLASSBOX_STACK_PROTOCOL or seldon)",
    )
    up.set_defaults(func=cmd_up)

    down = subparsers.add_parser("down", help="stop the local stack started by `up` or `demo`")
    down.set_defaults(func=cmd_down)

    status = subparsers.add_parser("status", help="show the local stack's processes, health and URLs")
    status.set_defaults(func=cmd_status)

    logs = subparsers.add_parser("logs", help="print the local stack's logs")
    logs.add_argument(
        "component", nargs="?", help="queue, monitor, model, explainer, gateway, prometheus (default: all)"
    )
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines from the end of each log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C to stop)")
    logs.set_defaults(func=cmd_logs)

    demo = subparsers.add_parser(
        "demo", help="train if needed, start the stack, send demo traffic, print where to look"
    )
    demo.add_argument("--once", action="store_true", help="stop the stack when the demo is done")
    demo.add_argument("--rows", type=int, default=200, help="prediction rows to send")
    demo.add_argument("--explanations", type=int, default=3, help="explanations to ask for")
    demo.set_defaults(func=cmd_demo)


def _say(text: str) -> None:
    """Print and flush; if the reader left (`glassbox up | head`), carry on writing to /dev/null instead.

    ``up`` owns running processes: a closed pipe must not skip stopping them (``glassbox.cli.main`` ends
    every other command quietly on a BrokenPipeError).
    """
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _fail(exc: GlassboxError) -> int:
    print(f"error: {exc.message}", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    from glassbox.stack.report import describe
    from glassbox.stack.settings import StackSettings
    from glassbox.stack.supervisor import Stack

    stack = Stack(StackSettings(**({"protocol": args.protocol} if args.protocol else {})))
    _say(f"starting the local stack (logs in {stack.settings.logs_dir}/) ...")
    try:
        stack.up(with_prometheus=not args.no_prometheus)
    except GlassboxError as exc:
        return _fail(exc)
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # `up` has already stopped what it had started
        print("interrupted: stopped", file=sys.stderr)
        return 130
    try:
        _say(describe(stack))
        if args.detach:
            _say("running in the background: `glassbox status`, `glassbox logs`, `glassbox down`")
            return 0
        _say("press Ctrl-C to stop (or run `glassbox down` in another shell)")
        supervise(stack)
    except KeyboardInterrupt:  # Ctrl-C before supervise() took over the signals
        pass
    except BrokenPipeError:  # stderr's reader left too (`glassbox up 2>&1 | head`): stop all the same
        pass
    return stop(stack)


def supervise(stack) -> None:
    """Wait in the foreground until Ctrl-C/SIGTERM, or until `down` stopped the stack."""
    requested = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: requested.set())
    reported: set[str] = set()
    while not requested.wait(1.0):
        if not stack.settings.state_file.exists():
            return  # `glassbox down` from another shell stopped the processes
        for name, component in stack.components.items():
            if not component.process.alive() and name not in reported:
                reported.add(name)
                log = component.process.log_path
                print(f"warning: {name} exited; see {log}", file=sys.stderr, flush=True)


def stop(stack) -> int:
    _say("stopping ...")
    left = stack.down()
    _say("stopped" if not left else f"still running: {', '.join(left)}")
    return 0 if not left else 1


def cmd_down(args: argparse.Namespace) -> int:
    from glassbox.stack.settings import StackSettings
    from glassbox.stack.supervisor import read_state, stop_recorded

    settings = StackSettings()
    if not read_state(settings):
        print(f"no stack recorded in {settings.state_file}: nothing to stop")
        return 0
    stopped = stop_recorded(settings)
    for name, ok in stopped.items():
        print(f"{name:<11} {'stopped' if ok else 'STILL RUNNING'}")
    return 0 if all(stopped.values()) else 1


def cmd_status(args: argparse.Namespace) -> int:
    from glassbox.stack.settings import StackSettings
    from glassbox.stack.supervisor import read_state

    settings = StackSettings()
    records = read_state(settings)
    if not records:
        print(f"not running (no {settings.state_file}); start it with `glassbox up`")
        return 3
    healthy = True
    print(f"{'component':<11} {'pid':>7}  {'state':<9} url")
    for record in records.values():
        state = "healthy" if record.healthy() else ("starting" if record.alive() else "stopped")
        healthy &= state == "healthy"
        # A page that opens (the review page, a model's metadata) rather than a base URL that answers 404.
        url = next((link for link in record.links.values() if link.startswith("http")), record.url)
        print(f"{record.name:<11} {record.pid:>7}  {state:<9} {url}")
    return 0 if healthy else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from glassbox.stack.settings import StackSettings

    logs_dir = StackSettings().logs_dir
    paths = sorted(logs_dir.glob("*.log"))
    if args.component:
        paths = [p for p in paths if p.stem == args.component]
        if not paths:
            known = ", ".join(p.stem for p in sorted(logs_dir.glob("*.log"))) or "none yet"
            print(f"error: no log for {args.component!r} in {logs_dir} (logs: {known})", file=sys.stderr)
            return 1
    offsets = {}
    for path in paths:
        lines = path.read_text(errors="replace").splitlines()[-args.lines :]
        print(f"==> {path} <==")
        print("\n".join(lines))
        offsets[path] = path.stat().st_size
    try:
        while args.follow:
            time.sleep(0.5)
            for path in paths:
                with path.open("rb") as fh:
                    fh.seek(offsets[path])
                    new = fh.read()
                if new:
                    offsets[path] += len(new)
                    lines = new.decode(errors="replace").splitlines(keepends=True)
                    print("".join(f"[{path.stem}] {line}" for line in lines), end="", flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from glassbox.stack.demo import run_demo

    try:
        return run_demo(once=args.once, rows=args.rows, explanations=args.explanations)
    except GlassboxError as exc:
        return _fail(exc)
    except KeyboardInterrupt:  # the demo has already stopped the stack it started
        print("interrupted: stopped", file=sys.stderr)
        return 130
