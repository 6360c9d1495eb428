"""Durability: a message acknowledged with `250 ... queued as <id>` survives SIGKILL.

Several client threads submit TOTAL messages (each with a unique sender, Message-ID
and subject token); the relay is SIGKILLed after KILL_AFTER acknowledgements,
restarted on the same data_dir, the remaining messages are submitted, and every
acknowledged queue id must be in `queue list --json` with the right sender.
"""

import re
import socket
import ssl
import threading
import time
import unittest

from relayctl import ConnectionClosed, Listener, RelayTestCase, SmtpClient, make_message

TOTAL = 500
THREADS = 6
KILL_AFTER = 200
PHASE_TIMEOUT = 90.0
SENDER_RX = re.compile(r"^crash-(\d+)@x\.test$")


class Submitter:
    """Shared state of the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_n = 0
        self.acked = {}        # n -> queue id
        self.attempted = set()  # numbers whose submission was started
        self.errors = []

    def take(self):
        with self.lock:
            if self.next_n >= TOTAL:
                return None
            n = self.next_n
            self.next_n += 1
            return n

    def ack_count(self):
        with self.lock:
            return len(self.acked)


def sender_of(n):
    return "crash-%d@x.test" % n


def worker(port, st, stop, body_size):
    try:
        c = SmtpClient(port, timeout=20)
        c.ehlo("crash-client.test")
    except (OSError, ConnectionClosed, AssertionError) as e:
        with st.lock:
            st.errors.append("connect: %r" % e)
        return
    try:
        while not stop.is_set():
            n = st.take()
            if n is None:
                break
            tok = "crashtok-%d" % n
            body = "message number %d" % n
            if body_size:
                body += "\r\n" + "\r\n".join(["%s %06d" % ("z" * 70, i)
                                                 for i in range(body_size // 79)])
            msg = make_message(sender_of(n), ["r@y.test"], "crash test " + tok, tok, body=body)
            with st.lock:
                st.attempted.add(n)
            r = c.send_message(sender_of(n), ["r@y.test"], msg)
            qid = r.queue_id()
            if qid is None:
                with st.lock:
                    st.errors.append("message %d not accepted: %r" % (n, r))
                break
            with st.lock:
                st.acked[n] = qid
    except (OSError, ConnectionClosed, ssl.SSLError, socket.timeout, AssertionError):
        pass  # the relay was killed under us: expected
    finally:
        c.close()


def run_phase(port, st, body_size, kill_relay=None):
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(port, st, stop, body_size), daemon=True)
               for _ in range(THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + PHASE_TIMEOUT
    killed_at = None
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        if kill_relay is not None and killed_at is None and st.ack_count() >= KILL_AFTER:
            kill_relay()
            killed_at = st.ack_count()
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    return killed_at, [t for t in threads if t.is_alive()]


class CrashTest(RelayTestCase):

    def test_sigkill_mid_stream_small_messages(self):
        self.crash_scenario(body_size=0)

    def test_sigkill_mid_stream_40kb_messages(self):
        # Bodies larger than a RocksDB WAL block (32 KiB): records span blocks.
        self.crash_scenario(body_size=40 * 1024)

    def crash_scenario(self, body_size):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"], threads=2,
                               limits={"max_connections_per_ip": 100})
        st = Submitter()
        t0 = time.monotonic()
        killed_at, stuck = run_phase(relay.port("plain"), st, body_size, kill_relay=relay.kill)
        self.assertEqual(stuck, [], "client threads did not finish")
        self.assertIsNotNone(killed_at, "relay was not killed: only %d acks (errors %r)"
                             % (st.ack_count(), st.errors[:3]))
        self.assertFalse(relay.running())
        acked_before_kill = dict(st.acked)
        attempted_before_kill = set(st.attempted)
        unacked_attempts = attempted_before_kill - set(acked_before_kill)

        relay.start()
        log = relay.wait_log(r"event=spool_counted", timeout=10)
        recovered = int(re.search(r"event=spool_counted messages=(\d+)", log).group(1))
        self.assertGreaterEqual(recovered, len(acked_before_kill))
        # Phase 2: submit what was never attempted.
        _, stuck = run_phase(relay.port("plain"), st, body_size)
        self.assertEqual(stuck, [], "client threads did not finish (phase 2)")
        self.assertEqual(st.errors, [])
        self.assertEqual(st.next_n, TOTAL)
        elapsed = time.monotonic() - t0

        queue = relay.queue_list()
        by_id = {m["id"]: m for m in queue}
        self.assertEqual(len(by_id), len(queue), "duplicate queue ids in the listing")
        missing = {n: q for n, q in st.acked.items() if q not in by_id}
        wrong = {n: q for n, q in st.acked.items()
                 if q in by_id and by_id[q]["sender"] != sender_of(n)}
        acked_ids = set(st.acked.values())
        extra = [m for m in queue if m["id"] not in acked_ids]
        extra_numbers = set()
        for m in extra:
            mm = SENDER_RX.match(m["sender"])
            self.assertIsNotNone(mm, "unexpected message in the queue: %r" % m)
            extra_numbers.add(int(mm.group(1)))
        senders = [m["sender"] for m in queue]
        dup_senders = {s for s in senders if senders.count(s) > 1}

        print("\n[crash body=%dB] killed after %d acks; acknowledged before kill: %d; acknowledged in "
              "total: %d of %d submitted; present in queue: %d; missing: %d; wrong sender: %d; "
              "extra durable-but-unacknowledged: %d (of %d in flight at the kill); "
              "queue size: %d; %.1fs"
              % (body_size, killed_at, len(acked_before_kill), len(st.acked), len(st.attempted),
                 len(st.acked) - len(missing), len(missing), len(wrong), len(extra),
                 len(unacked_attempts), len(queue), elapsed), flush=True)

        self.assertEqual(missing, {}, "acknowledged messages lost after SIGKILL")
        self.assertEqual(wrong, {}, "queue ids point to other messages")
        self.assertEqual(dup_senders, set(), "a message was stored twice")
        self.assertLessEqual(extra_numbers, unacked_attempts,
                             "durable messages that were never in flight at the kill")
        self.assertGreaterEqual(len(acked_before_kill), KILL_AFTER)
        # Everything submitted after the restart was accepted.
        self.assertEqual(len(st.acked) + len(unacked_attempts), TOTAL)


if __name__ == "__main__":
    unittest.main()
