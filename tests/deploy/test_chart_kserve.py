"""protocol: v2 through the real helm: a KServe InferenceService on Glassbox's ServingRuntime.

Rendered InferenceServices and ServingRuntimes are checked against KServe 0.20's CRD schemas (copies in
tests/data/kserve-0.20/), made strict as the SeldonDeployments are (an unknown field is an error); the
core kinds against Kubernetes' strict schemas. The Seldon examples render with protocol v2 laid over
them, except the one KServe has no counterpart for (Seldon's native explainer), which the values schema
must refuse by name.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from glassbox.deploy.errors import HelmFailed
from glassbox.deploy.helm import Helm
from glassbox.deploy.validate import CORE_KINDS, crd_validators, custom_errors, validate_core

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/glassbox"
V2_EXAMPLES = sorted(p for p in (CHART / "examples").glob("*.yaml") if p.stem != "native-explainer")
CASES = [None, *V2_EXAMPLES]
IDS = ["defaults", *(p.stem for p in V2_EXAMPLES)]
# Prometheus Operator kinds: no offline schema; the tests below check their fields.
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
V2 = "protocol=v2"

pytestmark = pytest.mark.helm


@pytest.fixture(scope="module")
def validators():
    return crd_validators(REPO / "tests/data")


def render(helm_bin: str, values: Path | None = None, *sets: str) -> list[dict]:
    helm = Helm(binary=helm_bin, namespace="ml")
    return helm.render("glassbox", CHART, [values] if values else [], [V2, *sets])


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_v2_renders_kserve_objects_that_match_the_crds(helm_bin, validators, values):
    docs = render(helm_bin, values)
    kinds = [d["kind"] for d in docs]
    assert "SeldonDeployment" not in kinds
    assert kinds.count("InferenceService") == 1 and kinds.count("ServingRuntime") == 1
    assert set(kinds) <= CORE_KINDS | OPERATOR_KINDS | {"InferenceService", "ServingRuntime"}, kinds
    for doc in docs:
        if doc["kind"] in ("InferenceService", "ServingRuntime"):
            assert custom_errors(validators, doc) == [], doc["metadata"]["name"]
        elif doc["kind"] in CORE_KINDS:
            validate_core(doc)


@pytest.mark.parametrize("values", [None, CHART / "examples/hpa.yaml"], ids=["defaults", "hpa"])
def test_v2_passes_helm_lint_strict(helm_bin, values):
    helm = Helm(binary=helm_bin)
    args = [helm_bin, "lint", "--strict", str(CHART), "--set", V2]
    out = helm.run(args + (["--values", str(values)] if values else []))
    assert "0 chart(s) failed" in out


def test_seldon_protocol_renders_no_kserve_objects(helm_bin):
    docs = Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART)
    kinds = {d["kind"] for d in docs}
    assert "SeldonDeployment" in kinds and not kinds & {"InferenceService", "ServingRuntime"}
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert "glassbox-seldon" in names and "glassbox-kserve" not in names


def test_crd_validation_catches_typos_and_wrong_types(helm_bin, validators):
    docs = render(helm_bin)
    isvc, runtime = one(docs, "InferenceService"), one(docs, "ServingRuntime")
    typo = copy.deepcopy(isvc)
    typo["spec"]["predictor"]["model"]["envv"] = []
    assert any("'envv' was unexpected" in e for e in custom_errors(validators, typo))
    wrong = copy.deepcopy(isvc)
    wrong["spec"]["explainer"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert any("is not of type 'integer'" in e for e in custom_errors(validators, wrong))
    metric = copy.deepcopy(isvc)
    metric["spec"]["predictor"]["scaleMetric"] = "gpu"
    assert any("'gpu' is not one of" in e for e in custom_errors(validators, metric))
    runtime_typo = copy.deepcopy(runtime)
    runtime_typo["spec"]["protocolVersion"] = ["v2"]
    assert any("'protocolVersion' was unexpected" in e for e in custom_errors(validators, runtime_typo))
    old_api = copy.deepcopy(isvc) | {"apiVersion": "serving.kserve.io/v1alpha1"}
    assert custom_errors(validators, old_api) == [
        "apiVersion: 'serving.kserve.io/v1alpha1' is not 'serving.kserve.io/v1beta1'"
    ]


def test_predictor_runs_on_the_releases_runtime(helm_bin):
    docs = render(helm_bin)
    isvc, runtime = one(docs, "InferenceService"), one(docs, "ServingRuntime")
    assert isvc["metadata"]["name"] == "loanclassifier"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] == "glassbox-v2"
    assert model["modelFormat"] in [
        {k: v for k, v in f.items() if k != "autoSelect"} for f in runtime["spec"]["supportedModelFormats"]
    ]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    (container,) = runtime["spec"]["containers"]
    # KServe merges predictor.model into the runtime container named kserve-container.
    assert container["name"] == "kserve-container"
    assert container["image"] == "glassbox-v2:0.1.0"
    assert container["command"] == ["glassbox", "serve-v2"]
    assert container["args"] == [
        "--component=model",
        "--artifacts=/mnt/models",
        "--name=loanclassifier",
        "--host=0.0.0.0",
        "--http-port=8080",
        "--grpc-port=9000",
        "--metrics-port=8082",
    ]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert model["lifecycle"]["preStop"]["exec"]["command"][-1] == "sleep 10"
    assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] == 16


def test_explainer_is_a_custom_container_asking_the_predictor_over_v2(helm_bin):
    explainer = one(render(helm_bin), "InferenceService")["spec"]["explainer"]
    (container,) = explainer["containers"]
    assert container["command"] == ["glassbox", "serve-v2"]
    assert (
        "--component=explainer" in container["args"]
        and "--name=loanclassifier-explainer" in container["args"]
    )
    # KServe's predictor Service in the release's namespace, V2 model path.
    assert container["args"][-1] == (
        "--model-url=http://loanclassifier-predictor.ml.svc.cluster.local/v2/models/loanclassifier/infer"
    )
    assert explainer["timeout"] == 30  # explainer.restTimeoutMs, in seconds
    assert (explainer["minReplicas"], explainer["maxReplicas"]) == (1, 1)


def test_env_names_match_the_components_settings(helm_bin):
    from glassbox.explain.settings import ExplainerSettings
    from glassbox.serving.settings import ModelSettings

    isvc = one(
        render(helm_bin, None, "model.maxRows=10", "explainer.redis.url=redis://r:6379/0"), "InferenceService"
    )
    model_env = env_of(isvc["spec"]["predictor"]["model"])
    explainer_env = env_of(isvc["spec"]["explainer"]["containers"][0])
    assert {f"GLASSBOX_MODEL_{f.upper()}" for f in ModelSettings.model_fields} >= model_env.keys()
    assert {f"GLASSBOX_EXPLAINER_{f.upper()}" for f in ExplainerSettings.model_fields} >= explainer_env.keys()
    assert model_env["GLASSBOX_MODEL_MAX_ROWS"]["value"] == "10"
    assert model_env["GLASSBOX_MODEL_QUEUE_URL"]["value"] == "http://glassbox-queue.ml.svc.cluster.local:8500"
    assert model_env["GLASSBOX_MODEL_QUEUE_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "glassbox-queue",
        "key": "owner-api-key",
    }
    assert explainer_env["GLASSBOX_EXPLAINER_REDIS_URL"]["value"] == "redis://r:6379/0"


def test_modeluri_artifacts_go_through_kserves_storage_initializer(helm_bin):
    docs = render(helm_bin, CHART / "examples/modeluri-artifacts.yaml")
    isvc, runtime = one(docs, "InferenceService"), one(docs, "ServingRuntime")
    assert (
        isvc["spec"]["predictor"]["model"]["storageUri"]
        == "s3://glassbox-artifacts/loanclassifier/20261123T030000Z"
    )
    explainer = isvc["spec"]["explainer"]["containers"][0]
    assert env_of(explainer)["STORAGE_URI"]["value"].startswith("s3://glassbox-artifacts/")
    # KServe always downloads to /mnt/models: both components read from there.
    assert "--artifacts=/mnt/models" in runtime["spec"]["containers"][0]["args"]
    assert "--artifacts=/mnt/models" in explainer["args"]
    baked = one(render(helm_bin), "InferenceService")
    assert "storageUri" not in baked["spec"]["predictor"]["model"]


def test_hpa_and_replicas_become_kserve_scaling(helm_bin):
    hpa = one(render(helm_bin, CHART / "examples/hpa.yaml"), "InferenceService")["spec"]["predictor"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["scaleMetric"], hpa["scaleTarget"]) == (
        2,
        8,
        "cpu",
        60,
    )
    fixed = one(render(helm_bin, None, "model.replicas=3"), "InferenceService")["spec"]["predictor"]
    assert (fixed["minReplicas"], fixed["maxReplicas"]) == (3, 3) and "scaleMetric" not in fixed


def test_pods_carry_the_labels_the_policies_and_monitors_select(helm_bin):
    docs = render(helm_bin)
    spec = one(docs, "InferenceService")["spec"]
    assert spec["predictor"]["labels"]["app.kubernetes.io/component"] == "model"
    assert spec["explainer"]["labels"]["app.kubernetes.io/component"] == "explainer"
    monitor = one(docs, "PodMonitor")["spec"]
    for component in ("predictor", "explainer"):
        labels = spec[component]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items()
        assert labels["app.kubernetes.io/component"] in monitor["selector"]["matchExpressions"][0]["values"]
        assert spec[component]["securityContext"]["runAsNonRoot"] is True
    # The queue's policy admits the release's pods by name and instance: the predictor forwards to it.
    queue_policy = next(
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "glassbox-queue"
    )
    peer = queue_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert peer.items() <= spec["predictor"]["labels"].items()


def test_network_policy_selects_kserves_pods(helm_bin):
    docs = render(helm_bin)
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert "glassbox-seldon" not in policies
    policy = policies["glassbox-kserve"]
    # KServe labels every pod of the InferenceService (predictor and explainer) with its name.
    assert policy["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "loanclassifier"}}
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "glassbox",
        "app.kubernetes.io/instance": "glassbox",
    }
    assert policy["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "istio-system"
    }
    assert policy["ingress"][2]["ports"] == [{"port": 8082, "protocol": "TCP"}]


def test_podmonitor_moves_the_kserve_container_target_to_the_metrics_port(helm_bin):
    endpoint = one(render(helm_bin, CHART / "examples/kind.yaml"), "PodMonitor")["spec"][
        "podMetricsEndpoints"
    ][0]
    assert endpoint["path"] == "/metrics" and "port" not in endpoint
    keep, address, *rest = endpoint["relabelings"]
    assert keep == {
        "sourceLabels": ["__meta_kubernetes_pod_container_name"],
        "regex": "kserve-container",
        "action": "keep",
    }
    assert address["targetLabel"] == "__address__" and address["replacement"] == "${1}:8082"
    import re

    # Prometheus anchors relabel regexes: the pod IP with or without a declared port becomes IP:8082.
    for source in ("10.1.2.3:8080", "10.1.2.3"):
        match = re.fullmatch(address["regex"], source)
        assert match and f"{match.group(1)}:8082" == "10.1.2.3:8082"
    assert {r["targetLabel"] for r in rest} == {"deployment_name", "namespace", "pod"}


def test_without_operator_pods_carry_scrape_annotations(helm_bin):
    spec = one(render(helm_bin, CHART / "examples/without-operator.yaml"), "InferenceService")["spec"]
    for component in ("predictor", "explainer"):
        assert spec[component]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/path": "/metrics",
            "prometheus.io/port": "8082",
        }


def test_queue_gets_no_seldon_urls_on_v2(helm_bin):
    """The queue's feedback and on-demand explanations speak Seldon's protocol; on V2 they stay off."""
    queue = next(
        d for d in render(helm_bin) if d["kind"] == "Deployment" and d["metadata"]["name"] == "glassbox-queue"
    )
    names = {e["name"] for e in queue["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "GLASSBOX_QUEUE_OWNER_API_KEY" in names
    assert not names & {"GLASSBOX_QUEUE_FEEDBACK_URL", "GLASSBOX_QUEUE_EXPLAINER_URL"}


def test_helm_test_hook_posts_a_v2_request(helm_bin):
    pod = one(render(helm_bin), "Pod")
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "http://loanclassifier-predictor.ml.svc.cluster.local/v2/models/loanclassifier/infer" in script
    assert '"datatype": "FP64"' in script and "grep -q '\"outputs\"'" in script


def test_notes_print_the_v2_calls(helm_bin, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    helm = Helm(binary=helm_bin, namespace="ml", env={"KUBECONFIG": str(kubeconfig)})
    out = helm.run([helm_bin, "install", "glassbox", str(CHART), "-n", "ml", "--dry-run=client", "--set", V2])
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl -n ml get inferenceservice loanclassifier" in notes
    assert "/v2/models/loanclassifier/infer" in notes
    assert (
        "http://loanclassifier-explainer.ml.svc.cluster.local/v2/models/loanclassifier-explainer/infer"
        in notes
    )
    assert "SeldonClient" not in notes and "seldondeployments" not in notes


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ["explainer.mode=native", "explainer.native.modelUri=s3://b/x"],
            "at '/explainer/mode': value must be 'component'",
        ),
        (["protocol=v3"], "at '/protocol'"),
        (["kserve.deploymentMode=ModelMesh"], "at '/kserve/deploymentMode'"),
        (["kserve.image.repository="], "at '/kserve/image/repository': minLength: got 0, want 1"),
        (["kserve.metricsPort=80"], "at '/kserve/metricsPort': minimum: got 80, want 1,024"),
    ],
)
def test_bad_v2_values_are_refused_with_the_value_named(helm_bin, sets, expected):
    with pytest.raises(HelmFailed) as caught:
        render(helm_bin, None, *sets)
    assert expected in caught.value.message


def test_toggles_still_validate_on_v2(helm_bin, validators):
    for sets in (
        ["explainer.enabled=false", "queue.enabled=false"],
        ["networkPolicy.enabled=false", "monitoring.annotations=false", "imagePullSecrets[0].name=registry"],
        [
            "model.outbox.existingClaim=outbox",
            "explainer.redis.deploy=true",
            "kserve.deploymentMode=Serverless",
        ],
    ):
        docs = render(helm_bin, None, *sets)
        isvc = one(docs, "InferenceService")
        assert custom_errors(validators, isvc) == [], sets
        assert custom_errors(validators, one(docs, "ServingRuntime")) == [], sets
        for doc in docs:
            if doc["kind"] in CORE_KINDS:
                validate_core(doc)
    assert (
        "explainer" not in one(render(helm_bin, None, "explainer.enabled=false"), "InferenceService")["spec"]
    )


@pytest.mark.parametrize("protocol", ["seldon", "v2"])
def test_explainer_calls_stay_within_the_models_max_rows(helm_bin, protocol):
    """With model.maxRows set the model refuses bigger requests, so the explainer (which asks in batches
    of 100 rows) is told to split its calls: found running the chart's v2 wiring for real."""
    docs = Helm(binary=helm_bin, namespace="ml").render(
        "glassbox", CHART, (), [f"protocol={protocol}", "model.maxRows=50"]
    )
    if protocol == "v2":
        container = one(docs, "InferenceService")["spec"]["explainer"]["containers"][0]
    else:
        sdep = next(d for d in docs if d["metadata"]["name"] == "loanclassifier-explainer")
        container = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    assert env_of(container)["GLASSBOX_EXPLAINER_MAX_ROWS_PER_CALL"]["value"] == "50"
    default = Helm(binary=helm_bin, namespace="ml").render("glassbox", CHART, (), [f"protocol={protocol}"])
    assert "GLASSBOX_EXPLAINER_MAX_ROWS_PER_CALL" not in json.dumps(default)


