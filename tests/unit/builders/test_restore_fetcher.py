"""restore-fetch.py, restore.sh's one WAL fetcher, with wal-restore.sh asking it, over a stand-in store.

The stand-in is a package named ``barman`` on PYTHONPATH offering the three names the fetcher uses
from barman-cloud's library; it serves a directory as the store's WAL: NAME there is archived,
NAME.broken makes the lookup fail as an unreachable store does, anything else is missing, and each
lookup is logged. The fetcher runs as restore.sh starts it and the requests are wal-restore.sh's
own, so what is tested is the protocol between the two (the real library against a real store is
tests/integration/backup/).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sbo_operator.builders.backup_scripts import WAL_RESTORE_SCRIPT, backup_script_files
from sbo_operator.builders.restore_fetcher import RESTORE_FETCHER_PROGRAM

pytestmark = pytest.mark.unit

STAND_IN_BARMAN = {
    "barman/__init__.py": "",
    "barman/clients/__init__.py": "",
    "barman/clients/cloud_cli.py": (
        "class OperationErrorExit(SystemExit):\n    def __init__(self):\n        super().__init__(1)\n"
    ),
    "barman/cloud_providers/__init__.py": """\
import os
from types import SimpleNamespace


def stored(key):
    return os.path.join(os.environ["STAND_IN_STORE"], key)


class Client:  # the two calls of boto3's S3 client the base backup download makes
    def head_object(self, Bucket, Key):
        return {"ContentLength": os.path.getsize(stored(Key))}

    def get_object(self, Bucket, Key, Range):
        start, end = (int(end) for end in Range[len("bytes="):].split("-"))
        with open(os.environ["STAND_IN_LOG"] + ".ranges", "a") as log:
            log.write(Range + "\\n")
        with open(stored(Key), "rb") as source:
            source.seek(start)
            data = source.read(end - start + 1)
        if os.environ.get("STAND_IN_SHORT_READ"):
            data = data[:-1]
        return {"Body": SimpleNamespace(read=lambda: data)}


def get_cloud_interface(config):
    return SimpleNamespace(bucket_name="backups", s3=SimpleNamespace(meta=SimpleNamespace(client=Client())))
""",
    "barman/cloud.py": """\
import json, os
from types import SimpleNamespace


class Info:
    def __init__(self, fields):
        self.fields = fields
        self.backup_id, self.begin_wal = fields["backup_id"], fields.get("begin_wal")
        self.tablespaces, self.snapshots_info = fields.get("tablespaces"), None

    def to_json(self):
        return self.fields

    def wal_directory(self):
        return "pg_wal"


class CloudBackupCatalog:
    def __init__(self, cloud_interface, server_name):
        self.cloud_interface = cloud_interface

    def get_backup_list(self):
        path = os.path.join(os.environ["STAND_IN_STORE"], "backups.json")
        if not os.path.exists(path):
            raise ConnectionError("could not connect to the endpoint URL")
        with open(path) as listing:
            return {fields["backup_id"]: Info(fields) for fields in json.load(listing)}

    def get_backup_files(self, info):
        data = SimpleNamespace(path=info.backup_id + "/data.tar", compression=None, additional_files=[])
        return {None: data}
