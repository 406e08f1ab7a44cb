#!/usr/bin/env bash
# The SFU benchmark (release build): the same load, from `confer-cli load`, against
# confer-server and against Janus's VideoRoom (Debian's `janus`, started here with a
# config of its own), printed side by side; then the cost per packet of both as one room
# grows, and Confer's workers.
#
#   bash scripts/bench-sfu.sh                 # about 40 minutes
#   DURATION=10 SIZES="4 25 50" REPEAT=1 bash scripts/bench-sfu.sh
#   SECTIONS="3b" bash scripts/bench-sfu.sh    # some of the sections: 1 2 3 3b 4 5 6
#
# CPU is the server process's user+system time (/proc/PID/stat) in the steady state
# (from 3 s after the last join to the end), divided by the packets its subscribers
# received then (the same count for both servers). The load tool runs on the same
# machine and takes cores too; its own work per packet is about the server's (SRTP), so
# the servers are compared at the same load, never at saturation.
# The curve is measured twice: one room of N, and as many rooms of N as make about 100
# participants, so that the server carries about the same load at each N.
# Worker capacity is projected from each worker thread's CPU time
# (`confer_sfu_cpu_seconds`): packets sent per CPU second, summed over workers. The load
# tool takes the same two cores, so a worker's wall-clock busy time
# (`confer_sfu_busy_seconds`, printed beside it) also counts the time it waited for one.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
if ! command -v janus >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -q janus >/dev/null
fi
cargo build --release --locked -q -p confer-server -p confer-cli
server_bin="$target/release/confer-server"
cli="$target/release/confer-cli"
DURATION="${DURATION:-20}"
# Runs of each server in section 1, whose median is compared.
REPEAT="${REPEAT:-3}"
SIZES="${SIZES:-4 10 25 50 100}"
SECTIONS="${SECTIONS:-1 2 3 3b 4 5 6}"
# Janus gathers candidates on real interfaces only (not loopback): media for both
# servers goes over this machine's first address, delivered locally all the same.
ip="${MEDIA_IP:-$(hostname -I | awk '{print $1}')}"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

confer_up() { # workers
  "$server_bin" --http-addr 127.0.0.1:17980 --udp-addr "$ip:17982" --no-ice-tcp --db :memory: \
    --api-key bench --api-secret bench-secret --metrics-addr 127.0.0.1:17981 --sfu-workers "$1" \
    --max-connections-per-ip 0 >"$work/confer.log" 2>&1 &
  pid=$!
  url=http://127.0.0.1:17980
  for _ in $(seq 50); do curl -sf "$url/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "confer-server did not start" >&2; cat "$work/confer.log" >&2; exit 1
}

janus_up() {
  local d="$work/janus" lib=/usr/lib/x86_64-linux-gnu/janus
  [ -d "$lib" ] || lib="$(dirname "$(find /usr/lib -name libjanus_videoroom.so | head -1)")/.."
  mkdir -p "$d"/{conf,plugins,transports,events,loggers}
  ln -sf "$lib/plugins/libjanus_videoroom.so" "$d/plugins/"
  ln -sf "$lib/transports/libjanus_websockets.so" "$d/transports/"
  cat >"$d/conf/janus.jcfg" <<EOF
general: { configs_folder = "$d/conf" plugins_folder = "$d/plugins" transports_folder = "$d/transports"
  events_folder = "$d/events" loggers_folder = "$d/loggers" debug_level = 2 }
media: { rtp_port_range = "30000-40000" }
nat: { ice_enforce_list = "$ip" }
EOF
  echo 'general: { json = "compact" ws = true ws_port = 18188 ws_ip = "127.0.0.1" wss = false } admin: { admin_ws = false }' \
    >"$d/conf/janus.transport.websockets.jcfg"
  echo 'general: { }' >"$d/conf/janus.plugin.videoroom.jcfg"
  janus -F "$d/conf" -C "$d/conf/janus.jcfg" -o >"$work/janus.log" 2>&1 &
  pid=$!
  url=ws://127.0.0.1:18188
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18188) 2>/dev/null && return 0; sleep 0.1; done
  echo "janus did not start" >&2; cat "$work/janus.log" >&2; exit 1
}

down() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }

# load TARGET ARGS...: one run; prints
#   packets/s loss% p95_ms us_per_packet failures join_p50_ms first_frame_p50_ms
# where packets/s and us/packet are the steady state's (after the last join has
# settled, before anyone leaves), the CPU read from /proc by the load tool itself.
load() {
  local target="$1"; shift
  local out
  out="$("$cli" --url "$url" --api-key bench --api-secret bench-secret load --target "$target" --media-ip "$ip" \
    --json --duration "$DURATION" --join-rate 50 --server-pid "$pid" "$@")" || true
  python3 - "$out" <<'EOF'
import json, sys
try:
    s = json.loads(sys.argv[1])
except ValueError:
    print("0 100 0 0 all 0 0"); sys.exit()
st = s["steady"]
us = st["server_cpu_us_per_packet"] or 0
print(f'{st["packets_per_second"]:.0f} {s["loss"]*100:.2f} {s["latency_ms"]["p95"]:.1f} {us:.1f} '
      f'{s["failures"]} {s["join_ms"]["p50"]:.0f} {s["first_frame_ms"]["p50"]:.0f}')
EOF
}

