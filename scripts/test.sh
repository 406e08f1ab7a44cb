#!/usr/bin/env bash
# Runs every test of Confer on a fresh Debian/Ubuntu machine (installing what it needs
# first): unit and integration tests of every crate, the end-to-end tests with the real
# binaries, and the desktop app's headless smoke test. Prints a total at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export CARGO_TERM_COLOR=never
# The PostgreSQL store's and the Redis registry's tests fail, rather than skip, when
# PostgreSQL or redis-server is missing.
export CONFER_TEST_POSTGRES=require
export CONFER_TEST_REDIS=require
# A test run builds once: incremental caches would only double the target's size on disk.
export CARGO_INCREMENTAL=0
target="${CARGO_TARGET_DIR:-$PWD/target}"
artifacts="${ARTIFACTS_DIR:-$PWD/test-artifacts}"
mkdir -p "$artifacts"
log="$artifacts/cargo-test.log"
# One line per check that is not a cargo test: `1 passed` or `1 failed`.
: >"$artifacts/verdicts.log"

# Every cargo step below selects the same packages and features (the whole workspace,
# the app with its built UI), so cargo resolves features once and every crate is
# compiled once. Selecting a subset (`-p confer-server`, `-p confer`) resolves features
# anew and compiles a third of the dependency tree again, C libraries included.
cargo_all=(--locked --workspace --features confer/custom-protocol)
started=$SECONDS
section() { echo "== $1 (at $((SECONDS - started)) s)"; }

section "build: every crate, binary and test"
# The end-to-end tests run the real binaries (the server, the CLI, the app): all built
# here, with the tests, in one resolution.
cargo build "${cargo_all[@]}" --all-targets 2>&1 | tail -n 1
bash scripts/link-bins.sh

section "cargo test (server, client SDK, CLI, app, end-to-end)"
status=0
cargo test "${cargo_all[@]}" --no-fail-fast 2>&1 | tee "$log" || status=$?

# Bots coming and going for three minutes: the server's memory, descriptors and logs.
section "soak (3 minutes)"
soak="$artifacts/soak.log"
if CONFER_BIN_DIR="$target/debug" SOAK_OUT="$artifacts/soak" bash scripts/soak.sh 3 2>&1 | tee "$soak"; then
  echo "1 passed" >>"$artifacts/verdicts.log"
else
  echo "1 failed" >>"$artifacts/verdicts.log"
  status=1
fi

section "desktop app: headless smoke test"
smoke="$artifacts/app-smoke.log"
app_status=0
ARTIFACTS_DIR="$artifacts" bash tests/app-smoke.sh "$target/debug/confer" 2>&1 | tee "$smoke" || app_status=$?
# The app driven through its window (tauri-driver): joining, video tiles, mute, chat,
# leave, kick. Ignored by the plain cargo test above, as it needs the app built.
section "desktop app: end-to-end through the window"
CONFER_APP="$target/debug/confer" ARTIFACTS_DIR="$artifacts" \
  cargo test "${cargo_all[@]}" --test e2e -- --ignored --test-threads=1 app_ui:: 2>&1 | tee -a "$log" || status=$?
section "desktop app: the Debian package (Tauri bundler)"
deb="$artifacts/deb-check.log"
ARTIFACTS_DIR="$artifacts" bash tests/deb-check.sh 2>&1 | tee "$deb" || app_status=$?

# What the tools enforce: formatting, clippy's lints as errors (the workspace's own in
# Cargo.toml included), the UI's types, and the UI's pure modules' tests (its layout).
section "hygiene: rustfmt, clippy, the UI's type check and tests"
hygiene="$artifacts/hygiene.log"
: >"$hygiene"
for check in "cargo fmt --all --check" \
  "cargo clippy ${cargo_all[*]} --all-targets -- -D warnings" \
  "npm --prefix ui run typecheck --silent" \
  "npm --prefix ui test --silent"; do
  if $check >>"$hygiene" 2>&1; then
    echo "hygiene: ok: $check"
    echo "1 passed" >>"$artifacts/verdicts.log"
  else
    echo "hygiene: FAILED: $check (see $hygiene)"
    echo "1 failed" >>"$artifacts/verdicts.log"
    status=1
  fi
done

passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
for extra in "$smoke" "$deb"; do
  passed=$((passed + $(grep -Eo '[0-9]+ passed' "$extra" | tail -n1 | grep -Eo '[0-9]+' || echo 0)))
  failed=$((failed + $(grep -Eo '[0-9]+ failed' "$extra" | tail -n1 | grep -Eo '[0-9]+' || echo 0)))
done
passed=$((passed + $(grep -c '^1 passed$' "$artifacts/verdicts.log" || true)))
failed=$((failed + $(grep -c '^1 failed$' "$artifacts/verdicts.log" || true)))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$app_status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "total: $passed passed, $failed failed (in $((SECONDS - started)) s)"
[ "$failed" -eq 0 ]