""",
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

    def start(
        self, first: str | None, ahead: int = 2, *, choose: bool = True, listed: bool = True, **env: str
    ) -> None:
        """restore-fetch.py as restore.sh starts it; unless the store already lists backups (or
        ``listed`` is off), backup B1 with first WAL segment ``first``; with ``choose``, B1 chosen."""
        listing = self.store / "backups.json"
        if listed and not listing.exists():
            fields = {"backup_id": "B1", "end_time": "Mon Dec  7 10:00:00 2026", "status": "DONE"}
            listing.write_text(json.dumps([{**fields, **({"begin_wal": first} if first else {})}]))
        program = self.tmp_path / "restore-fetch.py"
        program.write_text(RESTORE_FETCHER_PROGRAM)
        dest = self.tmp_path / "data.new"
        self.fetcher = subprocess.Popen(
            [sys.executable, str(program), str(self.spool), str(os.getpid()), str(dest)],
            env={**self.env, "SBO_WAL_PREFETCH": str(ahead), **env},
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        (self.spool / "fetcher.pid").write_text(f"{self.fetcher.pid}\n")
        if choose:
            self.wait_for("listing.json")
            self.choose("B1")

    def choose(self, backup_id: str) -> None:
        """As restore.sh writes its choice: whole, then renamed into place."""
        (self.spool / "backup.chosen.tmp").write_text(f"{backup_id}\n")
        (self.spool / "backup.chosen.tmp").rename(self.spool / "backup.chosen")

    def wait_for(self, name: str) -> str:
        deadline = time.monotonic() + 20
        while not (self.spool / name).exists():
            assert time.monotonic() < deadline, sorted(path.name for path in self.spool.iterdir())
            time.sleep(0.01)
        return (self.spool / name).read_text()

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

    def range_requests(self) -> list[str]:
        return (self.tmp_path / "lookups.log.ranges").read_text().split()

    def lookups(self) -> list[str]:
        log = self.tmp_path / "lookups.log"
        return sorted(log.read_text().split()) if log.exists() else []

    def spooled(self) -> list[str]:
        """The WAL files (and answers) in the spool, not restore.sh's own exchanges with the fetcher."""
        control = ("fetcher.pid", "listing.", "backup.chosen", "base.")
        return sorted(path.name for path in self.spool.iterdir() if not path.name.startswith(control))

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
    assert backup_script_files()["restore-fetch.py"] == RESTORE_FETCHER_PROGRAM
    compile(RESTORE_FETCHER_PROGRAM, "restore-fetch.py", "exec")


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


@pytest.mark.parametrize("first", [None, "00000002.history"])
def test_history_files_are_looked_up_only_when_asked_for(rig: Rig, first: str | None) -> None:
    rig.archive("00000002.history")
    rig.start(first)
    rig.settle([])
    assert rig.lookups() == []
    done = rig.ask("00000002.history")
    assert done.returncode == 0, done.stderr
    assert rig.restored() == "00000002.history"
    assert rig.ask("00000003.history").returncode == 1
    assert rig.lookups() == ["00000002.history", "00000003.history"]


def test_a_history_file_missing_once_is_found_once_archived(rig: Rig) -> None:
    """A new primary's history file archived after a first lookup: no "missing" is remembered."""
    rig.start(seg(1, 4))
    assert rig.ask("00000002.history").returncode == 1
    rig.archive("00000002.history")
    done = rig.ask("00000002.history")
    assert done.returncode == 0, done.stderr
    assert rig.restored() == "00000002.history"
    assert rig.lookups().count("00000002.history") == 2


@pytest.mark.parametrize("timeline_1_first", [False, True])
def test_a_new_timelines_segment_is_served_whatever_the_old_one_of_its_number(
    rig: Rig, timeline_1_first: bool
) -> None:
    """After a failover both timelines may hold a segment of the same number (the old primary's
    last one, archived late): each request gets the segment of its own name, whichever was
    fetched ahead or asked for first."""
    rig.archive(seg(1, 4), seg(1, 5), seg(2, 5), seg(2, 6))
    rig.start(seg(1, 4), ahead=2)
    rig.settle([seg(1, 4), seg(1, 5)])
    assert rig.ask(seg(1, 4)).returncode == 0
    if timeline_1_first:
        assert rig.ask(seg(1, 5)).returncode == 0
        assert rig.restored() == seg(1, 5)
    done = rig.ask(seg(2, 5))
    assert done.returncode == 0, done.stderr
    assert rig.restored() == seg(2, 5)


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
    rig.start(None)
    done = rig.ask("00000002.history.txt")
    assert done.returncode == 255
    assert "not a WAL file name" in done.stderr
    assert rig.lookups() == []


def test_a_name_that_is_no_plain_file_name_never_reaches_the_spool(rig: Rig) -> None:
    rig.start(None)
    assert rig.ask("../00000002.history").returncode == 1
    assert (rig.tmp_path / "direct.log").read_text() == "../00000002.history\n"
    assert rig.spooled() == []


def test_without_its_fetcher_wal_restore_asks_the_store_itself(rig: Rig) -> None:
    rig.start(None)
    assert rig.fetcher is not None
    assert rig.ask("00000002.history").returncode == 1  # the fetcher is up (its signal handler too)
    rig.fetcher.send_signal(signal.SIGTERM)
    assert rig.fetcher.wait(timeout=10) == 0
    done = rig.ask(seg(1, 4))
    assert done.returncode == 1
    assert (rig.tmp_path / "direct.log").read_text() == f"{seg(1, 4)}\n"
    assert rig.spooled() == []


