"""The paths every entity route shares: the cache-aside read by id, the owner's locked load for a
change, and the write tail.

Invariants:

* A read by id is served from Redis, else loaded once (single flight) from a replica that has
  replayed the client's last write, else from the primary (see ``EntityCache`` and
  ``Database.reader``).
* Only its owner changes or deletes an entity, and the row stays locked until the write commits.
* A write is answered only after its commit, and its answer carries the commit's WAL position
  (read-your-writes). For a changed entity the cache entry is dropped and fenced at that
  position first, so neither this client nor a racing fill can read the old version back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import HTTPException, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import CONSISTENCY_COOKIE, CONSISTENCY_HEADER
from app.core.cache import EntityCache
from app.core.db import Database
from app.core.services import Services
from app.models import Base, Order, Task, User

ModelT = TypeVar("ModelT", bound=Base)
# The entities a user owns: only their owner may change or delete them.
OwnedT = TypeVar("OwnedT", Order, Task)


@dataclass(frozen=True)
class EntityKey:
    """One cached entity: its resource name (the cache key's namespace) and id."""

    resource: str
    entity_id: int


@dataclass(frozen=True)
class EntityKind(Generic[ModelT]):
    """A resource read by id through the cache: its table, public schema and 404 message."""

    resource: str
    model: type[ModelT]
    public: type[BaseModel]
    not_found: str

    def key(self, entity_id: int) -> EntityKey:
        return EntityKey(self.resource, entity_id)


async def read_entity(
    kind: EntityKind[ModelT], entity_id: int, db: Database, cache: EntityCache, consistency: str | None
) -> Response:
    """The entity's public JSON, cache-aside; 404 if it does not exist."""

    async def load(read_at: str | None) -> bytes | None:
        async with db.reader(read_at) as session:
            row = await session.get(kind.model, entity_id)
            return None if row is None else kind.public.model_validate(row).model_dump_json().encode()

    body = await cache.get_or_load(kind.resource, entity_id, load, consistency)
    if body is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=kind.not_found)
    return Response(content=body, media_type="application/json")


async def get_own_for_update(
    kind: EntityKind[OwnedT], session: AsyncSession, entity_id: int, user: User
) -> OwnedT:
    """The entity, locked for this transaction; 404 if it does not exist, 403 if ``user`` does not own it."""
    entity = await session.get(kind.model, entity_id, with_for_update=True)
    if entity is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=kind.not_found)
    if entity.owner_id != user.id:
        detail = f"Not the owner of this {kind.resource}"
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)
    return entity


async def commit_write(
    session: AsyncSession, response: Response, services: Services, *, changed: EntityKey | None = None
) -> str:
    """Commit, then invalidate ``changed`` (an existing entity) and hand the client the write's
    WAL position, as a header and a cookie, so its next reads see the write. Returns the position."""
    await session.commit()
    written_at = await Database.wal_position(session)
    if changed is not None:
        await services.cache.invalidate(changed.resource, changed.entity_id, written_at)
    response.headers[CONSISTENCY_HEADER] = written_at
    response.set_cookie(
        CONSISTENCY_COOKIE,
        written_at,
        max_age=services.settings.READ_YOUR_WRITES_SECONDS,
        httponly=True,
        samesite="lax",
    )
    return written_at
