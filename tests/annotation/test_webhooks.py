"""Webhooks: owners register HTTPS or loopback URLs; events leave a durable outbox signed, retried with
back-off, capped, and arrive at a real receiving server once each, also after it was down a while."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from glassbox.annotation.records import RecordIn
from glassbox.annotation.store.webhooks import WebhookTables
from glassbox.annotation.webhooks import EVENTS, URL_RULE, check_url, signature
from glassbox.errors import InvalidInput
from glassbox.stack.process import LOOPBACK, free_port

from .feedback_support import wait_for
from .test_cli import shell

# Fast retries so a test sees several attempts in about a second.
FAST = {
    "GLASSBOX_QUEUE_WEBHOOK_BACKOFF_SECONDS": "0.2",
    "GLASSBOX_QUEUE_WEBHOOK_BACKOFF_MAX_SECONDS": "0.4",
    "GLASSBOX_QUEUE_WEBHOOK_SWEEP_SECONDS": "0.2",
    "GLASSBOX_QUEUE_WEBHOOK_TIMEOUT": "2",
    "GLASSBOX_QUEUE_WEBHOOK_LEASE_SECONDS": "10",
}


def verify(secret: str, body: bytes, header: str) -> bool:
    """The receiver's check, as docs/annotation.md ("Webhooks") shows it."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class Receiver:
    """A real HTTP server on a loopback port: checks each delivery's signature, answers ``status``."""

    def __init__(self, port: int | None = None, status: int = 200):
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/hook"
        self.status = status
        self.secret = ""
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.received.append(
                        {
                            "headers": dict(self.headers),
                            "event": json.loads(body),
                            "signed": verify(receiver.secret, body, self.headers["X-Glassbox-Signature"]),
                        }
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server: ThreadingHTTPServer | None = None
        self._handler = Handler

    def start(self) -> Receiver:
        self._server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def at_least(self, n: int) -> list[dict[str, Any]] | None:
        """The deliveries received, once there are ``n`` or more."""
        got = self.events()
        return got if len(got) >= n else None

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def make(port: int | None = None, status: int = 200, start: bool = True) -> Receiver:
        receiver = Receiver(port, status)
        started.append(receiver)
        return receiver.start() if start else receiver

    yield make
    for receiver in started:
        receiver.stop()


def metric_values(url: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


# -- the URL rule and the signature --------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/glassbox", "HTTPS://example.com:8443/x?y=1", "http://127.0.0.1:9000/h",
     "http://127.5.6.7/", "http://[::1]:8080/hook", "http://localhost:3000/hook"],
)  # fmt: skip
def test_https_and_loopback_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    ["http://example.com/hook", "http://10.0.0.1/hook", "http://127.0.0.1.evil.example/", "ftp://127.0.0.1/",
     "javascript:alert(1)", "https://", "127.0.0.1:8000/hook", "http://127.0.0.1:99999/", "", " https://a.b/"],
)  # fmt: skip
def test_other_urls_are_refused_naming_the_rule(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_url(url)
    assert refused.value.status_code == 400
    assert URL_RULE in refused.value.message


@given(st.text(max_size=80) | st.from_regex(r"\Ahttps?://[a-z0-9.\[\]:]{0,30}(/[a-z]*)?\Z"))
def test_url_rule_accepts_only_https_or_loopback_and_never_crashes(url: str) -> None:
    try:
        accepted = check_url(url)
    except InvalidInput:
        return
    parts = urlsplit(accepted)
    host = parts.hostname or ""
    assert parts.scheme.lower() == "https" or host == "localhost" or ipaddress.ip_address(host).is_loopback


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":"evt_1","type":"record.created"}'
    assert signature("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify("s3cret", body, signature("s3cret", body))
    assert not verify("other", body, signature("s3cret", body))


# -- the outbox in the store ---------------------------------------------------------------------
def test_events_are_written_with_their_change_and_only_then(store, queue_record) -> None:
    tables = WebhookTables(store)
    hook = tables.create("https://example.com/h", ["record.created", "record.completed"], "s", "owner")
    assert store.insert_records([RecordIn.model_validate(queue_record(i)) for i in (1, 2)]) == {
        "req-1:0",
        "req-2:0",
    }
    store.insert_records([RecordIn.model_validate(queue_record(1))])  # already there: no new event
    with pytest.raises(InvalidInput):  # the response's transaction rolls back: so does its event
        store.add_response("req-1:0", "ann", kind="label", label="nope", note="", min_submitted=1)
    store.add_response("req-1:0", "ann", kind="label", label=">50K", note="", min_submitted=1)
    shown = tables.get(hook["id"], 50)
    assert sorted(d["event"] for d in shown["deliveries"]) == ["record.completed"] + ["record.created"] * 2
    assert shown["counts"] == {"pending": 3, "delivered": 0, "dead": 0}


def test_a_claim_whose_sender_died_comes_due_again_then_goes_dead(store, queue_record) -> None:
    tables = WebhookTables(store)
    tables.create("https://example.com/h", list(EVENTS), "s", "owner")
    store.insert_records([RecordIn.model_validate(queue_record(1))])
    first = tables.claim(10, lease_seconds=0.0, max_attempts=2)  # lease 0: as if its sender died at once
    again = tables.claim(10, lease_seconds=0.0, max_attempts=2)
    assert [row["id"] for row in again] == [row["id"] for row in first] and again[0]["attempts"] == 2
    assert tables.claim(10, lease_seconds=0.0, max_attempts=2) == []
    assert tables.counts() == {"pending": 0, "delivered": 0, "dead": 1}
    assert tables.finish(again[0]) is None  # a lapsed claim records nothing


# -- through the real service ------------------------------------------------------------------------
def test_only_owners_manage_webhooks_and_bad_input_is_a_400(start_queue, receivers) -> None:
    queue = start_queue()
    admin, annotator = queue.add_user("ada", "admin"), queue.add_user("ann", "annotator")
    assert queue.call("GET", "/api/v1/webhooks", key="").status_code == 401
    assert (
        queue.call("POST", "/api/v1/webhooks", key="gbq_wrong", json={"url": "https://a.b/"}).status_code
        == 401
    )
    for key in (admin, annotator):
        assert queue.call("GET", "/api/v1/webhooks", key=key).status_code == 403
        assert (
            queue.call("POST", "/api/v1/webhooks", key=key, json={"url": "https://a.b/"}).status_code == 403
        )
    refused = queue.call("POST", "/api/v1/webhooks", json={"url": "http://example.com/hook"})
    assert refused.status_code == 400 and URL_RULE in refused.json()["error"]
    unknown = queue.call("POST", "/api/v1/webhooks", json={"url": "https://a.b/", "events": ["record.eaten"]})
    assert unknown.status_code == 400 and "record.eaten" in unknown.json()["error"]
    assert queue.call("POST", "/api/v1/webhooks", json=["https://a.b/"]).status_code == 400

    created = queue.call(
        "POST", "/api/v1/webhooks", json={"url": "https://a.b/h", "events": ["record.completed"]}
    )
    assert created.status_code == 201
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["record.completed"]
    listed = queue.call("GET", "/api/v1/webhooks").json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    one = queue.call("GET", f"/api/v1/webhooks/{hook['id']}")
    assert one.status_code == 200 and "secret" not in one.json() and one.json()["deliveries"] == []
    for key in (admin, annotator):
        assert queue.call("DELETE", f"/api/v1/webhooks/{hook['id']}", key=key).status_code == 403
    assert queue.call("DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert queue.call("GET", f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert queue.call("DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 404

    # the CLI, through the HTTP API
    env = {"GLASSBOX_QUEUE_URL": queue.url, "GLASSBOX_QUEUE_API_KEY": queue.owner_key}
    added = shell(env, "queue", "webhooks", "add", "https://hooks.example.com/x", "--event", "record.created")
    assert added.returncode == 0, added.stderr
    assert "whsec_" in added.stdout
    hook_id = added.stdout.split()[2]
    listing = shell(env, "queue", "webhooks", "list")
    assert hook_id in listing.stdout and "record.created" in listing.stdout
    bad = shell(env, "queue", "webhooks", "add", "http://example.com/x")
    assert bad.returncode == 2 and "loopback" in bad.stderr
    assert shell(env, "queue", "webhooks", "remove", hook_id).returncode == 0
    assert shell({**env, "GLASSBOX_QUEUE_API_KEY": admin}, "queue", "webhooks", "list").returncode == 2
    assert queue.call("GET", "/api/v1/webhooks").json()["webhooks"] == []


def test_events_arrive_signed_once_each(start_queue, receivers, queue_record) -> None:
    queue = start_queue(GLASSBOX_QUEUE_MIN_SUBMITTED="2", **FAST)
    counts = metric_values(queue.url)  # exported at 0 before any delivery, with help text
    for outcome in ("delivered", "retry", "dead"):
        assert counts[f"glassbox_queue_webhook_deliveries_total{{outcome={outcome}}}"] == 0
    assert counts["glassbox_queue_webhook_outbox{state=pending}"] == 0
    assert (
        "# HELP glassbox_queue_webhook_deliveries_total"
        in requests.get(f"{queue.url}/metrics", timeout=10).text
    )

    receiver = receivers()
    hook = queue.call("POST", "/api/v1/webhooks", json={"url": receiver.url}).json()
    receiver.secret = hook["secret"]
    annotator = queue.add_user("ann", "annotator")
    assert (
        queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1)]}).json()["created"] == 1
    )
    queue.call("POST", "/api/v1/records/req-1:0/responses", json={"label": "<=50K"})
    queue.call("POST", "/api/v1/records/req-1:0/responses", json={"label": ">50K"})  # changes their answer
    done = queue.call("POST", "/api/v1/records/req-1:0/responses", key=annotator, json={"label": ">50K"})
    assert done.json()["status"] == "completed"

    events = wait_for(lambda: receiver.at_least(5), timeout=30)
    assert all(event["signed"] for event in events)
    types = [event["event"]["type"] for event in events]
    assert types == ["record.created", "response.created", "response.updated", "response.created",
                     "record.completed"]  # fmt: skip
    assert len({event["event"]["id"] for event in events}) == 5
    for event in events:
        assert event["headers"]["X-Glassbox-Event-Id"] == event["event"]["id"]
        assert event["headers"]["X-Glassbox-Event"] == event["event"]["type"]
        assert int(event["headers"]["X-Glassbox-Timestamp"]) > 0
    assert events[0]["event"]["data"]["record"]["id"] == "req-1:0"
    assert events[2]["event"]["data"]["response"] == {**events[2]["event"]["data"]["response"],
                                                      "user_name": "owner", "label": ">50K"}  # fmt: skip
    assert events[4]["event"]["data"]["record"]["final_label"] == ">50K"

    shown = wait_for(
        lambda: (
            (h := queue.call("GET", f"/api/v1/webhooks/{hook['id']}").json())["counts"]["delivered"] == 5
            and h
        )
    )
    assert shown["counts"] == {"pending": 0, "delivered": 5, "dead": 0}
    assert {(d["state"], d["attempts"], d["last_status"]) for d in shown["deliveries"]} == {
        ("delivered", 1, 200)
    }
    counts = metric_values(queue.url)
    assert counts["glassbox_queue_webhook_deliveries_total{outcome=delivered}"] == 5
    assert counts["glassbox_queue_webhook_outbox{state=delivered}"] == 5
    assert len(receiver.events()) == 5  # nothing sent twice


