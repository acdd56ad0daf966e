"""Sign-up and the current user."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from app import crud
from app.api.deps import CurrentUser, WriteSessionDep
from app.core.config import API_V1_PREFIX
from app.core.security import get_password_hash
from app.schemas import Message, UserCreate, UserPublic

router = APIRouter(prefix=f"{API_V1_PREFIX}/users", tags=["users"])


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses={409: {"model": Message, "description": "The email is already registered"}},
)
async def register_user(user_in: UserCreate, session: WriteSessionDep) -> UserPublic:
    taken = HTTPException(status_code=status.HTTP_409_CONFLICT, detail="The email is already registered")
    if await crud.get_user_by_email(session, user_in.email) is not None:
        raise taken
    hashed = await run_in_threadpool(get_password_hash, user_in.password)
    try:
        user = await crud.create_user(session, user_in, hashed)
        await session.commit()
    except IntegrityError as exc:  # a concurrent sign-up with the same email won
        raise taken from exc
    return UserPublic.model_validate(user)


@router.get("/me", response_model=UserPublic)
async def read_user_me(current_user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(current_user)
