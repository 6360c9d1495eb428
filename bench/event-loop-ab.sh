#!/usr/bin/env bash
# epoll vs io_uring (common/event_loop.h) in one run: bench/loadgen-run.sh
# through the relay, both backends back to back, interleaved, REPEATS times,
# at 1 KB pipelined over 20 reused sessions and at one message per
# connection (20 sessions, a new connection per message). Prints each run and
# the medians of msg/s and relay CPU per message, and epoll/io_uring ratios.
# The backend is chosen with MXRELAY_EVENT_LOOP (docs/CONFIG.md event_loop).
#
# Usage: bench/event-loop-ab.sh [REPEATS (3)] [SECONDS (8)]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPEATS=${1:-3}
SECS=${2:-8}
OUT=$(mktemp -t mxr-evloop-ab.XXXXXX)
trap 'rm -f "$OUT"' EXIT
declare -A ARGS=(
  [pipelined]="--sessions 20 --size 1K --pipelining --seconds $SECS -q"
  [per_connection]="--sessions 20 --size 1K --messages-per-session 1 --seconds $SECS -q"
)
for r in $(seq 1 "$REPEATS"); do
  for shape in pipelined per_connection; do
    for b in io_uring epoll; do
      # shellcheck disable=SC2086
      res=$(MXRELAY_EVENT_LOOP=$b timeout $((SECS + 60)) "$HERE/loadgen-run.sh" --relay -- ${ARGS[$shape]} 2>&1 || true)
      rate=$(echo "$res" | sed -n 's/.*attempted in [0-9.]* s: \([0-9.]*\) msg\/s.*/\1/p' | head -1)
      n=$(echo "$res" | sed -n 's/.*acknowledged \([0-9]*\) of.*/\1/p' | head -1)
      cpu=$(echo "$res" | sed -n 's/^relay CPU during the load run: \([0-9.]*\) s.*/\1/p' | head -1)
      echo "$r $shape $b ${rate:-0} ${n:-0} ${cpu:-0}" | tee -a "$OUT"
    done
  done
done
python3 - "$OUT" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for shape in ("pipelined", "per_connection"):
    for b in ("io_uring", "epoll"):
        rs = [r for r in rows if r[1] == shape and r[2] == b]
        rate = statistics.median(float(r[3]) for r in rs)
        us = statistics.median(1e6 * float(r[5]) / max(1, int(r[4])) for r in rs)
        med[(shape, b)] = (rate, us)
        print("%-15s %-9s median %8.0f msg/s  relay CPU %6.1f us/msg  (runs: %s)"
              % (shape, b, rate, us, ", ".join("%.0f" % float(r[3]) for r in rs)))
    (ru, cu), (re_, ce) = med[(shape, "io_uring")], med[(shape, "epoll")]
    print("%-15s epoll/io_uring: throughput %.2fx, CPU per message %.2fx" % (shape, re_ / ru, ce / cu))
PY
