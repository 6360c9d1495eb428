#!/usr/bin/env bash
# Load side, relay-agnostic: drive ANY relay that listens on 127.0.0.1:TARGET_PORT
# and relays everything to 127.0.0.1:SINK_PORT.  Starts its own sink on SINK_PORT,
# runs sizes x recipients x concurrency x repeats with smtp-source, prints TSV
# (medians) and a table, and writes OUT/raw.tsv, OUT/median.tsv, OUT/runs/*.cpu.
#
# Usage: run-matrix.sh --system NAME --target-port P --sink-port S
#                      [--relay-pidfile F | --relay-pid PID]   (for relay CPU; optional)
#                      [--out DIR] [any lib/peerbench.py option, see --help]
#    or: run-matrix.sh --target NAME:PORT:SINK_PORT[:PIDFILE] [--target ...] [--out DIR] ...
#        (several relays, run interleaved point by point, each with its own sink)
# Common options: --sizes 1K,10K,100K --rcpts 1,10 --concurrency 1,20,100
#                 --messages 1K=5000,10K=3000,100K=1000 --repeats 3 --max-seconds 120
#                 --reuse-conn --sink smtp-sink|py --warmup 500
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="" SYSTEM="" ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --system) SYSTEM=$2; ARGS+=("$1" "$2"); shift 2 ;;
    --target) SYSTEM=${SYSTEM:-${2%%:*}}; ARGS+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; python3 "$HERE/lib/peerbench.py" --help; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ -n "$SYSTEM" ] || { echo "run-matrix.sh: --system NAME or --target required" >&2; exit 2; }
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || {
  echo "run-matrix.sh: smtp-source missing: run scripts/install-deps.sh (Debian package postfix)" >&2; exit 2; }
[ -n "$OUT" ] || OUT="$HERE/results/$(date +%Y%m%d-%H%M%S)-$SYSTEM"
mkdir -p "$OUT"
echo "results -> $OUT" >&2
exec python3 "$HERE/lib/peerbench.py" --out-dir "$OUT" "${ARGS[@]}"
