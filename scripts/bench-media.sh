#!/usr/bin/env bash
# The media benchmark (release build): CPU time per frame of every codec at every
# simulcast size, then microphone-to-speaker latency across two bots through the
# server on PulseAudio virtual devices, then what sharing a 1920x1080 screen of an
# Xvfb costs through xcap and through Confer's share. Prints three tables; see the README's
# "Media benchmark" section for how to read them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -q -p confer-server -p confer-cli
cargo build --release --locked -q -p confer-e2e --bin latency-bench
cargo run --release --locked -q -p confer-media --example codec_bench -- "$@"
"$target/release/latency-bench" --seconds "${LATENCY_SECONDS:-20}" 2>/dev/null
# A display of our own, whatever DISPLAY says: the screen's size is part of the result.
display_file=$(mktemp)
Xvfb -displayfd 9 -screen 0 1920x1080x24 -nolisten tcp 9>"$display_file" 2>/dev/null &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -f "$display_file"' EXIT
for _ in $(seq 100); do [[ -s $display_file ]] && break; sleep 0.1; done
DISPLAY=":$(head -n1 "$display_file")" WAYLAND_DISPLAY='' XDG_SESSION_TYPE=x11 cargo run --release --locked -q -p confer-media --example screen_bench
