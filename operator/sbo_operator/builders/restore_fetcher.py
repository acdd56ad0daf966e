"""restore-fetch.py: restore.sh's one long-lived fetcher, shipped beside the backup scripts.

One Python process for a whole restore, instead of barman-cloud-backup-list, barman-cloud-restore
and one barman-cloud-wal-restore per WAL file, each of which pays Python's and boto3's start-up
(about 0.5 s on this project's small machines, more under load). It uses barman-cloud's own
library (the same catalog, WAL lookup and compression detection as those commands) and talks to
restore.sh and wal-restore.sh through files in the spool directory (each written whole, then
renamed into place):

- ``listing.json``     the backups, as barman-cloud-backup-list --format json prints them
  (``listing.failed``: why not);
- ``backup.chosen``    restore.sh's choice: the fetcher starts fetching that backup's WAL from its
  first segment, and the base backup at the same time;
- ``base.done``        the base backup is unpacked into DEST: one tar archive (no tablespaces, one
  part, not snappy) read with parallel ranged GETs, written in order into ``tar -x``;
  ``base.failed`` says why not; ``base.unsupported`` leaves it to barman-cloud-restore;
- ``NAME.wanted``      wal-restore.sh asks for WAL file NAME; the fetcher takes it by deleting it;
- ``NAME``             the answer "found": a whole object of the store (a prefetched one too),
  renamed into place from ``NAME.part`` once all of it is written;
- ``NAME.missing``     "the store answered and has no such file": the end of the archive;
- ``NAME.failed``      "the store could not be asked" (one line why): recovery must abort;
- ``NAME.taken``       wal-restore.sh used a prefetched NAME: the fetcher moves its window past it.

The invariants the restore's guarantees rest on:

- only whole objects ever appear under a WAL name, and ``base.done`` only once tar has read the
  whole archive, every range at its full length, and exited 0;
- "missing" and "failed" are only ever answers to a request, from a lookup made after that request
  arrived: a prefetch that met the end of the archive, or an outage, only stops the prefetching. So
  a store outage is never taken for the end of the archive, and an archive that grew since the
  prefetch is seen;
- it fetches ahead only segments of the timeline recovery is on, at most SBO_WAL_PREFETCH past the
  last one asked for, in parallel;
- it ends when restore.sh does.

restore.sh and wal-restore.sh fall back to the barman-cloud commands when this process is not
running, so its death costs time, never correctness.
"""

from __future__ import annotations

__all__ = ["RESTORE_FETCHER_PROGRAM"]

