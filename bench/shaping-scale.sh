#!/usr/bin/env bash
# Traffic shaping at scale (issue 17, "Performance (benchmark)"): 10,000
# sites and 1 M queued recipients with shaping rules on, against the same
# run with shaping off: relay CPU per delivery and end-to-end delivery rate
# (target: on >= 90% of off).
#
#   mxr-spool-fill --domains D: R deferred messages, one recipient each,
#       u<N>@d<1 + N % D>.bench.test, next attempt = fill time (due at once),
#       ~--size each, unsynced fill. Filled ONCE into a master spool; every
#       run gets its own copy (cp), so every run starts from the same queue.
#   bench/mx_dns.py on --dns (default 127.0.2.117):53, a fresh one per run:
#       dN.bench.test MX 10 mx.dN.bench.test; mx.dN.bench.test A
#       127.0.3.(1 + (N-1) % 100). Every domain has its own MX host, so it is
#       its own site (delivery/README.md: a site = MX host set + policy).
#       Not dnsmasq: with its default socket buffer it drops most of the
#       ~10,000-query burst of a relay starting on 10,000 due sites (see
#       mx_dns.py); the run would measure DNS retries, not shaping.
#   one mxr-sink listening on 127.0.3.1-100:25 (--also-listen), --expect R.
#   mxrelay started on the copied spool with delivery on; it resolves every
#       domain there and delivers to the sink.
#
# Two configs, identical except [shaping]:
#   off: [shaping] shipped = false, no file: no rule anywhere.
#   on:  shipped = true (the provider rules compiled in, none matches
#        bench.test) + an operator file with [default] and
#        [provider.bench] mx_suffix = ["bench.test"]: every destination's
#        lookup walks domain -> MX host -> MX suffix (matches) -> default,
#        and every transaction goes through the path's GCRA limiter
#        (max_message_rate 100000/s per path: never throttles here, a path
#        does a few hundred per second at most). Connection limit and
#        deliveries per connection equal the off run's [delivery] values, so
#        the rules change no connection pattern, only the code on the path.
#   Both: retry_initial 1 s, site_backoff_initial 1 s (caps 5 s) and
#   dns_timeout_ms 20000 (--dns-timeout-ms): the relay sends one query burst
#   for all due sites at once with no cap on queries in flight; answers the
#   relay's UDP socket drops (default buffer) time out, and with the shipped
#   300 s retry the run would wait minutes for them. mx_dns.py paces its
#   answers to --dns-rate (default 4,000/s; at 20,000/s the relay's socket
#   dropped ~11,000 answers of a 10,000-site start: UDP RcvbufErrors), so a
#   10,000-site start spends ~7 s resolving (30,000 MX/A/AAAA queries). Deferrals are counted
#   per run (deferred column) and their retries are in both configs' figures.
#   Both: max_connections_per_site = initial_window = 1 (10,000 sites ->
#   10,000 concurrent connections at most, within the fd limit), tls none,
#   mta_sts off, metrics off.
#
# Per run: time from the relay's start to the sink's last message (queue
# open + schedule rebuild + delivery of everything), delivered recipients /
# that time, relay CPU = utime + stime of the relay process (all threads,
# /proc/PID/stat) read as soon as the sink has everything (the sink's <= 2 s
# linger included), CPU per delivered recipient and per thread name; from
# the relay's log (one event=delivered line per recipient, both configs) the
# times of the 10/50/90/99th percent delivery and the rate between 10% and
# 90% (the compared rate: it excludes the DNS start and the tail of
# recipients whose lookup answer was dropped and retried). Runs interleaved:
# off on on off off on ... (--rounds pairs), medians, on/off ratios.
#
# Usage (root: ports 25 and 53 on loopback):
#   bench/shaping-scale.sh [--domains 10000] [--rcpts 1000000] [--rounds 2]
#       [--size 512] [--timeout 230] [--dns-rate 4000] [--dns-timeout-ms 20000] [--build DIR] [--relay-bin F]
#       [--fill-bin F] [--sink-bin F] [--dns IP] [--out DIR] [--keep]
#   bench/shaping-scale.sh --smoke   (1,000 domains, 20,000 recipients, 1 round)
# Results: bench/results/<timestamp>-shaping-scale/ (runs.tsv, table.md,
# command.txt, per-run logs). Loopback only; every process is stopped by
# PID; every wait is bounded (--timeout per run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build RELAY_BIN="" FILL_BIN="" SINK_BIN=""
DNS_TIMEOUT_MS=20000 DNS_RATE=4000 DOMAINS=10000 RCPTS=1000000 ROUNDS=2 SIZE=512 TIMEOUT=230 DNS_IP=127.0.2.117 OUT="" KEEP=0
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --domains) DOMAINS=$2; shift 2 ;;
    --rcpts) RCPTS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --relay-bin) RELAY_BIN=$2; shift 2 ;;
    --fill-bin) FILL_BIN=$2; shift 2 ;;
    --sink-bin) SINK_BIN=$2; shift 2 ;;
    --dns) DNS_IP=$2; shift 2 ;;
    --dns-timeout-ms) DNS_TIMEOUT_MS=$2; shift 2 ;;
    --dns-rate) DNS_RATE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --smoke) DOMAINS=1000 RCPTS=20000 ROUNDS=1 TIMEOUT=120; shift ;;
    -h|--help) sed -n '2,64p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (ports 25 and 53 on loopback)" >&2; exit 2; }
