"""Backups to an S3-compatible object store with barman-cloud: the scripts and postgresql.conf lines.

The scripts run inside the PostgreSQL image (it carries Debian's barman-cli-cloud 3.4.0) as the
OS user that owns PGDATA. They are POSIX sh with ``set -eu``. Every value reaches them through
the environment and is passed to the tools as a separate argument: none is spliced into shell
code or SQL, and the only values written into a configuration file (restore.sh's recovery lines)
are first checked against a strict pattern. Credentials are never arguments: barman-cloud's S3
client (boto3) reads them from the environment itself, so they appear in no command line.

Environment::

    SBO_BACKUP_DESTINATION      s3://bucket/path that archives and backups go to      wal-archive, base-backup
    SBO_BACKUP_SERVER_NAME      the folder under it for this database (barman's server name)
    SBO_BACKUP_ENDPOINT_URL     the store's URL, e.g. https://minio.storage.svc:9000  default: AWS S3
    SBO_BACKUP_COMPRESSION      gzip | bzip2 | snappy | none (snappy needs python3-snappy)   default gzip
    SBO_BACKUP_RETENTION_WINDOW keep what a RECOVERY WINDOW OF <n> DAYS|WEEKS|MONTHS needs, e.g. "4 WEEKS"
    SBO_BACKUP_RETENTION_DAYS   the same as SBO_BACKUP_RETENTION_WINDOW="<N> DAYS"; neither keeps everything
    SBO_RESTORE_SOURCE          s3://bucket/path to restore from                 restore, wal-restore
    SBO_RESTORE_SERVER_NAME     the server name the source's backups were taken under
    SBO_RESTORE_ENDPOINT_URL    the source store's URL                                 default: AWS S3
    SBO_RESTORE_TARGET_TIME     recover up to this time (ISO 8601, with a zone or UTC)  \\ neither:
    SBO_RESTORE_TARGET_LSN      recover up to this LSN, e.g. 0/3000060                 / latest
    SBO_BACKUP_SCRIPTS_DIR      where these scripts are mounted                  default /etc/sbo-backup
    SBO_WAL_PREFETCH            segments restore.sh's restore-fetch.py fetches ahead, in parallel  default 4
    PGDATA, SBO_PG_CONFIG_DIR, SBO_PG_SOCKET_DIR, SBO_PG_RUNTIME_DIR, SBO_PG_PORT    as for start.sh
    PGHOST, PGPORT, PGUSER ...  libpq's own: the server base-backup.sh connects to  default: the socket
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_CA_BUNDLE
                                read by barman-cloud's S3 client only

restore.sh exits 0 when PGDATA holds the recovered, promoted database, and otherwise with one of
the ``RESTORE_EXIT_*`` codes and one line on stderr saying why; a target it cannot reach is
refused before anything is downloaded when the backups' own times and LSNs show it, so a retry
cannot turn into a crash loop of PostgreSQL.
"""

from __future__ import annotations

from sbo_operator.builders.restore_fetcher import RESTORE_FETCHER_PROGRAM

__all__ = [
    "BASE_BACKUP_SCRIPT",
    "CHOOSE_BACKUP_QUOTED",
    "DEFAULT_ARCHIVE_TIMEOUT_SECONDS",
    "DEFAULT_SCRIPTS_DIR",
    "RESTORE_EXIT_BAD_CONFIGURATION",
    "RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT",
    "RESTORE_EXIT_FAILED",
    "RESTORE_EXIT_NO_BACKUP",
    "RESTORE_EXIT_TARGET_NOT_ARCHIVED",
    "RESTORE_SCRIPT",
    "WAL_ARCHIVE_SCRIPT",
    "WAL_RESTORE_SCRIPT",
    "archive_settings",
    "backup_script_files",
    "render_archive_conf",
]

# A segment is switched and archived at least this often while anything is written, so a commit
# reaches the store within about this long plus one upload: the data-loss window stays under 60 s.
DEFAULT_ARCHIVE_TIMEOUT_SECONDS = 30
DEFAULT_SCRIPTS_DIR = "/etc/sbo-backup"

