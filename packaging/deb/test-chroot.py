#!/usr/bin/env python3
"""Package life-cycle test in a fresh Debian 12 minbase chroot (run as root).

    packaging/deb/test-chroot.py [--skip-build] [--keep]

1. builds the package twice with scripts/build-deb.sh: revision 1 and a
   rebuilt revision 2 (the upgrade target);
2. `debootstrap --variant=minbase bookworm` into a new directory under
   /var/tmp (MXRELAY_DEBIAN_MIRROR, default http://deb.debian.org/debian;
   MXRELAY_DEBOOTSTRAP_CACHE=DIR: debootstrap into DIR once, then start each
   run from a copy of it);
3. `apt-get install ./mxrelay_..-1.deb` in it: user, directories, modes,
   conffile, unit enabled, and the unit's ExecCondition refusing the shipped
   (all commented) configuration;
4. writes a test configuration into the conffile as an operator would
   (a plain listener on a free loopback port, a static route to a loopback
   sink, deny_networks = []), starts the relay as user mxrelay (there is no
   systemd in a chroot: the test does what the unit does) and relays a
   message to the sink (tests/integration/sink.py, run outside the chroot:
   same network namespace);
5. makes the sink answer 451 and submits a second message, which stays
   queued; upgrades to revision 2 while the relay runs, then stops it with
   SIGTERM (the drain systemd's restart does) and starts the new binary:
   the message must still be queued, the configuration unchanged, and it
   must be delivered once the sink accepts again;
6. queues a third message, `apt-get remove` (must say 1 message is queued,
   keep spool and config), `apt-get purge` (must say it deletes 1 message,
   remove /var/lib/mxrelay and /etc/mxrelay).

Every wait is bounded; processes are stopped by PID; the chroot's /proc is
unmounted and the chroot deleted at the end (--keep leaves it).
"""

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from sink import Sink  # noqa: E402
from relayctl import make_message, submit  # noqa: E402

