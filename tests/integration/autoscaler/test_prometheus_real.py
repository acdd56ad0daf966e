"""The Prometheus fetch against a REAL Prometheus scraping a real process whose values the test sets.

Covers the answers the unit tests model: one series, several, none, NaN, +-Inf, PromQL errors in
Prometheus's own words, Prometheus-side and client-side timeouts, a dead server, and HTTPS with
basic auth (401s, certificate verification against the right and the wrong CA).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devkit.metric_target import MetricTarget
from devkit.process import LOOPBACK, free_port
from devkit.prometheus import BearerTokenProxy, PkiFiles, PrometheusServer, write_test_pki
from sbo_operator.api.autoscaling import AutoscalingHistory, AutoscalingSpec
from sbo_operator.autoscaler import (
    DecisionBasis,
    MetricError,
    MetricErrorKind,
    MetricOutcome,
    MetricSample,
    decide,
    metrics_unavailable_condition,
)
from sbo_operator.autoscaler.prometheus import (
    PrometheusAuth,
    build_prometheus_client,
    fetch_metric_outcomes,
    query_metric,
)

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "wonderland"
A = 'sbo_test_value{series="a"}'


@pytest.fixture(scope="module")
def target() -> Iterator[MetricTarget]:
    with MetricTarget.start() as running:
        running.set(42.0, series="a")
        running.set(8.0, series="b")
        running.set(math.nan, series="nan")
        running.set(math.inf, series="inf")
        yield running


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, target: MetricTarget) -> Iterator[PrometheusServer]:
    with PrometheusServer.start(
        tmp_path_factory.mktemp("prometheus"), scrape_targets={"target": [target.address]}
    ) as server:
        server.wait_for_target("target")
        server.wait_for_value(A, 42.0)
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return write_test_pki(tmp_path_factory.mktemp("pki"), name="prometheus")


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, target: MetricTarget, pki: PkiFiles
) -> Iterator[PrometheusServer]:
    """HTTPS with a certificate from ``pki``'s CA, and basic auth."""
    with PrometheusServer.start(
        tmp_path_factory.mktemp("secured"),
        scrape_targets={"target": [target.address]},
        tls=pki,
        basic_auth_users={USER: PASSWORD},
    ) as server:
        server.wait_for_target("target")
        server.wait_for_value(A, 42.0)
        yield server


async def query(
    url: str, promql: str, auth: PrometheusAuth | None = None, seconds: float = 5
) -> MetricOutcome:
    async with build_prometheus_client(url, auth) as client:
        return await query_metric(client, promql, timeout_seconds=seconds)


def assert_error(outcome: MetricOutcome, kind: MetricErrorKind, text: str = "") -> MetricError:
    assert isinstance(outcome, MetricError), outcome
    assert outcome.kind is kind, outcome
    assert text in outcome.message
    return outcome


# ---- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("promql", "expected"),
    [
        (A, 42.0),
        ('sum(sbo_test_value{series=~"a|b"})', 50.0),
        ('scalar(sum(sbo_test_value{series=~"a|b"}))', 50.0),
        ("vector(0) or absent_series_xyz", 0.0),
    ],
)
async def test_one_number(prometheus: PrometheusServer, promql: str, expected: float) -> None:
    assert await query(prometheus.url, promql) == MetricSample(expected)


async def test_a_value_the_test_changes_is_read_back(
    prometheus: PrometheusServer, target: MetricTarget
) -> None:
    target.set(412.5, series="moving")
    prometheus.wait_for_value('sbo_test_value{series="moving"}', 412.5)
    assert await query(prometheus.url, 'sbo_test_value{series="moving"}') == MetricSample(412.5)


async def test_several_series(prometheus: PrometheusServer) -> None:
    outcome = await query(prometheus.url, 'sbo_test_value{series=~"a|b"}')
    error = assert_error(outcome, MetricErrorKind.SEVERAL_SERIES, "the query returned 2 series")
    assert 'series="a"' in error.message
    assert 'series="b"' in error.message


async def test_empty(prometheus: PrometheusServer) -> None:
    assert_error(
        await query(prometheus.url, 'sbo_test_value{series="nobody"}'),
        MetricErrorKind.EMPTY_RESULT,
        "no series",
    )


@pytest.mark.parametrize(
    "promql", ["0/0", "vector(0)/0", f"{A} * 0 / 0", 'sbo_test_value{series="nan"}'], ids=str
)
async def test_nan(prometheus: PrometheusServer, promql: str) -> None:
    assert_error(await query(prometheus.url, promql), MetricErrorKind.NOT_A_NUMBER, "the query returned NaN")


