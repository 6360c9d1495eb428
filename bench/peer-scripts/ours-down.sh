#!/usr/bin/env bash
# Stops an mxrelay started by ours-up.sh (by PID, via the harness launcher).
set -euo pipefail
PEERS=${PEERS_DIR:-$(cd "$(dirname "$0")/../peers" && pwd)}
. "$PEERS/lib/common.sh"
WORKDIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir) WORKDIR=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$WORKDIR" ] || die "--workdir required"
stop_launched "$WORKDIR/relay.pid"
rm -rf "$WORKDIR"
