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
    "s3 destination": (
        formats.S3Destination,
        [
            "s3://backups",
            "s3://backups/shop",
            "s3://abc/a/b.c/d_e-F",
            "s3://my.bucket-1/shop",
            f"s3://{'a' * 63}/x",
            "s3://1.2.3.example/x",
        ],
        [
            "",
            "backups/shop",
            "S3://backups/shop",
            "https://backups/shop",
            "s3://",
            "s3://ab/shop",
            f"s3://{'a' * 64}/shop",
            "s3://Backups/shop",
            "s3://back_ups/shop",
            "s3://-backups/shop",
            "s3://backups-/shop",
            "s3://back..ups/shop",
            "s3://back.-ups/shop",
            "s3://192.168.0.1/shop",
            "s3://xn--backups/shop",
            "s3://backups-s3alias/shop",
            "s3://backups/shop/",
            "s3://backups//shop",
            "s3://backups/../shop",
            "s3://backups/./shop",
            "s3://backups/sh op",
            "s3://backups/shop?x=1",
        ],
    ),
    "endpoint url": (
        formats.EndpointUrl,
        [
            "https://minio.storage.svc:9000",
            "http://127.0.0.1:9000",
            "https://s3.eu-west-1.amazonaws.com",
            "https://[fd00::1]:65535/store",
        ],
        [
            "",
            "minio:9000",
            "s3://minio:9000",
            "https://",
            "https://minio:0",
            "https://minio:65536",
            "https://minio:9000/?x=1",
            "https://mi nio:9000",
        ],
    ),
    "region": (
        formats.Region,
        ["us-east-1", "eu-central-1", "minio_local"],
        ["", "us east", "-us", "us/east"],
    ),
    "cron schedule": (
        formats.CronSchedule,
        [
            "0 3 * * *",
            "*/15 * * * *",
            "0 0-23/6 * * 1-5",
            "5,35 1,13 1,15 1-12/3 0,6",
            "59 23 31 12 6",
            "00 03 01 01 0",
            "0  3 * * *",
            "30/10 * * * *",
            "0 3 5-5 * *",
            "@daily",
            "@hourly",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@midnight",
        ],
        [
            "",
            "0 3 * *",
            "0 3 * * * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 32 * *",
            "0 0 * 0 *",
            "0 0 * 13 *",
            "0 0 * * 7",
            "*/0 * * * *",
            "*/60 * * * *",
            "5-1 * * * *",
            "0 22-2 * * *",
            "0 3 * * 5-1/2",
            "0 3 * * MON",
            "0 3 * JAN *",
            "0 3 ? * *",
            "0 3 L * *",
            " 0 3 * * *",
            "0 3 * * *\n",
            "0,,3 * * * *",
            "@every 1h",
            "@reboot",
            "@DAILY",
        ],
    ),
    "retention": (
        formats.Retention,
        ["1d", "30d", "4w", "12m", "999d"],
        ["", "30", "0d", "030d", "1000d", "30 d", "30D", "1y", "-1d", "1.5w"],
    ),
    "archive timeout": (
        formats.ArchiveTimeout,
        ["5s", "30s", "1m", "1m30s", "60m", "3600s", "1h"],
        ["", "4s", "0s", "1h1s", "61m", "2h", "30", "30 s", "1.5m", "500ms", "-30s", "30S"],
    ),
    "timestamp": (
        formats.Timestamp,
        [
            "2026-01-31T14:05:00Z",
            "2026-01-31T15:05:00.5+01:00",
            "2026-01-31T09:05:00.123456-05:00",
            "2024-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2026-04-30T23:59:59Z",
        ],
        [
            "",
            "2026-01-31",
            "2026-01-31T14:05:00",
            "2026-01-31 14:05:00Z",
            "2026-01-31t14:05:00z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31T14:05:60Z",
            "2026-01-31T14:05:00.1234567Z",
            "2026-01-31T14:05:00+0100",
            "yesterday",
        ],
    ),
    "lsn": (
        formats.Lsn,
        ["0/3000060", "16/B374D848", "ffffffff/FFFFFFFF", "0/0"],
        ["", "3000060", "0/", "/1", "0/3000060/1", "0x0/1", "123456789/0", "0/ 1", "G/1"],
    ),
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


def test_a_checked_format_adds_its_condition_to_the_rule_and_the_check() -> None:
    even = formats.CheckedFormat(
        r"^[0-9]+$",
        "an even number",
        max_length=8,
        condition="int(self) % 2 == 0",
        holds=lambda v: int(v) % 2 == 0,
    )
    assert even.rule == "self.matches(r'^[0-9]+$') && (int(self) % 2 == 0)"
    assert even.check("42") == "42"
    for value in ("43", "x"):
        with pytest.raises(ValueError, match="an even number"):
            even.check(value)


def test_cron_ranges_are_read_as_numbers_not_text() -> None:
    # "10-9" ascends as text but not as numbers; "9-10" the other way round.
    adapter: TypeAdapter[str] = TypeAdapter(formats.CronSchedule)
    assert adapter.validate_python("9-10 * * * *") == "9-10 * * * *"
    with pytest.raises(ValidationError, match="schedule must be a cron expression"):
        adapter.validate_python("10-9 * * * *")


def test_cel_rule_quotes_a_pattern_holding_a_quote() -> None:
    rule = formats.StringFormat(r"^a'b$", "m", max_length=3).rule
    assert rule == """self.matches(r"^a'b$")"""
    forbidding = formats.StringFormat(r"^[a-z]+$", "m", max_length=3, forbidden=r"^ab$").rule
    assert forbidding == "self.matches(r'^[a-z]+$') && !self.matches(r'^ab$')"
