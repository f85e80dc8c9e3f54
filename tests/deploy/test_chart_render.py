"""The chart through the real helm: lint --strict and template, for the defaults and every example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glassbox.deploy.helm import Helm

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/glassbox"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
CASES = [None, *EXAMPLES]
IDS = ["defaults", *(p.stem for p in EXAMPLES)]

pytestmark = pytest.mark.helm


def render(helm_bin: str, values: Path | None = None, *sets: str) -> list[dict]:
    helm = Helm(binary=helm_bin, namespace="ml")
    return helm.render("glassbox", CHART, [values] if values else [], sets)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_there_are_examples():
    assert {"native-explainer", "postgres-queue", "hpa", "baked-artifacts", "modeluri-artifacts"} <= {
        p.stem for p in EXAMPLES
    }


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_lint_strict(helm_bin, values):
    helm = Helm(binary=helm_bin)
    args = [helm_bin, "lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    out = helm.run(args)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_template_renders_both_seldon_deployments_or_the_native_block(helm_bin, values):
    docs = render(helm_bin, values)
    sdeps = by_kind(docs, "SeldonDeployment")
    model = sdeps["loanclassifier"]
    predictor = model["spec"]["predictors"][0]
    assert predictor["graph"] == {
        "name": "classifier",
        "type": "MODEL",
        "endpoint": {"type": "REST"},
        "children": [],
    }
    container = predictor["componentSpecs"][0]["spec"]["containers"][0]
    assert container["name"] == "classifier" and container["image"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ping"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/ping"
    if "explainer" in predictor:
        assert "loanclassifier-explainer" not in sdeps
        assert predictor["explainer"]["type"] == "AnchorTabular" and predictor["explainer"]["modelUri"]
    else:
        explainer = sdeps["loanclassifier-explainer"]["spec"]["predictors"][0]
        env = {
            e["name"]: e.get("value") for e in explainer["componentSpecs"][0]["spec"]["containers"][0]["env"]
        }
        # The explainer's remote predictor goes to the model predictor's in-cluster service.
        assert env["GLASSBOX_EXPLAINER_MODEL_URL"] == (
            "http://loanclassifier-default.ml.svc.cluster.local:8000/api/v1.0/predictions"
        )


def test_defaults_render_every_kind_once(helm_bin):
    docs = render(helm_bin)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Pod",
            "PodMonitor",
            "PrometheusRule",
            "Secret",
            "SeldonDeployment",
            "SeldonDeployment",
            "Service",
            "Service",
            "ServiceMonitor",
            "ServiceMonitor",
        ]
    )


def test_model_env_points_at_the_queue_and_its_key(helm_bin):
    model = by_kind(render(helm_bin), "SeldonDeployment")["loanclassifier"]
    container = model["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["GLASSBOX_MODEL_ARTIFACTS"]["value"] == "/mnt/models"
    assert env["GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD"]["value"] == "0.7"
    assert env["GLASSBOX_MODEL_QUEUE_URL"]["value"] == "http://glassbox-queue.ml.svc.cluster.local:8500"
    assert env["GLASSBOX_MODEL_QUEUE_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "glassbox-queue",
        "key": "owner-api-key",
    }


def test_set_values_reach_the_model(helm_bin):
    model = by_kind(
        render(helm_bin, None, "model.uncertaintyThreshold=0.55", "model.replicas=3", "model.maxRows=200"),
        "SeldonDeployment",
    )["loanclassifier"]
    predictor = model["spec"]["predictors"][0]
    env = {e["name"]: e.get("value") for e in predictor["componentSpecs"][0]["spec"]["containers"][0]["env"]}
    assert predictor["replicas"] == 3
    assert env["GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD"] == "0.55"
    assert env["GLASSBOX_MODEL_MAX_ROWS"] == "200"


def test_hpa_replaces_fixed_replicas(helm_bin):
    model = by_kind(render(helm_bin, CHART / "examples/hpa.yaml"), "SeldonDeployment")["loanclassifier"]
    predictor = model["spec"]["predictors"][0]
    assert "replicas" not in predictor
    hpa = predictor["componentSpecs"][0]["hpaSpec"]
    assert hpa["minReplicas"] == 2 and hpa["maxReplicas"] == 8
    assert hpa["metricsv2"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 60},
    }


def test_modeluri_artifacts_use_the_storage_initializer(helm_bin):
    docs = render(helm_bin, CHART / "examples/modeluri-artifacts.yaml")
    for sdep in by_kind(docs, "SeldonDeployment").values():
        spec = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
        init = spec["initContainers"][0]
        assert init["image"].startswith("seldonio/rclone-storage-initializer:")
        assert init["args"] == ["s3://glassbox-artifacts/loanclassifier/20261123T030000Z", "/mnt/models"]
        assert init["envFrom"] == [{"secretRef": {"name": "glassbox-bucket"}}]
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["artifacts"]["mountPath"] == "/mnt/models" and mounts["artifacts"]["readOnly"] is True


def test_baked_artifacts_have_no_initializer(helm_bin):
    for sdep in by_kind(
        render(helm_bin, CHART / "examples/baked-artifacts.yaml"), "SeldonDeployment"
    ).values():
        spec = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
        assert "initContainers" not in spec
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
        assert spec["containers"][0]["image"].startswith("registry.example.com/glassbox/")


def test_postgres_queue_uses_the_existing_secret_and_no_volume(helm_bin):
    docs = render(helm_bin, CHART / "examples/postgres-queue.yaml")
    assert not by_kind(docs, "PersistentVolumeClaim") and not by_kind(docs, "Secret")
    queue = by_kind(docs, "Deployment")["glassbox-queue"]
    assert queue["spec"]["replicas"] == 2 and "strategy" not in queue["spec"]
    env = {e["name"]: e for e in queue["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        env["GLASSBOX_QUEUE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == "glassbox-queue-credentials"
    )
    assert env["GLASSBOX_QUEUE_DATABASE_SCHEMA"]["value"] == "glassbox"


def test_sqlite_queue_keeps_its_volume_and_secret_on_uninstall(helm_bin):
    docs = render(helm_bin)
    pvc = by_kind(docs, "PersistentVolumeClaim")["glassbox-queue-data"]
    secret = by_kind(docs, "Secret")["glassbox-queue"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(secret["data"]) == {"database-url", "owner-api-key", "session-secret"}
    queue = by_kind(docs, "Deployment")["glassbox-queue"]
    assert queue["spec"]["strategy"] == {"type": "Recreate"}
    volumes = queue["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "data", "persistentVolumeClaim": {"claimName": "glassbox-queue-data"}}]


def test_queue_env_names_match_its_settings(helm_bin):
    """Every GLASSBOX_QUEUE_* the chart sets is a field of the queue's settings class."""
    from glassbox.annotation.settings import QueueSettings

    queue = by_kind(render(helm_bin), "Deployment")["glassbox-queue"]
    names = {e["name"] for e in queue["spec"]["template"]["spec"]["containers"][0]["env"]}
    fields = {f"GLASSBOX_QUEUE_{name.upper()}" for name in QueueSettings.model_fields}
    assert names and names <= fields


