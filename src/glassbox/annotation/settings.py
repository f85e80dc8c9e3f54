"""The queue's settings, read from ``GLASSBOX_QUEUE_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from glassbox.annotation.explanations import METHODS


class QueueSettings(BaseSettings):
    """Everything the annotation queue reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_QUEUE_", extra="ignore")

    database_url: str = Field(
        "sqlite:///glassbox-queue.db",
        description="Where records live: `sqlite:///<path>` (WAL) or `postgresql://user@host:port/db`.",
    )
    database_schema: str = Field(
        "",
        description="PostgreSQL only: the schema holding the queue's tables (created if missing); "
        "empty = the server's default search_path.",
    )
    host: str = Field("127.0.0.1", description="Address `glassbox queue serve` binds to.")
    port: int = Field(8500, description="Port `glassbox queue serve` listens on.")
    workers: int = Field(
        1, ge=1, description="Uvicorn worker processes of `glassbox queue serve` (> 1: set `session_secret`)."
    )
    shutdown_grace_seconds: float = Field(
        4.0,
        gt=1,
        description="On SIGTERM `glassbox queue serve` stops listening at once, gives requests in flight "
        "this long minus 1 s to finish (uvicorn's graceful-shutdown timeout) and is gone within it.",
    )
    database_pool_size: int = Field(4, ge=1, description="Most PostgreSQL connections per worker process.")
    database_timeout: float = Field(
        5.0, gt=0, description="PostgreSQL: seconds a request waits for a connection before answering 503."
    )
    max_bulk: int = Field(500, ge=1, description="Most records accepted by one bulk intake request.")
    min_submitted: int = Field(
        1, ge=1, description="Responses a record needs before it can complete (admins may change it live)."
    )
    owner_name: str = Field("owner", description="Name of the first owner created from `owner_api_key`.")
    owner_api_key: str = Field(
        "", description="If set and no owner exists yet, an owner with this key is created at start-up."
    )
    feedback_url: str = Field(
        "",
        description="Base URL of the model's Seldon microservice; completed predictions post feedback there.",
    )
    feedback_max_attempts: int = Field(
        8,
        ge=1,
        description="Attempts at one record's feedback before it goes to the 'dead' state with its last "
        "error (transient errors only: a 4xx answer from the model is permanent and dead at once).",
    )
    feedback_backoff_seconds: float = Field(
        2.0, gt=0, description="Wait after a record's first failed attempt; doubles with each further one."
    )
    feedback_backoff_max_seconds: float = Field(
        600.0, gt=0, description="Longest wait between two attempts at one record's feedback."
    )
    feedback_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the model to answer a post.")
    feedback_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a sender owns the rows it claimed (no other worker or replica sends them "
        "meanwhile); rows of a sender that died come due again after it. At least timeout + 5 s.",
    )
    feedback_batch: int = Field(50, ge=1, le=1000, description="Rows one claim takes from the outbox.")
    feedback_concurrency: int = Field(
        4, ge=1, le=64, description="Posts one sender (one per worker process) has in flight at once."
    )
    feedback_sweep_seconds: float = Field(
        30.0, gt=0, description="How often the sender looks for due feedback (retries, other replicas' rows)."
    )
    explainer_url: str = Field(
        "",
        description="Base URL of the explainer microservice: a record that arrives without an explanation "
        "is explained in the background (empty = never).",
    )
    explainer_timeout: float = Field(60.0, gt=0, description="Seconds to wait for one explanation.")
    explain_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(METHODS),
        description="Methods the queue asks the explainer for, comma-separated: anchors, attributions, "
        "counterfactuals (`anchors` alone sends no `method`, as explainers before issue 13 expect).",
    )
    explain_params: dict[str, Any] = Field(
        default_factory=dict, description="Anchor search parameters sent with each request (JSON object)."
    )
    explain_counterfactuals: int = Field(
        1, ge=1, le=10, description="Counterfactuals asked per record (the review page shows the nearest)."
    )
    explain_concurrency: int = Field(
        2, ge=1, le=32, description="Explanations one worker process computes at once in the background."
    )
    explain_max_attempts: int = Field(
        5, ge=1, description="Attempts at one record's explanation before it stays 'failed' with its error."
    )
    explain_backoff_seconds: float = Field(
        10.0, gt=0, description="Wait after a record's first failed explanation; doubles with each further."
    )
    explain_backoff_max_seconds: float = Field(
        600.0, gt=0, description="Longest wait between two attempts at one record's explanation."
    )
    explain_lease_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a worker owns a record it is explaining (no other worker or replica takes "
        "it meanwhile); a dead worker's records come due again after it. At least explainer_timeout + 5 s.",
    )
    explain_sweep_seconds: float = Field(
        10.0, gt=0, description="How often the background worker looks for due explanations (retries)."
    )
    webhook_max_attempts: int = Field(
        8,
        ge=1,
        description="Attempts at one webhook delivery before it goes 'dead' with its last error (transient "
        "errors only: a 4xx answer other than 408/425/429 is dead at once).",
    )
    webhook_backoff_seconds: float = Field(
        2.0, gt=0, description="Wait after a delivery's first failed attempt; doubles with each further one."
    )
    webhook_backoff_max_seconds: float = Field(
        600.0, gt=0, description="Longest wait between two attempts at one webhook delivery."
    )
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a webhook receiver's answer.")
    webhook_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a sender owns the deliveries it claimed; a dead sender's come due again "
        "after it. At least webhook_timeout + 5 s.",
    )
    webhook_batch: int = Field(50, ge=1, le=1000, description="Deliveries one claim takes from the outbox.")
    webhook_sweep_seconds: float = Field(
        10.0, gt=0, description="How often the webhook sender looks for due deliveries (retries, others')."
    )
    session_secret: str = Field(
        "", description="Secret that signs the review page's session cookie; empty = random per process."
    )

    @field_validator("explain_methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            unknown = [m for m in value if m not in METHODS]
            if unknown or not value:
                raise ValueError(f"explain_methods must name some of {', '.join(METHODS)}; got {value!r}")
            value = list(dict.fromkeys(value))  # once each, in the order given
        return value

    @model_validator(mode="after")
    def _lease_covers_a_post(self) -> QueueSettings:
        # A sender starts a post only while its lease has timeout + 5 s left (feedback.py): a shorter
        # lease could never be used.
        if self.feedback_lease_seconds < self.feedback_timeout + 5:
            raise ValueError(
                f"feedback_lease_seconds ({self.feedback_lease_seconds:g}) must be at least "
                f"feedback_timeout + 5 ({self.feedback_timeout + 5:g})"
            )
        if self.explain_lease_seconds < self.explainer_timeout + 5:
            raise ValueError(
                f"explain_lease_seconds ({self.explain_lease_seconds:g}) must be at least "
                f"explainer_timeout + 5 ({self.explainer_timeout + 5:g})"
            )
        if self.webhook_lease_seconds < self.webhook_timeout + 5:
            raise ValueError(
                f"webhook_lease_seconds ({self.webhook_lease_seconds:g}) must be at least "
                f"webhook_timeout + 5 ({self.webhook_timeout + 5:g})"
            )
        return self
