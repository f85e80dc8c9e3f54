"""The explainer component's settings, read from ``GLASSBOX_EXPLAINER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExplainerSettings(BaseSettings):
    """Where the model is, how to call it, and how much explaining work one process accepts."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_EXPLAINER_", extra="forbid")

    artifacts: Path = Field(
        Path("/mnt/models"),
        description="A trained version dir, or a model dir with LATEST; its manifest is verified on load.",
    )
    model_url: str = Field(
        "http://127.0.0.1:9000/api/v1.0/predictions",
        description=(
            "The model's Seldon predictions endpoint. In a cluster: the model predictor's service "
            "(http://<deployment>-<predictor>.<ns>:8000/api/v1.0/predictions) or the gateway path "
            "/seldon/<ns>/<name>/api/v1.0/predictions."
        ),
    )
    model_protocol: Literal["seldon", "v2"] = Field(
        "seldon",
        description=(
            "How to call the model at model_url: seldon (Seldon v1 predictions) or v2 (Open Inference "
            "Protocol, e.g. http://<host>:8080/v2/models/loanclassifier/infer on MLServer or KServe)."
        ),
    )
    methods: list[Literal["anchors", "attributions", "counterfactuals"]] = Field(
        ["anchors", "attributions", "counterfactuals"],
        description=(
            "Methods this explainer loads at start (JSON list). Attributions and counterfactuals keep the "
            "forest, numba's TreeSHAP and DiCE in memory (531 against 395 MiB of PSS, docs/explain.md); "
            "a method left out is answered with a 409 naming this setting. Anchors are always loaded."
        ),
    )
    connect_timeout_s: float = Field(2.0, gt=0, description="Seconds to open a connection to the model.")
    read_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for one model answer.")
    retries: int = Field(2, ge=0, description="Retries of a model call on connection errors only.")
    pool_size: int = Field(8, ge=1, description="Keep-alive connections kept open to the model.")
    max_rows_per_call: int = Field(
        1000, ge=1, description="Most rows in one model request: at most the model's GLASSBOX_MODEL_MAX_ROWS."
    )
    max_rows: int = Field(10, ge=1, description="Most rows explained in one request (each row is explained).")
    response_format: Literal["jsonData", "strData"] = Field(
        "jsonData",
        description=(
            "jsonData: the full explanation; strData: the classic demo's JSON string "
            "(names, precision, coverage)."
        ),
    )
    seed: int = Field(
        1, description="Seed used when the request names none; explanations are a function of it."
    )
    cache_size: int = Field(1024, ge=0, description="Explanations kept in the LRU cache (0 disables it).")
    max_pending: int = Field(
        8, ge=1, description="Explanations running or waiting in one process; more are refused with 503."
    )
    sync_wait_s: float = Field(
        25.0,
        gt=0,
        description=(
            "A synchronous request waits this long, then answers with a job handle to poll instead: keep it "
            "below the gateway's timeout."
        ),
    )
    shutdown_grace_seconds: float = Field(
        4.0,
        gt=0,
        description="On SIGTERM: new connections are refused at once, requests in flight get this long minus "
        "1 s to finish (a longer explanation is cut off), and whatever still runs at the end is killed. Keep "
        "it below the pod's terminationGracePeriodSeconds (minus its preStop sleep).",
    )
    job_ttl_s: float = Field(3600.0, gt=0, description="Seconds a finished job's result is kept for polling.")
    max_jobs: int = Field(
        1000, ge=1, description="Finished jobs kept at most (in-process); the oldest are forgotten first."
    )
    # The shared store: with a Redis URL every worker and replica sees every job and cached explanation.
    redis_url: str = Field(
        "",
        description=(
            "Redis holding jobs, results and the explanation cache for every worker and replica "
            "(redis://[:password@]host:6379/0); empty: each process keeps its own, in memory."
        ),
    )
    redis_prefix: str = Field(
        "glassbox:explain",
        min_length=1,
        description="Prefix of the cache keys and job queue names in Redis (several deployments, one Redis).",
    )
    redis_socket_timeout_s: float = Field(
        2.0, gt=0, description="Seconds one Redis command may take before the request answers 503."
    )
    redis_connect_timeout_s: float = Field(1.0, gt=0, description="Seconds to open a connection to Redis.")
    cache_ttl_s: float = Field(
        86400.0, gt=0, description="Seconds an explanation stays in the Redis cache (CACHE_SIZE=0: none)."
    )
    job_lease_s: int = Field(
        30,
        ge=2,
        description=(
            "Redis store: a running job's process renews its lease every third of this; a job whose lease "
            "ran out (its process died) is re-run or failed."
        ),
    )
    job_retries: int = Field(
        1, ge=0, description="Redis store: times a job whose process died is re-run before it is failed."
    )
    job_timeout_s: int = Field(
        600, ge=1, description="Redis store: longest one job may run; past it the job fails (504)."
    )
