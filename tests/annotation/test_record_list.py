"""The record list's filters (one parser, one store query) and the lead's overview, on both stores."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.annotation.record_query import MAX_OFFSET, PARAMETERS, RecordQuery, parse_record_query
from glassbox.annotation.records import RecordIn
from glassbox.annotation.store import open_store
from glassbox.annotation.store.migrations import MIGRATIONS
from glassbox.errors import InvalidInput
from glassbox.stack.process import venv_bin

# -- the query-parameter parser ---------------------------------------------------------------

VALID = {
    "status": st.sampled_from(["pending", "completed", "discarded", ""]),
    "source": st.sampled_from(["prediction", "training-audit", ""]),
    "model_version": st.text(max_size=20),
    "predicted_label": st.text(max_size=20),
    "feedback_state": st.sampled_from(["pending", "sent", "dead", ""]),
    "certainty_min": st.floats(0, 0.5).map(str),
    "certainty_max": st.floats(0.5, 1).map(str),
    "has_disagreement": st.sampled_from(["true", "false", "1", "0", "yes", "no", "TRUE", ""]),
    "sort": st.sampled_from(["least_certain", "highest_loss", "newest"]),
    "limit": st.integers(1, 1000).map(str),
    "offset": st.integers(0, MAX_OFFSET).map(str),
}
BAD = {
    "status": st.text(min_size=1).filter(lambda v: v not in ("pending", "completed", "discarded")),
    "source": st.text(min_size=1).filter(lambda v: v not in ("prediction", "training-audit")),
    "model_version": st.text(min_size=201, max_size=300),
    "predicted_label": st.text(min_size=201, max_size=300),
    "feedback_state": st.text(min_size=1).filter(lambda v: v not in ("pending", "sent", "dead")),
    "certainty_min": st.one_of(
        st.floats(1.0001, 1e9).map(str), st.just("nan"), st.just("-0.1"), st.just("x")
    ),
    "certainty_max": st.one_of(
        st.floats(-1e9, -0.0001).map(str), st.just("inf"), st.just("1.5"), st.just("½")
    ),
    "has_disagreement": st.text(min_size=1).filter(
        lambda v: v.lower() not in ("true", "false", "1", "0", "yes", "no")
    ),
    "sort": st.text(min_size=1).filter(lambda v: v not in ("least_certain", "highest_loss", "newest")),
    "limit": st.one_of(st.integers(max_value=0), st.integers(min_value=1001)).map(str) | st.just("ten"),
    "offset": st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_OFFSET + 1)).map(str),
}
valid_queries = st.fixed_dictionaries({}, optional=VALID)


@given(valid_queries)
def test_valid_parameters_parse_and_round_trip_through_the_query_string(query: dict[str, str]) -> None:
    parsed = parse_record_query(query)
    assert 1 <= parsed.limit <= 1000 and 0 <= parsed.offset <= MAX_OFFSET
    from urllib.parse import parse_qsl

    assert parse_record_query(dict(parse_qsl(parsed.query_string()))) == parsed


@settings(max_examples=300)
@given(valid_queries, st.sampled_from(sorted(BAD)), st.data())
def test_a_bad_value_is_a_400_naming_its_parameter(query: dict[str, str], name: str, data) -> None:
    query = {**query, name: data.draw(BAD[name], label=name)}
    if name in ("certainty_min", "certainty_max"):  # keep the other bound out of the way
        query.pop("certainty_max" if name == "certainty_min" else "certainty_min", None)
    with pytest.raises(InvalidInput) as caught:
        parse_record_query(query)
    assert caught.value.status_code == 400
    assert name in caught.value.message


@given(valid_queries, st.text(min_size=1).filter(lambda k: k not in PARAMETERS))
def test_an_unknown_parameter_is_named(query: dict[str, str], unknown: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_record_query({**query, unknown: "1"})
    assert repr(unknown) in caught.value.message


def test_crossed_certainty_bounds_name_both() -> None:
    with pytest.raises(InvalidInput, match=r"certainty_min .* certainty_max"):
        parse_record_query({"certainty_min": "0.8", "certainty_max": "0.6"})
    assert parse_record_query({"certainty_min": "", "sort": ""}) == RecordQuery()


# -- the same filters through the real service --------------------------------------------------


def corpus(queue_record, n: int = 40) -> list[dict[str, Any]]:
    """``n`` records over two sources, two model versions, two predicted labels, certainty from 0.50."""
    records = []
    for i in range(n):
        audit = i % 4 == 3
        records.append(
            queue_record(
                i,
                source="training-audit" if audit else "prediction",
                model_version="v2" if i % 3 == 0 else "v1",
                predicted_label=">50K" if i % 5 == 0 else "<=50K",
                metadata={"loss": round(5 - i / 10, 3)} if audit else {},
            )
        )
    return records


def answer(queue, key: str, record_id: str, body: dict[str, Any]) -> None:
    reply = queue.call("POST", f"/api/v1/records/{record_id}/responses", key=key, json=body)
    assert reply.status_code == 200, reply.text


def review_some(queue) -> dict[str, Any]:
    """Two annotators (min_submitted 2): agreements, disagreements and a discard; returns what was done."""
    assert queue.call("PUT", "/api/v1/settings", json={"min_submitted": 2}).status_code == 200
    keys = {name: queue.add_user(name, "annotator") for name in ("ann", "bob")}
    same = ["req-1:0", "req-2:0", "req-5:0"]  # both say <=50K: completed
    split = ["req-4:0", "req-7:0", "req-10:0"]  # they differ: a tie, pending, disagreeing
    for record_id in same:
        answer(queue, keys["ann"], record_id, {"label": "<=50K"})
        answer(queue, keys["bob"], record_id, {"label": "<=50K"})
    for record_id in split:
        answer(queue, keys["ann"], record_id, {"label": "<=50K"})
        answer(queue, keys["bob"], record_id, {"label": ">50K"})
    answer(queue, keys["ann"], "req-8:0", {"label": ">50K"})  # label against discard: disagreeing too
    answer(queue, keys["bob"], "req-8:0", {"discard": True})
    answer(queue, keys["ann"], "req-9:0", {"discard": True})  # one answer: no disagreement
    return {"keys": keys, "disagreeing": {*split, "req-8:0"}, "completed": set(same)}


def reference(records: list[dict[str, Any]], query: dict[str, str], disagreeing: set[str]) -> list[str]:
    """The ids a query must return, computed here from the full list, in the sort's order."""
    q = parse_record_query(query)
    kept = [
        r
        for r in records
        if (q.status is None or r["status"] == q.status)
        and (q.source is None or r["source"] == q.source)
        and (q.model_version is None or r["model_version"] == q.model_version)
        and (q.predicted_label is None or r["predicted_label"] == q.predicted_label)
        and (q.certainty_min is None or r["certainty"]["max_probability"] >= q.certainty_min)
        and (q.certainty_max is None or r["certainty"]["max_probability"] <= q.certainty_max)
        and (q.has_disagreement is None or (r["id"] in disagreeing) == q.has_disagreement)
    ]
    if q.sort == "least_certain":
        kept.sort(key=lambda r: (r["certainty"]["max_probability"], r["created_at"], r["id"]))
    elif q.sort == "highest_loss":
        kept.sort(
            key=lambda r: (r["metadata"].get("loss") is None, -(r["metadata"].get("loss") or 0), r["id"])
        )
    else:
        kept.sort(key=lambda r: (-r["created_at"], r["id"]))
    return [r["id"] for r in kept]


