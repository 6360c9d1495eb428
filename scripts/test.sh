#!/usr/bin/env bash
# The one command that runs the whole test suite (CI calls exactly this):
#  1. installs dependencies, builds everything and runs every test (unit,
#     integration against the real binary, micro-benchmark smoke) with ctest;
#  2. builds the libFuzzer targets (clang, ASan+UBSan) and runs each one for
#     a short smoke on its seed corpus, regression inputs included;
#  3. rebuilds with ASan+UBSan and runs unit + integration tests again, the
#     relays on the epoll event-loop backend (stage 1: io_uring); every
#     sanitizer report (also one written at a process's exit, e.g. a leak)
#     goes to a log_path file, and any such file fails the stage;
#  4. builds the threaded unit tests and the relay binary with TSan and runs
#     them (the binary under the integration modules that drive its threads).
# In CI (CI=true) a skipped test fails the run unless tests/skip-allowlist.txt
# names it with a reason (tests/skip_policy.py: Python skips are checked by
# tests/integration/runtests.py, ctest skips by scripts/check_skips.py).
# Usage: scripts/test.sh [--quick]   (--quick: step 1 only)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

./scripts/install-deps.sh
start=$(date +%s)

# ctest_stage DIR JUNIT [ctest args...]: runs ctest in DIR writing JUnit to
# DIR/JUNIT, then the skip check; returns non-zero if either failed (the
# caller decides when to stop, so sanitizer reports are printed first).
ctest_stage() {
  local dir=$1 junit=$2 rc=0
  shift 2
  (cd "$dir" && ctest --output-on-failure --output-junit "$junit" "$@") || rc=1
  ./scripts/check_skips.py "$dir/$junit" || rc=1
  return $rc
}

