#!/usr/bin/env bash
# A Prefect server for scheduled operation (`callqa serve`): start | stop | status.
#
# Everything it keeps lives in one folder, $CALLQA_PREFECT_HOME (default: $CALLQA_HOME/prefect, and
# $CALLQA_HOME defaults to .callqa/ in the repo root, which git ignores):
#   prefect.db    the server's SQLite database (flow runs, logs, artifacts, deployments, schedules)
#   server.pid    the server's process id (it leads its own process group)
#   server.log    the server's output (the scheduler's errors show here)
# The server listens on 127.0.0.1:$CALLQA_PREFECT_PORT (default 4200); `start` prints the
# PREFECT_API_URL to export for `callqa serve`. Any PREFECT_SERVER_* variable in the environment
# (e.g. PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS) reaches the server.
#
#   bash scripts/prefect_server.sh start    # returns once the API answers (or fails after the timeout)
#   bash scripts/prefect_server.sh status   # exit 0 running and healthy, 3 not running, 1 running but not answering
#   bash scripts/prefect_server.sh stop     # SIGTERM to the group, SIGKILL after 20 s
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFECT_BIN=${CALLQA_PREFECT_BIN:-$ROOT/.venv/bin/prefect}
PY=${CALLQA_PYTHON:-$ROOT/.venv/bin/python}
CALLQA_HOME=${CALLQA_HOME:-$ROOT/.callqa}
HOME_DIR=${CALLQA_PREFECT_HOME:-$CALLQA_HOME/prefect}
HOST=127.0.0.1
PORT=${CALLQA_PREFECT_PORT:-4200}
START_TIMEOUT=${CALLQA_PREFECT_START_TIMEOUT:-180}
PID_FILE=$HOME_DIR/server.pid
LOG_FILE=$HOME_DIR/server.log
API_URL=http://$HOST:$PORT/api

healthy() {  # the API answers /health within 3 s
  "$PY" - "$API_URL/health" <<'PYEOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
    sys.exit(0 if r.status == 200 else 1)
PYEOF
}

server_pid() {  # prints the pid if the recorded server process is alive
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  local pid
  if pid=$(server_pid); then
    echo "prefect server already running (pid $pid) at $API_URL, database $HOME_DIR/prefect.db"
    return 0
  fi
  mkdir -p "$HOME_DIR"
  echo "starting prefect server at $API_URL (database $HOME_DIR/prefect.db, log $LOG_FILE)"
  # setsid: the server leads its own process group, so `stop` ends it and anything it spawned
  PREFECT_HOME=$HOME_DIR \
  PREFECT_SERVER_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$HOME_DIR/prefect.db" \
  PREFECT_SERVER_ANALYTICS_ENABLED=false \
  env -u PREFECT_API_URL setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PID_FILE" \
    "$PREFECT_BIN" server start --host "$HOST" --port "$PORT" >>"$LOG_FILE" 2>&1 </dev/null &
  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! pid=$(server_pid); then
      sleep 0.5  # the pid file may not be written yet
      if ! server_pid >/dev/null; then
        echo "prefect server exited during start-up; last lines of $LOG_FILE:" >&2
        tail -n 20 "$LOG_FILE" >&2
        return 1
      fi
    fi
    if healthy; then
      echo "prefect server running (pid $(server_pid)); point callqa at it with:"
      echo "  export PREFECT_API_URL=$API_URL"
      return 0
    fi
    sleep 1
  done
  echo "prefect server did not answer within ${START_TIMEOUT} s; stopping it (see $LOG_FILE)" >&2
  stop >&2
  return 1
}

stop() {
  local pid
  if ! pid=$(server_pid); then
    echo "prefect server not running"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "prefect server (pid $pid) still running after 20 s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  echo "prefect server stopped (pid $pid)"
}

status() {
  local pid
  if ! pid=$(server_pid); then
    echo "prefect server not running (database $HOME_DIR/prefect.db)"
    return 3
  fi
  if healthy; then
    echo "prefect server running (pid $pid) at $API_URL, database $HOME_DIR/prefect.db"
    return 0
  fi
  echo "prefect server process $pid is alive but $API_URL/health does not answer (see $LOG_FILE)"
  return 1
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
