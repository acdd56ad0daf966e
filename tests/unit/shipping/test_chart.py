"""The Helm chart, rendered by the real helm: lint, snapshots, values docs and schema, pod security."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.paths import REPO
from sbo_operator.api import crd
from sbo_operator.api.v1alpha1 import PostgresVersion, RedisVersion
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.settings import OperatorSettings
from tests.unit.factories import backend_from, restricted_violations, wanted_once_running
from tests.unit.shipping.support import (
    CHART,
    MONITORING_APIS,
    by_kind,
    helm_template,
    one,
    run,
    tool,
)

pytestmark = pytest.mark.unit

SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
GOLDEN = Path(__file__).parent / "golden"


def scenario_objects(scenario: str) -> list[dict[str, Any]]:
    return helm_template(files=(CHART / "ci" / f"{scenario}-values.yaml",), api_versions=MONITORING_APIS)


def test_there_are_scenarios() -> None:
    assert {"default", "namespaced", "patterns", "ha", "monitoring", "mirror"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    result = run(tool("helm"), "lint", "--strict", CHART, "-f", CHART / "ci" / f"{scenario}-values.yaml")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_template_matches_the_snapshot(scenario: str) -> None:
    """UPDATE_GOLDEN=1 rewrites tests/unit/shipping/golden/ after a deliberate change."""
    text = run(
        tool("helm"), "template", "sbo", CHART, "--namespace", "sbo-system",
        "-f", CHART / "ci" / f"{scenario}-values.yaml",
        *[arg for api in MONITORING_APIS for arg in ("--api-versions", api)],
    ).stdout  # fmt: skip
    path = GOLDEN / f"{scenario}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: UPDATE_GOLDEN=1 pytest tests/unit/shipping/test_chart.py"
    assert path.read_text() == text, f"{scenario} differs from its snapshot (UPDATE_GOLDEN=1 to accept)"


def undocumented_values(text: str) -> list[str]:
    """Keys with no `# --` comment of their own or above them in the tree (helm-docs rules).

    A key whose value is a map of documented keys (`image:`) is a section and needs none.
    """
    lines = text.splitlines()
    missing: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, path, documented)
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):(.*)$", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        above = number - 1
        comment: list[str] = []
        while above >= 0 and lines[above].strip().startswith("#"):
            comment.insert(0, lines[above].strip())
            above -= 1
        documented = any(c.startswith("# --") for c in comment) or any(doc for _, _, doc in stack)
        path = ".".join([*(p for _, p, _ in stack[-1:]), match.group(2)])
        nxt = next(
            (rest for rest in lines[number + 1 :] if rest.strip() and not rest.strip().startswith("#")), ""
        )
        is_section = match.group(3).strip() == "" and len(nxt) - len(nxt.lstrip()) > indent
        if not documented and not is_section:
            missing.append(path)
        stack.append((indent, path, documented))
    return missing


def test_every_value_has_a_doc_comment() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []


def test_the_doc_comment_check_catches_a_missing_comment() -> None:
    text = "# -- documented\na: 1\nsection:\n  # -- documented\n  b: 2\n  c: 3\n# -- a map\nd:\n  e: 4\n"
    assert undocumented_values(text) == ["section.c"]


def test_the_schema_accepts_the_defaults_and_every_scenario_and_rejects_mistakes() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)
    for value, message in [
        ("operator.logFormat=xml", "logFormat"),
        ("operator.logLevel=LOUD", "logLevel"),
        ("replicaCount=-1", "replicaCount"),
        ("operator.listPageSize=0", "listPageSize"),
        ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("imageTypo=x", "imageTypo"),
    ]:
        result = run(tool("helm"), "template", "sbo", CHART, "--set", value, check=False)
        assert result.returncode != 0, value
        assert message in result.stderr, result.stderr


def test_the_chart_crd_is_the_generated_crd() -> None:
    generated = crd.render_crd_yaml()
    assert (CHART / "crds" / crd.CRD_FILE_NAME).read_text() == generated, "run `make chart-crds`"
    assert (REPO / "crds" / crd.CRD_FILE_NAME).read_text() == generated, "run `make crds`"
    assert [p.name for p in (CHART / "crds").iterdir()] == [crd.CRD_FILE_NAME]


def test_the_operator_deployment_is_restricted_probed_and_resourced() -> None:
    objects = helm_template()
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    health = next(p for p in container["ports"] if p["name"] == "health")
    assert health["containerPort"] == OperatorSettings().health_port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


def test_the_helm_test_pod_is_restricted_too() -> None:
    test_pod = one(helm_template(), "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert restricted_violations(test_pod["spec"]) == []


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The operator container's environment; the pod's namespace where the downward API gives it."""
    deployment = one(objects, "Deployment")
    from_fields = {"metadata.namespace": deployment["metadata"]["namespace"]}

    def value(variable: dict[str, Any]) -> str:
        if "value" in variable:
            return str(variable["value"])
        return from_fields.get(variable["valueFrom"].get("fieldRef", {}).get("fieldPath"), "")

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: value(e) for e in container["env"]}


