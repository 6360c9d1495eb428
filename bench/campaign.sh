#!/usr/bin/env bash
# Campaign delivery (issue 19), mxrelay and a private Postfix in the same run:
#
#   mxr-loadgen: messages of 10 KB, 1,000 recipients each, spread over 200
#   domains (5 per domain per message), 100 messages = 100,000 recipients
#       ──▶ relay (plain submission from loopback, every 250 synced)
#       ──▶ MX lookup at a loopback dnsmasq (127.0.2.53:53): dN.campaign.test
#           MX mx.dN.campaign.test A 127.0.1.N
#       ──▶ one mxr-sink listening on 127.0.1.1-200, port 25
#
# Per system: delivered recipients/s at the sink (recipients / time from the
# load tool's start to the last message), relay CPU (cgroup) per recipient.
# With --isolation, a second pass per system makes 10% of the domains slow
# (every reply held 5 s) and 5% answer 421 at the greeting, and reports the
# healthy domains' delivery rate against the all-healthy pass (issue 19
# target: >= 90%).
# Both relays resolve through the same dnsmasq: mxrelay with
# `delivery.resolver`, Postfix through a private /etc/resolv.conf in its
# mount namespace (PEERBENCH_NAMESERVER).
#
# Usage (root):
#   bench/campaign.sh [--build DIR] [--messages 100] [--rcpts 1000] [--domains 200]
#       [--size 10K] [--sessions 4] [--isolation] [--systems ours,postfix]
#       [--timeout 300] [--out DIR]
#   bench/campaign.sh --smoke   (10 messages x 100 recipients over 20 domains)
# Results: bench/results/<timestamp>-campaign/ (table.md, runs.tsv, logs,
# command.txt with the exact command and commit).
# Loopback only; every process is stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=$ROOT/bench/peers
. "$HERE/bench-lib.sh"
BUILD=$ROOT/build MESSAGES=100 RCPTS=1000 DOMAINS=200 SIZE=10K SESSIONS=4 ISOLATION=0
SYSTEMS=ours,postfix TIMEOUT=300 OUT=""
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --rcpts) RCPTS=$2; shift 2 ;;
    --domains) DOMAINS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --isolation) ISOLATION=1; shift ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --smoke) MESSAGES=10 RCPTS=100 DOMAINS=20 TIMEOUT=120; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (port 25 and 53 on loopback, Postfix, cgroups)" >&2; exit 2; }
[ "$DOMAINS" -ge 1 ] && [ "$DOMAINS" -le 250 ] || { echo "$0: --domains 1..250" >&2; exit 2; }
[ $((RCPTS % DOMAINS)) = 0 ] || { echo "$0: --rcpts must be a multiple of --domains" >&2; exit 2; }
LOADGEN=$BUILD/bench/mxr-loadgen SINK=$BUILD/bench/mxr-sink RELAY_BIN=$BUILD/main/mxrelay
for f in "$LOADGEN" "$SINK" "$RELAY_BIN"; do [ -x "$f" ] || { echo "$0: $f not built" >&2; exit 2; }; done
command -v dnsmasq >/dev/null || { echo "$0: dnsmasq missing (scripts/install-deps.sh)" >&2; exit 2; }
[ -n "$OUT" ] || OUT=$HERE/results/$(date +%Y%m%d-%H%M%S)-campaign
mkdir -p "$OUT"
record_command "$OUT/command.txt" "$ROOT" "$0" "${ARGS[@]}"

DNS_IP=127.0.2.53
DNS_PID="" SINK_PID="" WORK="" WORK_SYS=""
stop_relay() {
  [ -n "$WORK" ] || return 0
  if [ "$WORK_SYS" = ours ]; then
    MXRELAY_BIN=$RELAY_BIN "$HERE/peer-scripts/ours-down.sh" --workdir "$WORK" >/dev/null 2>&1 || true
  else
    "$PEERS/postfix-down.sh" --workdir "$WORK" >/dev/null 2>&1 || true
  fi
  WORK=""
}
stop_sink() {
  if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  SINK_PID=""
}
cleanup() {
  stop_relay
  stop_sink
  [ -n "$DNS_PID" ] && kill -TERM "$DNS_PID" 2>/dev/null || true
}
trap cleanup EXIT

# --- loopback DNS: dN.campaign.test MX 10 mx.dN.campaign.test, A 127.0.1.N
domain_list=""
{
  echo "no-resolv"
  echo "no-hosts"
  for i in $(seq 1 "$DOMAINS"); do
    echo "mx-host=d$i.campaign.test,mx.d$i.campaign.test,10"
    echo "host-record=mx.d$i.campaign.test,127.0.1.$i"
    domain_list+="${domain_list:+,}d$i.campaign.test"
  done
} >"$OUT/dnsmasq.conf"
dnsmasq --keep-in-foreground --conf-file="$OUT/dnsmasq.conf" --listen-address=$DNS_IP \
  --bind-interfaces --port=53 --pid-file= --log-facility="$OUT/dnsmasq.log" &
