#!/usr/bin/env bash
# The operator on the local control plane, for `make up` and `make down`.
#
#   hack/operator.sh up     cluster up, CRD, operator in the background, examples/basic.yaml Ready
#   hack/operator.sh down   stop the operator, then the control plane
#
# The operator's log is .local/logs/operator.log; it watches all namespaces.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="${SBO_LOCAL_DIR:-$repo/.local}"
pidfile="$local_dir/pids/operator.pid"
log="$local_dir/logs/operator.log"
kubectl() { "$("$repo/hack/install-tools.sh" bin-dir)/kubectl" --kubeconfig "$local_dir/kubeconfig" "$@"; }
say() { printf '==> %s\n' "$*" >&2; }

operator_running() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -e "/proc/$pid" ] && grep -q "sbo_operator" "/proc/$pid/cmdline" 2>/dev/null
}

up() {
  "$repo/hack/cluster.sh" up
  say "CRD: applying crds/"
  kubectl apply --server-side --force-conflicts -f "$repo/crds/" >/dev/null
  kubectl wait --for=condition=Established crd/scalablebackends.sbo.dev --timeout=60s >/dev/null
  if operator_running; then
    say "operator: already running (pid $(cat "$pidfile"))"
  else
    say "operator: starting (log: ${log#"$repo/"})"
    KUBECONFIG="$local_dir/kubeconfig" SBO_HEALTH_PORT="${SBO_HEALTH_PORT:-18080}" \
      SBO_METRICS_PORT="${SBO_METRICS_PORT:-18090}" \
      setsid "$repo/.venv/bin/python" -m sbo_operator run >>"$log" 2>&1 </dev/null &
    echo "$!" >"$pidfile"
  fi
  say "namespace demo (Pod Security: restricted)"
  kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace demo pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
  kubectl apply -f "$repo/examples/basic.yaml" >/dev/null
  say "waiting for sb/shop to be Ready"
  kubectl wait --for=condition=Ready sb/shop -n demo --timeout=120s >/dev/null
  kubectl get sb -n demo
  say "up: try 'kubectl --kubeconfig .local/kubeconfig get all -n demo'; 'make down' stops everything"
}

down() {
  if operator_running; then
    say "operator: stopping (pid $(cat "$pidfile"))"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 100); do operator_running || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  "$repo/hack/cluster.sh" down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: hack/operator.sh up|down" >&2; exit 2 ;;
esac
