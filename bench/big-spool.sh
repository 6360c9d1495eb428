#!/usr/bin/env bash
# mxrelay with a big queue (issue 5): 1,000,000 deferred messages in the
# spool must cost (a) at most 10% of the relay's throughput and (b) at most
# 10 s of restart time.
#
#  1. mxr-spool-fill puts COUNT deferred messages (~1 KB, one recipient,
#     next attempt --days ahead, so none is delivered during the run) into
#     a spool directory through RocksSpool::Commit (group commit).
#  2. Restarts: the relay is started alternately on the full spool and on an
#     empty one (full first: its first open replays the fill's WAL), REPEATS
#     times each. Config as bench/peer-scripts/ours-up.sh (plain listener,
#     loopback trusted, [[route]] domain = "*" to an mxr-sink, every 250
#     WAL-synced) plus log level info and a delivery event log. Per start:
#       - ready:     process start -> `event=ready` (log timestamp)
#       - first:     process start -> the first new message delivered (event
#                    log timestamp; one message is sent as soon as it is ready)
#       - opened:    process start -> `event=spool_opened` (RocksDB open, WAL replay)
#       - counted:   `event=spool_counted ... ms=` (the background count)
#       - scheduled: `event=delivery_started scheduled=` (schedule rebuilt)
#       - RSS once counted; stop: SIGTERM -> exit
#  3. Throughput: both relays up at once (full and empty spool, own ports and
#     sinks, no event log), then mxr-loadgen --sessions 20 --pipelining
#     --size 1K --seconds SECS against them alternately (F E E F F E ...,
#     2 x REPEATS runs each), so drift in the machine's other load hits both
#     alike. Accepted msg/s and time-to-250; the sinks' totals must match.
#
# Usage (disk: ~3 KB per message in the work dir; about 3-5 minutes for 1M):
#   bench/big-spool.sh [--build DIR] [--relay-bin FILE] [--count 1000000]
#       [--seconds 10] [--repeats 2] [--days 3] [--workdir DIR] [--keep] [--no-fill]
# --keep leaves the spools in the work dir; --no-fill reuses a kept one.
# Everything started here is stopped by PID; loopback only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build
RELAY_BIN=""
COUNT=1000000 SECS=10 REPEATS=2 DAYS=3 WORK="" KEEP=0 FILL_IT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --relay-bin) RELAY_BIN=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --days) DAYS=$2; shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-fill) FILL_IT=0; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
LOADGEN=$BUILD/bench/mxr-loadgen
SINK=$BUILD/bench/mxr-sink
FILL=$BUILD/bench/mxr-spool-fill
RELAY_BIN=${RELAY_BIN:-$BUILD/main/mxrelay}
for f in "$LOADGEN" "$SINK" "$FILL" "$RELAY_BIN"; do
  [ -x "$f" ] || { echo "$0: $f not built" >&2; exit 2; }
done
[ -n "$WORK" ] || WORK=$(mktemp -d -t mxr-big-spool.XXXXXX)
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ "$FILL_IT" = 1 ]; then
  NEED_KB=$(( COUNT * 3 ))
  AVAIL_KB=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
  if [ "$AVAIL_KB" -lt "$NEED_KB" ]; then
    echo "$0: $WORK has $((AVAIL_KB / 1024)) MB free; $((NEED_KB / 1024)) MB needed for $COUNT messages" >&2
    exit 2
  fi
  [ ! -e "$WORK/full/data/spool" ] || { echo "$0: $WORK/full/data/spool exists (use --no-fill, or another --workdir)" >&2; exit 2; }
else
  [ -d "$WORK/full/data/spool" ] || { echo "$0: --no-fill: no spool at $WORK/full/data/spool" >&2; exit 2; }
fi

