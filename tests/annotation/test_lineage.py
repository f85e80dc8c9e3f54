"""One prediction's lineage (request, prediction, explanations, answers, consensus, model feedback),
from the real queue service over both stores, the real model and explainer microservices, the export
and the CLI; the page in real Chromium is in ``test_lineage_page.py``."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest

from conftest import QUEUE_FEATURES
from glassbox.pipeline.corrections import read_export
from glassbox.stack.process import venv_bin

from .explain_support import expected_method, queue_env
from .feedback_support import adult_records, feedback_log, wait_for
from .test_review_page import ANCHOR

LINEAGE_KEYS = {"record_id", "request_id", "source", "timestamp", "request", "prediction", "explanations",
                "responses", "consensus", "feedback", "explanation_state"}  # fmt: skip


def seed(queue, queue_record) -> dict[str, str]:
    """Prediction req-1 with two rows (one explained at intake), answered by two annotators; returns keys."""
    rows = [
        queue_record(1, explanation=ANCHOR),
        queue_record(2, id="req-1:1", request_id="req-1"),
        queue_record(3),
    ]
    assert queue.call("POST", "/api/v1/records/bulk", json={"records": rows}).json()["created"] == 3
    assert queue.call("PUT", "/api/v1/settings", json={"min_submitted": 2}).status_code == 200
    keys = {name: queue.add_user(name, "annotator") for name in ("ann", "bob")}
    for name, record_id, body in [
        ("ann", "req-1:0", {"label": ">50K", "note": "capital gain"}),
        ("bob", "req-1:0", {"label": ">50K"}),
        ("ann", "req-1:1", {"discard": True, "note": "unreadable"}),
    ]:
        answer = queue.call("POST", f"/api/v1/records/{record_id}/responses", key=keys[name], json=body)
        assert answer.status_code == 200, answer.text
    return keys


def test_lineage_by_prediction_id_and_by_record_id(start_queue, queue_record) -> None:
    queue = start_queue()
    keys = seed(queue, queue_record)

    by_puid = queue.call("GET", "/api/v1/lineage/req-1", key=keys["bob"])  # any signed-in role
    assert by_puid.status_code == 200, by_puid.text
    assert by_puid.json()["id"] == "req-1"
    first, second = by_puid.json()["records"]  # every record of the request, by id
    assert (first["record_id"], second["record_id"]) == ("req-1:0", "req-1:1")
    assert set(first) == LINEAGE_KEYS

    sent = queue_record(1)
    assert first["request"] == {"features": sent["features"], "decoded": sent["decoded"]}
    assert first["prediction"]["model_version"] == "v1" and first["prediction"]["predicted_label"] == "<=50K"
    assert first["prediction"]["probabilities"] == sent["probabilities"]
    [explanation] = first["explanations"]
    assert explanation["method"] == "AnchorTabular" and explanation["origin"] == "intake"
    assert explanation["explanation"] == ANCHOR and explanation["computed_at"] > 0
    assert explanation["reason_codes"] is None  # an anchor-only explanation has none
    assert first["explanation_state"]["state"] == "done"  # given at intake
    assert second["explanations"] == []
    assert second["explanation_state"] == {"state": None, "attempts": 0, "last_error": None,
                                           "next_attempt_at": None}  # fmt: skip
    answers = [(a["user_name"], a["answer"], a["note"]) for a in first["responses"]]
    assert answers == [("ann", ">50K", "capital gain"), ("bob", ">50K", "")]
    assert all(a["created_at"] > 0 for a in first["responses"])
    assert first["consensus"]["status"] == "completed" and first["consensus"]["final_label"] == ">50K"
    assert first["consensus"]["completed_at"] >= first["responses"][-1]["created_at"]
    # Completed with no model to send to: owed and still pending, the model said <=50K so reward 0.
    assert first["feedback"]["state"] == "pending" and first["feedback"]["reward"] == 0
    assert second["consensus"] == {"status": "pending", "final_label": None, "completed_at": None,
                                   "disagreement": False}  # fmt: skip
    assert second["responses"][0]["answer"] == "discard"
    assert second["feedback"]["state"] is None and second["feedback"]["reward"] is None

    by_record = queue.call("GET", "/api/v1/lineage/req-1:1", key=keys["ann"]).json()
    assert by_record["records"] == [second]
    assert queue.call("GET", "/api/v1/lineage/req-3", key=keys["ann"]).json()["records"][0]["record_id"] == (
        "req-3:0"
    )

    unknown = queue.call("GET", "/api/v1/lineage/no-such-puid")
    assert unknown.status_code == 404 and "'no-such-puid'" in unknown.json()["error"]
    assert queue.call("GET", "/api/v1/lineage/req-1", key="").status_code == 401
    assert queue.call("GET", "/api/v1/lineage/req-1", key="gbq_not-a-key").status_code == 401


def test_export_carries_the_lineage_behind_a_flag(start_queue, queue_record, tmp_path) -> None:
    queue = start_queue()
    seed(queue, queue_record)

    plain = [json.loads(line) for line in queue.call("GET", "/api/v1/export").text.splitlines()]
    assert [r["id"] for r in plain] == ["req-1:0"] and "lineage" not in plain[0]
    answer = queue.call("GET", "/api/v1/export?format=jsonl&lineage=true")
    assert answer.status_code == 200 and answer.headers["x-glassbox-exported"] == "1"
    [record] = [json.loads(line) for line in answer.text.splitlines()]
    lineage = queue.call("GET", "/api/v1/lineage/req-1:0").json()["records"][0]
    assert record["lineage"] == lineage  # the same answer as the API's
    assert {k: v for k, v in record.items() if k != "lineage"} == plain[0]  # nothing else changed

    table = queue.call("GET", "/api/v1/export?format=csv&lineage=1")
    assert table.status_code == 200
    [row] = list(csv.DictReader(io.StringIO(table.text)))
    assert json.loads(row["lineage"]) == lineage
    assert list(row)[: list(row).index("lineage")][-1] == "metadata"  # before the feature columns

    bad = queue.call("GET", "/api/v1/export?lineage=maybe")
    assert bad.status_code == 400 and "'maybe'" in bad.json()["error"]

    # The CLI's --lineage, and the corrections reader still reads both files.
    env = {
        "GLASSBOX_QUEUE_URL": queue.url,
        "GLASSBOX_QUEUE_API_KEY": queue.owner_key,
        "PATH": "/usr/bin:/bin",
    }
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"export.{fmt}"
        done = subprocess.run(
            [venv_bin("glassbox"), "queue", "export", "--format", fmt, "--lineage", "--output", str(out)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        corrections = read_export(out)
        assert [(i, label) for i, _, label in corrections.predictions] == [("req-1:0", ">50K")]
    assert json.loads((tmp_path / "export.jsonl").read_text())["lineage"] == lineage
    shown = subprocess.run(
        [venv_bin("glassbox"), "queue", "lineage", "req-1"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert [r["record_id"] for r in json.loads(shown.stdout)["records"]] == ["req-1:0", "req-1:1"]


def lineage_explained(queue, wanted: str) -> dict | None:
    """The only record of ``wanted``'s lineage once its background explanation is done, else None."""
    [record] = queue.call("GET", f"/api/v1/lineage/{wanted}").json()["records"]
    return record if record["explanation_state"]["state"] == "done" else None


