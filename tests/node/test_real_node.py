"""The real node: real restricted pods on kubelet + containerd + runc, and a clean host after `down`.

The module starts its own control plane with `hack/cluster.sh up --real-node` (ports from
SBO_PORT_BASE + 50, state in a temporary folder), runs real pods on it, stops it, and proves the host is
exactly as before. The only address outside the machine these tests name is 192.0.2.1
(TEST-NET-1), and only to show that a pod has no route to it: no packet is sent.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit import host_state
from devkit.cluster import eventually
from devkit.real_node import NODE, RealNodeCluster
from sbo_operator.builders.network_policies import DNS_PEER, DNS_PORTS

pytestmark = pytest.mark.node

POD_RANGE = ipaddress.ip_network("198.18.0.0/16")
SERVICE_RANGE = ipaddress.ip_network("198.19.0.0/16")
OUTSIDE = "192.0.2.1"


def probe_pod(name: str, *, labels: dict[str, str], subdomain: str | None = None) -> dict[str, Any]:
    """A pod that Pod Security "restricted" admits, on the real node, serving its hostname on 8080."""
    spec: dict[str, Any] = {
        "hostname": name,
        "nodeSelector": {"sbo.dev/real-node": "true"},
        "tolerations": [{"key": "sbo.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "probe",
                "image": "sbo.local/probe:local",
                "imagePullPolicy": "Never",
                "args": ["serve", ":8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    if subdomain:
        spec["subdomain"] = subdomain
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def service(name: str, *, headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app": "server"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def workload(real_node: RealNodeCluster) -> Iterator[str]:
    """A namespace enforcing "restricted" with a server pod (behind a Service and a headless
    governing Service) and a client pod, both Ready on the real node."""
    namespace = "t-real-node"
    real_node.create_restricted_namespace(namespace)
    real_node.apply(
        service("server", headless=False),
        service("web", headless=True),
        probe_pod("server", labels={"app": "server"}, subdomain="web"),
        probe_pod("client", labels={"app": "client"}),
        namespace=namespace,
    )
    real_node.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "pod/server", "pod/client", "--timeout=90s"
    )
    yield namespace
    real_node.kubectl(
        "delete", "namespace", namespace, "--wait=false", check=False
    )  # down may have come first


def test_the_node_is_real_ready_labelled_and_tainted_next_to_the_kwok_nodes(
    real_node: RealNodeCluster,
) -> None:
    nodes = json.loads(real_node.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {node["metadata"]["name"]: node for node in nodes}
    assert set(by_name) == {NODE, "kwok-node-0", "kwok-node-1", "kwok-node-2"}
    node = by_name[NODE]
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert node["metadata"]["labels"]["sbo.dev/real-node"] == "true"
    assert {"key": "sbo.dev/real-node", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://2.4.2"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.4"
    assert {"type": "InternalIP", "address": "198.18.0.1"} in node["status"]["addresses"]


def test_a_restricted_pod_runs_and_answers_through_a_service_by_dns_name(
    real_node: RealNodeCluster, workload: str
) -> None:
    server = json.loads(real_node.kubectl("get", "pod", "-n", workload, "server", "-o", "json").stdout)
    assert server["spec"]["nodeName"] == NODE
    assert server["status"]["phase"] == "Running"
    assert ipaddress.ip_address(server["status"]["podIP"]) in POD_RANGE
    service_ip = real_node.kubectl(
        "get", "service", "-n", workload, "server", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    assert ipaddress.ip_address(service_ip) in SERVICE_RANGE

    url = f"http://server.{workload}.svc.cluster.local/"

    def answered() -> subprocess.CompletedProcess[str]:
        answer = real_node.exec_probe(workload, "client", "get", url)
        assert answer.returncode == 0, answer.stderr
        return answer

    # kube-proxy programs the Service's rules after its EndpointSlice is written, which can be a
    # moment after the pods turn Ready (the CI run that found this was a loaded machine).
    answer = eventually(answered, timeout=30, interval=1, what=f"the client to get {url}")
    assert answer.stdout == "server\n"


def test_a_pod_resolves_by_name_through_its_headless_governing_service(
    real_node: RealNodeCluster, workload: str
) -> None:
    server_ip = real_node.pod_ip(workload, "server")
    found = real_node.exec_probe(workload, "client", "lookup", f"server.web.{workload}.svc.cluster.local")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [server_ip]


def test_pods_reach_the_apiserver_as_kubernetes_default(real_node: RealNodeCluster, workload: str) -> None:
    found = real_node.exec_probe(workload, "client", "lookup", "kubernetes.default.svc.cluster.local")
    assert found.stdout.split() == ["198.19.0.1"], found.stderr
    dialed = real_node.exec_probe(workload, "client", "dial", "kubernetes.default.svc.cluster.local:443")
    assert dialed.returncode == 0, dialed.stderr


def test_a_pod_has_no_default_route_and_cannot_reach_outside(
    real_node: RealNodeCluster, workload: str
) -> None:
    routes = real_node.exec_probe(workload, "client", "routes")
    assert routes.returncode == 0, routes.stderr
    destinations = [line.split()[1] for line in routes.stdout.splitlines()[1:]]
    assert "00000000" not in destinations, routes.stdout  # 0.0.0.0/0: a default route
    assert len(destinations) == 2, routes.stdout  # the bridge's subnet and the Service range
    # No route: the kernel refuses before any packet leaves the pod.
    outside = real_node.exec_probe(workload, "client", "dial", f"{OUTSIDE}:80")
    assert outside.returncode != 0
    assert "network is unreachable" in outside.stderr, outside.stderr


def guard_drops() -> int:
    """Packets the host's guard (mangle FORWARD) dropped because they came from the bridge
    and were routed elsewhere."""
    listed = subprocess.run(
        ["iptables", "-t", "mangle", "-L", "SBO-NODE-GUARD", "-v", "-x", "-n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # "pkts bytes target prot opt in out source destination": the DROP from the bridge to anywhere else.
    [packets] = [
        int(fields[0])
        for fields in (line.split() for line in listed.splitlines()[2:])
        if fields[2] == "DROP" and fields[5] == "sbo0" and fields[6] == "*"
    ]
    return packets


def test_a_packet_a_policy_allows_is_still_dropped_before_it_leaves_the_machine(
    real_node: RealNodeCluster, workload: str
) -> None:
    """A Service whose endpoint is outside: kube-proxy DNATs to it and kube-router ACCEPTs what the
    pod's policy allows, both at the top of filter FORWARD. The guard runs before them."""
    # Checked before any packet is sent: without the guard in front, the packet would leave.
    first = subprocess.run(
        ["iptables", "-t", "mangle", "-S", "FORWARD"], capture_output=True, text=True, check=True
    )
    assert first.stdout.splitlines()[1] == "-A FORWARD -j SBO-NODE-GUARD", first.stdout
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "outside-1", "labels": {"kubernetes.io/service-name": "outside"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [OUTSIDE], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    open_egress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "open-egress"},
        "spec": {"podSelector": {"matchLabels": {"app": "open"}}, "policyTypes": ["Egress"], "egress": [{}]},
    }
    outside_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "outside"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 80}]},
    }
    real_node.apply(
        outside_service, slice_, open_egress, probe_pod("open", labels={"app": "open"}), namespace=workload
    )
    real_node.kubectl("wait", "-n", workload, "--for=condition=Ready", "pod/open", "--timeout=90s")
    service_ip = real_node.kubectl(
        "get", "service", "-n", workload, "outside", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    before = guard_drops()

    def dropped_by_the_guard() -> bool:
        dialed = real_node.exec_probe(workload, "open", "dial", f"{service_ip}:80")
        assert dialed.returncode != 0, "reached an address outside the machine"
        return guard_drops() > before

    eventually(dropped_by_the_guard, timeout=30, interval=1, what="the guard to drop the pod's packets")


@pytest.fixture(scope="module")
def policy_namespace(real_node: RealNodeCluster) -> Iterator[str]:
    """A server that a NetworkPolicy opens only to pods labelled access=granted, and two clients."""
    namespace = "t-real-node-policy"
    real_node.create_restricted_namespace(namespace)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "server-ingress"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"access": "granted"}}}],
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    }
    # The operator's own DNS egress rule (`networkPolicies.egress`), alone: DNS and nothing else.
    dns_only = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "dns-only-egress"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "dns-only"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [DNS_PEER], "ports": DNS_PORTS}],
        },
    }
    real_node.apply(
        policy,
        dns_only,
        probe_pod("server", labels={"app": "server"}),
        probe_pod("granted", labels={"app": "client", "access": "granted"}),
        probe_pod("denied", labels={"app": "client"}),
        probe_pod("dns-only", labels={"app": "dns-only"}),
        namespace=namespace,
    )
    real_node.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "pod/server",
        "pod/granted",
        "pod/denied",
        "pod/dns-only",
        "--timeout=90s",
    )
    yield namespace
    real_node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_network_policy_lets_only_the_pods_it_names_connect(
    real_node: RealNodeCluster, policy_namespace: str
) -> None:
    server_ip = real_node.pod_ip(policy_namespace, "server")
    url = f"http://{server_ip}:8080/"

    def denied_is_refused() -> bool:
        return real_node.exec_probe(policy_namespace, "denied", "get", url).returncode != 0

    # kube-router applies the policy within a few seconds of the pods' start.
    eventually(denied_is_refused, timeout=30, interval=1, what="kube-router to block the denied pod")
    granted = real_node.exec_probe(policy_namespace, "granted", "get", url)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout == "server\n"
    denied = real_node.exec_probe(policy_namespace, "denied", "get", url)
    assert denied.returncode != 0
    assert denied.stdout == ""


