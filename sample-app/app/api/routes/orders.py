"""Restaurant Orders API: orders with a customer, items and a status that moves forward."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from app import crud
from app.api.deps import (
    CacheDep,
    ConsistencyTokenDep,
    CurrentUser,
    DatabaseDep,
    ServicesDep,
    WriteSessionDep,
)
from app.api.entities import EntityKind, commit_write, get_own_for_update, read_entity
from app.core.config import API_V1_PREFIX
from app.models import Order, OrderStatus
from app.schemas import MAX_ID, Message, OrderCreate, OrderPublic, OrderUpdate, Page

router = APIRouter(prefix=f"{API_V1_PREFIX}/orders", tags=["orders"])

OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Message, "description": "No such order"}}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"model": Message, "description": "The order belongs to someone else"},
    409: {"model": Message, "description": "Not allowed in the order's current status"},
}
ORDERS = EntityKind(resource="order", model=Order, public=OrderPublic, not_found="Order not found")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrderPublic)
async def create_order(
    order_in: OrderCreate,
    session: WriteSessionDep,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
) -> OrderPublic:
    order = await crud.create_order(session, order_in, user.id)
    await commit_write(session, response, services)
    return OrderPublic.model_validate(order)


@router.get("", response_model=Page[OrderPublic])
async def list_orders(
    db: DatabaseDep,
    consistency: ConsistencyTokenDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> Page[OrderPublic]:
    """Newest first, optionally filtered by status."""
    async with db.reader(consistency) as session:
        rows, count = await crud.list_orders(session, offset=offset, limit=limit, status=order_status)
        data = [OrderPublic.model_validate(row) for row in rows]
    return Page[OrderPublic](data=data, count=count, offset=offset, limit=limit)


@router.get("/{order_id}", response_model=OrderPublic, responses=NOT_FOUND)
async def read_order(
    order_id: OrderId, db: DatabaseDep, cache: CacheDep, consistency: ConsistencyTokenDep
) -> Response:
    return await read_entity(ORDERS, order_id, db, cache, consistency)


@router.patch("/{order_id}", response_model=OrderPublic, responses=CHANGE_ERRORS)
async def update_order(
    order_id: OrderId,
    order_in: OrderUpdate,
    session: WriteSessionDep,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
) -> OrderPublic:
    """Change items (while pending), notes, or move the status along
    pending → preparing → ready → delivered (or cancelled before it is ready)."""
    order = await get_own_for_update(ORDERS, session, order_id, user)
    await crud.update_order(session, order, order_in)
    await commit_write(session, response, services, changed=ORDERS.key(order_id))
    return OrderPublic.model_validate(order)


@router.delete("/{order_id}", status_code=status.HTTP_204_NO_CONTENT, responses=CHANGE_ERRORS)
async def delete_order(
    order_id: OrderId, session: WriteSessionDep, user: CurrentUser, services: ServicesDep, response: Response
) -> None:
    order = await get_own_for_update(ORDERS, session, order_id, user)
    await session.delete(order)
    await commit_write(session, response, services, changed=ORDERS.key(order_id))