RESTORE_EXIT_FAILED = 1
RESTORE_EXIT_BAD_CONFIGURATION = 2
RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT = 3
RESTORE_EXIT_TARGET_NOT_ARCHIVED = 4
RESTORE_EXIT_NO_BACKUP = 5

_HEAD = """\
#!/bin/sh
set -eu
# Each line carries the UTC time to the millisecond: a restore's phases are read off its log.
log() { printf '%s %s: %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$(basename "$0")" "$*" >&2; }
"""


def _store_options(required: str, endpoint_variable: str) -> str:
    """The ``required`` checks, then "$@" = the endpoint option when one is set.

    A script reads its own arguments into named variables before this replaces "$@".
    """
    return (
        f"{required}set --\n"
        f'if [ -n "${{{endpoint_variable}:-}}" ]; then set -- --endpoint-url "${endpoint_variable}"; fi\n'
    )


# A fetcher that exited stays a zombie until its parent (restore.sh) waits for it, and kill -0
# still finds a zombie: its state in /proc says it is gone.
_RUNNING = """\
running() {  # running PID: the process is alive, not a zombie
  kill -0 "$1" 2>/dev/null || return 1
  case "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" in Z* | X* | '') return 1 ;; esac
}
"""

_DESTINATION = """\
: "${SBO_BACKUP_DESTINATION:?SBO_BACKUP_DESTINATION must be set (s3://bucket/path)}"
: "${SBO_BACKUP_SERVER_NAME:?SBO_BACKUP_SERVER_NAME must be set}"
"""
_SOURCE = """\
: "${SBO_RESTORE_SOURCE:?SBO_RESTORE_SOURCE must be set (s3://bucket/path)}"
: "${SBO_RESTORE_SERVER_NAME:?SBO_RESTORE_SERVER_NAME must be set}"
"""

# Appends the compression option to "$@".
_COMPRESSION = """\
case "${SBO_BACKUP_COMPRESSION:-gzip}" in
  gzip) set -- "$@" --gzip ;;
  bzip2) set -- "$@" --bzip2 ;;
  snappy) set -- "$@" --snappy ;;
  none) ;;
  *) log "SBO_BACKUP_COMPRESSION must be gzip, bzip2, snappy or none"; exit 2 ;;
esac
"""

WAL_ARCHIVE_SCRIPT = (
    _HEAD
    + """\
# archive_command = 'sh wal-archive.sh %p': upload one WAL segment (or history file). A failure
# exits non-zero: PostgreSQL keeps the file, retries it, and counts it in pg_stat_archiver.
wal_path="${1:?usage: wal-archive.sh WAL_PATH (the %p of archive_command)}"
"""
    + _store_options(_DESTINATION, "SBO_BACKUP_ENDPOINT_URL")
    + _COMPRESSION
    + """\
exec barman-cloud-wal-archive "$@" "$SBO_BACKUP_DESTINATION" "$SBO_BACKUP_SERVER_NAME" "$wal_path"
"""
)