COMBINATIONS = [
    {},
    {"status": "pending"},
    {"status": "completed", "source": "prediction"},
    {"source": "training-audit", "sort": "highest_loss"},
    {"model_version": "v2", "predicted_label": ">50K"},
    {"certainty_min": "0.55", "certainty_max": "0.7", "sort": "newest"},
    {"has_disagreement": "true"},
    {"has_disagreement": "false", "status": "pending", "certainty_max": "0.6"},
    {"has_disagreement": "true", "source": "prediction", "model_version": "v1"},
    {"predicted_label": "<=50K", "source": "training-audit", "certainty_min": "0.6", "sort": "highest_loss"},
    {"model_version": "v3"},
]


def test_api_filter_combinations_match_a_reference(start_queue, queue_record) -> None:
    queue = start_queue()
    assert (
        queue.call("POST", "/api/v1/records/bulk", json={"records": corpus(queue_record)}).json()["created"]
        == 40
    )
    done = review_some(queue)
    everything = queue.call("GET", "/api/v1/records", params={"limit": "1000"}).json()
    assert everything["total"] == 40
    records = everything["records"]
    assert {r["id"] for r in records if r["disagreement"]} == done["disagreeing"]
    assert {r["id"] for r in records if r["status"] == "completed"} == done["completed"]
    for query in COMBINATIONS:
        page = queue.call(
            "GET", "/api/v1/records", key=done["keys"]["ann"], params={**query, "limit": "1000"}
        )
        assert page.status_code == 200, (query, page.text)
        expected = reference(records, query, done["disagreeing"])
        got = [r["id"] for r in page.json()["records"]]
        if query.get("sort") == "newest":  # one bulk: equal created_at, so only the set is defined
            assert sorted(got) == sorted(expected), query
        else:
            assert got == expected, query
        assert page.json()["total"] == len(expected), query
    assert reference(records, {"has_disagreement": "true"}, done["disagreeing"])  # some combinations match

    # Pages of 7 add up to the whole list, each record once.
    seen: list[str] = []
    for offset in range(0, 40, 7):
        page = queue.call("GET", "/api/v1/records", params={"limit": "7", "offset": str(offset)}).json()
        seen += [r["id"] for r in page["records"]]
    assert seen == reference(records, {}, done["disagreeing"])

    # The CLI passes the same parameter.
    shell = subprocess.run(
        [venv_bin("glassbox"), "queue", "list", "--has-disagreement", "true", "--json",
         "--url", queue.url, "--api-key", done["keys"]["bob"]],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert {r["id"] for r in json.loads(shell.stdout)["records"]} == done["disagreeing"]

    for bad, name in (
        ({"certainty_min": "2"}, "certainty_min"),
        ({"has_disagreement": "maybe"}, "has_disagreement"),
        ({"offset": str(MAX_OFFSET + 1)}, "offset"),
        ({"sort": "random"}, "sort"),
        ({"colour": "red"}, "colour"),
    ):
        reply = queue.call("GET", "/api/v1/records", params=bad)
        assert reply.status_code == 400 and name in reply.json()["error"], (bad, reply.text)


def test_overview_is_for_admins_and_owners_and_counts_what_happened(start_queue, queue_record) -> None:
    queue = start_queue()
    queue.call("POST", "/api/v1/records/bulk", json={"records": corpus(queue_record)})
    done = review_some(queue)
    admin = queue.add_user("ada", "admin")

    assert queue.call("GET", "/api/v1/overview", key="").status_code == 401
    assert queue.call("GET", "/api/v1/overview", key="gbq_nobody").status_code == 401
    refused = queue.call("GET", "/api/v1/overview", key=done["keys"]["ann"])
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert queue.call("GET", "/api/v1/overview", key=admin).status_code == 200
    overview = queue.call("GET", "/api/v1/overview").json()  # the owner

    progress = {(p["source"], p["model_version"]): p for p in overview["progress"]}
    records = queue.call("GET", "/api/v1/records", params={"limit": "1000"}).json()["records"]
    for (source, version), row in progress.items():
        mine = [r for r in records if (r["source"], r["model_version"]) == (source, version)]
        assert row["total"] == len(mine)
        for status in ("pending", "completed", "discarded"):
            assert row[status] == sum(r["status"] == status for r in mine)
    assert sum(p["completed"] for p in progress.values()) == 3
    assert sum(p["total"] for p in progress.values()) == 40

    assert overview["disagreements"]["total"] == 4
    shown = {r["id"]: r for r in overview["disagreements"]["records"]}
    assert set(shown) == done["disagreeing"]
    assert sorted((a["user_name"], a["kind"]) for a in shown["req-8:0"]["responses"]) == [
        ("ann", "label"),
        ("bob", "discard"),
    ]
    assert overview["annotators"] == {
        "ann": {"label": 7, "discard": 1, "total": 8},
        "bob": {"label": 6, "discard": 1, "total": 7},
    }
    assert overview["agreement"] == queue.call("GET", "/api/v1/agreement").json()
    assert overview["agreement"]["annotators"]["ann"]["compared"] == 3


def test_the_disagreement_migration_flags_records_answered_before_it(
    database, queue_record, monkeypatch
) -> None:
    from glassbox.annotation.store import base

    before = next(m.version for m in MIGRATIONS if "disagreement" in m.name) - 1
    monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS[:before])
    old = open_store(*database)
    try:
        old.insert_records([RecordIn.model_validate(queue_record(i)) for i in range(4)])
        with old.transaction(write=True) as cur:
            for record_id, user, kind, label in (
                ("req-0:0", "a", "label", "<=50K"),
                ("req-0:0", "b", "label", ">50K"),  # differ
                ("req-1:0", "a", "label", "<=50K"),
                ("req-1:0", "b", "label", "<=50K"),  # agree
                ("req-2:0", "a", "discard", None),
                ("req-2:0", "b", "label", "<=50K"),  # differ
            ):
                cur.execute(
                    "INSERT INTO responses (record_id, user_name, kind, label, note, created_at) "
                    "VALUES ($1, $2, $3, $4, '', 0)",
                    (record_id, user, kind, label),
                )
        monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS)
        assert old.migrate() == [m.version for m in MIGRATIONS[before:]]
        flagged, total = old.list_records(has_disagreement=True)
        assert sorted(r["id"] for r in flagged) == ["req-0:0", "req-2:0"] and total == 2
        assert old.list_records(has_disagreement=False)[1] == 2
        # add_response keeps the flag: b changes their mind on req-0:0 and agrees now.
        old.add_response("req-0:0", "b", kind="label", label="<=50K", note="", min_submitted=5)
        assert [r["id"] for r in old.list_records(has_disagreement=True)[0]] == ["req-2:0"]
    finally:
        old.close()
