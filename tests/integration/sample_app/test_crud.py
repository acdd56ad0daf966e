"""CRUD for tasks and orders with pagination, bad input (422 naming the field) and auth failures."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from app.core.security import create_access_token
from tests.integration.sample_app.helpers import PASSWORD, SECRET_KEY, register

pytestmark = pytest.mark.integration

ORDER = {
    "customer_name": "Ada",
    "items": [
        {"name": "margherita", "quantity": 2, "unit_price_cents": 950},
        {"name": "lemonade", "quantity": 1, "unit_price_cents": 300},
    ],
}


async def test_task_crud(client: httpx.AsyncClient, auth_headers: dict[str, str]) -> None:
    created = await client.post(
        "/api/v1/tasks", json={"title": "write docs", "description": "for the operator"}, headers=auth_headers
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["title"] == "write docs"
    assert task["status"] == "pending"
    assert task["result"] is None

    fetched = await client.get(f"/api/v1/tasks/{task['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == task

    patched = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"description": "and the sample app"}, headers=auth_headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "write docs"
    assert patched.json()["description"] == "and the sample app"
    assert (await client.get(f"/api/v1/tasks/{task['id']}")).json()["description"] == "and the sample app"

    deleted = await client.delete(f"/api/v1/tasks/{task['id']}", headers=auth_headers)
    assert deleted.status_code == 204
    missing = await client.get(f"/api/v1/tasks/{task['id']}")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Task not found"}
    again = await client.delete(f"/api/v1/tasks/{task['id']}", headers=auth_headers)
    assert again.status_code == 404


async def test_task_pagination_is_newest_first_with_a_total_count(client: httpx.AsyncClient) -> None:
    headers = await register(client)
    before = (await client.get("/api/v1/tasks", params={"limit": 1})).json()["count"]
    ids = []
    for i in range(7):
        response = await client.post("/api/v1/tasks", json={"title": f"page task {i}"}, headers=headers)
        ids.append(response.json()["id"])

    first = (await client.get("/api/v1/tasks", params={"limit": 3})).json()
    second = (await client.get("/api/v1/tasks", params={"limit": 3, "offset": 3})).json()
    assert first["count"] == second["count"] == before + 7
    assert (first["offset"], first["limit"]) == (0, 3)
    assert [t["id"] for t in first["data"]] == ids[::-1][:3]
    assert [t["id"] for t in second["data"]] == ids[::-1][3:6]
    beyond = (await client.get("/api/v1/tasks", params={"offset": 10_000})).json()
    assert beyond["data"] == []
    pending = (await client.get("/api/v1/tasks", params={"status": "pending", "limit": 100})).json()
    assert set(ids) <= {t["id"] for t in pending["data"]}
    completed = (await client.get("/api/v1/tasks", params={"status": "completed"})).json()
    assert not set(ids) & {t["id"] for t in completed["data"]}


async def test_order_crud_and_status_transitions(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    created = await client.post("/api/v1/orders", json=ORDER, headers=auth_headers)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["total_cents"] == 2 * 950 + 300
    assert order["status"] == "pending"
    assert order["items"] == ORDER["items"]
    assert (await client.get(f"/api/v1/orders/{order['id']}")).json() == order

    new_items = [{"name": "calzone", "quantity": 3, "unit_price_cents": 1100}]
    changed = await client.patch(
        f"/api/v1/orders/{order['id']}", json={"items": new_items}, headers=auth_headers
    )
    assert changed.status_code == 200
    assert changed.json()["total_cents"] == 3300

    skip = await client.patch(
        f"/api/v1/orders/{order['id']}", json={"status": "delivered"}, headers=auth_headers
    )
    assert skip.status_code == 409
    assert "pending to delivered" in skip.json()["detail"]
    for step in ("preparing", "ready", "delivered"):
        moved = await client.patch(
            f"/api/v1/orders/{order['id']}", json={"status": step}, headers=auth_headers
        )
        assert moved.status_code == 200, moved.text
        assert (await client.get(f"/api/v1/orders/{order['id']}")).json()["status"] == step
    frozen = await client.patch(
        f"/api/v1/orders/{order['id']}", json={"items": new_items}, headers=auth_headers
    )
    assert frozen.status_code == 409

    assert (await client.delete(f"/api/v1/orders/{order['id']}", headers=auth_headers)).status_code == 204
    assert (await client.get(f"/api/v1/orders/{order['id']}")).status_code == 404


async def test_order_list_filters_and_paginates(client: httpx.AsyncClient) -> None:
    headers = await register(client)
    ids = [(await client.post("/api/v1/orders", json=ORDER, headers=headers)).json()["id"] for _ in range(5)]
    await client.patch(f"/api/v1/orders/{ids[0]}", json={"status": "cancelled"}, headers=headers)

    page = (await client.get("/api/v1/orders", params={"limit": 2})).json()
    assert [o["id"] for o in page["data"]] == ids[::-1][:2]
    assert page["count"] >= 5
    cancelled = (await client.get("/api/v1/orders", params={"status": "cancelled", "limit": 100})).json()
    assert ids[0] in {o["id"] for o in cancelled["data"]}
    assert all(o["status"] == "cancelled" for o in cancelled["data"])


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/tasks", {"title": ""}, ["body", "title"]),
        ("/api/v1/tasks", {"title": "x" * 201}, ["body", "title"]),
        ("/api/v1/tasks", {"description": "no title"}, ["body", "title"]),
        ("/api/v1/tasks", {"title": "ok", "priority": 1}, ["body", "priority"]),
        ("/api/v1/tasks", {"title": "nul\x00byte"}, ["body", "title"]),
        ("/api/v1/orders", {**ORDER, "items": []}, ["body", "items"]),
        ("/api/v1/orders", {**ORDER, "customer_name": 42}, ["body", "customer_name"]),
        (
            "/api/v1/orders",
            {**ORDER, "items": [{"name": "x", "quantity": 0, "unit_price_cents": 1}]},
            ["body", "items", 0, "quantity"],
        ),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    path: str,
    body: dict[str, object],
    field: list[object],
) -> None:
    response = await client.post(path, json=body, headers=auth_headers)
    assert response.status_code == 422, response.text
    assert field in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/tasks/0", ["path", "task_id"]),
        ("/api/v1/tasks/abc", ["path", "task_id"]),
        ("/api/v1/tasks/9223372036854775808", ["path", "task_id"]),
        ("/api/v1/tasks?limit=101", ["query", "limit"]),
        ("/api/v1/tasks?offset=-1", ["query", "offset"]),
        ("/api/v1/orders?status=eaten", ["query", "status"]),
    ],
)
async def test_bad_path_and_query_are_422_naming_the_field(
    client: httpx.AsyncClient, url: str, field: list[object]
) -> None:
    response = await client.get(url)
    assert response.status_code == 422, response.text
    assert field in [error["loc"] for error in response.json()["detail"]]


async def test_order_status_update_rejects_unknown_status(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    order = (await client.post("/api/v1/orders", json=ORDER, headers=auth_headers)).json()
    response = await client.patch(
        f"/api/v1/orders/{order['id']}", json={"status": "eaten"}, headers=auth_headers
    )
    assert response.status_code == 422
    assert ["body", "status"] in [error["loc"] for error in response.json()["detail"]]


# ---- auth failures ----------------------------------------------------------------------


async def test_writes_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tasks", json={"title": "anonymous"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        create_access_token("1", "another-secret-that-is-long-enough-to-sign", timedelta(minutes=5)),
        create_access_token("1", SECRET_KEY, timedelta(seconds=-1)),  # expired
        create_access_token("abc", SECRET_KEY, timedelta(minutes=5)),  # subject is not a user id
        create_access_token("987654321", SECRET_KEY, timedelta(minutes=5)),  # no such user
    ],
    ids=["garbage", "forged", "expired", "bad-subject", "unknown-user"],
)
async def test_invalid_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(
        "/api/v1/tasks", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Could not validate credentials"


async def test_login_failures(client: httpx.AsyncClient) -> None:
    await register(client, "login-failures@example.com")
    wrong = await client.post(
        "/api/v1/login/access-token",
        data={"username": "login-failures@example.com", "password": "wrong-pass"},
    )
    assert wrong.status_code == 401
    unknown = await client.post(
        "/api/v1/login/access-token", data={"username": "nobody@example.com", "password": PASSWORD}
    )
    assert unknown.status_code == 401
    assert wrong.json() == unknown.json()  # no user enumeration
    missing = await client.post("/api/v1/login/access-token", data={"username": "x@example.com"})
    assert missing.status_code == 422
    assert ["body", "password"] in [e["loc"] for e in missing.json()["detail"]]


async def test_token_works_and_expires(client: httpx.AsyncClient) -> None:
    headers = await register(client, "me@example.com")
    me = await client.get("/api/v1/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == "me@example.com"
    login = await client.post(
        "/api/v1/login/access-token", data={"username": "me@example.com", "password": PASSWORD}
    )
    assert login.json()["expires_in"] == 30 * 60
    expired = create_access_token(str(me.json()["id"]), SECRET_KEY, timedelta(seconds=-5))
    assert (
        await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {expired}"})
    ).status_code == 401


async def test_duplicate_signup_is_409(client: httpx.AsyncClient) -> None:
    await register(client, "twice@example.com")
    again = await client.post(
        "/api/v1/users/signup", json={"email": "TWICE@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409


async def test_only_the_owner_changes_a_task_or_order(client: httpx.AsyncClient) -> None:
    owner, other = await register(client), await register(client)
    task = (await client.post("/api/v1/tasks", json={"title": "mine"}, headers=owner)).json()
    order = (await client.post("/api/v1/orders", json=ORDER, headers=owner)).json()
    assert (
        await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "x"}, headers=other)
    ).status_code == 403
    assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=other)).status_code == 403
    assert (await client.delete(f"/api/v1/orders/{order['id']}", headers=other)).status_code == 403
    assert (await client.get(f"/api/v1/tasks/{task['id']}")).json()["title"] == "mine"
