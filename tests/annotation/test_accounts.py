"""Self-service and user management against the real service (both stores): key rotation, signing
out everywhere, role changes and deactivation through the API, the page's forms and the CLI."""

from __future__ import annotations

import threading

import pytest
import requests

from glassbox.annotation.auth import hash_key
from glassbox.errors import Conflict

from .test_cli import NOT_OPENED, glassbox, refused  # noqa: F401 - fixtures

MANAGE_ROUTES = [
    ("PATCH", "/api/v1/users/ann", {"role": "admin"}),
    ("PATCH", "/api/v1/users/ann", {"active": False}),
]
SELF_ROUTES = [("GET", "/api/v1/me"), ("POST", "/api/v1/me/key"), ("POST", "/api/v1/me/sign-out-everywhere")]


@pytest.fixture
def queue(start_queue):
    return start_queue()


def page_session(queue, key: str) -> requests.Session:
    """A browser-like session signed in to the review page with ``key``."""
    session = requests.Session()
    answer = session.post(f"{queue.url}/review/login", data={"api_key": key}, timeout=30)
    assert answer.status_code == 200 and 'id="rotate-key"' not in answer.text
    assert signed_in(queue, session)
    return session


def signed_in(queue, session: requests.Session) -> bool:
    """Whether the session still opens the account page (the login form answers otherwise)."""
    text = session.get(f"{queue.url}/review/account", timeout=30).text
    assert ('id="rotate-key"' in text) != ('id="api_key"' in text), text[:300]
    return 'id="rotate-key"' in text


def test_self_service_needs_a_valid_key(queue) -> None:
    for method, path in SELF_ROUTES:
        assert queue.call(method, path, key="").status_code == 401, path
        assert queue.call(method, path, key="gbq_wrong").status_code == 401, path


def test_every_role_rotates_its_own_key_and_the_old_one_fails_at_once(queue, database) -> None:
    keys = {
        "owner": queue.owner_key,
        "ada": queue.add_user("ada", "admin"),
        "ann": queue.add_user("ann", "annotator"),
    }
    for name, key in keys.items():
        assert queue.call("GET", "/api/v1/me", key=key).json()["name"] == name
        rotated = queue.call("POST", "/api/v1/me/key", key=key)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["api_key"]
        assert rotated.json()["name"] == name and new.startswith("gbq_") and new != key
        denied = queue.call("GET", "/api/v1/me", key=key)
        assert denied.status_code == 401 and "unknown API key" in denied.json()["error"]
        assert queue.call("GET", "/api/v1/me", key=new).json()["name"] == name
        keys[name] = new
    # Only hashes are stored: the new keys are not in the table, their hashes are.
    from glassbox.annotation.store import open_store

    store = open_store(*database)
    try:
        with store.transaction() as cur:
            stored = {row["key_hash"] for row in cur.execute("SELECT key_hash FROM users").fetchall()}
    finally:
        store.close()
    assert stored == {hash_key(key) for key in keys.values()}
    # The rotated owner key still manages users; the rotated annotator's key still answers.
    assert queue.call("GET", "/api/v1/users", key=keys["owner"]).status_code == 200
    assert queue.call("GET", "/api/v1/records", key=keys["ann"]).status_code == 200


def test_only_owners_change_roles_and_deactivate(queue) -> None:
    ann = queue.add_user("ann", "annotator")
    ada = queue.add_user("ada", "admin")
    for method, path, body in MANAGE_ROUTES:
        assert queue.call(method, path, key="", json=body).status_code == 401
        assert queue.call(method, path, key="gbq_wrong", json=body).status_code == 401
        for key, role in ((ann, "annotator"), (ada, "admin")):
            answer = queue.call(method, path, key=key, json=body)
            assert answer.status_code == 403 and f"is {role}; this needs owner" in answer.json()["error"]
    users = {u["name"]: u for u in queue.call("GET", "/api/v1/users").json()["users"]}
    assert users["ann"]["role"] == "annotator" and users["ann"]["active"] is True  # nothing changed

    # Bad input is a 4xx naming the problem; an unknown user is 404.
    for body, status, words in [
        ({"role": "boss"}, 400, "unknown role"),
        ({"active": "no"}, 400, '"active" must be true or false'),
        ({"name": "x"}, 400, 'body must set "role"'),
        ({}, 400, 'body must set "role"'),
        ([], 400, 'body must set "role"'),
    ]:
        answer = queue.call("PATCH", "/api/v1/users/ann", json=body)
        assert answer.status_code == status and words in answer.json()["error"], (body, answer.text)
    assert queue.call("PATCH", "/api/v1/users/nobody", json={"role": "admin"}).status_code == 404

    # Promotion applies at the next request: ann the admin reaches admin routes, then annotator again.
    promoted = queue.call("PATCH", "/api/v1/users/ann", json={"role": "admin"})
    assert promoted.status_code == 200
    assert {k: promoted.json()[k] for k in ("name", "role", "active")} == {
        "name": "ann",
        "role": "admin",
        "active": True,
    }
    assert queue.call("GET", "/api/v1/settings", key=ann).status_code == 200
    queue.call("PATCH", "/api/v1/users/ann", json={"role": "annotator"})
    assert queue.call("GET", "/api/v1/settings", key=ann).status_code == 403


