#!/usr/bin/env bash
# Headless smoke test of the desktop app: starts it under Xvfb and a session bus, waits
# for its window, takes a screenshot, and checks that the web UI really rendered (the
# page's own background and accent colours fill the window, not a blank web view).
#
#   tests/app-smoke.sh [path/to/confer]     screenshot in $ARTIFACTS_DIR (test-artifacts/)
set -uo pipefail
cd "$(dirname "$0")/.."
app="${1:-${CARGO_TARGET_DIR:-target}/debug/confer}"
artifacts="${ARTIFACTS_DIR:-test-artifacts}"
mkdir -p "$artifacts"
shot="$artifacts/app-home.png"
im_convert=/usr/bin/convert   # ImageMagick's, not a stand-in earlier on PATH

result() {
  echo "app smoke: $1 passed, $2 failed"
  [ "$2" -eq 0 ]
  exit $?
}
fail() {
  echo "app smoke: FAIL: $*" >&2
  result 0 1
}

[ -x "$app" ] || fail "no app binary at $app (cargo build -p confer --features custom-protocol)"

workdir=$(mktemp -d)
cleanup() {
  # The whole group: the app, its session bus and what the bus activated (portals, a11y bus).
  [ -n "${app_pid:-}" ] && kill -- "-$app_pid" 2>/dev/null
  [ -n "${xvfb_pid:-}" ] && kill "$xvfb_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$workdir"
}
trap cleanup EXIT

# Xvfb picks a free display number and writes it to fd 3.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$workdir/display" 2>"$workdir/xvfb.log" &
xvfb_pid=$!
for _ in $(seq 50); do [ -s "$workdir/display" ] && break; sleep 0.1; done
[ -s "$workdir/display" ] || fail "Xvfb did not start: $(cat "$workdir/xvfb.log")"
export DISPLAY=":$(cat "$workdir/display")"
# WebKitGTK draws a blank window under Xvfb with compositing on.
export WEBKIT_DISABLE_COMPOSITING_MODE=1

# In a process group of its own, so that cleanup ends everything it started.
setsid dbus-run-session -- "$app" >"$artifacts/app-smoke-app.log" 2>&1 &
app_pid=$!

window=""
for _ in $(seq 1200); do
  window=$(xdotool search --onlyvisible --name '^Confer$' 2>/dev/null | head -n1)
  [ -n "$window" ] && break
  kill -0 "$app_pid" 2>/dev/null || fail "the app exited early: $(tail -n 20 "$artifacts/app-smoke-app.log")"
  sleep 0.1
done
[ -n "$window" ] || fail "no window named Confer within 120 s"
echo "app smoke: window $window is mapped ${SECONDS} s after the start"

# Give the web view time to load and paint, then look at it.
fraction() { # fraction of the screenshot's pixels within 4% of colour $1
  "$im_convert" "$shot" -alpha off -fuzz 4% -fill white -opaque "$1" -fill black +opaque white -format '%[fx:mean]' info:
}
ok=""
for _ in $(seq 60); do
  sleep 1
  import -window root "$shot" 2>/dev/null || continue
  background=$(fraction '#0f172a')
  accent=$(fraction '#2563eb')
  if awk -v b="$background" -v a="$accent" 'BEGIN { exit !(b > 0.3 && a > 0.002) }'; then
    ok=1
    break
  fi
done
[ -n "$ok" ] || fail "the UI did not render (background ${background:-?}, accent ${accent:-?}); see $shot"
echo "app smoke: UI rendered (background $background, accent $accent); screenshot $shot"
kill -- "-$app_pid" 2>/dev/null
wait "$app_pid" 2>/dev/null
app_pid=""

# Video reaches the real window: the app as the frame benchmark for 3 s must draw
# every tile (the table's "drawn fps" column) through the binary frame path.
bench="$artifacts/app-frames.txt"
CONFER_BENCH_FRAMES=3 timeout 90 dbus-run-session -- "$app" >"$bench" 2>>"$artifacts/app-smoke-app.log" ||
  { echo "app smoke: FAIL: the frame benchmark did not finish; see $bench" >&2; result 1 1; }
drawn=$(awk -F'|' '/\| bench-/ { gsub(/ /, "", $6); print $6 }' "$bench")
tiles=$(echo "$drawn" | grep -c . || true)
slow=$(echo "$drawn" | awk '$1 < 5' | grep -c . || true)
if [ "$tiles" -ne 5 ] || [ "$slow" -ne 0 ]; then
  echo "app smoke: FAIL: tiles not drawn ($tiles tiles, $slow under 5 fps); see $bench" >&2
  result 1 1
fi
echo "app smoke: 5 video tiles drawn in the window: $(echo $drawn) fps"
result 2 0
