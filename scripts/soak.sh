#!/usr/bin/env bash
# Soak test of confer-server: for MINUTES minutes (default 30; fractions accepted, e.g.
# 0.5 for a smoke run) a room holds 6-8 `confer-cli bot`s that come and go, publish,
# mute, change quality, unpublish and publish again, renew short-lived tokens, and are
# sometimes killed with SIGKILL and come back under the same identity. Every 5 s the
# server's resident memory, open descriptors, threads and ERROR/WARN lines are sampled.
#
# Verdict (exit 0 PASS, 1 FAIL, 2 could not start, 130 interrupted): FAIL on a panic in
# the server's or a bot's log, a server that died, RSS that grew more than 5 % (median
# of the last 20 % of the run against the median of the 20 % after a warm-up of
# max(45 s, 15 % of the run) at peak load), more than 10 open descriptors more once every bot left
# than before the first joined (idle against idle: with bots in, a leak would hide
# behind their sockets), participants left in the room a minute after the last bot, or
# more bots that ended badly (refused, lost, a token that could not be had) than
# SOAK_MAX_BOT_FAILURES (default 0: against a server on this machine, each is a defect;
# bots killed by the plan do not count). The last line is machine-readable:
# `soak: PASS|FAIL rss_baseline_kib=... growth_pct=... ...`.
#
# Uses the binaries already built (never builds): CONFER_BIN_DIR (default target/debug,
# relative to the repository root). Other settings: SOAK_SEED (the same seed gives the
# same bot plans; timing still varies), SOAK_OUT (default a new temporary directory:
# samples.csv, bots.csv, server.log, bots/*.log|err|json, summary.txt), SOAK_SCREEN
# (auto|0|1: bots also share the screen of an Xvfb of our own; auto = when Xvfb is
# installed), SOAK_MIN_BOTS / SOAK_MAX_BOTS (6 / 8), SOAK_WARMUP_S (override the
# warm-up before the RSS baseline).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly SAMPLE_EVERY_S=5 TABLE_EVERY_S=60
readonly MAX_RSS_GROWTH_PCT=5 FD_MARGIN=10
# More identities than bots, so that a killed bot's identity can wait for its comeback
# while others keep the room full.
readonly IDENTITY_POOL=14
# Starting many bots in one second would only measure a CPU spike on 2 cores.
readonly MAX_STARTS_PER_TICK=2
# A vanished participant stays for the server's resume grace (20 s by default) and its
# media peer for the ICE timeouts: the room may take that long to empty at the end.
readonly EMPTY_ROOM_TIMEOUT_S=60
readonly VIDEO=320x176@15 # the bot takes sizes in multiples of 8

# What the soak says goes to fd 3 (the script's stderr), so that a block can silence
# bash's own job reports on fd 2 without hiding it.
exec 3>&2
log() { printf 'soak: %s\n' "$*" >&3; }
die() { log "$*"; exit 2; }

# ---------------------------------------------------------------- settings

parse_minutes() {
  local minutes=${1:-30}
  [[ $minutes =~ ^([0-9]+([.][0-9]*)?|[.][0-9]+)$ ]] || die "MINUTES must be a number, e.g. 30, 3 or 0.5 (got '$minutes')"
  RUN_S=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 0.5 }')
  ((RUN_S >= 10)) || die "a run needs at least 10 seconds (got $minutes minutes)"
}

