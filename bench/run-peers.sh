#!/usr/bin/env bash
# Runs the peer harness (bench/peers/) with mxrelay plugged
# in (bench/peer-scripts/ours-*.sh), side by side with Postfix and the load
# tool's ceiling (smtp-source straight into smtp-sink), in one interleaved run.
# Results: bench/results/<timestamp>/ (summary.txt, raw.tsv, ...).
#
# Usage: bench/run-peers.sh [--systems ours,postfix,ceiling] [-- run-matrix options]
# Example (issue 2 accept-rate point, ~3 min):
#   bench/run-peers.sh -- --sizes 1K --rcpts 1 --concurrency 20 --messages 4000 \
#       --repeats 3 --max-seconds 10 --drain-seconds 1 --warmup 200
# Needs root (the harness runs a private Postfix and uses cgroups).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=$HERE/peers
SYSTEMS=ours,postfix,ceiling
if [ "${1:-}" = "--systems" ]; then SYSTEMS=$2; shift 2; fi
[ "${1:-}" = "--" ] && shift
[ -x "$ROOT/build/main/mxrelay" ] || "$ROOT/scripts/build.sh" release mxrelay
command -v smtp-source >/dev/null || "$ROOT/scripts/install-deps.sh"
OUT="$HERE/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
echo "command: $0 --systems $SYSTEMS -- $*" > "$OUT/command.txt"
"$PEERS/bench-peers.sh" --scripts-dir "$HERE/peer-scripts" --systems "$SYSTEMS" --out "$OUT" -- "$@"
echo "results in $OUT"