row() { printf '%-30s %14s %14s\n' "$@"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

section_1() {
  echo "== 1. side by side: one room, 1 publisher (640x360@30 + audio) and N-1 viewers; media via $ip"
  echo "   (each server $REPEAT times in turn; CPU is the median run's, the others listed; the other rows are the first run's)"
  for n in 10 50; do
    c_runs=(); j_runs=()
    for r in $(seq "$REPEAT"); do
      confer_up 1
      read -r pps loss p95 us fail join ff < <(load confer --publishers 1 --subscribers $((n - 1)) --audio --quality high)
      c_runs+=("$us")
      [ "$r" = 1 ] && { c_pps=$pps c_loss=$loss c_p95=$p95 c_fail=$fail c_join=$join c_ff=$ff c_rss="$(rss_mib)"; }
      down
      janus_up
      read -r pps loss p95 us fail join ff < <(load janus --publishers 1 --subscribers $((n - 1)) --audio --quality high)
      j_runs+=("$us")
      [ "$r" = 1 ] && { j_pps=$pps j_loss=$loss j_p95=$p95 j_fail=$fail j_join=$join j_ff=$ff j_rss="$(rss_mib)"; }
      down
    done
    c_us="$(median "${c_runs[@]}")"; j_us="$(median "${j_runs[@]}")"
    echo
    row "$n participants" "confer (1 wkr)" janus
    row "CPU us per forwarded packet" "$c_us" "$j_us"
    row "  each run" "${c_runs[*]}" "${j_runs[*]}"
    row "  confer / janus (medians)" "$(python3 -c "print(f'{$c_us / max($j_us, 1e-9):.2f}')")" ""
    row "packets/s received" "$c_pps" "$j_pps"
    row "loss %" "$c_loss" "$j_loss"
    row "delay p95 ms" "$c_p95" "$j_p95"
    row "join p50 ms" "$c_join" "$j_join"
    row "first frame p50 ms" "$c_ff" "$j_ff"
    row "failures" "$c_fail" "$j_fail"
    row "peak RSS MiB" "$c_rss" "$j_rss"
  done
}

section_2() {
  echo "== 2. the largest room with <= 1 % loss and p95 < 100 ms (3 simulcast publishers, viewers at medium)"
  for server in confer janus; do
    largest=0
    for n in 10 25 50 75 100; do
      if [ "$server" = confer ]; then confer_up "$(nproc)"; else janus_up; fi
      read -r pps loss p95 us fail join ff < <(load "$server" --publishers 3 --subscribers $((n - 3)) --simulcast --audio --quality medium)
      down
      ok=no
      if python3 -c "import sys; sys.exit(0 if float('$loss') <= 1 and float('$p95') < 100 and '$fail' == '0' else 1)"; then
        ok=yes; largest=$n
      fi
      printf '%-7s %4s participants: %8s packets/s, loss %6s %%, p95 %7s ms, %3s us/packet, %s failures -> %s\n' \
        "$server" "$n" "$pps" "$loss" "$p95" "$us" "$fail" "$ok"
    done
    echo "$server: largest room within bounds: $largest participants"
  done
}

# spread VALUES...: the highest over the lowest (flat within 20 %: at most 1.20).
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f", hi / (lo > 0 ? lo : 1e-9)}'; }

# curve one|equal: Confer's and Janus's cost per packet at each room size N, in one room
# of N or in as many rooms of N as make about 100 participants; each server REPEAT times
# in turn, their medians compared, every run listed (the other columns are the first
# run's); then the spread of each server's medians.
curve() {
  local mode=$1 n r rooms pps loss p95 us fail join ff j_us c_us c_med=() j_med=()
  printf '%-13s %5s %10s %6s %7s %8s %7s %11s %9s %-17s %9s %s\n' participants rooms packets/s loss% p95_ms failures join_ms first_frame \
    'confer us' '(runs)' 'janus us' '(runs)'
  for n in $SIZES; do
    rooms=1
    if [ "$mode" = equal ]; then rooms=$(((100 + n / 2) / n)); fi
    local c_runs=() j_runs=() first=()
    for r in $(seq "$REPEAT"); do
      confer_up 1
      read -r pps loss p95 us fail join ff < <(load confer --rooms "$rooms" --publishers 1 --subscribers $((n - 1)) --audio --quality high)
      c_runs+=("$us")
      [ "$r" = 1 ] && first=("$pps" "$loss" "$p95" "$fail" "$join" "$ff")
      down
      janus_up
      read -r _ _ _ j_us _ _ _ < <(load janus --rooms "$rooms" --publishers 1 --subscribers $((n - 1)) --audio --quality high)
      j_runs+=("$j_us")
      down
    done
    c_us="$(median "${c_runs[@]}")"; j_us="$(median "${j_runs[@]}")"
    c_med+=("$c_us"); j_med+=("$j_us")
    printf '%-13s %5s %10s %6s %7s %8s %7s %11s %9s %-17s %9s %s\n' "$n" "$rooms" "${first[@]}" \
      "$c_us" "(${c_runs[*]})" "$j_us" "(${j_runs[*]})"
  done
  echo "highest / lowest cost per packet over N = $SIZES: confer $(spread "${c_med[@]}"), janus $(spread "${j_med[@]}")"
}

section_3() {
  echo "== 3. cost per forwarded packet as one room grows (1 publisher + audio; Confer on one worker)"
  echo "   (each server $REPEAT times in turn at each size; the medians compared)"
  curve one
}

section_3b() {
  echo "== 3b. the same rooms at the same load: as many rooms of N as make about 100 participants"
  echo "   (a lone room of 4 leaves the server idle between packets, and every packet pays for a wake-up)"
  curve equal
}

section_4() {
  echo "== 4. Confer's workers: rooms of 1 publisher + 4 viewers; ten rooms in all, then five rooms per worker"
  echo "   (a worker with less to do wakes as often for fewer packets; the second pair loads each worker alike)"
  printf '%-8s %6s %10s %7s %10s %22s %22s\n' workers rooms packets/s loss% us/packet 'capacity by CPU time' 'by busy wall time'
  for run in "1 10" "$(nproc) 10" "1 5" "$(nproc) $((5 * $(nproc)))"; do
    read -r w rooms <<<"$run"
    confer_up "$w"
    read -r pps loss p95 us fail join ff < <(load confer --rooms "$rooms" --publishers 1 --subscribers 4 --audio --quality high)
    read -r cap_cpu cap_busy < <(curl -s http://127.0.0.1:17981/metrics | python3 -c '
import re, sys
sent, cpu, busy = {}, {}, {}
for line in sys.stdin:
    m = re.match(r"confer_sfu_(packets_sent|cpu_seconds|busy_seconds)_total\{worker=\"(\d+)\"\} (\S+)", line)
    if m:
        {"packets_sent": sent, "cpu_seconds": cpu, "busy_seconds": busy}[m[1]][m[2]] = float(m[3])
def capacity(spent):
    return int(sum(sent[w] / max(spent.get(w, 0), 1e-9) for w in sent if sent[w] > 0))
print(capacity(cpu), capacity(busy))
')
    down
    printf '%-8s %6s %10s %7s %10s %22s %22s\n' "$w" "$rooms" "$pps" "$loss" "$us" "$cap_cpu" "$cap_busy"
  done
}

section_5() {
  echo "== 5. join to first decoded picture on loopback (a publishing bot; viewers join one at a time)"
  confer_up 1
  room="$("$cli" --url "$url" --api-key bench --api-secret bench-secret room create --name first-frame | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  token() { "$cli" --url "$url" --api-key bench --api-secret bench-secret token create --room "$room" --identity "$1"; }
  "$cli" --url "$url" bot --token "$(token publisher)" --publish --duration 120 >"$work/publisher.log" 2>&1 &
  publisher=$!
  sleep 3
  bot_ms=()
  for i in 1 2 3 4 5; do
    "$cli" --url "$url" bot --token "$(token "bot-$i")" --duration 3 --report "$work/bot.json" >/dev/null 2>&1 || true
    bot_ms+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("first_frame_ms"))' "$work/bot.json" 2>/dev/null || echo None)")
  done
  echo "confer-cli bot:  ${bot_ms[*]} ms"
  if [ -d tests/browser/node_modules ] && command -v node >/dev/null && [ -x /usr/bin/chromium ]; then
    # Joining as the browser starts and the page loads, the join competes with Chromium's
    # own start-up (its answer takes twice as long); a person joins from a page that
    # has been up a while (the pre-join screen). Both are shown.
    for after in 0 1000; do
      chromium_ms=()
      for i in 1 2 3 4 5; do
        node tests/browser/run.mjs --url "$url" --token "$(token "chromium-$after-$i")" --seconds 3 --publish 0 \
          --join-after "$after" --out "$work/chromium.json" >/dev/null 2>&1 || true
        chromium_ms+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("first_frame_ms"))' "$work/chromium.json" 2>/dev/null || echo None)")
      done
      if [ "$after" = 0 ]; then when="joining as the page loads"; else when="joining ${after} ms after the page loaded"; fi
      echo "Chromium (tests/browser, following docs/protocol.md), $when: ${chromium_ms[*]} ms"
    done
  else
    echo "Chromium: skipped (needs node, tests/browser/node_modules and /usr/bin/chromium: bash scripts/setup.sh)"
  fi
  kill "$publisher" 2>/dev/null || true
  down
}

section_6() {
  echo "== 6. the SFU's core alone: the worker's own time per forwarded packet, in one room of N and in rooms of N"
  echo "   making about 100 participants (1 publisher each); virtual time, str0m clients stepped beside it: no"
  echo "   sockets, threads or kernel. What sections 3 and 3b add to this is system calls and the thread's wake-ups."
  SIZES="$SIZES" cargo test --release --locked -q -p confer-server --lib core_cost -- --ignored --nocapture 2>&1 |
    sed -n '/^participants/,/^highest/p'
}

for s in $SECTIONS; do
  echo
  "section_$s"
done
