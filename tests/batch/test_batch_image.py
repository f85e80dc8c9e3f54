"""The batch image's Dockerfile (no Docker engine here: read with BuildKit's parser): Ray's own image at
the pinned Ray version, the wheel with the batch extra under the repository's constraints."""

from __future__ import annotations

import tomllib
from pathlib import Path

import dockerfile
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy/docker/batch.Dockerfile"


def commands(cmd: str) -> list[tuple[str, ...]]:
    return [c.value for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd.upper() == cmd]


def test_the_image_is_rays_at_the_pinned_version_with_the_batch_extra():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (ray_pin,) = [r for r in extras["batch"] if r.startswith("ray==")]
    ((base,),) = commands("FROM")
    assert base == f"rayproject/ray:{ray_pin.removeprefix('ray==')}-py312-cpu"
    runs = " ".join(" ".join(v) for v in commands("RUN"))
    assert "pip install -c constraints.txt" in runs and '[batch]"' in runs
    assert "pip install --no-deps -c constraints.txt -r no-deps.txt" in runs  # dice-ml: counterfactuals
    ignore = (REPO / "deploy/docker/batch.Dockerfile.dockerignore").read_text().split()
    assert "!requirements/constraints.txt" in ignore and "!dist/*.whl" in ignore


def test_the_chart_names_this_image_and_rays_version():
    values = yaml.safe_load((REPO / "charts/glassbox/values.yaml").read_text())
    assert values["batch"]["image"]["repository"] == "glassbox-batch"
    assert "glassbox-batch:$(IMAGE_TAG)" in (REPO / "Makefile").read_text()
    template = (REPO / "charts/glassbox/templates/batch-rayjob.yaml").read_text()
    ((base,),) = commands("FROM")
    assert f'rayVersion: "{base.split(":")[1].split("-")[0]}"' in template
