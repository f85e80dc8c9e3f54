"""Start, watch and stop local processes: the pieces the local stack, the tests and the benchmarks share.

Every process listens on loopback only, logs to a file, and runs in its own process group. Stopping
works as in a Kubernetes pod: SIGTERM to the main process only, which stops what it started (Seldon's
microservice: its whole tree, ``glassbox.seldon.lifecycle``; uvicorn: its workers), and after a grace
SIGKILL to whatever is left of the group. SIGTERM to the whole group at once would also stop the
helpers the workers still need while they drain (Seldon's metrics ``Manager``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

LOOPBACK = "127.0.0.1"
# Every local server is gone within this after SIGTERM, having given requests in flight a second less
# to finish (the components' own settings default to the same); ManagedProcess.stop waits longer.
SHUTDOWN_GRACE_SECONDS = 4


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _accepts(port: int, host: str = LOOPBACK) -> bool:
    """Whether something listens on ``port`` (a TCP connect succeeds)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def venv_bin(name: str) -> str:
    """Path of a console script installed beside the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class ManagedProcess:
    """One child process with its log file; ``start`` returns once ``health_url`` answers 200 and
    every port in ``ready_ports`` accepts connections (servers the health URL does not cover)."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None
    ready_ports: Sequence[int] = ()
    cwd: str | None = None
    popen: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps writing to it
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            start_new_session=True,  # own process group: stop() reaches forked workers too
        )
        log.close()
        if self.health_url or self.ready_ports:
            self.wait_healthy(timeout)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.tail()}")
            if self._health_ok() and all(_accepts(port) for port in self.ready_ports):
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(
            f"{self.name} not healthy at {self.health_url} after {timeout:.0f}s; see {self.log_path}"
        )

    def _health_ok(self) -> bool:
        if not self.health_url:
            return True
        try:
            return requests.get(self.health_url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """``sig`` to the main process (SIGKILL: to the whole group), at most ``grace`` seconds for it to
        exit, then SIGKILL to anything left in its process group (orphans, or all of it on a timeout)."""
        if not self.popen:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(self.popen.pid, sig)
                else:
                    self.popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # the group outlives its leader while members live
        self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        self.stop(grace=0.0, sig=signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def seldon_microservice(
    name: str,
    interface: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    workers: int = 1,
    threads: int = 1,
    cwd: str | None = None,
) -> tuple[ManagedProcess, dict[str, int]]:
    """A ``seldon-core-microservice`` for ``interface`` (``module.Class``) on free loopback ports.

    It runs through ``glassbox.stack.loopback`` so that it listens on 127.0.0.1 only.
    """
    ports = {
        "http": http_port or free_port(),
        "grpc": grpc_port or free_port(),
        "metrics": metrics_port or free_port(),
    }
    argv = [
        # Seldon's own entry point with its 0.0.0.0 binds rewritten to loopback (see loopback.py).
        sys.executable, "-m", "glassbox.stack.loopback",
        interface,
        "--service-type", "MODEL",
        "--http-port", str(ports["http"]),
        "--grpc-port", str(ports["grpc"]),
        "--metrics-port", str(ports["metrics"]),
        "--workers", str(workers),
        "--threads", str(threads),
    ]  # fmt: skip
    proc = ManagedProcess(
        name=name,
        argv=argv,
        log_path=log_path,
        env=dict(env or {}),
        health_url=f"http://{LOOPBACK}:{ports['http']}/health/ping",
        # The gRPC and metrics servers are separate processes that /health/ping does not cover: a
        # gRPC call made as soon as REST answers could otherwise be refused.
        ready_ports=(ports["grpc"], ports["metrics"]),
        cwd=cwd,
    )
    return proc, ports


def process_group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid`` (zombies excluded)."""
    import psutil

    members = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
    return members


def stop_process_group(pgid: int, grace: float = 10.0) -> bool:
    """SIGTERM a process group another process started, SIGKILL what is left after ``grace`` seconds.

    For processes this interpreter did not start (``glassbox down`` reading pids from a state
    file). SIGTERM goes to the group's leader (the process that was started), which stops its own
    children; once it is gone, whatever is left of the group gets SIGTERM too. Returns True when
    nothing of the group is left.
    """
    deadline = time.monotonic() + grace
    members = process_group_members(pgid)
    with contextlib.suppress(ProcessLookupError):
        if pgid in members:  # (a pid, once its process is gone, may belong to anyone)
            os.kill(pgid, signal.SIGTERM)
    while pgid in members and time.monotonic() < deadline:
        time.sleep(0.1)
        members = process_group_members(pgid)
    if members:  # orphans the leader left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    while process_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.2)
    return not process_group_members(pgid)
