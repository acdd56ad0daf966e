"""wal-fetch.py, restore.sh's one WAL fetcher, with wal-restore.sh asking it, over a stand-in store.

The stand-in is a package named ``barman`` on PYTHONPATH offering the three names the fetcher uses
from barman-cloud's library; it serves a directory as the store's WAL: NAME there is archived,
NAME.broken makes the lookup fail as an unreachable store does, anything else is missing, and each
lookup is logged. The fetcher runs as restore.sh starts it and the requests are wal-restore.sh's
own, so what is tested is the protocol between the two (the real library against a real store is
tests/integration/backup/).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sbo_operator.builders.backup_scripts import WAL_RESTORE_SCRIPT, backup_script_files
from sbo_operator.builders.wal_fetcher import WAL_FETCHER_PROGRAM

pytestmark = pytest.mark.unit

STAND_IN_BARMAN = {
    "barman/__init__.py": "",
    "barman/clients/__init__.py": "",
    "barman/clients/cloud_cli.py": (
        "class OperationErrorExit(SystemExit):\n    def __init__(self):\n        super().__init__(1)\n"
    ),
    "barman/cloud_providers/__init__.py": "def get_cloud_interface(config):\n    return config\n",
    "barman/clients/cloud_walrestore.py": """\
import os, time
from barman.clients.cloud_cli import OperationErrorExit

def parse_arguments(args):
    with open(os.environ["STAND_IN_LOG"] + ".args", "a") as log:
        log.write(" ".join(args) + "\\n")
    return args

