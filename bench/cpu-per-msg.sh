#!/usr/bin/env bash
# Relay CPU per message for one end-to-end point, optionally with a perf
# profile: smtp-source -> mxrelay -> smtp-sink, the relay started by
# bench/peer-scripts/ours-up.sh as the peer harness does (plain listener,
# loopback trusted, static route to the sink, every 250 WAL-synced). CPU is utime+stime of the relay
# process (all threads, /proc/PID/stat) over the whole run, from the first
# connection to the last delivery; it is less noisy than msg/s on a shared
# machine, and what the peer harness's msg/cpu-s measures with a cgroup.
#
# Also prints the CPU per message of the two no-op peers, smtp-source and
# smtp-sink (process CPU, same run): with --ceiling there is no relay
# (smtp-source straight into smtp-sink, as the harness's ceiling), and the
# sink's figure is what the server half of the same one-message-per-connection
# conversation costs with no spool at all: a floor for any relay's ingress.
#
# Usage: bench/cpu-per-msg.sh [--size BYTES] [--rcpts N] [--sessions N]
#            [--messages N] [--runs N] [--perf FILE] [--bin PATH] [--threads N]
#            [--commit-delay-us N]   (spool.commit_delay_us; default: the relay's)
#            [--ceiling]             (no relay: smtp-source -> smtp-sink)
# Example: bench/cpu-per-msg.sh --size 102400 --messages 2000 --perf /tmp/p.data
# Everything on 127.0.0.1; every process is stopped by PID; bounded in time.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/main/mxrelay
SIZE=1024 RCPTS=1 SESSIONS=20 MESSAGES=8000 RUNS=1 PERF="" THREADS=0 COMMIT_DELAY="" CEILING=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=$2; shift 2 ;;
    --rcpts) RCPTS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --perf) PERF=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --commit-delay-us) COMMIT_DELAY=$2; shift 2 ;;
    --ceiling) CEILING=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v smtp-source >/dev/null || { echo "smtp-source missing: scripts/install-deps.sh" >&2; exit 2; }
[ "$CEILING" = 1 ] || [ -x "$BIN" ] || { echo "no relay binary at $BIN" >&2; exit 2; }
WORK=$(mktemp -d -t mxr-cpu.XXXXXX)
PORT=$((20000 + RANDOM % 20000)) SINK_PORT=$((PORT + 1))
SINK_PID="" RELAY_PID=""
RELAY_WORK=""
cleanup() {
  [ -n "$RELAY_WORK" ] && MXRELAY_BIN=$BIN "$HERE/peer-scripts/ours-down.sh" --workdir "$RELAY_WORK" >/dev/null 2>&1 || true
  [ -n "$SINK_PID" ] && kill -TERM "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {  # PORT: bounded wait until something listens
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on $1" >&2; return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# One line per thread: name ticks voluntary involuntary (context switches)
# minor-faults (each costs ~10 us on this VM: bench/NOTES.md).
thread_stats() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s %s %s\n' "$(cat "$t/comm")" \
      "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')" \
      "$(awk '/^voluntary_ctxt/ {print $2}' "$t/status")" \
      "$(awk '/^nonvoluntary_ctxt/ {print $2}' "$t/status")" \
      "$(sed 's/.*) //' "$t/stat" | awk '{print $8}')"
  done | sort
}
# Synced commits, messages in them, and total commit seconds (group-commit batching).
spool_stats() {
  curl -s "http://127.0.0.1:$((PORT + 2))/metrics" 2>/dev/null | awk '
    /^mxrelay_spool_commits_total / {c = $2}
    /^mxrelay_spool_committed_messages_total / {m = $2}
    /^mxrelay_spool_commit_duration_seconds_sum / {d = $2}
    END {printf "%d %d %.6f\n", c, m, d}'
}
# Messages the sink has received, from the relay's own delivery counter
# (without a relay, smtp-source returns once the sink has taken them all).
delivered() {
  if [ "$CEILING" = 1 ]; then echo "${SENT:-0}"; return; fi
  curl -s "http://127.0.0.1:$((PORT + 2))/metrics" 2>/dev/null |
    awk '/^mxrelay_delivery_attempts_total\{.*outcome="delivered"/ {s += $2} END {print s + 0}'
}

smtp-sink -4 -c $( [ "$(id -u)" = 0 ] && echo -u nobody ) "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>&1 &
SINK_PID=$!
wait_port "$SINK_PORT"
hz=$(getconf CLK_TCK)
SENT=0
if [ "$CEILING" = 1 ]; then
  PORT=$SINK_PORT
  # Stand-ins so the per-run code below needs no special case.
  RELAY_PID=$SINK_PID
  spool_stats() { echo "0 0 0"; }
  thread_stats() { :; }
