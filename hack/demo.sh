#!/usr/bin/env bash
# make demo: the whole story in one command (hack/demo.py): the local control
# plane and the operator, the sample backend, the real sample app with
# PostgreSQL, Redis and Prometheus, a load ramp with live scale-up and
# scale-down, and a summary. It ends by itself within about 5 minutes and
# stops everything it started, also on Ctrl-C or failure; a control plane
# that was already running is reused and left running.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${SBO_PYTHON:-$repo/.venv/bin/python}"
if [ ! -x "$python" ]; then
  echo "demo: $python is missing: run 'make demo' (it creates the virtual environment)" >&2
  exit 1
fi
bin_dir="$("$repo/hack/install-tools.sh" bin-dir)"
export PATH="$bin_dir:$PATH"
cd "$repo"
# exec: Ctrl-C and SIGTERM reach the Python process, whose finally blocks clean up.
exec "$python" -m hack.demo "$@"