class CloudWalDownloader:
    def __init__(self, cloud_interface, server_name):
        self.server_name = server_name

    def download_wal(self, wal_name, wal_dest):
        store = os.environ["STAND_IN_STORE"]
        with open(os.environ["STAND_IN_LOG"], "a") as log:
            log.write(wal_name + "\\n")
        if os.path.exists(os.path.join(store, wal_name + ".broken")):
            raise ConnectionError("could not connect to the endpoint URL")
        if not os.path.exists(os.path.join(store, wal_name)):
            raise OperationErrorExit()
        with open(os.path.join(store, wal_name), "rb") as source:
            content = source.read()
        # Written in two halves with a pause between: a reader must never see half a segment.
        with open(wal_dest, "wb") as dest:
            dest.write(content[: len(content) // 2])
            dest.flush()
            time.sleep(float(os.environ.get("STAND_IN_PAUSE", "0")))
            dest.write(content[len(content) // 2 :])
""",
}


def seg(timeline: int, number: int) -> str:
    return f"{timeline:08X}{number // 256:08X}{number % 256:08X}"


@dataclass
class Rig:
    tmp_path: Path
    store: Path
    spool: Path
    env: dict[str, str]
    fetcher: subprocess.Popen[str] | None = None

    def archive(self, *names: str) -> None:
        for name in names:
            (self.store / name).write_text(f"wal {name} " + "x" * 4096)

    def start(self, first: str, ahead: int = 2, **env: str) -> None:
        program = self.tmp_path / "wal-fetch.py"
        program.write_text(WAL_FETCHER_PROGRAM)
        self.fetcher = subprocess.Popen(
            [sys.executable, str(program), str(self.spool), first, str(os.getpid())],
            env={**self.env, "SBO_WAL_PREFETCH": str(ahead), **env},
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        (self.spool / "fetcher.pid").write_text(f"{self.fetcher.pid}\n")

    def ask(self, name: str) -> subprocess.CompletedProcess[str]:
        """wal-restore.sh NAME pg_wal/RECOVERYXLOG, as the recovery server runs it."""
        script = self.tmp_path / "wal-restore.sh"
        script.write_text(WAL_RESTORE_SCRIPT)
        (self.tmp_path / "RECOVERYXLOG").unlink(missing_ok=True)
        return subprocess.run(
            ["sh", str(script), name, str(self.tmp_path / "RECOVERYXLOG")],
            env=self.env, capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip

    def restored(self) -> str:
        return (self.tmp_path / "RECOVERYXLOG").read_text().split(" ")[1]

    def lookups(self) -> list[str]:
        log = self.tmp_path / "lookups.log"
        return sorted(log.read_text().split()) if log.exists() else []

    def spooled(self) -> list[str]:
        return sorted(path.name for path in self.spool.iterdir() if path.name != "fetcher.pid")

    def settle(self, expected: list[str]) -> None:
        """Wait until the spool holds exactly ``expected``, then a little more: nothing else comes."""
        deadline = time.monotonic() + 20
        while self.spooled() != expected:
            assert time.monotonic() < deadline, self.spooled()
            time.sleep(0.02)
        time.sleep(0.3)
        assert self.spooled() == expected


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    stand_in = tmp_path / "stand-in"
    for name, text in STAND_IN_BARMAN.items():
        (stand_in / name).parent.mkdir(parents=True, exist_ok=True)
        (stand_in / name).write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Asked only when the fetcher is gone: it says so, and answers "missing".
    direct = bin_dir / "barman-cloud-wal-restore"
    direct.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" | tail -n 2 | head -n 1 >> "{tmp_path}/direct.log"\nexit 1\n'
    )
    direct.chmod(0o755)
    store, spool = tmp_path / "store", tmp_path / "spool"
    store.mkdir()
    spool.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(stand_in),
        "STAND_IN_STORE": str(store),
        "STAND_IN_LOG": str(tmp_path / "lookups.log"),
        "SBO_RESTORE_SOURCE": "s3://backups/shop",
        "SBO_RESTORE_SERVER_NAME": "pg",
        "SBO_RESTORE_ENDPOINT_URL": "http://127.0.0.1:9000",
        "SBO_WAL_PREFETCH_DIR": str(spool),
    }
    fixture = Rig(tmp_path, store, spool, env)
    yield fixture
    if fixture.fetcher is not None:
        fixture.fetcher.kill()
        fixture.fetcher.wait()
        assert fixture.fetcher.stderr is not None
        fixture.fetcher.stderr.close()


def test_it_is_shipped_with_the_scripts() -> None:
    assert backup_script_files()["wal-fetch.py"] == WAL_FETCHER_PROGRAM
    compile(WAL_FETCHER_PROGRAM, "wal-fetch.py", "exec")


def test_it_fetches_the_backups_first_segments_ahead_before_anything_is_asked(rig: Rig) -> None:
    rig.archive(*(seg(1, n) for n in range(4, 10)))
    rig.start(seg(1, 4), ahead=2)
    rig.settle([seg(1, 4), seg(1, 5)])
    assert rig.lookups() == [seg(1, 4), seg(1, 5)]
    # barman's own arguments: the endpoint, the source, the server name; no credentials.
    args = (rig.tmp_path / "lookups.log.args").read_text()
    assert args == "--endpoint-url http://127.0.0.1:9000 s3://backups/shop pg unused unused\n"


def test_a_request_is_served_from_the_spool_and_moves_the_window_ahead_of_it(rig: Rig) -> None:
    rig.archive(*(seg(1, n) for n in range(4, 10)))
    rig.start(seg(1, 4), ahead=2)
    rig.settle([seg(1, 4), seg(1, 5)])
    done = rig.ask(seg(1, 4))
    assert done.returncode == 0, done.stderr
    assert rig.restored() == seg(1, 4)
    rig.settle([seg(1, 5), seg(1, 6)])
    done = rig.ask(seg(1, 5))
    assert done.returncode == 0, done.stderr
    assert rig.restored() == seg(1, 5)
    rig.settle([seg(1, 6), seg(1, 7)])
    assert rig.lookups() == [seg(1, n) for n in range(4, 8)]  # each fetched once


def test_the_end_of_the_archive_is_answered_only_by_a_lookup_made_after_the_request(rig: Rig) -> None:
    """A prefetch that met the end only stops the prefetching: the archive may have grown since."""
    rig.archive(seg(1, 4))
    rig.start(seg(1, 4), ahead=2)
    rig.settle([seg(1, 4)])
    assert rig.lookups() == [seg(1, 4), seg(1, 5)]
    rig.archive(seg(1, 5))
    assert rig.ask(seg(1, 4)).returncode == 0
    done = rig.ask(seg(1, 5))
    assert done.returncode == 0, done.stderr
    assert rig.restored() == seg(1, 5)
    done = rig.ask(seg(1, 6))
    assert done.returncode == 1, done.stderr
    assert not (rig.tmp_path / "RECOVERYXLOG").exists()
    assert rig.lookups().count(seg(1, 5)) == 2
    assert not (rig.tmp_path / "direct.log").exists()


def test_a_store_failure_aborts_the_recovery_and_is_never_taken_for_the_end(rig: Rig) -> None:
    rig.archive(seg(1, 4), seg(1, 5))
    (rig.store / f"{seg(1, 5)}.broken").touch()
    rig.start(seg(1, 4), ahead=2)
    rig.settle([seg(1, 4)])
    done = rig.ask(seg(1, 5))
    assert done.returncode == 255
    assert "could not connect to the endpoint URL: aborting recovery" in done.stderr
    # The failure is not remembered either: once the store is back, the segment comes.
    (rig.store / f"{seg(1, 5)}.broken").unlink()
    done = rig.ask(seg(1, 5))
    assert done.returncode == 0, done.stderr
    assert rig.restored() == seg(1, 5)
    rig.settle([seg(1, 4)])  # 6 looked up ahead, and missing


@pytest.mark.parametrize("first", ["none", "00000002.history"])
def test_history_files_are_looked_up_only_when_asked_for(rig: Rig, first: str) -> None:
    rig.archive("00000002.history")
    rig.start(first)
    rig.settle([])
    assert rig.lookups() == []
    done = rig.ask("00000002.history")
    assert done.returncode == 0, done.stderr
    assert rig.restored() == "00000002.history"
    assert rig.ask("00000003.history").returncode == 1
    assert rig.lookups() == ["00000002.history", "00000003.history"]


@pytest.mark.parametrize(
    ("asked", "after"), [(seg(3, 0xFF), seg(3, 0x100)), (seg(2, 0xAB1F), seg(2, 0xAB20))]
)
def test_it_fetches_ahead_on_the_timeline_recovery_asks_for(rig: Rig, asked: str, after: str) -> None:
    rig.archive(seg(1, 4), asked, after)
    rig.start(seg(1, 4), ahead=1)
    rig.settle([seg(1, 4)])
    assert rig.ask(asked).returncode == 0
    rig.settle([seg(1, 4), after])


def test_a_segment_appears_in_the_spool_only_whole(rig: Rig) -> None:
    rig.archive(seg(1, 4))
    whole = (rig.store / seg(1, 4)).read_text()
    rig.start(seg(1, 4), ahead=1, STAND_IN_PAUSE="0.5")
    deadline = time.monotonic() + 10
    seen_part = False
    while not (rig.spool / seg(1, 4)).exists():
        assert time.monotonic() < deadline
        seen_part |= (rig.spool / f"{seg(1, 4)}.part").exists()
        time.sleep(0.01)
    assert seen_part
    assert (rig.spool / seg(1, 4)).read_text() == whole


def test_a_name_that_is_not_a_wal_file_is_refused(rig: Rig) -> None:
    rig.start("none")
    done = rig.ask("00000002.history.txt")
    assert done.returncode == 255
    assert "not a WAL file name" in done.stderr
    assert rig.lookups() == []


def test_a_name_that_is_no_plain_file_name_never_reaches_the_spool(rig: Rig) -> None:
    rig.start("none")
    assert rig.ask("../00000002.history").returncode == 1
    assert (rig.tmp_path / "direct.log").read_text() == "../00000002.history\n"
    assert rig.spooled() == []


def test_without_its_fetcher_wal_restore_asks_the_store_itself(rig: Rig) -> None:
    rig.start("none")
    assert rig.fetcher is not None
    assert rig.ask("00000002.history").returncode == 1  # the fetcher is up (its signal handler too)
    rig.fetcher.send_signal(signal.SIGTERM)
    assert rig.fetcher.wait(timeout=10) == 0
    done = rig.ask(seg(1, 4))
    assert done.returncode == 1
    assert (rig.tmp_path / "direct.log").read_text() == f"{seg(1, 4)}\n"
    assert rig.spooled() == []


def test_it_stops_once_restore_sh_is_gone(rig: Rig) -> None:
    program = rig.tmp_path / "wal-fetch.py"
    program.write_text(WAL_FETCHER_PROGRAM)
    start = 'python3 "$1" "$2" none "$$" </dev/null >/dev/null 2>&1 & echo $!'
    parent = subprocess.run(
        ["sh", "-c", start, "sh", str(program), str(rig.spool)],
        env={**rig.env, "PATH": f"{Path(sys.executable).parent}:{rig.env['PATH']}"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pid = int(parent.stdout)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "wal-fetch.py outlived restore.sh"
        time.sleep(0.05)
