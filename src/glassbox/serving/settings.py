"""Settings of the model component, read from ``GLASSBOX_MODEL_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSettings(BaseSettings):
    """Everything the loan classifier component can be told through its environment."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_MODEL_", extra="ignore")

    artifacts: Path = Field(
        Path("/mnt/models"),
        description="Artifacts: a version dir or a model dir with LATEST. The default is where Seldon's "
        "storage initializer puts a modelUri.",
    )
    max_rows: int = Field(1000, ge=1, description="Most rows one request may carry; more is a 400.")
    uncertainty_threshold: float = Field(
        0.7,
        ge=0.0,
        le=1.01,
        description="Rows whose highest class probability is below this go to the annotation queue "
        "(1.01 forwards every row).",
    )
    queue_url: str = Field("", description="Base URL of the annotation queue; empty turns forwarding off.")
    queue_api_key: str = Field("", description="X-API-Key for the queue's bulk intake (admin or owner role).")
    monitor_url: str = Field(
        "",
        description="Base URL of the drift and outlier monitor (glassbox monitor serve); empty turns it off. "
        "Sampled rows go there through their own buffer, sender thread and outbox file.",
    )
    monitor_sample: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of user rows (every row, not only uncertain ones) sent to the monitor.",
    )
    monitor_api_key: str = Field("", description="X-API-Key the monitor asks for, if it asks for one.")
    monitor_batch_size: int = Field(
        50,
        ge=1,
        le=500,
        description="Request records per call to the monitor (each holds one request's sampled rows).",
    )
    monitor_batch_rows: int = Field(
        2000, ge=1, description="Sampled rows that make a batch for the monitor (the sender wakes for it)."
    )
    monitor_linger_seconds: float = Field(
        0.2,
        ge=0.0,
        description="How long the monitor's sender waits to fill a batch: longer means fewer, larger calls "
        "and fewer wake-ups beside the requests; the monitor's windows do not need the rows sooner.",
    )
    outbox_dir: Path = Field(
        Path("/tmp/glassbox-outbox"),
        description="Directory of the durable SQLite outbox holding records the queue has not accepted yet.",
    )
    outbox_max_records: int = Field(
        100_000, ge=1, description="Outbox capacity; records beyond it are dropped and counted as such."
    )
    buffer_max_records: int = Field(
        10_000,
        ge=1,
        description="In-memory buffer between requests and the sender; when full, rows spill to the outbox.",
    )
    forward_batch_size: int = Field(
        200, ge=1, le=500, description="Records per bulk call (the queue accepts at most 500)."
    )
    forward_linger_seconds: float = Field(
        0.05, ge=0.0, description="How long the sender waits to fill a batch before sending what it has."
    )
    forward_timeout_seconds: float = Field(5.0, gt=0, description="HTTP timeout of one bulk call.")
    retry_initial_seconds: float = Field(0.5, gt=0, description="First back-off after a failed bulk call.")
    retry_max_seconds: float = Field(30.0, gt=0, description="Back-off ceiling (doubling from the initial).")
    metrics_interval_seconds: float = Field(
        1.0,
        ge=0.0,
        description="The forwarder's totals are copied into the metrics at most this often from "
        "predictions (health checks and feedback always copy them); 0 copies on every request.",
    )
    shutdown_grace_seconds: float = Field(
        4.0,
        gt=0,
        description="On SIGTERM: new connections are refused at once, requests in flight get this long minus "
        "1 s to finish, the forwarding buffers go to the outbox, and whatever still runs at the end is "
        "killed. Keep it below the pod's terminationGracePeriodSeconds (minus its preStop sleep).",
    )
