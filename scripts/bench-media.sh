#!/usr/bin/env bash
# The media benchmark (release build): CPU time per frame of every codec at every
# simulcast size, then microphone-to-speaker latency across two bots through the
# server on PulseAudio virtual devices. Prints two tables; see the README's
# "Media benchmark" section for how to read them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -q -p confer-server -p confer-cli
cargo build --release --locked -q -p confer-e2e --bin latency-bench
cargo run --release --locked -q -p confer-media --example codec_bench -- "$@"
"$target/release/latency-bench" --seconds "${LATENCY_SECONDS:-20}" 2>/dev/null
