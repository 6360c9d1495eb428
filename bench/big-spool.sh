#!/usr/bin/env bash
# mxrelay with a big queue (issue 5): 1,000,000 deferred messages in the
# spool must cost (a) at most 10% of the relay's throughput and (b) at most
# 10 s of restart time.
#
#  1. mxr-spool-fill puts COUNT deferred messages (~1 KB, one recipient,
#     next attempt --days ahead, so none is delivered during the run) into
#     a spool directory through RocksSpool::Commit (group commit).
#  2. The relay is started alternately on an empty spool and on the full one
#     (full first: its first open replays the fill's WAL), REPEATS times each.
#     Config as bench/peer-scripts/ours-up.sh (plain listener, loopback
#     trusted, [[route]] domain = "*" to a fresh mxr-sink, every 250
#     WAL-synced) plus log level info and a delivery event log. Per start:
#       - ready:     process start -> `event=ready` in its log (log timestamp)
#       - first:     process start -> the first new message delivered (event
#                    log timestamp; one message sent as soon as it is ready)
#       - counted:   `event=spool_counted ... ms=` (the background count)
#       - scheduled: `event=delivery_started scheduled=` (schedule rebuilt)
#       - RSS after the count, then a throughput run (after spool_counted):
#         mxr-loadgen --sessions 20 --pipelining --size 1K --seconds SECS,
#         accepted msg/s and what the sink received
#       - stop: SIGTERM -> exit
#
# Usage (disk: ~3 KB per message in the work dir; about 2-4 minutes for 1M):
#   bench/big-spool.sh [--build DIR] [--relay-bin FILE] [--count 1000000]
#       [--seconds 10] [--repeats 2] [--days 3] [--workdir DIR] [--keep]
# Everything started here is stopped by PID; loopback only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build
RELAY_BIN=""
COUNT=1000000 SECS=10 REPEATS=2 DAYS=3 WORK="" KEEP=0
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
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
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
NEED_KB=$(( COUNT * 3 ))
AVAIL_KB=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
if [ "$AVAIL_KB" -lt "$NEED_KB" ]; then
  echo "$0: $WORK has $((AVAIL_KB / 1024)) MB free; $((NEED_KB / 1024)) MB needed for $COUNT messages" >&2
  exit 2
fi

