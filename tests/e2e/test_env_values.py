"""Every env value the CRD accepts converges: Ready, then no writes (issue 15, item 8).

Before the fix, `value: ""` (which the API server stores without `value`) was
re-applied with a DriftRestored Warning on every pass, and an emoji (outside
the Basic Multilingual Plane) failed every apply of the api Deployment and the
migrations Job with a traceback.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, quiet_writes, wait_ready

pytestmark = pytest.mark.e2e

ENV_VALUES = {
    "EMPTY": "",
    "EMOJI": "\U0001f680",
    "ASTRAL": "clef \U0001d11e, gothic \U00010348, last \U0010fffd",
    "BMP": "Grüße aus 東京 \u20ac \ufffd",
    "NEWLINES": "one\ntwo\n\tthree\n",
    "YAML_BREAKS": "nel\x85 ls\u2028 ps\u2029",
    "YES": "yes",
    "NO": "no",
    "ON": "on",
    "HEX": "0x10",
    "OCTAL": "0o17",
    "EXP": "1e3",
    "NULL": "null",
    "TILDE": "~",
    "TRUE": "True",
    "DATE": "2001-12-14",
    "QUOTES": "\"'\\ \\U0001f680 literally",
    "BIG": "x" * 32 * 1024,
}


def test_every_kind_of_env_value_converges_without_writes(
    cluster: LocalCluster, solo: tuple[str, OperatorProcess], apps: client.AppsV1Api
) -> None:
    namespace, operator = solo
    env = [{"name": name, "value": value} for name, value in ENV_VALUES.items()]
    manifest = basic_backend(namespace, api={**basic_backend(namespace)["spec"]["api"], "env": env})
    # Created as JSON, not through kubectl: PyYAML leaves 1e3 and 0o17 unquoted (kubectl reads
    # numbers), and kubectl's own apply body turns U+0085 into a space (YAML reads it as a break).
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "sbo.dev", "v1alpha1", namespace, "scalablebackends", manifest
    )
    wait_ready(cluster, namespace, timeout=180)

    container = apps.read_namespaced_deployment("shop-api", namespace).spec.template.spec.containers[0]
    stored = {variable.name: variable.value for variable in container.env or []}
    for name, value in ENV_VALUES.items():
        assert stored.get(name) == (value or None), f"{name} as the API server stores it"

    time.sleep(2)  # the rollout's last status updates land
    reconciles_before = operator.metric_samples("sbo_reconciles_total").get('{result="ok"}', 0)
    assert quiet_writes(operator, 12) == 0, "converged: nothing is re-applied"
    reconciles_after = operator.metric_samples("sbo_reconciles_total").get('{result="ok"}', 0)
    assert reconciles_after - reconciles_before >= 2, "the window really contained reconciles"
    assert operator.metric_samples("sbo_reconciles_total").get('{result="error"}', 0) == 0
    drift = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=DriftRestored", "-o", "name"
    ).stdout
    assert drift == "", "no DriftRestored Warning"
