#!/usr/bin/env bash
# make demo: the whole story in one command (hack/demo.py): the local control
# plane with its real node and the operator, the sample backend on real pods,
# Prometheus finding them through the apiserver, a load ramp through the api's
# Service with live scale-up and scale-down, and a summary (--kwok, or no real
# node: kwok's fake pods and the app as one process). It ends by itself in
# about 3 minutes and stops everything it started, also on Ctrl-C or failure;
# a control plane that was already running is reused and left running.
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