def lineage_once(queue, wanted: str, state: str) -> dict | None:
    """The only record of ``wanted``'s lineage once its feedback is in ``state``, else None."""
    [record] = queue.call("GET", f"/api/v1/lineage/{wanted}").json()["records"]
    return record if record["feedback"]["state"] == state else None


@pytest.mark.slow
def test_lineage_shows_the_fetched_explanation_and_the_models_feedback(
    model_service_factory, trained_artifacts, start_queue, adult_test_rows, processes, tmp_path
) -> None:
    """Real model and explainer: an explanation fetched by the queue (method, time), feedback sent
    (reward 1, sent time) and feedback the model refused (dead, its error, attempts)."""
    from conftest import start_explainer_service

    model = model_service_factory()
    explainer = start_explainer_service(trained_artifacts, tmp_path, f"{model.url}/api/v1.0/predictions")
    processes.append(explainer.process)
    queue = start_queue(
        GLASSBOX_QUEUE_FEEDBACK_URL=model.url,
        GLASSBOX_QUEUE_FEEDBACK_SWEEP_SECONDS="0.5",
        GLASSBOX_QUEUE_EXPLAINER_URL=explainer.url,
        **queue_env(trained_artifacts),
    )
    good, refused = adult_records(adult_test_rows[:2], "lin")
    refused["features"]["Sex"] = 7.0  # no such category code: the model refuses this feedback (400)
    assert (
        queue.call("POST", "/api/v1/records/bulk", json={"records": [good, refused]}).json()["created"] == 2
    )

    before = queue.call("GET", "/api/v1/lineage/lin-0").json()["records"][0]
    assert before["feedback"]["state"] is None
    # Explained in the background from intake on: done without anyone opening the record.
    explained = wait_for(lambda: lineage_explained(queue, "lin-0"), timeout=120)
    assert explained["explanation_state"]["attempts"] == 1
    assert queue.call("GET", "/api/v1/records/lin-0:0").json()["explanation"]["anchor"] is not None
    for record in (good, refused):
        body = {"label": record["predicted_label"]}  # agrees with the model: reward 1
        assert queue.call("POST", f"/api/v1/records/{record['id']}/responses", json=body).json()["completed"]

    wait_for(lambda: feedback_log(model) == {"lin-0": 1})
    sent = wait_for(lambda: lineage_once(queue, "lin-0", "sent"))
    [explanation] = sent["explanations"]
    assert (
        explanation["method"] == expected_method(trained_artifacts) and explanation["origin"] == "explainer"
    )
    assert explanation["explanation"]["instance"]["Age"] == adult_test_rows[0][0]
    assert sent["request"]["features"] == dict(
        zip(QUEUE_FEATURES, map(float, adult_test_rows[0]), strict=True)
    )
    assert before["timestamp"] == sent["timestamp"]
    assert (
        explanation["computed_at"] <= sent["responses"][0]["created_at"] <= sent["consensus"]["completed_at"]
    )
    assert sent["feedback"] == {
        "state": "sent",
        "attempts": 1,
        "last_error": None,
        "sent_at": sent["feedback"]["sent_at"],
        "next_attempt_at": None,
        "reward": 1,
    }
    assert sent["feedback"]["sent_at"] >= sent["consensus"]["completed_at"]

    dead = wait_for(lambda: lineage_once(queue, "lin-1:0", "dead"))
    assert dead["feedback"]["attempts"] == 1 and dead["feedback"]["sent_at"] is None
    assert "400" in dead["feedback"]["last_error"], dead["feedback"]
    assert "lin-1" not in feedback_log(model)  # the model kept none of it
