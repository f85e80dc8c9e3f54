"""The s2i build context is thin and complete, and its class file serves the model as Seldon would."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONTEXT = Path(__file__).resolve().parents[2] / "models/loanclassifier"


def environment() -> dict[str, str]:
    lines = (CONTEXT / ".s2i/environment").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_s2i_environment_has_what_the_assemble_script_requires():
    env = environment()
    assert env["MODEL_NAME"] == "LoanClassifier"
    assert env["SERVICE_TYPE"] == "MODEL"
    assert env["PERSISTENCE"] == "0"


def test_dockerfile_runs_the_same_command_as_a_non_root_user():
    dockerfile = (CONTEXT / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in dockerfile
    assert "USER 8888" in dockerfile
    assert "seldon-core-microservice $MODEL_NAME --service-type $SERVICE_TYPE" in dockerfile
    for key, value in environment().items():
        assert f"{key}={value}" in dockerfile, f"{key} differs between .s2i/environment and the Dockerfile"


def test_requirements_install_only_the_model_extra_of_the_glassbox_wheel():
    lines = [
        line for line in (CONTEXT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"
    ]
    # By path, never by name: PyPI has an unrelated project called glassbox. Only the [model] extra
    # (no alibi, scikit-learn, kubernetes), at the pins `make wheel` copies beside the wheel.
    from glassbox import __version__

    assert lines == ["-c wheels/constraints.txt", f"./wheels/glassbox-{__version__}-py3-none-any.whl[model]"]


def test_numba_can_cache_as_the_images_user():
    env = environment()
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/")  # writable by user 8888 in the s2i image too


def test_class_file_serves_predictions(model_service_factory, adult_test_rows):
    env = environment()
    service = model_service_factory(
        interface=env["MODEL_NAME"], cwd=str(CONTEXT), env={"INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}
    )
    answer = service.predict({"data": {"ndarray": adult_test_rows[:3].tolist()}})
    assert answer.status_code == 200, answer.text
    probabilities = np.asarray(answer.json()["data"]["ndarray"])
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
