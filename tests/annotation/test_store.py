"""The store interface on both databases (SQLite file, real PostgreSQL in its own schema)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glassbox.annotation.records import RecordIn
from glassbox.annotation.store import Store, open_store
from glassbox.annotation.store.migrations import MIGRATIONS
from glassbox.errors import Conflict, InvalidInput, NotFound

from .feedback_support import wait_for


@pytest.fixture
def records(queue_record):
    """``records(*indexes, **overrides)``: validated toy records."""

    def make(*indexes: int, **overrides) -> list[RecordIn]:
        return [RecordIn.model_validate(queue_record(i, **overrides)) for i in indexes]

    return make


def test_migrations_are_versioned_and_applied_once(store: Store, database: tuple[str, str]) -> None:
    assert store.schema_version() == MIGRATIONS[-1].version
    again = open_store(*database)  # a second process starting on the same database
    try:
        assert again.migrate() == []
        assert again.schema_version() == MIGRATIONS[-1].version
    finally:
        again.close()


def test_insert_is_idempotent_and_never_touches_responses(store: Store, records) -> None:
    assert store.insert_records(records(1, 2, 3)) == {"req-1:0", "req-2:0", "req-3:0"}
    store.add_response("req-1:0", "ann", kind="label", label=">50K", note="", min_submitted=2)
    changed = records(1, 4, predicted_label=">50K")
    assert store.insert_records(changed) == {"req-4:0"}
    kept = store.get_record("req-1:0")
    assert kept["predicted_label"] == "<=50K"  # the first copy wins
    assert [r["label"] for r in kept["responses"]] == [">50K"]
    assert store.list_records()[1] == 4


def test_filters_and_sorts(store: Store, records) -> None:
    store.insert_records(records(10, 30, 5))
    store.insert_records(records(7, source="training-audit", metadata={"loss": 0.5}, model_version="v2"))
    store.insert_records(records(8, source="training-audit", metadata={"loss": 2.5}, model_version="v2"))
    ids = lambda page: [r["id"] for r in page[0]]  # noqa: E731
    assert ids(store.list_records(sort="least_certain")) == [
        "req-5:0",
        "req-7:0",
        "req-8:0",
        "req-10:0",
        "req-30:0",
    ]
    assert ids(store.list_records(sort="highest_loss"))[:2] == ["req-8:0", "req-7:0"]
    assert ids(store.list_records(source="training-audit", model_version="v2")) == ["req-7:0", "req-8:0"]
    assert ids(store.list_records(certainty_min=0.57, certainty_max=0.7)) == [
        "req-7:0",
        "req-8:0",
        "req-10:0",
    ]
    assert store.list_records(predicted_label=">50K")[1] == 0
    assert ids(store.list_records(sort="newest", limit=2))[0] in {"req-7:0", "req-8:0"}
    with pytest.raises(InvalidInput, match="unknown sort"):
        store.list_records(sort="random")


def test_majority_completes_and_a_tie_stays_pending(store: Store, records) -> None:
    store.insert_records(records(1))
    first = store.add_response("req-1:0", "a", kind="label", label=">50K", note="", min_submitted=2)
    assert first["status"] == "pending"
    tie = store.add_response("req-1:0", "b", kind="label", label="<=50K", note="", min_submitted=2)
    assert tie["status"] == "pending"
    done = store.add_response("req-1:0", "c", kind="label", label=">50K", note="sure", min_submitted=2)
    assert done["completed"] and done["final_label"] == ">50K" and done["time_to_label"] >= 0
    assert store.get_record("req-1:0")["status"] == "completed"
    with pytest.raises(Conflict, match="already completed"):
        store.add_response("req-1:0", "d", kind="label", label=">50K", note="", min_submitted=2)


def test_majority_discard_discards_without_a_label(store: Store, records) -> None:
    store.insert_records(records(1))
    outcome = store.add_response("req-1:0", "a", kind="discard", label=None, note="garbled", min_submitted=1)
    assert outcome == {**outcome, "status": "discarded", "final_label": None}


def test_bad_answers_are_4xx_errors(store: Store, records) -> None:
    store.insert_records(records(1))
    with pytest.raises(InvalidInput, match="not one of this record's classes"):
        store.add_response("req-1:0", "a", kind="label", label="rich", note="", min_submitted=1)
    with pytest.raises(NotFound):
        store.add_response("nope", "a", kind="label", label=">50K", note="", min_submitted=1)


def test_next_for_skips_what_the_user_answered(store: Store, records) -> None:
    store.insert_records(records(3, 1, 2))
    record, left = store.next_for("a")
    assert (record["id"], left) == ("req-1:0", 3)
    store.add_response("req-1:0", "a", kind="label", label=">50K", note="", min_submitted=2)
    record, left = store.next_for("a")
    assert (record["id"], left) == ("req-2:0", 2)
    assert store.next_for("b")[0]["id"] == "req-1:0"  # still pending: b has not answered it


def test_reviewed_iteration_pages_through_everything(store: Store, records) -> None:
    store.insert_records(records(*range(25)))
    for i in range(0, 25, 2):
        store.add_response(f"req-{i}:0", "a", kind="label", label=">50K", note="", min_submitted=1)
    reviewed = list(store.iter_reviewed(("completed",), page=4))
    assert len(reviewed) == 13 and len({r["id"] for r in reviewed}) == 13
    assert all(r["responses"][0]["label"] == ">50K" for r in reviewed)


def test_users_and_settings(store: Store) -> None:
    store.create_user("ann", "annotator", "h1")
    with pytest.raises(Conflict):
        store.create_user("ann", "admin", "h2")
    assert store.user_by_key_hash("h1") == {"name": "ann", "role": "annotator", "active": True}
    assert store.count_role("owner") == 0
    store.put_setting("min_submitted", "3")
    store.put_setting("min_submitted", "2")
    assert store.get_settings() == {"min_submitted": "2"}
    store.delete_user("ann")
    assert store.user_by_key_hash("h1") is None


# -- one placeholder style: nothing in a statement or a value is rewritten ----------------------

AWKWARD = "what? 100% sure %s %(x)s $1 ?? '; --"


def test_question_marks_and_percents_in_values_round_trip(store: Store, records) -> None:
    odd = records(1, id=f"r?%:{AWKWARD}", model_version=AWKWARD, decoded={"Workclass": AWKWARD})
    assert store.insert_records(odd) == {f"r?%:{AWKWARD}"}
    page, total = store.list_records(model_version=AWKWARD)
    assert total == 1 and page[0]["decoded"] == {"Workclass": AWKWARD}
    done = store.add_response(
        f"r?%:{AWKWARD}", "a?%", kind="label", label=">50K", note=AWKWARD, min_submitted=1
    )
    assert done["completed"]
    assert store.get_record(f"r?%:{AWKWARD}")["responses"][0]["note"] == AWKWARD
    with store.transaction() as cur:  # a literal ? and % in the statement itself, beside a parameter
        row = cur.execute(
            "SELECT '?%' AS lit, model_version FROM records WHERE id = $1", (odd[0].id,)
        ).fetchone()
    assert row == {"lit": "?%", "model_version": AWKWARD}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1))
def test_any_text_is_stored_as_given(store: Store, records, text: str) -> None:
    record_id = f"hyp:{uuid.uuid4().hex}"
    store.insert_records(records(1, id=record_id, model_version=text))
    assert store.get_record(record_id)["model_version"] == text
    assert record_id in {r["id"] for r in store.list_records(model_version=text, limit=1000)[0]}


# -- the feedback outbox: claims, leases, back-off, dead rows ---------------------------------


def owe_feedback(store: Store, records, *indexes: int) -> list[str]:
    """Insert prediction records and complete each: every one then owes the model its feedback."""
    store.insert_records(records(*indexes))
    ids = [f"req-{i}:0" for i in indexes]
    for record_id in ids:
        store.add_response(record_id, "ann", kind="label", label=">50K", note="", min_submitted=1)
    return ids


def test_completion_puts_a_prediction_in_the_outbox_once(store: Store, records) -> None:
    store.insert_records(records(1) + records(2, source="training-audit"))
    store.add_response("req-1:0", "a", kind="label", label=">50K", note="", min_submitted=1)
    store.add_response("req-2:0", "a", kind="label", label=">50K", note="", min_submitted=1)
    assert store.feedback_counts() == {"pending": 1, "sent": 0, "dead": 0}  # the audit record owes none
    [claimed] = store.claim_feedback(10, lease_seconds=60, max_attempts=3)
    assert (claimed["id"], claimed["feedback_attempts"]) == ("req-1:0", 1)
    assert store.claim_feedback(10, lease_seconds=60, max_attempts=3) == []  # leased: nobody else takes it
    assert store.finish_feedback(claimed) == "sent"
    assert store.finish_feedback(claimed) is None  # an outcome is recorded once
    record = store.get_record("req-1:0")
    assert (
        record["feedback_state"] == "sent" and record["feedback_sent_at"] and record["feedback_error"] is None
    )
    assert store.feedback_counts() == {"pending": 0, "sent": 1, "dead": 0}


def test_reopening_a_record_withdraws_unsent_feedback(store: Store, records) -> None:
    owe_feedback(store, records, 1, 2)
    store.set_status("req-1:0", "pending")
    store.set_status("req-2:0", "discarded")
    assert store.feedback_counts()["pending"] == 0
    assert store.claim_feedback(10, 60, 3) == []
    store.add_response("req-1:0", "b", kind="label", label=">50K", note="", min_submitted=2)  # settled again
    assert [r["id"] for r in store.claim_feedback(10, 60, 3)] == ["req-1:0"]


def test_a_failed_attempt_backs_off_and_the_cap_makes_it_dead(store: Store, records) -> None:
    owe_feedback(store, records, 1)
    [first] = store.claim_feedback(10, 60, max_attempts=2)
    assert store.finish_feedback(first, error="model answered 503", retry_at=time.time() + 0.3) == "pending"
    assert store.claim_feedback(10, 60, max_attempts=2) == []  # backing off
    [second] = wait_for(lambda: store.claim_feedback(10, 60, max_attempts=2), timeout=10, every=0.05)
    assert second["feedback_attempts"] == 2 and second["feedback_error"] == "model answered 503"
    assert store.finish_feedback(second, error="model answered 400: bad truth") == "dead"
    assert store.claim_feedback(10, 60, max_attempts=2) == []
    dead, total = store.list_records(feedback_state="dead")
    assert total == 1 and dead[0]["feedback_error"] == "model answered 400: bad truth"
    assert store.feedback_counts() == {"pending": 0, "sent": 0, "dead": 1}


def test_a_lapsed_lease_is_claimed_again_and_a_sender_that_always_dies_ends_dead(
    store: Store, records, database: tuple[str, str]
) -> None:
    owe_feedback(store, records, 1)
    other = open_store(*database, migrate=False)  # another replica
    try:
        [mine] = store.claim_feedback(10, lease_seconds=0.3, max_attempts=2)
        [theirs] = wait_for(lambda: other.claim_feedback(10, 60, max_attempts=2), timeout=10, every=0.05)
        assert theirs["feedback_attempts"] == 2
        assert store.finish_feedback(mine) is None  # the first sender's claim had lapsed: no effect
        other.release_feedback([theirs])  # handed back unattempted: due now, the attempt uncounted
        [again] = store.claim_feedback(10, lease_seconds=0.3, max_attempts=2)
        assert again["feedback_attempts"] == 2
        # This sender dies too; after its lease the row has had every attempt and goes dead.
        wait_for(
            lambda: other.claim_feedback(10, 60, 2) == [] and other.feedback_counts()["dead"] == 1, 10, 0.05
        )
        assert "claimed 2 times without an outcome" in store.get_record("req-1:0")["feedback_error"]
    finally:
        other.close()


def test_concurrent_claimers_never_share_a_row(store: Store, records, database: tuple[str, str]) -> None:
    ids = owe_feedback(store, records, *range(120))
    claimers = [open_store(*database, migrate=False) for _ in range(4)]  # four replicas
    together = threading.Barrier(len(claimers))

    def claim(k: int) -> list[str]:
        together.wait(30)  # the four claims of a round start at once
        return [row["id"] for row in claimers[k].claim_feedback(7, 60, 3)]

    taken: list[list[str]] = [[] for _ in claimers]
    try:
        with ThreadPoolExecutor(len(claimers)) as pool:
            while any(batches := list(pool.map(claim, range(len(claimers))))):
                for k, batch in enumerate(batches):
                    taken[k] += batch
    finally:
        for claimer in claimers:
            claimer.close()
    flat = [record_id for part in taken for record_id in part]
    assert sorted(flat) == sorted(ids)  # every row claimed, none twice
    assert all(taken), [len(part) for part in taken]  # and every claimer took some, side by side


def test_the_outbox_migration_keeps_what_was_sent_and_owes_what_was_not(
    database: tuple[str, str], records, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glassbox.annotation.store import base

    monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS[:2])  # a database from before the outbox
    old = open_store(*database)
    try:
        old.insert_records(records(1, 2, 3))
        with old.transaction(write=True) as cur:
            cur.execute("UPDATE records SET status = 'completed', final_label = '>50K', completed_at = 1")
            cur.execute("UPDATE records SET feedback_sent_at = 2, feedback_attempts = 1 WHERE id = 'req-1:0'")
            cur.execute("UPDATE records SET source = 'training-audit' WHERE id = 'req-3:0'")
        monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS)
        assert old.migrate() == [m.version for m in MIGRATIONS[2:]]  # the outbox's, and any later
        assert old.feedback_counts() == {"pending": 1, "sent": 1, "dead": 0}
        assert [r["id"] for r in old.claim_feedback(10, 60, 3)] == ["req-2:0"]
    finally:
        old.close()
