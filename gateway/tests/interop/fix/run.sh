#!/usr/bin/env bash
# QuickFIX interop: the QuickFIX C++ engine (the `quickfix-py` wheel from PyPI) as an initiator
# against `kinko serve`, with a WebSocket trader on the other side of its orders. Installs what it
# needs into a fresh virtualenv, starts the server on free loopback ports with a fresh data folder,
# stops it with SIGTERM at the end (or on failure), and exits with the client's verdict.
#
#   bash gateway/tests/interop/fix/run.sh
#
# Environment:
#   KINKO_PROFILE=release|debug   build profile (default: release; CI has built it already)
#   KINKO_BIN=/path/to/kinko      use this binary, do not build
#   KINKO_INTEROP_VENV=DIR        reuse a virtualenv between runs
# The server must stop cleanly (exit 0) on SIGTERM.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
work="$(mktemp -d)"
server_pid=""

cleanup() {
    status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        server_status=0
        wait "$server_pid" || server_status=$?
        if [ "$server_status" -ne 0 ]; then
            echo "kinko serve exited with $server_status after SIGTERM"
            [ "$status" -ne 0 ] || status=1
        fi
    fi
    if [ "$status" -ne 0 ] && [ -f "$work/kinko.log" ]; then
        echo "== kinko serve log (last 40 lines)"
        tail -n 40 "$work/kinko.log"
        for log in "$work"/qf/log/*.messages.current.log; do
            [ -f "$log" ] && { echo "== $log"; tr '\001' '|' < "$log" | tail -n 40; }
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

venv="${KINKO_INTEROP_VENV:-$work/venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "quickfix-py==0.0.3" "websockets>=12"

target="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${KINKO_BIN:-}" ]; then
    bin="$KINKO_BIN"
elif [ "${KINKO_PROFILE:-release}" = "release" ]; then
    echo "== building kinko (release)"
    (cd "$root" && cargo build --release --quiet -p kinko-gateway --bin kinko)
    bin="$target/release/kinko"
else
    echo "== building kinko (debug)"
    (cd "$root" && cargo build --quiet -p kinko-gateway --bin kinko)
    bin="$target/debug/kinko"
fi
[ -x "$bin" ] || { echo "no server binary at $bin"; exit 1; }

free_port() {
    "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
http_port="$(free_port)"
fix_port="$(free_port)"
while [ "$fix_port" = "$http_port" ]; do fix_port="$(free_port)"; done

# In plain TCP (--plaintext), on purpose: QuickFIX's TLS initiator (SSLSocketInitiator) exists
# only in builds with OpenSSL, which the `quickfix-py` wheel does not promise. What this test
# checks is the FIX 4.4 session and application layer against an independent engine, which TLS
# does not change (the acceptor hands the same bytes to the same session code); FIX over TLS has
# its own test in gateway/tests/tls.rs.
echo "== kinko serve (HTTP $http_port, FIX $fix_port, plaintext)"
"$bin" serve --data "$work/data" --http "127.0.0.1:$http_port" \
    --fix "127.0.0.1:$fix_port" --plaintext > "$work/kinko.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $fix_port), 0.2)" 2>/dev/null; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "kinko serve exited"; exit 1; }
    sleep 0.1
done

echo "== QuickFIX initiator"
"$venv/bin/python" "$here/client.py" --fix-port "$fix_port" --http-port "$http_port" --store "$work/qf"
# QuickFIX validates everything Kinko sends against its own FIX44.xml and answers anything it
# finds wrong with a Reject(3), which the server logs: there must be none.
if grep -q "the client rejected" "$work/kinko.log"; then
    echo "QuickFIX rejected messages from Kinko:"
    grep "the client rejected" "$work/kinko.log"
    exit 1
fi