[ "$DOMAINS" -ge 1 ] && [ "$RCPTS" -ge "$DOMAINS" ] || { echo "$0: need 1 <= --domains <= --rcpts" >&2; exit 2; }
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 10 ] || { echo "$0: --rounds 1..10" >&2; exit 2; }
RELAY_BIN=${RELAY_BIN:-$BUILD/main/mxrelay}
FILL_BIN=${FILL_BIN:-$BUILD/bench/mxr-spool-fill}
SINK_BIN=${SINK_BIN:-$BUILD/bench/mxr-sink}
for f in "$RELAY_BIN" "$FILL_BIN" "$SINK_BIN"; do [ -x "$f" ] || { echo "$0: $f not built" >&2; exit 2; }; done
case "$("$FILL_BIN" --help 2>&1 || true)" in *--domains*) true ;; *) false ;; esac || { echo "$0: $FILL_BIN has no --domains (rebuild mxr-spool-fill)" >&2; exit 2; }
NEED_KB=$(( RCPTS * 3 * 2 ))  # master + one run copy, ~3 KB per 512-byte message with RocksDB overhead
# 10,000 connections on each side: raise the descriptor limit (inherited).
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -n "$OUT" ] || OUT=$HERE/results/$(date +%Y%m%d-%H%M%S)-shaping-scale
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
AVAIL_KB=$(df -Pk "$OUT" | awk 'NR==2{print $4}')
[ "$AVAIL_KB" -ge "$NEED_KB" ] || { echo "$0: $OUT: ${AVAIL_KB} KB free, ${NEED_KB} KB needed" >&2; exit 2; }
{
  echo "command: $0 ${ARGS[*]}"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified)')"
  echo "relay: $RELAY_BIN ($(stat -c %y "$RELAY_BIN" | cut -d. -f1)); fill: $FILL_BIN; sink: $SINK_BIN"
  echo "machine: $(nproc) CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg), fd limit $(ulimit -n)"
  echo "scale: $DOMAINS domains/sites, $RCPTS recipients (one per message), size $SIZE, $ROUNDS rounds"
} | tee "$OUT/command.txt"

DNS_PID="" SINK_PID="" RELAY_PID=""
stop_pid() {  # pid timeout_s: SIGTERM, bounded wait, SIGKILL, reap
  local pid=$1 t=$2 i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((t * 20))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$0: pid $pid still running after ${t}s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$RELAY_PID" 60
  stop_pid "$SINK_PID" 5
  stop_pid "$DNS_PID" 5
  [ "$KEEP" = 1 ] || rm -rf "$OUT/master" "$OUT/run"
}
trap cleanup EXIT

