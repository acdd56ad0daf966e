"""API schemas (pydantic). Bad input is refused with 422 naming the field, before any SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.models import OrderStatus, TaskStatus


def _storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


Text = Annotated[str, AfterValidator(_storable)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

# Identifiers are BIGINT: anything outside 1..2^63-1 cannot exist.
MAX_ID = 2**63 - 1


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- users and tokens -------------------------------------------------------------------


class UserCreate(InputModel):
    email: Annotated[Text, Field(min_length=3, max_length=255, pattern=EMAIL_PATTERN)]
    password: Annotated[Text, Field(min_length=8, max_length=128)]
    full_name: Annotated[Text, Field(max_length=255)] | None = None


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str | None
    is_active: bool


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


# ---- tasks ------------------------------------------------------------------------------


class TaskCreate(InputModel):
    title: Annotated[Text, Field(min_length=1, max_length=200)]
    description: Annotated[Text, Field(max_length=2000)] | None = None


class TaskUpdate(InputModel):
    title: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[Text, Field(max_length=2000)] | None = None

    @field_validator("title")
    @classmethod
    def _title_not_null(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("title cannot be null")
        return value


class TaskPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    status: TaskStatus
    result: str | None
    owner_id: int
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


# ---- orders -----------------------------------------------------------------------------


class OrderItem(InputModel):
    name: Annotated[Text, Field(min_length=1, max_length=100)]
    quantity: Annotated[int, Field(ge=1, le=100)]
    unit_price_cents: Annotated[int, Field(ge=0, le=1_000_000)]


class OrderCreate(InputModel):
    customer_name: Annotated[Text, Field(min_length=1, max_length=200)]
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=50)]
    notes: Annotated[Text, Field(max_length=500)] | None = None


class OrderUpdate(InputModel):
    status: OrderStatus | None = None
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=50)] | None = None
    notes: Annotated[Text, Field(max_length=500)] | None = None


class OrderPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_name: str
    items: list[OrderItem]
    status: OrderStatus
    total_cents: int
    notes: str | None
    owner_id: int
    created_at: datetime
    updated_at: datetime


# ---- common -----------------------------------------------------------------------------

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    data: list[ItemT]
    count: int
    offset: int
    limit: int


class Message(BaseModel):
    detail: str