def test_values_become_the_operators_settings() -> None:
    env = env_of(
        helm_template(
            "watchNamespaces={shop,billing}",
            "operator.logLevel=DEBUG",
            "operator.logFormat=text",
            "operator.defaultPrometheusUrl=http://prom.example:9090",
            "operator.listPageSize=25",
        )
    )
    settings = OperatorSettings.model_validate(
        {k.removeprefix("SBO_").lower(): v for k, v in env.items() if k.startswith("SBO_")}
    )
    assert settings.namespaces == ["shop", "billing"]
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "text"
    assert settings.default_prometheus_url == "http://prom.example:9090"
    assert settings.list_page_size == 25
    assert settings.peering is False
    every_setting = {f"SBO_{name.upper()}" for name in OperatorSettings.model_fields}
    assert {k for k in env if k.startswith("SBO_")} <= every_setting


def test_the_data_service_images_become_the_operators_image_settings() -> None:
    def images(objects: list[dict[str, Any]]) -> DataServiceImages:
        env = {k: v for k, v in env_of(objects).items() if k.startswith("SBO_")}
        return OperatorSettings.model_validate(env).data_service_images

    assert images(helm_template()) == OFFICIAL_DATA_SERVICE_IMAGES, "the official images by default"
    mirrored = images(scenario_objects("mirror"))
    assert mirrored.postgres_image(PostgresVersion.V16) == "mirror.example/library/postgres:16"
    assert mirrored.redis_image(RedisVersion.V7_2) == "mirror.example/library/redis:7.2"
    local = images(helm_template("dataServiceImages.redis=sbo.local/redis:{version}"))
    assert local == DataServiceImages(redis="sbo.local/redis:{version}"), "each one set on its own"