find_binaries() {
  local dir=${CONFER_BIN_DIR:-target/debug}
  [[ $dir = /* ]] || dir="$PWD/$dir"
  SERVER_BIN="$dir/confer-server"
  CLI_BIN="$dir/confer-cli"
  local missing=0 bin
  for bin in "$SERVER_BIN" "$CLI_BIN"; do
    if [[ ! -x $bin ]]; then
      log "missing binary: $bin"
      missing=1
    fi
  done
  ((missing == 0)) || die "build them first (cargo build -p confer-server -p confer-cli) or point CONFER_BIN_DIR at a directory holding both"
}

# The user's CONFER_* variables (a --config file, TURN relays, another server's URL or
# key) would change what is measured; the server and the CLI get everything by flag.
scrub_environment() {
  local name
  for name in $(compgen -e); do
    case $name in
      CONFER_BIN_DIR | CONFER_LOG) ;;
      CONFER_*) unset "$name" ;;
    esac
  done
}

setup_output() {
  if [[ -n ${SOAK_OUT:-} ]]; then
    OUT=$SOAK_OUT
    mkdir -p "$OUT"
  else
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/confer-soak.XXXXXX")
  fi
  OUT=$(cd "$OUT" && pwd)
  mkdir -p "$OUT/bots"
  SAMPLES="$OUT/samples.csv"
  BOTS_CSV="$OUT/bots.csv"
  SERVER_LOG="$OUT/server.log"
  # rss_anon_kib: the heap's share of rss_kib; the rest is mostly the binary's pages,
  # which grow as new code paths run for the first time.
  echo "time_s,rss_kib,fds,threads,errors,warnings,bots,rss_anon_kib" >"$SAMPLES"
  echo "seq,identity,started_s,ended_s,exit,fate,plan" >"$BOTS_CSV"
}

# ---------------------------------------------------------------- processes

SERVER_PID=""
XVFB_PID=""
declare -A LIVE=() # bot pid -> seq

alive() {
  local state
  read -r _ _ state _ 2>/dev/null <"/proc/$1/stat" || return 1
  # Our own exited children stay as zombies until bash collects them.
  [[ $state != Z ]]
}

# Sends TERM, then KILL after `grace` seconds; returns once the process is gone.
stop_process() {
  local pid=$1 grace=$2 i
  {
    kill -TERM "$pid"
    for ((i = 0; i < grace * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
  } 2>/dev/null || true
  kill_and_collect "$pid" KILL
}

cleanup() {
  local pid
  for pid in "${!LIVE[@]}"; do kill_and_collect "$pid" KILL; done
  LIVE=()
  if [[ -n $SERVER_PID ]]; then stop_process "$SERVER_PID" 5; fi
  if [[ -n $XVFB_PID ]]; then stop_process "$XVFB_PID" 2; fi
  SERVER_PID="" XVFB_PID=""
}

start_server() {
  SERVER_SECRET="soak-$RANDOM$RANDOM$RANDOM"
  # Port 0 everywhere: the server announces what it bound, so nothing can take a
  # probed-free port between the probe and the bind.
  # The file exists before the server's shell opens it: the loop below may read it
  # before the background process has started.
  : >"$OUT/server.out"
  CONFER_LOG=${CONFER_LOG:-info,str0m=error} "$SERVER_BIN" --db "$OUT/server.db" \
    --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0 \
    --api-key soak --api-secret "$SERVER_SECRET" \
    >"$OUT/server.out" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 600; i++)); do # a loaded machine can take its time
    URL=$(sed -n 's/^confer-server listening on //p' "$OUT/server.out")
    [[ -z $URL ]] || break
    alive "$SERVER_PID" || die "confer-server exited at start; see $SERVER_LOG"
    sleep 0.1
  done
  [[ -n $URL ]] || die "confer-server did not report its address within 60 s; see $SERVER_LOG"
  export CONFER_URL=$URL CONFER_API_KEY=soak CONFER_API_SECRET=$SERVER_SECRET
}

create_room() {
  local json
  json=$("$CLI_BIN" room create --name soak) || die "cannot create the room"
  ROOM=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$json")
  [[ -n $ROOM ]] || die "no room id in: $json"
}

# Screen sharing in the bot captures a real display; without one it cannot publish a
# second stream, so an Xvfb of our own stands in (small: the server is under test,
# not the encoder).
start_display() {
  SCREEN=0
  local want=${SOAK_SCREEN:-auto}
  [[ $want != 0 ]] || return 0
  if ! command -v Xvfb >/dev/null; then
    [[ $want == auto ]] || die "SOAK_SCREEN=1 needs Xvfb"
    log "no Xvfb: bots publish no screen stream"
    return 0
  fi
  local display_file="$OUT/xvfb.display" i
  # -displayfd: Xvfb picks a free display itself and says which once it accepts clients.
  Xvfb -displayfd 9 -screen 0 640x360x24 -nolisten tcp 9>"$display_file" 2>"$OUT/xvfb.log" &
  XVFB_PID=$!
  for ((i = 0; i < 200; i++)); do
    [[ ! -s $display_file ]] || break
    sleep 0.1
  done
  [[ -s $display_file ]] || die "Xvfb did not start; see $OUT/xvfb.log"
  DISPLAY=":$(head -n1 "$display_file")"
  export DISPLAY
  SCREEN=1
}

# ---------------------------------------------------------------- bots

# Bot plans come from a generator seeded per bot (seed and sequence number), so the
# n-th bot of a run gets the same plan whatever the timing did to earlier bots.
SEED=${SOAK_SEED:-$((EPOCHSECONDS % 32768))}
R=0
rand() { R=$(($1 + RANDOM % ($2 - $1 + 1))); }
pick() {
  rand 0 $(($# - 1))
  local all=("$@")
  R=${all[$R]}
}

# Per bot, by sequence number.
declare -a B_IDENT=() B_START=() B_CONN=() B_KILL_AFTER=() B_KILLED=() B_COMEBACK=() B_PLAN=()
declare -A BUSY=()      # identity -> 1 while a bot has it or waits to come back with it
declare -A COMEBACK=()  # identity -> time (elapsed s) a killed bot's successor joins
declare -A EXITS=()     # fate -> count
SEQ=0

# Timed actions that stay valid: mute only what is published, unmute only what is
# muted (a refused action would end the bot with status 3 and hide real refusals).
plan_actions() {
  local duration=$1 publishes=$2 t published=1 audio_muted=0 video_muted=0
  ACTIONS=()
  rand 3 8
  t=$R
  while ((t < duration - 2)); do
    rand 0 9
    case $R in
      0 | 1) pick low medium high && ACTIONS+=(--at "$t:quality=$R") ;;
      2) pick audio video both none && ACTIONS+=(--at "$t:receive=$R") ;;
      3 | 4)
        if ((publishes && published)); then
          if ((audio_muted)); then ACTIONS+=(--at "$t:unmute=audio"); else ACTIONS+=(--at "$t:mute=audio"); fi
          audio_muted=$((1 - audio_muted))
        fi
        ;;
      5 | 6)
        if ((publishes && published)); then
          if ((video_muted)); then ACTIONS+=(--at "$t:unmute=video"); else ACTIONS+=(--at "$t:mute=video"); fi
          video_muted=$((1 - video_muted))
        fi
        ;;
      *)
        if ((publishes)); then
          if ((published)); then ACTIONS+=(--at "$t:unpublish"); else ACTIONS+=(--at "$t:publish"); fi
          # A new publication starts unmuted.
          published=$((1 - published)) audio_muted=0 video_muted=0
        fi
        ;;
    esac
    rand 3 10
    t=$((t + R))
  done
}

# Sets PLAN_ARGS (bot flags), PLAN_TTL (0: the server's), PLAN_KILL_AFTER (0: never),
# PLAN_COMEBACK (seconds a killed bot's identity stays away) and PLAN_DESC.
plan_bot() {
  local seq=$1 duration publishes=0 flags=""
  RANDOM=$((SEED * 7919 + seq))
  rand 10 60
  duration=$R
  PLAN_ARGS=(--duration "$duration")
  pick low medium high
  PLAN_ARGS+=(--quality "$R")
  # While warming up, every bot publishes everything but the screen (see `churn`);
  # later, at random. Screens stay at random throughout: a screen is a second encoder
  # in its bot, and the peak is meant to load the server, not the bots' machine.
  local p_pub=65 p_sim=35 p_data=25 p_screen=30
  ((WARMING)) && p_pub=100 p_sim=100 p_data=100
  rand 1 100
  if ((R <= p_pub)); then
    publishes=1 flags=" publish"
    PLAN_ARGS+=(--publish --video "$VIDEO")
    rand 1 100
    if ((R <= p_sim)); then PLAN_ARGS+=(--simulcast) flags+=" simulcast"; fi
    rand 1 100
    if ((R <= p_data)); then PLAN_ARGS+=(--data) flags+=" data"; fi
    rand 1 100
    if ((SCREEN && R <= p_screen)); then PLAN_ARGS+=(--screen 0 --screen-fps 2) flags+=" screen"; fi
  fi
  plan_actions "$duration" "$publishes"
  PLAN_ARGS+=("${ACTIONS[@]}")
  # Short tokens make renewals happen several times per call (at 2/3 of the lifetime).
  rand 1 100
  PLAN_TTL=0
  if ((R <= 35)); then rand 12 30 && PLAN_TTL=$R; fi
  rand 1 100
  PLAN_KILL_AFTER=0
  if ((R <= 20 && duration >= 10)); then rand 5 $((duration - 3)) && PLAN_KILL_AFTER=$R; fi
  # Within the resume grace (20 s) the newcomer replaces the vanished participant;
  # later, the server has had to notice the vanished one by itself.
  rand 1 30
  PLAN_COMEBACK=$R
  PLAN_DESC="${duration}s$flags ttl=${PLAN_TTL} kill=${PLAN_KILL_AFTER} actions=$((${#ACTIONS[@]} / 2))"
}

launch_bot() {
  local identity=$1 now=$2 seq tag json token refresh ttl_args=()
  SEQ=$((SEQ + 1))
  seq=$SEQ
  plan_bot "$seq"
  ((PLAN_TTL == 0)) || ttl_args=(--ttl "$PLAN_TTL")
  if ! json=$("$CLI_BIN" token create --room "$ROOM" --identity "$identity" --json "${ttl_args[@]}" 2>>"$OUT/cli.log"); then
    log "token create for $identity failed (see $OUT/cli.log); trying again later"
    EXITS[token_failed]=$((${EXITS[token_failed]:-0} + 1))
    return 0
  fi
  token=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$json")
  refresh=$(sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' <<<"$json")
  tag=$(printf '%04d-%s' "$seq" "$identity")
  # `--opt=value`: tokens may start with '-'.
  "$CLI_BIN" bot --url "$URL" --room "$ROOM" "--token=$token" "--refresh-token=$refresh" \
    --report "$OUT/bots/$tag.json" "${PLAN_ARGS[@]}" >"$OUT/bots/$tag.log" 2>"$OUT/bots/$tag.err" &
  LIVE[$!]=$seq
  B_IDENT[seq]=$identity B_START[seq]=$now B_CONN[seq]=0 B_KILLED[seq]=0
  B_KILL_AFTER[seq]=$PLAN_KILL_AFTER B_COMEBACK[seq]=$PLAN_COMEBACK B_PLAN[seq]="$PLAN_DESC"
  BUSY[$identity]=1
}

fate_of() {
  local killed=$1 status=$2
  if ((killed)); then echo killed; return; fi
  case $status in
    0) echo finished ;;
    1) echo connection_lost ;;
    2) echo join_refused ;;
    3) echo request_refused ;;
    101) echo panicked ;;
    *) echo "exit_$status" ;;
  esac
}

# Kills a child and collects it at once: bash reports a child killed by a signal as
# "Killed" on its stderr, which would litter the table, unless collected right away
# with stderr silenced. Sets STATUS.
kill_and_collect() {
  STATUS=0
  { kill -"$2" "$1"; wait "$1"; } 2>/dev/null || STATUS=$?
}

# Collects bots that ended.
reap_bots() {
  local now=$1 pid status
  for pid in "${!LIVE[@]}"; do
    alive "$pid" && continue
    status=0
    wait "$pid" 2>/dev/null || status=$?
    bot_ended "$pid" "$status" "$now"
  done
}

# Records how a bot ended (FATE, when given, instead of what its exit status says); a
# killed bot's identity comes back later.
bot_ended() {
  local pid=$1 status=$2 now=$3 fate=${4:-} seq identity
  seq=${LIVE[$pid]}
  unset "LIVE[$pid]"
  [[ -n $fate ]] || fate=$(fate_of "${B_KILLED[seq]}" "$status")
  EXITS[$fate]=$((${EXITS[$fate]:-0} + 1))
  identity=${B_IDENT[seq]}
  echo "$seq,$identity,${B_START[seq]},$now,$status,$fate,${B_PLAN[seq]}" >>"$BOTS_CSV"
  if [[ $fate == killed ]]; then
    COMEBACK[$identity]=$((now + B_COMEBACK[seq]))
  else
    unset "BUSY[$identity]"
    [[ $fate == finished ]] || log "bot $seq ($identity) ended: $fate; see $OUT/bots/$(printf '%04d' "$seq")-$identity.*"
  fi
}

# The SIGKILL comes a while after the bot joined (not while it starts, which on a
# loaded machine can take seconds): a participant vanishing mid-call.
kill_due_bots() {
  local now=$1 pid seq log
  for pid in "${!LIVE[@]}"; do
    seq=${LIVE[$pid]}
    ((B_KILL_AFTER[seq] > 0 && B_KILLED[seq] == 0)) || continue
    if ((B_CONN[seq] == 0)); then
      log=$(printf '%s/bots/%04d-%s.log' "$OUT" "$seq" "${B_IDENT[seq]}")
      grep -q '"event":"connected"' "$log" 2>/dev/null && B_CONN[seq]=$now
      continue
    fi
    if ((now >= B_CONN[seq] + B_KILL_AFTER[seq])); then
      B_KILLED[seq]=1
      kill_and_collect "$pid" KILL
      bot_ended "$pid" "$STATUS" "$now"
    fi
  done
}

free_identity() {
  local free=() i id
  for ((i = 1; i <= IDENTITY_POOL; i++)); do
    printf -v id 'bot-%02d' "$i"
    [[ -n ${BUSY[$id]:-} ]] || free+=("$id")
  done
  ((${#free[@]} > 0)) || return 1
  pick "${free[@]}"
}

# Brings back killed identities when due, then fills the room up to the target.
top_up() {
  local now=$1 target=$2 started=0 identity
  for identity in "${!COMEBACK[@]}"; do
    ((now >= ${COMEBACK[$identity]} && started < MAX_STARTS_PER_TICK)) || continue
    unset "COMEBACK[$identity]"
    launch_bot "$identity" "$now"
    started=$((started + 1))
  done
  while ((${#LIVE[@]} + ${#COMEBACK[@]} < target && started < MAX_STARTS_PER_TICK)); do
    free_identity || break
    launch_bot "$R" "$now"
    started=$((started + 1))
  done
}

# Lets the bots leave cleanly (SIGTERM is their Ctrl-C); the slow ones are killed.
# A bot still starting dies of the SIGTERM, which bash would report on fd 2.
stop_bots() {
  local now=$1 pid i
  COMEBACK=()
  for pid in "${!LIVE[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  {
    for ((i = 0; i < 30 && ${#LIVE[@]} > 0; i++)); do
      sleep 1
      reap_bots "$((now + i + 1))"
    done
  } 2>/dev/null
  if ((${#LIVE[@]} > 0)); then
    log "${#LIVE[@]} bot(s) did not leave within 30 s of SIGTERM; killing them"
    for pid in "${!LIVE[@]}"; do
      kill_and_collect "$pid" KILL
      bot_ended "$pid" "$STATUS" "$((now + 30))" stuck_at_end
    done
  fi
}

wait_room_empty() {
  local i
  for ((i = 0; i < EMPTY_ROOM_TIMEOUT_S; i++)); do
    if ! "$CLI_BIN" session list 2>>"$OUT/cli.log" | grep -q '"identity"'; then
      EMPTY_AFTER_S=$i
      return 0
    fi
    sleep 1
  done
  EMPTY_AFTER_S=-1
  log "participants still in the room ${EMPTY_ROOM_TIMEOUT_S}s after every bot ended:"
  "$CLI_BIN" session list >&3 || true
}

# ---------------------------------------------------------------- measurements

count_lines() { grep -cE "$1" "$2" 2>/dev/null || true; }
log_errors() { count_lines '^[^ ]+ +ERROR ' "$SERVER_LOG"; }
log_warnings() { count_lines '^[^ ]+ +WARN ' "$SERVER_LOG"; }

# Appends one line to samples.csv and keeps it in LAST_*.
sample() {
  local t=$1 rss threads fds anon
  read -r rss threads anon < <(awk '/^VmRSS:/ { r = $2 } /^Threads:/ { t = $2 } /^RssAnon:/ { a = $2 }
    END { print r + 0, t + 0, a + 0 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "0 0 0")
  fds=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  LAST_RSS=$rss LAST_FDS=$fds LAST_THREADS=$threads
  LAST_ERRORS=$(log_errors) LAST_WARNINGS=$(log_warnings)
  echo "$t,$rss,$fds,$threads,$LAST_ERRORS,$LAST_WARNINGS,${#LIVE[@]},$anon" >>"$SAMPLES"
}

print_header() {
  printf '%7s %9s %6s %8s %5s %7s %9s\n' time rss_MiB fds threads bots errors warnings >&3
}

print_row() {
  printf '%4d:%02d %9s %6d %8d %5d %7d %9d\n' $(($1 / 60)) $(($1 % 60)) \
    "$(awk -v k="$LAST_RSS" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$LAST_FDS" "$LAST_THREADS" "${#LIVE[@]}" "$LAST_ERRORS" "$LAST_WARNINGS" >&3
}

# Least-squares slope of RSS (KiB per minute) over samples with lo <= time_s <= hi:
# a plateau reads near 0, a leak as a steady positive number.
rss_slope() {
  awk -F, -v lo="$1" -v hi="$2" 'NR > 1 && $1 >= lo && $1 <= hi { n++; x += $1; y += $2; xx += $1 * $1; xy += $1 * $2 }
    END { d = n * xx - x * x; if (n > 1 && d > 0) printf "%.0f", (n * xy - x * y) / d * 60; else print "nan" }' "$SAMPLES"
}

# Median of the RSS column over samples with lo <= time_s <= hi (empty if none).
median_rss() {
  awk -F, -v lo="$1" -v hi="$2" 'NR > 1 && $1 >= lo && $1 <= hi { print $2 }' "$SAMPLES" |
    sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# ---------------------------------------------------------------- the run

server_died() {
  local status=0
  wait "$SERVER_PID" 2>/dev/null || status=$?
  SERVER_PID="" SERVER_DIED_AT=$1
  log "confer-server died at ${1}s (exit status $status); see $SERVER_LOG"
}

# A server that does not stop on SIGTERM after a long run is worth knowing about,
# though it does not fail the soak.
stop_server() {
  local i status=0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$SERVER_PID" || break
    sleep 0.1
  done
  if alive "$SERVER_PID"; then
    log "confer-server still running 10 s after SIGTERM; killing it"
    kill_and_collect "$SERVER_PID" KILL
  else
    { wait "$SERVER_PID"; } 2>/dev/null || status=$?
    ((status == 0)) || log "confer-server exited with status $status after SIGTERM"
  fi
  SERVER_PID=""
}

# The warm-up holds the run's peak load (more bots than ever after, each using every
# feature): the allocator keeps what a peak took, so RSS rises to the level of the
# highest load seen so far and stays. Reaching that level first makes the RSS baseline
# the plateau, and growth after it a leak rather than the first busy minute.
churn() {
  local now elapsed target=0 next_sample=$SAMPLE_EVERY_S next_table=$TABLE_EVERY_S next_target=0
  T0=$EPOCHSECONDS
  WARMING=1
  while :; do
    now=$EPOCHSECONDS
    elapsed=$((now - T0))
    ((elapsed < RUN_S)) || break
    if ! alive "$SERVER_PID"; then
      server_died "$elapsed"
      return 0
    fi
    if ((WARMING && elapsed >= WARM_S)); then
      WARMING=0 next_target=$elapsed
    fi
    if ((WARMING)); then
      target=$((MAX_BOTS + 2))
    elif ((elapsed >= next_target)); then
      rand "$MIN_BOTS" "$MAX_BOTS"
      target=$R next_target=$((elapsed + 30))
    fi
    reap_bots "$elapsed"
    kill_due_bots "$elapsed"
    top_up "$elapsed" "$target"
    if ((elapsed >= next_sample)); then
      sample "$elapsed"
      next_sample=$((next_sample + SAMPLE_EVERY_S))
      if ((elapsed >= next_table)); then
        print_row "$elapsed"
        next_table=$((next_table + TABLE_EVERY_S))
      fi
    fi
    sleep 1
  done
}

finish() {
  local t
  t=$((EPOCHSECONDS - T0))
  if [[ -z $SERVER_DIED_AT ]]; then
    stop_bots "$t"
    wait_room_empty
    # Give the server's periodic sweeps a moment to release what the last ones held.
    sleep 5
    t=$((EPOCHSECONDS - T0))
    if alive "$SERVER_PID"; then
      sample "$t"
      print_row "$t"
      FINAL_FDS=$LAST_FDS FINAL_RSS=$LAST_RSS
      stop_server
    else
      server_died "$t"
    fi
  else
    stop_bots "$t"
  fi
  cleanup
}

report_errors() {
  local n
  n=$(grep -cE '^[^ ]+ +(ERROR|WARN) ' "$SERVER_LOG" || true)
  if ((n > 0)); then
    log "server ERROR/WARN lines, grouped (ids and numbers elided):"
    grep -E '^[^ ]+ +(ERROR|WARN) ' "$SERVER_LOG" | sed -E 's/^[^ ]+ +//; s/(PA|RM|TR)_[A-Za-z0-9_-]+/\1_*/g; s/(^|[^A-Za-z0-9_])[0-9]+([.:][0-9]+)*/\1N/g' |
      sort | uniq -c | sort -rn | head -n 15 >&3
  fi
  n=$(cat "$OUT"/bots/*.log 2>/dev/null | grep -c '"event":"error"' || true)
  if ((n > 0)); then
    log "bot error lines ($n), grouped:"
    cat "$OUT"/bots/*.log | grep '"event":"error"' | sed -E 's/"at":[0-9]+,?//; s/(PA|RM|TR)_[A-Za-z0-9_-]+/\1_*/g' |
      sort | uniq -c | sort -rn | head -n 10 >&3
  fi
}

judge() {
  local verdict=PASS reasons=() warm lo hi base end growth slope server_panics bot_panics fates="" k renewals failures=0
  warm=$WARM_S
  lo=$warm
  hi=$(awk -v w="$warm" -v r="$RUN_S" 'BEGIN { print w + r / 5 }')
  if awk -v w="$warm" -v r="$RUN_S" 'BEGIN { exit !(w + 5 > r) }'; then
    log "the run is shorter than its warm-up (${warm}s): the RSS trend means little"
    lo=$(awk -v r="$RUN_S" 'BEGIN { print r * 0.8 }') hi=$RUN_S
  fi
  base=$(median_rss "$lo" "$hi")
  end=$(median_rss "$(awk -v r="$RUN_S" 'BEGIN { print r * 0.8 }')" "$RUN_S")
  base=${base:-0} end=${end:-0}
  growth=$(awk -v b="$base" -v e="$end" 'BEGIN { if (b > 0) printf "%.1f", (e - b) * 100 / b; else print "nan" }')
  slope=$(rss_slope "$(awk -v r="$RUN_S" 'BEGIN { print r / 2 }')" "$RUN_S")

  server_panics=$(count_lines 'panicked' "$SERVER_LOG")
  bot_panics=$(cat "$OUT"/bots/*.err 2>/dev/null | grep -c 'panicked' || true)
  if ((server_panics + bot_panics > 0)); then
    reasons+=("panics: server $server_panics, bots $bot_panics (grep panicked $OUT)")
  fi
  [[ -z $SERVER_DIED_AT ]] || reasons+=("the server died at ${SERVER_DIED_AT}s")
  if [[ $growth == nan ]]; then
    reasons+=("no RSS samples to judge")
  elif awk -v g="$growth" -v m="$MAX_RSS_GROWTH_PCT" 'BEGIN { exit !(g > m) }'; then
    reasons+=("RSS grew ${growth}% (baseline ${base} KiB, end ${end} KiB; more than ${MAX_RSS_GROWTH_PCT}%)")
  fi
  if [[ -n $FINAL_FDS ]] && ((FINAL_FDS > IDLE_FDS + FD_MARGIN)); then
    reasons+=("open fds with every bot gone: $FINAL_FDS, before the first joined: $IDLE_FDS (margin $FD_MARGIN)")
  fi
  if ((EMPTY_AFTER_S < 0)); then
    reasons+=("the room still had participants ${EMPTY_ROOM_TIMEOUT_S}s after every bot ended")
  fi
  for k in $(printf '%s\n' "${!EXITS[@]}" | sort); do
    fates+=" $k=${EXITS[$k]}"
    [[ $k == finished || $k == killed ]] || failures=$((failures + EXITS[$k]))
  done
  if ((failures > MAX_BOT_FAILURES)); then
    reasons+=("$failures bots ended badly (${fates# }; more than $MAX_BOT_FAILURES; see $BOTS_CSV and the bots' .err files)")
  fi
  ((${#reasons[@]} == 0)) || verdict=FAIL
  renewals=$(cat "$OUT"/bots/*.log 2>/dev/null | grep -c '"event":"token_renewed"' || true)
  report_errors
  log "rss: baseline ${base} KiB (median of ${lo}-${hi}s), end ${end} KiB (median of the last 20%), after the bots left ${FINAL_RSS:-?} KiB; slope over the second half ${slope} KiB/min"
  log "fds: ${IDLE_FDS} before the first bot, ${FINAL_FDS:-?} after the last left (room empty after ${EMPTY_AFTER_S}s)"
  log "bots: $SEQ started;$fates; $renewals token renewals"
  for k in "${reasons[@]}"; do log "FAIL: $k"; done
  log "output: $OUT (samples.csv, bots.csv, server.log, bots/)"
  echo "soak: $verdict rss_baseline_kib=$base rss_end_kib=$end growth_pct=$growth fds_baseline=$IDLE_FDS fds_end=${FINAL_FDS:-na} panics=$((server_panics + bot_panics)) errors=$(log_errors) warnings=$(log_warnings) bots=$SEQ bot_failures=$failures seed=$SEED out=$OUT" |
    tee "$OUT/summary.txt"
  [[ $verdict == PASS ]]
}

main() {
  parse_minutes "$@"
  find_binaries
  scrub_environment
  MIN_BOTS=${SOAK_MIN_BOTS:-6} MAX_BOTS=${SOAK_MAX_BOTS:-8}
  ((MIN_BOTS >= 1 && MAX_BOTS >= MIN_BOTS && MAX_BOTS <= IDENTITY_POOL - 4)) ||
    die "need 1 <= SOAK_MIN_BOTS <= SOAK_MAX_BOTS <= $((IDENTITY_POOL - 4))"
  [[ $SEED =~ ^[0-9]+$ ]] || die "SOAK_SEED must be a non-negative integer (got '$SEED')"
  [[ ${SOAK_WARMUP_S:-0} =~ ^[0-9]+$ ]] || die "SOAK_WARMUP_S must be a number of seconds"
  MAX_BOT_FAILURES=${SOAK_MAX_BOT_FAILURES:-0}
  [[ $MAX_BOT_FAILURES =~ ^[0-9]+$ ]] || die "SOAK_MAX_BOT_FAILURES must be a non-negative integer"
  # The warm-up: long enough for the peak load to come up and go round once.
  WARM_S=${SOAK_WARMUP_S:-$((RUN_S * 15 / 100 > 45 ? RUN_S * 15 / 100 : 45))}
  WARMING=0
  RANDOM=$SEED
  setup_output
  SERVER_DIED_AT="" FINAL_FDS="" FINAL_RSS="" EMPTY_AFTER_S=0
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT TERM
  start_display
  start_server
  create_room
  log "seed=$SEED run=${RUN_S}s out=$OUT server=$URL (pid $SERVER_PID) room=$ROOM screen=$SCREEN"
  sample 0
  IDLE_FDS=$LAST_FDS
  print_header
  print_row 0
  churn
  finish
  judge
}

main "$@"
