"""Every odd Prometheus answer, table-driven (KEDA's prometheus_scaler_test.go style), and the fetch
against httpx.MockTransport for HTTP errors, timeouts, TLS and connection failures."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from sbo_operator.api.autoscaling import MetricSpec
from sbo_operator.autoscaler import MetricError, MetricErrorKind, MetricOutcome, MetricSample
from sbo_operator.autoscaler.prometheus import (
    InvalidPrometheusAuth,
    PrometheusAuth,
    build_prometheus_client,
    fetch_metric_outcomes,
    parse_query_response,
    query_metric,
)

pytestmark = pytest.mark.unit


def vector(*values: str, labels: list[dict[str, str]] | None = None) -> bytes:
    series = [
        {"metric": (labels or [{}] * len(values))[index], "value": [1717243200.123, value]}
        for index, value in enumerate(values)
    ]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()


def prometheus_error(error_type: str, error: str) -> bytes:
    return json.dumps({"status": "error", "errorType": error_type, "error": error}).encode()


PARSE_ERROR = '1:14: parse error: unexpected "}" in label matching, expected string'


@dataclass(frozen=True)
class Answer:
    id: str
    status: int
    body: bytes
    expected: MetricOutcome | MetricErrorKind
    message: str = ""


ANSWERS = [
    Answer("one series", 200, vector("412.5"), MetricSample(412.5)),
    Answer("one series, zero", 200, vector("0"), MetricSample(0.0)),
    Answer("one series, negative", 200, vector("-3"), MetricSample(-3.0)),
    Answer("one series, exponent", 200, vector("1.5e+06"), MetricSample(1.5e6)),
    Answer(
        "scalar",
        200,
        b'{"status":"success","data":{"resultType":"scalar","result":[1717243200,"7"]}}',
        MetricSample(7.0),
    ),
    Answer(
        "empty vector",
        200,
        vector(),
        MetricErrorKind.EMPTY_RESULT,
        "the query returned no series (append `or vector(0)` if none means zero)",
    ),
    Answer("NaN", 200, vector("NaN"), MetricErrorKind.NOT_A_NUMBER, "the query returned NaN"),
    Answer("+Inf", 200, vector("+Inf"), MetricErrorKind.INFINITE, "the query returned +Inf"),
    Answer("-Inf", 200, vector("-Inf"), MetricErrorKind.INFINITE, "the query returned -Inf"),
    Answer(
        "scalar +Inf",
        200,
        b'{"status":"success","data":{"resultType":"scalar","result":[1717243200,"+Inf"]}}',
        MetricErrorKind.INFINITE,
    ),
    Answer(
        "several series",
        200,
        vector("1", "2", labels=[{"pod": "a"}, {"pod": "b"}]),
        MetricErrorKind.SEVERAL_SERIES,
        'the query returned 2 series ({pod="a"}, {pod="b"}); aggregate them with sum() or max()',
    ),
    Answer(
        "many series: three named",
        200,
        vector("1", "2", "3", "4", labels=[{"i": str(n)} for n in range(4)]),
        MetricErrorKind.SEVERAL_SERIES,
        'the query returned 4 series ({i="0"}, {i="1"}, {i="2"}, ...)',
    ),
    Answer(
        "matrix",
        200,
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}',
        MetricErrorKind.UNEXPECTED_RESULT_TYPE,
        "range vector",
    ),
    Answer(
        "string",
        200,
        b'{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}',
        MetricErrorKind.UNEXPECTED_RESULT_TYPE,
        "string result",
    ),
    Answer(
        "native histogram series",
        200,
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}',
        MetricErrorKind.UNEXPECTED_RESULT_TYPE,
        "native histogram",
    ),
    Answer(
        "PromQL syntax error",
        400,
        prometheus_error("bad_data", PARSE_ERROR),
        MetricErrorKind.QUERY_ERROR,
        PARSE_ERROR,
    ),
    Answer(
        "execution error",
        422,
        prometheus_error("execution", "query processing would load too many samples into memory"),
        MetricErrorKind.QUERY_ERROR,
        "query processing would load too many samples into memory",
    ),
    Answer(
        "Prometheus-side timeout",
        503,
        prometheus_error("timeout", "query timed out in expression evaluation"),
        MetricErrorKind.TIMEOUT,
        "query timed out in expression evaluation",
    ),
    Answer("error with 200", 200, prometheus_error("internal", "boom"), MetricErrorKind.QUERY_ERROR, "boom"),
    Answer("401", 401, b"Unauthorized\n", MetricErrorKind.UNAUTHORIZED, "HTTP 401: Unauthorized"),
    Answer("403", 403, b"Forbidden", MetricErrorKind.UNAUTHORIZED, "HTTP 403: Forbidden"),
    Answer(
        "502 from a proxy",
        502,
        b"<html>Bad Gateway</html>",
        MetricErrorKind.HTTP_ERROR,
        "HTTP 502: <html>Bad Gateway",
    ),
    Answer("404 JSON not Prometheus", 404, b'{"detail":"Not Found"}', MetricErrorKind.HTTP_ERROR, "HTTP 404"),
    Answer("200 HTML", 200, b"<html>login</html>", MetricErrorKind.INVALID_RESPONSE, "not JSON"),
    Answer("200 JSON list", 200, b"[1, 2]", MetricErrorKind.INVALID_RESPONSE, "not a JSON object"),
    Answer("200 without status", 200, b'{"data": {}}', MetricErrorKind.INVALID_RESPONSE),
    Answer(
        "value not a number", 200, vector("many"), MetricErrorKind.INVALID_RESPONSE, "not a number: 'many'"
    ),
    Answer(
        "value not a pair",
        200,
        b'{"status":"success","data":{"resultType":"scalar","result":"7"}}',
        MetricErrorKind.INVALID_RESPONSE,
    ),
    Answer(
        "huge body is quoted short",
        502,
        b"x" * 10_000,
        MetricErrorKind.HTTP_ERROR,
        "HTTP 502: " + "x" * 300 + "...",
    ),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=[answer.id for answer in ANSWERS])
def test_parse_query_response(answer: Answer) -> None:
    outcome = parse_query_response(answer.status, answer.body)
    if isinstance(answer.expected, MetricSample):
        assert outcome == answer.expected
    else:
        assert isinstance(outcome, MetricError), outcome
        assert outcome.kind is answer.expected
        assert answer.message in outcome.message


# ---- the fetch, over a mock transport ---------------------------------------------------------------

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def client_with(handler: Handler, auth: PrometheusAuth | None = None) -> httpx.AsyncClient:
    return build_prometheus_client(
        "http://prometheus.test:9090/prom", auth, transport=httpx.MockTransport(handler)
    )


async def test_query_posts_the_query_and_timeout_to_the_api() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=vector("3"))

    async with client_with(handler) as client:
        outcome = await query_metric(client, 'sum(rate(x{a="b"}[1m]))', timeout_seconds=2.5)
    assert outcome == MetricSample(3.0)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://prometheus.test:9090/prom/api/v1/query"
    form = dict(httpx.QueryParams(request.content.decode()))
    # Prometheus gives up first, so its own timeout text reaches the status.
    assert form == {"query": 'sum(rate(x{a="b"}[1m]))', "timeout": "2"}
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        (PrometheusAuth(bearer_token="s3cret"), "Bearer s3cret"),
        (PrometheusAuth(basic=("alice", "pw")), "Basic YWxpY2U6cHc="),
    ],
)
async def test_credentials_are_sent(auth: PrometheusAuth, header: str) -> None:
    seen: list[str | None] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, content=vector("1"))

    async with client_with(handler, auth) as client:
        assert await query_metric(client, "up", timeout_seconds=1) == MetricSample(1.0)
    assert seen == [header]


def test_credentials_never_show_in_repr() -> None:
    text = repr(PrometheusAuth(bearer_token="s3cret", basic=("alice", "pw")))
    assert "s3cret" not in text
    assert "pw" not in text


def test_an_invalid_ca_bundle_is_refused_when_building_the_client() -> None:
    with pytest.raises(InvalidPrometheusAuth, match="CA bundle"):
        build_prometheus_client("https://p:9090", PrometheusAuth(ca_pem="not a certificate"))


def raising(error: Exception) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


def tls_failure() -> httpx.ConnectError:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    try:
        raise httpx.ConnectError("handshake failed") from cause
    except httpx.ConnectError as error:
        return error


@pytest.mark.parametrize(
    ("handler", "kind", "message"),
    [
        (raising(httpx.ReadTimeout("timed out")), MetricErrorKind.TIMEOUT, "within 1s"),
        (raising(httpx.ConnectTimeout("timed out")), MetricErrorKind.TIMEOUT, "within 1s"),
        (
            raising(httpx.ConnectError("[Errno 111] Connection refused")),
            MetricErrorKind.CONNECTION_ERROR,
            "Connection refused",
        ),
        (
            raising(httpx.RemoteProtocolError("Server disconnected without sending a response.")),
            MetricErrorKind.CONNECTION_ERROR,
            "Server disconnected",
        ),
        (raising(tls_failure()), MetricErrorKind.TLS_ERROR, "CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["read timeout", "connect timeout", "refused", "disconnected", "tls"],
)
async def test_transport_failures_are_typed(handler: Handler, kind: MetricErrorKind, message: str) -> None:
    async with client_with(handler) as client:
        outcome = await query_metric(client, "up", timeout_seconds=1)
    assert isinstance(outcome, MetricError)
    assert outcome.kind is kind
    assert message in outcome.message


async def test_the_timeout_bounds_the_whole_exchange() -> None:
    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, content=vector("1"))

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client_with(never_answers) as client:
        outcome = await query_metric(client, "up", timeout_seconds=0.2)
    assert outcome == MetricError(
        MetricErrorKind.TIMEOUT, "no answer from http://prometheus.test:9090/prom/ within 0.2s"
    )
    assert loop.time() - started < 2


async def test_fetch_queries_every_metric_concurrently() -> None:
    answers = {"good": vector("5"), "empty": vector(), "slow": vector("1")}
    in_flight = 0
    most_in_flight = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most_in_flight
        query = dict(httpx.QueryParams(request.content.decode()))["query"]
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(5 if query == "slow" else 0.05)
        in_flight -= 1
        return httpx.Response(200, content=answers[query])

    metrics = [MetricSpec(name=name, query=name, target_per_replica=1) for name in answers]
    async with client_with(handler) as client:
        outcomes = await fetch_metric_outcomes(client, metrics, timeout_seconds=0.5)
    assert outcomes["good"] == MetricSample(5.0)
    assert isinstance(outcomes["empty"], MetricError)
    assert outcomes["empty"].kind is MetricErrorKind.EMPTY_RESULT
    assert isinstance(outcomes["slow"], MetricError)
    assert outcomes["slow"].kind is MetricErrorKind.TIMEOUT
    assert most_in_flight == 3
