"""The queue's Prometheus metrics, in a registry of their own (one per app, so tests never share one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from glassbox.contract.records import SOURCES, STATUSES


class _StoreCollector(Collector):
    """Gauges read from the store at scrape time, so they are right after a restart too."""

    def __init__(self, store: Any):
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "glassbox_queue_records",
            "Records in the queue by review status and source",
            labels=["status", "source"],
        )
        found = {(row["status"], row["source"]): row["n"] for row in self._store.counts()}
        for status in STATUSES:  # every series always present: a dashboard shows 0, not "no data"
            for source in SOURCES:
                family.add_metric([status, source], found.get((status, source), 0))
        yield family
        # Seldon's seldon_api_model_feedback_total skips reward-0 feedback (seldon-core 1.19,
        # SeldonMetrics.update_reward), so its reward/feedback ratio is always 1; this one is not.
        verdicts = GaugeMetricFamily(
            "glassbox_queue_reviewed_predictions",
            "Completed prediction records by whether the model's label matched the reviewed one",
            labels=["verdict"],
        )
        for verdict, n in self._store.reviewed_predictions().items():
            verdicts.add_metric([verdict], n)
        yield verdicts
        # The feedback outbox, shared by every worker and replica: take max() across them, not sum().
        outbox = GaugeMetricFamily(
            "glassbox_queue_feedback_records",
            "Completed prediction records by feedback state: pending (due or backing off), sent, dead "
            "(a permanent error or too many attempts; see the record's feedback_error)",
            labels=["state"],
        )
        for state, n in self._store.feedback_counts().items():
            outbox.add_metric([state], n)
        yield outbox
        explanations = GaugeMetricFamily(
            "glassbox_queue_explanation_records",
            "Records by background explanation state: pending (due, backing off or being computed), "
            "done, failed (see the record's explanation_error; retried unless it failed for good)",
            labels=["state"],
        )
        for state, n in self._store.explanation_counts().items():
            explanations.add_metric([state], n)
        yield explanations


class QueueMetrics:
    def __init__(self, store: Any, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.intake = Counter(
            "glassbox_queue_intake_records",
            "Records received by the bulk intake, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("created", "existing", "invalid"):
            self.intake.labels(outcome)
        self.responses = Counter(
            "glassbox_queue_responses", "Annotator responses, by kind", ["kind"], registry=self.registry
        )
        for kind in ("label", "discard"):
            self.responses.labels(kind)
        self.time_to_label = Histogram(
            "glassbox_queue_time_to_label_seconds",
            "From intake to a settled record",
            buckets=(60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, float("inf")),
            registry=self.registry,
        )
        self.agreement_alpha = Gauge(
            "glassbox_queue_agreement_alpha",
            "Krippendorff's alpha (nominal) over all labelled records, as last computed",
            registry=self.registry,
        )
        self.feedback_sent = Counter(
            "glassbox_queue_feedback_sent",
            "Seldon feedback posts the model accepted, by reward",
            ["reward"],
            registry=self.registry,
        )
        for reward in ("0", "1"):
            self.feedback_sent.labels(reward)
        self.feedback_attempts = Counter(
            "glassbox_queue_feedback_attempts",
            "Feedback posts by this process, by outcome: sent, retry (transient error), dead",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("sent", "retry", "dead"):
            self.feedback_attempts.labels(outcome)
        self.explanation_attempts = Counter(
            "glassbox_queue_explanation_attempts",
            "Background explanation attempts by this process, by outcome: done, retry, failed (for good)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("done", "retry", "failed"):
            self.explanation_attempts.labels(outcome)
        self.registry.register(_StoreCollector(store))
