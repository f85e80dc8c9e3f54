"""One model microservice shared by a test module (start-up takes seconds); see tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import ModelService, start_model_service

MAX_ROWS = 50  # small, so that "too many rows" is cheap to send


@pytest.fixture(scope="module")
def model(trained_artifacts, tmp_path_factory) -> Iterator[ModelService]:
    """LoanClassifier in a real seldon-core-microservice, without forwarding."""
    service = start_model_service(
        trained_artifacts, tmp_path_factory.mktemp("model"), env={"GLASSBOX_MODEL_MAX_ROWS": str(MAX_ROWS)}
    )
    yield service
    service.process.stop()


@pytest.fixture(scope="module")
def bundle(trained_artifacts):
    from glassbox.pipeline.artifacts import load_bundle

    return load_bundle(trained_artifacts)