@pytest.mark.parametrize(
    ("values", "namespace", "release"),
    [
        pytest.param((), "sbo-system", "sbo", id="default"),
        pytest.param(("nameOverride=ops", "podLabels.team=data"), "platform", "backends", id="renamed"),
    ],
)
def test_the_operator_knows_its_own_pods_so_postgres_admits_its_probes(
    values: tuple[str, ...], namespace: str, release: str
) -> None:
    """Its namespace from the downward API, its pods' labels the Deployment's selector."""
    objects = helm_template(*values, namespace=namespace, release=release)
    deployment = one(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    variables = {e["name"]: e for e in container["env"]}
    assert variables["SBO_OPERATOR_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    env = {k: v for k, v in env_of(objects).items() if k.startswith("SBO_")}
    operator_pods = OperatorSettings.model_validate(env).operator_pods
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert operator_pods == OperatorPods(namespace=namespace, labels=selector)
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/instance"] == release


@pytest.mark.parametrize(
    "template",
    ["postgres:15", "postgres:{version}-{os}", "postgres :{version}", "postgres:{Version}", ""],
)
def test_the_schema_refuses_an_image_template_the_operator_would_refuse(template: str) -> None:
    with pytest.raises(ValueError, match="SBO_POSTGRES_IMAGE"):
        OperatorSettings.model_validate({"SBO_POSTGRES_IMAGE": template})
    result = run(
        tool("helm"),
        "template",
        "sbo",
        CHART,
        "--set-string",
        f"dataServiceImages.postgres={template}",
        check=False,
    )
    assert result.returncode != 0, template
    assert "dataServiceImages/postgres" in result.stderr, result.stderr


def test_more_than_one_replica_turns_peering_on() -> None:
    objects = helm_template("replicaCount=2")
    assert env_of(objects)["SBO_PEERING"] == "true"
    assert one(objects, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert sorted(c["metadata"]["name"] for c in by_kind(objects, "CustomResourceDefinition")) == [
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    ]
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == env_of(objects)["SBO_PEERING_NAME"]
    single = helm_template()
    assert env_of(single)["SBO_PEERING"] == "false"
    assert not by_kind(single, "CustomResourceDefinition")
    assert one(single, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_peering_with_exact_namespaces_has_a_peering_object_in_each() -> None:
    objects = helm_template("watchNamespaces={shop,billing}", "peering.enabled=true")
    assert sorted(p["metadata"]["namespace"] for p in by_kind(objects, "KopfPeering")) == ["billing", "shop"]
    assert not by_kind(objects, "ClusterKopfPeering")


def test_peering_with_a_glob_pattern_is_refused_with_a_reason() -> None:
    values = ("--set", "replicaCount=2", "--set", "watchNamespaces={team-*}")
    result = run(tool("helm"), "template", "sbo", CHART, *values, check=False)
    assert result.returncode != 0
    assert "peering" in result.stderr
    assert "exact names" in result.stderr


def test_monitoring_objects_only_when_the_cluster_has_the_apis() -> None:
    without = helm_template()
    assert not by_kind(without, "ServiceMonitor")
    assert not by_kind(without, "PrometheusRule")
    with_apis = helm_template(api_versions=MONITORING_APIS)
    monitor = one(with_apis, "ServiceMonitor")
    service = one(with_apis, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    rule = one(with_apis, "PrometheusRule")
    shipped = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == shipped
    off = helm_template(
        "serviceMonitor.enabled=false", "prometheusRule.enabled=false", api_versions=MONITORING_APIS
    )
    assert not by_kind(off, "ServiceMonitor")
    assert not by_kind(off, "PrometheusRule")


def test_the_metrics_service_reaches_the_metrics_port() -> None:
    objects = helm_template()
    service = one(objects, "Service")
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    metrics = next(p for p in container["ports"] if p["name"] == "metrics")
    assert metrics["containerPort"] == OperatorSettings().metrics_port
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert (
        service["spec"]["selector"].items()
        <= one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_pdb_selects_the_operator_pods() -> None:
    objects = helm_template()
    pdb = one(objects, "PodDisruptionBudget")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_dashboard_configmap_carries_the_dashboard() -> None:
    objects = helm_template("grafanaDashboard.enabled=true")
    configmap = one(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["scalable-backend.json"])["uid"] == "scalable-backend"


def test_notes_say_what_to_do_next() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    for hint in ("rollout status", "wait --for=condition=Ready", "port-forward", "upgrade-uninstall"):
        assert hint in notes


def test_the_network_policy_is_off_by_default() -> None:
    assert not by_kind(helm_template(), "NetworkPolicy")


def test_the_network_policy_lets_the_operator_reach_only_the_api_server_dns_and_postgres() -> None:
    objects = helm_template(files=(CHART / "ci" / "networkpolicy-values.yaml",))
    policy = one(objects, "NetworkPolicy")
    pod = one(objects, "Deployment")["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, postgres, api_server = policy["spec"]["egress"]
    # Its probes: the PostgreSQL pods of every backend, in any namespace, and nothing else on 5432.
    (peer,) = postgres["to"]
    assert peer["namespaceSelector"] == {}
    pod_labels = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m["spec"]["template"]["metadata"]["labels"]
        for m in wanted_once_running(backend_from({}))
        if m["kind"] == "StatefulSet"
    }
    selected = peer["podSelector"]["matchLabels"].items()
    assert selected <= pod_labels["postgres"].items()
    assert not selected <= pod_labels["redis"].items()
    assert postgres["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert api_server == {
        "ports": [{"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
    }
    # Ingress: only the named health and metrics ports of the container, from the given peers.
    (ingress,) = policy["spec"]["ingress"]
    container_ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    assert {port["port"] for port in ingress["ports"]} == {"health", "metrics"} == container_ports
    assert ingress["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}


def test_the_network_policy_without_api_server_cidrs_allows_its_ports_only() -> None:
    policy = one(helm_template("networkPolicy.enabled=true"), "NetworkPolicy")
    _, _, api_server = policy["spec"]["egress"]
    assert api_server == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    (ingress,) = policy["spec"]["ingress"]
    assert "from" not in ingress, "no peers given: the health and metrics ports are open to all"


def test_the_schema_refuses_a_malformed_api_server_cidr() -> None:
    result = run(
        tool("helm"),
        "template",
        "sbo",
        CHART,
        "--set",
        "networkPolicy.apiServer.cidrs={10.0.0.1}",
        check=False,
    )
    assert result.returncode != 0
    assert "cidrs" in result.stderr, result.stderr