def test_component_env_names_match_their_settings(helm_bin):
    from glassbox.explain.settings import ExplainerSettings
    from glassbox.serving.settings import ModelSettings

    sdeps = by_kind(render(helm_bin, None, "model.maxRows=10"), "SeldonDeployment")
    for name, settings, prefix in (
        ("loanclassifier", ModelSettings, "GLASSBOX_MODEL_"),
        ("loanclassifier-explainer", ExplainerSettings, "GLASSBOX_EXPLAINER_"),
    ):
        env = sdeps[name]["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["env"]
        fields = {f"{prefix}{field.upper()}" for field in settings.model_fields}
        assert {e["name"] for e in env} <= fields, name


def test_every_pod_runs_as_non_root(helm_bin):
    for values in CASES:
        for doc in render(helm_bin, values):
            if doc["kind"] == "SeldonDeployment":
                specs = [c["spec"] for p in doc["spec"]["predictors"] for c in p["componentSpecs"]]
            elif doc["kind"] == "Deployment":
                specs = [doc["spec"]["template"]["spec"]]
            elif doc["kind"] == "Pod":
                specs = [doc["spec"]]
            else:
                continue
            for spec in specs:
                assert spec["securityContext"]["runAsNonRoot"] is True
                for container in spec["containers"] + spec.get("initContainers", []):
                    assert container["securityContext"]["allowPrivilegeEscalation"] is False
                    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_podmonitor_scrapes_seldon_metrics_with_namespace_and_pod(helm_bin):
    monitor = by_kind(render(helm_bin, CHART / "examples/kind.yaml"), "PodMonitor")["glassbox-seldon"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["model", "explainer"]}
    ]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/prometheus")
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {"namespace": ["__meta_kubernetes_namespace"], "pod": ["__meta_kubernetes_pod_name"]}