def test_a_receiver_down_for_a_while_gets_every_event_once(start_queue, receivers, queue_record) -> None:
    queue = start_queue(GLASSBOX_QUEUE_WEBHOOK_MAX_ATTEMPTS="1000", **FAST)
    receiver = receivers(start=False)  # nothing listens on its port yet
    hook = queue.call(
        "POST", "/api/v1/webhooks", json={"url": receiver.url, "events": ["record.created"]}
    ).json()
    receiver.secret = hook["secret"]
    records = [queue_record(i) for i in range(8)]
    assert queue.call("POST", "/api/v1/records/bulk", json={"records": records}).json()["created"] == 8

    def retried() -> dict | None:
        shown = queue.call("GET", f"/api/v1/webhooks/{hook['id']}").json()
        waiting = shown["counts"]["pending"] == 8 and all(d["attempts"] >= 2 for d in shown["deliveries"])
        return shown if waiting else None

    shown = wait_for(retried, timeout=30)  # every delivery failed at least twice, and waits
    assert all("unreachable" in d["last_error"] for d in shown["deliveries"])
    # each first failure is recorded before its row comes due again (a second claim may be in flight)
    assert metric_values(queue.url)["glassbox_queue_webhook_deliveries_total{outcome=retry}"] >= 8

    receiver.start()
    events = wait_for(lambda: receiver.at_least(8), timeout=30)
    wait_for(lambda: queue.call("GET", f"/api/v1/webhooks/{hook['id']}").json()["counts"]["delivered"] == 8)
    events = receiver.events()
    assert len(events) == 8 and all(event["signed"] for event in events)
    assert {event["event"]["id"] for event in events}.__len__() == 8
    assert sorted(event["event"]["data"]["record"]["id"] for event in events) == sorted(
        r["id"] for r in records
    )


