"""Every formatted string of the ScalableBackend API: its pattern, its CEL rule and its message.

The invariant: a string the apiserver admits is one Kubernetes, the kubelet and Prometheus's
client accept later, so a malformed value is refused at admission, naming the field and the fix,
instead of failing at reconcile time. Each format is checked three times from one definition:
the schema's ``pattern`` (what the apiserver prints as a bare regular expression), a CEL rule
whose message says what to write, and a pydantic validator raising that same message.

The patterns use only syntax that Go's RE2 (the apiserver and CEL) and Python's ``re`` read
alike: no look-around, no ``\\w`` or ``\\d`` (Unicode-aware in Python).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

__all__ = [
    "CONFIG_MAP_KEY_MESSAGE",
    "CONFIG_MAP_KEY_PATTERN",
    "CONTAINER_NAME_MESSAGE",
    "DNS_LABEL_PATTERN",
    "DNS_SUBDOMAIN_MESSAGE",
    "DNS_SUBDOMAIN_PATTERN",
    "DURATION_MESSAGE",
    "DURATION_PATTERN",
    "ENV_NAME_MESSAGE",
    "ENV_NAME_PATTERN",
    "FIELD_PATH_MESSAGE",
    "HTTP_PATH_MESSAGE",
    "HTTP_PATH_PATTERN",
    "IMAGE_MESSAGE",
    "IMAGE_PATTERN",
    "INGRESS_HOST_MESSAGE",
    "METRIC_NAME_MESSAGE",
    "PROMETHEUS_URL_MESSAGE",
    "PROMETHEUS_URL_PATTERN",
    "PROMQL_MESSAGE",
    "SQL_IDENTIFIER_MESSAGE",
    "SQL_IDENTIFIER_PATTERN",
    "ConfigMapKey",
    "ContainerName",
    "DnsSubdomain",
    "Duration",
    "EnvName",
    "FieldPath",
    "FieldPathVersion",
    "HttpPath",
    "Image",
    "IngressHost",
    "MetricName",
    "PromQLQuery",
    "PrometheusUrl",
    "SqlIdentifier",
    "StringFormat",
    "parse_duration",
]


def _cel_raw_string(pattern: str) -> str:
    quote = '"' if "'" in pattern else "'"
    return f"r{quote}{pattern}{quote}"


def _matches(pattern: str, value: str) -> bool:
    """RE2's matching: Python's ``$`` would also match before a final newline, fullmatch does not."""
    if pattern.startswith("^") and pattern.endswith("$"):
        return re.fullmatch(pattern, value) is not None
    return re.search(pattern, value) is not None


@dataclasses.dataclass(frozen=True)
class StringFormat:
    """``Annotated[str, StringFormat(...)]``: a bounded string matching ``pattern``.

    ``forbidden``, when set, is a pattern the value must not match (RE2 has no look-ahead to fold
    it into ``pattern``), e.g. an IP address where a host name is wanted.
    """

    pattern: str
    message: str
    max_length: int
    min_length: int = 1
    forbidden: str | None = None

    @property
    def rule(self) -> str:
        """The CEL rule: the apiserver prints its message beside the bare pattern."""
        rule = f"self.matches({_cel_raw_string(self.pattern)})"
        if self.forbidden is not None:
            rule += f" && !self.matches({_cel_raw_string(self.forbidden)})"
        return rule

    def check(self, value: str) -> str:
        """The pydantic mirror of :attr:`rule`."""
        if not _matches(self.pattern, value) or (
            self.forbidden is not None and _matches(self.forbidden, value)
        ):
            raise ValueError(self.message)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        bounded = core_schema.str_schema(min_length=self.min_length, max_length=self.max_length)
        return core_schema.no_info_after_validator_function(self.check, bounded)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": self.pattern,
            "x-kubernetes-validations": [{"rule": self.rule, "message": self.message}],
        }


# ---- Kubernetes names -------------------------------------------------------------------------------

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_MESSAGE = (
    "must be a Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending "
    "with a letter or digit, e.g. shop-tls"
)
# The names of Secrets, ConfigMaps, StorageClasses and IngressClasses.
DnsSubdomain = Annotated[str, StringFormat(DNS_SUBDOMAIN_PATTERN, DNS_SUBDOMAIN_MESSAGE, max_length=253)]

CONTAINER_NAME_MESSAGE = (
    "must be a container name: lowercase letters, digits and '-', starting and ending with a "
    "letter or digit, e.g. api"
)
ContainerName = Annotated[str, StringFormat(DNS_LABEL_PATTERN, CONTAINER_NAME_MESSAGE, max_length=63)]

# A key of a Secret or ConfigMap; "." and ".."-prefixed keys would escape a mounted volume.
CONFIG_MAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
CONFIG_MAP_KEY_MESSAGE = (
    "must be a Secret or ConfigMap key: letters, digits, '-', '_' and '.', not '.' and not "
    "starting with '..', e.g. password"
)
ConfigMapKey = Annotated[
    str,
    StringFormat(CONFIG_MAP_KEY_PATTERN, CONFIG_MAP_KEY_MESSAGE, max_length=253, forbidden=r"^(\.|\.\..*)$"),
]

# ---- images ----------------------------------------------------------------------------------------

# The grammar of github.com/distribution/reference, which the kubelet parses an image with (an
# image it cannot parse fails only in the pod, as InvalidImageName): [domain[:port]/]path[:tag][@digest],
# the path lowercase.
_DOMAIN_COMPONENT = r"([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])"
_DOMAIN = rf"({_DOMAIN_COMPONENT}(\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(:[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][-.A-Za-z0-9_]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_PATTERN = rf"^({_DOMAIN}/)?{_PATH_COMPONENT}(/{_PATH_COMPONENT})*(:{_TAG})?(@{_DIGEST})?$"
IMAGE_MESSAGE = (
    "image must be an image reference [registry[:port]/]repository[:tag][@digest], with a lowercase "
    "repository and no whitespace, e.g. registry.example.com/shop:1.0"
)
Image = Annotated[str, StringFormat(IMAGE_PATTERN, IMAGE_MESSAGE, max_length=512)]

# ---- containers --------------------------------------------------------------------------------------

ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
ENV_NAME_MESSAGE = (
    "must be an environment variable name: letters, digits, '_', '-' and '.', not starting with a "
    "digit, e.g. LOG_LEVEL"
)
EnvName = Annotated[str, StringFormat(ENV_NAME_PATTERN, ENV_NAME_MESSAGE, max_length=256)]

HTTP_PATH_PATTERN = r"^/\S*$"
HTTP_PATH_MESSAGE = "must be an HTTP path starting with '/', without whitespace, e.g. /readyz"
HttpPath = Annotated[str, StringFormat(HTTP_PATH_PATTERN, HTTP_PATH_MESSAGE, max_length=1024)]

# The pod fields the kubelet can put into an environment variable (the downward API).
_FIELD_PATH_PATTERN = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
FIELD_PATH_MESSAGE = (
    "must be a pod field the downward API offers: metadata.name, metadata.namespace, metadata.uid, "
    "metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, "
    "status.hostIP, status.hostIPs, status.podIP or status.podIPs"
)
FieldPath = Annotated[str, StringFormat(_FIELD_PATH_PATTERN, FIELD_PATH_MESSAGE, max_length=256)]
FieldPathVersion = Annotated[
    str, StringFormat(r"^v1$", "apiVersion: the downward API has only v1; leave it out", max_length=64)
]

# ---- Ingress ---------------------------------------------------------------------------------------

INGRESS_HOST_MESSAGE = (
    "host must be a DNS name (lowercase letters, digits, '-' and '.'), not an IP address, "
    "e.g. shop.example.com"
)
IngressHost = Annotated[
    str,
    StringFormat(
        DNS_SUBDOMAIN_PATTERN, INGRESS_HOST_MESSAGE, max_length=253, forbidden=r"^[0-9]+(\.[0-9]+){3}$"
    ),
]

# ---- PostgreSQL -------------------------------------------------------------------------------------

# A PostgreSQL identifier that needs no quoting.
SQL_IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]*$"
SQL_IDENTIFIER_MESSAGE = (
    "must be a PostgreSQL identifier needing no quotes: lowercase letters, digits and '_', not "
    "starting with a digit, e.g. app"
)
SqlIdentifier = Annotated[str, StringFormat(SQL_IDENTIFIER_PATTERN, SQL_IDENTIFIER_MESSAGE, max_length=63)]

# ---- durations --------------------------------------------------------------------------------------

# A Go duration (time.ParseDuration) without a sign and without the sub-millisecond units: "0s", "30s",
# "1m30s", "1.5h". What kubectl users write for timeouts, and what the operator reads back below.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DURATION_MESSAGE = (
    "must be a duration: numbers each followed by a unit ms, s, m or h, no space, e.g. 0s, 30s or 1m30s"
)
Duration = Annotated[str, StringFormat(DURATION_PATTERN, DURATION_MESSAGE, max_length=32)]

_DURATION_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1)}
_DURATION_UNITS["h"] = timedelta(hours=1)


def parse_duration(duration: str) -> timedelta:
    """The value of a duration matching DURATION_PATTERN, e.g. "1m30s" -> 90 seconds."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"not a duration: {duration!r}")
    return sum(
        (
            float(number) * _DURATION_UNITS[unit]
            for number, _, unit in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h)", duration)
        ),
        timedelta(0),
    )