@pytest.mark.parametrize(
    ("promql", "text"),
    [("1/0", "+Inf"), ("-1/0", "-Inf"), ("vector(1)/0", "+Inf"), ('sbo_test_value{series="inf"}', "+Inf")],
    ids=str,
)
async def test_infinite(prometheus: PrometheusServer, promql: str, text: str) -> None:
    assert_error(await query(prometheus.url, promql), MetricErrorKind.INFINITE, f"the query returned {text}")


async def test_promql_syntax_error_in_prometheus_words(prometheus: PrometheusServer) -> None:
    broken = "sum(rate(sbo_test_value{series=}[1m]))"
    error = assert_error(await query(prometheus.url, broken), MetricErrorKind.QUERY_ERROR, "parse error")
    # Verbatim: exactly the text Prometheus itself returned.
    assert error.message == prometheus.query(broken)["error"]


async def test_execution_error_in_prometheus_words(prometheus: PrometheusServer) -> None:
    many_to_many = 'sbo_test_value{series=~"a|b"} + on() sbo_test_value{series=~"a|b"}'
    error = assert_error(await query(prometheus.url, many_to_many), MetricErrorKind.QUERY_ERROR)
    assert "many-to-many matching not allowed" in error.message
    assert error.message == prometheus.query(many_to_many)["error"]


async def test_range_vector(prometheus: PrometheusServer) -> None:
    assert_error(
        await query(prometheus.url, f"{A}[1m]"), MetricErrorKind.UNEXPECTED_RESULT_TYPE, "range vector"
    )


# ---- timeouts and dead servers ---------------------------------------------------------------------


async def test_a_heavy_query_times_out_in_prometheus_words(prometheus: PrometheusServer) -> None:
    heavy = f"count_over_time(({A} * 2)[4h:1ms])"
    started = asyncio.get_running_loop().time()
    outcome = await query(prometheus.url, heavy, seconds=3)
    assert_error(outcome, MetricErrorKind.TIMEOUT, "query timed out in expression evaluation")
    assert asyncio.get_running_loop().time() - started < 4


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept_and_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_hold, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://{LOOPBACK}:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_server_that_never_answers_times_out(silent_server: str) -> None:
    started = asyncio.get_running_loop().time()
    outcome = await query(silent_server, "up", seconds=0.5)
    assert_error(outcome, MetricErrorKind.TIMEOUT, "within 0.5s")
    assert asyncio.get_running_loop().time() - started < 2


async def test_nothing_listening() -> None:
    assert_error(await query(f"http://{LOOPBACK}:{free_port()}", "up"), MetricErrorKind.CONNECTION_ERROR)


async def test_prometheus_killed_then_restarted(tmp_path: Path, target: MetricTarget) -> None:
    with PrometheusServer.start(tmp_path, scrape_targets={"target": [target.address]}) as server:
        server.wait_for_value(A, 42.0)
        async with build_prometheus_client(server.url) as client:
            assert await query_metric(client, A, timeout_seconds=5) == MetricSample(42.0)
            server.kill()
            assert_error(await query_metric(client, A, timeout_seconds=5), MetricErrorKind.CONNECTION_ERROR)
            server.restart()
            server.wait_for_value(A, 42.0)
            # The same shared client recovers once Prometheus is back.
            assert await query_metric(client, A, timeout_seconds=5) == MetricSample(42.0)


# ---- TLS and auth ----------------------------------------------------------------------------------


async def test_right_ca_and_credentials(secured: PrometheusServer, pki: PkiFiles) -> None:
    auth = PrometheusAuth(basic=(USER, PASSWORD), ca_pem=pki.ca_pem)
    assert await query(secured.url, A, auth) == MetricSample(42.0)


async def test_no_credentials_is_401(secured: PrometheusServer, pki: PkiFiles) -> None:
    outcome = await query(secured.url, A, PrometheusAuth(ca_pem=pki.ca_pem))
    assert_error(outcome, MetricErrorKind.UNAUTHORIZED, "HTTP 401: Unauthorized")


async def test_wrong_password_is_401(secured: PrometheusServer, pki: PkiFiles) -> None:
    outcome = await query(secured.url, A, PrometheusAuth(basic=(USER, "guess"), ca_pem=pki.ca_pem))
    assert_error(outcome, MetricErrorKind.UNAUTHORIZED, "HTTP 401")


