"""The records table as the background explanations' work list, on both databases: states from intake,
claims no two replicas share, lapsed and handed-back claims, failures, and migration 8 over old data."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from glassbox.annotation.records import RecordIn
from glassbox.annotation.store import Store, open_store
from glassbox.annotation.store.migrations import MIGRATIONS

from .feedback_support import wait_for

ANCHOR = {"anchor": ["Sex = Male"], "precision": 0.9, "coverage": 0.1}


@pytest.fixture
def records(queue_record):
    def make(*indexes: int, **overrides) -> list[RecordIn]:
        return [RecordIn.model_validate(queue_record(i, **overrides)) for i in indexes]

    return make


def test_intake_owes_an_explanation_only_to_a_record_without_one(store: Store, records) -> None:
    store.insert_records([*records(1, 2), *records(3, explanation=ANCHOR)], explain=True)
    store.insert_records(records(4))  # no explainer set: nothing owed
    assert [store.get_record(f"req-{i}:0")["explanation_state"] for i in (1, 2, 3, 4)] == [
        "pending", "pending", "done", None
    ]  # fmt: skip
    assert store.explanation_counts() == {"pending": 2, "done": 1, "failed": 0}
    [first] = store.claim_explanations(1, 60, 5)
    assert first["id"] == "req-1:0" and first["explanation_attempts"] == 1
    assert store.finish_explanation(first, explanation=ANCHOR, method="AnchorTabular")
    stored = store.get_record("req-1:0")
    assert stored["explanation"] == ANCHOR and stored["explanation_state"] == "done"
    assert stored["explanation_method"] == "AnchorTabular" and stored["explanation_fetched_at"] > 0
    assert [r["id"] for r in store.claim_explanations(10, 60, 5)] == ["req-2:0"]  # done ones never again
    assert store.claim_explanations(10, 60, 5) == []  # claimed: no one else takes it during the lease


def test_a_failure_is_retried_at_its_time_and_then_for_good(store: Store, records) -> None:
    store.insert_records(records(1), explain=True)
    [claim] = store.claim_explanations(1, 60, 2)
    assert store.finish_explanation(claim, error="explainer answered 503", retry_at=time.time() + 0.3)
    failed = store.get_record("req-1:0")
    assert failed["explanation_state"] == "failed" and failed["explanation_error"] == "explainer answered 503"
    assert store.claim_explanations(1, 60, 2) == []  # not due yet
    [again] = wait_for(lambda: store.claim_explanations(1, 60, 2), timeout=10, every=0.05)
    assert again["explanation_attempts"] == 2 and again["explanation_state"] == "pending"
    assert store.finish_explanation(again, error="still down", retry_at=None)
    assert store.get_record("req-1:0")["explanation_next_attempt_at"] is None
    time.sleep(0.05)
    assert store.claim_explanations(1, 60, 2) == [] and store.explanation_counts()["failed"] == 1
    assert store.request_explanation("req-1:0")  # a reviewer's retry: owed again, attempts from zero
    [retried] = store.claim_explanations(1, 60, 2)
    assert retried["explanation_attempts"] == 1
    assert store.finish_explanation(retried, explanation=ANCHOR)
    assert not store.request_explanation("req-1:0")  # it has its explanation now


def test_a_lapsed_claim_is_taken_again_and_a_worker_that_always_dies_ends_failed(
    store: Store, records, database: tuple[str, str]
) -> None:
    store.insert_records(records(1), explain=True)
    other = open_store(*database, migrate=False)  # another replica
    try:
        [mine] = store.claim_explanations(1, 0.3, 2)
        [theirs] = wait_for(lambda: other.claim_explanations(1, 60, 2), timeout=10, every=0.05)
        assert theirs["explanation_attempts"] == 2
        assert not store.finish_explanation(mine, explanation=ANCHOR)  # lapsed: no effect
        assert store.get_record("req-1:0")["explanation"] is None
        other.release_explanations([theirs])  # a stopping worker hands it back: due now, uncounted
        [again] = store.claim_explanations(1, 0.3, 2)
        assert again["explanation_attempts"] == 2
        wait_for(
            lambda: other.claim_explanations(1, 60, 2) == [] and other.explanation_counts()["failed"],
            timeout=10,
        )
        assert "claimed 2 times without an outcome" in store.get_record("req-1:0")["explanation_error"]
    finally:
        other.close()


def test_concurrent_replicas_never_explain_the_same_record(
    store: Store, records, database: tuple[str, str]
) -> None:
    store.insert_records(records(*range(60)), explain=True)
    claimers = [open_store(*database, migrate=False) for _ in range(4)]  # four replicas
    together = threading.Barrier(len(claimers))

    def claim(k: int) -> list[str]:
        together.wait(30)  # the four claims of a round start at once
        return [row["id"] for row in claimers[k].claim_explanations(1, 60, 3)]

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
    assert sorted(flat) == sorted(f"req-{i}:0" for i in range(60))  # every record claimed, none twice
    assert all(taken), [len(part) for part in taken]


def test_migration_8_marks_the_explained_records_done(
    database: tuple[str, str], records, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glassbox.annotation.store import base

    monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS[:7])  # a database from before migration 8
    old = open_store(*database)
    try:
        old.insert_records([*records(1), *records(2, explanation=ANCHOR)])
        monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS)
        assert old.migrate() == [8]
        assert old.get_record("req-1:0")["explanation_state"] is None  # owed only once opened (service)
        assert old.get_record("req-2:0")["explanation_state"] == "done"
        assert old.explanation_counts() == {"pending": 0, "done": 1, "failed": 0}
    finally:
        old.close()