# --- loopback DNS: bench/mx_dns.py (one per run, so its query counts are the run's)
start_dns() {  # tag
  /usr/bin/python3 "$HERE/mx_dns.py" --listen "$DNS_IP" --port 53 --zone bench.test --domains "$DOMAINS" \
    --spread 100 --rate "$DNS_RATE" 2>"$OUT/$1.dns.err" &
  DNS_PID=$!
  for _ in $(seq 1 50); do dns_ok d1.bench.test && break; kill -0 "$DNS_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DNS_PID" 2>/dev/null && dns_ok "d$DOMAINS.bench.test" ||
    { echo "$0: DNS server did not answer on $DNS_IP:53 ($(tail -3 "$OUT/$1.dns.err" 2>/dev/null))" >&2; exit 1; }
}
dns_ok() {  # domain -> 0 when the server answers its MX
  python3 - "$DNS_IP" "$1" <<'PYEOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3)
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[2].split(".")) + b"\x00\x00\x0f\x00\x01"
s.sendto(q, (sys.argv[1], 53)); d = s.recv(512); sys.exit(0 if d[7] >= 1 else 1)
PYEOF
}

# --- the master spool (filled once)
mkdir -p "$OUT/master"
echo "== filling the master spool: $RCPTS messages over $DOMAINS domains"
"$FILL_BIN" --path "$OUT/master/spool" --count "$RCPTS" --domains "$DOMAINS" --domain bench.test \
  --days 0 --size "$SIZE" --no-sync 2>"$OUT/fill.err" | tee "$OUT/fill.txt" ||
  { echo "$0: fill failed: $(tail -2 "$OUT/fill.err")" >&2; exit 1; }
echo "master spool: $(du -sh "$OUT/master/spool" | cut -f1)" | tee -a "$OUT/fill.txt"

RELAY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$OUT/shaping-bench.toml" <<'TOML'
# bench/shaping-scale.sh "on": rules that match every destination and never
# throttle (a path delivers far below 100000/s); limits as the off run's.
[default]
max_message_rate = "100000/s"
max_burst = 100

[provider.bench]
mx_suffix = ["bench.test"]
connection_limit = 1
max_deliveries_per_connection = 1000
max_message_rate = "100000/s"
max_burst = 100
max_recipients_per_transaction = 100
TOML
write_config() {  # mode(on|off) -> $OUT/run/mxrelay.toml
  local shaping
  if [ "$1" = on ]; then
    shaping=$(printf '[shaping]\nshipped = true\nfile = "%s"\n' "$OUT/shaping-bench.toml")
  else
    shaping=$(printf '[shaping]\nshipped = false\n')
  fi
  cat >"$OUT/run/mxrelay.toml" <<CFG
hostname = "relay.bench.invalid"
data_dir = "$OUT/run/data"
trusted_networks = ["127.0.0.0/8"]
[log]
level = "info"
[[listener]]
name = "bench"
address = "127.0.0.1"
port = $RELAY_PORT
mode = "plain"
[metrics]
enabled = false
[delivery]
enabled = true
resolver = "$DNS_IP:53"
port = 25
tls = "none"
mta_sts = false
max_connections_per_site = 1
initial_window = 1
max_messages_per_connection = 1000
max_recipients_per_transaction = 100
dns_timeout_ms = $DNS_TIMEOUT_MS
retry_initial = 1
retry_max = 5
site_backoff_initial = 1
site_backoff_max = 5
deny_networks = []  # the sink is on loopback, which the default refuses
$shaping
CFG
}

sink_args=(--listen 127.0.3.1:25)
for i in $(seq 2 100); do sink_args+=(--also-listen "127.0.3.$i:25"); done

