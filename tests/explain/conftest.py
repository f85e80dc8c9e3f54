"""A private redis-server per test (or module): tests stop and restart it, never the machine's shared one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence; restartable on the same port."""

    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.process: ManagedProcess | None = None

    def start(self) -> RedisServer:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = ManagedProcess(
            "redis", argv, self.workdir / "redis.log", cwd=str(self.workdir), ready_ports=(self.port,)
        ).start(timeout=20)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require(shutil.which("redis-server"), "redis-server (apt-get install redis-server)")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for a module's explainer processes (they take a while to start)."""
    require(shutil.which("redis-server"), "redis-server (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
