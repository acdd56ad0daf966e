#!/usr/bin/env bash
# make demo: bring the local control plane up, show it, and leave nothing
# running that this script started.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kubectl() { "$("$repo/hack/install-tools.sh" bin-dir)/kubectl" --kubeconfig "$repo/.local/kubeconfig" "$@"; }

started_here=""
if ! kubectl get --raw /readyz >/dev/null 2>&1; then
  started_here=1
  trap '"$repo/hack/cluster.sh" down' EXIT
fi
"$repo/hack/cluster.sh" up

echo
echo "== kubectl version"
kubectl version
echo
echo "== nodes (kwok), with their zones"
kubectl get nodes -L topology.kubernetes.io/zone -o wide
echo
echo "== storage"
kubectl get storageclass
echo
echo "== control-plane processes"
"$repo/hack/cluster.sh" status
if [ -n "$started_here" ]; then echo; echo "(the demo started the cluster, so it stops it now)"; fi
