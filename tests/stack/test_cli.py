"""`glassbox up/status/logs/down` as a user runs them: separate processes sharing only the run dir."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
import requests

from glassbox.stack.process import LOOPBACK, process_group_members
from glassbox.stack.review import QueueClient
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import read_state

pytestmark = pytest.mark.slow


def glassbox(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "glassbox.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path, trained_artifacts) -> Iterator[dict[str, str]]:
    env = {
        "GLASSBOX_STACK_RUN_DIR": str(tmp_path / "run"),
        "GLASSBOX_STACK_ARTIFACTS": str(trained_artifacts),
        "GLASSBOX_STACK_GATEWAY_PORT": "0",
    }
    yield env
    if (tmp_path / "run").exists():  # a test that failed half-way must not leave a stack running
        glassbox(env, "down")


def test_up_detached_then_status_logs_down(env, postgres_dsn, postgres_schema, adult_test_rows):
    # Without Prometheus the stack says how to get it and carries on. The queue keeps its records in
    # PostgreSQL here (SQLite, the default, is what the module-wide stack of test_stack.py uses).
    extra = {
        "GLASSBOX_STACK_PROMETHEUS_BIN": "/nonexistent/prometheus",
        "GLASSBOX_STACK_QUEUE_DSN": postgres_dsn,
        "GLASSBOX_QUEUE_DATABASE_SCHEMA": postgres_schema,
    }
    up = glassbox({**env, **extra}, "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "gateway_endpoint=" in up.stdout and "/api/v1.0/explain" in up.stdout
    assert "prometheus is not installed" in up.stdout and "apt-get install prometheus" in up.stdout
    records = read_state(StackSettings(run_dir=env["GLASSBOX_STACK_RUN_DIR"]))
    assert set(records) == {"queue", "monitor", "model", "explainer", "gateway"}

    # Every row forwarded to the queue lands in PostgreSQL.
    reply = requests.post(
        f"{records['gateway'].url}/seldon/default/loanclassifier/api/v1.0/predictions",
        json={"data": {"ndarray": adult_test_rows[:200].tolist()}},
    )
    assert reply.status_code == 200, reply.text
    uncertain = int((np.asarray(reply.json()["data"]["ndarray"]).max(axis=1) < 0.7).sum())
    queue = QueueClient(records["queue"].url, StackSettings().queue_api_key)
    # The monitor's outliers (source=outlier) are records too: count the uncertain predictions alone.
    assert uncertain and queue.wait_for(uncertain, source="prediction") == uncertain
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (postgres_schema,)
        ).fetchone()[0]
    assert tables > 0

    status = glassbox(env, "status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("healthy") == 5
    shown = {line.split()[0]: line.split()[-1] for line in status.stdout.splitlines()[1:]}
    assert all(url.startswith("http://") for url in shown.values()), status.stdout
    # Pages open (a model's base URL alone answers 404); the gateway is an API prefix.
    for name in ("queue", "monitor", "model", "explainer"):
        assert requests.get(shown[name], timeout=30).status_code == 200, shown

    logs = glassbox(env, "logs", "gateway", "-n", "5")
    assert logs.returncode == 0 and "==> " in logs.stdout
    unknown = glassbox(env, "logs", "nope")
    assert unknown.returncode == 1 and "no log for 'nope'" in unknown.stderr

    down = glassbox(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [name for name, r in records.items() if process_group_members(r.pid)] == []
    assert glassbox(env, "status").returncode == 3


def test_ctrl_c_stops_a_foreground_up(env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "glassbox.cli", "up", "--no-prometheus"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not any("press Ctrl-C" in x for x in lines):
        time.sleep(0.2)
    records = read_state(StackSettings(run_dir=env["GLASSBOX_STACK_RUN_DIR"]))
    assert len(records) == 5 and all(r.healthy() for r in records.values()), "".join(lines)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert [r.name for r in records.values() if process_group_members(r.pid)] == []


def test_a_taken_port_is_a_clear_error_and_starts_nothing(env):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = glassbox({**env, "GLASSBOX_STACK_GATEWAY_PORT": str(port)}, "up", "--detach")
    assert up.returncode == 1
    assert f"port {port} (GLASSBOX_STACK_GATEWAY_PORT) is already in use" in up.stderr
    assert not read_state(StackSettings(run_dir=env["GLASSBOX_STACK_RUN_DIR"]))


def test_up_without_a_model_says_how_to_train(tmp_path):
    env = {"GLASSBOX_STACK_RUN_DIR": str(tmp_path), "GLASSBOX_STACK_ARTIFACTS": str(tmp_path / "none")}
    up = glassbox(env, "up")
    assert up.returncode == 1
    assert "no trained model" in up.stderr and "glassbox train --config" in up.stderr


def test_status_into_a_pipe_closed_early_ends_without_a_traceback(tmp_path):
    """`glassbox status | head` once the reader is gone: the write fails with EPIPE on every run (the read
    end is closed before the command starts), and the command ends quietly with 128 + SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        status = subprocess.run(
            [sys.executable, "-m", "glassbox.cli", "status"],
            env={**os.environ, "GLASSBOX_STACK_RUN_DIR": str(tmp_path)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in status.stderr and "BrokenPipeError" not in status.stderr, status.stderr
    assert status.stderr == ""
    assert status.returncode == 128 + signal.SIGPIPE


def test_logs_piped_to_head_ends_without_a_traceback(tmp_path):
    """A real shell pipe: `glassbox logs | head -1` over a log far larger than the pipe's buffer."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model.log").write_text("".join(f"line {i} of a long log\n" for i in range(200_000)))
    script = f'{sys.executable} -m glassbox.cli logs -n 200000 | head -1; echo "exit ${{PIPESTATUS[0]}}" >&2'
    piped = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "GLASSBOX_STACK_RUN_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.stdout == f"==> {logs / 'model.log'} <==\n"
    assert "Traceback" not in piped.stderr and "BrokenPipeError" not in piped.stderr, piped.stderr
    assert piped.stderr == f"exit {128 + signal.SIGPIPE}\n"


def test_a_foreground_up_whose_reader_left_still_stops_the_stack_on_ctrl_c(env):
    """`glassbox up | head -3`, then Ctrl-C: printing "stopping ..." into the closed pipe must neither
    print a traceback nor skip stopping the processes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "glassbox.cli", "up", "--no-prometheus"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen, deadline = b"", time.monotonic() + 240
    while b"press Ctrl-C" not in seen and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            seen += os.read(proc.stdout.fileno(), 65536)
    records = read_state(StackSettings(run_dir=env["GLASSBOX_STACK_RUN_DIR"]))
    assert len(records) == 5 and all(r.healthy() for r in records.values()), seen.decode()
    proc.stdout.close()  # the reader leaves, as head does after its lines
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr.decode()
    assert proc.returncode == 0
    assert [r.name for r in records.values() if process_group_members(r.pid)] == []
