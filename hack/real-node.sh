# shellcheck shell=bash
# The real node: one kubelet with containerd, runc, bridge CNI, kube-proxy,
# kube-router's NetworkPolicy firewall and CoreDNS next to the kwok nodes. Sourced by hack/cluster.sh, which owns
# say/die/start/wait_for/issue_cert/write_kubeconfig and the variables they use.
#
# Invariant: "down" leaves the host as "up" found it. Before touching the host,
# up records its state in $local_dir/real-node/host-before; down (also run on a
# failed or interrupted up) removes only what is new since then and puts every
# recorded sysctl back. kubelet's cgroups, its hard-coded paths and the bridge
# are host-global, so there is at most one real node per host; up refuses to
# start a second.

node_name=sbo-real-node
node_label=sbo.dev/real-node
bridge=sbo0
bridge_ip=198.18.0.1
pod_cidr=198.18.0.0/16
service_cidr=198.19.0.0/16
guarded_ranges=198.18.0.0/15
cluster_dns_ip=198.19.0.10
# Short paths: unix sockets live here, and their paths may not exceed 107 bytes.
node_root=/var/lib/sbo-real-node
node_run=/run/sbo-real-node
containerd_socket="$node_run/containerd.sock"
node_state="$local_dir/real-node"
# The real node's persistent volumes, one directory each (hack/local_provisioner.py); down removes them.
node_volumes="$node_state/volumes"
host_before="$node_state/host-before"
kubelet_port="${SBO_KUBELET_PORT:-$((port_base + 7))}"
kubelet_healthz_port="${SBO_KUBELET_HEALTHZ_PORT:-$((port_base + 8))}"
kube_proxy_metrics_port="${SBO_KUBE_PROXY_METRICS_PORT:-$((port_base + 9))}"
kube_proxy_healthz_port="${SBO_KUBE_PROXY_HEALTHZ_PORT:-$((port_base + 10))}"
cni_dir="$("$repo/hack/install-tools.sh" cni-dir)"
images_dir="$("$repo/hack/install-tools.sh" images-dir)"
# shellcheck source=hack/versions.env
source "$repo/hack/versions.env"

# Host settings kubelet (vm.*, kernel.*), the bridge plugin (ip_forward) and
# kube-proxy could change; down writes each back.
recorded_sysctls=(
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
  net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal
)
# Paths kubelet, libcni and containerd use whatever their configuration says.
recorded_paths=(
  /var/lib/kubelet /var/lib/kubelet/pki /var/lib/kubelet/device-plugins
  /var/log/containers /var/log/pods /var/lib/cni /run/netns /run/containerd
  /var/lib/containerd /opt/containerd /etc/cni /opt/cni
)
# Chains kube-proxy, kubelet, kube-router, the CNI plugins and this script create.
owned_chains='^(KUBE-|CNI-|SBO-)'
# nft tables of kube-proxy's and portmap's nftables code paths.
owned_nft_tables='^table (ip|ip6|inet) (kube-proxy|cni_hostport)$'
iptables_tables=(filter nat mangle raw)
# A packet from a pod to a ClusterIP that kube-proxy did not DNAT (the Service has no endpoint)
# is unreachable: see setup_network.
unrouted_service_rule=(iif "$bridge" to "$service_cidr" unreachable pref 1000)

node_components=(containerd kubelet kube-proxy kube-router)

# ---- the host, before and after -------------------------------------------------------