else
# The relay exactly as the peer harness runs it (bench/peer-scripts/ours-up.sh),
# plus a metrics port of our own to count deliveries.
[ -n "$COMMIT_DELAY" ] && export MXRELAY_COMMIT_DELAY_US=$COMMIT_DELAY
OUT=$(MXRELAY_BIN=$BIN "$HERE/peer-scripts/ours-up.sh" --port "$PORT" --sink-port "$SINK_PORT" \
  --threads "$THREADS" --metrics-listen "127.0.0.1:$((PORT + 2))" --workdir "$WORK/relay")
RELAY_WORK=$(echo "$OUT" | sed -n 's/^WORKDIR=//p' | tail -1)
RELAY_PID=$(pgrep -P "$(cat "$RELAY_WORK/relay.pid")" -n)  # the launcher's child
[ -n "$RELAY_PID" ] || { echo "relay not running: $(tail -5 "$RELAY_WORK/relay.log")" >&2; exit 1; }
fi
total=0
for run in $(seq 1 "$RUNS"); do
  before=$(delivered)
  c0=$(cpu_ticks "$RELAY_PID")
  k0=$(cpu_ticks "$SINK_PID")
  read -r sc0 sm0 sd0 <<<"$(spool_stats)"
  thread_stats "$RELAY_PID" >"$WORK/threads0"
  t0=$(date +%s.%N)
  if [ -n "$PERF" ] && [ "$run" = "${PERF_RUN:-1}" ]; then  # PERF_RUN: which run to profile
    perf record -e cpu-clock -F ${PERF_FREQ:-2000} ${PERF_CALLGRAPH:--g} -p "$RELAY_PID" -o "$PERF" -q 2>/dev/null &
    PERF_PID=$!
  fi
  # smtp-source's own CPU: `times` in a subshell whose only child it is.
  src_cpu=$( (timeout 300 smtp-source -c -N -s "$SESSIONS" -m "$MESSAGES" -r "$RCPTS" -l "$SIZE" \
    -f sender@client.bench.invalid -t rcpt@sink.bench.invalid "127.0.0.1:$PORT" >/dev/null; times) |
    tail -1 | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }; print s }')
  SENT=$((SENT + MESSAGES * RCPTS))
  want=$((before + MESSAGES * RCPTS))
  for _ in $(seq 1 600); do  # at most 60 s for the queue to drain
    [ "$(delivered)" -ge "$want" ] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$RELAY_PID")
  k1=$(cpu_ticks "$SINK_PID")
  read -r sc1 sm1 sd1 <<<"$(spool_stats)"
  thread_stats "$RELAY_PID" >"$WORK/threads1"
  if [ -n "${PERF_PID:-}" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""; fi
  got=$(( $(delivered) - before ))
  awk -v c=$((c1 - c0)) -v hz="$hz" -v n="$MESSAGES" -v d="$got" -v t0="$t0" -v t1="$t1" \
    -v size="$SIZE" -v r="$RCPTS" -v s="$SESSIONS" -v run="$run" -v ceiling="$CEILING" 'BEGIN {
      if (ceiling) printf "run %d: size=%d rcpts=%d sessions=%d messages=%d (no relay) wall=%.2fs msg/s=%.0f\n",
        run, size, r, s, n, t1 - t0, n / (t1 - t0)
      else printf "run %d: size=%d rcpts=%d sessions=%d messages=%d delivered_rcpts=%d wall=%.2fs msg/s=%.0f relay_cpu=%.2fs cpu_per_msg=%.0fus\n",
        run, size, r, s, n, d, t1 - t0, n / (t1 - t0), c / hz, c / hz / n * 1e6 }'
  awk -v k=$((k1 - k0)) -v hz="$hz" -v n="$MESSAGES" -v src="$src_cpu" 'BEGIN {
      printf "  peers: smtp-sink cpu/msg=%.0fus  smtp-source cpu/msg=%.0fus\n", k / hz / n * 1e6, src / n * 1e6 }'
  awk -v c=$((sc1 - sc0)) -v m=$((sm1 - sm0)) -v d0="$sd0" -v d1="$sd1" 'BEGIN {
      if (c > 0) printf "  spool: %d synced commits, %.2f messages per commit, %.0fus per commit\n",
        c, m / c, (d1 - d0) / c * 1e6 }'
  # Per thread (same name summed): CPU and context switches per message.
  awk -v hz="$hz" -v n="$MESSAGES" 'NR == FNR {c[$1] -= $2; v[$1] -= $3; iv[$1] -= $4; f[$1] -= $5; next}
    {c[$1] += $2; v[$1] += $3; iv[$1] += $4; f[$1] += $5}
    END {for (k in c) if (c[k] > 0 || v[k] > n / 100)
      printf "  %-16s cpu/msg=%4.0fus  voluntary_cs/msg=%.2f  involuntary_cs/msg=%.2f  faults/msg=%.2f\n",
        k, c[k] / hz / n * 1e6, v[k] / n, iv[k] / n, f[k] / n}' "$WORK/threads0" "$WORK/threads1" | sort
done