DNS_PID=$!
for _ in $(seq 1 50); do
  dig +short +time=1 +tries=1 @"$DNS_IP" MX d1.campaign.test 2>/dev/null | grep -q mx.d1 && break
  python3 - "$DNS_IP" <<'PYEOF' 2>/dev/null && break
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(bytes([len(p)]) + p.encode() for p in "d1.campaign.test".split(".")) + b"\x00\x00\x0f\x00\x01"
s.sendto(q, (sys.argv[1], 53)); d = s.recv(512); sys.exit(0 if d[7] >= 1 else 1)
PYEOF
  sleep 0.1
done
kill -0 "$DNS_PID" 2>/dev/null || { echo "$0: dnsmasq did not start on $DNS_IP:53" >&2; exit 1; }

# Which domains are troubled in the isolation pass: every 10th is slow
# (10%), every 20th, shifted by 5, answers 421 (5%).
trouble() {  # index -> "", "slow" or "tempfail"
  local i=$1
  if [ $((i % 10)) = 0 ]; then echo slow; elif [ $((i % 20)) = 5 ]; then echo tempfail; fi
}
start_sink() {  # pass(healthy|isolation) tag expected_healthy_messages
  local pass=$1 tag=$2 expect=$3 args=() i t
  for i in $(seq 1 "$DOMAINS"); do
    t=""
    [ "$pass" = isolation ] && t=$(trouble "$i")
    case "$t" in
      slow) spec="127.0.1.$i:25/slow=5000" ;;
      tempfail) spec="127.0.1.$i:25/tempfail" ;;
      *) spec="127.0.1.$i:25" ;;
    esac
    if [ "$i" = 1 ]; then args+=(--listen "$spec"); else args+=(--also-listen "$spec"); fi
  done
  rm -f "$OUT/$tag.sink.port"
  "$SINK" "${args[@]}" --port-file "$OUT/$tag.sink.port" --expect "$expect" --seconds "$TIMEOUT" \
    --report-every 1 --json >"$OUT/$tag.sink.json" 2>"$OUT/$tag.sink.err" &
  SINK_PID=$!
  for _ in $(seq 1 100); do [ -s "$OUT/$tag.sink.port" ] && break; sleep 0.05; done
  SINK_T0=$(date +%s.%N)
  [ -s "$OUT/$tag.sink.port" ] || { echo "$0: sink did not start: $(tail -3 "$OUT/$tag.sink.err")" >&2; exit 1; }
}
start_relay() {  # system
  local sys=$1 port out
  port=$(free_port)
  if [ "$sys" = ours ]; then
    out=$(MXRELAY_BIN=$RELAY_BIN "$HERE/peer-scripts/ours-up.sh" --port "$port" --sink-port 1 \
      --resolver "$DNS_IP:53" --mx-port 25)
  else
    # Postfix: MX lookups (no relayhost), its resolver pointed at dnsmasq.
    out=$(PEERBENCH_NAMESERVER=$DNS_IP "$PEERS/postfix-up.sh" --port "$port" --sink-port 1 \
      --set "relayhost =" --set "smtp_host_lookup = dns" --set "disable_dns_lookups = no" \
      --set "smtp_dns_support_level = enabled")
  fi
  WORK=$(echo "$out" | sed -n 's/^WORKDIR=//p' | tail -1)
  WORK_SYS=$sys
  RELAY_PORT=$port
}

