"""The queue's settings, read from ``GLASSBOX_QUEUE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    feedback_retries: int = Field(
        3, ge=0, description="Retries of a feedback post before it waits for the next sweep."
    )
    feedback_sweep_seconds: float = Field(
        30.0, gt=0, description="How often unsent feedback (after a failure or a restart) is retried."
    )
    explainer_url: str = Field(
        "", description="Base URL of the explainer microservice, asked when a record has no explanation."
    )
    explainer_timeout: float = Field(60.0, gt=0, description="Seconds to wait for one explanation.")
    session_secret: str = Field(
        "", description="Secret that signs the review page's session cookie; empty = random per process."
    )
