"""The monitor's settings, read from ``GLASSBOX_MONITOR_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitorSettings(BaseSettings):
    """Everything the drift and outlier monitor reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_MONITOR_", extra="ignore")

    artifacts: Path = Field(
        Path("/mnt/models"),
        description="The monitored model: a version dir or a model dir with LATEST (hash-verified; its "
        "detectors.npz holds the drift references and the outlier scorer).",
    )
    host: str = Field("127.0.0.1", description="Address `glassbox monitor serve` binds to.")
    port: int = Field(8600, description="Port `glassbox monitor serve` listens on.")
    api_key: str = Field(
        "",
        description="If set, POST /api/v1/rows asks for this X-API-Key "
        "(the model's GLASSBOX_MODEL_MONITOR_API_KEY).",
    )
    queue_url: str = Field(
        "", description="Base URL of the review queue; outliers go to its bulk intake. Empty: counted only."
    )
    queue_api_key: str = Field("", description="X-API-Key for the queue's bulk intake (admin or owner role).")
    queue_timeout_seconds: float = Field(5.0, gt=0, description="HTTP timeout of one bulk call to the queue.")
    window_rows: int = Field(
        500, ge=10, description="Rows in a count window: the tests run each time this many rows have arrived."
    )
    window_seconds: float = Field(
        300.0, gt=0, description="Length of a time window: the tests run on each period's rows."
    )
    window_time_max_rows: int = Field(
        5000,
        ge=10,
        description="Most rows a time window keeps (a uniform reservoir sample of its rows beyond that).",
    )
    window_min_rows: int = Field(
        50, ge=1, description="A time window with fewer rows is skipped (counted in the status), not tested."
    )
    p_value: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Family-wise error per window over the feature tests (and the class-mix test's level). "
        "0.001 keeps false alarms to about one in 1,000 windows (one in 50 over 20 windows); at 0.05 a "
        "stable stream would flag one window in 20.",
    )
    correction: Literal["holm", "bonferroni"] = Field(
        "holm", description="Multiple-testing correction over the features: Holm's step-down or Bonferroni."
    )
    max_body_rows: int = Field(100_000, ge=1, description="Most rows one POST /api/v1/rows may carry.")
    max_body_bytes: int = Field(64 << 20, ge=1024, description="Largest accepted request body, in bytes.")
    recent_requests: int = Field(
        200_000,
        ge=0,
        description="Request ids remembered to drop re-sent records (the sender delivers at least once).",
    )
    tick_seconds: float = Field(1.0, gt=0, description="How often the time window is checked for its end.")
    shutdown_grace_seconds: float = Field(
        4.0, gt=1, description="On SIGTERM requests in flight get this long minus 1 s to finish."
    )
