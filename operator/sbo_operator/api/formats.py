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

import calendar
import dataclasses
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

__all__ = [
    "ARCHIVE_TIMEOUT_MESSAGE",
    "ARCHIVE_TIMEOUT_RANGE",
    "CONFIG_MAP_KEY_MESSAGE",
    "CONFIG_MAP_KEY_PATTERN",
    "CONTAINER_NAME_MESSAGE",
    "CRON_SCHEDULE_MESSAGE",
    "DNS_LABEL_PATTERN",
    "DNS_SUBDOMAIN_MESSAGE",
    "DNS_SUBDOMAIN_PATTERN",
    "DURATION_MESSAGE",
    "DURATION_PATTERN",
    "ENDPOINT_URL_MESSAGE",
    "ENV_NAME_MESSAGE",
    "ENV_NAME_PATTERN",
    "FIELD_PATH_MESSAGE",
    "HTTP_PATH_MESSAGE",
    "HTTP_PATH_PATTERN",
    "IMAGE_MESSAGE",
    "IMAGE_PATTERN",
    "INGRESS_HOST_MESSAGE",
    "LSN_MESSAGE",
    "METRIC_NAME_MESSAGE",
    "PROMETHEUS_URL_MESSAGE",
    "PROMETHEUS_URL_PATTERN",
    "PROMQL_MESSAGE",
    "REGION_MESSAGE",
    "RETENTION_MESSAGE",
    "S3_DESTINATION_MESSAGE",
    "SQL_IDENTIFIER_MESSAGE",
    "SQL_IDENTIFIER_PATTERN",
    "TIMESTAMP_MESSAGE",
    "ArchiveTimeout",
    "CheckedFormat",
    "ConfigMapKey",
    "ContainerName",
    "CronSchedule",
    "DnsSubdomain",
    "Duration",
    "EndpointUrl",
    "EnvName",
    "FieldPath",
    "FieldPathVersion",
    "HttpPath",
    "Image",
    "IngressHost",
    "Lsn",
    "MetricName",
    "PromQLQuery",
    "PrometheusUrl",
    "Region",
    "Retention",
    "S3Destination",
    "SqlIdentifier",
    "StringFormat",
    "Timestamp",
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckedFormat(StringFormat):
    """A :class:`StringFormat` with a further condition its pattern cannot express (a range, an order).

    ``condition`` is a CEL expression over ``self``, evaluated only where the pattern matched (CEL's
    ``&&`` is false when either side is, so an error there on a malformed value cannot mask the
    message); ``holds`` is its Python mirror.
    """

    condition: str
    holds: Callable[[str], bool]

    @property
    def rule(self) -> str:
        return f"{super().rule} && ({self.condition})"

    def check(self, value: str) -> str:
        super().check(value)
        if not self.holds(value):
            raise ValueError(self.message)
        return value


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


def _http_url_pattern(port: str) -> str:
    """An http(s) URL: scheme, host (a name, an IPv4 or a bracketed IPv6 address), optional port
    matching ``port`` and path; no query or fragment."""
    host = r"([a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?|\[[a-fA-F0-9:.]+\])"
    return rf"^https?://{host}(:{port})?(/[^\s?#]*)?$"


# A base URL, to which the client appends /api/v1/query.
PROMETHEUS_URL_PATTERN = _http_url_pattern("[0-9]{1,5}")
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


# ---- backups ---------------------------------------------------------------------------------------

# An S3 bucket name (AWS's rules, which MinIO keeps): 3 to 63 characters, dot-separated labels of
# lowercase letters, digits and '-' starting and ending with a letter or digit (so no '..', '.-' or
# '-.'), not an IPv4 address, without the prefixes and suffixes AWS reserves. Then the path inside
# the bucket, in segments of the characters S3 calls safe, without '.' or '..' segments and without a
# trailing '/', so that two spellings of one path cannot pass for two paths.
_BUCKET = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_S3_DESTINATION_PATTERN = rf"^s3://{_BUCKET}(/[-_.a-zA-Z0-9]+)*$"
_S3_DESTINATION_FORBIDDEN = (
    r"^s3://([^/]{1,2}|[^/]{64,})(/|$)"  # the bucket's length
    r"|^s3://[0-9]+(\.[0-9]+){3}(/|$)"  # an IP address
    r"|^s3://(xn--|sthree-|amzn-s3-demo-)|^s3://[^/]*(-s3alias|--ol-s3|--x-s3|--table-s3)(/|$)"
    r"|/\.\.?(/|$)"  # a '.' or '..' segment
)
S3_DESTINATION_MESSAGE = (
    "must be s3://<bucket>[/<path>]: a bucket name of 3 to 63 lowercase letters, digits, '-' and '.' "
    "(starting and ending with a letter or digit, not an IP address), then path segments of letters, "
    "digits, '-', '_' and '.', without a trailing '/', e.g. s3://backups/shop"
)
S3Destination = Annotated[
    str,
    StringFormat(
        _S3_DESTINATION_PATTERN, S3_DESTINATION_MESSAGE, max_length=1024, forbidden=_S3_DESTINATION_FORBIDDEN
    ),
]

# The object store's URL, with a port within 1-65535; barman-cloud's S3 client gets it as --endpoint-url.
_ENDPOINT_URL_PATTERN = _http_url_pattern(
    "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
ENDPOINT_URL_MESSAGE = (
    "endpointURL must be an http:// or https:// URL with a host, an optional port from 1 to 65535 "
    "and no query, e.g. https://minio.storage.svc:9000"
)
EndpointUrl = Annotated[str, StringFormat(_ENDPOINT_URL_PATTERN, ENDPOINT_URL_MESSAGE, max_length=2048)]

REGION_MESSAGE = (
    "region must be letters, digits, '-' and '_', starting and ending with a letter or digit, e.g. us-east-1"
)
Region = Annotated[
    str, StringFormat(r"^[a-zA-Z0-9]([-_a-zA-Z0-9]*[a-zA-Z0-9])?$", REGION_MESSAGE, max_length=63)
]

# A five-field cron expression (minute hour day-of-month month day-of-week) in the syntax every cron
# library reads alike: numbers within each field's range, '*', lists 'a,b', ranges 'a-b' (low to
# high) and steps '*/n', 'a-b/n' and 'a/n'; or one of the macros @hourly ... @yearly. Names (MON,
# JAN), '?', 'L', '#', a seconds field and a day-of-week 7 are not: libraries disagree on them.
_CRON_FIELDS = (
    # (a value, a step): the step is at least 1 and at most the field's largest value.
    ("[0-5]?[0-9]", "([1-9]|[1-5][0-9])"),  # minute 0-59
    ("([01]?[0-9]|2[0-3])", "([1-9]|1[0-9]|2[0-3])"),  # hour 0-23
    ("(0?[1-9]|[12][0-9]|3[01])", "([1-9]|[12][0-9]|3[01])"),  # day of month 1-31
    ("(0?[1-9]|1[0-2])", "([1-9]|1[0-2])"),  # month 1-12
    ("0?[0-6]", "[1-6]"),  # day of week 0-6, 0 is Sunday
)


def _cron_field(value: str, step: str) -> str:
    item = rf"(\*|{value}(-{value})?)(/{step})?"
    return rf"{item}(,{item})*"


_CRON_MACROS = ("hourly", "daily", "midnight", "weekly", "monthly", "yearly", "annually")
_CRON_PATTERN = (
    "^(" + " +".join(_cron_field(value, step) for value, step in _CRON_FIELDS) + ")$"
    f"|^@({'|'.join(_CRON_MACROS)})$"
)
_CRON_RANGE = r"[0-9]+-[0-9]+"
# findAll, not split: the cost the apiserver estimates for nested splits exceeds its budget.
_CRON_RANGES_ASCEND = (
    f"self.findAll('{_CRON_RANGE}').all(range, int(range.split('-')[0]) <= int(range.split('-')[1]))"
)


def _cron_ranges_ascend(schedule: str) -> bool:
    """Mirror of ``_CRON_RANGES_ASCEND``: every range a-b has a <= b."""
    for found in re.findall(_CRON_RANGE, schedule):
        low, high = found.split("-")
        if int(low) > int(high):
            return False
    return True


CRON_SCHEDULE_MESSAGE = (
    "schedule must be a cron expression of five fields, minute (0-59) hour (0-23) day-of-month (1-31) "
    "month (1-12) day-of-week (0-6, 0 is Sunday), each '*', a number, a range low-high, a list a,b or "
    "a step */n or low-high/n, without names; or @hourly, @daily, @weekly, @monthly or @yearly; "
    "e.g. 0 3 * * * (03:00 every day, UTC)"
)
CronSchedule = Annotated[
    str,
    CheckedFormat(
        _CRON_PATTERN,
        CRON_SCHEDULE_MESSAGE,
        max_length=128,
        condition=_CRON_RANGES_ASCEND,
        holds=_cron_ranges_ascend,
    ),
]

# barman's recovery window: RECOVERY WINDOW OF <n> DAYS|WEEKS|MONTHS.
RETENTION_PATTERN = r"^[1-9][0-9]{0,2}[dwm]$"
RETENTION_MESSAGE = (
    "retention must be a number from 1 to 999 followed by d (days), w (weeks) or m (months), "
    "with no space, e.g. 30d"
)
Retention = Annotated[str, StringFormat(RETENTION_PATTERN, RETENTION_MESSAGE, max_length=4)]

# PostgreSQL's archive_timeout, whole seconds. Below the floor, a quiet database would still switch
# and upload a WAL segment every few seconds; above the ceiling, the data-loss window is an hour.
ARCHIVE_TIMEOUT_RANGE = (timedelta(seconds=5), timedelta(hours=1))
_ARCHIVE_TIMEOUT_PATTERN = r"^([0-9]{1,4}(s|m|h))+$"
ARCHIVE_TIMEOUT_MESSAGE = (
    "archiveTimeout must be a duration from 5s to 1h in whole seconds: numbers each followed by s, m or h, "
    "no space, e.g. 30s, 5m or 1m30s"
)
ArchiveTimeout = Annotated[
    str,
    CheckedFormat(
        _ARCHIVE_TIMEOUT_PATTERN,
        ARCHIVE_TIMEOUT_MESSAGE,
        max_length=16,
        condition=(
            f"duration(self) >= duration('{int(ARCHIVE_TIMEOUT_RANGE[0].total_seconds())}s')"
            f" && duration(self) <= duration('{int(ARCHIVE_TIMEOUT_RANGE[1].total_seconds())}s')"
        ),
        holds=lambda value: ARCHIVE_TIMEOUT_RANGE[0] <= parse_duration(value) <= ARCHIVE_TIMEOUT_RANGE[1],
    ),
]

# An RFC 3339 time with its offset, to the microsecond at most (what PostgreSQL keeps), and a day
# that exists in its month.
_TIMESTAMP_PATTERN = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_YEAR, _MONTH, _DAY = "int(self.substring(0, 4))", "self.substring(5, 7)", "int(self.substring(8, 10))"
_DAY_EXISTS = (
    f"{_DAY} <= ({_MONTH} == '02'"
    f" ? ({_YEAR} % 4 == 0 && ({_YEAR} % 100 != 0 || {_YEAR} % 400 == 0) ? 29 : 28)"
    f" : ({_MONTH} in ['04', '06', '09', '11'] ? 30 : 31))"
)
TIMESTAMP_MESSAGE = (
    "time must be an RFC 3339 time with a date that exists and an offset, at most to the microsecond, "
    "e.g. 2026-01-31T14:05:00Z or 2026-01-31T15:05:00.5+01:00"
)
Timestamp = Annotated[
    str,
    CheckedFormat(
        _TIMESTAMP_PATTERN,
        TIMESTAMP_MESSAGE,
        max_length=40,
        condition=_DAY_EXISTS,
        holds=lambda value: int(value[8:10]) <= calendar.monthrange(int(value[:4]), int(value[5:7]))[1],
    ),
]

# A WAL position as PostgreSQL prints it (pg_lsn): two hexadecimal numbers of at most 32 bits.
LSN_MESSAGE = (
    "lsn must be a WAL position as PostgreSQL prints it, two hexadecimal numbers X/Y, e.g. 0/3000060"
)
Lsn = Annotated[str, StringFormat(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$", LSN_MESSAGE, max_length=17)]