WAL_RESTORE_SCRIPT = (
    _HEAD
    + """\
# restore_command = 'sh wal-restore.sh %f %p': fetch one WAL file from the restore source. A file
# the store does not have exits non-zero, which is how recovery learns it reached the end.
#
# With SBO_WAL_PREFETCH_DIR set and restore.sh's fetcher (restore-fetch.py, its pid in fetcher.pid)
# running, the file is asked of that one long-lived process, which fetches ahead in parallel, as
# CloudNativePG's parallel WAL restore does: NAME.wanted asks; the answer is NAME (a whole object
# of the store), NAME.missing (the end of the archive) or NAME.failed (the store could not be
# asked), each from a lookup made after the request; NAME.taken says a prefetched NAME was used.
# Without the fetcher, barman-cloud-wal-restore is asked directly, with the same three answers.
wal_name="${1:?usage: wal-restore.sh WAL_NAME WAL_PATH (the %f %p of restore_command)}"
wal_dest="${2:?usage: wal-restore.sh WAL_NAME WAL_PATH (the %f %p of restore_command)}"
"""
    + _SOURCE
    + _RUNNING
    + """\
spool="${SBO_WAL_PREFETCH_DIR:-}"
fetcher=
if [ -n "$spool" ] && [ -s "$spool/fetcher.pid" ]; then fetcher="$(cat "$spool/fetcher.pid")"; fi
case "$fetcher" in *[!0-9]*) fetcher= ;; esac

case "$wal_name" in *[!0-9A-Za-z.]*) fetcher= ;; esac  # a plain file name, or no spool path

if [ -n "$fetcher" ] && running "$fetcher"; then
  rm -f "$spool/$wal_name.missing" "$spool/$wal_name.failed"
  [ -f "$spool/$wal_name" ] || : >"$spool/$wal_name.wanted"
  while :; do
    if [ -f "$spool/$wal_name" ]; then
      mv -f "$spool/$wal_name" "$wal_dest"
      : >"$spool/$wal_name.taken"  # tells the fetcher where recovery is, to fetch further ahead
      exit 0
    fi
    if [ -e "$spool/$wal_name.missing" ]; then
      rm -f "$spool/$wal_name.missing"
      exit 1
    fi
    if [ -e "$spool/$wal_name.failed" ]; then
      log "fetching $wal_name failed: $(cat "$spool/$wal_name.failed"): aborting recovery"
      rm -f "$spool/$wal_name.failed"
      exit 255
    fi
    # The fetcher gone (killed, out of memory): ask the store directly below.
    running "$fetcher" || break
    sleep 0.01
  done
  rm -f "$spool/$wal_name.wanted"
fi

status=0
if [ -n "${SBO_RESTORE_ENDPOINT_URL:-}" ]; then
  barman-cloud-wal-restore --endpoint-url "$SBO_RESTORE_ENDPOINT_URL" \\
    "$SBO_RESTORE_SOURCE" "$SBO_RESTORE_SERVER_NAME" "$wal_name" "$wal_dest" || status=$?
else
  barman-cloud-wal-restore "$SBO_RESTORE_SOURCE" "$SBO_RESTORE_SERVER_NAME" "$wal_name" "$wal_dest" ||
    status=$?
fi
# 1 is barman's "the store answered but has no such file": the end of the archive. Anything else
# (the store unreachable, refused credentials) must not look like the end, or recovery would stop
# early and promote without the rest: an exit code above 125 makes PostgreSQL abort recovery.
case "$status" in
  0 | 1) exit "$status" ;;
  *) log "barman-cloud-wal-restore failed ($status) for $wal_name: aborting recovery"; exit 255 ;;
esac
"""
)

BASE_BACKUP_SCRIPT = (
    _HEAD
    + """\
# Take a base backup of the server libpq's environment points at (PGHOST, PGPORT, PGUSER; the
# local socket by default), running where its PGDATA is readable; then, when a retention is set,
# delete the backups and WAL that the RECOVERY WINDOW no longer needs.
"""
    + _store_options(_DESTINATION, "SBO_BACKUP_ENDPOINT_URL")
    + """\
retention="${SBO_BACKUP_RETENTION_WINDOW:-}"
retention_days="${SBO_BACKUP_RETENTION_DAYS:-}"
case "$retention_days" in
  '') ;;
  0 | *[!0-9]*) log "SBO_BACKUP_RETENTION_DAYS must be a whole number of days, at least 1"; exit 2 ;;
  *)
    if [ -n "$retention" ]; then
      log "set SBO_BACKUP_RETENTION_WINDOW or SBO_BACKUP_RETENTION_DAYS, not both"; exit 2
    fi
    retention="$retention_days DAYS" ;;
esac
if [ -n "$retention" ]; then
  count="${retention%% *}"
  unit="${retention#* }"
  case "$count" in '' | 0* | *[!0-9]*) unit=bad ;; esac
  case "$unit" in
    DAYS | WEEKS | MONTHS) ;;
    *) log "SBO_BACKUP_RETENTION_WINDOW must be <n> DAYS, WEEKS or MONTHS with n at least 1"; exit 2 ;;
  esac
fi
"""
    + _COMPRESSION
    + """\
log "base backup to $SBO_BACKUP_DESTINATION ($SBO_BACKUP_SERVER_NAME)"
barman-cloud-backup "$@" --immediate-checkpoint "$SBO_BACKUP_DESTINATION" "$SBO_BACKUP_SERVER_NAME"
if [ -n "$retention" ]; then
  set --
  if [ -n "${SBO_BACKUP_ENDPOINT_URL:-}" ]; then set -- --endpoint-url "$SBO_BACKUP_ENDPOINT_URL"; fi
  log "applying the retention policy: RECOVERY WINDOW OF $retention"
  barman-cloud-backup-delete "$@" --retention-policy "RECOVERY WINDOW OF $count $unit" \\
    "$SBO_BACKUP_DESTINATION" "$SBO_BACKUP_SERVER_NAME"
fi
log "base backup done"
"""
)

