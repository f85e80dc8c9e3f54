"""``glassbox queue ...`` as a user runs them: ``migrate`` and ``create-owner`` open the database
(both stores), every other command calls a real queue service's HTTP API and opens none.

Most commands run in this process (``glassbox.cli.main``, the console script's entry point) to keep
the test quick; a few run as real ``glassbox`` processes to check exit codes and stderr as a shell
sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from glassbox.cli import main
from glassbox.stack.process import LOOPBACK, free_port, venv_bin

# A database URL no store accepts: a command that tried to open the database would fail on it.
NOT_OPENED = "unsupported://the-cli-must-not-open-the-database"


@pytest.fixture
def glassbox(monkeypatch, capsys):
    """``glassbox(env, *args, check=True)`` -> ``.returncode``, ``.stdout``, ``.stderr``, run in-process
    with only ``env`` among the GLASSBOX_QUEUE_* variables."""

    def run(env: dict[str, str], *args: str, check: bool = True) -> SimpleNamespace:
        with monkeypatch.context() as m:
            for name in [n for n in os.environ if n.startswith("GLASSBOX_QUEUE_")]:
                m.delenv(name)
            for name, value in env.items():
                m.setenv(name, value)
            capsys.readouterr()
            code = main(list(args))
            out, err = capsys.readouterr()
        assert not check or code == 0, err
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def shell(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``glassbox *args`` as a real process."""
    return subprocess.run(
        [venv_bin("glassbox"), *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def refused(glassbox):
    """stderr of a command that must fail with exit 2 and a one-line message."""

    def run(env: dict[str, str], *args: str) -> str:
        done = glassbox(env, *args, check=False)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        return done.stderr

    return run


def key_of(printed: str) -> str:
    key = printed.rsplit(" ", 1)[-1].strip()
    assert key.startswith("gbq_"), printed
    return key


def test_first_owner_from_the_database_then_every_command_through_the_service(
    start_queue, queue_record, database, tmp_path, glassbox, refused
) -> None:
    url, schema = database
    db = {"GLASSBOX_QUEUE_DATABASE_URL": url, "GLASSBOX_QUEUE_DATABASE_SCHEMA": schema}
    migrated = shell(db, "queue", "migrate")
    assert migrated.returncode == 0 and migrated.stdout.startswith("applied migration(s) 1"), migrated.stderr
    assert glassbox(db, "queue", "migrate").stdout.startswith("nothing to apply; the schema is at version")
    made = shell(db, "queue", "create-owner", "olga")
    assert made.returncode == 0 and made.stdout.startswith("created owner olga"), made.stderr
    owner_key = key_of(made.stdout)
    again = shell(db, "queue", "create-owner", "oscar")
    assert again.returncode == 2 and again.stderr.startswith("error: an owner already exists")

    # The service started now finds the owner made by the CLI.
    queue = start_queue(GLASSBOX_QUEUE_OWNER_API_KEY="")
    queue.owner_key = owner_key
    service = {"GLASSBOX_QUEUE_DATABASE_URL": NOT_OPENED, "GLASSBOX_QUEUE_URL": queue.url}
    owner = {**service, "GLASSBOX_QUEUE_API_KEY": owner_key}

    keys = {name: key_of(glassbox(owner, "queue", "users", "add", name).stdout) for name in ("a", "b")}
    admin = {**service, "GLASSBOX_QUEUE_API_KEY": key_of(
        glassbox(owner, "queue", "users", "add", "ada", "--role", "admin").stdout
    )}  # fmt: skip
    assert "a                        annotator" in glassbox(owner, "queue", "users", "list").stdout
    duplicate = refused(owner, "queue", "users", "add", "a")
    assert f"the queue at {queue.url} answered 409" in duplicate and "already exists" in duplicate
    assert "cannot delete themself" in refused(owner, "queue", "users", "remove", "olga")
    assert "answered 400" in refused(owner, "queue", "users", "add", "team/lead")

    # Roles: what the service refuses comes back as its status and message, exit 2.
    annotator = {**service, "GLASSBOX_QUEUE_API_KEY": keys["a"]}
    for env, args, role in [
        (annotator, ("users", "list"), "owner"),
        (annotator, ("users", "add", "eve", "--role", "owner"), "owner"),
        (admin, ("users", "remove", "b"), "owner"),
        (annotator, ("settings", "--min-submitted", "1"), "admin"),
        (annotator, ("export", "--output", str(tmp_path / "no.jsonl")), "admin"),
    ]:
        message = refused(env, "queue", *args)
        assert "answered 403" in message and f"this needs {role} or above" in message, message
    assert not (tmp_path / "no.jsonl").exists()
    assert "answered 401" in refused(service, "queue", "list", "--api-key", "gbq_wrong")
    no_key = refused(service, "queue", "label", "req-3:0", "--discard")
    assert "missing API key: pass --api-key or set GLASSBOX_QUEUE_API_KEY" in no_key

    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(i) for i in range(1, 4)]})
    assert "min_submitted    2" in glassbox(admin, "queue", "settings", "--min-submitted", "2").stdout
    assert "min_submitted    2" in glassbox(owner, "queue", "settings").stdout

    listed = json.loads(glassbox(annotator, "queue", "list", "--status", "pending", "--json").stdout)
    assert [r["id"] for r in listed["records"]] == ["req-1:0", "req-2:0", "req-3:0"]
    answers = [
        ("a", "req-1:0", ">50K"),
        ("b", "req-1:0", ">50K"),
        ("a", "req-2:0", ">50K"),
        ("b", "req-2:0", "<=50K"),
    ]
    for name, record_id, label in answers:
        glassbox(service, "queue", "label", record_id, "--label", label, "--api-key", keys[name])
    tie = glassbox(service, "queue", "label", "req-2:0", "--label", "<=50K", "--api-key", keys["b"]).stdout
    assert tie.strip() == "req-2:0: pending"
    wrong = refused(annotator, "queue", "label", "req-3:0", "--label", "rich")
    assert "answered 400" in wrong and "not one of this record's classes" in wrong
    assert "answered 404" in refused(annotator, "queue", "show", "req-99:0")
    for name in ("a", "b"):
        glassbox(service, "queue", "label", "req-3:0", "--discard", "--api-key", keys[name])

    shown = json.loads(glassbox(annotator, "queue", "show", "req-1:0").stdout)
    assert shown["final_label"] == ">50K" and {r["user_name"] for r in shown["responses"]} == {"a", "b"}
    text = glassbox(annotator, "queue", "list", "--status", "completed").stdout
    assert "req-1:0" in text and "final=>50K" in text
    report = json.loads(glassbox(annotator, "queue", "agreement", "--json").stdout)
    assert report["pairable_units"] == 2 and report["annotators"]["a"] == {
        "compared": 1,
        "agreed": 1,
        "rate": 1.0,
    }
    assert "Krippendorff's alpha (nominal):" in glassbox(annotator, "queue", "agreement").stdout

    out = tmp_path / "export" / "reviewed.jsonl"
    printed = glassbox(admin, "queue", "export", "--output", str(out)).stdout
    assert printed.strip() == f"exported 1 record(s) to {out}; skipped 1 without a final label"
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["req-1:0"]

    assert glassbox(owner, "queue", "users", "remove", "b").stdout.strip() == "removed b"
    gone = refused(service, "queue", "label", "req-2:0", "--discard", "--api-key", keys["b"])
    assert "answered 401" in gone and "unknown API key" in gone
    assert "answered 404" in refused(owner, "queue", "users", "remove", "b")


