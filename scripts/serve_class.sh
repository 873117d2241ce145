#!/usr/bin/env bash
# Serve the lab to a class on the network (README, "Serving a class").
#
#   ORIGIN=lab.example.edu:5006 scripts/serve_class.sh          (or: make class ORIGIN=...)
#
# ORIGIN    required: the host[:port] the students type in their browser.  Only pages loaded from
#           there may open the lab's websocket (Bokeh's --allow-websocket-origin); no wildcard.
# AUTH      optional: Panel's own basic authentication (--basic-auth): a JSON file of
#           {"user": "password", ...}, or one password for everybody (a password given here is
#           visible to other local users of this machine in `ps`; prefer a file on a shared host).
# COOKIE_SECRET  optional with AUTH: signs the login cookie (default: a new random one per start,
#           so a restart logs everybody out).
# PORT      default: ORIGIN's port, else 5006.      ADDRESS   default 0.0.0.0 (every interface).
# MAX_UPLOAD_MB  largest run a student may load (default 32; app/upload.py); the websocket's
#           message limit follows it.
# NQS_MAX_RUNS   runs computed at once on this server (default: the number of cores; app/run_queue.py).
# NQS_EXECUTOR   where a run computes (nqs_core/executors.py): process (default: a fresh process per
#           run, niced by NQS_WORKER_NICE=10), thread (a worker thread of the server) or dask (needs
#           NQS_DASK_SCHEDULER).
# NQS_DASK_SCHEDULER  tcp://host:port of a Dask distributed scheduler: every run is a task on its
#           workers (README, "Serving a class on a Dask cluster"); set NQS_MAX_RUNS to their threads.
# NQS_MAX_SITES, NQS_MAX_SAMPLES, NQS_MAX_PARAMETERS  per-session limits on problem size: lattice sites,
#           samples per step, network parameters (a whole number, or none; default: app/limits.py's
#           class defaults); the lab refuses a larger Run naming the setting and the limit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

refuse() { echo "serve_class: $*" >&2; exit 2; }

origin="${ORIGIN:-}"
[ -n "$origin" ] || refuse "refusing to serve a class without an allowed origin: set ORIGIN to the host[:port] \
the students open, e.g. make class ORIGIN=lab.example.edu:5006 (or ORIGIN=\$(hostname -f):5006)"
case "$origin" in
  *'*'*) refuse "ORIGIN=$origin: a wildcard would let any web page drive the lab; name the host[:port]" ;;
  *://*) refuse "ORIGIN=$origin: give host[:port] without the scheme, e.g. ${origin#*://}" ;;
esac
[[ "$origin" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$ ]] \
  || refuse "ORIGIN=$origin is not host[:port] (letters, digits, dots, dashes; an optional :port)"

port="${PORT:-}"
if [ -z "$port" ]; then
  case "$origin" in *:*) port="${origin##*:}" ;; *) port=5006 ;; esac
fi
[[ "$port" =~ ^[0-9]{1,5}$ ]] || refuse "PORT=$port is not a port number"

max_upload_mb="${MAX_UPLOAD_MB:-32}"
[[ "$max_upload_mb" =~ ^[0-9]+$ ]] && [ "$max_upload_mb" -ge 1 ] || refuse "MAX_UPLOAD_MB=$max_upload_mb is not a whole number of MB >= 1"
export NQS_MAX_UPLOAD_MB="$max_upload_mb"
# uploads arrive in chunks of at most 4 MB (app/upload.py): a message never needs more than 8 MB
ws_max=$((8 * 1024 * 1024))

py="${NQS_SERVE_PYTHON:-.venv/bin/python}"
# the executor and the limits are checked now, in one interpreter (each start of one imports JAX), so a bad
# value stops the start instead of every student's page: the executor's line, then the limits' NAME=value lines
checked="$(NQS_EXECUTOR="${NQS_EXECUTOR:-}" NQS_DASK_SCHEDULER="${NQS_DASK_SCHEDULER:-}" "$py" -c '
import sys
from app.limits import main as limits
from app.run_queue import DEFAULT_EXECUTOR
from nqs_core.executors import executor_from_env
try:
    e = executor_from_env(DEFAULT_EXECUTOR)
except ValueError as err:
    sys.exit(str(err))
print(e.name + (" at " + e.address if e.name == "dask" else ""))
sys.exit(limits() and 3)')" || case $? in
  3) refuse "set NQS_MAX_SITES, NQS_MAX_SAMPLES, NQS_MAX_PARAMETERS to whole numbers >= 1 or none" ;;
  *) refuse "choose NQS_EXECUTOR (EXECUTOR=) or NQS_DASK_SCHEDULER (DASK_SCHEDULER=) again" ;;
esac
executor="$(head -n 1 <<< "$checked")"
limits="$(tail -n +2 <<< "$checked")"
while IFS= read -r assignment; do export "${assignment?}"; done <<< "$limits"
args=(serve app --port "$port" --address "${ADDRESS:-0.0.0.0}" --allow-websocket-origin "$origin"
      --websocket-max-message-size "$ws_max" --unused-session-lifetime 2000 --check-unused-sessions 1000
      --setup app/warm_start.py)  # nqs warm in the background (NQS_WARM=0 skips it)
if [ -n "${AUTH:-}" ]; then
  secret="${COOKIE_SECRET:-$("$py" -c 'import secrets; print(secrets.token_urlsafe(32))')}"
  # the --name=value form: a secret (token_urlsafe) may begin with "-", which argparse would take for a flag
  args+=("--basic-auth=$AUTH" "--cookie-secret=$secret")
  case "$AUTH" in
    *.json) [ -f "$AUTH" ] || refuse "AUTH=$AUTH: no such file (a JSON file of {\"user\": \"password\"})" ;;
  esac
fi

# the environment must not widen what ORIGIN allows (Bokeh's variable overrides the flag)
unset BOKEH_ALLOW_WS_ORIGIN
echo "serve_class: http://$origin/app (listening on ${ADDRESS:-0.0.0.0}:$port; websocket origin $origin only;" \
     "basic authentication $([ -n "${AUTH:-}" ] && echo on || echo off); uploads up to $max_upload_mb MB;" \
     "runs in: $executor; per session: $(echo $limits))" >&2
exec "$py" -m panel "${args[@]}"
