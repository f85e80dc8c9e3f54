"""Export of reviewed records (unlabelled ones skipped and counted) and reading it back as corrections."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import numpy as np
import pytest

from glassbox.errors import InvalidInput
from glassbox.pipeline.corrections import apply_corrections, read_export
from glassbox.pipeline.data import Dataset
from glassbox.stack.process import venv_bin


def review_some(queue, queue_record) -> None:
    """Five records: two labelled, one discarded, one sent back to pending by an admin, one untouched."""
    audit = queue_record(
        3,
        id="audit:data-abc:7",
        source="training-audit",
        metadata={"loss": 2.0, "row_index": 7, "true_label": "<=50K"},
    )
    batch = [queue_record(1), queue_record(2), audit, queue_record(4), queue_record(5)]
    queue.call("POST", "/api/v1/records/bulk", json={"records": batch})
    for record_id, body in [
        ("req-1:0", {"label": ">50K", "note": "capital gain"}),
        ("audit:data-abc:7", {"label": ">50K"}),
        ("req-2:0", {"discard": True, "note": "unreadable"}),
        ("req-4:0", {"label": "<=50K"}),
    ]:
        assert queue.call("POST", f"/api/v1/records/{record_id}/responses", json=body).status_code == 200
    queue.call("PATCH", "/api/v1/records/req-4:0", json={"status": "pending"})


def test_export_jsonl_and_csv_skip_and_count_unlabelled(start_queue, queue_record) -> None:
    queue = start_queue()
    review_some(queue, queue_record)
    jsonl = queue.call("GET", "/api/v1/export?format=jsonl")
    assert jsonl.status_code == 200
    assert jsonl.headers["x-glassbox-exported"] == "2"
    assert jsonl.headers["x-glassbox-skipped-unlabelled"] == "1"  # the discarded record
    exported = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {r["id"]: r["final_label"] for r in exported} == {"req-1:0": ">50K", "audit:data-abc:7": ">50K"}
    note = next(r for r in exported if r["id"] == "req-1:0")["responses"][0]["note"]
    assert note == "capital gain"
    table = queue.call("GET", "/api/v1/export?format=csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["id"] for r in rows] == [r["id"] for r in exported]
    assert rows[0]["feature:Age"] and table.headers["x-glassbox-skipped-unlabelled"] == "1"


def test_cli_export_counts_what_it_skipped(start_queue, queue_record, tmp_path) -> None:
    queue = start_queue()
    review_some(queue, queue_record)
    env = {
        "GLASSBOX_QUEUE_URL": queue.url,
        "GLASSBOX_QUEUE_API_KEY": queue.owner_key,
        "PATH": "/usr/bin:/bin",
    }
    out = tmp_path / "export.csv"
    done = subprocess.run(
        [venv_bin("glassbox"), "queue", "export", "--format", "csv", "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exported 2 record(s)" in done.stdout and "skipped 1 without a final label" in done.stdout
    corrections = read_export(out)
    assert corrections.relabel == {7: ">50K"}
    assert [(i, label) for i, _, label in corrections.predictions] == [("req-1:0", ">50K")]


def toy_dataset() -> Dataset:
    return Dataset(
        X=np.arange(12, dtype=np.float64).reshape(4, 3),
        y=np.array([0, 0, 1, 1]),
        row_index=np.array([5, 7, 9, 11]),
        feature_names=["a", "b", "c"],
        feature_types={"a": "numeric", "b": "numeric", "c": "numeric"},
        category_map={},
        class_names=["<=50K", ">50K"],
        data_sha256="abc" + "0" * 61,
    )


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_apply_corrections_relabels_rows_and_adds_reviewed_predictions(tmp_path) -> None:
    data = toy_dataset()
    path = tmp_path / "export.jsonl"
    write_jsonl(
        path,
        [
            {"id": "audit:data-abc000000000:7", "source": "training-audit", "final_label": ">50K",
             "model_version": "data-abc000000000", "metadata": {"row_index": 7}, "features": {}},
            {"id": "audit:data-abc000000000:9", "source": "training-audit", "final_label": ">50K",
             "model_version": "data-abc000000000", "metadata": {"row_index": 9}, "features": {}},
            {"id": "audit:data-zzz:5", "source": "training-audit", "final_label": ">50K",
             "model_version": "data-zzz", "metadata": {"row_index": 5}, "features": {}},
            {"id": "p:0", "source": "prediction", "final_label": "<=50K",
             "features": {"a": 1, "b": 2, "c": 3}},
            {"id": "p:1", "source": "prediction", "final_label": None, "features": {"a": 1, "b": 2}},
        ],
    )  # fmt: skip
    corrections = read_export(path)
    assert corrections.unlabelled == 1
    corrected, summary = apply_corrections(data, corrections, include_predictions=False)
    assert corrected.y.tolist() == [0, 1, 1, 1] and data.y.tolist() == [0, 0, 1, 1]  # input untouched
    assert summary["corrected"] == [{"row_index": 7, "from": "<=50K", "to": ">50K"}]
    assert summary["labels_confirmed"] == 1 and summary["rows_added"] == 0
    assert summary["skipped"] == [{"row_index": 5, "reason": "audited on other data (data-zzz)"}]
    grown, summary = apply_corrections(data, corrections, include_predictions=True)
    assert grown.X.shape == (5, 3) and grown.y.tolist() == [0, 1, 1, 1, 0] and summary["added"] == ["p:0"]


def test_a_broken_export_names_the_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "final_label": "a", "source": "training-audit", "metadata": {}}\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl:1: .*no metadata.row_index"):
        read_export(path)
    (tmp_path / "junk.jsonl").write_text("{oops\n")
    with pytest.raises(InvalidInput, match=r"junk\.jsonl:1: not a JSON record"):
        read_export(tmp_path / "junk.jsonl")
    with pytest.raises(InvalidInput, match="not found"):
        read_export(tmp_path / "missing.jsonl")