class NotTheQueue(BaseHTTPRequestHandler):
    """Some other web server: HTML 404 for everything."""

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body><h1>Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_the_queue():
    server = ThreadingHTTPServer((LOOPBACK, 0), NotTheQueue)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


COMMANDS = [
    ("list",),
    ("show", "req-1:0"),
    ("label", "req-1:0", "--label", ">50K"),
    ("export", "--output", "{out}"),
    ("agreement",),
    ("settings",),
    ("users", "list"),
    ("users", "add", "zed"),
    ("users", "remove", "zed"),
]


def test_no_queue_at_the_url_is_a_message_naming_it(not_the_queue, tmp_path, refused) -> None:
    down = f"http://{LOOPBACK}:{free_port()}"
    env = {"GLASSBOX_QUEUE_DATABASE_URL": NOT_OPENED, "GLASSBOX_QUEUE_API_KEY": "gbq_some-key"}
    done = shell(env, "queue", "users", "list", "--url", down)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: cannot reach the queue at {down} (Connection refused)")
    out = tmp_path / "export.jsonl"
    for command in COMMANDS:
        args = [a.format(out=out) for a in command]
        message = refused(env, "queue", *args, "--url", down)
        assert f"cannot reach the queue at {down} (Connection refused)" in message, message
        assert "GLASSBOX_QUEUE_URL" in message
        other = refused(env, "queue", *args, "--url", not_the_queue)
        assert f"the queue at {not_the_queue} answered 404" in other and "is this URL the queue?" in other
    assert not out.exists()
    assert "must start with http://" in refused(env, "queue", "list", "--url", "127.0.0.1:8500")
    # audit-labels checks its key before minutes of training.
    no_key = refused({"GLASSBOX_QUEUE_URL": down}, "audit-labels", "--top-k", "5")
    assert "missing API key" in no_key
