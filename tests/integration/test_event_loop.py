"""Event-loop backends (issue 20): where io_uring is refused (Docker's default
seccomp profile, kernel.io_uring_disabled) the relay starts on epoll by itself,
says so once in the log and in a metric, and receives and delivers mail; a
forced `event_loop = "io_uring"` refuses to start with a message that says
why; `event_loop = "epoll"` and MXRELAY_EVENT_LOOP choose epoll on purpose.

The refusal is real: the relay runs under a seccomp filter that makes
io_uring_setup(2) fail with EPERM (installed with prctl in the child before
exec, as a container runtime does), not a test switch inside the relay.
(The other integration modules run on epoll in the ASan stage of
scripts/test.sh: MXRELAY_EVENT_LOOP=epoll.)
"""

import ctypes
import platform
import struct
import unittest

from relayctl import Listener, RelayTestCase, make_message, submit
from sink import start_sinks

NR_IO_URING_SETUP = 425  # the same number on x86_64 and aarch64 (generic table)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW, EPERM = 0x00050000, 0x7FFF0000, 1


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def deny_io_uring():
    """preexec_fn: io_uring_setup -> EPERM for this process and what it execs."""
    prog = [(0x20, 0, 0, 0),                              # A = seccomp_data.nr
            (0x15, 0, 1, NR_IO_URING_SETUP),              # A == io_uring_setup ?
            (0x06, 0, 0, SECCOMP_RET_ERRNO | EPERM),      #   return EPERM
            (0x06, 0, 0, SECCOMP_RET_ALLOW)]              # else allow
    code = b"".join(struct.pack("HBBI", *f) for f in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _Fprog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@unittest.skipUnless(platform.machine() in ("x86_64", "aarch64"), "syscall number known for x86_64/aarch64 only")
class EventLoopBackendTest(RelayTestCase):
    def relay(self, event_loop=None, deny=False, env=None, delivery=False):
        kw = {}
        if delivery:
            self.sink_port, (self.sink,) = start_sinks([("127.0.0.1", {})])
            self.addCleanup(self.sink.stop)
            kw = dict(delivery={"enabled": True, "port": self.sink_port},
                      routes=[{"domain": "*", "host": "127.0.0.1", "port": self.sink_port, "tls": "none"}])
        r = self.new_relay(start=False, listeners=[Listener("plain", "plain")],
                           trusted_networks=["127.0.0.0/8"], **kw)
        if event_loop:
            r.extra_top_level = 'event_loop = "%s"' % event_loop
        # This module decides the backend itself (the ASan stage sets
        # MXRELAY_EVENT_LOOP=epoll for the other modules).
        r.env_overrides = {"MXRELAY_EVENT_LOOP": None}
        r.env_overrides.update(env or {})
        if deny:
            r.preexec_fn = deny_io_uring
        return r

    def test_io_uring_refused_falls_back_to_epoll_and_delivers(self):
        relay = self.relay(deny=True, delivery=True)
        relay.start()
        relay.wait_log(r'event=io_uring_unavailable error="io_uring_queue_init: Operation not permitted.*backend=epoll',
                       timeout=5)
        self.assertEqual(relay.log_text().count("event=io_uring_unavailable"), 1, "logged once, not per thread")
        relay.wait_log(r"event=event_loop backend=epoll", timeout=5)
        m = relay.scrape()
        self.assertEqual(m.get('mxrelay_event_loop_backend{backend="epoll"}'), 1, m)
        self.assertNotIn('mxrelay_event_loop_backend{backend="io_uring"}', m)
        # Ingress (accept, multishot recv, TLS-less SMTP) and delivery
        # (resolver polls, connect, send) both run on epoll.
        for i in range(5):
            submit(relay.port("plain"), "s@client.test", ["r%d@sink.test" % i],
                   make_message("s@client.test", ["r%d@sink.test" % i], "fallback-%d" % i))
        msgs = self.sink.wait_messages(5, timeout=30)
        self.assertEqual(sorted(r for m in msgs for r in m.rcpts), ["r%d@sink.test" % i for i in range(5)])

    def test_forced_io_uring_refuses_to_start_where_it_is_blocked(self):
        relay = self.relay(event_loop="io_uring", deny=True)
        with self.assertRaises(RuntimeError) as e:
            relay.start()
        text = str(e.exception)
        self.assertIn("io_uring_queue_init: Operation not permitted", text)
        self.assertIn("event_loop = auto or epoll runs without it", text)
        self.assertIn("event=startup_failed", text)

    def test_backend_chosen_by_config_and_environment(self):
        relay = self.relay()  # auto where io_uring works: io_uring
        relay.start()
        relay.wait_log(r"event=event_loop backend=io_uring", timeout=5)
        self.assertEqual(relay.scrape().get('mxrelay_event_loop_backend{backend="io_uring"}'), 1)
        self.assertNotIn("event=io_uring_unavailable", relay.log_text())
        relay.stop()
        relay.extra_top_level = 'event_loop = "epoll"'
        relay.start()
        relay.wait_log(r"event=event_loop backend=epoll", timeout=5)
        self.assertNotIn("event=io_uring_unavailable", relay.log_text(since_start=True), "chosen, not a fallback")
        relay.stop()
        relay.extra_top_level = 'event_loop = "io_uring"'
        relay.env_overrides = {"MXRELAY_EVENT_LOOP": "epoll"}  # the environment wins
        relay.start()
        relay.wait_log(r"event=event_loop backend=epoll", timeout=5)
        submit(relay.port("plain"), "s@client.test", ["r@sink.test"], make_message("s@client.test", ["r@sink.test"], "env"))
        relay.stop()
        relay.env_overrides = {"MXRELAY_EVENT_LOOP": "kqueue"}
        with self.assertRaises(RuntimeError) as e:
            relay.start()
        self.assertIn('must be "auto", "io_uring" or "epoll", got "kqueue"', str(e.exception))


if __name__ == "__main__":
    unittest.main()
