"""The chart's KubeRay RayJob (batch.enabled): rendered by helm, checked against KubeRay 1.7's RayJob CRD
(strict: an unknown field is an error), and its entrypoint parsed by the real ``glassbox`` parser."""

from __future__ import annotations

import copy
import shlex
import subprocess
from pathlib import Path

import pytest

from glassbox.cli import build_parser
from glassbox.deploy.helm import Helm
from glassbox.deploy.validate import crd_validator, errors

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/glassbox"
RAYJOB_CRD = REPO / "tests/data/kuberay-1.7/ray.io_rayjobs.yaml"

pytestmark = pytest.mark.helm

CASES = {
    "baked": ["batch.enabled=true"],
    "modelUri-review-claim": [
        "batch.enabled=true", "batch.artifacts.source=modelUri", "batch.artifacts.modelUri=gs://models/v7",
        "batch.review.enabled=true", "batch.data.existingClaim=batch-data",
        "batch.activeDeadlineSeconds=7200", "batch.workers.replicas=3",
        "batch.methods={anchors,mymethods.shap:load}", "imagePullSecrets[0].name=reg",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def rayjob_validator():
    return crd_validator(RAYJOB_CRD)


def rayjobs(helm_bin: str, sets: list[str]) -> list[dict]:
    docs = Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, (), sets)
    return [d for d in docs if d["kind"] == "RayJob"]


@pytest.mark.parametrize("sets", CASES.values(), ids=CASES.keys())
def test_the_rayjob_matches_kuberays_crd(helm_bin, rayjob_validator, sets):
    (job,) = rayjobs(helm_bin, sets)
    assert job["apiVersion"] == "ray.io/v1"
    assert errors(rayjob_validator, job) == []
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"  # the version pinned in pyproject.toml
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head only drives


def test_the_entrypoint_is_explain_batch_on_the_ray_cluster(helm_bin):
    (job,) = rayjobs(helm_bin, CASES["modelUri-review-claim"] + ["batch.params.anchors.threshold=0.9"])
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["glassbox", "explain-batch"]
    args = build_parser().parse_args(argv[1:])
    assert args.ray_address == "auto" and args.workers == 3 * 2  # replicas x cpus
    assert args.methods == ["anchors", "mymethods.shap:load"]
    assert args.params == ['anchors={"threshold":"0.9"}']
    assert str(args.artifacts) == "/mnt/models" and args.review_top_k == 20
    assert args.queue_url == "http://glassbox-queue.ml.svc.cluster.local:8500"
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    # Every pod fetches the same model version; only the head (the driver) gets the data and the key.
    for pod in (head, worker):
        assert pod["initContainers"][0]["args"] == ["gs://models/v7", "/mnt/models"]
    env = {e["name"] for e in head["containers"][0]["env"]}
    assert "GLASSBOX_QUEUE_API_KEY" in env
    assert "GLASSBOX_QUEUE_API_KEY" not in {e["name"] for e in worker["containers"][0]["env"]}
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "batch-data"}} in head["volumes"]


def test_the_crd_check_catches_a_typo_and_a_wrong_type(helm_bin, rayjob_validator):
    (job,) = rayjobs(helm_bin, CASES["baked"])
    typo = copy.deepcopy(job)
    typo["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 2
    assert any("'replica' was unexpected" in e for e in errors(rayjob_validator, typo))
    wrong = copy.deepcopy(job)
    wrong["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    assert any("is not of type 'string'" in e for e in errors(rayjob_validator, wrong))


def test_no_rayjob_by_default_and_bad_values_are_refused(helm_bin):
    assert rayjobs(helm_bin, []) == []
    for sets, message in [
        (["batch.enabled=true", "batch.output=/data/out.csv"], "/batch/output"),
        (["batch.enabled=true", "batch.review.enabled=true", "queue.enabled=false"], "needs queue.enabled"),
        (["batch.enabled=true", "batch.artifacts.source=modelUri"], "modelUri"),
    ]:
        argv = [helm_bin, "template", "g", str(CHART)] + [f"--set={s}" for s in sets]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and message in done.stderr, (sets, done.stderr)


@pytest.mark.parametrize("sets", CASES.values(), ids=CASES.keys())
def test_helm_lint_strict_passes_with_the_rayjob(helm_bin, sets):
    argv = [helm_bin, "lint", "--strict", str(CHART)] + [f"--set={s}" for s in sets]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
