"""The monitor's place in the chart, through the real helm: its Deployment, Service, NetworkPolicy,
ServiceMonitor and PrometheusRule, the model's env pointing at it, and the switches that turn it off."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from glassbox.deploy.errors import HelmFailed
from glassbox.deploy.helm import Helm
from glassbox.deploy.validate import validate_core

CHART = Path(__file__).resolve().parents[2] / "charts/glassbox"
RULES = CHART / "rules/glassbox.rules.yaml"
MONITOR_OBJECTS = {
    ("Deployment", "glassbox-monitor"),
    ("Service", "glassbox-monitor"),
    ("NetworkPolicy", "glassbox-monitor"),
    ("ServiceMonitor", "glassbox-monitor"),
    ("PrometheusRule", "glassbox-monitor"),
}

pytestmark = pytest.mark.helm


def render(helm_bin: str, values: Path | None = None, *sets: str) -> list[dict]:
    return Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, [values] if values else [], sets)


def get(docs: list[dict], kind: str, name: str = "glassbox-monitor") -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def model_env(docs: list[dict]) -> dict[str, dict]:
    sdep = get(docs, "SeldonDeployment", "loanclassifier")
    container = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def monitor_container(docs: list[dict]) -> dict:
    return get(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.fixture(scope="module")
def docs(helm_bin) -> list[dict]:
    return render(helm_bin)


def test_defaults_render_the_monitor_and_its_monitoring(docs):
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} >= MONITOR_OBJECTS
    deployment = get(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1  # its windows live in the process
    validate_core(deployment)
    container = monitor_container(docs)
    assert container["image"] == "glassbox-monitor:0.1.0"
    assert container["command"] == ["glassbox", "monitor", "serve"]
    assert container["args"] == ["--host", "0.0.0.0", "--port", "8600"]
    assert container["ports"] == [{"name": "http", "containerPort": 8600, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}


def test_monitor_env_reads_the_models_artifacts_and_posts_outliers_to_the_queue(helm_bin):
    docs = render(helm_bin, None, "monitor.windows.rows=800", "monitor.windows.seconds=120",
                  "monitor.pValue=0.01", "model.artifacts.path=/models/adult")  # fmt: skip
    env = {e["name"]: e for e in monitor_container(docs)["env"]}
    assert env["GLASSBOX_MONITOR_ARTIFACTS"]["value"] == "/models/adult"
    assert env["GLASSBOX_MONITOR_WINDOW_ROWS"]["value"] == "800"
    assert env["GLASSBOX_MONITOR_WINDOW_SECONDS"]["value"] == "120"
    assert env["GLASSBOX_MONITOR_P_VALUE"]["value"] == "0.01"
    # Gone within the grace terminationGracePeriodSeconds leaves after the preStop sleep.
    assert env["GLASSBOX_MONITOR_SHUTDOWN_GRACE_SECONDS"]["value"] == "4"
    assert env["GLASSBOX_MONITOR_QUEUE_URL"]["value"] == "http://glassbox-queue.ml.svc.cluster.local:8500"
    assert env["GLASSBOX_MONITOR_QUEUE_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "glassbox-queue",
        "key": "owner-api-key",
    }


def test_the_model_forwards_its_sample_to_the_monitors_service(helm_bin):
    docs = render(helm_bin, None, "monitor.sample=0.25", "monitor.port=9100")
    env = model_env(docs)
    service = get(docs, "Service")
    port = service["spec"]["ports"][0]
    assert env["GLASSBOX_MODEL_MONITOR_URL"]["value"] == (
        f"http://{service['metadata']['name']}.ml.svc.cluster.local:{port['port']}"
    )
    assert port["port"] == 9100 and port["targetPort"] == "http"
    assert env["GLASSBOX_MODEL_MONITOR_SAMPLE"]["value"] == "0.25"
    pod_labels = get(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(service["spec"]["selector"], pod_labels)


def test_network_policies_admit_model_to_monitor_monitor_to_queue_and_prometheus(docs):
    policy = get(docs, "NetworkPolicy")["spec"]
    monitor_pod = get(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["podSelector"]["matchLabels"], monitor_pod)
    (rule,) = policy["ingress"]
    model_peer, prometheus_peer = rule["from"]
    model_pod = get(docs, "SeldonDeployment", "loanclassifier")["spec"]["predictors"][0]["componentSpecs"][0][
        "metadata"
    ]["labels"]
    explainer_pod = get(docs, "SeldonDeployment", "loanclassifier-explainer")["spec"]["predictors"][0][
        "componentSpecs"
    ][0]["metadata"]["labels"]
    queue_pod = get(docs, "Deployment", "glassbox-queue")["spec"]["template"]["metadata"]["labels"]
    assert matches(model_peer["podSelector"]["matchLabels"], model_pod)
    assert not matches(model_peer["podSelector"]["matchLabels"], explainer_pod)
    assert not matches(model_peer["podSelector"]["matchLabels"], queue_pod)
    assert prometheus_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The queue's policy lets the monitor's pod in (outliers become records).
    queue_rule = get(docs, "NetworkPolicy", "glassbox-queue")["spec"]["ingress"][0]
    assert matches(queue_rule["from"][0]["podSelector"]["matchLabels"], monitor_pod)


def test_servicemonitor_scrapes_the_monitors_metrics(helm_bin):
    docs = render(helm_bin, CHART / "examples/kind.yaml")
    monitor = get(docs, "ServiceMonitor")
    service = get(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == (service["spec"]["ports"][0]["name"], "/metrics")
    targets = {r["targetLabel"] for r in endpoint["relabelings"]}
    assert targets == {"namespace", "pod"}  # what the dashboard and the alerts group by


def test_prometheusrule_carries_the_one_rules_file(helm_bin):
    docs = render(helm_bin, CHART / "examples/kind.yaml")
    rule = get(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == {"groups": yaml.safe_load(RULES.read_text())["groups"]}
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"GlassboxFeatureDrift", "GlassboxHighOutlierRate"} <= alerts
    drift = next(
        r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "GlassboxFeatureDrift"
    )
    assert "{{ $labels.feature }}" in drift["annotations"]["summary"]  # left for Prometheus to fill


def test_modeluri_artifacts_reach_the_monitor_through_the_storage_initializer(helm_bin):
    spec = get(render(helm_bin, CHART / "examples/modeluri-artifacts.yaml"), "Deployment")["spec"][
        "template"
    ]["spec"]
    (init,) = spec["initContainers"]
    assert init["args"] == ["s3://glassbox-artifacts/loanclassifier/20261123T030000Z", "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": "glassbox-bucket"}}]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "artifacts", "mountPath": "/mnt/models", "readOnly": True}
    ]
    assert spec["containers"][0]["image"] == "registry.example.com/glassbox/glassbox-monitor:0.1.0"


def test_without_operator_the_monitor_is_scraped_by_annotations(helm_bin):
    docs = render(helm_bin, CHART / "examples/without-operator.yaml")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"PrometheusRule", "ServiceMonitor", "PodMonitor", "NetworkPolicy"}
    annotations = get(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": "8600",
    }


def test_monitor_off_renders_none_of_it_and_the_model_forwards_nothing(helm_bin):
    docs = render(helm_bin, None, "monitor.enabled=false")
    assert not MONITOR_OBJECTS & {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not [name for name in model_env(docs) if name.startswith("GLASSBOX_MODEL_MONITOR")]


def test_queue_off_leaves_the_monitor_without_a_queue(helm_bin):
    docs = render(helm_bin, None, "queue.enabled=false")
    env = {e["name"] for e in monitor_container(docs)["env"]}
    assert "GLASSBOX_MONITOR_ARTIFACTS" in env
    assert not {"GLASSBOX_MONITOR_QUEUE_URL", "GLASSBOX_MONITOR_QUEUE_API_KEY"} & env


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("monitor.sample=1.5", "at '/monitor/sample': '1.5' does not match pattern"),
        ("monitor.sample=half", "at '/monitor/sample': 'half' does not match pattern"),
        ("monitor.windows.rows=0", "at '/monitor/windows/rows': minimum: got 0, want 1"),
        ("monitor.pValue=1", "at '/monitor/pValue'"),
        ("monitor.image.repository=", "at '/monitor/image/repository': minLength: got 0, want 1"),
        ("monitor.replicas=2", "at '/monitor': additional properties 'replicas' not allowed"),
        ("monitoring.prometheusRule.labels.release=1", "at '/monitoring/prometheusRule/labels/release'"),
    ],
)
def test_bad_monitor_values_are_refused_with_the_value_named(helm_bin, assignment, expected):
    with pytest.raises(HelmFailed) as caught:
        render(helm_bin, None, assignment)
    assert expected in caught.value.message


def test_monitor_env_names_match_its_settings(docs):
    """Every GLASSBOX_MONITOR_* the chart sets is a field of the monitor's settings class."""
    from glassbox.monitor.settings import MonitorSettings

    names = {e["name"] for e in monitor_container(docs)["env"]}
    fields = {f"GLASSBOX_MONITOR_{name.upper()}" for name in MonitorSettings.model_fields}
    assert names and names <= fields, names - fields