async def test_a_bearer_token_is_not_basic_auth(secured: PrometheusServer, pki: PkiFiles) -> None:
    outcome = await query(secured.url, A, PrometheusAuth(bearer_token="t0ken", ca_pem=pki.ca_pem))
    assert_error(outcome, MetricErrorKind.UNAUTHORIZED, "HTTP 401")


@pytest.fixture(scope="module")
def bearer_proxy(prometheus: PrometheusServer) -> Iterator[BearerTokenProxy]:
    with BearerTokenProxy(prometheus.url, token="t0ken") as proxy:
        yield proxy


async def test_right_bearer_token(bearer_proxy: BearerTokenProxy) -> None:
    assert await query(bearer_proxy.url, A, PrometheusAuth(bearer_token="t0ken")) == MetricSample(42.0)


@pytest.mark.parametrize("auth", [None, PrometheusAuth(bearer_token="wrong")], ids=["none", "wrong"])
async def test_missing_or_wrong_bearer_token_is_401(
    bearer_proxy: BearerTokenProxy, auth: PrometheusAuth | None
) -> None:
    outcome = await query(bearer_proxy.url, A, auth)
    assert_error(outcome, MetricErrorKind.UNAUTHORIZED, "HTTP 401: missing or wrong bearer token")


async def test_unknown_ca_fails_verification(secured: PrometheusServer) -> None:
    outcome = await query(secured.url, A, PrometheusAuth(basic=(USER, PASSWORD)))
    assert_error(outcome, MetricErrorKind.TLS_ERROR, "CERTIFICATE_VERIFY_FAILED")


async def test_another_ca_fails_verification(secured: PrometheusServer, tmp_path: Path) -> None:
    other = write_test_pki(tmp_path, name="other")
    outcome = await query(secured.url, A, PrometheusAuth(basic=(USER, PASSWORD), ca_pem=other.ca_pem))
    assert_error(outcome, MetricErrorKind.TLS_ERROR, "CERTIFICATE_VERIFY_FAILED")


async def test_insecure_skip_verify(secured: PrometheusServer) -> None:
    auth = PrometheusAuth(basic=(USER, PASSWORD), insecure_skip_verify=True)
    assert await query(secured.url, A, auth) == MetricSample(42.0)


async def test_plain_http_to_an_https_port(secured: PrometheusServer) -> None:
    plain = secured.url.replace("https://", "http://")
    outcome = await query(plain, A, PrometheusAuth(basic=(USER, PASSWORD)))
    # Go's TLS server answers plain HTTP with a 400 and closes; under load the
    # client may see the close first. Either way it is a typed error that says so.
    assert isinstance(outcome, MetricError)
    if outcome.kind is MetricErrorKind.HTTP_ERROR:
        assert "HTTP 400: Client sent an HTTP request to an HTTPS server." in outcome.message
    else:
        assert outcome.kind is MetricErrorKind.CONNECTION_ERROR
        assert outcome.message.startswith(f"cannot reach {plain}")
        assert not outcome.message.endswith(": "), "the reason is never empty"


async def test_https_to_a_plain_port(prometheus: PrometheusServer, pki: PkiFiles) -> None:
    tls_url = prometheus.url.replace("http://", "https://")
    assert_error(await query(tls_url, A, PrometheusAuth(ca_pem=pki.ca_pem)), MetricErrorKind.TLS_ERROR)


# ---- real answers through decide() -----------------------------------------------------------------


async def test_real_answers_drive_a_decision(prometheus: PrometheusServer) -> None:
    spec = AutoscalingSpec.model_validate(
        {
            "minReplicas": 1,
            "maxReplicas": 20,
            "metrics": [
                {"name": "load", "query": A, "targetPerReplica": 5},
                {"name": "broken", "query": "sum(rate(sbo_test_value{series=}[1m]))", "target": 1},
            ],
        }
    )
    async with build_prometheus_client(prometheus.url) as client:
        outcomes = await fetch_metric_outcomes(client, spec.metrics, timeout_seconds=5)
    decision = decide(
        spec=spec,
        current_replicas=4,
        samples=outcomes,
        history=AutoscalingHistory(),
        now=datetime.now(UTC),
    )
    # load=42 at 5/replica asks for 9; the broken query may not stop a scale up.
    assert decision.basis is DecisionBasis.PARTIAL_METRICS
    assert decision.desired_replicas == 8  # the default scale-up policy: at most double
    condition = metrics_unavailable_condition(decision)
    assert (condition.status, condition.reason) == ("True", "QueryError")
    assert prometheus.query("sum(rate(sbo_test_value{series=}[1m]))")["error"] in condition.message
