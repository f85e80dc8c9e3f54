"""The review page's reading of a stored explanation (``explanation_view``): bars, predicates, states.

Property tests: an anchor clause names exactly its feature, and any JSON at all in a record's
``explanation`` (intake accepts any object) renders the page instead of failing it.
"""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import QUEUE_FEATURES, make_queue_record
from glassbox.annotation.auth import Principal
from glassbox.annotation.explanation_view import change_sentence, clause_features, explanation_view
from glassbox.annotation.review_page import templates

from .test_review_explanations import FULL_EXPLANATION


def test_bars_are_sorted_by_magnitude_and_signed_toward_the_predicted_label() -> None:
    view = explanation_view(make_queue_record(1, explanation=FULL_EXPLANATION))
    values = FULL_EXPLANATION["attributions"]["values"]
    assert [bar.feature for bar in view.bars] == sorted(values, key=lambda name: -abs(values[name]))
    assert all(bar.toward == (values[bar.feature] > 0) for bar in view.bars)
    assert view.bars[0].width == 100.0 and all(0 <= bar.width <= 100 for bar in view.bars)
    assert set(view.anchored) == {"Marital Status", "Capital Gain", "Age"}
    assert view.anchor["threshold_met"] is False and view.anchor["precision"] == 0.87
    assert view.counterfactual["sentence"].startswith("Had Education been Masters")
    assert view.reasons["sentences"][0] == "Capital Gain = 0 lowered the approval score by 0.12"


def test_attributions_for_the_other_class_of_two_are_read_toward_the_predicted_one() -> None:
    other = {**FULL_EXPLANATION, "attributions": {"class": ">50K", "values": {"Age": 0.2, "Sex": -0.1}}}
    view = explanation_view(make_queue_record(1, explanation=other))  # predicted <=50K
    assert [(bar.feature, bar.value) for bar in view.bars] == [("Age", -0.2), ("Sex", 0.1)]
    three = make_queue_record(1, explanation=other, probabilities={"<=50K": 0.5, ">50K": 0.3, "x": 0.2})
    assert explanation_view(three).bars == []  # no single reading toward the predicted label


def test_an_anchor_only_explanation_from_before_issue_13_has_no_threshold_mark() -> None:
    view = explanation_view(make_queue_record(1, explanation={"anchor": ["Sex = Male"], "precision": 0.9}))
    assert view.state == "done" and view.anchor["threshold_met"] is None
    assert view.bars == [] and view.counterfactual is None and view.reasons is None


def test_an_older_explanation_is_judged_by_the_threshold_it_echoed_in_params() -> None:
    short = {"anchor": ["Sex = Male"], "precision": 0.91, "params": {"threshold": 0.95}}
    view = explanation_view(make_queue_record(1, explanation=short))
    assert (view.anchor["threshold"], view.anchor["threshold_met"]) == (0.95, False)
    met = explanation_view(make_queue_record(1, explanation={**short, "precision": 0.96}))
    assert met.anchor["threshold_met"] is True


def test_states_without_an_explanation() -> None:
    pending = make_queue_record(1, explanation_state="pending", explanation_attempts=2)
    failed = make_queue_record(1, explanation_state="failed", explanation_error="explainer answered 503")
    assert explanation_view(pending).state == "pending" and explanation_view(pending).attempts == 2
    assert explanation_view(failed).error == "explainer answered 503"
    assert explanation_view(make_queue_record(1)).state == "none"


def test_a_counterfactual_without_a_sentence_gets_one() -> None:
    item = {"changes": [{"feature": "Age", "from": 30, "to": 41}], "prediction": ">50K", "probability": 0.6}
    expected = "Had Age been 41 instead of 30, the model would have predicted >50K (0.60)."
    assert change_sentence(item) == expected


NAME = st.sampled_from(QUEUE_FEATURES)
BOUND = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.2f}")


@given(NAME, BOUND, BOUND, st.sampled_from(["<=", "<", ">", ">="]), st.text(max_size=12))
def test_a_clause_names_exactly_its_feature(name: str, low: str, high: str, op: str, category: str) -> None:
    for clause in (f"{low} < {name} <= {high}", f"{name} {op} {low}", f"{name} = {category}"):
        named = clause_features(clause, list(QUEUE_FEATURES))
        assert name in named, clause
        assert set(named) <= {name} | {f for f in QUEUE_FEATURES if f in category}, clause


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(["anchor", "precision", "coverage", "threshold", "threshold_met", "attributions",
                        "reason_codes", "counterfactuals", "values", "class", "items", "reasons", "found",
                        "sentence", "changes", "message", "adverse"])  # fmt: skip
EXPLANATION = st.recursive(
    JSON, lambda inner: st.dictionaries(KEYS, inner, max_size=6), max_leaves=30
).filter(lambda value: isinstance(value, dict))


@settings(max_examples=150, deadline=None)
@given(EXPLANATION)
@example({"reason_codes": {"reasons": True}, "counterfactuals": {"items": [{"changes": 1}], "found": True}})
def test_any_stored_explanation_renders_the_page(explanation: dict) -> None:
    record = {**make_queue_record(1, explanation=explanation), "responses": []}
    html = templates.get_template("review.html").render(
        request=SimpleNamespace(url=SimpleNamespace(path="/review")),
        user=Principal("ann", "annotator"),
        record=record,
        remaining=None,
        classes=list(record["probabilities"]),
        explained=explanation_view(record),
        message="",
    )
    assert 'id="record-id"' in html
