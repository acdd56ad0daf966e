"""The versioned API: one router per resource, all behind the rate limit.

Each router declares the full ``/api/v1/...`` prefix itself (see ``API_V1_PREFIX``).
"""

from fastapi import APIRouter, Depends

from app.api.deps import enforce_rate_limit
from app.api.routes import login, orders, tasks, users

api_router = APIRouter(dependencies=[Depends(enforce_rate_limit)])
api_router.include_router(login.router)
api_router.include_router(users.router)
api_router.include_router(tasks.router)
api_router.include_router(orders.router)
