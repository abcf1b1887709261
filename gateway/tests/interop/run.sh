#!/usr/bin/env bash
# Interoperability test: an independent Python client (gateway/examples/trade.py, written from
# docs/API.md) against the real `kinko serve` on a fresh data folder and a free loopback port,
# over TLS as `kinko serve` runs by default: wss:// and https://, trusting the certificate the
# server generated in its data folder (DATA/tls/cert.pem) and nothing else.
#
#   bash gateway/tests/interop/run.sh
#
# It installs the `websockets` package if it is missing, builds the server, starts it, waits for
# /health, runs the client, and stops the server with SIGTERM. The server must exit 0 (it writes a
# snapshot on the way out). The script exits with the client's status, or 1 if the server did not
# stop cleanly.
#
# Environment:
#   KINKO_PROFILE=release|debug   build profile (default: release)
#   KINKO_BIN=/path/to/kinko      use this binary, do not build
#   PYTHON=python3                the Python interpreter
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-python3}"
profile="${KINKO_PROFILE:-release}"

log() { printf 'interop: %s\n' "$*" >&2; }

# --- Python dependency ----------------------------------------------------------------------
if ! "$python" -c 'import websockets' 2>/dev/null; then
    log "installing the Python dependency (websockets)"
    requirements="$here/requirements.txt"
    # A distribution's own Python may refuse system-wide installs (PEP 668): fall back to the
    # user's site-packages.
    "$python" -m pip install --quiet -r "$requirements" \
        || "$python" -m pip install --quiet --user -r "$requirements" \
        || "$python" -m pip install --quiet --user --break-system-packages -r "$requirements"
fi
log "websockets $("$python" -c 'import websockets; print(websockets.__version__)')"

# --- Build ----------------------------------------------------------------------------------
if [[ -n "${KINKO_BIN:-}" ]]; then
    bin="$KINKO_BIN"
else
    cd "$root"
    if [[ "$profile" == "release" ]]; then
        log "building kinko (release)"
        cargo build --release --quiet -p kinko-gateway --bin kinko
        bin="${CARGO_TARGET_DIR:-$root/target}/release/kinko"
    else
        log "building kinko (debug)"
        cargo build --quiet -p kinko-gateway --bin kinko
        bin="${CARGO_TARGET_DIR:-$root/target}/debug/kinko"
    fi
fi
[[ -x "$bin" ]] || { log "no server binary at $bin"; exit 1; }

# --- Start the server on a fresh data folder and a free port --------------------------------
data="$(mktemp -d "${TMPDIR:-/tmp}/kinko-interop.XXXXXX")"
server_log="$data.log"
server_pid=""
client_pid=""

cleanup() {
    local status=$?
    if [[ -n "$client_pid" ]] && kill -0 "$client_pid" 2>/dev/null; then
        kill -TERM "$client_pid" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        log "stopping the server (pid $server_pid) after a failure"
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$server_log" ]]; then
        log "server log (last 30 lines):"
        tail -n 30 "$server_log" >&2 || true
    fi
    rm -rf "$data" "$server_log"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port the kernel says is free now. Another process could take it before the server binds, so
# the start is retried with a new port.
free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

healthy() {
    "$python" - "$1" "$2" <<'EOF'
import json, ssl, sys, urllib.request
try:
    # The certificate is written before the server listens: no file yet, not up yet.
    context = ssl.create_default_context(cafile=sys.argv[2])
    with urllib.request.urlopen(f"https://{sys.argv[1]}/health", timeout=1, context=context) as r:
        sys.exit(0 if json.load(r).get("status") == "ok" else 1)
except Exception:
    sys.exit(1)
EOF
}

addr=""
for attempt in 1 2 3; do
    port="$(free_port)"
    addr="127.0.0.1:$port"
    log "starting $bin serve --data $data --http $addr"
    RUST_LOG="${RUST_LOG:-info}" "$bin" serve --data "$data" --http "$addr" --fix "127.0.0.1:0" \
        >"$server_log" 2>&1 &
    server_pid=$!
    up=""
    for _ in $(seq 1 300); do  # up to 30 s
        if ! kill -0 "$server_pid" 2>/dev/null; then
            break
        fi
        if healthy "$addr" "$data/tls/cert.pem"; then
            up=1
            break
        fi
        sleep 0.1
    done
    if [[ -n "$up" ]]; then
        break
    fi
    log "the server did not come up on $addr (attempt $attempt)"
    tail -n 20 "$server_log" >&2 || true
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    rm -rf "$data"
    mkdir -p "$data"
done
if [[ -z "$server_pid" ]]; then
    log "could not start the server"
    exit 1
fi
log "server is up on $addr (pid $server_pid)"

# --- Run the client --------------------------------------------------------------------------
# In the background so that a signal to this script is handled at once (the trap stops both).
"$python" "$root/gateway/examples/trade.py" "wss://$addr/ws" --ca "$data/tls/cert.pem" &
client_pid=$!
set +e
wait "$client_pid"
client_status=$?
set -e
client_pid=""

# --- Stop the server cleanly -----------------------------------------------------------------
log "stopping the server with SIGTERM"
kill -TERM "$server_pid"
server_status=""
for _ in $(seq 1 300); do  # up to 30 s to drain and write the snapshot
    if ! kill -0 "$server_pid" 2>/dev/null; then
        set +e
        wait "$server_pid"
        server_status=$?
        set -e
        break
    fi
    sleep 0.1
done
if [[ -z "$server_status" ]]; then
    log "the server did not stop within 30 s of SIGTERM"
    exit 1  # the trap kills it
fi
server_pid=""
if [[ "$server_status" -ne 0 ]]; then
    log "the server exited with status $server_status after SIGTERM"
    tail -n 30 "$server_log" >&2 || true
    exit 1
fi
if ! grep -q "stopped cleanly" "$server_log"; then
    log "the server exited 0 but did not report a clean stop"
    tail -n 30 "$server_log" >&2 || true
    exit 1
fi
log "server stopped cleanly: $(grep 'stopped cleanly' "$server_log")"

if [[ "$client_status" -ne 0 ]]; then
    log "trade.py failed (status $client_status)"
    exit "$client_status"
fi
log "passed"
exit 0
