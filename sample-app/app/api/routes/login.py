"""Access tokens for users stored with Argon2 password hashes (OAuth2 password flow)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from app import crud
from app.api.deps import SettingsDep, WriteSessionDep
from app.core.config import API_V1_PREFIX
from app.core.security import DUMMY_HASH, create_access_token, verify_password
from app.schemas import Message, Token

router = APIRouter(prefix=API_V1_PREFIX, tags=["login"])


def _is_plain_text(value: str) -> bool:
    return "\x00" not in value and value.isprintable()


@router.post(
    "/login/access-token",
    response_model=Token,
    responses={401: {"model": Message, "description": "Wrong email or password"}},
)
async def login_access_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: WriteSessionDep, settings: SettingsDep
) -> Token:
    """Exchange an email (as ``username``) and password for a bearer token that expires."""
    user = await crud.get_user_by_email(session, form.username) if _is_plain_text(form.username) else None
    # Argon2 is deliberately slow: run it off the event loop. Unknown users cost the same time.
    valid = await run_in_threadpool(
        verify_password, form.password, user.hashed_password if user else DUMMY_HASH
    )
    if user is None or not valid:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect email or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Inactive user")
    expires = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    return Token(
        access_token=create_access_token(str(user.id), settings.secret_key, expires),
        expires_in=int(expires.total_seconds()),
    )
