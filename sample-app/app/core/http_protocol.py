"""uvicorn's HTTP protocol (httptools), with the refusals that need no waiting answered before the app.

Invariant: a request reaches the ASGI app exactly as with uvicorn's own protocol, unless the app's
concurrency limit (``ConcurrencyLimitMiddleware``, published in the lifespan state under
``LOAD_SHEDDING_STATE``) says it would refuse it at once (``refuses_at_once``: every slot taken,
the queue full, the path not exempt). Then the protocol answers the 503 the middleware would have
sent (same status, headers and body, uvicorn's default headers first, ``connection: close`` where
uvicorn adds it, no body for HEAD) in one socket write, counts it in the same metric, and goes on
with the connection as uvicorn does after a response. Queueing and the queue's timeout stay with
the middleware, which still refuses whatever reaches it: under any other server the app behaves
the same, only dearer.

Why: at twice its capacity the app refuses about half of what it gets, and each refusal that went
through uvicorn's ASGI cycle cost a task, a coroutine, the middleware's check and two socket
writes (headers, then body). Answered here, a refusal costs the parse and one write.

This overrides ``HttpToolsProtocol._start_asgi_task``, a private method of uvicorn, pinned to
0.54.0 in pyproject.toml; the unit tests drive the real protocol class, so an upgrade that moves it
fails them.
"""

from __future__ import annotations

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from app.core.load_shedding import LOAD_SHEDDING_STATE, ConcurrencyLimitMiddleware


class SheddingHttpToolsProtocol(HttpToolsProtocol):
    """``python -m app.serve``'s HTTP protocol: see the module docstring."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        shedding = self.app_state.get(LOAD_SHEDDING_STATE)
        if isinstance(shedding, ConcurrencyLimitMiddleware) and shedding.refuses_at_once(cycle.scope):
            self._refuse(cycle, shedding)
        else:
            super()._start_asgi_task(cycle, app)

    def _refuse(self, cycle: RequestResponseCycle, shedding: ConcurrencyLimitMiddleware) -> None:
        """What ``RequestResponseCycle.send`` writes for the middleware's two messages, in one write."""
        shedding.count_refusal()
        scope = cycle.scope
        if cycle.access_log:
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                503,
            )
        content = [STATUS_LINE[503]]
        for name, value in (*cycle.default_headers, *shedding.refusal_headers):
            content.extend([name.lower(), b": ", value, b"\r\n"])
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if scope["method"] != "HEAD":
            content.append(shedding.refusal_body)
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False  # no "100 Continue" for a body nobody will read
        self.transport.write(b"".join(content))
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
