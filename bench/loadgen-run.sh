#!/usr/bin/env bash
# One bounded measurement with the load tools: mxr-loadgen straight into
# mxr-sink (the tools' own ceiling), or through mxrelay started with
# bench/peer-scripts/ours-up.sh (plain listener, loopback trusted, every
# message routed to the sink). Prints the loadgen and sink summaries, the
# relay's CPU (cgroup) and the machine's CPU busy time during the run.
# Everything started here is stopped by PID; nothing runs longer than
# loadgen's --seconds + --drain-seconds + a few seconds.
#
# Usage: bench/loadgen-run.sh [--relay] [--build DIR] [--relay-bin FILE] [--threads N] -- LOADGEN-ARGS...
#   (--threads: the relay's ingress event loops, default its own default)
#   bench/loadgen-run.sh -- --sessions 20 --pipelining --seconds 10
#   bench/loadgen-run.sh --relay -- --sessions 20 --pipelining --seconds 10
# LOADGEN-ARGS must not contain --server (this script sets it). Loopback only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build
RELAY=0
RELAY_BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --relay) RELAY=1; shift ;;
    --build) BUILD=$2; shift 2 ;;
    --relay-bin) RELAY_BIN=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--relay] [--build DIR] [--relay-bin FILE] -- LOADGEN-ARGS..." >&2; exit 2 ;;
  esac
done
LOADGEN=$BUILD/bench/mxr-loadgen
SINK=$BUILD/bench/mxr-sink
[ -x "$LOADGEN" ] && [ -x "$SINK" ] || { echo "$0: build mxr-loadgen and mxr-sink in $BUILD first" >&2; exit 2; }
for a in "$@"; do
  [ "$a" = "--server" ] && { echo "$0: do not pass --server" >&2; exit 2; }
done
SECONDS_ARG=10
prev=""
for a in "$@"; do
  [ "$prev" = "--seconds" ] && SECONDS_ARG=$a
  prev=$a
done
SINK_SECONDS=$(python3 -c "print(int(float('$SECONDS_ARG')) + 30)")

WORK=$(mktemp -d -t mxr-loadgen-run.XXXXXX)
SINK_PID="" RELAY_WORK=""
cleanup() {
  if [ -n "$RELAY_WORK" ]; then
    MXRELAY_BIN=${RELAY_BIN:-$ROOT/build/main/mxrelay} "$HERE/peer-scripts/ours-down.sh" --workdir "$RELAY_WORK" || true
  fi
  if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then kill -TERM "$SINK_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$SINK" --listen 127.0.0.1:0 --port-file "$WORK/sink.port" --seconds "$SINK_SECONDS" \
  >"$WORK/sink.out" 2>"$WORK/sink.err" &
SINK_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/sink.port" ] && break; sleep 0.05; done
SINK_PORT=$(cat "$WORK/sink.port")
TARGET=$SINK_PORT
if [ "$RELAY" = 1 ]; then
  TARGET=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  [ -n "$RELAY_BIN" ] && export MXRELAY_BIN=$RELAY_BIN
  OUT=$("$HERE/peer-scripts/ours-up.sh" --port "$TARGET" --sink-port "$SINK_PORT" --threads "${THREADS:-0}")
  RELAY_WORK=$(echo "$OUT" | sed -n 's/^WORKDIR=//p' | tail -1)
fi

cg_cpu() {  # CPU seconds of the relay's cgroup (0 without one)
  local f="$RELAY_WORK/relay.pid.cgroup"
  [ -n "$RELAY_WORK" ] && [ -s "$f" ] || { echo 0; return; }
  python3 - "$(cat "$f")" <<'EOF'
import os, sys
p = sys.argv[1]
try:
    print(int(open(os.path.join(p, "cpuacct.usage")).read()) / 1e9)
except OSError:
    for line in open(os.path.join(p, "cpu.stat")):
        if line.startswith("usage_usec"):
            print(int(line.split()[1]) / 1e6)
EOF
}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }

CPU0=$(cg_cpu); read -r B0 I0 <<<"$(busy)"
set +e
"$LOADGEN" --server "127.0.0.1:$TARGET" "$@"
RC=$?
set -e
CPU1=$(cg_cpu); read -r B1 I1 <<<"$(busy)"
# Let the sink see what the relay still delivers (bounded), then stop it.
if [ "$RELAY" = 1 ]; then sleep 2; fi
kill -TERM "$SINK_PID" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.1; done
SINK_PID=""
cat "$WORK/sink.out"
python3 - "$B0" "$I0" "$B1" "$I1" "$CPU0" "$CPU1" "$RELAY" <<'EOF'
import sys
b0, i0, b1, i1, c0, c1 = map(float, sys.argv[1:7])
total = (b1 - b0) + (i1 - i0)
print("machine CPU busy during the load run: %.0f%% (of 200%%; includes other users of the machine)" % (100.0 * 2 * (b1 - b0) / total if total else 0))
if sys.argv[7] == "1":
    print("relay CPU during the load run: %.2f s (cgroup)" % (c1 - c0))
EOF
exit $RC
