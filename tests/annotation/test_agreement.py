"""Krippendorff's alpha against the published worked example, undefined cases, and through the API."""

from __future__ import annotations

import pytest

from glassbox.annotation.agreement import agreement_report, alpha_nominal, per_label_alpha

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12
# units, nominal data with missing values ("."); the published nominal alpha is 0.743.
RELIABILITY_DATA = {
    "A": "1 2 3 3 2 1 4 1 2 . . .",
    "B": "1 2 3 3 2 2 4 1 2 5 . 3",
    "C": ". 3 3 3 2 3 4 2 2 5 1 .",
    "D": "1 2 3 3 2 4 4 1 2 5 1 .",
}


def krippendorff_units() -> dict[int, dict[str, str]]:
    units: dict[int, dict[str, str]] = {}
    for coder, row in RELIABILITY_DATA.items():
        for unit, value in enumerate(row.split()):
            if value != ".":
                units.setdefault(unit, {})[coder] = value
    return units


def test_matches_krippendorffs_published_nominal_example() -> None:
    assert alpha_nominal(krippendorff_units()) == pytest.approx(0.743, abs=5e-4)


def test_perfect_and_chance_agreement() -> None:
    assert alpha_nominal({1: {"a": "x", "b": "x"}, 2: {"a": "y", "b": "y"}}) == pytest.approx(1.0)
    # Systematic disagreement: below zero.
    assert alpha_nominal({1: {"a": "x", "b": "y"}, 2: {"a": "y", "b": "x"}}) < 0


def test_undefined_cases_are_none_not_a_crash() -> None:
    assert alpha_nominal({}) is None
    assert alpha_nominal({1: {"a": "x"}, 2: {"b": "y"}}) is None  # no unit coded twice
    assert alpha_nominal({1: {"a": "x", "b": "x"}, 2: {"a": "x", "b": "x"}}) is None  # one value only
    per_label = per_label_alpha(krippendorff_units(), labels=["9"])
    assert per_label["9"] is None  # nobody chose it
    everybody = per_label_alpha({1: {"a": "x", "b": "x"}, 2: {"a": "x", "b": "x"}})
    assert everybody == {"x": None}  # everybody chose it
    assert per_label["5"] == pytest.approx(1.0)  # whoever saw unit 10 said 5, and nobody else did


def test_annotator_agreement_with_the_final_label() -> None:
    answers = [
        {"record_id": "r1", "user_name": "a", "kind": "label", "label": "x", "final_label": "x"},
        {"record_id": "r1", "user_name": "b", "kind": "label", "label": "y", "final_label": "x"},
        {"record_id": "r2", "user_name": "a", "kind": "label", "label": "y", "final_label": "y"},
        {"record_id": "r2", "user_name": "b", "kind": "label", "label": "y", "final_label": "y"},
        {"record_id": "r3", "user_name": "b", "kind": "discard", "label": None, "final_label": None},
        {"record_id": "r4", "user_name": "a", "kind": "label", "label": "x", "final_label": None},  # pending
    ]
    report = agreement_report(answers)
    assert report["annotators"] == {
        "a": {"compared": 2, "agreed": 2, "rate": 1.0},
        "b": {"compared": 2, "agreed": 1, "rate": 0.5},
    }
    assert report["pairable_units"] == 2 and report["units"] == 3


def test_agreement_api_and_metric(start_queue, queue_record) -> None:
    queue = start_queue()
    queue.call("PUT", "/api/v1/settings", json={"min_submitted": 4})
    queue.call("POST", "/api/v1/records/bulk", json={"records": [queue_record(i) for i in range(12)]})
    keys = {coder: queue.add_user(coder, "annotator") for coder in RELIABILITY_DATA}
    label = {"1": "<=50K", "2": ">50K"}
    # Krippendorff's example restricted to two values: units where every value is 1 or 2.
    expected_units: dict[int, dict[str, str]] = {}
    for coder, row in RELIABILITY_DATA.items():
        for unit, value in enumerate(row.split()):
            if value in label:
                answer = queue.call(
                    "POST",
                    f"/api/v1/records/req-{unit}:0/responses",
                    key=keys[coder],
                    json={"label": label[value]},
                )
                assert answer.status_code == 200, answer.text
                expected_units.setdefault(unit, {})[coder] = label[value]
    report = queue.call("GET", "/api/v1/agreement", key=keys["A"]).json()
    assert report["alpha"] == pytest.approx(alpha_nominal(expected_units))
    assert set(report["per_label"]) == {"<=50K", ">50K"}
    assert set(report["annotators"]) == set(RELIABILITY_DATA)
    metrics = queue.call("GET", "/metrics").text
    assert f"glassbox_queue_agreement_alpha {report['alpha']}" in metrics
