#!/usr/bin/env bash
# DKIM signing cost, in one run on this machine (bench/RESULTS.md, issue 16):
#  1. `openssl speed` sign rates for rsa2048 and ed25519;
#  2. canonicalization throughput (dkim_bench micro-benchmarks);
#  3. the relay's pipelined 1 KB throughput (mxr-loadgen -> mxrelay -> mxr-sink,
#     bench/loadgen-run.sh) unsigned, Ed25519-signed, RSA-2048-signed and
#     dual-signed (RSA + Ed25519), the four configurations back to back in
#     each round, --repeats rounds; medians at the end.
# Loopback only; everything started is stopped by PID (loadgen-run.sh).
#
# Usage: bench/dkim-bench.sh [--repeats N] [--seconds S] [--sessions N] [--size 1K] [--configs "unsigned ed25519 rsa2048 dual"]
#                            [--placement-bin FILE]
# --placement-bin: an mxrelay built from branch dkim16-placement-proto (signing
# at delivery, selected by MXRELAY_DKIM_AT_DELIVERY=1); configurations named
# NAME@delivery (e.g. rsa2048@delivery) run it, for the placement comparison
# in delivery/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
REPEATS=3 SECS=10 SESSIONS=20 SIZE=1K CONFIGS="unsigned ed25519 rsa2048 dual" PLACEMENT_BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --repeats) REPEATS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --placement-bin) PLACEMENT_BIN=$2; shift 2 ;;
    *) echo "usage: $0 [--repeats N] [--seconds S] [--sessions N] [--size 1K] [--configs LIST]" >&2; exit 2 ;;
  esac