# Reads barman-cloud-backup-list's JSON on stdin and the target from the environment; prints the
# backup to restore and the target as PostgreSQL should read it, or exits with a RESTORE_EXIT_*
# code and one line on stderr. The first recoverability point is the end of the oldest backup:
# no recovery can stop before a backup is consistent.
_CHOOSE_BACKUP = f"""\
import datetime, json, os, re, sys

def refuse(code, reason):
    print("restore.sh: " + reason, file=sys.stderr)
    sys.exit(code)

def lsn(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)

def listed_time(text):
    # barman lists times as ctime() in the backup host's zone (UTC in the pods), to the second
    # and rounded down: a second more is a safe upper bound for the backup's end.
    moment = datetime.datetime.strptime(text, "%a %b %d %H:%M:%S %Y")
    return moment.replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=1)

def when(text):
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)

backups = [b for b in json.load(sys.stdin)["backups_list"] if b.get("status") == "DONE"]
source = os.environ["SBO_RESTORE_SOURCE"]
if not backups:
    refuse({RESTORE_EXIT_NO_BACKUP}, "no completed backup in " + source)
for backup in backups:
    backup["end"] = listed_time(backup["end_time"])
    backup["end_lsn"] = lsn(backup["end_xlog"])
backups.sort(key=lambda backup: backup["end"])
target_time = os.environ.get("SBO_RESTORE_TARGET_TIME", "")
target_lsn = os.environ.get("SBO_RESTORE_TARGET_LSN", "")
if target_time and target_lsn:
    refuse({RESTORE_EXIT_BAD_CONFIGURATION},
           "set SBO_RESTORE_TARGET_TIME or SBO_RESTORE_TARGET_LSN, not both")
if target_time:
    try:
        target = when(target_time)
    except ValueError:
        refuse({RESTORE_EXIT_BAD_CONFIGURATION},
               "SBO_RESTORE_TARGET_TIME is not an ISO 8601 time: " + target_time)
    first = backups[0]["end"]
    if target < first:
        refuse({RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT},
               f"recovery target time {{target.isoformat()}} is before the first recoverability point "
               f"{{first.isoformat()}} of {{source}}")
    if target > datetime.datetime.now(datetime.timezone.utc):
        refuse({RESTORE_EXIT_TARGET_NOT_ARCHIVED},
               f"recovery target time {{target.isoformat()}} is in the future")
    chosen = [b for b in backups if b["end"] <= target][-1]
    print(chosen["backup_id"])
    print(target.strftime("%Y-%m-%d %H:%M:%S.%f+00"))
elif target_lsn:
    if not re.fullmatch(r"[0-9A-Fa-f]{{1,8}}/[0-9A-Fa-f]{{1,8}}", target_lsn):
        refuse({RESTORE_EXIT_BAD_CONFIGURATION},
               "SBO_RESTORE_TARGET_LSN is not an LSN such as 0/3000060: " + target_lsn)
    by_lsn = sorted(backups, key=lambda backup: backup["end_lsn"])
    if lsn(target_lsn) < by_lsn[0]["end_lsn"]:
        refuse({RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT},
               f"recovery target LSN {{target_lsn}} is before the first recoverability point "
               f"{{by_lsn[0]['end_xlog']}} of {{source}}")
    print([b for b in by_lsn if b["end_lsn"] <= lsn(target_lsn)][-1]["backup_id"])
    print(target_lsn.upper())
else:
    print(backups[-1]["backup_id"])
    print("latest")
"""

