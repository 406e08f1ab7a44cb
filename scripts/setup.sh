#!/usr/bin/env bash
# Installs everything Confer needs to build, run and test on a fresh Debian/Ubuntu
# machine: system packages, and the UI's npm packages (then builds the UI).
# Idempotent: what is already there is left alone. Needs root or sudo for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # Building
  build-essential pkg-config curl ca-certificates
  # Codecs: libvpx for VP8; cmake builds the bundled libopus
  libvpx-dev cmake
  # Devices: ALSA for cpal; clang for the V4L2 camera bindings (bindgen); X11, GBM,
  # Wayland and PipeWire for screen capture
  libasound2-dev libclang-dev
  libxcb1-dev libxcb-randr0-dev libxcb-shm0-dev libgbm-dev libwayland-dev libpipewire-0.3-dev libspa-0.2-dev
  # Device tests: a sound server with virtual devices, and its tools
  pulseaudio pulseaudio-utils libasound2-plugins
  # The Tauri desktop shell (WebKitGTK and friends)
  libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev
  # Running the app headless in tests: X server, session bus, window tools, screenshots
  xvfb xauth dbus dbus-x11 xdotool x11-utils imagemagick
  # Hands and reactions are emoji: a colour emoji font to draw them
  fonts-noto-color-emoji
  # The app's UI test: WebKitGTK's WebDriver (tauri-driver, below, drives it)
  webkit2gtk-driver
  # Browser interop test: a real Chromium driven by playwright-core
  chromium
  # Real networks in the tests: coturn as the TURN relay, nftables and iproute2 for
  # network namespaces, NAT and firewalls built by each test
  coturn nftables iproute2
  # The shared store (--db postgres://...): the tests start throwaway clusters of
  # their own with its binaries, never the system's cluster
  postgresql
  # Cluster state (--redis redis://...): the tests start redis-servers of their own
  redis-server
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) and run again" >&2
  exit 1
fi

# Installs exactly what $1/package-lock.json names. A registry mirror that serves only
# this platform's optional packages (rollup's and esbuild's native binaries) makes
# `npm ci` call the lock out of sync; then `npm install` resolves the same versions
# from it, and the committed lock (which names every platform's packages, as Windows
# and macOS builds need) is put back as it was: setup never changes tracked files.
npm_install() {
  local dir=$1
  if [ -d "$dir/node_modules" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return
  fi
  npm --prefix "$dir" ci --no-audit --no-fund --loglevel=error 2>/dev/null && return
  local saved
  saved=$(mktemp)
  cp "$dir/package-lock.json" "$saved"
  npm --prefix "$dir" install --no-audit --no-fund --loglevel=error
  cp "$saved" "$dir/package-lock.json"
  rm -f "$saved"
}

# The web UI, then ui/dist.
npm_install ui
npm --prefix ui run build --silent >/dev/null

# The browser interop test's driver (playwright-core, no browser download: it drives
# the system Chromium).
npm_install tests/browser
# tauri-driver: the WebDriver server that starts the app for the UI test.
if ! command -v tauri-driver >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ]; then
  echo "setup: installing tauri-driver"
  cargo install tauri-driver --locked --quiet
fi
echo "setup: ready"
