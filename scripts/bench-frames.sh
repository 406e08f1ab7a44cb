#!/usr/bin/env bash
# The frame-transport benchmark: the desktop app, in a real window under Xvfb, pushes
# 1 x 720p30 and 4 x 360p30 synthetic tiles into its own web view and prints, per
# tile, the frames per second delivered and drawn and the capture-to-draw latency,
# then the CPU and resident memory of its whole process tree (web view included).
#   scripts/bench-frames.sh [SECONDS]          (default 10; see the README)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
bash scripts/setup.sh >/dev/null
target="${CARGO_TARGET_DIR:-$PWD/target}"
# The dev profile: dependencies (and confer-media) are optimized in it already, and
# it is the build the test suite makes, so the benchmark needs no second build.
cargo build --locked -q -p confer --features custom-protocol
workdir=$(mktemp -d)
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$workdir/display" 2>/dev/null &
xvfb_pid=$!
trap 'kill $xvfb_pid 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 50); do [ -s "$workdir/display" ] && break; sleep 0.1; done
export DISPLAY=":$(cat "$workdir/display")" WEBKIT_DISABLE_COMPOSITING_MODE=1
CONFER_BENCH_FRAMES="$seconds" timeout $((seconds + 60)) dbus-run-session -- "$target/debug/confer" 2>"$workdir/app.log" ||
  { echo "bench-frames: the app failed:" >&2; tail -n 20 "$workdir/app.log" >&2; exit 1; }
