"""Least privilege: started as root with `user = "nobody"`, the relay runs as
nobody with CAP_NET_BIND_SERVICE as its only capability, still binds a port
below 1024, and its spool (handed over to nobody) takes mail.
"""
import os
import pwd
import socket
import unittest

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


if __name__ == "__main__":
    unittest.main()
