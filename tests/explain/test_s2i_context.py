"""The explainer's s2i build context: thin, and saying the same as its Dockerfile.

(That Seldon serves the context's class file is shown in test_remote.py, which starts
``seldon-core-microservice LoanExplainer`` inside this directory.)
"""

from __future__ import annotations

from pathlib import Path

CONTEXT = Path(__file__).resolve().parents[2] / "explainers/loanclassifier-explainer"


def test_context_environment_and_dockerfile_agree():
    lines = (CONTEXT / ".s2i/environment").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert (settings["MODEL_NAME"], settings["SERVICE_TYPE"], settings["PERSISTENCE"]) == (
        "LoanExplainer",
        "MODEL",
        "0",
    )
    assert int(settings["GUNICORN_THREADS"]) > 1  # polls and refusals answered while explaining
    assert settings["NUMBA_CACHE_DIR"].startswith("/tmp/")  # writable by user 8888 in the s2i image too
    dockerfile = (CONTEXT / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in dockerfile and "USER 8888" in dockerfile
    assert "seldon-core-microservice $MODEL_NAME --service-type $SERVICE_TYPE" in dockerfile
    for key, value in settings.items():
        assert f"{key}={value}" in dockerfile, f"{key} differs between .s2i/environment and the Dockerfile"


def test_class_file_only_reexports_the_package_class():
    from glassbox import __version__
    from glassbox.explain.component import LoanExplainer

    namespace: dict = {}
    exec((CONTEXT / "LoanExplainer.py").read_text(), namespace)
    assert namespace["LoanExplainer"] is LoanExplainer
    requirements = [
        line for line in (CONTEXT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"
    ]
    # Only the [explainer] extra (alibi, no kubernetes), at the pins `make wheel` copies beside the wheel.
    assert requirements == [
        "-c wheels/constraints.txt",
        f"./wheels/glassbox-{__version__}-py3-none-any.whl[explainer]",
    ]
