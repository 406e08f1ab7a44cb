#!/usr/bin/env bash
# Puts the built confer-server and confer-cli on PATH by linking them into cargo's bin
# directory (~/.cargo/bin, which rustup puts on PATH), the way `cargo install` would,
# without a second build.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin_dir"
for b in confer-server confer-cli; do
  [ -x "$target/debug/$b" ] && ln -sf "$target/debug/$b" "$bin_dir/$b"
done
echo "linked confer-server and confer-cli into $bin_dir"
