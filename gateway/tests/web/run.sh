#!/usr/bin/env bash
# Browser tests of the web pages: Playwright (the npm package playwright-core) driving Debian's
# Chromium against the real `kinko serve` over TLS (web.test.mjs starts it on a free loopback port
# and the browser accepts its self-signed certificate).
#
#   bash gateway/tests/web/run.sh
#
# Installs what is missing: Debian's chromium (apt) and playwright-core (npm ci, pinned by
# package-lock.json). Screenshots: target/web-screenshots/*.png.
#
# Environment:
#   KINKO_BIN=/path/to/kinko   use this binary (default: build and use the release binary)
#   CHROMIUM=/usr/bin/chromium the browser
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
log() { printf 'web: %s\n' "$*" >&2; }

if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
    log "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
log "$("${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null || echo chromium)"

cd "$here"
if [[ ! -d node_modules/playwright-core ]]; then
    log "installing playwright-core (npm ci)"
    npm ci --no-audit --no-fund --silent
fi

if [[ -z "${KINKO_BIN:-}" ]]; then
    log "building kinko (release)"
    (cd "$root" && cargo build --release --quiet -p kinko-gateway --bin kinko)
    export KINKO_BIN="${CARGO_TARGET_DIR:-$root/target}/release/kinko"
fi

node --experimental-websocket --test web.test.mjs
log "screenshots in ${CARGO_TARGET_DIR:-$root/target}/web-screenshots"