def test_the_operators_dns_egress_rule_resolves_names_and_admits_nothing_else(
    real_node: RealNodeCluster, policy_namespace: str
) -> None:
    """CoreDNS listens on 53 in its pod, as in real clusters, so the port the operator's rule names
    is the one kube-router sees (after the Service's DNAT)."""
    server = f"{real_node.pod_ip(policy_namespace, 'server')}:8080"

    def server_unreachable() -> bool:
        return real_node.exec_probe(policy_namespace, "dns-only", "dial", server).returncode != 0

    eventually(server_unreachable, timeout=30, interval=1, what="kube-router to restrict the pod's egress")
    name = "kubernetes.default.svc.cluster.local"
    found = real_node.exec_probe(policy_namespace, "dns-only", "lookup", name)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["198.19.0.1"]


def test_down_leaves_the_host_as_it_found_it(real_node: RealNodeCluster, host_before: dict[str, Any]) -> None:
    assert host_state.snapshot() != host_before, "the real node changed nothing on the host: is it really up?"
    real_node.down()
    assert host_state.differences(host_before, host_state.snapshot()) == {}


def as_from_a_terminal() -> None:
    """SIGINT as a shell at a terminal has it. A test run started in the background (`make test &`,
    nohup) ignores SIGINT, the up inherits that, and bash cannot trap a signal ignored at entry."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def kubelet_cgroups_exist() -> bool:
    """kubelet's kubepods cgroup, in any v1 hierarchy or the v2 root (none before up)."""
    return any(Path("/sys/fs/cgroup").glob("kubepods")) or any(Path("/sys/fs/cgroup").glob("*/kubepods"))


@pytest.mark.parametrize("how", ["interrupted", "failed"])
def test_an_up_stopped_half_way_leaves_nothing_behind(how: str, tmp_path: Path) -> None:
    before = host_state.snapshot()
    # "failed": kube-proxy cannot serve its health port, after kubelet changed the host.
    extra = {"SBO_KUBE_PROXY_HEALTHZ_PORT": "99999"} if how == "failed" else {}
    cluster = RealNodeCluster(tmp_path / "control-plane", **extra)
    up = subprocess.Popen(
        cluster.up_command(),
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if how == "interrupted" and line.startswith("==> kubelet: starting"):
            # Once kubelet has changed the host (its kubepods cgroups come after its sysctls),
            # while start-up still waits for it (not a fixed sleep: kubelet is Ready in ~1 s).
            eventually(kubelet_cgroups_exist, timeout=30, interval=0.02, what="kubelet's cgroups")
            os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    returncode = up.wait(timeout=180)
    output = "".join(lines)
    if returncode == 0:
        cluster.down()  # it came up after all: never leave a real node to the next tests
    assert returncode != 0, output
    assert "start-up failed: stopping the components that did start" in output
    assert "real node: host restored" in output, output
    assert host_state.differences(before, host_state.snapshot()) == {}