PIDS=()
stop_pid() {  # pid timeout_s -> SIGTERM, bounded wait, SIGKILL
  local pid=$1 t=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((t * 20))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  echo "$0: pid $pid still running after ${t}s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
stop_forget() {  # pid timeout_s: stop it, reap it, and drop it from PIDS
  local pid=$1 p keep=()
  stop_pid "$pid" "$2"
  wait "$pid" 2>/dev/null || true
  for p in ${PIDS[@]+"${PIDS[@]}"}; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}
cleanup() {
  local p
  for p in ${PIDS[@]+"${PIDS[@]}"}; do stop_pid "$p" 60; done
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK/full" "$WORK/empty"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A PORT SINK_PORT
for k in full empty; do PORT[$k]=$(free_port); SINK_PORT[$k]=$(free_port); done

write_config() {  # kind event_log(0|1)
  local dir=$WORK/$1 ev=""
  [ "$2" = 1 ] && ev="event_log = \"$dir/events.jsonl\""
  cat >"$dir/mxrelay.toml" <<CFG
hostname = "relay.bench.invalid"
data_dir = "$dir/data"
trusted_networks = ["127.0.0.0/8"]
[log]
level = "info"
[limits]
max_connections_per_ip = 100000
[[listener]]
name = "bench"
address = "127.0.0.1"
port = ${PORT[$1]}
mode = "plain"
[metrics]
enabled = false
[delivery]
max_connections_per_site = 20
deny_networks = []  # the sink is on loopback, which the default refuses
$ev
[[route]]
domain = "*"
host = "127.0.0.1"
port = ${SINK_PORT[$1]}
tls = "none"
CFG
}
mkdir -p "$WORK/full/data" "$WORK/empty/data"

if [ "$FILL_IT" = 1 ]; then
  echo "== filling $WORK/full/data/spool with $COUNT deferred messages"
  df -h "$WORK" | tail -1
  "$FILL" --path "$WORK/full/data/spool" --count "$COUNT" --size 1K --days "$DAYS" | tee "$WORK/fill.txt"
  echo "spool on disk: $(du -sh "$WORK/full/data/spool" | cut -f1) (WAL $(du -ch "$WORK"/full/data/spool/*.log 2>/dev/null | tail -1 | cut -f1))" | tee -a "$WORK/fill.txt"
fi

wait_log() {  # file pattern timeout_s pid -> 0 when the pattern appears
  local i
  for i in $(seq 1 $(($3 * 100))); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}
start_sink() {  # kind -> sets SINK_PID
  "$SINK" --listen "127.0.0.1:${SINK_PORT[$1]}" --seconds 3600 --json >"$WORK/$1/sink.json" 2>"$WORK/$1/sink.err" &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  sleep 0.2
}
start_relay() {  # kind -> sets RELAY_PID, T0
  rm -f "$WORK/$1/events.jsonl"
  T0=$(date +%s.%N)
  "$RELAY_BIN" run -c "$WORK/$1/mxrelay.toml" 2>"$WORK/$1/relay.log" &
  RELAY_PID=$!
  PIDS+=("$RELAY_PID")
  wait_log "$WORK/$1/relay.log" "event=ready" 120 "$RELAY_PID" ||
    { tail -20 "$WORK/$1/relay.log" >&2; echo "$0: relay not ready" >&2; exit 1; }
}

# ------------------------------------------------------------------ restarts
RESTARTS=$WORK/restarts.tsv
printf 'run\tspool\topened_s\tready_s\tfirst_delivery_s\tscheduled\tcounted_messages\tcount_ms\trss_mb\tstop_s\n' >"$RESTARTS"
n=0
for r in $(seq 1 "$REPEATS"); do
  for kind in full empty; do
    n=$((n + 1))
    write_config "$kind" 1
    start_sink "$kind"
    start_relay "$kind"
    "$LOADGEN" --server "127.0.0.1:${PORT[$kind]}" --sessions 1 --messages 1 --seconds 10 -q >"$WORK/$kind/first.txt" 2>&1 || true
    for _ in $(seq 1 3000); do grep -q '"delivered"' "$WORK/$kind/events.jsonl" 2>/dev/null && break; sleep 0.01; done
    wait_log "$WORK/$kind/relay.log" "event=spool_counted" 300 "$RELAY_PID" || echo "$0: no event=spool_counted within 300 s" >&2
    rss=$(awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$RELAY_PID/status")
    s0=$(date +%s.%N)
    stop_forget "$RELAY_PID" 60
    s1=$(date +%s.%N)
    stop_forget "$SINK_PID" 5
    cp "$WORK/$kind/relay.log" "$WORK/restart$n-$kind.relay.log"
    python3 - "$WORK/$kind" "$n" "$kind" "$T0" "$rss" "$s0" "$s1" >>"$RESTARTS" <<'EOF'
import datetime, json, re, sys
d, n, kind, t0, rss, s0, s1 = sys.argv[1:8]
t0 = float(t0)
def ts(s):
    return datetime.datetime.strptime(s.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()
ready = first = opened = None
scheduled = counted = count_ms = ""
for line in open(d + "/relay.log", errors="replace"):
    if "event=ready" in line and ready is None:
        ready = ts(line.split()[0]) - t0
    if "event=spool_opened" in line and opened is None:
        opened = ts(line.split()[0]) - t0
    m = re.search(r"event=delivery_started scheduled=(\d+)", line)
    if m:
        scheduled = m.group(1)
    m = re.search(r"event=spool_counted messages=(\d+) bytes=\d+ ms=(\d+)", line)
    if m:
        counted, count_ms = m.group(1), m.group(2)
try:
    for line in open(d + "/events.jsonl"):
        e = json.loads(line)
        if e.get("outcome") == "delivered":
            first = ts(e["time"]) - t0
            break
except OSError:
    pass
f = lambda x: "%.3f" % x if x is not None else "-"
print("\t".join(str(x) for x in [n, kind, f(opened), f(ready), f(first), scheduled, counted, count_ms, rss,
                                 "%.2f" % (float(s1) - float(s0))]))
EOF
    tail -1 "$RESTARTS"
  done
done

# ---------------------------------------------------------------- throughput
TPUT=$WORK/throughput.tsv
printf 'run\tspool\taccepted\taccept_mps\tttl_p50_us\tttl_p99_us\tttl_p999_us\tloadgen_cpu_s\n' >"$TPUT"
declare -A RPID SPID
for kind in full empty; do
  write_config "$kind" 0
  start_sink "$kind"; SPID[$kind]=$SINK_PID
  start_relay "$kind"; RPID[$kind]=$RELAY_PID
done
for kind in full empty; do
  wait_log "$WORK/$kind/relay.log" "event=spool_counted" 300 "${RPID[$kind]}" || true
done
n=0
for r in $(seq 1 "$REPEATS"); do
  if [ $((r % 2)) = 1 ]; then order="full empty empty full"; else order="empty full full empty"; fi
  for kind in $order; do
    n=$((n + 1))
    "$LOADGEN" --server "127.0.0.1:${PORT[$kind]}" --sessions 20 --pipelining --size 1K --seconds "$SECS" --json -q \
      >"$WORK/tput$n-$kind.json" 2>"$WORK/tput$n-$kind.err" || true
    python3 - "$WORK/tput$n-$kind.json" "$n" "$kind" >>"$TPUT" <<'EOF'
import json, sys
lg = json.load(open(sys.argv[1]))
t = lg.get("time_to_250_us", {})
print("\t".join(str(x) for x in [sys.argv[2], sys.argv[3], lg["acknowledged"], lg["msgs_per_s"], t.get("p50", 0),
                                 t.get("p99", 0), t.get("p999", 0), lg.get("cpu_s", 0)]))
EOF
    tail -1 "$TPUT"
    sleep 2   # let the relay deliver what it accepted before the next run
  done
done
for kind in full empty; do
  rss=$(awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/${RPID[$kind]}/status")
  echo "$kind: relay VmRSS after the throughput runs $rss MB"
  stop_forget "${RPID[$kind]}" 60
  stop_forget "${SPID[$kind]}" 5
  cp "$WORK/$kind/relay.log" "$WORK/throughput-$kind.relay.log"
  echo "$kind: sink received $(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["messages"])' "$WORK/$kind/sink.json"), loadgen acknowledged $(awk -v k=$kind '$2==k{s+=$3} END{print s}' "$TPUT")"
done

echo
column -t -s $'\t' "$RESTARTS"
echo
column -t -s $'\t' "$TPUT"
python3 - "$RESTARTS" "$TPUT" <<'EOF'
import csv, statistics, sys
rs = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
ts = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
f = [float(r["accept_mps"]) for r in ts if r["spool"] == "full"]
e = [float(r["accept_mps"]) for r in ts if r["spool"] == "empty"]
if f and e:
    mf, me = statistics.median(f), statistics.median(e)
    print("throughput (median of %d runs each): empty spool %.0f msg/s (%.0f-%.0f), full spool %.0f msg/s "
          "(%.0f-%.0f): %+.1f%% (target: within 10%%)" % (len(f), me, min(e), max(e), mf, min(f), max(f),
                                                        100.0 * (mf - me) / me))
full = [r for r in rs if r["spool"] == "full"]
if full:
    print("restart with the full spool (%s messages): ready in %s s, first new message delivered at %s s "
          "(target <= 10 s); spool_counted ms=%s" % (
              full[0]["counted_messages"], ", ".join(r["ready_s"] for r in full),
              ", ".join(r["first_delivery_s"] for r in full), ", ".join(r["count_ms"] for r in full)))
EOF
echo "work dir: $WORK (restarts.tsv, throughput.tsv, *.relay.log)"
