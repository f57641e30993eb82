#!/bin/sh
# Installs what the tus-js-client conformance test (tests/hub/test_tus_clients.py) runs: the npm packages pinned
# in tests/tus_js/package-lock.json, into tests/tus_js/node_modules (project-local; nothing global), with
# `npm ci` from the registry npm is configured for. Needs the machine's node and npm (Debian: apt-get install
# nodejs npm). Idempotent: does nothing when node_modules already matches the lock file.
set -eu

DIR="$(dirname "$0")/tus_js"
STAMP="$DIR/node_modules/.package-lock.json"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "npm_setup: node and npm are needed for the tus-js-client test; on Debian, as root:" >&2
    echo "  apt-get update && apt-get install -y nodejs npm" >&2
    exit 1
fi

if [ -f "$STAMP" ] && [ "$STAMP" -nt "$DIR/package-lock.json" ]; then
    exit 0
fi

echo "npm_setup: installing tests/tus_js's packages (node $(node --version)) with npm ci" >&2
npm ci --prefix "$DIR" --no-audit --no-fund --loglevel=error