# The program inside single quotes in sh: each ' becomes '\'' (close, escaped quote, reopen).
_CHOOSE_BACKUP_QUOTED = _CHOOSE_BACKUP.replace("'", "'\\''")
# The same choice, for the operator's check of a recovery target before any instance exists.
CHOOSE_BACKUP_QUOTED = _CHOOSE_BACKUP_QUOTED

# The private server's one query, kept out of the script text so no linter mistakes it for built SQL.
_IN_RECOVERY_QUERY = "SELECT pg_is_in_recovery()"

RESTORE_SCRIPT = (
    _HEAD
    + f"""\
# Bootstrap an empty PGDATA from the restore source: the right base backup, then a private
# server (unix socket only, archiving off) that replays the archived WAL up to the target and
# promotes. PGDATA appears only once that has succeeded; a failure leaves no PGDATA behind.
: "${{PGDATA:?PGDATA must be set}}"
config_dir="${{SBO_PG_CONFIG_DIR:-/etc/sbo-postgres}}"
socket_dir="${{SBO_PG_SOCKET_DIR:-/var/run/postgresql}}"
runtime_dir="${{SBO_PG_RUNTIME_DIR:-/tmp}}"
port="${{SBO_PG_PORT:-5432}}"
scripts_dir="${{SBO_BACKUP_SCRIPTS_DIR:-{DEFAULT_SCRIPTS_DIR}}}"
"""
    + _store_options(_SOURCE, "SBO_RESTORE_ENDPOINT_URL")
    + _RUNNING
    + f"""\
refuse() {{ code="$1"; shift; printf 'restore.sh: %s\\n' "$*" >&2; exit "$code"; }}

if [ -s "$PGDATA/PG_VERSION" ]; then
  log "$PGDATA already holds a data directory; nothing to restore"
  exit 0
fi
if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
  refuse {RESTORE_EXIT_FAILED} "$PGDATA is neither empty nor a data directory; refusing to touch it"
fi
# The one value written into restore_command: a plain path only.
case "$scripts_dir" in
  '' | *[!A-Za-z0-9/._-]*)
    refuse {RESTORE_EXIT_BAD_CONFIGURATION} "SBO_BACKUP_SCRIPTS_DIR may hold only letters, digits, / . _ -" ;;
esac

# One fetcher (restore-fetch.py) lists the backups, downloads the chosen one and serves
# wal-restore.sh for the whole recovery, fetching ahead in parallel, through this spool: it is
# outside the data directory, and goes with the recovery. Without it (it died, or never started),
# the barman-cloud commands do each step, only slower.
SBO_WAL_PREFETCH_DIR="$PGDATA.new.wal-prefetch"
SBO_WAL_PREFETCH="${{SBO_WAL_PREFETCH:-4}}"
case "$SBO_WAL_PREFETCH" in
  '' | 0 | *[!0-9]*)
    refuse {RESTORE_EXIT_BAD_CONFIGURATION} "SBO_WAL_PREFETCH must be a whole number, at least 1" ;;
esac
export SBO_WAL_PREFETCH_DIR SBO_WAL_PREFETCH
spool="$SBO_WAL_PREFETCH_DIR"
rm -rf "$PGDATA.new" "$spool"
mkdir -p "$spool"
python3 "$scripts_dir/restore-fetch.py" "$spool" "$$" "$PGDATA.new" </dev/null >&2 &
fetcher=$!
printf '%s\\n' "$fetcher" >"$spool/fetcher.pid"
server=
# The fetcher is stopped (and waited for) before the last line, so that line stays the last.
stop_fetcher() {{ kill -TERM "$fetcher" 2>/dev/null || true; wait "$fetcher" 2>/dev/null || true; }}
stop_all() {{
  [ -z "$server" ] || kill -INT "$server" 2>/dev/null || true
  stop_fetcher
}}
trap stop_all EXIT
answer_of_fetcher() {{  # answer_of_fetcher NAME...: the first of spool/NAME to appear; 1 if it is gone
  while running "$fetcher"; do
    for name in "$@"; do
      if [ -e "$spool/$name" ]; then printf '%s\\n' "$name"; return 0; fi
    done
    sleep 0.01
  done
  return 1
}}
fail_with() {{ why="$(cat "$spool/$2")"; stop_fetcher; refuse {RESTORE_EXIT_FAILED} "$1: $why"; }}

cannot_list="cannot list the backups in $SBO_RESTORE_SOURCE ($SBO_RESTORE_SERVER_NAME)"
case "$(answer_of_fetcher listing.json listing.failed)" in
  listing.json) listing="$(cat "$spool/listing.json")" ;;
  listing.failed) fail_with "$cannot_list" listing.failed ;;
  *)
    listing="$(barman-cloud-backup-list "$@" --format json \\
      "$SBO_RESTORE_SOURCE" "$SBO_RESTORE_SERVER_NAME")" || refuse {RESTORE_EXIT_FAILED} "$cannot_list" ;;
esac
choice="$(printf '%s' "$listing" | python3 -c '{_CHOOSE_BACKUP_QUOTED}')" || exit "$?"
backup_id="$(printf '%s\\n' "$choice" | sed -n 1p)"
target="$(printf '%s\\n' "$choice" | sed -n 2p)"

log "restoring backup $backup_id of $SBO_RESTORE_SOURCE ($SBO_RESTORE_SERVER_NAME), target $target"
printf '%s\\n' "$backup_id" >"$spool/backup.chosen.tmp"
mv "$spool/backup.chosen.tmp" "$spool/backup.chosen"
# The fetcher now downloads the backup (parallel ranged GETs into tar) and, alongside, its first
# WAL segments; a backup that is not one plain archive is barman-cloud-restore's, as without it.
case "$(answer_of_fetcher base.done base.failed base.unsupported)" in
  base.done) ;;
  base.failed) fail_with "downloading backup $backup_id failed" base.failed ;;
  *)
    log "backup $backup_id is not one plain archive, or the fetcher is gone: barman-cloud-restore"
    rm -rf "$PGDATA.new"
    barman-cloud-restore "$@" "$SBO_RESTORE_SOURCE" "$SBO_RESTORE_SERVER_NAME" "$backup_id" \\
      "$PGDATA.new" >&2 ;;
esac
log "base backup downloaded and unpacked; starting the recovery server"
chmod 0700 "$PGDATA.new"
auto_conf="$PGDATA.new/postgresql.auto.conf"
touch "$auto_conf"
cp "$auto_conf" "$PGDATA.auto.conf.orig"
{{
  printf '\\n# restore.sh: recovery from the object store (removed once promoted)\\n'
  printf "restore_command = 'sh %s/wal-restore.sh %%f %%p'\\n" "$scripts_dir"
  printf "recovery_target_action = 'promote'\\n"
  case "${{SBO_RESTORE_TARGET_TIME:-}}${{SBO_RESTORE_TARGET_LSN:-}}" in
    '') ;;
    *) if [ -n "${{SBO_RESTORE_TARGET_TIME:-}}" ]; then printf "recovery_target_time = '%s'\\n" "$target"
       else printf "recovery_target_lsn = '%s'\\n" "$target"; fi
       printf "recovery_target_inclusive = on\\n" ;;
  esac
}} >> "$auto_conf"
touch "$PGDATA.new/recovery.signal"

# hot_standby=off: no reads during recovery, so this server's limits (max_connections...) may be
# smaller than the source's; archive_mode=off: nothing of the recovery goes to any store. Its log
# keeps every WAL file restored and each step of recovery, with UTC times, whatever the source set.
recovery_log="$runtime_dir/restore-recovery.log"
postgres -D "$PGDATA.new" \\
  -c config_file="$config_dir/postgresql.conf" -c hba_file="$config_dir/pg_hba.conf" \\
  -c listen_addresses= -c port="$port" -c unix_socket_directories="$socket_dir" \\
  -c hot_standby=off -c archive_mode=off \\
  -c log_min_messages=log -c log_checkpoints=on -c log_timezone=UTC -c "log_line_prefix=%m [%p] " \\
  >"$recovery_log" 2>&1 &
server=$!
in_recovery() {{
  psql -X -A -t -h "$socket_dir" -p "$port" -d postgres -c '{_IN_RECOVERY_QUERY}' 2>/dev/null
}}
until [ "$(in_recovery)" = f ]; do
  if ! kill -0 "$server" 2>/dev/null; then
    server=
    stop_fetcher
    if grep -q 'recovery ended before configured recovery target was reached' "$recovery_log"; then
      refuse {RESTORE_EXIT_TARGET_NOT_ARCHIVED} \\
        "recovery target $target is past the last WAL archived in $SBO_RESTORE_SOURCE"
    fi
    if grep -q 'before consistent recovery point' "$recovery_log"; then
      refuse {RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT} \\
        "recovery target $target is before backup $backup_id is consistent"
    fi
    tail -n 20 "$recovery_log" >&2
    refuse {RESTORE_EXIT_FAILED} "the recovery server exited before promoting (its log is above)"
  fi
  sleep 0.1
done
# The recovery log goes with the pod: its outcome stays in the pod's log, where a restore that
# stopped short (an old timeline, a segment it did not get) can be told from one that did not.
last_wal="$(sed -n 's/.*restored log file "\\([0-9A-F]*\\)" from archive$/\\1/p' "$recovery_log" | tail -n 1)"
timeline="$(sed -n 's/.*selected new timeline ID: \\([0-9]*\\).*/\\1/p' "$recovery_log" | tail -n 1)"
replayed="WAL replayed through ${{last_wal:-none}}, new timeline ${{timeline:-?}}"
log "promoted; stopping the recovery server ($replayed)"
kill -INT "$server"
wait "$server" || true
server=
stop_fetcher
trap - EXIT
# The recovery lines go: a replica cloned from this database must not stop at the same target.
cp "$PGDATA.auto.conf.orig" "$auto_conf"
rm -f "$PGDATA.auto.conf.orig"
rm -rf "$SBO_WAL_PREFETCH_DIR"
mv "$PGDATA.new" "$PGDATA"
log "restored and promoted; target $target"
"""
)


