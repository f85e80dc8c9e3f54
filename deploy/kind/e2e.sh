#!/usr/bin/env bash
# Cluster end to end on kind: Istio (the Seldon gateway), kube-prometheus-stack, Seldon Core v1, the
# Glassbox images and chart, then `helm test`, `glassbox deploy smoke` and one Prometheus query.
#
# UNVERIFIED: written for a machine with docker, kind, helm, kubectl and internet access; it has not
# been run where it was written (no Docker engine, no Kubernetes there). See docs/deploy.md.
#
#   deploy/kind/e2e.sh                 # from the repository root; KEEP_CLUSTER=1 keeps the cluster
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-glassbox}
NAMESPACE=${NAMESPACE:-glassbox}
RELEASE=${RELEASE:-glassbox}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}
# Seldon Core 1.17.1 is the last Apache-2.0 operator; kube-prometheus-stack and Istio pinned for repeatability.
SELDON_VERSION=${SELDON_VERSION:-1.17.1}
KPS_VERSION=${KPS_VERSION:-65.1.1}
ISTIO_VERSION=${ISTIO_VERSION:-1.23.2}
TEST_IMAGE=${TEST_IMAGE:-curlimages/curl:8.11.1}
GATEWAY_PORT=${GATEWAY_PORT:-8003}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
GLASSBOX=${GLASSBOX:-.venv/bin/glassbox}

for tool in docker kind helm kubectl curl; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is required" >&2; exit 2; }
done

forwards=()
# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
  for pid in "${forwards[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then kind delete cluster --name "$CLUSTER"; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 180s
kubectl config use-context "kind-$CLUSTER"

step "Istio $ISTIO_VERSION (the ingress gateway Seldon routes through)"
helm repo add istio https://istio-release.storage.googleapis.com/charts --force-update >/dev/null
helm upgrade --install istio-base istio/base -n istio-system --create-namespace --version "$ISTIO_VERSION" --wait
helm upgrade --install istiod istio/istiod -n istio-system --version "$ISTIO_VERSION" --wait
helm upgrade --install istio-ingressgateway istio/gateway -n istio-system --version "$ISTIO_VERSION" \
  --set service.type=ClusterIP --wait
kubectl apply -f - <<'EOF'
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: seldon-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["*"]
EOF

step "kube-prometheus-stack $KPS_VERSION (Prometheus Operator, Grafana with the dashboard sidecar)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  -n monitoring --create-namespace --version "$KPS_VERSION" \
  --set grafana.sidecar.dashboards.enabled=true \
  --set grafana.sidecar.dashboards.searchNamespace=ALL \
  --set grafana.sidecar.dashboards.folderAnnotation=grafana_folder \
  --set grafana.sidecar.dashboards.provider.foldersFromFilesStructure=true \
  --wait --timeout 10m

step "Seldon Core operator $SELDON_VERSION"
helm repo add seldonio https://storage.googleapis.com/seldon-charts --force-update >/dev/null
helm upgrade --install seldon-core seldonio/seldon-core-operator -n seldon-system --create-namespace \
  --version "$SELDON_VERSION" \
  --set istio.enabled=true --set istio.gateway=istio-system/seldon-gateway \
  --set usageMetrics.enabled=false --wait

step "images $TAG (artifacts baked in) into kind"
make install
if [[ ! -f artifacts/loanclassifier/LATEST ]]; then
  "$GLASSBOX" train --config pipeline/configs/adult.yaml --output artifacts/loanclassifier
fi
make images images-baked IMAGE_TAG="$TAG"
docker pull "$TEST_IMAGE"
for image in "loanclassifier:$TAG-baked" "loanclassifier-explainer:$TAG-baked" "glassbox-queue:$TAG" \
  "glassbox-monitor:$TAG-baked" "$TEST_IMAGE"; do
  kind load docker-image "$image" --name "$CLUSTER"
done

step "chart"
"$GLASSBOX" deploy install --release "$RELEASE" -n "$NAMESPACE" --chart charts/glassbox \
  -f charts/glassbox/examples/kind.yaml \
  --set "model.image.tag=$TAG-baked" --set "explainer.image.tag=$TAG-baked" \
  --set "monitor.image.tag=$TAG-baked" --timeout 900
"$GLASSBOX" deploy status --release "$RELEASE" -n "$NAMESPACE"
helm test "$RELEASE" -n "$NAMESPACE" --logs

step "smoke through the Istio gateway"
kubectl -n istio-system port-forward svc/istio-ingressgateway "$GATEWAY_PORT:80" >/dev/null &
forwards+=($!)
sleep 3
"$GLASSBOX" deploy smoke -n "$NAMESPACE" --gateway istio --gateway-endpoint "localhost:$GATEWAY_PORT"

step "Prometheus scraped the model through the PodMonitor"
kubectl -n monitoring port-forward svc/kube-prometheus-stack-prometheus "$PROMETHEUS_PORT:9090" >/dev/null &
forwards+=($!)
query="sum(glassbox_model_predictions_total{namespace=\"$NAMESPACE\"})"
for _ in $(seq 1 30); do
  if curl -sf "http://localhost:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$query" \
      | grep -q '"value":\[[^]]*,"[1-9]'; then
    echo "Prometheus sees glassbox_model_predictions_total in $NAMESPACE"
    exit 0
  fi
  sleep 10
done
echo "e2e: Prometheus never reported glassbox_model_predictions_total for $NAMESPACE" >&2
exit 1