RELAY_PID="" SINK_PID=""
stop_pid() {  # pid timeout_s -> SIGTERM, bounded wait, SIGKILL
  local pid=$1 t=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((t * 20))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  echo "$0: pid $pid still running after ${t}s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  [ -n "$RELAY_PID" ] && stop_pid "$RELAY_PID" 60
  [ -n "$SINK_PID" ] && stop_pid "$SINK_PID" 5
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK/full" "$WORK/empty"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SINK_PORT=$(free_port)

write_config() {  # dir
  cat >"$1/mxrelay.toml" <<CFG
hostname = "relay.bench.invalid"
data_dir = "$1/data"
trusted_networks = ["127.0.0.0/8"]
[log]
level = "info"
[limits]
max_connections_per_ip = 100000
[[listener]]
name = "bench"
address = "127.0.0.1"
port = $PORT
mode = "plain"
[metrics]
enabled = false
[delivery]
max_connections_per_site = 20
event_log = "$1/events.jsonl"
[[route]]
domain = "*"
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"
CFG
}
mkdir -p "$WORK/full/data" "$WORK/empty/data"
write_config "$WORK/full"
write_config "$WORK/empty"

echo "== filling $WORK/full/data/spool with $COUNT deferred messages"
df -h "$WORK" | tail -1
"$FILL" --path "$WORK/full/data/spool" --count "$COUNT" --size 1K --days "$DAYS" | tee "$WORK/fill.txt"
echo "spool on disk: $(du -sh "$WORK/full/data/spool" | cut -f1) (WAL $(du -ch "$WORK"/full/data/spool/*.log 2>/dev/null | tail -1 | cut -f1))" | tee -a "$WORK/fill.txt"

wait_log() {  # file pattern timeout_s -> 0 when the pattern appears
  local i
  for i in $(seq 1 $(($3 * 100))); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$RELAY_PID" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

RESULTS=$WORK/results.tsv
printf 'run\tspool\tready_s\tfirst_delivery_s\tscheduled\tcounted_messages\tcount_ms\trss_mb\taccept_mps\tttl_p50_us\tttl_p99_us\tdelivered\tstop_s\n' >"$RESULTS"

one_run() {  # n kind
  local n=$1 kind=$2 dir=$WORK/$2
  rm -f "$dir/events.jsonl" "$dir/relay.log"
  "$SINK" --listen "127.0.0.1:$SINK_PORT" --seconds $((SECS + 400)) --json >"$dir/sink.json" 2>"$dir/sink.err" &
  SINK_PID=$!
  sleep 0.2
  local t0; t0=$(date +%s.%N)
  "$RELAY_BIN" run -c "$dir/mxrelay.toml" 2>"$dir/relay.log" &
  RELAY_PID=$!
  wait_log "$dir/relay.log" "event=ready" 120 || { tail -20 "$dir/relay.log" >&2; echo "$0: relay not ready" >&2; exit 1; }
  "$LOADGEN" --server "127.0.0.1:$PORT" --sessions 1 --messages 1 --seconds 10 -q >"$dir/first.txt" 2>&1 || true
  for _ in $(seq 1 3000); do grep -q '"delivered"' "$dir/events.jsonl" 2>/dev/null && break; sleep 0.01; done
  wait_log "$dir/relay.log" "event=spool_counted" 300 || echo "$0: no event=spool_counted within 300 s" >&2
  local rss; rss=$(awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$RELAY_PID/status")
  "$LOADGEN" --server "127.0.0.1:$PORT" --sessions 20 --pipelining --size 1K --seconds "$SECS" --json -q \
    >"$dir/tput.json" 2>"$dir/tput.err" || true
  sleep 2
  stop_pid "$SINK_PID" 5; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=""
  local s0; s0=$(date +%s.%N)
  stop_pid "$RELAY_PID" 60; wait "$RELAY_PID" 2>/dev/null || true; RELAY_PID=""
  local s1; s1=$(date +%s.%N)
  python3 - "$dir" "$n" "$kind" "$t0" "$rss" "$s0" "$s1" >>"$RESULTS" <<'EOF'
import datetime, json, re, sys
d, n, kind, t0, rss, s0, s1 = sys.argv[1:8]
t0 = float(t0)
def ts(s):
    return datetime.datetime.strptime(s.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()
ready = first = None
scheduled = counted = count_ms = ""
for line in open(d + "/relay.log", errors="replace"):
    if "event=ready" in line and ready is None:
        ready = ts(line.split()[0]) - t0
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
lg = json.load(open(d + "/tput.json"))
try:
    delivered = json.loads(open(d + "/sink.json").read().strip().splitlines()[-1])["messages"] - 1
except (OSError, ValueError, IndexError, KeyError):
    delivered = -1
ttl = lg.get("time_to_250_us", {})
f = lambda x: "%.3f" % x if x is not None else "-"
print("\t".join(str(x) for x in [n, kind, f(ready), f(first), scheduled, counted, count_ms, rss,
                                 lg.get("msgs_per_s", 0), ttl.get("p50", 0), ttl.get("p99", 0),
                                 delivered, "%.2f" % (float(s1) - float(s0))]))
EOF
  cp "$dir/relay.log" "$WORK/run$n-$kind.relay.log"
  tail -1 "$RESULTS"
}

run=0
for r in $(seq 1 "$REPEATS"); do
  for kind in full empty; do
    run=$((run + 1))
    one_run "$run" "$kind"
  done
done
echo
column -t -s $'\t' "$RESULTS"
python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
f = [float(r["accept_mps"]) for r in rows if r["spool"] == "full"]
e = [float(r["accept_mps"]) for r in rows if r["spool"] == "empty"]
if f and e:
    mf, me = statistics.median(f), statistics.median(e)
    print("throughput: empty spool %.0f msg/s, %s-message spool %.0f msg/s (median): %+.1f%% (target within 10%%)"
          % (me, rows[0]["counted_messages"] or "full", mf, 100.0 * (mf - me) / me))
rd = [float(r["ready_s"]) for r in rows if r["spool"] == "full" and r["ready_s"] != "-"]
fd = [float(r["first_delivery_s"]) for r in rows if r["spool"] == "full" and r["first_delivery_s"] != "-"]
if rd:
    print("restart with the full spool: ready in %s s, first new message delivered at %s s (target <= 10 s)"
          % (", ".join("%.2f" % x for x in rd), ", ".join("%.2f" % x for x in fd)))
EOF
echo "work dir: $WORK (results.tsv, */relay.log)"
