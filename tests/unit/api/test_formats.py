"""The formatted strings of the API: what each admits and refuses in Python, with its message.

The same definitions give the CRD's pattern and CEL rule; tests/integration/test_admission.py
proves the apiserver refuses the same values with the same message.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from sbo_operator.api import formats

pytestmark = pytest.mark.unit

# format -> (values it admits, values it refuses)
CASES: dict[str, tuple[Any, list[str], list[str]]] = {
    "image": (
        formats.Image,
        [
            "shop",
            "sbo-sample-app:0.1.0",
            "registry.example.com/team/shop:1.0",
            "localhost:5000/shop__api:v1.2-rc.1",
            "Registry.Example.com/shop",
            "[fd00::1]:5000/shop:1",
            f"shop@sha256:{'0' * 64}",
            f"shop:1.0@sha256:{'a' * 64}",
        ],
        [
            "",
            "shop 1.0",
            "shop:1.0\n",
            "registry.example.com/Shop:1.0",
            "shop:1.0:2",
            "shop:",
            "-shop",
            "shop@sha256:xyz",
        ],
    ),
    "dns subdomain": (
        formats.DnsSubdomain,
        ["a", "shop-tls", "tls.v2"],
        ["", "Shop", "shop_tls", "-a", "a-", "a..b"],
    ),
    "container name": (formats.ContainerName, ["api", "worker-1"], ["", "Api", "a.b", "a" * 64]),
    "config map key": (
        formats.ConfigMapKey,
        ["password", "app.yaml", ".hidden", "a..b", "A_B-c"],
        ["", ".", "..", "..data", "a/b", "pass word"],
    ),
    "env name": (formats.EnvName, ["LOG_LEVEL", "config.file", "_x", "-x"], ["", "1ABC", "LOG LEVEL", "A=B"]),
    "http path": (formats.HttpPath, ["/", "/readyz", "/a/b?x=1"], ["", "readyz", "/a b", "/a\n"]),
    "field path": (
        formats.FieldPath,
        ["metadata.name", "metadata.labels['app']", "metadata.annotations['a/b']", "status.podIPs"],
        ["", "metadata.nickname", "metadata.labels", "metadata.labels[app]", "spec.containers"],
    ),
    "field path version": (formats.FieldPathVersion, ["v1"], ["", "v2", "v1beta1"]),
    "ingress host": (
        formats.IngressHost,
        ["shop.example.com", "localhost", "1.2.3.example.com"],
        ["", "10.0.0.1", "https://shop.example.com", "Shop.example.com", "*.example.com"],
    ),
    "sql identifier": (formats.SqlIdentifier, ["app", "_app2"], ["", "My-DB", "2app", "app db"]),
    "prometheus url": (
        formats.PrometheusUrl,
        [
            "http://prometheus.monitoring.svc:9090",
            "https://prom.example.com",
            "https://prom.example.com/",
            "http://10.0.0.5:9090/prometheus",
            "https://[fd00::1]:9090",
        ],
        [
            "",
            "prometheus:9090",
            "http://",
            "ftp://prom",
            "http://prometheus monitoring:9090",
            "http://prom:9090/api?x=1",
            "http://prom#x",
            "http://-prom",
        ],
    ),
    "metric name": (formats.MetricName, ["rps", "queue_depth", "p99-latency"], ["", "1rps", "r ps", "rps!"]),
    "promql": (formats.PromQLQuery, ["vector(1)", " sum(up) ", "sum(\n rate(x[1m])\n)"], ["", " ", "\n\t"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_format_admits_and_refuses_with_its_message(name: str) -> None:
    annotated, good, bad = CASES[name]
    adapter: TypeAdapter[str] = TypeAdapter(annotated)
    string_format = annotated.__metadata__[0]
    for value in good:
        assert adapter.validate_python(value) == value, value
    for value in bad:
        with pytest.raises(ValidationError) as error:
            adapter.validate_python(value)
        if 0 < len(value) <= string_format.max_length:  # else the length bound speaks first
            assert string_format.message in str(error.value), value


@pytest.mark.parametrize("name", sorted(CASES))
def test_format_schema_carries_pattern_rule_and_bounds(name: str) -> None:
    annotated = CASES[name][0]
    string_format = annotated.__metadata__[0]
    schema = TypeAdapter(annotated).json_schema()
    assert schema["type"] == "string"
    assert schema["pattern"] == string_format.pattern
    assert schema["minLength"] == 1
    assert schema["maxLength"] == string_format.max_length
    assert schema["x-kubernetes-validations"] == [
        {"rule": string_format.rule, "message": string_format.message}
    ]


def test_cel_rule_quotes_a_pattern_holding_a_quote() -> None:
    rule = formats.StringFormat(r"^a'b$", "m", max_length=3).rule
    assert rule == """self.matches(r"^a'b$")"""
    forbidding = formats.StringFormat(r"^[a-z]+$", "m", max_length=3, forbidden=r"^ab$").rule
    assert forbidding == "self.matches(r'^[a-z]+$') && !self.matches(r'^ab$')"