MIRROR = os.environ.get("MXRELAY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = os.environ.get("MXRELAY_DEBOOTSTRAP_CACHE", "")
BUILD_DIR = os.path.join(TOP, os.environ.get("MXRELAY_DEB_BUILD_DIR", "build-deb"))
T0 = time.monotonic()


def log(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def run(cmd, timeout=900, check=True, env=None, quiet=False):
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, env=env)
    out = p.stdout
    if not quiet or p.returncode != 0:
        for line in out.rstrip("\n").splitlines()[-40:]:
            print("    " + line, flush=True)
    if check and p.returncode != 0:
        raise SystemExit("FAILED (exit %d): %s" % (p.returncode, " ".join(cmd)))
    return out


def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
    log("ok: " + what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            log("ok: " + what)
            return
        time.sleep(0.2)
    raise SystemExit("FAILED: timed out after %ss waiting for %s" % (timeout, what))


def build(release):
    env = dict(os.environ, MXRELAY_DEB_RELEASE=str(release))
    out = run([os.path.join(TOP, "scripts", "build-deb.sh")], timeout=3600, env=env, quiet=True)
    deb = out.strip().splitlines()[-1]
    check(deb.endswith("-%d_amd64.deb" % release) and os.path.exists(deb), "built " + deb)
    keep = os.path.join(BUILD_DIR, "test-chroot", os.path.basename(deb))
    os.makedirs(os.path.dirname(keep), exist_ok=True)
    shutil.copy(deb, keep)
    return keep


class Chroot:
    def __init__(self, root):
        self.root = root
        self.proc_mounted = False

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def run(self, *cmd, **kw):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LC_ALL": "C.UTF-8", "HOME": "/root"}
        return run(["chroot", self.root, *cmd], env=env, **kw)

    def apt(self, *args, **kw):
        # DPkg::Path: apt runs dpkg with this PATH (default without /usr/local: the shims below).
        return self.run("apt-get", "-y", "-o", "Dpkg::Options::=--force-confold",
                        "-o", "DPkg::Path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args, **kw)

    def mounts(self):
        with open("/proc/mounts") as f:
            return [l.split()[1] for l in f if l.split()[1].startswith(self.root.rstrip("/") + "/")]

    def cleanup(self, keep):
        if self.proc_mounted:
            subprocess.run(["umount", "-l", self.path("/proc")], check=False)
        if keep:
            log("kept chroot " + self.root)
            return
        left = self.mounts()
        if left:
            log("NOT deleting %s: still mounted: %s" % (self.root, left))
            return
        shutil.rmtree(self.root, ignore_errors=True)


def make_chroot():
    root = tempfile.mkdtemp(prefix="mxrelay-deb-test.", dir="/var/tmp")
    os.chmod(root, 0o755)  # mkdtemp's 0700 would be the chroot's "/": user mxrelay could reach nothing
    if CACHE:
        if not os.path.isdir(os.path.join(CACHE, "usr")):
            run(["debootstrap", "--variant=minbase", "bookworm", CACHE, MIRROR], timeout=1800, quiet=True)
        run(["cp", "-a", CACHE + "/.", root])
    else:
        run(["debootstrap", "--variant=minbase", "bookworm", root, MIRROR], timeout=1800, quiet=True)
    ch = Chroot(root)
    shutil.copy("/etc/resolv.conf", ch.path("/etc/resolv.conf"))
    # Nothing may start services in the chroot (there is no systemd anyway).
    with open(ch.path("/usr/sbin/policy-rc.d"), "w") as f:
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(ch.path("/usr/sbin/policy-rc.d"), 0o755)
    subprocess.run(["mount", "-t", "proc", "proc", ch.path("/proc")], check=True)
    ch.proc_mounted = True
    return ch


class RelayProc:
    """The relay as the unit runs it: user mxrelay, check-config first."""

    def __init__(self, ch, logfile):
        self.ch, self.logfile, self.proc, self.offset = ch, logfile, None, 0

    def start(self):
        self.ch.run("setpriv", "--reuid=mxrelay", "--regid=mxrelay", "--init-groups",
                    "/usr/bin/mxrelay", "check-config", "-c", "/etc/mxrelay/mxrelay.toml")
        self.offset = os.path.getsize(self.logfile) if os.path.exists(self.logfile) else 0
        out = open(self.logfile, "a")
        # chroot and setpriv exec: the PID is the relay's.
        self.proc = subprocess.Popen(
            ["chroot", self.ch.root, "setpriv", "--reuid=mxrelay", "--regid=mxrelay", "--init-groups",
             "/usr/bin/mxrelay", "run", "-c", "/etc/mxrelay/mxrelay.toml"],
            stdout=out, stderr=subprocess.STDOUT, cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        out.close()
        log("relay started, pid %d" % self.proc.pid)
        wait_for(lambda: "event=ready" in self.text() or self.proc.poll() is not None, 30, "relay ready")
        check(self.proc.poll() is None, "relay running")

    def text(self):
        with open(self.logfile, errors="replace") as f:
            f.seek(self.offset)
            return f.read()

    def stop(self):
        """SIGTERM (what systemctl stop/restart sends) and a bounded wait for the drain."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise SystemExit("FAILED: relay did not exit within 60 s of SIGTERM")
        check(rc == 0, "relay drained and exited 0 on SIGTERM (exit %d)" % rc)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def queued(ch):
    out = ch.run("setpriv", "--reuid=mxrelay", "--regid=mxrelay", "--init-groups",
                 "/usr/bin/mxrelay", "queue", "summary", "-c", "/etc/mxrelay/mxrelay.toml", quiet=True)
    m = re.search(r"^messages: (\d+)$", out, re.M)
    check(m is not None, "queue summary readable")
    return int(m.group(1))


def stat(ch, p):
    st = os.stat(ch.path(p))
    with open(ch.path("/etc/passwd")) as f:
        users = {int(l.split(":")[2]): l.split(":")[0] for l in f if l.count(":") >= 6}
    with open(ch.path("/etc/group")) as f:
        groups = {int(l.split(":")[2]): l.split(":")[0] for l in f if l.count(":") >= 3}
    return "%s:%s %o" % (users.get(st.st_uid, st.st_uid), groups.get(st.st_gid, st.st_gid),
                         st.st_mode & 0o7777)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-build", action="store_true",
                    help="use the .debs a previous run left in build-deb/test-chroot/")
    ap.add_argument("--keep", action="store_true", help="keep the chroot")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (debootstrap, chroot)")

    if args.skip_build:
        deb1, deb2 = (os.path.join(BUILD_DIR, "test-chroot", "mxrelay_0.1.0-%d_amd64.deb" % r) for r in (1, 2))
    else:
        deb2 = build(2)
        deb1 = build(1)  # last, so build-deb/ is left configured for revision 1
    ch = make_chroot()
    relay = None
    sink = None
    try:
        for d in (deb1, deb2):
            shutil.copy(d, ch.path("/tmp"))
        ch.apt("update", quiet=True)
        # No systemd runs in the chroot. To exercise the maintainer scripts'
        # "systemd is running" branch anyway, /run/systemd/system exists and
        # systemctl / deb-systemd-invoke are shims earlier in dpkg's PATH
        # (/usr/local/bin) that only record their arguments: the test then
        # performs what each recorded request means for the relay.
        os.makedirs(ch.path("/run/systemd/system"), exist_ok=True)
        for shim in ("systemctl", "deb-systemd-invoke"):
            with open(ch.path("/usr/local/bin/" + shim), "w") as f:
                f.write('#!/bin/sh\necho "%s $*" >>/var/log/systemd-calls\nexit 0\n' % shim)
            os.chmod(ch.path("/usr/local/bin/" + shim), 0o755)

        def systemd_calls():
            path = ch.path("/var/log/systemd-calls")
            calls = open(path).read().splitlines() if os.path.exists(path) else []
            if os.path.exists(path):
                os.unlink(path)
            log("systemd requests: %s" % calls)
            # deb-systemd-helper reloads by itself too; what matters is that a
            # reload happens and which service actions are asked for, in order.
            return (any(c.endswith("daemon-reload") for c in calls),
                    [c for c in calls if c.startswith("deb-systemd-invoke")])

        # --- install --------------------------------------------------------
        ch.apt("install", "/tmp/" + os.path.basename(deb1))
        check(systemd_calls() == (True, ["deb-systemd-invoke start mxrelay.service"]),
              "install: daemon-reload, start (skipped by ExecCondition until configured)")
        check(ch.run("dpkg-query", "-W", "-f=${Status} ${Version}", "mxrelay", quiet=True)
              == "install ok installed 0.1.0-1", "0.1.0-1 installed")
        ch.run("id", "mxrelay")
        check(stat(ch, "/var/lib/mxrelay") == "mxrelay:mxrelay 700", "/var/lib/mxrelay mxrelay:mxrelay 0700")
        check(stat(ch, "/etc/mxrelay/mxrelay.toml") == "root:mxrelay 640", "conffile root:mxrelay 0640")
        conffiles = ch.run("dpkg-query", "-W", "-f=${Conffiles}", "mxrelay", quiet=True)
        check("/etc/mxrelay/mxrelay.toml" in conffiles, "mxrelay.toml is a conffile")
        with open(ch.path("/etc/mxrelay/mxrelay.toml")) as f:
            shipped = f.read()
        check(all(not l.strip() or l.startswith("#") for l in shipped.splitlines()),
              "every line of the shipped config is a comment")
        check(os.path.islink(ch.path("/etc/systemd/system/multi-user.target.wants/mxrelay.service")),
              "unit enabled (multi-user.target.wants symlink)")
        for p in ("/usr/bin/mxrelay", "/lib/systemd/system/mxrelay.service",
                  "/usr/share/mxrelay/grafana/mxrelay-dashboard.json", "/usr/share/mxrelay/prometheus/alerts.yml",
                  "/usr/share/doc/mxrelay/CONFIG.md", "/usr/share/doc/mxrelay/copyright",
                  "/usr/share/man/man8/mxrelay.8.gz"):
            check(os.path.exists(ch.path(p)), p + " installed")
        with open(ch.path("/lib/systemd/system/mxrelay.service")) as f:
            cond = re.search(r"^ExecCondition=(.*)$", f.read(), re.M).group(1)
        argv = ["/bin/grep", "-Eq", "^[[:space:]]*data_dir[[:space:]]*=", "/etc/mxrelay/mxrelay.toml"]
        check(cond == " ".join(argv[:2]) + ' "' + argv[2] + '" ' + argv[3], "ExecCondition is the grep tested here")
        rc = subprocess.run(["chroot", ch.root, *argv]).returncode
        check(rc == 1, "ExecCondition skips the start with the shipped config (exit %d)" % rc)

        # --- configure and relay ------------------------------------------------
        relay_port, sink_port = free_port(), free_port()
        state = {"tempfail": False}
        sink = Sink("127.0.0.1", sink_port,
                    rcpt=lambda a: "451 4.3.0 sink says later" if state["tempfail"] else None)
        sink.start()
        config = f"""# written by packaging/deb/test-chroot.py
hostname = "relay.chroot.test"
data_dir = "/var/lib/mxrelay"
trusted_networks = ["127.0.0.1/32"]

[[listener]]
address = "127.0.0.1"
port = {relay_port}
mode = "plain"

[delivery]
tls = "none"
deny_networks = []
retry_initial = 1
retry_max = 2
site_backoff_initial = 1
site_backoff_max = 2
drain_timeout = 5

[[route]]
domain = "*"
host = "127.0.0.1"
port = {sink_port}

[metrics]
enabled = false
"""
        with open(ch.path("/etc/mxrelay/mxrelay.toml"), "w") as f:
            f.write(config)
        rc = subprocess.run(["chroot", ch.root, *argv]).returncode
        check(rc == 0, "ExecCondition lets the configured unit start")
        logfile = os.path.join(BUILD_DIR, "test-chroot", "relay.log")
        if os.path.exists(logfile):
            os.unlink(logfile)
        relay = RelayProc(ch, logfile)
        relay.start()
        submit(relay_port, "a@client.test", ["one@dest.test"], make_message("a@client.test", ["one@dest.test"], "m1"))
        sink.wait_messages(1, timeout=30)
        check(b"token: m1" in sink.messages[0].data, "message 1 relayed to the loopback sink")

        # --- a queued message across the upgrade -------------------------------
        state["tempfail"] = True
        qid = submit(relay_port, "a@client.test", ["two@dest.test"], make_message("a@client.test", ["two@dest.test"], "m2"))
        log("message 2 queued as " + qid)
        wait_for(lambda: re.search(r"event=deferred\b.*" + qid, relay.text()) is not None, 30,
                 "message 2 deferred (sink answers 451)")
        ch.apt("install", "/tmp/" + os.path.basename(deb2))
        check(systemd_calls() == (True, ["deb-systemd-invoke try-restart mxrelay.service"]),
              "upgrade: no stop before unpacking; daemon-reload, try-restart after")
        check(ch.run("dpkg-query", "-W", "-f=${Version}", "mxrelay", quiet=True) == "0.1.0-2", "upgraded to 0.1.0-2")
        with open(ch.path("/etc/mxrelay/mxrelay.toml")) as f:
            check(f.read() == config, "configuration kept by the upgrade")
        check(stat(ch, "/var/lib/mxrelay") == "mxrelay:mxrelay 700", "/var/lib/mxrelay still mxrelay:mxrelay 0700")
        check(stat(ch, "/etc/mxrelay/mxrelay.toml") == "root:mxrelay 640", "conffile still root:mxrelay 0640")
        # The restart postinst asks systemd for: stop (drain), start the new binary.
        relay.stop()
        check("event=shutdown_begin" in relay.text(), "drain logged (event=shutdown_begin)")
        check(queued(ch) == 1, "message 2 still queued after the upgrade (new binary reads the spool)")
        state["tempfail"] = False
        relay.start()
        sink.wait_messages(2, timeout=30)
        check(any(b"token: m2" in m.data for m in sink.messages), "message 2 delivered after the upgrade")
        wait_for(lambda: queued(ch) == 0, 20, "queue empty")

        # --- remove keeps, purge deletes ---------------------------------------
        state["tempfail"] = True
        qid = submit(relay_port, "a@client.test", ["three@dest.test"], make_message("a@client.test", ["three@dest.test"], "m3"))
        wait_for(lambda: re.search(r"event=deferred\b.*" + qid, relay.text()) is not None, 30, "message 3 deferred")
        relay.stop()  # what prerm's `deb-systemd-invoke stop` does under systemd
        out = ch.apt("remove", "mxrelay")
        check(systemd_calls() == (True, ["deb-systemd-invoke stop mxrelay.service"]),
              "remove: stop before the files go, daemon-reload after")
        check("mxrelay: 1 message(s) still queued in /var/lib/mxrelay/spool" in out, "remove says 1 message is queued")
        check(not os.path.exists(ch.path("/usr/bin/mxrelay")), "binary removed")
        check(os.path.isdir(ch.path("/var/lib/mxrelay/spool")), "remove keeps the spool")
        with open(ch.path("/etc/mxrelay/mxrelay.toml")) as f:
            check(f.read() == config, "remove keeps the configuration")
        out = ch.apt("purge", "mxrelay")
        check(systemd_calls()[1] == [], "purge: no service actions")
        check("deleting 1 message(s) still queued" in out, "purge says it deletes 1 queued message")
        check(not os.path.exists(ch.path("/var/lib/mxrelay")), "purge deletes /var/lib/mxrelay")
        check(not os.path.exists(ch.path("/etc/mxrelay")), "purge deletes /etc/mxrelay")
        check(not os.path.lexists(ch.path("/etc/systemd/system/multi-user.target.wants/mxrelay.service")),
              "purge removes the enable symlink")
        st = subprocess.run(["chroot", ch.root, "dpkg-query", "-W", "-f=${Status}", "mxrelay"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        check(st in ("", "unknown ok not-installed"), "package gone from dpkg's database (%r)" % st)
        log("PASS")
    finally:
        if relay:
            relay.kill()
        if sink:
            sink.stop()
        ch.cleanup(args.keep)


if __name__ == "__main__":
    main()
