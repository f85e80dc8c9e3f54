"""Users, roles and keys through the real service: no key 401, wrong role 403."""

from __future__ import annotations

import pytest

ANNOTATOR_ROUTES = [("GET", "/api/v1/records"), ("GET", "/api/v1/records/next"), ("GET", "/api/v1/agreement")]
ADMIN_ROUTES = [("POST", "/api/v1/records/bulk"), ("GET", "/api/v1/settings"), ("GET", "/api/v1/export")]
OWNER_ROUTES = [("GET", "/api/v1/users"), ("POST", "/api/v1/users")]


@pytest.fixture
def queue(start_queue):
    return start_queue()


def test_no_key_or_unknown_key_is_401(queue) -> None:
    for method, path in ANNOTATOR_ROUTES + ADMIN_ROUTES + OWNER_ROUTES:
        missing = queue.call(method, path, key="", json={})
        assert missing.status_code == 401, (method, path, missing.text)
        assert "X-API-Key" in missing.json()["error"]
        assert queue.call(method, path, key="gbq_wrong", json={}).status_code == 401


def test_each_role_reaches_its_routes_only(queue, queue_record) -> None:
    admin = queue.add_user("ada", "admin")
    annotator = queue.add_user("ann", "annotator")
    for method, path in ADMIN_ROUTES + OWNER_ROUTES:
        refused = queue.call(method, path, key=annotator, json={"records": []})
        assert refused.status_code == 403, (method, path)
        assert "ann" in refused.json()["error"] and "annotator" in refused.json()["error"]
    for method, path in OWNER_ROUTES:
        assert queue.call(method, path, key=admin, json={"name": "x"}).status_code == 403
    body = {"records": [queue_record(1)]}
    assert queue.call("POST", "/api/v1/records/bulk", key=admin, json=body).json()["created"] == 1
    for method, path in ANNOTATOR_ROUTES:
        assert queue.call(method, path, key=annotator).status_code == 200, path
    answered = queue.call("POST", "/api/v1/records/req-1:0/responses", key=annotator, json={"label": ">50K"})
    assert answered.json()["status"] == "completed"
    # Annotators read and answer; only admins change a record's status.
    patch = queue.call("PATCH", "/api/v1/records/req-1:0", key=annotator, json={"status": "pending"})
    assert patch.status_code == 403
    patch = queue.call("PATCH", "/api/v1/records/req-1:0", key=admin, json={"status": "pending"})
    assert patch.status_code == 200 and patch.json()["status"] == "pending"


def test_owner_manages_users_and_keys_are_stored_hashed(queue, database) -> None:
    created = queue.call("POST", "/api/v1/users", json={"name": "bea", "role": "admin"})
    assert created.status_code == 201
    key = created.json()["api_key"]
    assert queue.call("GET", "/api/v1/settings", key=key).status_code == 200
    users = queue.call("GET", "/api/v1/users").json()["users"]
    assert {(u["name"], u["role"]) for u in users} == {("owner", "owner"), ("bea", "admin")}
    assert all("key" not in field for u in users for field in u)
    from glassbox.annotation.auth import hash_key
    from glassbox.annotation.store import open_store

    store = open_store(*database)
    try:
        assert store.user_by_key_hash(hash_key(key))["name"] == "bea"
        with store.transaction() as cur:
            stored = [row["key_hash"] for row in cur.execute("SELECT key_hash FROM users").fetchall()]
        assert key not in stored and hash_key(key) in stored
    finally:
        store.close()
    assert queue.call("POST", "/api/v1/users", json={"name": "bea"}).status_code == 409
    assert queue.call("POST", "/api/v1/users", json={"name": "cy", "role": "boss"}).status_code == 400
    assert queue.call("DELETE", "/api/v1/users/bea").status_code == 204
    assert queue.call("GET", "/api/v1/settings", key=key).status_code == 401


def test_bad_review_inputs_are_4xx(queue, queue_record) -> None:
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(1)]})
    respond = "/api/v1/records/req-1:0/responses"
    cases = [
        ({"label": ">50K", "discard": True}, 400, "exactly one"),
        ({}, 400, "exactly one"),
        ({"label": "rich"}, 400, "not one of this record's classes"),
        ({"label": ">50K", "note": 5}, 400, "note"),
    ]
    for body, status, words in cases:
        answer = queue.call("POST", respond, json=body)
        assert answer.status_code == status and words in answer.json()["error"], (body, answer.text)
    assert queue.call("POST", "/api/v1/records/nope/responses", json={"label": ">50K"}).status_code == 404
    assert queue.call("GET", "/api/v1/records?status=done").status_code == 400
    assert queue.call("GET", "/api/v1/records?certainty_min=high").status_code == 400
    assert queue.call("GET", "/api/v1/records?colour=red").status_code == 400
    assert queue.call("PUT", "/api/v1/settings", json={"min_submitted": 0}).status_code == 400
    assert queue.call("GET", "/api/v1/export?format=xml").status_code == 400
