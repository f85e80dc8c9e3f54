"""The store interface on both databases (SQLite file, real PostgreSQL in its own schema)."""

from __future__ import annotations

import pytest

from glassbox.annotation.records import RecordIn
from glassbox.annotation.store import Store, open_store
from glassbox.annotation.store.migrations import MIGRATIONS
from glassbox.errors import Conflict, InvalidInput, NotFound


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
    assert store.user_by_key_hash("h1") == {"name": "ann", "role": "annotator"}
    assert store.count_role("owner") == 0
    store.put_setting("min_submitted", "3")
    store.put_setting("min_submitted", "2")
    assert store.get_settings() == {"min_submitted": "2"}
    store.delete_user("ann")
    assert store.user_by_key_hash("h1") is None
