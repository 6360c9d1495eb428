#!/usr/bin/env bash
# The one command that runs the whole test suite (CI calls exactly this):
#  1. installs dependencies, builds everything and runs every test (unit,
#     integration against the real binary, micro-benchmark smoke) with ctest;
#  2. builds the libFuzzer targets (clang, ASan+UBSan) and runs each one for
#     a short smoke on its seed corpus, regression inputs included;
#  3. rebuilds with ASan+UBSan and runs unit + integration tests again;
#  4. builds the threaded unit tests and the relay binary with TSan and runs
#     them (the binary under the integration modules that drive its threads).
# Usage: scripts/test.sh [--quick]   (--quick: step 1 only)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

./scripts/install-deps.sh
start=$(date +%s)

echo "=== [1/4] release build + all tests"
./scripts/build.sh release
(cd build && ctest --output-on-failure --timeout 600 -j1)

if [ "$quick" = 1 ]; then
  echo "=== done in $(( $(date +%s) - start ))s (quick: sanitizer builds skipped)"
  exit 0
fi

echo "=== [2/4] fuzz targets: build + smoke (fuzz/README.md)"
SMOKE_SECONDS=${SMOKE_SECONDS:-10} ./scripts/fuzz.sh smoke

echo "=== [3/4] ASan+UBSan build + unit and integration tests"
./scripts/build.sh asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure --timeout 900 -j1 -LE bench)

echo "=== [4/4] TSan build + threaded unit tests + the relay binary's threads"
./scripts/build.sh tsan queue_test relay_test relay_server_test common_test metrics_test delivery_test dkim_test mxrelay
# delivery_test: the body loader's reads on the spool I/O thread; dkim_test:
# the signing threads and the per-thread signing contexts.
for t in common/common_test queue/queue_test relay/relay_test relay/relay_server_test delivery/delivery_test dkim/dkim_test; do
  TSAN_OPTIONS=halt_on_error=1 "build-tsan/$t" --gtest_brief=1
done
# The exporter racing the counters (civetweb itself is not instrumented: its
# HTTP test is left to the other stages).
TSAN_OPTIONS=halt_on_error=1 build-tsan/metrics/metrics_test --gtest_brief=1 --gtest_filter=-*Http*
# The real binary under TSan: ingress loops, the commit thread, the delivery
# engine and its spool I/O thread, the password checker, signal handling and
# shutdown, driven by the integration modules that exercise them. Reports go
# to files, so one at shutdown fails the stage too. tests/tsan.supp: only
# the uninstrumented Debian libraries (RocksDB, abseil's Status).
tsan_logs=$(mktemp -d)
supp=$(pwd)/tests/tsan.supp
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$supp log_path=$tsan_logs/report" \
   ctest --output-on-failure --timeout 900 -j1 -R 'integration\.(delivery|crash|signals|faults|dkim)')
if compgen -G "$tsan_logs/report.*" >/dev/null; then
  cat "$tsan_logs"/report.*
  echo "=== ThreadSanitizer reported races (above)"
  exit 1
fi
rm -rf "$tsan_logs"

echo "=== all test stages passed in $(( $(date +%s) - start ))s"
