"""The explainer's Redis in the chart: an existing one by URL or Secret, or one of the chart's own.

Rendered by the real helm; the chart's Redis arguments are run by a real redis-server, which must
accept them and apply the eviction policy the explainer's keys are designed for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from conftest import require
from glassbox.deploy.errors import HelmFailed
from glassbox.deploy.helm import Helm
from glassbox.explain.settings import ExplainerSettings
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port

CHART = Path(__file__).resolve().parents[2] / "charts/glassbox"
EXAMPLE = CHART / "examples/explainer-replicas.yaml"
SERVICE_URL = "redis://glassbox-explainer-redis.ml.svc.cluster.local:6379/0"

pytestmark = pytest.mark.helm


def render(helm_bin: str, *sets: str, values: Path | None = None) -> list[dict]:
    return Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, [values] if values else [], sets)


def named(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def explainer_env(docs: list[dict]) -> dict[str, dict]:
    sdep = named(docs, "SeldonDeployment", "loanclassifier-explainer")
    assert sdep is not None
    container = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_defaults_have_no_redis_and_no_redis_url(helm_bin):
    docs = render(helm_bin)
    assert not any("redis" in d["metadata"]["name"] for d in docs)
    assert "GLASSBOX_EXPLAINER_REDIS_URL" not in explainer_env(docs)


def test_the_charts_own_redis_is_wired_to_the_explainer(helm_bin):
    docs = render(helm_bin, values=EXAMPLE)
    name = "glassbox-explainer-redis"
    deployment, service, policy = (
        named(docs, kind, name) for kind in ("Deployment", "Service", "NetworkPolicy")
    )
    assert deployment and service and policy
    env = explainer_env(docs)
    assert env["GLASSBOX_EXPLAINER_REDIS_URL"]["value"] == SERVICE_URL
    assert (
        "GLASSBOX_EXPLAINER_REDIS_URL".removeprefix("GLASSBOX_EXPLAINER_").lower()
        in ExplainerSettings.model_fields
    )
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["image"] == "redis:7.4-alpine"
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "redis"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    # Only the explainer's pods may connect: the policy admits the labels the explainer's pods carry.
    explainer_pods = named(docs, "SeldonDeployment", "loanclassifier-explainer")["spec"]["predictors"][0]
    peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert peer.items() <= explainer_pods["componentSpecs"][0]["metadata"]["labels"].items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert explainer_pods["replicas"] == 2


def test_an_existing_redis_by_url_or_secret(helm_bin):
    by_url = render(helm_bin, "explainer.redis.url=rediss://:pw@cache.example:6380/2")
    assert (
        explainer_env(by_url)["GLASSBOX_EXPLAINER_REDIS_URL"]["value"] == "rediss://:pw@cache.example:6380/2"
    )
    assert named(by_url, "Deployment", "glassbox-explainer-redis") is None
    by_secret = render(helm_bin, "explainer.redis.existingSecret=explainer-redis", "explainer.redis.url=")
    assert explainer_env(by_secret)["GLASSBOX_EXPLAINER_REDIS_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "explainer-redis", "key": "redis-url"}
    }


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["explainer.redis.url=http://cache:6379"], "at '/explainer/redis/url'"),
        (
            ["explainer.redis.deploy=true", "explainer.redis.url=redis://cache:6379/0"],
            "at '/explainer/redis/url'",
        ),
        (
            ["explainer.redis.deploy=true", "explainer.redis.existingSecret=s"],
            "at '/explainer/redis/existingSecret'",
        ),
        (["explainer.redis.maxmemory=lots"], "at '/explainer/redis/maxmemory'"),
        (["explainer.redis.deplo=true"], "additional properties 'deplo' not allowed"),
    ],
)
def test_contradictory_or_malformed_redis_values_are_refused(helm_bin, sets, expected):
    with pytest.raises(HelmFailed) as caught:
        render(helm_bin, *sets)
    assert "values don't meet the specifications of the schema" in caught.value.message
    assert expected in caught.value.message


def test_a_real_redis_server_accepts_the_charts_arguments(helm_bin, tmp_path):
    require(shutil.which("redis-server"), "redis-server (apt-get install redis-server)")
    deployment = named(render(helm_bin, values=EXAMPLE), "Deployment", "glassbox-explainer-redis")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    # The pod's own listener is 0.0.0.0:6379; here loopback on a free port, the rest as rendered.
    argv = [*container["command"], *container["args"], "--port", str(port), "--bind", LOOPBACK]
    server = ManagedProcess("redis", argv, tmp_path / "redis.log", cwd=str(tmp_path), ready_ports=(port,))
    server.start(timeout=20)
    try:
        client = redis.Redis(host=LOOPBACK, port=port)
        config = client.config_get("*")
        assert config["maxmemory-policy"] == "volatile-lru"
        assert int(config["maxmemory"]) == 128 * 1024 * 1024
        assert (config["save"], config["appendonly"]) == ("", "no")
    finally:
        server.stop()
