"""A thin async Prometheus client: one instant query per metric, every odd answer typed.

Nothing here raises for a bad answer: each query yields a ``MetricSample`` or a ``MetricError``
carrying Prometheus's own error text, so ``decide()`` can handle it explicitly.

One ``httpx.AsyncClient`` per (url, credentials) is meant to be shared by every object that uses
that Prometheus; ``build_prometheus_client()`` makes one, the caller owns and closes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sbo_operator.api.autoscaling import MetricSpec
from sbo_operator.autoscaler.samples import MetricError, MetricErrorKind, MetricOutcome, MetricSample

__all__ = [
    "InvalidPrometheusAuth",
    "PrometheusAuth",
    "build_prometheus_client",
    "fetch_metric_outcomes",
    "parse_query_response",
    "query_metric",
]

QUERY_PATH = "/api/v1/query"
# Share of the client-side deadline given to Prometheus to evaluate the query.
EVALUATION_TIMEOUT_SHARE = 0.8
# Error text quoted from a body is cut here: enough for a message, small enough for a status.
_MAX_QUOTED_CHARS = 300


class InvalidPrometheusAuth(ValueError):
    """The resolved credentials cannot be used (e.g. the CA bundle is not valid PEM)."""


@dataclass(frozen=True, slots=True)
class PrometheusAuth:
    """Credentials already resolved from Secrets/ConfigMaps by the reconciler.

    Hashable, so a caller can key its shared clients by ``(url, auth)``.
    """

    bearer_token: str | None = None
    basic: tuple[str, str] | None = None
    ca_pem: str | None = None
    insecure_skip_verify: bool = False

    def __repr__(self) -> str:
        # Never print secrets in logs or tracebacks.
        return (
            f"PrometheusAuth(bearer_token={'***' if self.bearer_token else None}, "
            f"basic={'***' if self.basic else None}, ca_pem={'<pem>' if self.ca_pem else None}, "
            f"insecure_skip_verify={self.insecure_skip_verify})"
        )


def build_prometheus_client(
    url: str,
    auth: PrometheusAuth | None = None,
    *,
    max_connections: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``AsyncClient`` for the Prometheus at ``url`` with ``auth`` applied.

    Share it between all objects polling the same Prometheus with the same credentials, and close
    it with ``await client.aclose()``. ``transport`` is for tests. Raises ``InvalidPrometheusAuth``
    if the CA bundle cannot be loaded.
    """
    auth = auth or PrometheusAuth()
    verify: ssl.SSLContext | bool
    if auth.insecure_skip_verify:
        verify = False
    elif auth.ca_pem:
        try:
            verify = ssl.create_default_context(cadata=auth.ca_pem)
        except (ssl.SSLError, ValueError) as error:
            raise InvalidPrometheusAuth(f"the CA bundle is not usable: {error}") from error
    else:
        verify = True
    headers = {"Accept": "application/json"}
    if auth.bearer_token:
        headers["Authorization"] = f"Bearer {auth.bearer_token}"
    return httpx.AsyncClient(
        base_url=url,
        headers=headers,
        auth=httpx.BasicAuth(*auth.basic) if auth.basic else None,
        verify=verify,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        transport=transport,
        follow_redirects=False,
    )


async def query_metric(client: httpx.AsyncClient, query: str, *, timeout_seconds: float) -> MetricOutcome:
    """Run one instant query; never raises for what Prometheus or the network does.

    ``timeout_seconds`` bounds the whole exchange (connect, send, wait and read). Prometheus gets
    a slightly shorter evaluation timeout, so a query that is merely too heavy comes back with
    Prometheus's own words ("query timed out in expression evaluation") rather than silence.
    """
    evaluation_timeout = timeout_seconds * EVALUATION_TIMEOUT_SHARE
    try:
        async with asyncio.timeout(timeout_seconds):
            response = await client.post(
                QUERY_PATH,
                data={"query": query, "timeout": f"{evaluation_timeout:g}"},
                timeout=timeout_seconds,
            )
    except (TimeoutError, httpx.TimeoutException):
        return MetricError(
            MetricErrorKind.TIMEOUT, f"no answer from {client.base_url} within {timeout_seconds:g}s"
        )
    except httpx.TransportError as error:
        tls_error = _tls_cause(error)
        if tls_error is not None:
            return MetricError(MetricErrorKind.TLS_ERROR, f"TLS with {client.base_url} failed: {tls_error}")
        return MetricError(
            MetricErrorKind.CONNECTION_ERROR,
            f"cannot reach {client.base_url}: {str(error) or type(error).__name__}",
        )
    return parse_query_response(response.status_code, response.content)