# kubepods in every v1 hierarchy (this VM), or the one of a cgroups v2 host.
cgroup_kubepods_dirs() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/ /sys/fs/cgroup/*/; do
    [ -d "${hierarchy}kubepods" ] && echo "${hierarchy}kubepods"
  done
  return 0
}

nft_tables() { nft list tables 2>/dev/null || true; }

node_preflight() {
  [ "$(id -u)" -eq 0 ] || die "the real node needs root (kubelet, containerd and the bridge change the host)"
  local t
  for t in kubelet kube-proxy kube-router containerd containerd-shim-runc-v2 ctr; do
    [ -x "$bin_dir/$t" ] || die "$t is not built in $bin_dir; run 'make tools' first"
  done
  for t in bridge host-local loopback portmap; do
    [ -x "$cni_dir/$t" ] || die "the CNI plugin $t is not built in $cni_dir; run 'make tools' first"
  done
  for t in pause probe coredns; do
    [ -f "$images_dir/$t.tar" ] || die "the $t image is not built in $images_dir; run 'make tools' first"
  done
  for t in runc iptables ip6tables iptables-save nft ip conntrack ipset mountpoint; do
    command -v "$t" >/dev/null || die "$t is not on PATH; run 'make tools' (it installs runc, iptables, nftables, conntrack, ipset)"
  done
  if [ -d "$node_root" ] && [ ! -d "$node_state" ]; then
    die "a real node already runs on this host (it owns $node_root; its checkout's 'hack/cluster.sh down' stops it)"
  fi
  [ -d "$node_state" ] && return  # our own node, half up: up continues, down cleans
  if ip link show "$bridge" >/dev/null 2>&1; then die "the bridge $bridge already exists on this host"; fi
  if [ -n "$(cgroup_kubepods_dirs)" ]; then
    die "kubepods cgroups exist ($(cgroup_kubepods_dirs | head -n 1)): another kubelet runs on this host"
  fi
  if iptables-save 2>/dev/null | grep -qE "^:$owned_chains"; then
    die "iptables already has KUBE-/CNI- chains: another kube-proxy or kubelet runs on this host"
  fi
}

record_host_state() {
  [ -f "$host_before/complete" ] && return
  mkdir -p "$host_before"
  local key path
  for key in "${recorded_sysctls[@]}"; do
    if [ -e "/proc/sys/${key//.//}" ]; then printf '%s %s\n' "$key" "$(sysctl -n "$key")"; fi
  done >"$host_before/sysctls"
  for path in "${recorded_paths[@]}"; do
    if [ -e "$path" ] || [ -L "$path" ]; then echo "$path"; fi
  done >"$host_before/paths"
  ip netns list 2>/dev/null | awk '{print $1}' >"$host_before/netns"
  nft_tables >"$host_before/nft-tables"
  ipset list -n >"$host_before/ipsets"
  mkdir -p "$node_root" "$node_run"
  # Written last: a partial record is written again on the next try.
  touch "$host_before/complete"
}

# The pids in our kubepods cgroups: the pods' processes (kubepods did not exist before up).
kubepods_pids() {
  local dir
  while read -r dir; do
    [ -n "$dir" ] || continue
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done < <(cgroup_kubepods_dirs)
}

# Pods first, while their shims still reap them; then the shims of our socket.
kill_node_workloads() {
  local proc cmdline pid left
  for _ in $(seq 1 50); do
    left=0
    while read -r pid; do
      [ -n "$pid" ] || continue
      kill -9 "$pid" 2>/dev/null || true
      left=1
    done < <(kubepods_pids | sort -u)
    if [ "$left" = 0 ]; then break; fi
    sleep 0.1
  done
  for proc in /proc/[0-9]*; do
    cmdline="$( { tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null || true)"
    if [[ "$cmdline" == *containerd-shim-runc-v2* && "$cmdline" == *"$containerd_socket"* ]]; then
      kill -9 "${proc#/proc/}" 2>/dev/null || true
    fi
  done
}

remove_kubepods_cgroups() {
  local dir
  while read -r dir; do
    [ -n "$dir" ] || continue
    # Deepest first: a cgroup directory goes only once it has no children.
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    if [ -d "$dir" ]; then say "real node: could not remove the cgroup $dir"; fi
  done < <(cgroup_kubepods_dirs)
}

# Mount points under PREFIX..., deepest first (mountinfo escapes spaces as \040).
mounts_under() {
  local prefix
  awk '{print $5}' /proc/self/mountinfo | while read -r mount_point; do
    mount_point="$(printf '%b' "$mount_point")"
    for prefix in "$@"; do
      if [[ "$mount_point" == "$prefix" || "$mount_point" == "$prefix"/* ]]; then echo "$mount_point"; fi
    done
  done | sort -r -u
}

unmount_node() {
  local targets=("$node_root" "$node_run" /var/lib/kubelet) mount_point ns
  while read -r ns; do
    [ -n "$ns" ] || continue
    grep -qxF "$ns" "$host_before/netns" 2>/dev/null || targets+=("/run/netns/$ns")
  done < <(ip netns list 2>/dev/null | awk '{print $1}')
  grep -qxF /run/netns "$host_before/paths" 2>/dev/null || targets+=(/run/netns)
  for _ in 1 2 3; do
    while read -r mount_point; do
      [ -n "$mount_point" ] || continue
      umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
    done < <(mounts_under "${targets[@]}")
  done
  while read -r ns; do
    [ -n "$ns" ] || continue
    grep -qxF "$ns" "$host_before/netns" 2>/dev/null || ip netns delete "$ns" 2>/dev/null || rm -f "/run/netns/$ns"
  done < <(ip netns list 2>/dev/null | awk '{print $1}')
}

# remove_owned_chains IPTABLES: delete every rule in a built-in chain that
# jumps to one of our chains, then flush and delete our chains.
remove_owned_chains() {
  local iptables="$1" table saved script
  for table in "${iptables_tables[@]}"; do
    saved="$("$iptables-save" -t "$table" 2>/dev/null)" || continue
    script="$(
      echo "*$table"
      grep -E "^-A [A-Z]+ .*-j ${owned_chains#^}" <<<"$saved" | grep -Ev "^-A ${owned_chains#^}" | sed 's/^-A /-D /'
      grep -E "^:${owned_chains#^}" <<<"$saved" | awk '{print "-F " substr($1, 2)}'
      grep -E "^:${owned_chains#^}" <<<"$saved" | awk '{print "-X " substr($1, 2)}'
      echo COMMIT
    )"
    [ "$(wc -l <<<"$script")" -gt 2 ] || continue
    "$iptables-restore" --noflush <<<"$script" || say "real node: $iptables-restore could not remove every chain in $table"
  done
}

# Tables iptables-nft made for our rules (now empty) and kube-proxy's own.
remove_new_nft_tables() {
  local table
  while read -r table; do
    [ -n "$table" ] || continue
    grep -qxF "$table" "$host_before/nft-tables" 2>/dev/null && continue
    # shellcheck disable=SC2086 # "table FAMILY NAME" splits into nft's arguments
    if [[ "$table" =~ $owned_nft_tables ]] || ! nft list $table | grep -qE '^\s+(ip|ip6|meta|counter|jump|goto|tcp|udp|oifname|iifname|ct|fib|mark|accept|drop|return|reject|log)'; then
      nft delete $table 2>/dev/null || say "real node: could not delete the nft $table"
    fi
  done < <(nft_tables)
}

# kube-router's sets, once no rule refers to them.
remove_new_ipsets() {
  local set
  while read -r set; do
    [ -n "$set" ] || continue
    grep -qxF "$set" "$host_before/ipsets" 2>/dev/null && continue
    ipset destroy "$set" 2>/dev/null || say "real node: could not destroy the ipset $set"
  done < <(ipset list -n 2>/dev/null)
}

restore_sysctls() {
  local key value
  while read -r key value; do
    [ "$(sysctl -n "$key" 2>/dev/null)" = "$value" ] && continue
    sysctl -qw "$key=$value" >/dev/null || say "real node: could not restore $key=$value"
  done <"$host_before/sysctls"
}

remove_new_paths() {
  local path
  for path in "${recorded_paths[@]}"; do
    grep -qxF "$path" "$host_before/paths" && continue
    if [ -e "$path" ] || [ -L "$path" ]; then
      if mountpoint -q "$path" 2>/dev/null; then umount -l "$path" 2>/dev/null || true; fi
      rm -rf "$path"
    fi
  done
}

# Runs after every node process is stopped; safe to run twice.
node_down() {
  [ -f "$host_before/complete" ] || { rm -rf "$node_state"; return 0; }
  say "real node: removing its pods, network, mounts and cgroups; restoring the host's settings"
  kill_node_workloads
  unmount_node
  remove_kubepods_cgroups
  if ip link show "$bridge" >/dev/null 2>&1; then ip link delete "$bridge"; fi
  while ip rule del "${unrouted_service_rule[@]}" 2>/dev/null; do :; done
  remove_owned_chains iptables
  remove_owned_chains ip6tables
  remove_new_nft_tables
  remove_new_ipsets
  conntrack -D -s "$guarded_ranges" >/dev/null 2>&1 || true
  conntrack -D -d "$guarded_ranges" >/dev/null 2>&1 || true
  restore_sysctls
  remove_new_paths
  rm -rf "$node_root" "$node_run"
  rm -rf "$node_state"
  say "real node: host restored"
}

# ---- network ---------------------------------------------------------------------------

# The bridge carries the host's address, which the apiserver binds and
# advertises. The guards keep every packet of the pod and service ranges on
# this machine: FORWARD passes traffic only between bridge ports, OUTPUT never
# lets those ranges leave through another interface. No NAT, no routes out.
setup_network() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    say "network: bridge $bridge with $bridge_ip for pods in $pod_cidr, Services in $service_cidr"
    ip link add "$bridge" type bridge
    ip addr add "$bridge_ip/16" dev "$bridge"
    ip link set "$bridge" up
  fi
  local iptables
  for iptables in iptables ip6tables; do
    "$iptables" -N SBO-NODE-FORWARD 2>/dev/null || continue
    "$iptables" -N SBO-NODE-OUTPUT
    "$iptables" -A SBO-NODE-FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
    "$iptables" -A SBO-NODE-FORWARD -i "$bridge" -j DROP
    "$iptables" -A SBO-NODE-FORWARD -o "$bridge" -j DROP
    "$iptables" -A SBO-NODE-OUTPUT -o lo -j RETURN
    "$iptables" -A SBO-NODE-OUTPUT -o "$bridge" -j RETURN
    if [ "$iptables" = iptables ]; then
      "$iptables" -A SBO-NODE-FORWARD -s "$guarded_ranges" -j DROP
      "$iptables" -A SBO-NODE-FORWARD -d "$guarded_ranges" -j DROP
      "$iptables" -A SBO-NODE-OUTPUT -s "$guarded_ranges" -j DROP
      "$iptables" -A SBO-NODE-OUTPUT -d "$guarded_ranges" -j DROP
    fi
    "$iptables" -I FORWARD 1 -j SBO-NODE-FORWARD
    "$iptables" -I OUTPUT 1 -j SBO-NODE-OUTPUT
    # kube-router and kube-proxy insert their own chains at the top of filter FORWARD later,
    # and kube-router ACCEPTs what a pod's policies allow (a Service whose endpoint is outside,
    # say) before the chain above sees it. mangle FORWARD runs before filter FORWARD, after
    # DNAT and routing: a drop-only guard there cannot be bypassed and leaves the policies'
    # verdicts on the bridge to kube-router.
    "$iptables" -t mangle -N SBO-NODE-GUARD
    "$iptables" -t mangle -A SBO-NODE-GUARD -i "$bridge" -o "$bridge" -j RETURN
    "$iptables" -t mangle -A SBO-NODE-GUARD -i "$bridge" -j DROP
    "$iptables" -t mangle -A SBO-NODE-GUARD -o "$bridge" -j DROP
    if [ "$iptables" = iptables ]; then
      "$iptables" -t mangle -A SBO-NODE-GUARD -s "$guarded_ranges" -j DROP
      "$iptables" -t mangle -A SBO-NODE-GUARD -d "$guarded_ranges" -j DROP
    fi
    "$iptables" -t mangle -I FORWARD 1 -j SBO-NODE-GUARD
  done
  # kube-proxy REJECTs a connection to a Service with no endpoint in filter FORWARD, but
  # kube-router's chain comes first there and ACCEPTs what a pod's policies allow, so the SYN
  # went on un-NATed, routed by the host's default route (past the guard above, which comes
  # after both), unanswered; conntrack kept the socket's SYN retries on that un-NATed entry
  # after the Service had an endpoint again (a replica did not stream for minutes after the
  # primary's pod was replaced). Routing comes before FORWARD: this rule answers such a SYN
  # at once (ICMP net unreachable) and keeps it on the bridge. DNAT'ed packets are not matched.
  while ip rule del "${unrouted_service_rule[@]}" 2>/dev/null; do :; done
  ip rule add "${unrouted_service_rule[@]}"
  mkdir -p "$node_root/cni/net.d"
  cat >"$node_root/cni/net.d/10-sbo.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sbo",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node_root/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "rangeStart": "198.18.1.1", "gateway": "$bridge_ip"}]],
        "routes": [{"dst": "$service_cidr"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# ---- node components ----------------------------------------------------------------

make_node_pki() {
  local client="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  issue_cert kubelet "/O=system:nodes/CN=system:node:$node_name" "$client"
  issue_cert kubelet-serving "/CN=$node_name" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$bridge_ip,DNS:$node_name"
  issue_cert kube-proxy "/CN=system:kube-proxy" "$client"
  # kube-router reads pods, namespaces, policies and nodes cluster-wide (as kwok does, it is a master).
  issue_cert kube-router "/O=system:masters/CN=kube-router" "$client"
}

start_containerd() {
  mkdir -p "$node_root/containerd" "$node_run"
  cat >"$node_state/containerd.toml" <<EOF
version = 4
root = "$node_root/containerd"
state = "$node_run/containerd"
# NRI and erofs are not needed; the image verifier and /opt plugins would
# create folders under /opt.
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.differ.v1.erofs",
  "io.containerd.mount-handler.v1.erofs",
  "io.containerd.internal.v1.opt",
  "io.containerd.image-verifier.v1.bindir",
]

[plugins.'io.containerd.server.v1.grpc']
  address = "$containerd_socket"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "$containerd_socket.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "sbo.local/pause:local"

[plugins.'io.containerd.cri.v1.runtime']
  # This VM withholds CAP_SYS_RESOURCE: runc may only raise oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$cni_dir"]
    conf_dir = "$node_root/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$node_run/runc"
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  start containerd "$bin_dir/containerd" --config "$node_state/containerd.toml"
  wait_for containerd 60 "$bin_dir/ctr" --address "$containerd_socket" version
  import_images
}

# Every archive in the images directory: pause, probe and coredns (install-tools.sh) and, once
# `make images` built them, the operator, sample app, Postgres and Redis (hack/build_images.py).
# containerd's root goes with `down`, so every `up` imports again.
import_images() {
  local archive started="$SECONDS" imported=()
  for archive in "$images_dir"/*.tar; do
    "$bin_dir/ctr" --address "$containerd_socket" -n k8s.io images import --local "$archive" \
      >>"$logs/ctr.log" 2>&1 || die "could not import $archive into containerd; see $logs/ctr.log"
    imported+=("$(basename "$archive" .tar)")
  done
  say "containerd: imported ${imported[*]} in $((SECONDS - started))s"
}

start_kubelet() {
  local kc="$node_state/kubelet.kubeconfig"
  write_kubeconfig "$kc" kubelet
  mkdir -p "$node_root/kubelet" "$node_root/kubelet-pki"
  cat >"$node_state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $bridge_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$containerd_socket
# cgroups v1 in hybrid mode, without systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$cluster_dns_ip]
clusterDomain: cluster.local
# No host resolver settings in pods: the cluster has no upstream.
resolvConf: ""
podLogsDir: $node_root/pod-logs
registerWithTaints:
- {key: $node_label, value: "true", effect: NoSchedule}
# A nearly full shared disk must not evict the node's few pods or its images.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  start kubelet "$bin_dir/kubelet" \
    --config "$node_state/kubelet.yaml" --kubeconfig "$kc" \
    --root-dir "$node_root/kubelet" --cert-dir "$node_root/kubelet-pki" \
    --hostname-override "$node_name" --node-ip "$bridge_ip" \
    --node-labels "$node_label=true" --v 1
  wait_for kubelet 60 kubectl wait --for=condition=Ready "node/$node_name" --timeout=5s
}

start_kube_proxy() {
  local kc="$node_state/kube-proxy.kubeconfig"
  write_kubeconfig "$kc" kube-proxy
  # No conntrack limits or timeouts and no localhost NodePorts: then kube-proxy
  # changes no sysctl.
  cat >"$node_state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $kc}
mode: iptables
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
nodePortAddresses: [$bridge_ip/32]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:$kube_proxy_metrics_port
healthzBindAddress: 127.0.0.1:$kube_proxy_healthz_port
EOF
  start kube-proxy "$bin_dir/kube-proxy" --config "$node_state/kube-proxy.yaml" --v 1
  wait_for kube-proxy 60 curl -fsS "http://127.0.0.1:$kube_proxy_healthz_port/healthz"
}

# kube-router's firewall enforces NetworkPolicies (its routing and service proxy
# stay off). No health or metrics port: kube-router would bind them on every
# interface. It is ready once its chains hang in FORWARD.
start_kube_router() {
  local kc="$node_state/kube-router.kubeconfig"
  write_kubeconfig "$kc" kube-router
  start kube-router "$bin_dir/kube-router" --kubeconfig "$kc" \
    --run-firewall=true --run-router=false --run-service-proxy=false \
    --hostname-override "$node_name" --enable-ipv4=true --enable-ipv6=false \
    --health-port 0 --metrics-port 0 --v 1
  wait_for kube-router 60 kube_router_chains_in_place
}

kube_router_chains_in_place() { iptables -S FORWARD 2>/dev/null | grep -q -- '-j KUBE-ROUTER-FORWARD'; }

# CoreDNS as a Deployment on the real node; no forward plugin, no upstream.
deploy_coredns() {
  kubectl apply --server-side --field-manager sbo-local-cluster -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {kind: ServiceAccount, name: coredns, namespace: kube-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        log . {
            class denial error
        }
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      nodeSelector: {$node_label: "true"}
      tolerations:
      - {key: $node_label, operator: Exists, effect: NoSchedule}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
        # Port 53, as in real clusters (NetworkPolicies see the pod's port, and the operator's DNS
        # egress rule names 53), without root or a capability: this namespaced sysctl is a "safe"
        # one, which Pod Security "restricted" admits.
        sysctls:
        - {name: net.ipv4.ip_unprivileged_port_start, value: "53"}
      containers:
      - name: coredns
        image: sbo.local/coredns:$COREDNS_VERSION
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {memory: 128Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $cluster_dns_ip
  ports:
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 53, protocol: TCP}
EOF
  say "coredns: waiting for its pod on $node_name"
  wait_for coredns 120 kubectl -n kube-system rollout status deployment/coredns --timeout=5s
}

start_real_node() {
  make_node_pki
  start_containerd
  start_kubelet
  start_kube_proxy
  start_kube_router
  deploy_coredns
}
