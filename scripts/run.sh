#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine: installs what is needed, builds, and
# starts the room server on its embedded default (SQLite in the data directory,
# development credentials generated once and printed, HTTP on 127.0.0.1:7880). When a
# display is present the desktop app opens too. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"

cargo build --locked -p confer-server -p confer-cli
bash scripts/link-bins.sh
if [ -n "${DISPLAY:-}" ]; then
  cargo build --locked -p confer --features custom-protocol
fi

"$target/debug/confer-server" "$@" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT INT TERM

if [ -n "${DISPLAY:-}" ]; then
  "$target/debug/confer" || true
else
  echo "run: no DISPLAY, so only the server runs (Ctrl-C to stop)"
  wait $server
fi