RESTORE_FETCHER_PROGRAM = r'''"""restore-fetch.py SPOOL RESTORE_SH_PID DEST: restore.sh's fetcher."""
import collections
import concurrent.futures
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from barman.clients.cloud_cli import OperationErrorExit
from barman.clients.cloud_walrestore import CloudWalDownloader, parse_arguments
from barman.cloud_providers import get_cloud_interface

# 4 ranges of 8 MiB in flight and one being written: about 40 MiB of memory at most, whatever the
# backup's size (the restore container has the database's memory limit).
BASE_CHUNK_BYTES = 8 << 20
BASE_PARALLEL_GETS = 4
TAR_OPTIONS = {None: [], "gzip": ["-z"], "bzip2": ["-j"]}

SEGMENT = re.compile(r"[0-9A-F]{24}")
ANY_WAL_NAME = re.compile(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")
POLL_SECONDS = 0.005


def log(message):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    print(stamp + "Z restore-fetch.py: " + message, file=sys.stderr, flush=True)


def segment_number(name):
    """(timeline, the segment's number on it) of a 16 MiB segment's name."""
    return int(name[:8], 16), int(name[8:16], 16) * 256 + int(name[16:24], 16)


def segment_name(timeline, number):
    return "%08X%08X%08X" % (timeline, number // 256, number % 256)


class Store:
    """barman-cloud-wal-restore's lookup. One cloud interface for all threads: making one (a boto3
    session, its service models) costs a few tenths of a second of CPU, and each call makes its own
    request objects on boto3's client, which is thread-safe."""

    def __init__(self, source, server_name, endpoint_url):
        endpoint = ["--endpoint-url", endpoint_url] if endpoint_url else []
        self.config = parse_arguments([*endpoint, source, server_name, "unused", "unused"])
        self.server_name = server_name
        self.interface = get_cloud_interface(self.config)
        self.downloader = CloudWalDownloader(self.interface, server_name)

    def fetch(self, spool, name):
        """"found", "missing" or "failed: why"; "found" leaves the whole object at spool/name."""
        part = os.path.join(spool, name + ".part")
        try:
            self.downloader.download_wal(name, part)
            os.rename(part, os.path.join(spool, name))
            return "found"
        except OperationErrorExit:
            return "missing"
        except BaseException as error:  # any other failure is the store's: never the end
            return "failed: %s: %s" % (type(error).__name__, error)
        finally:
            if os.path.exists(part):
                os.unlink(part)


def download_base(catalog, info, dest):
    """"done" once the backup's one tar archive is unpacked into dest, or "unsupported"."""
    interface = catalog.cloud_interface
    files = catalog.get_backup_files(info)
    data = files.get(None)
    if (
        info.tablespaces
        or getattr(info, "snapshots_info", None)
        or list(files) != [None]
        or data.additional_files
        or data.compression not in TAR_OPTIONS
        or not hasattr(interface, "s3")
    ):
        return "unsupported"
    client, bucket = interface.s3.meta.client, interface.bucket_name
    size = client.head_object(Bucket=bucket, Key=data.path)["ContentLength"]

    def get(start):
        end = min(start + BASE_CHUNK_BYTES, size) - 1
        got = client.get_object(Bucket=bucket, Key=data.path, Range="bytes=%d-%d" % (start, end))
        body = got["Body"].read()
        if len(body) != end - start + 1:
            raise IOError("%s: %d bytes at %d, not %d" % (data.path, len(body), start, end - start + 1))
        return body

    os.makedirs(dest, exist_ok=True)
    # -p: the modes as archived, as barman-cloud-restore's tarfile keeps them.
    tar = subprocess.Popen(["tar", "-x", "-p", *TAR_OPTIONS[data.compression], "-C", dest, "-f", "-"],
                           stdin=subprocess.PIPE)
    try:
        with concurrent.futures.ThreadPoolExecutor(BASE_PARALLEL_GETS) as pool:
            pending = collections.deque()
            for start in range(0, size, BASE_CHUNK_BYTES):
                pending.append(pool.submit(get, start))
                if len(pending) > BASE_PARALLEL_GETS:  # a bounded amount in memory
                    tar.stdin.write(pending.popleft().result())
            while pending:
                tar.stdin.write(pending.popleft().result())
        tar.stdin.close()
    except BaseException:
        tar.kill()
        raise
    finally:
        tar.wait()
    if tar.returncode != 0:
        raise RuntimeError("tar -x exited with %d" % tar.returncode)
    wal_directory = os.path.join(dest, info.wal_directory())
    if not os.path.exists(wal_directory):
        os.mkdir(wal_directory)  # as barman-cloud-restore: pg_wal is not in the archive
    return "done"


def publish(spool, name, text):
    """spool/name appears with all of text, or not at all."""
    temporary = os.path.join(spool, name + ".tmp")
    with open(temporary, "w") as answer:
        answer.write(text)
    os.rename(temporary, os.path.join(spool, name))


def fetch_base(spool, catalog, info, dest):
    try:
        outcome, why = download_base(catalog, info, dest), ""
    except BaseException as error:
        outcome, why = "failed", "%s: %s" % (type(error).__name__, error)
    publish(spool, "base." + outcome, why + "\n")


class Fetcher:
    def __init__(self, spool, store, ahead):
        self.spool, self.store, self.ahead = spool, store, ahead
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=ahead + 2)
        self.prefetching = {}  # name -> future
        self.answering = {}  # name -> future of a lookup made for a request
        self.waiting = set()  # requested names whose prefetch is still under way
        self.next_prefetch = None  # (timeline, number) of the next segment to fetch ahead
        self.limit = None
        self.stopped = False  # a prefetch met the end of the archive or a failure

    def start_at(self, first_segment):
        """Fetch ahead from the backup's first segment, before recovery asks for anything."""
        if first_segment and SEGMENT.fullmatch(first_segment):
            self.next_prefetch = segment_number(first_segment)
            self.limit = self.next_prefetch[1] + self.ahead - 1

    def answer(self, name, outcome):
        if outcome == "found":
            return  # the file itself is the answer
        if outcome == "missing":
            open(os.path.join(self.spool, name + ".missing"), "w").close()
            return
        log("fetching %s failed: %s" % (name, outcome))
        temporary = os.path.join(self.spool, name + ".failed.tmp")
        with open(temporary, "w") as failed:
            failed.write(outcome + "\n")
        os.rename(temporary, os.path.join(self.spool, name + ".failed"))

    def take_requests(self):
        for entry in os.scandir(self.spool):
            if entry.name.endswith(".taken"):  # a prefetched segment was used
                os.unlink(entry.path)
                name = entry.name[: -len(".taken")]
                if SEGMENT.fullmatch(name):
                    self.follow(name)
                continue
            if not entry.name.endswith(".wanted"):
                continue
            name = entry.name[: -len(".wanted")]
            os.unlink(entry.path)
            if not ANY_WAL_NAME.fullmatch(name):
                self.answer(name, "failed: not a WAL file name")
                continue
            if SEGMENT.fullmatch(name):
                self.follow(name)
            if os.path.exists(os.path.join(self.spool, name)):
                continue
            if name in self.prefetching:
                self.waiting.add(name)
            elif name not in self.answering:
                self.answering[name] = self.pool.submit(self.store.fetch, self.spool, name)

    def follow(self, name):
        """Recovery asked for segment name: fetch ahead of it, on its timeline."""
        timeline, number = segment_number(name)
        if self.next_prefetch is None or self.next_prefetch[0] != timeline or self.next_prefetch[1] <= number:
            self.next_prefetch = (timeline, number + 1)
        self.limit = number + self.ahead
        self.stopped = False

    def collect(self):
        for name, future in list(self.prefetching.items()):
            if not future.done():
                continue
            del self.prefetching[name]
            outcome = future.result()
            if outcome != "found":
                self.stopped = True
                if outcome != "missing":
                    log("prefetching %s failed (%s); it is fetched again when asked for" % (name, outcome))
            if name in self.waiting:
                self.waiting.discard(name)
                if outcome != "found":  # only a lookup made after the request may answer no
                    self.answering[name] = self.pool.submit(self.store.fetch, self.spool, name)
        for name, future in list(self.answering.items()):
            if future.done():
                del self.answering[name]
                outcome = future.result()
                self.answer(name, outcome)

    def prefetch(self):
        while (
            not self.stopped
            and self.next_prefetch is not None
            and self.next_prefetch[1] <= self.limit
            and len(self.prefetching) < self.ahead
        ):
            name = segment_name(*self.next_prefetch)
            self.next_prefetch = (self.next_prefetch[0], self.next_prefetch[1] + 1)
            if not os.path.exists(os.path.join(self.spool, name)) and name not in self.answering:
                self.prefetching[name] = self.pool.submit(self.store.fetch, self.spool, name)

    def run(self, parent, on_choice):
        chosen = os.path.join(self.spool, "backup.chosen")
        while os.getppid() == parent:  # restore.sh: once it is gone, so is the recovery
            if on_choice is not None and os.path.exists(chosen):
                with open(chosen) as choice:
                    on_choice(choice.read().strip())
                on_choice = None
            self.take_requests()
            self.collect()
            self.prefetch()
            time.sleep(POLL_SECONDS)


def main():
    spool, parent, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        try:
            from barman.cloud import CloudBackupCatalog

            store = Store(
                os.environ["SBO_RESTORE_SOURCE"],
                os.environ["SBO_RESTORE_SERVER_NAME"],
                os.environ.get("SBO_RESTORE_ENDPOINT_URL", ""),
            )
            catalog = CloudBackupCatalog(store.interface, store.server_name)
            backups = catalog.get_backup_list()
        except Exception as error:
            publish(spool, "listing.failed", "%s: %s\n" % (type(error).__name__, error))
            return
        # What barman-cloud-backup-list --format json prints.
        listing = {"backups_list": [backups[backup_id].to_json() for backup_id in sorted(backups)]}
        publish(spool, "listing.json", json.dumps(listing) + "\n")
        fetcher = Fetcher(spool, store, max(int(os.environ.get("SBO_WAL_PREFETCH") or "4"), 1))

        def on_choice(backup_id):  # restore.sh chose: its WAL ahead, and the base backup, at once
            info = backups.get(backup_id)
            if info is None:
                publish(spool, "base.failed", "no backup %s in the listing\n" % backup_id)
                return
            fetcher.start_at(info.begin_wal)
            threading.Thread(target=fetch_base, args=(spool, catalog, info, dest), daemon=True).start()

        fetcher.run(parent, on_choice)
    finally:
        os._exit(0)  # no waiting for fetches nobody will use


if __name__ == "__main__":
    main()
'''
