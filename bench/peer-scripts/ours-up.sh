#!/usr/bin/env bash
# Plug-in for bench/peers (bench-peers.sh --scripts-dir THIS_DIR):
# starts mxrelay listening on 127.0.0.1:PORT (plain SMTP, loopback trusted:
# smtp-source cannot AUTH) with a fresh spool in a work dir.
#
# Usage: ours-up.sh --port P --sink-port S [--workdir DIR] [--threads N]
#                   [--metrics-listen IP:PORT]   (default: the relay's, 127.0.0.1:9465)
#                   [--tls-cert PEM --tls-key PEM --users FILE]
#   (the last three: a STARTTLS listener requiring AUTH from everyone, with
#    this certificate and users file (name:crypt-hash lines), as a
#    submission port is run; nobody is trusted by address)
#                   [--resolver IP:PORT --mx-port N]
#   (MX delivery through this loopback DNS server to port N instead of the
#    static route to the sink: bench/campaign.sh)
#                   [--delivery-set 'key = value']...   (more [delivery] keys)
# (environment MXRELAY_COMMIT_DELAY_US sets spool.commit_delay_us for A/B runs;
#  MXRELAY_EXTRA_CONFIG names a TOML file appended to the config, e.g. a
#  [dkim] section: bench/dkim-bench.sh)
# Prints WORKDIR=<dir> last; stop with ours-down.sh --workdir DIR.
#
# Every message is delivered to 127.0.0.1:S through a static route (no DNS,
# no TLS), as the harness's contract asks.
set -euo pipefail
PEERS=${PEERS_DIR:-$(cd "$(dirname "$0")/../peers" && pwd)}
. "$PEERS/lib/common.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${MXRELAY_BIN:-$HERE/../../build/main/mxrelay}
PORT=12525 SINK_PORT=12526 WORKDIR="" THREADS=0 METRICS="" CERT="" KEY="" USERS="" RESOLVER="" MX_PORT=25 DELIVERY_SET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --sink-port) SINK_PORT=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --metrics-listen) METRICS=$2; shift 2 ;;
    --tls-cert) CERT=$2; shift 2 ;;
    --tls-key) KEY=$2; shift 2 ;;
    --users) USERS=$2; shift 2 ;;
    --resolver) RESOLVER=$2; shift 2 ;;
    --mx-port) MX_PORT=$2; shift 2 ;;
    --delivery-set) DELIVERY_SET+="$2"$'\n'; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
[ -x "$BIN" ] || die "mxrelay binary not found at $BIN (build first or set MXRELAY_BIN)"
port_in_use "$PORT" && die "127.0.0.1:$PORT already in use"
if [ -n "$CERT$KEY$USERS" ] && { [ -z "$CERT" ] || [ -z "$KEY" ] || [ -z "$USERS" ]; }; then
  die "--tls-cert, --tls-key and --users go together"
fi
[ -n "$WORKDIR" ] || WORKDIR=$(mktemp -d -t peerbench-mxrelay.XXXXXX)
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
cat >"$WORKDIR/mxrelay.toml" <<CFG
hostname = "relay.bench.invalid"
data_dir = "$WORKDIR/data"
threads = $THREADS
trusted_networks = $( [ -n "$CERT" ] && echo '[]' || echo '["127.0.0.0/8"]' )
[log]
level = "warn"
[limits]
max_connections_per_ip = 100000
[[listener]]
name = "bench"
address = "127.0.0.1"
port = $PORT
mode = "$( [ -n "$CERT" ] && echo starttls || echo plain )"
$( [ -n "$CERT" ] && printf '[tls]\ncert_file = "%s"\nkey_file = "%s"\n[auth]\nusers_file = "%s"\n' "$CERT" "$KEY" "$USERS" )
$( [ -n "${MXRELAY_COMMIT_DELAY_US:-}" ] && printf '[spool]\ncommit_delay_us = %s\n' "$MXRELAY_COMMIT_DELAY_US" )
$( [ -n "$METRICS" ] && printf '[metrics]\nlisten = "%s"\n' "$METRICS" )
[admin_api]
enabled = false   # a fixed port by default: benchmark relays never need it
[delivery]
max_connections_per_site = 20
deny_networks = []  # the sink is on loopback, which the default refuses
$DELIVERY_SET$( if [ -n "$RESOLVER" ]; then printf 'resolver = "%s"\nport = %s\ntls = "none"\n' "$RESOLVER" "$MX_PORT"; else
  printf '[[route]]\ndomain = "*"\nhost = "127.0.0.1"\nport = %s\ntls = "none"\n' "$SINK_PORT"; fi )
CFG
if [ -n "${MXRELAY_EXTRA_CONFIG:-}" ]; then cat "$MXRELAY_EXTRA_CONFIG" >>"$WORKDIR/mxrelay.toml"; fi
mkdir -p "$WORKDIR/config"
cp "$WORKDIR/mxrelay.toml" "$WORKDIR/config/"
# No stop command: the launcher SIGTERMs the relay by PID (graceful drain).
start_launched "$WORKDIR/relay.pid" "$WORKDIR/relay.log" "" -- \
  "$BIN" run -c "$WORKDIR/mxrelay.toml"
for i in $(seq 1 100); do
  port_in_use "$PORT" && break
  sleep 0.1
done
port_in_use "$PORT" || die "mxrelay did not start listening on $PORT: $(tail -5 "$WORKDIR/relay.log")"
echo "WORKDIR=$WORKDIR"
