"""wal-fetch.py: restore.sh's one long-lived WAL fetcher, shipped beside the backup scripts.

One Python process for a whole recovery, instead of one barman-cloud-wal-restore process (about
0.6 s of start-up each on a small machine) per WAL file. It uses barman-cloud's own library, as
barman-cloud-wal-restore does (same lookup, same compression detection), and talks to
wal-restore.sh through files in the spool directory:

- ``NAME.wanted``  wal-restore.sh asks for NAME; the fetcher takes the request by deleting it;
- ``NAME``         the answer "found": a whole object of the store, renamed into place from
                   ``NAME.part`` only once all of it is written (a prefetched segment is the same);
- ``NAME.missing`` the answer "the store answered and has no such file": the end of the archive;
- ``NAME.failed``  the answer "the store could not be asked" (one line why): recovery must abort;
- ``NAME.taken``   wal-restore.sh used a prefetched NAME: the fetcher moves its window past it.

The invariants it keeps, the ones the restore's guarantees rest on:

- only whole objects ever appear under a WAL name;
- "missing" and "failed" are only ever answers to a request, from a lookup made after that request
  arrived: a prefetch that met the end of the archive, or an outage, only stops the prefetching. So
  a store outage is never taken for the end of the archive, and an archive that grew since the
  prefetch is seen;
- it fetches ahead only segments of the timeline recovery is on, at most SBO_WAL_PREFETCH past the
  last one asked for, in parallel, starting with the backup's first segment while the base backup
  still downloads.

wal-restore.sh falls back to its own barman-cloud-wal-restore call when this process is not
running, so its death costs time, never correctness.
"""

from __future__ import annotations

__all__ = ["WAL_FETCHER_PROGRAM"]

WAL_FETCHER_PROGRAM = r'''"""wal-fetch.py SPOOL FIRST_SEGMENT RESTORE_SH_PID (see wal-restore.sh)."""
import concurrent.futures
import datetime
import os
import re
import signal
import sys
import threading
import time

from barman.clients.cloud_cli import OperationErrorExit
from barman.clients.cloud_walrestore import CloudWalDownloader, parse_arguments
from barman.cloud_providers import get_cloud_interface

SEGMENT = re.compile(r"[0-9A-F]{24}")
ANY_WAL_NAME = re.compile(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")
POLL_SECONDS = 0.005


def log(message):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    print(stamp + "Z wal-fetch.py: " + message, file=sys.stderr, flush=True)


def segment_number(name):
    """(timeline, the segment's number on it) of a 16 MiB segment's name."""
    return int(name[:8], 16), int(name[8:16], 16) * 256 + int(name[16:24], 16)


def segment_name(timeline, number):
    return "%08X%08X%08X" % (timeline, number // 256, number % 256)


class Store:
    """barman-cloud-wal-restore's lookup, one cloud interface (boto3 session) per thread."""

    def __init__(self, source, server_name, endpoint_url):
        endpoint = ["--endpoint-url", endpoint_url] if endpoint_url else []
        self.config = parse_arguments([*endpoint, source, server_name, "unused", "unused"])
        self.server_name = server_name
        self.local = threading.local()

    def fetch(self, spool, name):
        """"found", "missing" or "failed: why"; "found" leaves the whole object at spool/name."""
        part = os.path.join(spool, name + ".part")
        try:
            if not hasattr(self.local, "downloader"):
                self.local.downloader = CloudWalDownloader(get_cloud_interface(self.config), self.server_name)
            self.local.downloader.download_wal(name, part)
            os.rename(part, os.path.join(spool, name))
            return "found"
        except OperationErrorExit:
            return "missing"
        except BaseException as error:  # any other failure is the store's: never the end
            return "failed: %s: %s" % (type(error).__name__, error)
        finally:
            if os.path.exists(part):
                os.unlink(part)


class Fetcher:
    def __init__(self, spool, store, first_segment, ahead):
        self.spool, self.store, self.ahead = spool, store, ahead
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=ahead + 2)
        self.prefetching = {}  # name -> future
        self.answering = {}  # name -> future of a lookup made for a request
        self.waiting = set()  # requested names whose prefetch is still under way
        self.next_prefetch = segment_number(first_segment) if SEGMENT.fullmatch(first_segment) else None
        self.limit = None if self.next_prefetch is None else self.next_prefetch[1] + ahead - 1
        self.stopped = False  # a prefetch met the end of the archive or a failure

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

    def run(self, parent):
        while os.getppid() == parent:  # restore.sh: once it is gone, so is the recovery
            self.take_requests()
            self.collect()
            self.prefetch()
            time.sleep(POLL_SECONDS)


def main():
    spool, first_segment, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ahead = int(os.environ.get("SBO_WAL_PREFETCH") or "4")
    store = Store(
        os.environ["SBO_RESTORE_SOURCE"],
        os.environ["SBO_RESTORE_SERVER_NAME"],
        os.environ.get("SBO_RESTORE_ENDPOINT_URL", ""),
    )
    fetcher = Fetcher(spool, store, first_segment, max(ahead, 1))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fetcher.run(parent)
    finally:
        os._exit(0)  # no waiting for fetches nobody will use


if __name__ == "__main__":
    main()
'''
