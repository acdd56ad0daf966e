"""Runs the Argo CD health check (deploy/argocd/sbo.dev/ScalableBackend/health.lua) in real Lua.

lupa embeds the Lua interpreter; the script gets `obj` as a global, as in Argo CD.
"""

from __future__ import annotations

from typing import Any

import pytest

from devkit.paths import REPO

HEALTH_DIR = REPO / "deploy" / "argocd" / "sbo.dev" / "ScalableBackend"
HEALTH_LUA = HEALTH_DIR / "health.lua"


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Argo CD's view of a ScalableBackend: {"status": ..., "message": ...}."""
    try:
        import lupa
    except ImportError:  # pragma: no cover - lupa is a dev dependency
        pytest.fail("lupa is required: `make venv` installs it from uv.lock")
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(HEALTH_LUA.read_text())
    return {"status": str(result["status"]), "message": str(result["message"])}
