"""Real MLServer processes shared by the package's tests (see ``support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require

from .support import MAX_ROWS, V2_BIN, V2Server, start_v2_server


@pytest.fixture(scope="session")
def v2_bin() -> Path:
    require((V2_BIN / "mlserver").exists(), "the V2 virtualenv (make install-v2)")
    return V2_BIN


@pytest.fixture(scope="package")
def v2_model(v2_bin, trained_artifacts, tmp_path_factory) -> Iterator[V2Server]:
    """The model on MLServer, without forwarding; shared by the package's tests."""
    server = start_v2_server(
        v2_bin,
        "model",
        trained_artifacts,
        tmp_path_factory.mktemp("v2-model"),
        env={"GLASSBOX_MODEL_MAX_ROWS": str(MAX_ROWS)},
    )
    yield server
    server.process.stop()


@pytest.fixture(scope="package")
def model_version(trained_artifacts) -> str:
    from glassbox.pipeline.artifacts import read_manifest, resolve_version_dir

    return str(read_manifest(resolve_version_dir(trained_artifacts)).version)


@pytest.fixture(scope="package")
def bundle(trained_artifacts):
    from glassbox.pipeline.artifacts import load_bundle

    return load_bundle(trained_artifacts)