def test_a_4xx_is_dead_at_once_and_a_5xx_after_the_cap(start_queue, receivers, queue_record) -> None:
    queue = start_queue(GLASSBOX_QUEUE_WEBHOOK_MAX_ATTEMPTS="3", **FAST)
    gone, failing = receivers(status=410), receivers(status=500)
    hooks = {}
    for name, receiver in (("gone", gone), ("failing", failing)):
        hooks[name] = queue.call(
            "POST", "/api/v1/webhooks", json={"url": receiver.url, "events": ["record.created"]}
        ).json()
        receiver.secret = hooks[name]["secret"]
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1)]})

    def dead(name: str) -> dict | None:
        shown = queue.call("GET", f"/api/v1/webhooks/{hooks[name]['id']}").json()
        return shown if shown["counts"]["dead"] == 1 else None

    gone_shown, failing_shown = wait_for(lambda: dead("gone"), 30), wait_for(lambda: dead("failing"), 30)
    [refused] = gone_shown["deliveries"]
    assert (refused["attempts"], refused["last_status"]) == (1, 410) and "410" in refused["last_error"]
    [capped] = failing_shown["deliveries"]
    assert (capped["attempts"], capped["last_status"]) == (3, 500)
    assert len(gone.events()) == 1 and len(failing.events()) == 3
    assert len({event["event"]["id"] for event in failing.events()}) == 1  # the same event, retried
    assert all(event["signed"] for event in gone.events() + failing.events())
    counts = metric_values(queue.url)
    assert counts["glassbox_queue_webhook_deliveries_total{outcome=dead}"] == 2
    assert counts["glassbox_queue_webhook_deliveries_total{outcome=retry}"] == 2
    assert counts["glassbox_queue_webhook_outbox{state=dead}"] == 2