printf 'system\tpass\tattempted\taccepted\trecipients_accepted\tdelivered_rcpts\thealthy_rcpts\thealthy_s\thealthy_rcpts_per_s\tall_s\trcpts_per_s\trelay_cpu_s\tcpu_us_per_rcpt\tloadgen_s\n' >"$OUT/runs.tsv"
PER_DOMAIN=$((RCPTS / DOMAINS))
run_pass() {  # system pass
  local sys=$1 pass=$2 tag=$1-$2 healthy_domains=$DOMAINS i
  if [ "$pass" = isolation ]; then
    healthy_domains=0
    for i in $(seq 1 "$DOMAINS"); do [ -z "$(trouble "$i")" ] && healthy_domains=$((healthy_domains + 1)); done
  fi
  # One transaction per domain per message (PER_DOMAIN <= 100 recipients each).
  local expect=$((MESSAGES * healthy_domains))
  echo "=== $tag: $MESSAGES messages x $RCPTS recipients over $DOMAINS domains ($healthy_domains healthy)" >&2
  start_sink "$pass" "$tag" "$expect"
  start_relay "$sys"
  local cpu0 t0 t1
  cpu0=$(cg_cpu "$WORK")
  t0=$(date +%s.%N)
  set +e
  "$LOADGEN" --server "127.0.0.1:$RELAY_PORT" --sessions "$SESSIONS" --pipelining --size "$SIZE" \
    --rcpts "$RCPTS" --domains "$domain_list" --messages "$MESSAGES" --seconds "$TIMEOUT" \
    --drain-seconds 30 --json -q >"$OUT/$tag.loadgen.json" 2>"$OUT/$tag.loadgen.err"
  set -e
  t1=$(date +%s.%N)
  # The sink exits once every healthy transaction arrived (or at --timeout).
  for _ in $(seq 1 $((TIMEOUT * 10))); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.1; done
  sleep 1  # the relay's bookkeeping after the last delivery
  local cpu1; cpu1=$(cg_cpu "$WORK")
  stop_relay
  stop_sink
  python3 - "$OUT" "$tag" "$sys" "$pass" "$t0" "$t1" "$SINK_T0" "$cpu0" "$cpu1" >>"$OUT/runs.tsv" <<'PYEOF'
import json, sys
out, tag, system, pazz, t0, t1, sink_t0, c0, c1 = sys.argv[1:10]
lg = json.load(open("%s/%s.loadgen.json" % (out, tag)))
sk = json.load(open("%s/%s.sink.json" % (out, tag)))
start = float(t0) - float(sink_t0)  # load start, in the sink's clock
ls = sk.get("listeners", [])
healthy = [l for l in ls if not l["slow_ms"] and not l["tempfail"]]
h_rcpts = sum(l["recipients"] for l in healthy)
h_end = max([l["last_message_s"] or 0 for l in healthy] or [0])
a_end = max([l["last_message_s"] or 0 for l in ls] or [0])
h_s = max(1e-6, h_end - start)
a_s = max(1e-6, a_end - start)
cpu = float(c1) - float(c0)
rc = sk["recipients"]
print("\t".join(str(x) for x in [
    system, pazz, lg["attempted"], lg["acknowledged"], lg["recipients_accepted"], rc, h_rcpts,
    "%.2f" % h_s, "%.0f" % (h_rcpts / h_s), "%.2f" % a_s, "%.0f" % (rc / a_s), "%.2f" % cpu,
    "%.1f" % (cpu * 1e6 / rc if rc else 0), "%.2f" % (float(t1) - float(t0))]))
PYEOF
  tail -1 "$OUT/runs.tsv" >&2
}

IFS=, read -r -a SYS_LIST <<<"$SYSTEMS"
for sys in "${SYS_LIST[@]}"; do
  run_pass "$sys" healthy
  [ "$ISOLATION" = 1 ] && run_pass "$sys" isolation
done

python3 - "$OUT/runs.tsv" "$ISOLATION" >"$OUT/table.md" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
get = {(r["system"], r["pass"]): r for r in rows}
print("| system | pass | recipients accepted | delivered | time (s) | delivered rcpt/s | relay CPU / rcpt | healthy domains' rcpt/s |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %s | %s | **%s** | %s us | %s |" % (
        r["system"], r["pass"], r["recipients_accepted"], r["delivered_rcpts"], r["all_s"],
        r["rcpts_per_s"], r["cpu_us_per_rcpt"], r["healthy_rcpts_per_s"]))
o, p = get.get(("ours", "healthy")), get.get(("postfix", "healthy"))
if o and p and float(p["rcpts_per_s"]):
    print("\ncampaign: mxrelay / Postfix delivered recipients/s = %.1fx (target >= 10x); relay CPU per recipient %s vs %s us" % (
        float(o["rcpts_per_s"]) / float(p["rcpts_per_s"]), o["cpu_us_per_rcpt"], p["cpu_us_per_rcpt"]))
if sys.argv[2] == "1":
    for s in ("ours", "postfix"):
        h, i = get.get((s, "healthy")), get.get((s, "isolation"))
        if h and i:
            # Healthy domains' rate in the isolation pass against the same
            # domains in the all-healthy pass (their share of its recipients).
            # Same recipients, same domains: the rate ratio is the ratio of
            # the times until their last message.
            print("isolation %s: healthy domains keep %.0f%% of their all-healthy rate (target >= 90%%): their last message after %s s, against %s s with every domain healthy" % (
                s, 100.0 * float(h["all_s"]) / float(i["healthy_s"]), i["healthy_s"], h["all_s"]))
PYEOF
cat "$OUT/table.md"
echo "results in $OUT"
