"""``glassbox queue ...`` commands as a user runs them, against both databases."""

from __future__ import annotations

import json
import subprocess

from glassbox.stack.process import venv_bin


def test_queue_commands_from_first_owner_to_agreement(start_queue, queue_record, database) -> None:
    url, schema = database
    env = {
        "GLASSBOX_QUEUE_DATABASE_URL": url,
        "GLASSBOX_QUEUE_DATABASE_SCHEMA": schema,
        "PATH": "/usr/bin:/bin",
    }

    def glassbox(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [venv_bin("glassbox"), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert not check or done.returncode == 0, done.stderr
        return done

    made = glassbox("queue", "users", "add", "olga", "--role", "owner").stdout
    owner_key = made.rsplit(" ", 1)[-1].strip()
    assert made.startswith("created owner olga") and owner_key.startswith("gbq_")
    keys = {
        name: glassbox("queue", "users", "add", name).stdout.rsplit(" ", 1)[-1].strip() for name in ("a", "b")
    }
    assert "a                        annotator" in glassbox("queue", "users", "list").stdout
    assert "already exists" in glassbox("queue", "users", "add", "a", check=False).stderr

    # The service started now finds the owner made by the CLI and takes records from them.
    queue = start_queue(GLASSBOX_QUEUE_OWNER_API_KEY="")
    queue.owner_key = owner_key
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(i) for i in range(1, 4)]})
    queue.call("PUT", "/api/v1/settings", json={"min_submitted": 2})

    listed = json.loads(glassbox("queue", "list", "--status", "pending", "--json").stdout)
    assert [r["id"] for r in listed["records"]] == ["req-1:0", "req-2:0", "req-3:0"]
    answers = [
        ("a", "req-1:0", ">50K"),
        ("b", "req-1:0", ">50K"),
        ("a", "req-2:0", ">50K"),
        ("b", "req-2:0", "<=50K"),
    ]
    for name, record_id, label in answers:
        glassbox("queue", "label", record_id, "--label", label, "--api-key", keys[name])
    tie = glassbox("queue", "label", "req-2:0", "--label", "<=50K", "--api-key", keys["b"]).stdout
    assert tie.strip() == "req-2:0: pending"
    refused = glassbox("queue", "label", "req-3:0", "--label", "rich", "--api-key", keys["a"], check=False)
    assert refused.returncode == 2 and "not one of this record's classes" in refused.stderr
    assert "missing API key" in glassbox("queue", "label", "req-3:0", "--discard", check=False).stderr

    text = glassbox("queue", "list", "--status", "completed").stdout
    assert "req-1:0" in text and "final=>50K" in text
    report = json.loads(glassbox("queue", "agreement", "--json").stdout)
    assert report["pairable_units"] == 2 and report["annotators"]["a"] == {
        "compared": 1,
        "agreed": 1,
        "rate": 1.0,
    }
    assert "Krippendorff's alpha (nominal):" in glassbox("queue", "agreement").stdout
    glassbox("queue", "users", "remove", "b")
    assert "unknown API key" in glassbox("queue", "label", "req-3:0", "--discard", "--api-key", keys["b"],
                                         check=False).stderr  # fmt: skip
