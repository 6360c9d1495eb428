#!/usr/bin/env bash
# Side-by-side run: start every system (SYSTEM-up.sh), each on its own pair of
# loopback ports, drive them all with the same load in ONE run-matrix.sh
# invocation (interleaved: for each point and repeat, every system runs back to
# back, rotating who goes first, so background noise hits all of them alike),
# then stop them all (SYSTEM-down.sh).  Prints TSV + table + ratios vs the first
# system (or --baseline).
#
# Usage: bench-peers.sh [--systems ours,postfix,ceiling] [--out DIR]
#                       [--scripts-dir DIR] [--base-port 12525] [-- run-matrix options...]
# The name 'ceiling' in --systems adds the load tool's own ceiling (no relay).
# Example (quick smoke test):
#   bench-peers.sh --systems postfix,ceiling -- --sizes 1K --rcpts 1 --concurrency 20 --messages 500 --repeats 1
#
# Adding your own relay: provide NAME-up.sh and NAME-down.sh next to this file,
# or in a folder of your own named with --scripts-dir DIR (searched first; may be
# given several times), with the same contract as postfix-up.sh / postfix-down.sh:
#   NAME-up.sh --port P --sink-port S   -> starts the relay on 127.0.0.1:P relaying
#        every message to 127.0.0.1:S; its LAST stdout line is WORKDIR=<dir> and
#        <dir>/relay.pid holds the root PID of the relay's process tree
#        (use lib/common.sh start_launched so exited children's CPU is counted).
#   NAME-down.sh --workdir <dir>       -> stops it by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
SYSTEMS=postfix BASE_PORT=12525 OUT="" PASS=() SCRIPT_DIRS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --systems) SYSTEMS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    --scripts-dir) SCRIPT_DIRS+=("$(cd "$2" && pwd)"); shift 2 ;;
    --) shift; PASS=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown option $1 (run-matrix options go after --)" ;;
  esac
done
[ -n "$OUT" ] || OUT="$HERE/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
# script_for NAME up|down: the first NAME-up.sh/NAME-down.sh found (--scripts-dir first).
script_for() {
  local d
  for d in ${SCRIPT_DIRS[@]+"${SCRIPT_DIRS[@]}"} "$HERE"; do
    [ -x "$d/$1-$2.sh" ] && { echo "$d/$1-$2.sh"; return 0; }
  done
  return 1
}
declare -A WD=()
ORDER=()
cleanup() {
  local s
  for s in ${ORDER[@]+"${ORDER[@]}"}; do
    if [ -n "${WD[$s]:-}" ]; then
      log "stopping $s"
      "$(script_for "$s" down)" --workdir "${WD[$s]}" || true
      WD[$s]=""
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TARGETS=()
i=0
for s in ${SYSTEMS//,/ }; do
  if [ "$s" = ceiling ]; then  # no relay: smtp-source straight into its sink (see README)
    port=$((BASE_PORT + 2 * i)); TARGETS+=(--target "ceiling:$port:$port"); i=$((i + 1)); continue
  fi
  script_for "$s" up >/dev/null && script_for "$s" down >/dev/null || die "no $s-up.sh/$s-down.sh (here or in --scripts-dir)"
  port=$((BASE_PORT + 2 * i)) sink=$((BASE_PORT + 2 * i + 1))
  log "=== $s: starting on 127.0.0.1:$port -> sink 127.0.0.1:$sink"
  ORDER+=("$s")
  upout=$("$(script_for "$s" up)" --port "$port" --sink-port "$sink")
  WD[$s]=$(printf '%s\n' "$upout" | sed -n 's/^WORKDIR=//p' | tail -1)
  [ -n "${WD[$s]}" ] && [ -s "${WD[$s]}/relay.pid" ] || die "$s-up.sh gave no WORKDIR/relay.pid"
  TARGETS+=(--target "$s:$port:$sink:${WD[$s]}/relay.pid")
  i=$((i + 1))
done

{
  echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cpus, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "# systems: $SYSTEMS"
  echo "# run-matrix options: ${PASS[*]-}"
  echo "# generated configs: config/<system>/ (work dir paths shown as \$WORKDIR)"
} > "$OUT/info.txt"
# keep copies of the generated configs with the results (machine paths masked)
for s in ${ORDER[@]+"${ORDER[@]}"}; do
  mkdir -p "$OUT/config/$s"
  for f in etc/main.cf etc/master.cf exim.conf smtpd.conf instance/config/smtp.ini \
           instance/config/plugins instance/plugins/mx_to_sink.js; do
    [ -f "${WD[$s]}/$f" ] && sed "s|${WD[$s]}|\$WORKDIR|g" "${WD[$s]}/$f" >"$OUT/config/$s/$(basename "$f")"
  done
done

"$HERE/run-matrix.sh" --out "$OUT" "${TARGETS[@]}" ${PASS[@]+"${PASS[@]}"} 2> >(tee "$OUT/run.log" >&2) \
  | tee "$OUT/summary.txt"
echo "results in $OUT" >&2
