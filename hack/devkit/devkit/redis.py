"""A real Redis server for tests and benchmarks, on a free port on 127.0.0.1.

::

    server = RedisServer.start(tmp_path, password="s3cret")
    client = redis.Redis.from_url(server.url)
    server.kill()      # crash: SIGKILL, the data is gone (no persistence)
    server.restart()   # same port and password, empty
    server.destroy()

The server keeps nothing on disk (no RDB, no AOF), so a restart comes back empty, as a
Redis cache pod would. ``redis-server`` is found in ``SBO_REDIS_SERVER`` or ``PATH``; if it
is missing, ``start`` raises :class:`ServerError` (tests must fail, not skip).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import redis

from devkit.process import LOOPBACK, ManagedProcess, ServerError, find_binary, free_port

__all__ = ["RedisServer", "ServerError", "find_redis_server"]


def find_redis_server() -> Path:
    """Locate the ``redis-server`` binary."""
    return find_binary("redis-server", env="SBO_REDIS_SERVER", package="redis-server")


class RedisServer(ManagedProcess):
    """One ``redis-server`` process on 127.0.0.1, started in its own process group."""

    stop_timeout = 10.0

    def __init__(self, *, server_dir: Path, port: int, password: str | None, binary: Path) -> None:
        super().__init__(name=f"redis-server on port {port}", log_path=server_dir / "redis.log")
        self.server_dir = server_dir
        self.port = port
        self.password = password
        self.binary = binary

    @classmethod
    def start(
        cls, base_dir: Path | None = None, *, password: str | None = None, timeout: float = 30.0
    ) -> RedisServer:
        """Start a new server with a working directory under ``base_dir`` (or the system temp dir)."""
        server = cls(
            server_dir=Path(tempfile.mkdtemp(prefix="sbo-redis-", dir=base_dir)),
            port=free_port(),
            password=password,
            binary=find_redis_server(),
        )
        server.restart(timeout=timeout)
        return server

    def restart(self, timeout: float = 30.0) -> None:
        """Start the server again on the same port (after kill/stop), empty. Stops it first if running."""
        self.stop()
        self.launch(timeout)

    def command(self) -> list[str]:
        argv = [
            str(self.binary),
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.server_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no" if self.password is None else "yes",
        ]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv

    def is_ready(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.server_dir, ignore_errors=True)

    def url_for(self, db: int = 0, *, password: bool = True) -> str:
        """``redis://[:password@]127.0.0.1:port/db``; ``password=False`` leaves it out."""
        auth = f":{quote(self.password, safe='')}@" if password and self.password is not None else ""
        return f"redis://{auth}{LOOPBACK}:{self.port}/{db}"

    @property
    def url(self) -> str:
        """URL of database 0, with the password when there is one."""
        return self.url_for()

    def client(self, db: int = 0) -> redis.Redis:
        """A synchronous redis-py client (for test set-up and assertions)."""
        return redis.Redis.from_url(self.url_for(db), socket_timeout=5)

    def __repr__(self) -> str:
        return f"<RedisServer 127.0.0.1:{self.port}>"
