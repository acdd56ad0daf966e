"""Run the API: ``python -m app.serve`` (the image's command).

It validates the settings once (fail fast, before forking), prepares the Prometheus
multiprocess directory (it must start empty: stale files from a previous run would be summed
in), then hands over to uvicorn with ``WEB_CONCURRENCY`` workers. On SIGTERM uvicorn stops
accepting connections, lets in-flight requests finish (up to ``GRACEFUL_SHUTDOWN_SECONDS``),
and runs each worker's lifespan shutdown, which releases the database and Redis pools.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from app.core.config import Settings
from app.core.metrics import prepare_multiprocess_dir

HTTP_PROTOCOL = "app.core.http_protocol:SheddingHttpToolsProtocol"


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.LOG_LEVEL.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if settings.PROMETHEUS_MULTIPROC_DIR is not None:
        prepare_multiprocess_dir(settings.PROMETHEUS_MULTIPROC_DIR)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.PROMETHEUS_MULTIPROC_DIR)
    elif settings.WEB_CONCURRENCY > 1:
        logging.getLogger("app.serve").warning(
            "WEB_CONCURRENCY=%d without PROMETHEUS_MULTIPROC_DIR: /metrics shows one worker only",
            settings.WEB_CONCURRENCY,
        )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.HOST,
        port=settings.PORT,
        workers=settings.WEB_CONCURRENCY,
        timeout_graceful_shutdown=settings.GRACEFUL_SHUTDOWN_SECONDS,
        access_log=settings.ACCESS_LOG,
        log_level=settings.LOG_LEVEL,
        proxy_headers=True,
        server_header=False,
        # uvicorn's httptools protocol, refusing what the concurrency limit refuses at once
        # before it becomes an ASGI task (app.core.http_protocol).
        http=HTTP_PROTOCOL,
    )


if __name__ == "__main__":
    main()
