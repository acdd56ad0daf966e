"""Pure pieces: circuit breaker, WAL positions, schemas, order rules, tokens, metric labels."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest
from pydantic import ValidationError

from app.core.cache import newest_lsn
from app.core.db import format_lsn, parse_lsn
from app.core.metrics import Metrics, PrometheusMiddleware
from app.core.redis_client import BreakerState, CircuitBreaker
from app.core.security import create_access_token, decode_access_token
from app.crud import ORDER_TRANSITIONS, order_total_cents
from app.models import OrderStatus
from app.schemas import OrderCreate, OrderItem, TaskCreate, TaskUpdate, UserCreate

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_the_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=5, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # one trial
    assert not breaker.allow()  # only one
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN  # trial failed: open again for a full cool-down
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0/0", 0),
        ("0/3437840", 0x3437840),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_round_trip(text: str, position: int) -> None:
    assert parse_lsn(text) == position
    assert format_lsn(position) == text


@pytest.mark.parametrize(
    "text", [None, "", "abc", "1/", "/1", "1/2/3", "G/1", "123456789/0", "0/0; DROP TABLE"]
)
def test_non_lsns_are_ignored(text: str | None) -> None:
    assert parse_lsn(text) is None


def test_newest_lsn_compares_positions_not_strings() -> None:
    assert newest_lsn("0/9", "0/10") == "0/10"
    assert newest_lsn("1/0", "0/FFFFFFFF") == "1/0"
    assert newest_lsn(None, "junk") is None
    assert newest_lsn(None, "0/5") == "0/5"


def test_schemas_refuse_text_postgres_cannot_store() -> None:
    with pytest.raises(ValidationError) as info:
        TaskCreate(title="a\x00b")
    assert info.value.errors()[0]["loc"] == ("title",)
    with pytest.raises(ValidationError):
        TaskCreate(title="\ud800")
    with pytest.raises(ValidationError):
        TaskUpdate(title=None)
    assert TaskUpdate(description=None).model_fields_set == {"description"}
    with pytest.raises(ValidationError):
        UserCreate(email="not-an-email", password="long enough")
    with pytest.raises(ValidationError):
        OrderCreate(customer_name="x", items=[], notes=None)


def test_order_total_and_transitions() -> None:
    items = [
        OrderItem(name="a", quantity=2, unit_price_cents=150),
        OrderItem(name="b", quantity=1, unit_price_cents=99),
    ]
    assert order_total_cents(items) == 399
    # Every status is reachable from pending, and the terminal ones lead nowhere.
    reachable = {OrderStatus.PENDING}
    frontier = [OrderStatus.PENDING]
    while frontier:
        for nxt in ORDER_TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(OrderStatus)
    assert ORDER_TRANSITIONS[OrderStatus.DELIVERED] == frozenset()
    assert ORDER_TRANSITIONS[OrderStatus.CANCELLED] == frozenset()


def test_tokens_expire_and_are_bound_to_the_secret() -> None:
    secret = "k" * 40
    token = create_access_token("42", secret, timedelta(minutes=1))
    assert decode_access_token(token, secret) == "42"
    with pytest.raises(jwt.InvalidSignatureError):
        decode_access_token(token, "x" * 40)
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_access_token(create_access_token("42", secret, timedelta(seconds=-1)), secret)
    unsigned = jwt.encode({"sub": "42"}, secret, algorithm="HS256")  # no exp
    with pytest.raises(jwt.MissingRequiredClaimError):
        decode_access_token(unsigned, secret)


async def test_http_metrics_use_route_templates() -> None:
    metrics = Metrics()
    app = FastAPI()
    router = APIRouter(prefix="/api/v1/things")

    @router.get("/{thing_id}")
    async def read_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app.include_router(router)
    app.add_middleware(PrometheusMiddleware, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for thing_id in (1, 2, 3):
            assert (await client.get(f"/api/v1/things/{thing_id}")).status_code == 200
        assert (await client.get("/nope/123")).status_code == 404
        assert (await client.get("/api/v1/things/abc")).status_code == 422
    text = generate_latest(metrics.registry).decode()
    assert 'http_requests_total{method="GET",route="/api/v1/things/{thing_id}",status="200"} 3.0' in text
    assert 'http_requests_total{method="GET",route="/api/v1/things/{thing_id}",status="422"} 1.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/api/v1/things/{thing_id}"} 4.0' in text
    assert "/things/1" not in text
