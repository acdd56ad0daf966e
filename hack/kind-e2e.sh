#!/usr/bin/env bash
# The operator end to end on kind, the way users install it (and .github/workflows/e2e-kind.yml):
# create a kind cluster, build and `kind load` both images, install a Prometheus (with the
# Prometheus Operator, so the chart's ServiceMonitor and PrometheusRule are created), `helm install`
# the operator, apply examples/basic.yaml with the sample app, wait for Ready, curl the API through
# a port-forward, run `helm test`, and tear everything down.
#
#   hack/kind-e2e.sh
#
# Needs docker, kind, kubectl, helm and curl. Environment:
#   KIND_CLUSTER_NAME  (sbo-e2e)      KIND_NODE_IMAGE  (kind's default; e.g. kindest/node:v1.34.0)
#   KEEP_CLUSTER=1     leave the cluster up for debugging
#   KUBE_PROMETHEUS_STACK_VERSION  pin the kube-prometheus-stack chart (default: newest)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster="${KIND_CLUSTER_NAME:-sbo-e2e}"
node_image="${KIND_NODE_IMAGE:-}"
version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$repo/charts/scalable-backend-operator/Chart.yaml")"
operator_image="sbo-operator:$version"
app_image="$(sed -n 's/^  image: *//p' "$repo/examples/basic.yaml")"
kubeconfig="$(mktemp)"
port_forward_pid=""

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'kind-e2e: error: %s\n' "$*" >&2; exit 1; }
for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH"
done
export KUBECONFIG="$kubeconfig"

cleanup() {
  local status=$?
  if [ -n "$port_forward_pid" ]; then kill "$port_forward_pid" 2>/dev/null || true; fi
  if [ "$status" -ne 0 ]; then
    say "failed; what the cluster looked like:"
    kubectl get scalablebackends,pods,events -A 2>/dev/null | tail -n 60 >&2 || true
    kubectl -n sbo-system logs deployment/sbo-scalable-backend-operator --tail=100 >&2 2>/dev/null || true
  fi
  if [ -z "${KEEP_CLUSTER:-}" ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -f "$kubeconfig"
  else
    say "kept cluster $cluster; KUBECONFIG=$kubeconfig"
  fi
  exit "$status"
}
trap cleanup EXIT

restricted_namespace() {
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label --overwrite namespace "$1" pod-security.kubernetes.io/enforce=restricted >/dev/null
}

say "kind: creating cluster $cluster ${node_image:+($node_image)}"
kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 180s ${node_image:+--image "$node_image"}

say "images: building $operator_image and $app_image"
docker build --tag "$operator_image" "$repo"
docker build --tag "$app_image" --file "$repo/sample-app/Dockerfile" "$repo"
kind load docker-image --name "$cluster" "$operator_image" "$app_image"

say "prometheus: kube-prometheus-stack (Prometheus Operator and one Prometheus)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm upgrade --install prometheus prometheus-community/kube-prometheus-stack \
  --namespace monitoring --create-namespace \
  ${KUBE_PROMETHEUS_STACK_VERSION:+--version "$KUBE_PROMETHEUS_STACK_VERSION"} \
  --set grafana.enabled=false --set alertmanager.enabled=false \
  --set nodeExporter.enabled=false --set kubeStateMetrics.enabled=true \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --wait --timeout 10m

say "operator: helm install into a namespace that enforces Pod Security restricted"
restricted_namespace sbo-system
helm install sbo "$repo/charts/scalable-backend-operator" --namespace sbo-system \
  --set image.tag="$version" --set image.pullPolicy=Never \
  --set operator.defaultPrometheusUrl=http://prometheus-operated.monitoring.svc:9090 \
  --wait --timeout 5m
kubectl -n sbo-system get servicemonitor,prometheusrule sbo-scalable-backend-operator >/dev/null \
  || die "the chart created no ServiceMonitor or PrometheusRule although the cluster has the APIs"
helm test sbo --namespace sbo-system --timeout 2m

say "backend: examples/basic.yaml with the sample app"
restricted_namespace demo
kubectl apply -f "$repo/examples/basic.yaml"
kubectl -n demo wait --for=condition=Ready scalablebackend/shop --timeout=10m
kubectl -n demo get scalablebackend shop -o wide

say "api: curl through a port-forward"
kubectl -n demo port-forward service/shop-api 18080:80 >/dev/null 2>&1 &
port_forward_pid=$!
curl --silent --show-error --fail --retry 20 --retry-connrefused --retry-delay 1 http://127.0.0.1:18080/readyz
echo
curl --silent --show-error --fail http://127.0.0.1:18080/metrics | grep -q '^# HELP http_requests_total' \
  || die "the API serves no http_requests_total"

say "teardown: the backend, then the operator (the CRD stays)"
kubectl delete -f "$repo/examples/basic.yaml" --wait --timeout=5m
helm uninstall sbo --namespace sbo-system --wait
kubectl get crd scalablebackends.sbo.dev >/dev/null || die "helm uninstall removed the CRD"
say "kind e2e passed"
