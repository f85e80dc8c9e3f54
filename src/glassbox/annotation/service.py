"""The queue's transport-neutral core: every operation, with its role check, for HTTP and CLI alike.

Like MLServer's ``handlers/dataplane.py``: the ASGI app (``app.py``) and the CLI only parse their
input and call these methods; errors are ``glassbox.errors`` exceptions carrying their HTTP status.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

from glassbox.annotation.agreement import agreement_report
from glassbox.annotation.auth import Principal, authenticate, check_role, hash_key, new_key
from glassbox.annotation.background import ExplanationWorker
from glassbox.annotation.explanations import explain_options
from glassbox.annotation.export import ExportStats, export_lines
from glassbox.annotation.feedback import FeedbackSender, Sweeper
from glassbox.annotation.lineage import lineage_of
from glassbox.annotation.metrics import QueueMetrics
from glassbox.annotation.record_query import RecordQuery, parse_record_query
from glassbox.annotation.records import validate_bulk
from glassbox.annotation.settings import QueueSettings
from glassbox.annotation.store import Store, open_store
from glassbox.annotation.store.webhooks import WebhookTables
from glassbox.annotation.webhooks import (
    EVENTS,
    WebhookSender,
    check_events,
    check_url,
    new_secret,
    register_metrics,
)
from glassbox.contract.records import SOURCES, STATUSES
from glassbox.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

# Settings an admin may change at run time (stored in the database, overriding the environment).
LIVE_SETTINGS = ("min_submitted",)
# Disagreeing records listed in the lead's view (newest first); the list view filters them all.
DISAGREEMENTS_SHOWN = 100
# Seconds the list view's choices (sources, model versions, labels present) are reused.
FACETS_TTL = 30.0
# Newest deliveries shown by GET /api/v1/webhooks/{id}.
WEBHOOK_DELIVERIES_SHOWN = 50


class QueueService:
    def __init__(self, settings: QueueSettings, store: Store | None = None):
        self.settings = settings
        self.store = store or open_store(
            settings.database_url,
            settings.database_schema,
            pool_size=settings.database_pool_size,
            timeout=settings.database_timeout,
        )
        self.metrics = QueueMetrics(self.store)
        self.feedback = FeedbackSender(
            self.store,
            settings.feedback_url,
            max_attempts=settings.feedback_max_attempts,
            backoff=settings.feedback_backoff_seconds,
            backoff_max=settings.feedback_backoff_max_seconds,
            timeout=settings.feedback_timeout,
            lease=settings.feedback_lease_seconds,
            batch=settings.feedback_batch,
            concurrency=settings.feedback_concurrency,
            on_outcome=self._count_feedback,
        )
        self._sweeper = Sweeper(self._sweep, settings.feedback_sweep_seconds)
        # Webhooks: their own sender thread, so a slow receiver never delays the model's feedback.
        self.webhooks = WebhookTables(self.store)
        self._webhook_outcomes = register_metrics(self.metrics.registry, self.store)
        self.webhook_sender = WebhookSender(
            self.store,
            max_attempts=settings.webhook_max_attempts,
            backoff=settings.webhook_backoff_seconds,
            backoff_max=settings.webhook_backoff_max_seconds,
            timeout=settings.webhook_timeout,
            lease=settings.webhook_lease_seconds,
            batch=settings.webhook_batch,
            on_outcome=lambda outcome: self._webhook_outcomes.labels(outcome).inc(),
        )
        self._webhook_sweeper = Sweeper(self.webhook_sender.send_due, settings.webhook_sweep_seconds)
        # Background explanations: their own thread and pool, so intake never waits for the explainer.
        self.explainer = ExplanationWorker(
            self.store,
            settings.explainer_url,
            explain_options(
                settings.explain_methods, settings.explain_params, settings.explain_counterfactuals
            ),
            timeout=settings.explainer_timeout,
            lease=settings.explain_lease_seconds,
            concurrency=settings.explain_concurrency,
            max_attempts=settings.explain_max_attempts,
            backoff=settings.explain_backoff_seconds,
            backoff_max=settings.explain_backoff_max_seconds,
            on_outcome=lambda outcome: self.metrics.explanation_attempts.labels(outcome).inc(),
        )
        self._explain_sweeper = Sweeper(self.explainer.explain_due, settings.explain_sweep_seconds)
        self._facets: tuple[float, dict[str, list[str]]] = (-math.inf, {})
        self.bootstrap_owner()

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._sweeper.start()
        self._webhook_sweeper.start()
        if self.settings.explainer_url:
            self._explain_sweeper.start()

    def stop(self) -> None:
        self.feedback.stop()  # hands back claimed rows it will not send, for the other replicas
        self._sweeper.stop()
        self.webhook_sender.stop()  # hands back claimed deliveries it will not send
        self._webhook_sweeper.stop()
        # Claimed records not started are handed back; an explanation in flight is not waited for
        # (it may take a minute): its record comes due again when the lease runs out.
        self.explainer.stop()
        self._explain_sweeper.stop(timeout=1.0)
        self.store.close()

    def _count_feedback(self, outcome: str, reward: int) -> None:
        self.metrics.feedback_attempts.labels(outcome).inc()
        if outcome == "sent":
            self.metrics.feedback_sent.labels(str(reward)).inc()

    def _sweep(self) -> None:
        self.feedback.send_due()
        alpha = agreement_report(self.store.answers())["alpha"]
        self.metrics.agreement_alpha.set(alpha if alpha is not None else math.nan)

    def bootstrap_owner(self) -> None:
        """Create the first owner from ``GLASSBOX_QUEUE_OWNER_API_KEY`` if there is no owner yet."""
        if self.settings.owner_api_key and self.store.count_role("owner") == 0:
            try:
                key_hash = hash_key(self.settings.owner_api_key)
                self.store.create_user(self.settings.owner_name, "owner", key_hash)
            except Conflict:  # another worker or replica starting at the same time made it
                return
            log.info("created owner %r from GLASSBOX_QUEUE_OWNER_API_KEY", self.settings.owner_name)

    def authenticate(self, key: str | None) -> Principal:
        return authenticate(self.store, key)

    # -- intake ----------------------------------------------------------------------------
    def intake(self, who: Principal, body: Any) -> dict[str, Any]:
        who.require("admin")
        items = body.get("records") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise InvalidInput('body must be {"records": [record, ...]}')
        if len(items) > self.settings.max_bulk:
            raise InvalidInput(
                f"{len(items)} records in one bulk; at most {self.settings.max_bulk} (max_bulk)"
            )
        valid, errors = validate_bulk(items)
        explain = bool(self.settings.explainer_url)
        created = self.store.insert_records(valid, explain=explain) if valid else set()
        result = {"created": len(created), "existing": len(valid) - len(created), "errors": errors}
        for outcome in ("created", "existing"):
            self.metrics.intake.labels(outcome).inc(result[outcome])
        self.metrics.intake.labels("invalid").inc(len(errors))
        if created:
            self._webhook_sweeper.wake()  # delivers record.created now rather than at the next sweep
            if explain:
                self._explain_sweeper.wake()  # explains them now, in the background
        return result

    # -- review ----------------------------------------------------------------------------
    def list_records(self, who: Principal, query: Mapping[str, str] | RecordQuery) -> dict[str, Any]:
        """A page of records (``record_query`` names the filters); the API and the list view alike."""
        who.require("annotator")
        parsed = query if isinstance(query, RecordQuery) else parse_record_query(query)
        records, total = self.store.list_records(**parsed.store_args())
        return {"records": records, "total": total}

    def facets(self, who: Principal) -> dict[str, list[str]]:
        """The values present for the list view's choices; every known source is offered.

        Three DISTINCT scans cost tens of milliseconds at 100,000 records, more than the page's own
        query, and the values change rarely (a new model version): kept for ``FACETS_TTL`` seconds.
        """
        who.require("annotator")
        cached_at, found = self._facets
        if time.monotonic() - cached_at > FACETS_TTL:
            found = self.store.facets()
            found["source"] = sorted(set(found["source"]) | set(SOURCES))
            self._facets = (time.monotonic(), found)
        return found

    def get_record(self, who: Principal, record_id: str) -> dict[str, Any]:
        """A record as stored: never waits for the explainer (explanations come in the background).

        A record nobody asked an explanation for (it arrived before an explainer was set, or before
        migration 8) is owed one now, computed in the background like a new record's.
        """
        who.require("annotator")
        record = self.store.get_record(record_id)
        unasked = record["explanation"] is None and record["explanation_state"] is None
        if unasked and self.settings.explainer_url and self.store.request_explanation(record_id):
            self._explain_sweeper.wake()
            record = self.store.get_record(record_id)
        return record

    def request_explanation(self, who: Principal, record_id: str) -> dict[str, Any]:
        """Ask again now for the explanation of a record whose explanation failed (or was never asked)."""
        who.require("annotator")
        if not self.settings.explainer_url:
            raise Conflict("no explainer is set (GLASSBOX_QUEUE_EXPLAINER_URL): nothing can explain it")
        record = self.store.get_record(record_id)
        if record["explanation"] is not None:
            raise Conflict(f"record {record_id!r} already has its explanation")
        if self.store.request_explanation(record_id):
            self._explain_sweeper.wake()
        return self.store.get_record(record_id)

    def next_record(self, who: Principal) -> dict[str, Any]:
        who.require("annotator")
        record, remaining = self.store.next_for(who.name)
        if record is not None:
            record = self.get_record(who, record["id"])
        return {"record": record, "remaining": remaining}

    def respond(self, who: Principal, record_id: str, body: Any) -> dict[str, Any]:
        """An annotator's label (``{"label": ...}``) or discard (``{"discard": true}``), plus a note."""
        who.require("annotator")
        if not isinstance(body, dict):
            raise InvalidInput(
                'body must be {"label": "<class>"} or {"discard": true}, with an optional "note"'
            )
        label, discard, note = body.get("label"), body.get("discard", False), body.get("note", "")
        if not isinstance(note, str) or len(note) > 2000:
            raise InvalidInput("note must be a string of at most 2000 characters")
        if bool(discard) == (label is not None) or not isinstance(discard, bool):
            raise InvalidInput('give exactly one of "label": "<class>" or "discard": true')
        if label is not None and not isinstance(label, str):
            raise InvalidInput("label must be a string naming one of the record's classes")
        kind = "discard" if discard else "label"
        outcome = self.store.add_response(
            record_id, who.name, kind=kind, label=label, note=note, min_submitted=self.min_submitted()
        )
        self.metrics.responses.labels(kind).inc()
        self._webhook_sweeper.wake()
        if outcome["completed"]:
            self.metrics.time_to_label.observe(outcome["time_to_label"])
            self._sweeper.wake()  # sends the feedback now rather than at the next sweep
        return outcome

    def set_status(self, who: Principal, record_id: str, body: Any) -> dict[str, Any]:
        who.require("admin")
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("pending", "discarded"):
            raise InvalidInput('body must be {"status": "pending" | "discarded"}')
        self.store.set_status(record_id, status)
        return self.store.get_record(record_id)

    # -- settings --------------------------------------------------------------------------
    def min_submitted(self) -> int:
        stored = self.store.get_settings().get("min_submitted")
        return int(stored) if stored else self.settings.min_submitted

    def get_settings(self, who: Principal) -> dict[str, Any]:
        who.require("admin")
        return {"min_submitted": self.min_submitted(), "max_bulk": self.settings.max_bulk}

    def put_settings(self, who: Principal, body: Any) -> dict[str, Any]:
        who.require("admin")
        if not isinstance(body, dict) or set(body) - set(LIVE_SETTINGS) or not body:
            raise InvalidInput(f"body must set some of {list(LIVE_SETTINGS)}")
        value = body["min_submitted"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput("min_submitted must be an integer >= 1")
        self.store.put_setting("min_submitted", str(value))
        return self.get_settings(who)

    # -- users -----------------------------------------------------------------------------
    def list_users(self, who: Principal) -> list[dict[str, Any]]:
        who.require("owner")
        return self.store.list_users()

    def create_user(self, who: Principal, body: Any) -> dict[str, Any]:
        """A new user and their key (shown once: only its hash is kept). The first owner is made
        without a service: ``glassbox queue create-owner`` or ``GLASSBOX_QUEUE_OWNER_API_KEY``."""
        who.require("owner")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
            raise InvalidInput('body must be {"name": "...", "role": "owner" | "admin" | "annotator"}')
        name = body["name"].strip()
        if "/" in name or len(name) > 200:  # the name is a path segment of DELETE /users/{name}
            raise InvalidInput("a user name has at most 200 characters and no '/'")
        role = check_role(body.get("role", "annotator"))
        key = new_key()
        self.store.create_user(name, role, hash_key(key))
        return {"name": name, "role": role, "api_key": key}

    def delete_user(self, who: Principal, name: str) -> None:
        who.require("owner")
        if name == who.name:
            raise InvalidInput("an owner cannot delete themself")
        self.store.delete_user(name)

    def update_user(self, who: Principal, name: str, body: Any) -> dict[str, Any]:
        """An owner changes a user's ``role`` and/or ``active`` flag; the last active owner stays one.

        Takes effect at the next request: roles and the flag are read from the store on every call,
        and deactivation also ends the user's page sessions.
        """
        who.require("owner")
        if not isinstance(body, dict) or not body or set(body) - {"role", "active"}:
            raise InvalidInput(
                'body must set "role" (owner | admin | annotator) and/or "active" (true | false)'
            )
        role = check_role(body["role"]) if "role" in body else None
        active = body.get("active")
        if active is not None and not isinstance(active, bool):
            raise InvalidInput('"active" must be true or false')
        if name == who.name and active is False:
            raise InvalidInput("an owner cannot deactivate themself")
        return self.store.update_user(name, role=role, active=active)

    # -- webhooks ----------------------------------------------------------------------------
    def create_webhook(self, who: Principal, body: Any) -> dict[str, Any]:
        """Register ``{"url", "events"}`` (events default to all); the signing secret is shown once."""
        who.require("owner")
        if not isinstance(body, dict) or "url" not in body or set(body) - {"url", "events"}:
            raise InvalidInput(f'body must be {{"url": "https://...", "events": [some of {list(EVENTS)}]}}')
        url = check_url(body["url"])
        events = check_events(body.get("events", list(EVENTS)))
        secret = new_secret()
        return {**self.webhooks.create(url, events, secret, who.name), "secret": secret}

    def list_webhooks(self, who: Principal) -> list[dict[str, Any]]:
        who.require("owner")
        return self.webhooks.list_all()

    def get_webhook(self, who: Principal, webhook_id: str) -> dict[str, Any]:
        """A webhook, its delivery counts by state and its ``WEBHOOK_DELIVERIES_SHOWN`` newest deliveries."""
        who.require("owner")
        return self.webhooks.get(webhook_id, WEBHOOK_DELIVERIES_SHOWN)

    def delete_webhook(self, who: Principal, webhook_id: str) -> None:
        who.require("owner")
        self.webhooks.delete(webhook_id)

    # -- the caller's own account -------------------------------------------------------------
    def whoami(self, who: Principal) -> dict[str, Any]:
        who.require("annotator")
        return {"name": who.name, "role": who.role}

    def rotate_key(self, who: Principal) -> dict[str, Any]:
        """A new key for the caller, shown once; the old key stops working when this returns."""
        who.require("annotator")
        key = new_key()
        self.store.set_key_hash(who.name, hash_key(key))
        return {"name": who.name, "api_key": key}

    def sign_out_everywhere(self, who: Principal) -> None:
        """End every review-page session of the caller (API keys are not sessions: rotate the key)."""
        who.require("annotator")
        self.store.end_sessions(who.name)

    # -- agreement and export -----------------------------------------------------------------
    def agreement(self, who: Principal) -> dict[str, Any]:
        who.require("annotator")
        report = agreement_report(self.store.answers())
        alpha = report["alpha"]
        self.metrics.agreement_alpha.set(alpha if alpha is not None else math.nan)
        return report

    def overview(self, who: Principal) -> dict[str, Any]:
        """The lead's view: progress by source and model version, agreement, disagreeing records
        (the newest ``DISAGREEMENTS_SHOWN``, each with its answers) and each annotator's answer counts."""
        who.require("admin")
        progress: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.store.progress():
            key = (row["source"], row["model_version"])
            entry = progress.setdefault(
                key, {"source": key[0], "model_version": key[1], **dict.fromkeys(STATUSES, 0), "total": 0}
            )
            entry[row["status"]] = int(row["n"])
            entry["total"] += int(row["n"])
        annotators: dict[str, dict[str, Any]] = {}
        for row in self.store.answer_counts():
            entry = annotators.setdefault(row["user_name"], {"label": 0, "discard": 0, "total": 0})
            entry[row["kind"]] = int(row["n"])
            entry["total"] += int(row["n"])
        disagreeing, total = self.store.list_records(
            has_disagreement=True, sort="newest", limit=DISAGREEMENTS_SHOWN
        )
        answers = self.store.responses_of([record["id"] for record in disagreeing])
        return {
            "progress": list(progress.values()),
            "agreement": self.agreement(who),
            "disagreements": {
                "total": total,
                "records": [
                    {
                        "id": record["id"],
                        "source": record["source"],
                        "model_version": record["model_version"],
                        "predicted_label": record["predicted_label"],
                        "status": record["status"],
                        "final_label": record["final_label"],
                        "responses": answers[record["id"]],
                    }
                    for record in disagreeing
                ],
            },
            "annotators": annotators,
        }

    def lineage(self, who: Principal, record_or_request_id: str) -> dict[str, Any]:
        """The lineage of a record id, or of every record of a prediction id (Seldon ``puid``)."""
        who.require("annotator")
        records = self.store.lineage_records(record_or_request_id)
        if not records:
            raise NotFound(f"no record or prediction with id {record_or_request_id!r}")
        return {"id": record_or_request_id, "records": [lineage_of(record) for record in records]}

    def export(self, who: Principal, fmt: str, stats: ExportStats, lineage: bool = False) -> Iterator[str]:
        """Lines of the export of every reviewed (completed or discarded) record; fills ``stats``.

        ``lineage`` adds each record's lineage (``lineage.lineage_of``).
        """
        who.require("admin")
        return export_lines(self.store.iter_reviewed(("completed", "discarded")), fmt, stats, lineage)