# ---- Prometheus --------------------------------------------------------------------------------------

# A base URL: scheme, host (a name, an IPv4 or a bracketed IPv6 address), optional port and path.
# No query or fragment: the client appends /api/v1/query to it.
PROMETHEUS_URL_PATTERN = (
    r"^https?://([a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?|\[[a-fA-F0-9:.]+\])(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
PROMETHEUS_URL_MESSAGE = (
    "url must be an http:// or https:// base URL with a host and no query, "
    "e.g. http://prometheus.monitoring.svc:9090"
)
PrometheusUrl = Annotated[str, StringFormat(PROMETHEUS_URL_PATTERN, PROMETHEUS_URL_MESSAGE, max_length=2048)]

METRIC_NAME_MESSAGE = "name must start with a letter and contain only letters, digits, '_' and '-', e.g. rps"
MetricName = Annotated[str, StringFormat(r"^[a-zA-Z][a-zA-Z0-9_-]*$", METRIC_NAME_MESSAGE, max_length=63)]

# PromQL has no parser in the apiserver: admission refuses a blank query; Prometheus checks the
# syntax at each poll and the metric's status reports its error.
PROMQL_MESSAGE = "query must be a PromQL expression, e.g. sum(rate(http_requests_total[1m]))"
PromQLQuery = Annotated[str, StringFormat(r"\S", PROMQL_MESSAGE, max_length=4096)]