# sanitizer_reports DIR WHAT: prints and counts the report files in DIR.
sanitizer_reports() {
  local dir=$1 what=$2
  if compgen -G "$dir/*" >/dev/null; then
    for f in "$dir"/*; do echo "--- $f"; cat "$f"; done
    echo "=== $what reported errors (above)"
    return 1
  fi
  return 0
}

echo "=== [1/4] release build + all tests"
./scripts/build.sh release
ctest_stage build ctest-junit.xml --timeout 600 -j1

if [ "$quick" = 1 ]; then
  echo "=== done in $(( $(date +%s) - start ))s (quick: sanitizer builds skipped)"
  exit 0
fi

echo "=== [2/4] fuzz targets: build + smoke (fuzz/README.md)"
SMOKE_SECONDS=${SMOKE_SECONDS:-10} ./scripts/fuzz.sh smoke

echo "=== [3/4] ASan+UBSan build + unit and integration tests"
./scripts/build.sh asan
# Reports go to files (log_path), not to the processes' stderr: a relay's
# stderr is its log, which tests delete, and LeakSanitizer reports only at
# exit. relayctl fails the test whose relay left a report or exited badly;
# this check after the stage catches every other process (CLI runs, unit
# test binaries) too. abort_on_error: a report ends the process by SIGABRT.
asan_logs=$(mktemp -d)
chmod 1777 "$asan_logs"  # relays that dropped root (test_privileges) write here too
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$asan_logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$asan_logs/ubsan"
# The relays of this stage run on the epoll backend (common/event_loop.h):
# every integration module (ingress and delivery) then runs on both
# backends per CI run, io_uring in stage 1, epoll here, at no extra time.
# (test_event_loop unsets it: it chooses the backend itself.) Unit tests
# run both backends in every stage (parametrized).
export MXRELAY_EVENT_LOOP=epoll
rc=0
ctest_stage build-asan ctest-junit.xml --timeout 900 -j1 -LE bench || rc=1
sanitizer_reports "$asan_logs" "AddressSanitizer/UndefinedBehaviorSanitizer" || rc=1
unset ASAN_OPTIONS UBSAN_OPTIONS MXRELAY_EVENT_LOOP
[ "$rc" = 0 ] || exit 1
rm -rf "$asan_logs"

echo "=== [4/4] TSan build + concurrent unit tests + the relay binary's threads"
./scripts/build.sh tsan queue_test relay_test relay_server_test common_test metrics_test delivery_test dkim_test suppression_test webhooks_test mxrelay
# Only the unit tests that run code on more than one thread at once (each
# filter below is what docs/RELIABILITY.md "Sanitizers" lists); the
# single-threaded ones (parsers, session, policy tables) gain nothing here.
tsan_unit() {  # BINARY FILTER: fails on a report, a failure or a skipped test
  local out rc=0
  out=$(TSAN_OPTIONS="halt_on_error=1" "build-tsan/$1" --gtest_brief=1 --gtest_filter="$2" 2>&1) || rc=$?
  printf '%s\n' "$out" | tail -n 40
  if [ "$rc" != 0 ]; then echo "=== TSan: $1 failed (exit $rc)"; return 1; fi
  if ! grep -Eq '^\[  PASSED  \] [1-9][0-9]* test' <<<"$out"; then
    echo "=== TSan: $1 --gtest_filter=$2 ran no test"; return 1
  fi
  if grep -q '^\[  SKIPPED \]' <<<"$out"; then echo "=== TSan: $1 skipped tests"; return 1; fi
}
# EventLoop::Post/Stop from other threads (the mailbox every component uses).
tsan_unit common/common_test '*EventLoopThreads.*'
# The spool: committers, the group-commit thread, its background count.
tsan_unit queue/queue_test 'RocksSpoolTest.*'
# The AUTH limiter from 8 threads; the password checker's threads with
# Verify/CachedOk/SetUsers callers; the per-IP connection table from 8 threads.
tsan_unit relay/relay_server_test 'AuthLimiter.*FromManyThreads*:Authenticator.*:IngressServerPerIpLimit.Concurrent*'
# The live trace: sessions on several threads push, the admin socket's thread reads.
tsan_unit relay/relay_test 'TraceHub.*:TraceSubscriber.*'
# The body loader's reads on the spool I/O thread; the event log's lock
# (4 writers and a reopen; in the binary only the delivery thread writes it).
tsan_unit delivery/delivery_test 'BodyLoaderTest.*:EventLogFileTest.ConcurrentWritersProduceWholeLines'
# The exporter rendering while the counters count (civetweb itself is not
# instrumented: its HTTP tests are left to the other stages).
tsan_unit metrics/metrics_test 'Exporter.RenderWhileTheComponentsCount'
# DKIM: the signing threads in front of the spool, and the per-thread signing
# contexts (more keys than a thread's cache holds, several threads).
tsan_unit dkim/dkim_test 'SigningSpoolTest.*:KeysTest.SignaturesDoNotDependOnTheContextCacheOrTheThread'
# The suppression store's filter loader against lookups and adds; the
# webhook dispatcher's thread (libcurl multi) against Poke/Stats callers.
tsan_unit suppression/suppression_test 'StoreTest.*:CsvTest.*'
tsan_unit webhooks/webhooks_test 'DispatcherTest.*'
# The real binary under TSan: ingress loops, the commit thread, the delivery
# engine and its spool I/O thread, the password checker, signal handling and
# shutdown, driven by the integration modules that exercise them. Reports go
# to files, so one at shutdown fails the stage too. tests/tsan.supp: only
# the uninstrumented Debian libraries (RocksDB, abseil's Status).
tsan_logs=$(mktemp -d)
chmod 1777 "$tsan_logs"
supp=$(pwd)/tests/tsan.supp
rc=0
export TSAN_OPTIONS="halt_on_error=1 suppressions=$supp log_path=$tsan_logs/report"
ctest_stage build-tsan ctest-junit.xml --timeout 900 -j1 -R 'integration\.(delivery|crash|signals|faults|dkim|shaping|mta_sts)' || rc=1
# 200 simultaneous AUTH guessers and 100 cached logins: ingress loops, the
# AUTH limiter and the password checker at once (the rest of test_abuse is
# about memory and limits, not threads).
(cd tests/integration && MXRELAY_BIN="$(pwd)/../../build-tsan/main/mxrelay" PYTHONDONTWRITEBYTECODE=1 \
   timeout 600 python3 runtests.py test_abuse.ConcurrentAuthGuessingTest) || rc=1
# The live trace in the binary: sessions on the ingress loops push to the
# admin socket's client thread (mxrelay trace).
(cd tests/integration && MXRELAY_BIN="$(pwd)/../../build-tsan/main/mxrelay" PYTHONDONTWRITEBYTECODE=1 \
   timeout 600 python3 runtests.py test_diagnostics.TraceTest) || rc=1
unset TSAN_OPTIONS
sanitizer_reports "$tsan_logs" "ThreadSanitizer" || rc=1
[ "$rc" = 0 ] || exit 1
rm -rf "$tsan_logs"

echo "=== all test stages passed in $(( $(date +%s) - start ))s"
