#!/usr/bin/env bash
# The local control plane: real etcd, kube-apiserver, kube-controller-manager
# and kube-scheduler as plain processes, kwok faking 3 nodes and pod status,
# and a small provisioner that binds PersistentVolumeClaims.
#
#   hack/cluster.sh up [--real-node] | down | status
#
# With --real-node (or SBO_REAL_NODE=1), up also starts one real node
# (hack/real-node.sh): kubelet, containerd, runc, bridge CNI, kube-proxy,
# kube-router (NetworkPolicies) and CoreDNS, tainted so that only pods asking
# for it land there. It needs root, changes the host, and down puts the host
# back as up found it.
#
# State lives in .local/ (override with SBO_LOCAL_DIR): PKI, kubeconfigs,
# etcd data, logs/ and pids/. Ports come from SBO_PORT_BASE (default 16440),
# so two checkouts can run side by side with different bases.
# SBO_HPA_SYNC_SECONDS sets the HPA controller's sync period (default 15, as
# upstream); the autoscaling benchmark's "tuned" phase lowers it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="${SBO_LOCAL_DIR:-$repo/.local}"
pki="$local_dir/pki"
logs="$local_dir/logs"
pids="$local_dir/pids"
bin_dir="$("$repo/hack/install-tools.sh" bin-dir)"
python="${SBO_PYTHON:-$repo/.venv/bin/python}"

port_base="${SBO_PORT_BASE:-16440}"
etcd_client_port="${SBO_ETCD_PORT:-$port_base}"
etcd_peer_port="${SBO_ETCD_PEER_PORT:-$((port_base + 1))}"
apiserver_port="${SBO_APISERVER_PORT:-$((port_base + 2))}"
controller_manager_port="${SBO_CONTROLLER_MANAGER_PORT:-$((port_base + 3))}"
scheduler_port="${SBO_SCHEDULER_PORT:-$((port_base + 4))}"
kwok_port="${SBO_KWOK_PORT:-$((port_base + 5))}"
etcd_metrics_port="${SBO_ETCD_METRICS_PORT:-$((port_base + 6))}"

if [ "${1:-}" = up ] && [ "${2:-}" = --real-node ]; then SBO_REAL_NODE=1; fi
# shellcheck source=hack/real-node.sh
source "$repo/hack/real-node.sh"
# A real node half started or still up counts as on, so that down stops it.
if [ "${SBO_REAL_NODE:-0}" = 1 ] || [ -d "$node_state" ]; then real_node=1; else real_node=0; fi

# With a real node the apiserver binds the bridge address, which pods reach as
# the "kubernetes" Service; otherwise loopback only.
if [ "$real_node" = 1 ]; then apiserver_ip="$bridge_ip"; else apiserver_ip=127.0.0.1; fi
server="https://$apiserver_ip:$apiserver_port"
admin_kubeconfig="$local_dir/kubeconfig"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok provisioner)
if [ "$real_node" = 1 ]; then
  components+=("${node_components[@]}")
  # containerd finds its shim, kubelet and kube-proxy their tools on PATH.
  export PATH="$bin_dir:$PATH"
fi

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }
kubectl() { "$bin_dir/kubectl" --kubeconfig "$admin_kubeconfig" "$@"; }

pid_of() { cat "$pids/$1.pid" 2>/dev/null || true; }

# A process that exited is gone, even while it waits as a zombie for init
# (which reaps our detached processes only every few seconds) to collect it.
alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != Z ]
}

# A pidfile names our process only while that pid still runs the binary we
# started; this keeps "down" from killing an unrelated process that reused it.
is_running() {
  local pid exe
  pid="$(pid_of "$1")"
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 1
  exe="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  case "$1" in
    provisioner) [[ "$exe" == *local_provisioner.py* ]] ;;
    # Right after "start", the pid may still be setsid, not yet replaced by the binary.
    *) [[ "$exe" == "$bin_dir/$1 "* || "$exe" == "setsid $bin_dir/$1 "* ]] ;;
  esac
}

start() {
  local name="$1"; shift
  if is_running "$name"; then say "$name: already running (pid $(pid_of "$name"))"; return; fi
  say "$name: starting (log: ${logs#"$repo/"}/$name.log)"
  # setsid detaches the process from make's process group, so it outlives
  # the command that started it; "down" stops it by pid.
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo "$!" >"$pids/$name.pid"
}

