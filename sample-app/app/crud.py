"""Database operations. Routes decide which session (primary or replica) to pass in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Order, OrderStatus, Task, User
from app.schemas import OrderCreate, OrderItem, OrderUpdate, TaskCreate, TaskUpdate, UserCreate

ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PREPARING, OrderStatus.CANCELLED}),
    OrderStatus.PREPARING: frozenset({OrderStatus.READY, OrderStatus.CANCELLED}),
    OrderStatus.READY: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class ConflictError(Exception):
    """The request is valid but conflicts with the current state (answered with 409)."""


ListedT = TypeVar("ListedT", Task, Order)


async def _page_newest_first(
    session: AsyncSession, model: type[ListedT], *, offset: int, limit: int, status: str | None
) -> tuple[Sequence[ListedT], int]:
    """One page of ``model`` rows, newest first, optionally with one status; and how many match."""
    query = select(model)
    count_query = select(func.count()).select_from(model)
    if status is not None:
        query = query.where(model.status == status)
        count_query = count_query.where(model.status == status)
    count = await session.scalar(count_query) or 0
    rows = (await session.scalars(query.order_by(model.id.desc()).offset(offset).limit(limit))).all()
    return rows, count


# ---- users ------------------------------------------------------------------------------


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


async def create_user(session: AsyncSession, user_in: UserCreate, hashed_password: str) -> User:
    user = User(email=user_in.email.lower(), hashed_password=hashed_password, full_name=user_in.full_name)
    session.add(user)
    await session.flush()
    return user


# ---- tasks ------------------------------------------------------------------------------


async def create_task(session: AsyncSession, task_in: TaskCreate, owner_id: int) -> Task:
    task = Task(
        title=task_in.title, description=task_in.description, owner_id=owner_id, enqueued_at=func.now()
    )
    session.add(task)
    await session.flush()
    return task


async def list_tasks(
    session: AsyncSession, *, offset: int, limit: int, status: str | None = None
) -> tuple[Sequence[Task], int]:
    return await _page_newest_first(session, Task, offset=offset, limit=limit, status=status)


async def update_task(session: AsyncSession, task: Task, task_in: TaskUpdate) -> Task:
    for field, value in task_in.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    await session.flush()
    return task


# ---- orders -----------------------------------------------------------------------------


def order_total_cents(items: Sequence[OrderItem]) -> int:
    return sum(item.quantity * item.unit_price_cents for item in items)


async def create_order(session: AsyncSession, order_in: OrderCreate, owner_id: int) -> Order:
    order = Order(
        customer_name=order_in.customer_name,
        items=[item.model_dump() for item in order_in.items],
        total_cents=order_total_cents(order_in.items),
        notes=order_in.notes,
        owner_id=owner_id,
    )
    session.add(order)
    await session.flush()
    return order


async def list_orders(
    session: AsyncSession, *, offset: int, limit: int, status: OrderStatus | None = None
) -> tuple[Sequence[Order], int]:
    status_value = None if status is None else status.value
    return await _page_newest_first(session, Order, offset=offset, limit=limit, status=status_value)


async def update_order(session: AsyncSession, order: Order, order_in: OrderUpdate) -> Order:
    """Apply an update; items may change only while pending, status only along ORDER_TRANSITIONS."""
    current = OrderStatus(order.status)
    if order_in.items is not None:
        if current is not OrderStatus.PENDING:
            raise ConflictError(f"items can only change while the order is pending, not {current}")
        order.items = [item.model_dump() for item in order_in.items]
        order.total_cents = order_total_cents(order_in.items)
    if order_in.status is not None and order_in.status is not current:
        if order_in.status not in ORDER_TRANSITIONS[current]:
            raise ConflictError(f"an order cannot go from {current} to {order_in.status}")
        order.status = order_in.status.value
    if "notes" in order_in.model_fields_set:
        order.notes = order_in.notes
    await session.flush()
    return order
