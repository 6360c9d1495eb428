#!/usr/bin/env bash
# Our own load generator against mxrelay and Postfix, end to end, in one
# interleaved run (issue 5: >= 10,000 msg/s at 1 KB / 1 rcpt with connection
# reuse + PIPELINING, >= 20x Postfix driven by the same generator, >= 1,200
# msg/s at 100 KB):
#
#   mxr-loadgen --pipelining --sessions 20 ──▶ relay ──▶ mxr-sink
#
# Both relays stay up for the whole run: mxrelay through
# bench/peer-scripts/ours-up.sh (plain listener, loopback trusted, static
# route to its sink, every 250 WAL-synced) and a private Postfix through the
# harness's postfix-up.sh (bench/peers/: relayhost
# [127.0.0.1]:SINK, its normal fsync, started in its own cgroup). Each has
# its own mxr-sink, also up for the whole run (a sink restarted between runs
# would make Postfix defer to a dead next hop). For every repeat and size the
# two systems run back to back, alternating which goes first.
#
# Per run: accepted msg/s and time-to-250 from mxr-loadgen; delivered count
# and end-to-end msg/s from the sink's progress lines (delivered messages /
# time from loadgen's start to the sink line that shows the last one, 0.1 s
# resolution); relay CPU from the launcher's cgroup; machine busy %.
#
# Usage (root; about (2 x sizes x repeats) x (seconds + ~5) s):
#   bench/loadgen-vs-postfix.sh [--build DIR] [--relay-bin FILE] [--sizes 1K,100K]
#       [--repeats 3] [--seconds 10] [--sessions 20] [--drain 30] [--out DIR]
#       [--tls-cert PEM --tls-key PEM --auth USER:PASSWORD]
#       [--per-connection N] [--no-pipelining] [--tls-resume]
# With --tls-cert/--tls-key/--auth both relays run a submission port:
# STARTTLS with that certificate, AUTH required (mxrelay: users file with a
# yescrypt hash; Postfix: Cyrus SASL sasldb), nobody trusted by address; the
# load tool does STARTTLS + AUTH PLAIN on every connection. --per-connection
# N makes it reconnect after N messages (1 = one message per connection,
# what applications do); --tls-resume offers the last TLS session again.
# Results: bench/results/<timestamp>-vs-postfix/ (runs.tsv, summary.txt, logs).
# Loopback only; every process started here is stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=$ROOT/bench/peers
. "$HERE/bench-lib.sh"
BUILD=$ROOT/build
RELAY_BIN=""
SIZES=1K,100K REPEATS=3 SECS=10 SESSIONS=20 DRAIN=30 OUT=""
CERT="" KEY="" AUTH="" PER_CONN=0 PIPELINING=--pipelining RESUME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --relay-bin) RELAY_BIN=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --drain) DRAIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --tls-cert) CERT=$2; shift 2 ;;
    --tls-key) KEY=$2; shift 2 ;;
    --auth) AUTH=$2; shift 2 ;;
    --per-connection) PER_CONN=$2; shift 2 ;;
    --no-pipelining) PIPELINING=""; shift ;;
    --tls-resume) RESUME=--tls-resume; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (Postfix's master, cgroups)" >&2; exit 2; }
LOADGEN=$BUILD/bench/mxr-loadgen
SINK=$BUILD/bench/mxr-sink
RELAY_BIN=${RELAY_BIN:-$BUILD/main/mxrelay}
for f in "$LOADGEN" "$SINK" "$RELAY_BIN"; do
  [ -x "$f" ] || { echo "$0: $f not built" >&2; exit 2; }
done
command -v postfix >/dev/null || { echo "$0: postfix missing: run scripts/install-deps.sh" >&2; exit 2; }
[ -n "$OUT" ] || OUT=$HERE/results/$(date +%Y%m%d-%H%M%S)-vs-postfix
mkdir -p "$OUT"
if [ -n "$CERT$KEY$AUTH" ] && { [ -z "$CERT" ] || [ -z "$KEY" ] || [ -z "$AUTH" ]; }; then
  echo "$0: --tls-cert, --tls-key and --auth go together" >&2; exit 2
fi
echo "command: $0 --build $BUILD --relay-bin $RELAY_BIN --sizes $SIZES --repeats $REPEATS --seconds $SECS --sessions $SESSIONS --drain $DRAIN${CERT:+ --tls-cert $CERT --tls-key $KEY --auth ${AUTH%%:*}:***} --per-connection $PER_CONN ${PIPELINING:---no-pipelining} $RESUME" >"$OUT/command.txt"
echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified)')" >>"$OUT/command.txt"
OURS_SUB=() PF_SUB=() LG_SUB=()
if [ -n "$CERT" ]; then
  printf '%s:%s\n' "${AUTH%%:*}" "$(printf '%s' "${AUTH#*:}" | "$RELAY_BIN" hash-password)" >"$OUT/users"
  chmod 600 "$OUT/users"
  OURS_SUB=(--tls-cert "$CERT" --tls-key "$KEY" --users "$OUT/users")
  PF_SUB=(--tls-cert "$CERT" --tls-key "$KEY" --sasl "$AUTH")
  LG_SUB=(--starttls --auth "$AUTH")
fi
[ -z "$RESUME" ] || LG_SUB+=("$RESUME")

OURS_SINK_PID="" PF_SINK_PID="" OURS_WORK="" PF_WORK=""
cleanup() {
  [ -n "$OURS_WORK" ] && MXRELAY_BIN=$RELAY_BIN "$HERE/peer-scripts/ours-down.sh" --workdir "$OURS_WORK" >/dev/null 2>&1 || true
  [ -n "$PF_WORK" ] && "$PEERS/postfix-down.sh" --workdir "$PF_WORK" >/dev/null 2>&1 || true
  for p in $OURS_SINK_PID $PF_SINK_PID; do
    kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

TOTAL_S=$(( 3600 ))
start_sink() {  # name -> prints "PID PORT"
  local name=$1
  "$SINK" --listen 127.0.0.1:0 --port-file "$OUT/$name-sink.port" --seconds $TOTAL_S --report-every 0.1 \
    >"$OUT/$name-sink.out" 2>"$OUT/$name-sink.err" &
  local pid=$! i
  for i in $(seq 1 500); do [ -s "$OUT/$name-sink.port" ] && break; sleep 0.01; done
  # The sink's progress clock starts right after it writes its port file.
  echo "$pid $(cat "$OUT/$name-sink.port") $(date +%s.%N)"
}
read -r OURS_SINK_PID OURS_SINK_PORT SINK_T0_ours <<<"$(start_sink ours)"
read -r PF_SINK_PID PF_SINK_PORT SINK_T0_postfix <<<"$(start_sink postfix)"

OURS_PORT=$(free_port)
OUT_UP=$(MXRELAY_BIN=$RELAY_BIN "$HERE/peer-scripts/ours-up.sh" --port "$OURS_PORT" --sink-port "$OURS_SINK_PORT" ${OURS_SUB[@]+"${OURS_SUB[@]}"})
OURS_WORK=$(echo "$OUT_UP" | sed -n 's/^WORKDIR=//p' | tail -1)
PF_PORT=$(free_port)
OUT_UP=$("$PEERS/postfix-up.sh" --port "$PF_PORT" --sink-port "$PF_SINK_PORT" ${PF_SUB[@]+"${PF_SUB[@]}"})
PF_WORK=$(echo "$OUT_UP" | sed -n 's/^WORKDIR=//p' | tail -1)
echo "mxrelay 127.0.0.1:$OURS_PORT -> sink $OURS_SINK_PORT ($OURS_WORK); postfix 127.0.0.1:$PF_PORT -> sink $PF_SINK_PORT ($PF_WORK)" | tee "$OUT/setup.txt"

sink_count() {  # last message count a sink reported
  local c
  c=$(grep -a 'sink: msgs' "$OUT/$1-sink.err" 2>/dev/null | tail -1 | sed -n 's/.*msgs \([0-9]*\).*/\1/p')
  echo "${c:-0}"
}

printf 'repeat\tsize\tsystem\tattempted\taccepted\taccept_mps\tttl_p50_us\tttl_p99_us\tdelivered\te2e_s\te2e_mps\tdrain_s\trelay_cpu_s\tmsgs_per_cpu_s\tbusy_pct\tloadgen_cpu_s\terrors\ttls_handshakes\ttls_resumed\n' >"$OUT/runs.tsv"

run_one() {  # repeat size system
  local r=$1 size=$2 sys=$3 port work
  if [ "$sys" = ours ]; then port=$OURS_PORT; work=$OURS_WORK; else port=$PF_PORT; work=$PF_WORK; fi
  local base; base=$(sink_count "$sys")
  local cpu0; cpu0=$(cg_cpu "$work")
  local b0 i0 b1 i1; read -r b0 i0 <<<"$(busy)"
  local t0; t0=$(date +%s.%N)
  local tag="r$r-$size-$sys"
  set +e
  "$LOADGEN" --server "127.0.0.1:$port" --sessions "$SESSIONS" $PIPELINING --size "$size" --rcpts 1 \
    --messages-per-session "$PER_CONN" ${LG_SUB[@]+"${LG_SUB[@]}"} \
    --seconds "$SECS" --drain-seconds 10 --json -q >"$OUT/$tag.loadgen.json" 2>"$OUT/$tag.loadgen.err"
  set -e
  read -r b1 i1 <<<"$(busy)"
  local acked; acked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["acknowledged"])' "$OUT/$tag.loadgen.json" 2>/dev/null || echo 0)
  # Wait (bounded) until the sink has everything that was acknowledged.
  local t_lg_end; t_lg_end=$(date +%s.%N)
  local waited=0
  while [ $(( $(sink_count "$sys") - base )) -lt "$acked" ] && [ "$waited" -lt $(( DRAIN * 10 )) ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  sleep 1.2   # let the relay finish its post-delivery work (CPU), and one more sink line
  local cpu1; cpu1=$(cg_cpu "$work")
  python3 - "$OUT" "$tag" "$sys" "$r" "$size" "$base" "$acked" "$t0" "$t_lg_end" "$cpu0" "$cpu1" \
      "$b0" "$i0" "$b1" "$i1" "$(eval echo \$SINK_T0_$sys)" >>"$OUT/runs.tsv" <<'EOF'
import json, re, sys
(out, tag, system, rep, size, base, acked, t0, t_end, c0, c1, b0, i0, b1, i1, sink_t0) = sys.argv[1:17]
base, acked = int(base), int(acked)
lg = json.load(open("%s/%s.loadgen.json" % (out, tag)))
# The sink's progress lines: "[   t.s] sink: msgs N ..." (t from the sink's start).
start_rel = float(t0) - float(sink_t0)
end_rel, delivered = None, 0
for line in open("%s/%s-sink.err" % (out, system), errors="replace"):
    m = re.match(r"\[\s*([\d.]+)s\] sink: msgs (\d+)", line)
    if not m:
        continue
    t, n = float(m.group(1)), int(m.group(2)) - base
    if t < start_rel:
        continue
    if n > delivered:
        delivered = n
        end_rel = t
e2e_s = (end_rel - start_rel) if end_rel is not None else 0
drain_s = max(0.0, (end_rel or 0) - (float(t_end) - float(sink_t0)))
cpu = float(c1) - float(c0)
db, di = float(b1) - float(b0), float(i1) - float(i0)
busy = 200.0 * db / (db + di) if db + di else 0
ttl = lg.get("time_to_250_us", {})
errors = ";".join("%s=%s" % kv for kv in lg.get("errors", {}).items()) or "-"
print("\t".join(str(x) for x in [
    rep, size, system, lg["attempted"], lg["acknowledged"], lg["msgs_per_s"], ttl.get("p50", 0), ttl.get("p99", 0),
    delivered, "%.2f" % e2e_s, "%.1f" % (delivered / e2e_s if e2e_s > 0 else 0), "%.2f" % drain_s,
    "%.2f" % cpu, "%.0f" % (delivered / cpu if cpu > 0 else 0), "%.0f" % busy, lg.get("cpu_s", 0), errors,
    lg.get("tls_handshakes", 0), lg.get("tls_resumed", 0)]))
EOF
  tail -1 "$OUT/runs.tsv"
}

IFS=, read -r -a SIZE_LIST <<<"$SIZES"
turn=0
for r in $(seq 1 "$REPEATS"); do
  for size in "${SIZE_LIST[@]}"; do
    if [ $((turn % 2)) = 0 ]; then order="ours postfix"; else order="postfix ours"; fi
    turn=$((turn + 1))
    for sys in $order; do run_one "$r" "$size" "$sys"; done
  done
done

python3 - "$OUT/runs.tsv" >"$OUT/summary.txt" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
pts = {}
for r in rows:
    pts.setdefault((r["size"], r["system"]), []).append(r)
def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)
print("| size | system | runs | accepted msg/s | end-to-end msg/s (min-max) | time to 250 p50 / p99 | relay CPU / msg | msg per relay CPU-s |")
print("|---|---|---|---|---|---|---|---|")
for (size, system), rs in sorted(pts.items(), key=lambda kv: (kv[0][0], kv[0][1] != "ours")):
    e2e = [float(r["e2e_mps"]) for r in rs]
    mpc = med(rs, "msgs_per_cpu_s")
    print("| %s | %s | %d | %.0f | **%.0f** (%.0f-%.0f) | %.2f ms / %.2f ms | %s | %.0f |" % (
        size, system, len(rs), med(rs, "accept_mps"), statistics.median(e2e), min(e2e), max(e2e),
        med(rs, "ttl_p50_us") / 1000, med(rs, "ttl_p99_us") / 1000,
        ("%.0f us" % (1e6 / mpc)) if mpc else "-", mpc))
sizes = sorted({s for s, _ in pts})
for s in sizes:
    if (s, "ours") in pts and (s, "postfix") in pts:
        o = statistics.median(float(r["e2e_mps"]) for r in pts[(s, "ours")])
        p = statistics.median(float(r["e2e_mps"]) for r in pts[(s, "postfix")])
        oc = med(pts[(s, "ours")], "msgs_per_cpu_s")
        pc = med(pts[(s, "postfix")], "msgs_per_cpu_s")
        print("%s: mxrelay / Postfix end to end = %.1fx; per relay CPU-s = %.1fx" % (
            s, o / p if p else 0, oc / pc if pc else 0))
EOF
cat "$OUT/summary.txt"
echo "results in $OUT"