# has_exited NAME: the process we started for NAME is gone (or a zombie). Not is_running:
# between bash's fork and setsid's exec the child's command line is still this script's,
# and taking that window for an exit stopped start-up while the component went on to run.
has_exited() {
  local pid state
  pid="$(pid_of "$1")"
  [ -n "$pid" ] || return 0
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [ -z "$state" ] || [ "$state" = Z ]
}

# wait_for NAME TIMEOUT COMMAND...: poll COMMAND; give up early if the
# component NAME has exited, showing the end of its log.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  # In the background, so that Ctrl-C reaches the INT trap at once: bash ignores
  # a SIGINT that a foreground command (kubectl) handles itself.
  until "$@" >/dev/null 2>&1 & wait "$!"; do
    if [ -f "$pids/$what.pid" ] && has_exited "$what"; then
      tail -n 5 "$logs/$what.log" >&2 || true
      die "$what exited during start-up; full log: $logs/$what.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$what did not come up within ${timeout}s; see $logs/"
    fi
    sleep 0.5
  done
  say "$what: ready"
}

# ---- PKI --------------------------------------------------------------------

issue_cert() {
  local name="$1" subject="$2" ext="$3"
  [ -f "$pki/$name.crt" ] && return
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subject" \
    -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$ext") -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr"
}