def test_the_last_active_owner_stays_an_owner(queue) -> None:
    for body in ({"role": "admin"}, {"role": "annotator"}):
        answer = queue.call("PATCH", "/api/v1/users/owner", json=body)
        assert answer.status_code == 409 and "last active owner" in answer.json()["error"]
    answer = queue.call("PATCH", "/api/v1/users/owner", json={"active": False})
    assert answer.status_code == 400 and "cannot deactivate themself" in answer.json()["error"]
    # With a second owner, one may step down; then the other is the last and cannot be deactivated.
    olga = queue.add_user("olga", "owner")
    assert queue.call("PATCH", "/api/v1/users/owner", json={"role": "admin"}).status_code == 200
    denied = queue.call("PATCH", "/api/v1/users/olga", json={"active": False}, key=olga)
    assert denied.status_code == 400
    assert queue.call("PATCH", "/api/v1/users/olga", json={"role": "admin"}, key=olga).status_code == 409
    # The former owner is an admin now: user management is refused to them.
    assert queue.call("GET", "/api/v1/users").status_code == 403
    users = {u["name"]: u["role"] for u in queue.call("GET", "/api/v1/users", key=olga).json()["users"]}
    assert users == {"owner": "admin", "olga": "owner"}


def test_a_deactivated_user_is_refused_at_once_key_and_sessions(queue) -> None:
    ann = queue.add_user("ann", "annotator")
    page = page_session(queue, ann)
    assert queue.call("GET", "/api/v1/records", key=ann).status_code == 200
    done = queue.call("PATCH", "/api/v1/users/ann", json={"active": False})
    assert done.status_code == 200 and done.json()["active"] is False
    denied = queue.call("GET", "/api/v1/records", key=ann)
    assert denied.status_code == 401 and "'ann' is deactivated" in denied.json()["error"]
    assert not signed_in(queue, page)
    again = requests.post(f"{queue.url}/review/login", data={"api_key": ann}, timeout=30)
    assert again.status_code == 401 and "deactivated" in again.text
    listed = {u["name"]: u["active"] for u in queue.call("GET", "/api/v1/users").json()["users"]}
    assert listed == {"owner": True, "ann": False}
    # An owner can reactivate: the same key works again, the old session does not come back.
    assert queue.call("PATCH", "/api/v1/users/ann", json={"active": True}).json()["active"] is True
    assert queue.call("GET", "/api/v1/records", key=ann).status_code == 200
    assert not signed_in(queue, page)


def test_sign_out_everywhere_ends_every_session_of_that_user_only(queue) -> None:
    ann = queue.add_user("ann", "annotator")
    bob = queue.add_user("bob", "annotator")
    laptop, phone, bobs = page_session(queue, ann), page_session(queue, ann), page_session(queue, bob)
    answer = laptop.post(f"{queue.url}/review/account/sign-out-everywhere", timeout=30)
    assert answer.status_code == 200 and 'id="api_key"' in answer.text  # back at the login form
    assert not signed_in(queue, laptop) and not signed_in(queue, phone)
    assert signed_in(queue, bobs)
    # The key is not a session: it still works, and signs in anew.
    assert queue.call("GET", "/api/v1/records", key=ann).status_code == 200
    fresh = page_session(queue, ann)
    assert queue.call("POST", "/api/v1/me/sign-out-everywhere", key=ann).status_code == 204
    assert not signed_in(queue, fresh) and signed_in(queue, bobs)


def test_rotating_on_the_page_shows_the_key_once_and_keeps_the_session(queue) -> None:
    ann = queue.add_user("ann", "annotator")
    page = page_session(queue, ann)
    other = page_session(queue, ann)
    answer = page.post(f"{queue.url}/review/account/key", timeout=30)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    new = answer.text.split('id="new-key" value="', 1)[1].split('"', 1)[0]
    assert new.startswith("gbq_") and new != ann
    assert queue.call("GET", "/api/v1/me", key=ann).status_code == 401
    assert queue.call("GET", "/api/v1/me", key=new).json()["name"] == "ann"
    assert new not in page.get(f"{queue.url}/review/account", timeout=30).text  # shown once
    assert signed_in(queue, page) and signed_in(queue, other)  # a rotation is not a sign-out
    assert all(new not in value for value in page.cookies.values())  # nor in the cookie