def archive_settings(
    *, archive_timeout_seconds: int = DEFAULT_ARCHIVE_TIMEOUT_SECONDS, scripts_dir: str = DEFAULT_SCRIPTS_DIR
) -> list[tuple[str, str]]:
    """The postgresql.conf settings that archive every WAL segment with wal-archive.sh.

    ``archive_timeout_seconds`` bounds how long a commit can wait for its segment to be switched
    and archived: the data-loss window when the primary's volume is lost.
    """
    if archive_timeout_seconds < 1:
        raise ValueError("archive_timeout_seconds must be at least 1")
    if not scripts_dir.startswith("/") or any(c not in _PATH_CHARACTERS for c in scripts_dir):
        raise ValueError(f"scripts_dir must be an absolute plain path: {scripts_dir!r}")
    return [
        ("archive_mode", "on"),
        ("archive_command", f"'sh {scripts_dir}/wal-archive.sh %p'"),
        ("archive_timeout", f"'{archive_timeout_seconds}s'"),
    ]


_PATH_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")


def render_archive_conf(
    *, archive_timeout_seconds: int = DEFAULT_ARCHIVE_TIMEOUT_SECONDS, scripts_dir: str = DEFAULT_SCRIPTS_DIR
) -> str:
    """:func:`archive_settings` as postgresql.conf lines."""
    settings = archive_settings(archive_timeout_seconds=archive_timeout_seconds, scripts_dir=scripts_dir)
    return "".join(f"{name} = {value}\n" for name, value in settings)


def backup_script_files() -> dict[str, str]:
    """The scripts, by file name, as a ConfigMap mounted at ``DEFAULT_SCRIPTS_DIR`` would hold them."""
    return {
        "wal-archive.sh": WAL_ARCHIVE_SCRIPT,
        "wal-restore.sh": WAL_RESTORE_SCRIPT,
        "base-backup.sh": BASE_BACKUP_SCRIPT,
        "restore.sh": RESTORE_SCRIPT,
        "restore-fetch.py": RESTORE_FETCHER_PROGRAM,
    }