def test_servicemonitor_scrapes_the_queue(helm_bin):
    docs = render(helm_bin)
    monitor = by_kind(docs, "ServiceMonitor")["glassbox-queue"]
    service = by_kind(docs, "Service")["glassbox-queue"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_without_operator_falls_back_to_annotations(helm_bin):
    docs = render(helm_bin, CHART / "examples/without-operator.yaml")
    assert not by_kind(docs, "PodMonitor") and not by_kind(docs, "ServiceMonitor")
    for sdep in by_kind(docs, "SeldonDeployment").values():
        annotations = sdep["spec"]["predictors"][0]["componentSpecs"][0]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/path": "/prometheus",
            "prometheus.io/port": "6000",
        }
    pod = by_kind(docs, "Deployment")["glassbox-queue"]["spec"]["template"]["metadata"]["annotations"]
    assert pod["prometheus.io/path"] == "/metrics" and pod["prometheus.io/port"] == "8500"


def test_dashboard_configmap_carries_the_one_dashboard_file(helm_bin):
    configmap = by_kind(render(helm_bin), "ConfigMap")["glassbox-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards/glassbox.json").read_text())
    assert json.loads(configmap["data"]["glassbox.json"]) == shipped


def test_network_policies_admit_the_release_gateway_and_prometheus(helm_bin):
    docs = render(helm_bin)
    seldon = by_kind(docs, "NetworkPolicy")["glassbox-seldon"]["spec"]
    peers = [rule["from"][0] for rule in seldon["ingress"]]
    assert peers[0] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "glassbox", "app.kubernetes.io/instance": "glassbox"}
        }
    }
    assert peers[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "istio-system"}
    assert seldon["ingress"][2]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # The helm test pod carries the release labels, so the policy lets it predict.
    test_pod = by_kind(docs, "Pod")["glassbox-test-predict"]
    assert peers[0]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()


def test_helm_test_hook_posts_to_the_model(helm_bin):
    pod = by_kind(render(helm_bin), "Pod")["glassbox-test-predict"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "http://loanclassifier-default.ml.svc.cluster.local:8000/api/v1.0/predictions" in script


def test_notes_print_rest_and_seldonclient_calls(helm_bin, tmp_path):
    # `install --dry-run=client` renders NOTES.txt without a cluster.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    helm = Helm(binary=helm_bin, namespace="ml", env={"KUBECONFIG": str(kubeconfig)})
    out = helm.run([helm_bin, "install", "glassbox", str(CHART), "--namespace", "ml", "--dry-run=client"])
    notes = out.split("NOTES:", 1)[1]
    assert "http://localhost:8003/seldon/ml/loanclassifier/api/v1.0/predictions" in notes
    assert "http://localhost:8003/seldon/ml/loanclassifier-explainer/api/v1.0/predictions" in notes
    assert 'SeldonClient(gateway="istio", gateway_endpoint="localhost:8003", namespace="ml")' in notes
    assert 'client.predict(deployment_name="loanclassifier"' in notes
    native = helm.run(
        [
            helm_bin,
            "install",
            "glassbox",
            str(CHART),
            "-n",
            "ml",
            "--dry-run=client",
            "-f",
            str(CHART / "examples/native-explainer.yaml"),
        ]
    ).split("NOTES:", 1)[1]
    assert "/seldon/ml/loanclassifier-explainer/default/api/v1.0/explain" in native
    assert 'client.explain(deployment_name="loanclassifier", predictor="default"' in native
