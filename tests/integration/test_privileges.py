"""Least privilege: started as root with `user = "nobody"`, the relay runs as
nobody with CAP_NET_BIND_SERVICE as its only capability, still binds a port
below 1024, and its spool (handed over to nobody) takes mail.
"""
import os
import pwd
import shutil
import socket
import tempfile
import unittest

import relayctl
from relayctl import Listener, RelayTestCase, make_message, submit

CAP_NET_BIND_SERVICE = 1 << 10


def free_privileged_port():
    for port in range(900, 1000):  # bounded
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise unittest.SkipTest("no free port below 1024 on 127.0.0.1")


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


@unittest.skipUnless(os.geteuid() == 0, "needs root to start the relay as root")
class PrivilegeTest(RelayTestCase):

    def test_runs_as_the_configured_user_with_only_net_bind_service(self):
        nobody = pwd.getpwnam("nobody")
        relay = self.new_relay(start=False, listeners=[Listener("low", "plain", port=free_privileged_port())],
                               trusted_networks=["127.0.0.0/8"])
        os.chmod(relay.workdir, 0o755)  # nobody must reach the config's directory
        os.chmod(relay.users_file, 0o644)
        relay.extra_top_level = 'user = "nobody"'
        relay._assign_ports = lambda: None  # keep the privileged port
        relay.start()
        st = proc_status(relay.pid)
        self.assertEqual(st["Uid"].split(), [str(nobody.pw_uid)] * 4)
        self.assertEqual(st["Gid"].split(), [str(nobody.pw_gid)] * 4)
        self.assertEqual(int(st["CapEff"], 16), CAP_NET_BIND_SERVICE)
        self.assertEqual(int(st["CapPrm"], 16), CAP_NET_BIND_SERVICE)
        self.assertEqual(int(st["CapInh"], 16), 0)
        relay.wait_log(r"event=privileges_dropped user=nobody", timeout=5)
        qid = submit(relay.port("low"), "a@client.test", ["b@dest.test"],
                     make_message("a@client.test", ["b@dest.test"], "as nobody"))
        self.assertIn(qid, relay.queue_by_id())
        spool = os.path.join(relay.data_dir, "spool")
        self.assertEqual(os.stat(spool).st_uid, nobody.pw_uid)
        self.assertEqual(relay.stop(), 0)

    def test_unknown_user_stops_the_start(self):
        relay = self.new_relay(start=False, listeners=[Listener("plain", "plain")])
        relay.extra_top_level = 'user = "no-such-user-mxrelay"'
        with self.assertRaises(RuntimeError) as cm:
            relay.start()
        self.assertIn("no such user", str(cm.exception))

    def outside_tree(self):
        """A root-owned directory with a root-owned 'shadow' file and sub/file:
        what a symlink planted by the previous (unprivileged) run points at."""
        outside = tempfile.mkdtemp(prefix="mxrelay-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        os.makedirs(os.path.join(outside, "sub"))
        for p in ("shadow", "shadow2", os.path.join("sub", "file")):
            with open(os.path.join(outside, p), "w") as f:
                f.write("root only\n")
        return outside

    def unstarted_relay_for_nobody(self):
        """A relay not started yet whose workdir and users file `nobody` can
        read, with an empty data_dir for the test to plant links in."""
        relay = self.new_relay(start=False, listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        os.chmod(relay.workdir, 0o755)
        os.chmod(relay.users_file, 0o644)
        os.makedirs(relay.data_dir)
        return relay

    def test_symlinks_and_hard_links_in_data_dir_are_not_followed(self):
        """Issue 15, item 5: data_dir is handed over (chown -R) at every start
        as root; links the previous run left there must not redirect it."""
        nobody = pwd.getpwnam("nobody")
        outside = self.outside_tree()
        relay = self.unstarted_relay_for_nobody()
        os.symlink(os.path.join(outside, "shadow"), os.path.join(relay.data_dir, "initial-credentials"))
        os.symlink(os.path.join(outside, "sub"), os.path.join(relay.data_dir, "tls"))
        os.link(os.path.join(outside, "shadow2"), os.path.join(relay.data_dir, "hard"))
        relay.extra_top_level = 'user = "nobody"'
        relay.start()
        for p in ("shadow", "shadow2", "sub", os.path.join("sub", "file")):
            self.assertEqual(os.lstat(os.path.join(outside, p)).st_uid, 0, p + " was handed over")
        self.assertEqual(os.lstat(os.path.join(relay.data_dir, "initial-credentials")).st_uid, nobody.pw_uid)
        relay.wait_log(r"event=hand_over_skipped path=\S+/hard owner_uid=0 links=2", timeout=5)
        self.assertEqual(relay.stop(), 0)

    def test_spool_path_that_is_a_symlink_is_refused(self):
        """A spool.path inside data_dir that the previous run replaced by a
        symlink to a root-owned directory: before, the relay followed it and
        handed that directory's contents over to nobody."""
        outside = self.outside_tree()
        relay = self.unstarted_relay_for_nobody()
        link = os.path.join(relay.data_dir, "spool")
        os.symlink(outside, link)
        relay.spool = {"path": link}
        relay.extra_top_level = 'user = "nobody"'
        with self.assertRaises(RuntimeError) as cm:
            relay.start()
        self.assertIn("is a symbolic link", str(cm.exception))
        for p in ("shadow", os.path.join("sub", "file")):
            self.assertEqual(os.lstat(os.path.join(outside, p)).st_uid, 0, p + " was handed over")

    def test_data_dir_spool_and_files_are_owner_only(self):
        """Issue 15, item 5: data_dir was 0755 and the spool's files 0644: any
        local user could read the queued mail. Now 0700 / 0600, and an existing
        0755 data_dir is narrowed at start."""
        relay = self.new_relay(start=False, listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        os.makedirs(relay.data_dir, mode=0o755)
        os.chmod(relay.data_dir, 0o755)
        relay.start()
        submit(relay.port("plain"), "a@client.test", ["b@dest.test"],
               make_message("a@client.test", ["b@dest.test"], "owner only"))
        relay.wait_log(r"event=permissions_tightened path=\S+ from=755 to=700", timeout=5)
        loose = []
        for top, dirs, files in os.walk(relay.data_dir):
            for name in [top] + [os.path.join(top, f) for f in files]:
                mode = os.lstat(name).st_mode
                if mode & 0o077:
                    loose.append("%s %o" % (name, mode & 0o777))
        self.assertEqual(loose, [], "readable by group or others")
        self.assertEqual(os.stat(os.path.join(relay.data_dir, "spool")).st_mode & 0o777, 0o700)
        self.assertEqual(relay.stop(), 0)


@unittest.skipUnless(os.geteuid() == 0, "needs root to start the relay as another user")
class DumpableTest(RelayTestCase):
    """Issue 15, item 6: a relay running as an ordinary user was dumpable: a
    core file, or ptrace / /proc/<pid>/mem by any process of that user, held
    AUTH passwords and mail. Now PR_SET_DUMPABLE is cleared at start
    (allow_core_dumps = true keeps it, for debugging). The kernel shows it in
    the owner of /proc/<pid>/*: root for a non-dumpable process, the process's
    user otherwise. The relay is started directly as nobody (setpriv), as a
    systemd unit with User= would, so no uid change resets the flag for us."""

    def start_as_nobody(self, allow_core_dumps=None):
        nobody = pwd.getpwnam("nobody")
        relay = self.new_relay(start=False, listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        os.chmod(relay.workdir, 0o755)
        os.chmod(relay.users_file, 0o644)
        os.makedirs(relay.data_dir, exist_ok=True)
        os.chown(relay.data_dir, nobody.pw_uid, nobody.pw_gid)
        if allow_core_dumps is not None:
            relay.extra_top_level = "allow_core_dumps = %s" % ("true" if allow_core_dumps else "false")
        wrapper = os.path.join(relay.workdir, "as-nobody.sh")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --clear-groups -- %s \"$@\"\n"
                    % (nobody.pw_uid, nobody.pw_gid, relayctl.MXRELAY_BIN))
        os.chmod(wrapper, 0o755)
        real = relayctl.MXRELAY_BIN
        relayctl.MXRELAY_BIN = wrapper
        try:
            relay.start()
        finally:
            relayctl.MXRELAY_BIN = real
        self.assertEqual(proc_status(relay.pid)["Uid"].split()[0], str(nobody.pw_uid))
        return relay, nobody

    def test_not_dumpable_by_default(self):
        relay, nobody = self.start_as_nobody()
        self.assertEqual(os.stat("/proc/%d/status" % relay.pid).st_uid, 0,
                         "dumpable: /proc/<pid> is owned by the relay's user")
        submit(relay.port("plain"), "a@client.test", ["b@dest.test"],
               make_message("a@client.test", ["b@dest.test"], "not dumpable"))
        self.assertEqual(relay.stop(), 0)

    def test_allow_core_dumps_keeps_it_dumpable(self):
        relay, nobody = self.start_as_nobody(allow_core_dumps=True)
        self.assertEqual(os.stat("/proc/%d/status" % relay.pid).st_uid, nobody.pw_uid)
        relay.wait_log(r"event=core_dumps_allowed", timeout=5)
        self.assertEqual(relay.stop(), 0)


if __name__ == "__main__":
    unittest.main()