def test_deploy_install_on_v2_waits_for_the_inference_service(
    helm_bin, recorded_kube_api, tmp_path, monkeypatch, capsys
):
    """`glassbox deploy install --set protocol=v2`: the real helm renders and checks the values; only
    `helm upgrade` (which needs a cluster) is answered by a wrapper, and the API by recorded answers.
    The install then waits for the InferenceService (Creating, then Ready), never a SeldonDeployment."""
    from glassbox.cli import main

    calls = tmp_path / "calls"
    wrapper = tmp_path / "helm"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {calls}\n'
        'if [ "$1" = upgrade ]; then echo "Release \\"$3\\" has been upgraded."; exit 0; fi\n'
        f'exec {helm_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{recorded_kube_api.url}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("GLASSBOX_DEPLOY_POLL_S", "0.05")
    isvc = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/loanclassifier"
    data = REPO / "tests/data/deploy"
    recorded_kube_api.record(
        isvc, *((200, json.loads((data / f"{n}.json").read_text())) for n in ("isvc-creating", "isvc-ready"))
    )
    code = main(["deploy", "install", "-n", "ml", "--helm", str(wrapper), "--chart", str(CHART), "--set", V2])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Available: loanclassifier" in captured.out
    assert "Creating (1/2 components ready)" in captured.err
    assert {path for _, path in recorded_kube_api.requests} == {isvc}
    assert calls.read_text().split().count("upgrade") == 1 and "template" in calls.read_text().split()