async def fetch_metric_outcomes(
    client: httpx.AsyncClient, metrics: Sequence[MetricSpec], *, timeout_seconds: float
) -> dict[str, MetricOutcome]:
    """Query every metric concurrently; map each metric name to its outcome."""
    outcomes = await asyncio.gather(
        *(query_metric(client, metric.query, timeout_seconds=timeout_seconds) for metric in metrics)
    )
    return {metric.name: outcome for metric, outcome in zip(metrics, outcomes, strict=True)}


def parse_query_response(status_code: int, body: bytes) -> MetricOutcome:
    """Turn one ``/api/v1/query`` answer into a sample or a typed error. Pure.

    Accepts a scalar or an instant vector of exactly one series.
    """
    if status_code in (401, 403):
        return MetricError(MetricErrorKind.UNAUTHORIZED, f"HTTP {status_code}: {_quote(body)}")
    try:
        payload = json.loads(body)
    except ValueError:
        if status_code >= 400:
            return MetricError(MetricErrorKind.HTTP_ERROR, f"HTTP {status_code}: {_quote(body)}")
        return MetricError(MetricErrorKind.INVALID_RESPONSE, f"the answer is not JSON: {_quote(body)}")
    if not isinstance(payload, dict):
        return MetricError(
            MetricErrorKind.INVALID_RESPONSE, f"the answer is not a JSON object: {_quote(body)}"
        )

    if payload.get("status") == "error":
        error_text = str(payload.get("error", "")) or f"HTTP {status_code}, no error text"
        if payload.get("errorType") == "timeout":
            return MetricError(MetricErrorKind.TIMEOUT, error_text)
        return MetricError(MetricErrorKind.QUERY_ERROR, error_text)
    if status_code >= 400:
        return MetricError(MetricErrorKind.HTTP_ERROR, f"HTTP {status_code}: {_quote(body)}")
    if payload.get("status") != "success" or not isinstance(payload.get("data"), dict):
        return MetricError(MetricErrorKind.INVALID_RESPONSE, f"not a Prometheus query answer: {_quote(body)}")

    data: dict[str, Any] = payload["data"]
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return _sample_from_pair(result)
    if result_type == "vector" and isinstance(result, list):
        if not result:
            return MetricError(
                MetricErrorKind.EMPTY_RESULT,
                "the query returned no series (append `or vector(0)` if none means zero)",
            )
        if len(result) > 1:
            labels = ", ".join(_labels(series) for series in result[:3])
            more = ", ..." if len(result) > 3 else ""
            return MetricError(
                MetricErrorKind.SEVERAL_SERIES,
                f"the query returned {len(result)} series ({labels}{more}); "
                "aggregate them with sum() or max()",
            )
        series = result[0]
        if not isinstance(series, dict) or "value" not in series:
            return MetricError(
                MetricErrorKind.UNEXPECTED_RESULT_TYPE,
                f"the series has no float value (a native histogram?): {_quote(json.dumps(series).encode())}",
            )
        return _sample_from_pair(series["value"])
    if result_type == "matrix":
        return MetricError(
            MetricErrorKind.UNEXPECTED_RESULT_TYPE,
            "the query returned a range vector; wrap it in a function such as rate() or avg_over_time()",
        )
    return MetricError(
        MetricErrorKind.UNEXPECTED_RESULT_TYPE,
        f"the query returned a {result_type!s} result; expected a scalar or an instant vector",
    )


def _sample_from_pair(pair: object) -> MetricOutcome:
    """A ``[timestamp, "value"]`` pair as a sample; NaN and +-Inf are errors."""
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        return MetricError(MetricErrorKind.INVALID_RESPONSE, f"not a [time, value] pair: {pair!r:.100}")
    try:
        value = float(pair[1])
    except ValueError:
        return MetricError(MetricErrorKind.INVALID_RESPONSE, f"not a number: {pair[1]!r:.100}")
    if math.isnan(value):
        return MetricError(MetricErrorKind.NOT_A_NUMBER, f"the query returned {pair[1]}")
    if math.isinf(value):
        return MetricError(MetricErrorKind.INFINITE, f"the query returned {pair[1]}")
    return MetricSample(value)


def _labels(series: object) -> str:
    metric = series.get("metric") if isinstance(series, dict) else None
    if not isinstance(metric, dict):
        return "{}"
    return "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(metric.items())) + "}"


def _quote(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _MAX_QUOTED_CHARS else text[:_MAX_QUOTED_CHARS] + "..."


def _tls_cause(error: BaseException) -> ssl.SSLError | None:
    """The ssl error somewhere in the exception's chain, if TLS is what failed."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
