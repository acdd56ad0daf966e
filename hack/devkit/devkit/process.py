"""Processes the kit starts, and the two helpers every launcher and test shares: free_port, wait_until.

Invariant: the kit stops only what it started. Every launcher is a :class:`ManagedProcess`; it
starts its command in a new session (so the process leads its own group), logs to a file,
and signals that group by the pid Popen gave it: SIGTERM (or the server's own shutdown
signal), then SIGKILL if it does not exit in time. Nothing is found or killed by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import httpx

LOOPBACK = "127.0.0.1"

T = TypeVar("T")


class ServerError(RuntimeError):
    """A server could not be started, or a prerequisite (a binary) is missing."""


class WaitTimeout(AssertionError):
    """A condition did not hold in time. An AssertionError: in a test it is a failed expectation."""


# ---- ports and waiting -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def answers_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers 200 (a readiness probe); False while nothing listens."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def find_binary(name: str, *, env: str, package: str) -> Path:
    """A server binary from ``$env``, else PATH; ServerError saying how to install it otherwise."""
    candidate = os.environ.get(env) or shutil.which(name)
    if candidate and Path(candidate).is_file():
        return Path(candidate)
    raise ServerError(
        f"{name} was not found. Install it (`make tools`, or apt-get install {package}) or set {env}."
    )


def log_tail(log: Path | None, lines: int = 30) -> str:
    """The last lines of a log file, ready to append to an error message ("" without a log)."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


class _Polling:
    """The bookkeeping both waits share: the deadline, the last state seen, the failure message."""

    def __init__(self, timeout: float, what: str, log: Path | None) -> None:
        self.timeout, self.what, self.log = timeout, what, log
        self.deadline = time.monotonic() + timeout
        self.last: object = None

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def failure(self) -> WaitTimeout:
        return WaitTimeout(
            f"timed out after {self.timeout:g}s waiting for {self.what}; last seen: {self.last!r}"
            + log_tail(self.log)
        )


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    log: Path | None = None,
    tolerate: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    Exceptions of a ``tolerate`` type count as "not yet". On timeout, raises :class:`WaitTimeout`
    naming ``what``, the last result or exception seen, and the tail of ``log``.
    """
    polling = _Polling(timeout, what, log)
    while True:
        try:
            result = check()
        except tolerate as error:
            polling.last = error
        else:
            if result:
                return result
            polling.last = result
        if polling.expired():
            raise polling.failure()
        time.sleep(interval)


async def wait_until_async(
    check: Callable[[], Awaitable[T]],
    timeout: float,  # noqa: ASYNC109 - a polling deadline with the same meaning as wait_until's
    what: str,
    *,
    interval: float = 0.05,
) -> T:
    """:func:`wait_until` for an async check, sleeping without blocking the event loop."""
    polling = _Polling(timeout, what, None)
    while True:
        result = await check()
        if result:
            return result
        polling.last = result
        if polling.expired():
            raise polling.failure()
        await asyncio.sleep(interval)


# ---- managed processes ---------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGKILL when the process that started it dies.

    So a run that is killed (timeout, Ctrl-C twice, OOM) leaves no servers behind. Linux
    only (elsewhere it does nothing). The signal is tied to the *thread* that started the child:
    start servers from the main thread (pytest fixtures do), not from short-lived threads.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)


class ManagedProcess:
    """One process (and the children it forks) that the kit started and will stop.

    A launcher says what to run (:meth:`command`), in which environment and directory, and
    when it is ready (:meth:`is_ready`). The base starts it with its output appended to
    ``log_path``, waits for readiness (failing early, with the log tail, if it exits), and
    stops it: ``stop_signal`` to its process group, SIGKILL after the timeout. It can be
    started again after :meth:`stop` or :meth:`kill`, and used as a context manager
    (leaving the block calls :meth:`destroy`).
    """

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, *, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- what a launcher provides ----------------------------------------------------------------

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def environment(self) -> Mapping[str, str] | None:
        """The child's whole environment; None inherits this process's."""
        return None

    def working_dir(self) -> Path | None:
        return None

    def popen_options(self) -> dict[str, Any]:
        """Extra Popen keyword arguments (e.g. the user to run as)."""
        return {}

    def is_ready(self) -> bool:
        """True once the process serves; called only while it runs."""
        raise NotImplementedError

    # ---- the lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError(f"{self.name} is not started")
        return self._proc.pid

    def launch(self, timeout: float) -> None:
        """Start the command and wait until it is ready; on failure, kill it and raise ServerError."""
        if self.running:
            raise ServerError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                list(self.command()),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.working_dir(),
                env=self.environment(),
                start_new_session=True,  # its own process group: stop() reaches its children too
                preexec_fn=die_with_parent,
                **self.popen_options(),
            )
        try:
            wait_until(self._ready_or_exited, timeout, f"{self.name} to be ready", log=self.log_path)
        except BaseException as error:
            self.kill()
            if isinstance(error, WaitTimeout):
                raise ServerError(str(error)) from error
            raise

    def _ready_or_exited(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServerError(
                f"{self.name} exited with {self._proc.returncode} during start-up{log_tail(self.log_path)}"
            )
        return self.is_ready()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit by itself (after a signal a test sent it); its exit code."""
        if self._proc is None:
            raise ServerError(f"{self.name} is not started")
        return self._proc.wait(timeout=timeout)

    def stop(self, timeout: float | None = None, *, sig: signal.Signals | None = None) -> None:
        """``sig`` (default: the launcher's shutdown signal) to the group; SIGKILL if it hangs."""
        if self._proc is not None:
            _terminate(self._proc, sig or self.stop_signal, self.stop_timeout if timeout is None else timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the whole group, no shutdown: a crash, for fault tests."""
        self.stop(10, sig=signal.SIGKILL)

    def destroy(self) -> None:
        """Stop, and remove whatever the launcher created (by default nothing more)."""
        self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.running and self._proc else "stopped"
        return f"<{type(self).__name__} {self.name} {state}>"


class Command(ManagedProcess):
    """A :class:`ManagedProcess` for a one-off command: argv, environment and readiness given inline."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        **popen_options: Any,
    ) -> None:
        super().__init__(name=name or Path(argv[0]).name, log_path=log_path)
        self._argv, self._ready, self._env, self._cwd = list(argv), ready, env, cwd
        self._popen_options = popen_options

    def command(self) -> Sequence[str]:
        return self._argv

    def environment(self) -> Mapping[str, str] | None:
        return self._env

    def working_dir(self) -> Path | None:
        return self._cwd

    def popen_options(self) -> dict[str, Any]:
        return dict(self._popen_options)

    def is_ready(self) -> bool:
        return self._ready()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _terminate(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` to the process's group and wait; SIGKILL the group if it does not exit in time."""
    _signal_group(proc, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
    # Children (e.g. postgres backends) die with the group; give the kernel a moment to reap them.
    with contextlib.suppress(WaitTimeout):
        wait_until(
            lambda: not _group_alive(proc.pid), 10, f"process group {proc.pid} to be gone", interval=0.02
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