def test_it_stops_once_restore_sh_is_gone(rig: Rig) -> None:
    program = rig.tmp_path / "restore-fetch.py"
    program.write_text(RESTORE_FETCHER_PROGRAM)
    start = 'python3 "$1" "$2" "$$" "$2/data.new" </dev/null >/dev/null 2>&1 & echo $!'
    parent = subprocess.run(
        ["sh", "-c", start, "sh", str(program), str(rig.spool)],
        env={**rig.env, "PATH": f"{Path(sys.executable).parent}:{rig.env['PATH']}"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pid = int(parent.stdout)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "restore-fetch.py outlived restore.sh"
        time.sleep(0.05)


# ---- the listing and the base backup ----------------------------------------------------------------


def test_it_lists_the_backups_as_barman_cloud_backup_list_prints_them(rig: Rig) -> None:
    second = {"backup_id": "B0", "end_time": "Sun Dec  6 10:00:00 2026", "status": "DONE"}
    first = {"backup_id": "B1", "end_time": "Mon Dec  7 10:00:00 2026", "status": "FAILED"}
    (rig.store / "backups.json").write_text(json.dumps([first, second]))
    rig.start(None, choose=False)
    assert json.loads(rig.wait_for("listing.json")) == {"backups_list": [second, first]}


def test_a_store_it_cannot_list_is_reported_never_taken_for_no_backups(rig: Rig) -> None:
    rig.start(None, choose=False, listed=False)
    assert rig.wait_for("listing.failed") == "ConnectionError: could not connect to the endpoint URL\n"
    assert not (rig.spool / "listing.json").exists()


def stored_backup(rig: Rig) -> dict[str, bytes]:
    """B1/data.tar: a data directory of three files, one of them 40 MiB (several ranged GETs)."""
    files = {"PG_VERSION": b"15\n", "base/1/1259": os.urandom(40 << 20), "global/pg_control": b"c" * 8192}
    source = rig.tmp_path / "source"
    for name, content in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(content)
    (source / "global/pg_control").chmod(0o600)
    (rig.store / "B1").mkdir()
    with tarfile.open(rig.store / "B1/data.tar", "w") as archive:
        for name in files:
            archive.add(source / name, arcname=name)
    return files


def test_the_chosen_backup_is_unpacked_whole_with_its_wal_fetched_alongside(rig: Rig) -> None:
    files = stored_backup(rig)
    rig.archive(seg(1, 4), seg(1, 5))
    rig.start(seg(1, 4), ahead=2)
    assert rig.wait_for("base.done") == "\n"
    restored = rig.tmp_path / "data.new"
    assert {name: (restored / name).read_bytes() for name in files} == files
    assert (restored / "global/pg_control").stat().st_mode & 0o777 == 0o600
    assert (restored / "pg_wal").is_dir()  # not in the archive, as barman-cloud-restore makes it
    # Ranges that cover the archive end to end, each byte once.
    size = (rig.store / "B1/data.tar").stat().st_size
    spans = sorted(tuple(int(end) for end in r[len("bytes=") :].split("-")) for r in rig.range_requests())
    assert len(spans) > 2
    assert [start for start, _ in spans] == [0] + [end + 1 for _, end in spans[:-1]]
    assert spans[-1][1] == size - 1
    rig.settle([seg(1, 4), seg(1, 5)])


def test_a_short_read_fails_the_base_backup(rig: Rig) -> None:
    stored_backup(rig)
    rig.start(None, STAND_IN_SHORT_READ="1")
    assert re.search(r"data.tar: \d+ bytes at \d+, not \d+", rig.wait_for("base.failed"))
    assert not (rig.spool / "base.done").exists()


def test_a_backup_with_tablespaces_is_left_to_barman_cloud_restore(rig: Rig) -> None:
    fields = {"backup_id": "B1", "end_time": "Mon Dec  7 10:00:00 2026", "status": "DONE", "tablespaces": [1]}
    (rig.store / "backups.json").write_text(json.dumps([fields]))
    rig.start(None)
    rig.wait_for("base.unsupported")
    assert not (rig.tmp_path / "data.new").exists()


def test_a_backup_that_is_not_listed_fails(rig: Rig) -> None:
    rig.start(None, choose=False)
    rig.wait_for("listing.json")
    rig.choose("B9")
    assert rig.wait_for("base.failed") == "no backup B9 in the listing\n"
