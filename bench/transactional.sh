#!/usr/bin/env bash
# Transactional submission as applications do it (issue 19), mxrelay and a
# private Postfix side by side in the same run:
#
#   mxr-loadgen: connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, one message, QUIT
#       ──▶ relay (submission port: TLS with the same certificate for both,
#           AUTH required, nobody trusted by address, every 250 synced)
#       ──▶ mxr-sink
#
# Matrix: certificate type (ECDSA P-256, RSA-2048) x TLS session resumption
# (off, on: the client offers the newest session/ticket the server gave) x
# concurrent clients (20, 200) x message size (1 KB, 10 KB). Each cell runs
# both relays back to back (bench/loadgen-vs-postfix.sh, order alternating);
# the table gives end-to-end msg/s (delivered at the sink) and messages per
# relay CPU-second (cgroup), and their mxrelay/Postfix ratios.
# Issue 19 targets: >= 8x Postfix msg/s and >= 15x Postfix msg per CPU-s.
#
# Usage (root; about 16 cells x repeats x 2 x (seconds + ~6) s, ~10 min with defaults):
#   bench/transactional.sh [--build DIR] [--sizes 1K,10K] [--sessions 20,200]
#       [--certs ecdsa,rsa] [--resume off,on] [--repeats 1] [--seconds 10] [--out DIR]
#   bench/transactional.sh --smoke     (one small cell, 3 s: checks the harness works)
# Results: bench/results/<timestamp>-transactional/ (table.md, one folder per
# cell with runs.tsv and logs, command.txt with the exact command and commit).
# Loopback only; every process is stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/bench-lib.sh"
BUILD=$ROOT/build SIZES=1K,10K SESSIONS=20,200 CERTS=ecdsa,rsa RESUME=off,on REPEATS=1 SECS=10 OUT=""
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --certs) CERTS=$2; shift 2 ;;
    --resume) RESUME=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --smoke) SIZES=1K SESSIONS=5 CERTS=ecdsa RESUME=on REPEATS=1 SECS=3; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (Postfix, cgroups)" >&2; exit 2; }
[ -n "$OUT" ] || OUT=$HERE/results/$(date +%Y%m%d-%H%M%S)-transactional
mkdir -p "$OUT"
record_command "$OUT/command.txt" "$ROOT" "$0" "${ARGS[@]}"

# Certificates: one of each type, shared by both relays. Postfix reads its
# key as root before dropping privileges; mxrelay runs as root here.
CERTDIR=$OUT/certs
mkdir -p "$CERTDIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=relay.bench.invalid -keyout "$CERTDIR/ecdsa.key" -out "$CERTDIR/ecdsa.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
  -subj /CN=relay.bench.invalid -keyout "$CERTDIR/rsa.key" -out "$CERTDIR/rsa.pem" 2>/dev/null
chmod 600 "$CERTDIR"/*.key
PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

IFS=, read -r -a CERT_LIST <<<"$CERTS"
IFS=, read -r -a RES_LIST <<<"$RESUME"
IFS=, read -r -a SES_LIST <<<"$SESSIONS"
rc=0
for cert in "${CERT_LIST[@]}"; do
  for res in "${RES_LIST[@]}"; do
    for ses in "${SES_LIST[@]}"; do
      cell=$cert-resume_$res-s$ses
      extra=()
      [ "$res" = on ] && extra=(--tls-resume)
      echo "=== $cell" >&2
      "$HERE/loadgen-vs-postfix.sh" --build "$BUILD" --sizes "$SIZES" --repeats "$REPEATS" \
        --seconds "$SECS" --sessions "$ses" --drain 30 --out "$OUT/$cell" \
        --tls-cert "$CERTDIR/$cert.pem" --tls-key "$CERTDIR/$cert.key" --auth "bench:$PASS" \
        --per-connection 1 --no-pipelining ${extra[@]+"${extra[@]}"} >"$OUT/$cell.log" 2>&1 || {
          echo "$cell failed: $(tail -3 "$OUT/$cell.log")" >&2; rc=1; }
    done
  done
done

python3 - "$OUT" >"$OUT/table.md" <<'PYEOF'
import csv, glob, os, statistics, sys
out = sys.argv[1]
print("| cert | resumption | clients | size | mxrelay msg/s | Postfix msg/s | ratio | mxrelay msg/CPU-s | Postfix msg/CPU-s | ratio | resumed (ours / Postfix) | errors (ours / Postfix) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for tsv in sorted(glob.glob(os.path.join(out, "*", "runs.tsv"))):
    cell = os.path.basename(os.path.dirname(tsv))
    cert, res, ses = cell.split("-")
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
    for size in sorted({r["size"] for r in rows}):
        def pick(system, key):
            v = [float(r[key]) for r in rows if r["size"] == size and r["system"] == system]
            return statistics.median(v) if v else 0.0
        def errs(system):
            e = [r["errors"] for r in rows if r["size"] == size and r["system"] == system]
            return ",".join(x for x in e if x != "-") or "none"
        def resumed(system):
            h = sum(int(r.get("tls_handshakes") or 0) for r in rows if r["size"] == size and r["system"] == system)
            n = sum(int(r.get("tls_resumed") or 0) for r in rows if r["size"] == size and r["system"] == system)
            return "%d/%d" % (n, h)
        o, p = pick("ours", "e2e_mps"), pick("postfix", "e2e_mps")
        oc, pc = pick("ours", "msgs_per_cpu_s"), pick("postfix", "msgs_per_cpu_s")
        print("| %s | %s | %s | %s | %.0f | %.0f | %s | %.0f | %.0f | %s | %s / %s | %s / %s |" % (
            cert, res.replace("resume_", ""), ses[1:], size, o, p, ("%.1fx" % (o / p)) if p else "-",
            oc, pc, ("%.1fx" % (oc / pc)) if pc else "-", resumed("ours"), resumed("postfix"),
            errs("ours"), errs("postfix")))
PYEOF
cat "$OUT/table.md"
echo "results in $OUT"
exit $rc