def test_owner_manages_users_from_the_page(queue) -> None:
    ann = queue.add_user("ann", "annotator")
    ada = queue.add_user("ada", "admin")
    owner = page_session(queue, queue.owner_key)
    text = owner.get(f"{queue.url}/review/account", timeout=30).text
    assert 'id="users"' in text and 'data-user="ann"' in text
    changed = owner.post(f"{queue.url}/review/account/users/ann", data={"action": "role", "role": "admin"})
    assert "Saved: ann is now admin." in changed.text
    assert queue.call("GET", "/api/v1/settings", key=ann).status_code == 200
    bad = owner.post(f"{queue.url}/review/account/users/ann", data={"action": "role", "role": "boss"})
    assert "Not changed: unknown role" in bad.text
    gone = owner.post(f"{queue.url}/review/account/users/ann", data={"action": "deactivate"})
    assert "Saved: ann is deactivated." in gone.text
    assert queue.call("GET", "/api/v1/settings", key=ann).status_code == 401
    # An admin's account page has no user list, and its forms are refused with 403.
    admin = page_session(queue, ada)
    assert 'id="users"' not in admin.get(f"{queue.url}/review/account", timeout=30).text
    forbidden = admin.post(f"{queue.url}/review/account/users/owner", data={"action": "deactivate"})
    assert forbidden.status_code == 403 and "needs owner" in forbidden.text
    # Signed out, a form does nothing.
    anonymous = requests.post(f"{queue.url}/review/account/users/ada", data={"action": "deactivate"})
    assert anonymous.status_code == 200 and 'id="api_key"' in anonymous.text
    assert queue.call("GET", "/api/v1/settings", key=ada).status_code == 200


def test_cli_changes_roles_and_deactivates_through_the_service(queue, glassbox, refused) -> None:  # noqa: F811
    service = {"GLASSBOX_QUEUE_DATABASE_URL": NOT_OPENED, "GLASSBOX_QUEUE_URL": queue.url}
    owner = {**service, "GLASSBOX_QUEUE_API_KEY": queue.owner_key}
    ann = queue.add_user("ann", "annotator")
    annotator = {**service, "GLASSBOX_QUEUE_API_KEY": ann}
    assert glassbox(owner, "queue", "users", "role", "ann", "admin").stdout.strip() == "ann is now admin"
    assert queue.call("GET", "/api/v1/settings", key=ann).status_code == 200
    message = refused(annotator, "queue", "users", "role", "ann", "owner")
    assert "answered 403" in message and "this needs owner" in message
    assert "answered 409" in refused(owner, "queue", "users", "role", "owner", "admin")
    assert "answered 404" in refused(owner, "queue", "users", "deactivate", "nobody")
    with pytest.raises(SystemExit) as usage:  # argparse refuses an unknown role before any request
        glassbox(owner, "queue", "users", "role", "ann", "boss")
    assert usage.value.code == 2
    assert glassbox(owner, "queue", "users", "deactivate", "ann").stdout.strip() == "deactivated ann"
    assert "ann                      admin (deactivated)" in glassbox(owner, "queue", "users", "list").stdout
    assert "answered 401" in refused(annotator, "queue", "list")
    key_flag = refused(service, "queue", "users", "deactivate", "owner", "--api-key", ann)
    assert "answered 401" in key_flag and "deactivated" in key_flag


def test_two_owners_demoting_each_other_at_once_leave_one_owner(store) -> None:
    store.create_user("olga", "owner", "h1")
    store.create_user("oscar", "owner", "h2")
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def demote(name: str) -> None:
        start.wait()
        try:
            store.update_user(name, role="admin")
            outcomes.append("done")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=demote, args=(name,)) for name in ("olga", "oscar")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict", "done"]
    assert store.count_role("owner") == 1
    demoted = "olga" if store.user_by_name("olga")["role"] == "admin" else "oscar"
    assert store.user_by_name(demoted)["session_generation"] == 0
    assert store.update_user(demoted, active=False)["active"] is False
    assert store.user_by_name(demoted)["session_generation"] == 1  # deactivation ends the sessions
    assert store.user_by_key_hash({"olga": "h1", "oscar": "h2"}[demoted]) == {
        "name": demoted,
        "role": "admin",
        "active": False,
    }
