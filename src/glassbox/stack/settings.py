"""Settings of the local stack (``glassbox up``): environment variables prefixed ``GLASSBOX_STACK_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """Where the stack keeps its state, which ports it uses and how its pieces are configured.

    A port of 0 means "pick a free one"; a non-zero port that is taken stops ``up`` with an error
    naming the port and its setting.
    """

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_STACK_", extra="ignore")

    run_dir: Path = Field(
        Path("run"), description="State file, logs and Prometheus data of the running stack."
    )
    artifacts: Path = Field(
        Path("artifacts/loanclassifier"),
        description="Trained model directory (with LATEST) or version directory served by the model.",
    )
    train_config: Path = Field(
        Path("pipeline/configs/adult.yaml"),
        description="Training config `glassbox demo` trains with when no artifacts exist.",
    )
    namespace: str = Field(
        "default", description="Namespace in the gateway's routes and the metrics' labels."
    )
    deployment: str = Field("loanclassifier", description="Seldon deployment name of the model.")
    predictor: str = Field("default", description="Predictor name (SeldonClient's `predictor` for explain).")
    gateway_port: int = Field(
        8003, description="Gateway port (SeldonClient's default gateway_endpoint is localhost:8003)."
    )
    queue_port: int = Field(0, description="Annotation queue port.")
    monitor_port: int = Field(0, description="Drift and outlier monitor port.")
    prometheus_port: int = Field(0, description="Prometheus port.")
    queue_dsn: str = Field(
        "",
        description="Database of the annotation queue (sqlite:/// or postgresql://); empty = run/queue.db.",
    )
    queue_api_key: str = Field(
        "glassbox-local-admin", description="Admin API key the stack gives the queue, the model and the demo."
    )
    uncertainty_threshold: float = Field(
        0.7, description="Predictions whose top probability is below this go to the review queue."
    )
    monitor: bool = Field(True, description="Run the drift and outlier monitor and feed it predictions.")
    monitor_sample: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of predicted rows the model forwards to the monitor."
    )
    monitor_window_rows: int = Field(
        100, ge=1, description="Rows per count window of the monitor (small, so the demo closes a few)."
    )
    monitor_window_seconds: int = Field(60, ge=1, description="Seconds per time window of the monitor.")
    protocol: Literal["seldon", "v2"] = Field(
        "seldon",
        description=(
            "What serves the model and the explainer: seldon (Seldon v1 microservices) or v2 (MLServer, "
            "the Open Inference Protocol, as on KServe; `glassbox serve-v2` from v2_glassbox)."
        ),
    )
    v2_glassbox: Path = Field(
        Path(".venv-v2/bin/glassbox"),
        description="The `glassbox` of the V2 virtualenv (`make install-v2`), which runs `serve-v2`.",
    )
    workers: int = Field(1, description="gunicorn workers per Seldon microservice.")
    threads: int = Field(4, description="Threads per gunicorn worker.")
    explainer_redis_url: str = Field(
        "",
        description=(
            "A Redis for the explainer's jobs and cache (e.g. redis://127.0.0.1:6379/0), shared by its "
            "gunicorn workers; empty = each worker keeps its own."
        ),
    )
    start_timeout: float = Field(120.0, description="Seconds each process has to answer its health check.")
    prometheus_bin: str = Field("prometheus", description="Prometheus binary (name on PATH or path).")
    scrape_interval: str = Field("5s", description="Prometheus scrape interval of the local stack.")

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"
