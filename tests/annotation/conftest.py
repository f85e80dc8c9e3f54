"""Fixtures of the annotation queue's tests: both stores, and real `glassbox queue serve` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from glassbox.annotation.store import Store, open_store
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, venv_bin

OWNER_KEY = "gbq_test-owner-key"
ADULT_CONFIG = Path(__file__).resolve().parents[2] / "pipeline" / "configs" / "adult.yaml"


@pytest.fixture
def adult_config() -> Path:
    return ADULT_CONFIG


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(database_url, schema)`` for each store: a SQLite file, and a fresh schema on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}", ""
    dsn = request.getfixturevalue("postgres_dsn")
    return dsn, request.getfixturevalue("postgres_schema")


@pytest.fixture
def store(database: tuple[str, str]) -> Iterator[Store]:
    opened = open_store(*database)
    yield opened
    opened.close()


@dataclass
class QueueServer:
    url: str
    owner_key: str
    process: ManagedProcess

    def call(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = {"X-API-Key": key if key is not None else self.owner_key}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def add_user(self, name: str, role: str) -> str:
        answer = self.call("POST", "/api/v1/users", json={"name": name, "role": role})
        assert answer.status_code == 201, answer.text
        return answer.json()["api_key"]


@pytest.fixture
def start_queue(
    tmp_path: Path, processes: list[ManagedProcess], database: tuple[str, str]
) -> Callable[..., QueueServer]:
    """Start ``glassbox queue serve`` on a free loopback port over ``database``; env overrides settings."""

    def start(**env: str) -> QueueServer:
        port = free_port()
        url, schema = database
        proc = ManagedProcess(
            name="queue",
            argv=[venv_bin("glassbox"), "queue", "serve", "--host", LOOPBACK, "--port", str(port)],
            log_path=tmp_path / f"queue-{port}.log",
            env={
                "GLASSBOX_QUEUE_DATABASE_URL": url,
                "GLASSBOX_QUEUE_DATABASE_SCHEMA": schema,
                "GLASSBOX_QUEUE_OWNER_API_KEY": OWNER_KEY,
                **env,
            },
            health_url=f"http://{LOOPBACK}:{port}/health",
        )
        processes.append(proc)
        proc.start(timeout=60)
        return QueueServer(f"http://{LOOPBACK}:{port}", OWNER_KEY, proc)

    return start