printf 'run\tmode\tdelivered_rcpts\tmessages\tconnections\tready_s\tend_s\trcpts_per_s\trelay_cpu_s\tcpu_us_per_rcpt\tload1\tdeferred\tdns_queries\tt10_s\tt50_s\tt90_s\tt99_s\tsteady_rcpts_per_s\tthread_cpu_s\n' >"$OUT/runs.tsv"
CLK=$(getconf CLK_TCK)
n=0
run_one() {  # mode
  local mode=$1 tag cpu t_end ok=1
  n=$((n + 1)); tag=$n-$mode
  echo "=== run $tag ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
  rm -rf "$OUT/run"; mkdir -p "$OUT/run/data"
  cp -a "$OUT/master/spool" "$OUT/run/data/spool"
  sync "$OUT/run/data/spool" 2>/dev/null || sync
  write_config "$mode"
  start_dns "$tag"
  rm -f "$OUT/run/sink.port"
  "$SINK_BIN" "${sink_args[@]}" --port-file "$OUT/run/sink.port" --expect "$RCPTS" --seconds "$TIMEOUT" \
    --json >"$OUT/$tag.sink.json" 2>"$OUT/$tag.sink.err" &
  SINK_PID=$!
  for _ in $(seq 1 100); do [ -s "$OUT/run/sink.port" ] && break; sleep 0.05; done
  [ -s "$OUT/run/sink.port" ] || { echo "$0: sink did not start: $(tail -3 "$OUT/$tag.sink.err")" >&2; exit 1; }
  local sink_t0; sink_t0=$(date +%s.%N)
  local t0; t0=$(date +%s.%N)
  "$RELAY_BIN" run -c "$OUT/run/mxrelay.toml" 2>"$OUT/$tag.relay.log" &
  RELAY_PID=$!
  # The sink exits once it has every message (after <= 2 s linger) or at --timeout.
  for _ in $(seq 1 $((TIMEOUT * 20))); do
    kill -0 "$SINK_PID" 2>/dev/null || break
    kill -0 "$RELAY_PID" 2>/dev/null || { echo "$0: relay exited: $(tail -5 "$OUT/$tag.relay.log")" >&2; ok=0; break; }
    sleep 0.05
  done
  if kill -0 "$RELAY_PID" 2>/dev/null; then
    cpu=$(awk -v c="$CLK" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); printf "%.2f", (f[12] + f[13]) / c }' "/proc/$RELAY_PID/stat")
    # CPU per thread name (the delivery loop vs ingress, spool, DNS...)
    for f in /proc/"$RELAY_PID"/task/*/stat; do cat "$f" 2>/dev/null; echo; done |
      awk -v c="$CLK" 'NF { n = $0; sub(/^[^(]*\(/, "", n); sub(/\).*$/, "", n); s = $0; sub(/^.*\) /, "", s);
        split(s, f, " "); t[n] += (f[12] + f[13]) / c } END { for (k in t) printf "%s=%.2f\n", k, t[k] }' |
      sort -t= -k2 -rn >"$OUT/$tag.threads.txt"
  else
    cpu=0; : >"$OUT/$tag.threads.txt"
  fi
  t_end=$(date +%s.%N)
  stop_pid "$RELAY_PID" 60; RELAY_PID=""
  stop_pid "$SINK_PID" 5; SINK_PID=""
  stop_pid "$DNS_PID" 5; DNS_PID=""
  [ "$ok" = 1 ] || exit 1
  python3 - "$OUT" "$tag" "$mode" "$t0" "$sink_t0" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/runs.tsv" <<'PYEOF'
import datetime, json, sys
out, tag, mode, t0, sink_t0, cpu, load = sys.argv[1:8]
t0, sink_t0, cpu = float(t0), float(sink_t0), float(cpu)
lines = open("%s/%s.sink.json" % (out, tag)).read().strip().splitlines()
sk = json.loads(lines[-1])
ls = sk.get("listeners", [])
last = max([l["last_message_s"] or 0 for l in ls] or [0])   # in the sink's clock
end = last - (t0 - sink_t0)                                 # since the relay's start
ready = None
for line in open("%s/%s.relay.log" % (out, tag), errors="replace"):
    if "event=ready" in line:
        ts = datetime.datetime.strptime(line.split()[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        ready = ts - t0
        break
rc = sk["recipients"]
# Delivery timeline from the relay's log (one event=delivered line per recipient).
def lts(line):
    return datetime.datetime.strptime(line.split()[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp() - t0
dl = [lts(line) for line in open("%s/%s.relay.log" % (out, tag), errors="replace") if "event=delivered " in line]
dl.sort()
q = lambda p: dl[max(0, int(len(dl) * p) - 1)] if dl else 0.0
t10, t50, t90, t99 = q(0.10), q(0.50), q(0.90), q(0.99)
steady = 0.8 * len(dl) / (t90 - t10) if t90 > t10 else 0.0
try:
    threads = ",".join(l.strip() for l in open("%s/%s.threads.txt" % (out, tag)) if l.strip())
except OSError:
    threads = "-"
deferred = sum(1 for line in open("%s/%s.relay.log" % (out, tag), errors="replace") if "event=deferred " in line)
try:
    dns = open("%s/%s.dns.err" % (out, tag)).read().strip().replace("mx_dns: queries ", "").replace(" ", ",")
except OSError:
    dns = "-"
print("\t".join(str(x) for x in [tag.split("-")[0], mode, rc, sk["messages"], sk["connections"],
    "%.2f" % ready if ready is not None else "-", "%.2f" % end, "%.0f" % (rc / end if end > 0 else 0),
    "%.2f" % cpu, "%.1f" % (cpu * 1e6 / rc if rc else 0), load, deferred, dns or "-",
    "%.1f" % t10, "%.1f" % t50, "%.1f" % t90, "%.1f" % t99, "%.0f" % steady, threads]))
PYEOF
  tail -1 "$OUT/runs.tsv"
}

for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do run_one "$mode"; done
done

python3 - "$OUT/runs.tsv" "$RCPTS" "$DOMAINS" >"$OUT/table.md" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
want = int(sys.argv[2])
for r in rows:  # the delivery loop's thread: scheduler, shaping, SMTP client, DNS callbacks
    th = dict(kv.split("=") for kv in r["thread_cpu_s"].split(",") if "=" in kv)
    d = float(th.get("mxr-delivery", 0))
    r["dthread_us"] = "%.1f" % (d * 1e6 / int(r["delivered_rcpts"])) if int(r["delivered_rcpts"]) else "0"
print("| run | shaping | delivered | connections | relay start -> 10% / 50% / 90% / 99% / last delivered (s) | rcpt/s 10%->90% | rcpt/s start->last | relay CPU (s) | CPU / rcpt | mxr-delivery thread CPU / rcpt | deferred (DNS timeouts) | load1 after |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %s | %s / %s / %s / %s / %s | **%s** | %s | %s | **%s us** | %s us | %s | %s |" % (r["run"], r["mode"],
          r["delivered_rcpts"], r["connections"], r["t10_s"], r["t50_s"], r["t90_s"], r["t99_s"], r["end_s"],
          r["steady_rcpts_per_s"], r["rcpts_per_s"], r["relay_cpu_s"], r["cpu_us_per_rcpt"], r["dthread_us"], r["deferred"], r["load1"]))
med = {}
for m in ("off", "on"):
    rs = [r for r in rows if r["mode"] == m]
    if rs:
        med[m] = (statistics.median(float(r["steady_rcpts_per_s"]) for r in rs),
                  statistics.median(float(r["cpu_us_per_rcpt"]) for r in rs), len(rs),
                  all(int(r["delivered_rcpts"]) == want for r in rs),
                  statistics.median(float(r["dthread_us"]) for r in rs))
        print("\n%s: median of %d runs: %.0f rcpt/s (10%%->90%% of deliveries), %.1f us relay CPU per delivered recipient (delivery thread %.1f us); every run delivered all %d: %s"
              % (m, med[m][2], med[m][0], med[m][1], med[m][4], want, "yes" if med[m][3] else "NO"), end="")
print()
if "off" in med and "on" in med:
    print("\nshaping on / off (%s sites): delivery rate (10%%->90%%) %.1f%% (target >= 90%%), CPU per delivery %.1f%% of off (%+.1f us), delivery thread %.1f%% (%+.1f us)"
          % (sys.argv[3], 100 * med["on"][0] / med["off"][0], 100 * med["on"][1] / med["off"][1], med["on"][1] - med["off"][1],
             100 * med["on"][4] / med["off"][4] if med["off"][4] else 0, med["on"][4] - med["off"][4]))
PYEOF
cat "$OUT/table.md"
echo "results in $OUT"