done
BIN=${MXRELAY_BIN:-$BUILD/main/mxrelay}
[ -x "$BIN" ] && [ -x "$BUILD/bench/dkim_bench" ] || { echo "$0: build mxrelay and dkim_bench in $BUILD first" >&2; exit 2; }
WORK=$(mktemp -d -t mxr-dkim-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "=== machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: other users' load included)"
echo "=== openssl speed -seconds 3 rsa2048 ed25519"
openssl speed -seconds 3 rsa2048 ed25519 2>/dev/null | grep -E "^rsa 2048|Ed25519" | tee "$WORK/speed.txt"
RSA_SPS=$(awk '/^rsa 2048/{print $6}' "$WORK/speed.txt")
ED_SPS=$(awk '/Ed25519/{print $(NF-1)}' "$WORK/speed.txt")

echo "=== canonicalization (dkim_bench)"
"$BUILD/bench/dkim_bench" --benchmark_filter='BM_CanonBody|BM_BodyHash|BM_SignDigest' --benchmark_min_time=0.5 2>/dev/null |
  grep -E "^BM_"

# Keys and the [dkim] sections (From: <news@customer.test> is what loadgen sends).
"$BIN" dkim keygen --domain customer.test --selector rsa --algorithm rsa2048 --out "$WORK/rsa.pem" >/dev/null
"$BIN" dkim keygen --domain customer.test --selector ed --algorithm ed25519 --out "$WORK/ed.pem" >/dev/null
key() { echo "{ domain = \"customer.test\", selector = \"$1\", key_file = \"$WORK/$1.pem\" }"; }
printf '' >"$WORK/unsigned.toml"
printf '[dkim]\n[[dkim.rule]]\nfrom_domain = "customer.test"\nkeys = [%s]\n' "$(key ed)" >"$WORK/ed25519.toml"
printf '[dkim]\n[[dkim.rule]]\nfrom_domain = "customer.test"\nkeys = [%s]\n' "$(key rsa)" >"$WORK/rsa2048.toml"
printf '[dkim]\n[[dkim.rule]]\nfrom_domain = "customer.test"\nkeys = [%s, %s]\n' "$(key rsa)" "$(key ed)" >"$WORK/dual.toml"

echo "=== pipelined $SIZE, $SESSIONS sessions, ${SECS}s per run, $REPEATS rounds of: $CONFIGS"
for r in $(seq 1 "$REPEATS"); do
  for c in $CONFIGS; do
    cfg=${c%@delivery} bin=$BIN
    if [ "$c" != "$cfg" ]; then
      [ -x "$PLACEMENT_BIN" ] || { echo "$0: $c needs --placement-bin" >&2; exit 2; }
      bin=$PLACEMENT_BIN
      export MXRELAY_DKIM_AT_DELIVERY=1
    else
      unset MXRELAY_DKIM_AT_DELIVERY
    fi
    out=$(MXRELAY_EXTRA_CONFIG="$WORK/$cfg.toml" MXRELAY_BIN="$bin" "$HERE/loadgen-run.sh" --relay --build "$BUILD" --relay-bin "$bin" -- \
          --sessions "$SESSIONS" --pipelining --seconds "$SECS" --size "$SIZE" --from news@customer.test --json -q 2>&1) || true
    json=$(echo "$out" | grep -E '^\{"tool":"mxr-loadgen' | tail -1 || true)
    if [ -z "$json" ]; then
      echo "round $r $c: no result; output:"; echo "$out" | tail -15
      continue
    fi
    read -r rate acked p50 p99 <<<"$(echo "$json" | python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
t = j.get("time_to_250_us", {})
print(j["msgs_per_s"], j["acknowledged"], t.get("p50", 0), t.get("p99", 0))' 2>/dev/null || echo "0 0 0 0")"
    delivered=$(echo "$out" | sed -n 's/^mxr-sink: \([0-9]*\) messages.*/\1/p' || true)
    drate=$(echo "$out" | sed -n 's/^  delivered: \([0-9.]*\) msg\/s.*/\1/p')
    cpu=$(echo "$out" | sed -n 's/^relay CPU during the load run: \([0-9.]*\) s.*/\1/p')
    busy=$(echo "$out" | sed -n 's/^machine CPU busy during the load run: \([0-9]*\)%.*/\1/p')
    echo "round $r $c: acked $rate msg/s (time to 250 p50 ${p50} us p99 ${p99} us), delivered ${delivered:-?} of $acked" \
         "(${drate:-?} msg/s at the sink), relay CPU ${cpu:-?} s, machine busy ${busy:-?}%"
    echo "$c $rate ${drate:-0}" >>"$WORK/rates"
  done
done

python3 - "$WORK/rates" "$RSA_SPS" "$ED_SPS" <<'PY'
import statistics, sys
rates, dl = {}, {}
for line in open(sys.argv[1]):
    c, r, d = line.split()
    rates.setdefault(c, []).append(float(r))
    dl.setdefault(c, []).append(float(d))
rsa_sps, ed_sps = float(sys.argv[2] or 0), float(sys.argv[3] or 0)
med = {c: statistics.median(v) for c, v in rates.items()}
print("=== medians (msg/s acknowledged with 250; in brackets: delivered at the sink)")
for c, v in rates.items():
    print("%-17s median %8.1f  [%8.1f]   runs %s" % (c, med[c], statistics.median(dl[c]),
                                              ", ".join("%.0f [%.0f]" % (x, y) for x, y in zip(v, dl[c]))))
u = med.get("unsigned")
if u:
    if "ed25519" in med:
        print("ed25519 / unsigned = %.1f%% (target >= 85%%)" % (100 * med["ed25519"] / u))
    if "rsa2048" in med and rsa_sps:
        bound = min(u, 2 * rsa_sps)
        print("rsa2048 / min(unsigned %.0f, 2 x %.0f openssl rsa2048 signs/s) = %.1f%% (target >= 80%%)"
              % (u, rsa_sps, 100 * med["rsa2048"] / bound))
    if "dual" in med:
        print("dual / unsigned = %.1f%%" % (100 * med["dual"] / u))
    for c in med:
        if c.endswith("@delivery") and c[:-9] in med:
            b = c[:-9]
            print("%s at delivery / at reception: acknowledged %.1f%%, delivered %.1f%%"
                  % (b, 100 * med[c] / med[b], 100 * statistics.median(dl[c]) / statistics.median(dl[b])))
PY
