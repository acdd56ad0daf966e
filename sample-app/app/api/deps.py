"""Typed dependencies: services from app.state, sessions, the current user, limits, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import EntityCache
from app.core.config import API_V1_PREFIX, Settings
from app.core.db import Database, parse_lsn
from app.core.security import decode_access_token
from app.core.services import Services
from app.models import User

CONSISTENCY_HEADER = "X-Consistency-Token"
CONSISTENCY_COOKIE = "sbo_consistency"

# The trivial dependencies below are ``async def`` on purpose: FastAPI runs a plain ``def``
# dependency in a thread pool, and that hand-off would cost more than the work itself.

reusable_oauth2 = OAuth2PasswordBearer(tokenUrl=f"{API_V1_PREFIX}/login/access-token")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_database(services: ServicesDep) -> Database:
    return services.db


async def get_cache(services: ServicesDep) -> EntityCache:
    return services.cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
CacheDep = Annotated[EntityCache, Depends(get_cache)]


async def get_write_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """A session on the primary for this request (rolled back unless the route commits)."""
    async with db.writer() as session:
        yield session


WriteSessionDep = Annotated[AsyncSession, Depends(get_write_session)]
TokenDep = Annotated[str, Depends(reusable_oauth2)]


async def get_current_user(session: WriteSessionDep, token: TokenDep, settings: SettingsDep) -> User:
    unauthorized = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        subject = decode_access_token(token, settings.secret_key)
        user_id = int(subject)
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise unauthorized from exc
    user = await session.get(User, user_id) if 0 < user_id < 2**63 else None
    if user is None:
        raise unauthorized
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Inactive user")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def enforce_rate_limit(request: Request, services: ServicesDep) -> None:
    decision = await services.limiter.hit(client_address(request))
    if not decision.allowed:
        services.metrics.rate_limited.inc()
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail="Too many requests",
            headers={"Retry-After": str(decision.retry_after_seconds)},
        )


async def read_consistency_token(request: Request) -> str | None:
    """The WAL position of this client's last write (header, else cookie), if it is one."""
    token = request.headers.get(CONSISTENCY_HEADER) or request.cookies.get(CONSISTENCY_COOKIE)
    return token if parse_lsn(token) is not None else None


ConsistencyTokenDep = Annotated[str | None, Depends(read_consistency_token)]
