"""The monitor's image against the chart, read with BuildKit's parser (no Docker engine here): the same
command, port and artifacts path, built and baked by `make` under the name the chart pulls, and the
package extra it installs exists."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import dockerfile
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy/docker/monitor.Dockerfile"
VALUES = yaml.safe_load((REPO / "charts/glassbox/values.yaml").read_text())


def instructions(cmd: str) -> list[tuple[str, ...]]:
    return [c.value for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd.upper() == cmd]


def make_plan(target: str) -> str:
    return subprocess.run(
        ["make", "-n", "-o", "wheel", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_image_runs_what_the_chart_runs():
    monitor = VALUES["monitor"]
    assert instructions("CMD")[-1] == (
        *monitor["command"],
        "--host",
        "0.0.0.0",
        "--port",
        str(monitor["port"]),
    )
    assert instructions("EXPOSE")[-1] == (str(monitor["port"]),)
    # Where baked artifacts land (baked-artifacts.Dockerfile) and where the chart points the monitor.
    assert VALUES["model"]["artifacts"]["path"] == "/mnt/models"
    runs = " ".join(c for (c,) in instructions("RUN"))
    assert re.search(r"mkdir -p /mnt/models && chown 8888 /mnt/models", runs)


def test_the_extra_it_installs_exists():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "monitor" in extras, "pyproject.toml has no [monitor] extra for deploy/docker/monitor.Dockerfile"
    names = {re.split(r"[=<>\[ ]", requirement, maxsplit=1)[0] for requirement in extras["monitor"]}
    assert {"scipy", "starlette", "uvicorn", "prometheus-client"} <= names, names


def test_dockerignore_lets_through_only_what_it_copies():
    ignore = (DOCKERFILE.parent / f"{DOCKERFILE.name}.dockerignore").read_text()
    for source, _dest in (c[:2] for c in instructions("COPY")):
        assert f"!{source.rstrip('/')}" in ignore or f"!{source}*.whl" in ignore, source


def test_make_builds_and_bakes_the_image_the_chart_names():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    image = f"{VALUES['monitor']['image']['repository']}:{version}"
    assert f"-f deploy/docker/monitor.Dockerfile -t {image} ." in make_plan("images-docker")
    assert f"-f deploy/docker/monitor.Dockerfile -t {image} ." in make_plan("images-s2i")
    baked = make_plan("images-baked")
    assert re.search(r"for image in [^;]*\bglassbox-monitor\b", baked), baked
