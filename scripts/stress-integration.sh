#!/usr/bin/env bash
# Flake hunt: runs the integration suite of an existing build RUNS times back
# to back while stress-ng keeps WORKERS CPU workers busy, and prints which
# tests failed in which run. Needs a build (scripts/build.sh release) and
# stress-ng (scripts/install-deps.sh installs it).
#
#   scripts/stress-integration.sh [--runs 3] [--workers 2] [--build build] [--label integration]
#
# Bounded: stress-ng gets --timeout (RUNS x 30 min) and is stopped by its PID
# when the runs end; each ctest run has ctest's per-test timeout. Logs in
# $build/stress-integration/run-N.log (and run-N.full.log: every test's
# output). Exit status 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3 workers=2 build=build label=integration
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--workers N] [--build DIR] [--label L]" >&2; exit 2 ;;
  esac
done
[ -f "$build/CTestTestfile.cmake" ] || { echo "no build in $build (scripts/build.sh release)" >&2; exit 2; }
command -v stress-ng >/dev/null || { echo "stress-ng missing (scripts/install-deps.sh)" >&2; exit 2; }
logs="$build/stress-integration"
mkdir -p "$logs"
stress-ng --cpu "$workers" --cpu-method matrixprod --timeout "$(( runs * 1800 ))s" --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null || true; wait "$stress_pid" 2>/dev/null || true' EXIT
failed=0
for n in $(seq 1 "$runs"); do
  t0=$(date +%s)
  rc=0
  (cd "$build" && ctest -L "$label" --output-on-failure --timeout 600 -j1) >"$logs/run-$n.log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - t0 ))
  # Every test's full output (the figures the tests print), not only failures'.
  cp "$build/Testing/Temporary/LastTest.log" "$logs/run-$n.full.log" 2>/dev/null || true
  bad=$(grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Not Run)\)' "$logs/run-$n.log" || true)
  fails=$(grep -E '^(FAIL|ERROR): test' "$logs/run-$n.log" | sort -u || true)
  echo "run $n: exit $rc in ${secs}s$([ -n "$bad" ] && printf '\n%s' "$bad")$([ -n "$fails" ] && printf '\n%s' "$fails")"
  [ "$rc" = 0 ] || failed=1
done
echo "stress-integration: $runs run(s) with $workers stress-ng CPU worker(s): $([ "$failed" = 0 ] && echo 'no failure' || echo 'FAILURES above'); logs in $logs"
exit "$failed"