make_pki() {
  command -v openssl >/dev/null || die "openssl is not on PATH; install the openssl package"
  mkdir -p "$pki"
  if [ ! -f "$pki/ca.crt" ]; then
    say "pki: creating a CA and certificates in ${pki#"$repo/"}"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -subj "/CN=sbo-local-ca" \
      -days 3650 -sha256 -out "$pki/ca.crt" 2>/dev/null
  fi
  local client="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  # A certificate from before the bridge address and the 198.19.0.0/16 service range is issued again.
  if [ -f "$pki/apiserver.crt" ] && ! openssl x509 -in "$pki/apiserver.crt" -noout -text | grep -q "IP Address:$bridge_ip"; then
    rm -f "$pki/apiserver.crt" "$pki/apiserver.key"
  fi
  issue_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$bridge_ip,IP:198.19.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  issue_cert admin "/O=system:masters/CN=sbo-admin" "$client"
  issue_cert controller-manager "/CN=system:kube-controller-manager" "$client"
  issue_cert scheduler "/CN=system:kube-scheduler" "$client"
  # kwok plays every kubelet; it needs to write node and pod status cluster-wide.
  issue_cert kwok "/O=system:masters/CN=kwok" "$client"
  # The aggregation layer (APIServices such as KEDA's external metrics server):
  # kube-apiserver proxies to them with a client certificate of its own, from a
  # CA of its own, which the extension servers trust for requestheader auth.
  if [ ! -f "$pki/front-proxy-ca.crt" ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/front-proxy-ca.key" \
      -subj "/CN=sbo-local-front-proxy-ca" -days 3650 -sha256 -out "$pki/front-proxy-ca.crt" 2>/dev/null
  fi
  if [ ! -f "$pki/front-proxy-client.crt" ]; then
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/front-proxy-client.key" \
      -subj "/CN=front-proxy-client" -out "$pki/front-proxy-client.csr" 2>/dev/null
    openssl x509 -req -in "$pki/front-proxy-client.csr" -CA "$pki/front-proxy-ca.crt" \
      -CAkey "$pki/front-proxy-ca.key" -CAcreateserial -days 3650 -sha256 \
      -extfile <(printf '%s\n' "$client") -out "$pki/front-proxy-client.crt" 2>/dev/null
    rm -f "$pki/front-proxy-client.csr"
  fi
  if [ ! -f "$pki/service-account.key" ]; then
    openssl genrsa -out "$pki/service-account.key" 2048 2>/dev/null
    openssl rsa -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub" 2>/dev/null
  fi
}

write_kubeconfig() {
  local file="$1" user="$2"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sbo-local
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: sbo-local
  context: {cluster: sbo-local, user: $user}
current-context: sbo-local
EOF
}

# ---- components -----------------------------------------------------------------

start_etcd() {
  # Another checkout's etcd on these ports would answer our health check, and our
  # apiserver would write into its data.
  if ! is_running etcd && curl -fsS "http://127.0.0.1:$etcd_metrics_port/health" >/dev/null 2>&1; then
    die "port $etcd_metrics_port already serves an etcd; choose another SBO_PORT_BASE"
  fi
  start etcd "$bin_dir/etcd" \
    --name sbo-local --data-dir "$local_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_client_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_client_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "sbo-local=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls "http://127.0.0.1:$etcd_metrics_port" \
    --quota-backend-bytes 2147483648 \
    --unsafe-no-fsync --log-level warn
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$etcd_metrics_port/health"
}

start_apiserver() {
  # Loopback cannot be the "kubernetes" Service's endpoint; the bridge address can.
  local endpoint_reconciler=none
  local admission=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,PersistentVolumeClaimResize,PodSecurity,ResourceQuota,StorageObjectInUseProtection,NodeRestriction
  if [ "$real_node" = 1 ]; then
    endpoint_reconciler=lease
    # A namespace's node-selector and defaultTolerations annotations then steer all its pods,
    # whoever creates them (the operator's StatefulSets, Deployments and Jobs), to the real node.
    admission="$admission,PodNodeSelector,PodTolerationRestriction"
  fi
  start kube-apiserver "$bin_dir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_client_port" \
    --bind-address "$apiserver_ip" --advertise-address "$apiserver_ip" --secure-port "$apiserver_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/service-account.pub" \
    --service-account-signing-key-file "$pki/service-account.key" \
    --service-cluster-ip-range "$service_cidr" \
    --enable-admission-plugins "$admission" \
    --allow-privileged=false \
    --endpoint-reconciler-type "$endpoint_reconciler" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" \
    --proxy-client-key-file "$pki/front-proxy-client.key" \
    --v 1
  wait_for kube-apiserver 120 curl -fsS --cacert "$pki/ca.crt" \
    --cert "$pki/admin.crt" --key "$pki/admin.key" "$server/readyz"
}

start_controller_manager() {
  local kc="$local_dir/controller-manager.kubeconfig"
  write_kubeconfig "$kc" controller-manager
  # Node IPAM, cloud and kubelet-dependent controllers have nothing to do
  # here; everything else (garbage collector, deployment, replicaset,
  # statefulset, job, serviceaccount, tokens, PV binding, ...) runs.
  # The default client rate (20 requests/s per controller) would make the
  # StatefulSet controller alone need minutes for a thousand backends' pods
  # and claims; large clusters raise it too.
  start kube-controller-manager "$bin_dir/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$controller_manager_port" \
    --service-account-private-key-file "$pki/service-account.key" \
    --root-ca-file "$pki/ca.crt" --use-service-account-credentials \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
    --kube-api-qps 200 --kube-api-burst 400 \
    --horizontal-pod-autoscaler-sync-period "${SBO_HPA_SYNC_SECONDS:-15}s" \
    --leader-elect=false --v 1
  wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$controller_manager_port/healthz"
}

start_scheduler() {
  local kc="$local_dir/scheduler.kubeconfig"
  write_kubeconfig "$kc" scheduler
  start kube-scheduler "$bin_dir/kube-scheduler" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" \
    --kube-api-qps 200 --kube-api-burst 400 \
    --leader-elect=false --v 1
  wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$scheduler_port/healthz"
}

start_kwok() {
  local kc="$local_dir/kwok.kubeconfig"
  write_kubeconfig "$kc" kwok
  # hack/kwok.yaml holds the lifecycle stages; naming it also keeps kwok
  # from reading a developer's ~/.kwok.
  start kwok "$bin_dir/kwok" \
    --kubeconfig "$kc" --config "$repo/hack/kwok.yaml" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 127.0.0.1 \
    --server-address "127.0.0.1:$kwok_port"
  wait_for kwok 60 curl -fsS "http://127.0.0.1:$kwok_port/healthz"
}

create_nodes() {
  local i zones=(zone-a zone-b zone-c)
  for i in 0 1 2; do
    kubectl apply --server-side --field-manager sbo-local-cluster -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    topology.kubernetes.io/region: local
    topology.kubernetes.io/zone: ${zones[$i]}
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110", ephemeral-storage: 100Gi}
  capacity: {cpu: "8", memory: 32Gi, pods: "110", ephemeral-storage: 100Gi}
EOF
  done
  say "nodes: waiting for kwok-node-0..2 to be Ready"
  wait_for nodes 60 kubectl wait --for=condition=Ready node --all --timeout=5s
}

# The default class. With the real node it binds WaitForFirstConsumer (as kind's does): the
# scheduler names the node first, so the provisioner gives a claim whose pod lands there a real
# directory (a local volume); kwok-only clusters keep Immediate, so bulk benchmarks are unchanged.
install_storage() {
  local binding=Immediate provisioner_args=()
  if [ "$real_node" = 1 ]; then
    binding=WaitForFirstConsumer
    mkdir -p "$node_volumes"
    provisioner_args=(--volumes-dir "$node_volumes")
  fi
  kubectl apply --server-side --field-manager sbo-local-cluster -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: sbo.dev/local-provisioner
reclaimPolicy: Delete
volumeBindingMode: $binding
allowVolumeExpansion: true
EOF
  start provisioner "$python" "$repo/hack/local_provisioner.py" \
    --kubeconfig "$admin_kubeconfig" --provisioner sbo.dev/local-provisioner "${provisioner_args[@]}"
}

# ---- commands ---------------------------------------------------------------------

all_running() {
  local c
  for c in "${components[@]}"; do is_running "$c" || return 1; done
}

stop_after_failed_up() {
  local status=$?
  [ "$status" -eq 0 ] && return
  trap '' INT TERM  # a second Ctrl-C must not cut the clean-up short
  say "start-up failed: stopping the components that did start"
  cmd_down >&2 || true
  exit "$status"
}

cmd_up() {
  for t in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
    [ -x "$bin_dir/$t" ] || die "$t is not built in $bin_dir; run 'make tools' first"
  done
  [ -x "$python" ] || die "no Python virtual environment at $python; run 'make venv' first"
  command -v curl >/dev/null || die "curl is not on PATH; install the curl package"
  if [ "$real_node" = 1 ]; then
    node_preflight
    if is_running kube-apiserver && [ ! -d "$node_state" ]; then
      die "this control plane runs without the real node (its apiserver binds 127.0.0.1); run 'hack/cluster.sh down' first"
    fi
  fi
  if all_running && kubectl get --raw /readyz >/dev/null 2>&1; then
    say "local control plane already running at $server"
    return
  fi
  mkdir -p "$logs" "$pids"
  local started=$SECONDS
  # A half-started control plane would hold its ports and be reused by the next "up".
  trap 'stop_after_failed_up' EXIT
  # Ctrl-C or a kill also goes through the EXIT trap, with a failing status.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_pki
  write_kubeconfig "$admin_kubeconfig" admin
  if [ "$real_node" = 1 ]; then
    record_host_state
    setup_network
  fi
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  create_nodes
  install_storage
  if [ "$real_node" = 1 ]; then start_real_node; fi
  trap - EXIT INT TERM
  say "local control plane up in $((SECONDS - started))s at $server"
  say "try: kubectl --kubeconfig ${admin_kubeconfig#"$repo/"} get nodes"
}

cmd_down() {
  local c pid stopped=0
  # Reverse order: nothing should lose its apiserver while still working.
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c="${components[$i]}"
    if is_running "$c"; then
      pid="$(pid_of "$c")"
      say "$c: stopping (pid $pid)"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
      if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
      stopped=$((stopped + 1))
    fi
    rm -f "$pids/$c.pid"
  done
  if [ "$real_node" = 1 ]; then node_down; fi
  # etcd's data goes too: the next "up" starts a clean cluster. The PKI stays.
  rm -rf "$local_dir/etcd"
  say "local control plane down ($stopped processes stopped)"
}

cmd_status() {
  local c
  for c in "${components[@]}"; do
    if is_running "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
  done
}

case "${1:-}" in
  up) [ -z "${2:-}" ] || [ "$2" = --real-node ] || die "usage: hack/cluster.sh up [--real-node]"; cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: hack/cluster.sh up [--real-node]|down|status" ;;
esac
