"""The durable outbox on real SQLite: idempotent, bounded, leased, and still there after a reopen."""

from __future__ import annotations

from glassbox.serving.outbox import Outbox


def records(*ids: str) -> list[tuple[str, str]]:
    return [(i, f'{{"id": "{i}"}}') for i in ids]


def test_adding_a_record_twice_keeps_one(tmp_path):
    outbox = Outbox(tmp_path, max_records=10)
    assert outbox.add(records("a:0", "a:1")) == (2, 0)
    outbox.add(records("a:0"))
    assert outbox.depth() == 2


def test_records_beyond_capacity_are_reported_dropped(tmp_path):
    outbox = Outbox(tmp_path, max_records=3)
    assert outbox.add(records("a", "b")) == (2, 0)
    assert outbox.add(records("c", "d", "e")) == (1, 2)
    assert outbox.depth() == 3


def test_claimed_records_are_leased_until_released_or_deleted(tmp_path):
    outbox = Outbox(tmp_path, max_records=10)
    outbox.add(records("a", "b", "c"))
    assert outbox.claim(2) == records("a", "b")  # oldest first, the JSON as stored
    assert outbox.claim(10) == records("c")  # the others are leased
    outbox.release(["a"])
    outbox.delete(["b", "c"])
    assert outbox.claim(10) == records("a")


def test_a_second_process_sees_the_same_records(tmp_path):
    Outbox(tmp_path, max_records=10).add(records("x"))  # e.g. a worker that was then killed
    assert Outbox(tmp_path, max_records=10).claim(5) == records("x")
