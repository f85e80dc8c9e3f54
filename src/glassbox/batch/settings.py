"""Defaults of ``glassbox explain-batch`` and ``audit-labels --workers``, from ``GLASSBOX_BATCH_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BatchSettings(BaseSettings):
    """What a RayJob's pod (or a shell) sets once instead of passing on every command line."""

    model_config = SettingsConfigDict(env_prefix="GLASSBOX_BATCH_", extra="ignore")

    artifacts: Path = Field(
        Path("artifacts/loanclassifier"),
        description="A trained version dir, or a model dir whose LATEST names one; verified before use.",
    )
    ray_address: str = Field(
        "", description="Ray cluster to use ('auto' inside a Ray pod, or ray://host:10001); empty: local Ray."
    )
    workers: int | None = Field(
        None, ge=0, description="Ray actors (one per CPU when unset); 0 runs serially in this process."
    )
    chunk_size: int = Field(4, ge=1, description="Rows sent to a worker at a time.")
