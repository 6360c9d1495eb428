#!/usr/bin/env bash
# Build and run the libFuzzer targets (fuzz/README.md) in build-fuzz/.
#
#   scripts/fuzz.sh smoke            # CI: every target ~15 s on a temp copy of
#                                    # its seed corpus; fails on any crash
#   scripts/fuzz.sh long SECONDS     # each target SECONDS (nice'd); new inputs
#                                    # kept in build-fuzz/corpus/<target>/,
#                                    # crashes in build-fuzz/crashes/<target>/
#   scripts/fuzz.sh build            # only build the fuzz targets
#
# Environment: FUZZ_TARGETS="session config" restricts the targets;
# FUZZ_JOBS (default nproc) ninja parallelism; SMOKE_SECONDS (default 15).
# Exit status: 0 if every target ran clean, 1 if any crashed, leaked or hung
# (long mode keeps going after a crash: fork mode with -ignore_crashes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-}
dir=build-fuzz
all_targets="smtp_command data_reader session reply_parser dns_answer config escape dkim_canon arf proxy_protocol"
targets=${FUZZ_TARGETS:-$all_targets}

usage() { echo "usage: $0 smoke | long SECONDS | build" >&2; exit 2; }

build() {
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DMXRELAY_FUZZ=ON \
      -DMXRELAY_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  ninja -C "$dir" -j"${FUZZ_JOBS:-$(nproc)}" fuzzers
}

# Per-target options: the largest input worth generating.
max_len() {
  case "$1" in
    session) echo 8192 ;;
    arf) echo 16384 ;;
    reply_parser) echo 8192 ;;
    dns_answer) echo 1500 ;;
    proxy_protocol) echo 4200 ;;
    *) echo 4096 ;;
  esac
}

dict_opt() {
  case "$1" in
    smtp_command|session) echo "-dict=fuzz/dict/smtp.dict" ;;
    reply_parser) echo "-dict=fuzz/dict/reply.dict" ;;
    data_reader) echo "-dict=fuzz/dict/data_reader.dict" ;;
    dkim_canon) echo "-dict=fuzz/dict/dkim.dict" ;;
    config) echo "-dict=fuzz/dict/config.dict" ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# run TARGET SECONDS CORPUS_DIR ARTIFACT_DIR LOG [extra libFuzzer args...]
run() {
  local t=$1 secs=$2 corpus=$3 art=$4 log=$5
  shift 5
  mkdir -p "$corpus" "$art"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb bounds memory.
  # libFuzzer's own -max_total_time stops it; `timeout` is the backstop.
  local rc=0
  timeout --kill-after=30 $((secs + 120)) \
    nice -n 19 "$dir/fuzz/${t}_fuzz" "$corpus" "fuzz/corpus/$t" \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -max_len="$(max_len "$t")" $(dict_opt "$t") \
      -artifact_prefix="$art/" -print_final_stats=1 "$@" >"$log" 2>&1 || rc=$?
  return $rc
}

summary() {  # target log -> one line (plain mode: libFuzzer's final stats)
  local t=$1 log=$2
  local last execs execs_s
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  execs_s=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  printf '%-13s execs=%-10s exec/s=%-6s %s\n' "$t" "${execs:-?}" "${execs_s:-?}" \
    "$(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]+' || true)"
}

case "$mode" in
  build)
    build
    ;;
  smoke)
    build
    secs=${SMOKE_SECONDS:-15}
    tmp=$(mktemp -d /tmp/mxrelay-fuzz-smoke.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    failed=""
    start=$(date +%s)
    for t in $targets; do
      # The corpus given first is the one libFuzzer writes to: a temp dir, so
      # CI never writes into the repository.
      if run "$t" "$secs" "$tmp/corpus/$t" "$tmp/crashes/$t" "$tmp/$t.log"; then
        summary "$t" "$tmp/$t.log"
      else
        echo "FAIL $t: see below" >&2
        grep -E -A40 'ERROR:|fuzz invariant violated|runtime error|deadly signal|Timeout|out-of-memory' \
          "$tmp/$t.log" | head -80 >&2 || tail -40 "$tmp/$t.log" >&2
        for f in "$tmp/crashes/$t"/*; do
          [ -f "$f" ] && echo "  input ($f): $(base64 -w0 "$f" | head -c 2000)" >&2
        done
        failed="$failed $t"
      fi
    done
    echo "fuzz smoke: $(( $(date +%s) - start ))s"
    if [ -n "$failed" ]; then
      echo "fuzz smoke FAILED:$failed" >&2
      exit 1
    fi
    ;;
  long)
    secs=${2:-}
    [[ "$secs" =~ ^[0-9]+$ ]] || usage
    build
    mkdir -p "$dir/logs"
    crashed=""
    for t in $targets; do
      stamp=$(date +%Y%m%d-%H%M%S)
      log="$dir/logs/$t-$stamp.log"
      echo "=== $t: ${secs}s (log $log)"
      # Seeds join the kept corpus (regress-* inputs stay out of it: they
      # crash until fixed, and the replay below must run the whole corpus).
      mkdir -p "$dir/corpus/$t" "$dir/crashes/$t"
      touch "$dir/logs/$t-$stamp.start"
      cp -n fuzz/corpus/"$t"/seed-* "$dir/corpus/$t/" 2>/dev/null || true
      # Fork mode with -ignore_crashes: a crash is saved to crashes/<t>/ and
      # fuzzing goes on (the time is not lost to the first finding).
      run "$t" "$secs" "$dir/corpus/$t" "$dir/crashes/$t" "$log" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 || true
      last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1 || true)
      # Coverage of the resulting corpus, replayed in plain mode (its "cov"
      # counts covered edges the same way as the smoke run's).
      replay="$dir/logs/$t-$stamp.replay.log"
      nice -n 19 "$dir/fuzz/${t}_fuzz" -runs=0 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -artifact_prefix="$dir/crashes/$t/replay-" "$dir/corpus/$t" >"$replay" 2>&1 || true
      cov=$(grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$replay" | tail -1 |
            grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]+' || true)
      ncrash=$(find "$dir/crashes/$t" -maxdepth 1 -type f -newer "$dir/logs/$t-$stamp.start" \
               \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
      echo "$t: $(echo "$last" | sed -E 's/^#([0-9]+): .*exec\/s ([0-9]+).*oom\/timeout\/crash: ([0-9/]+) time: ([0-9]+s).*/execs=\1 exec\/s=\2 oom\/timeout\/crash=\3 time=\4/') corpus-replay: $cov new-artifacts=$ncrash"
      if [ "$ncrash" -gt 0 ]; then crashed="$crashed $t"; fi
    done
    if [ -n "$crashed" ]; then
      echo "fuzz long: findings in:$crashed (build-fuzz/crashes/)" >&2
      exit 1
    fi
    ;;
  *)
    usage
    ;;
esac
