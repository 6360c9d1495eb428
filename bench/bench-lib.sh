# Shell helpers the benchmark scripts share (sourced, not run):
#   . "$(dirname "$0")/bench-lib.sh"
# Loopback only; nothing here starts a process that outlives its caller.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds used so far by the cgroup of a relay started through
# bench/peers' launcher (WORKDIR/relay.pid.cgroup); 0 without one.
cg_cpu() {
  python3 - "$(cat "$1/relay.pid.cgroup" 2>/dev/null || echo none)" <<'PYEOF'
import os, sys
p = sys.argv[1]
try:
    print(int(open(os.path.join(p, "cpuacct.usage")).read()) / 1e9)
except OSError:
    try:
        for line in open(os.path.join(p, "cpu.stat")):
            if line.startswith("usage_usec"):
                print(int(line.split()[1]) / 1e6)
                break
        else:
            print(0)
    except OSError:
        print(0)
PYEOF
}

# Busy and idle jiffies of the whole machine: "busy idle".
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }

# Writes FILE: the exact command, the commit (and whether the tree was
# modified) and the machine's CPUs and load at the start.
record_command() {  # FILE ROOT COMMAND...
  local file=$1 root=$2
  shift 2
  {
    echo "command: $*"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (modified)')"
    echo "machine: $(nproc) CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$file"
}
