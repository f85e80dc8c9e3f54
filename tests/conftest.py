"""Fixtures shared by every part's tests. Toy data and fixtures live here, in one place.

Tests that need a real service (PostgreSQL, Prometheus, helm, Chromium) call ``require`` to skip
when it is missing; ``.ci/run`` fails the build if anything was skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from glassbox.stack.process import ManagedProcess

REPO = Path(__file__).resolve().parents[1]


def require(condition: object, what: str) -> None:
    """Skip the test unless ``condition``; under ``GLASSBOX_REQUIRE_SERVICES=1`` fail instead."""
    if condition:
        return
    if os.environ.get("GLASSBOX_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {what}")
    pytest.skip(f"missing: {what}")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    dsn = os.environ.get("GLASSBOX_TEST_POSTGRES_DSN", "")
    require(dsn, "GLASSBOX_TEST_POSTGRES_DSN (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return dsn


@pytest.fixture(scope="session")
def helm_bin() -> str:
    path = shutil.which("helm") or str(REPO / ".tools/bin/helm")
    require(Path(path).exists(), "helm (make tools)")
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    require(path, "prometheus (apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    require(Path("/usr/bin/chromium").exists(), "chromium (apt-get install chromium)")
    return "/usr/bin/chromium"


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    """Append started processes here; they are stopped at the end of the test."""
    started: list[ManagedProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop()
