"""A scriptable SMTP sink for the delivery tests (Python standard library, threads + sockets).

    sink = Sink("127.0.0.2", port, rcpt={"r@a.test": seq("451 4.3.0 busy", "250 2.1.5 Ok")})
    sink.start()
    ...                               # the relay delivers to it
    sink.wait_messages(1, timeout=10)
    sink.messages[0].rcpts, sink.messages[0].data, sink.connections, sink.peak
    sink.stop()

Replies are scripted per connection (`banner`), per MAIL (`mail`), per recipient
(`rcpt`: a dict address -> reply or seq(...), or a callable(address) -> reply)
and per message (`data`: a reply, seq(...) or callable(Message) -> reply, given
after `data_delay` seconds). A seq() hands out its replies in order, one per use
(across connections), and repeats the last one. The sink can advertise
PIPELINING / SIZE / 8BITMIME / SMTPUTF8 (`extensions`), offer STARTTLS with a
self-signed certificate (`starttls=True`), insist on AUTH PLAIN before MAIL
(`auth=(user, password)`, offered only under TLS when STARTTLS is on), and
"hang" (`hang=True`: accept and never say anything). `starttls_broken` offers
STARTTLS, answers 220 and then fails the handshake: "garbage" (or True) sends
a line of garbage in a separate write and closes, "same_write" sends the
garbage in the same write as the 220 (so it arrives in one read), "close"
closes right after the 220. `drop_in_data=N` makes the first N DATA
transfers fail: the sink reads the first line of the message and closes the
connection (a destination dying mid-DATA). `stall_in_data=True` answers 354
and then never reads again (a destination that stalls mid-message; with
`rcvbuf` set, the kernel takes only that much of the body); `data_read_rate`
(bytes/s) reads the message slowly but steadily (progress without speed).

It counts connections, the peak of concurrent connections and of concurrent
transactions, and records every accepted message (envelope, data with the dots
removed, TLS version, AUTH credentials) and every RCPT answer it gave.

Rules kept here: only loopback addresses; every socket has a timeout; every
loop is bounded in count; stop() closes everything and joins its threads with a
bounded wait.
"""

import base64
import email
import email.policy
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import atexit

IO_TIMEOUT = 30.0          # per socket read / write
MAX_COMMANDS = 200000      # per connection
MAX_LINE = 65536           # bytes per command or data line
MAX_DATA = 64 << 20        # bytes per message
DEFAULT_EXTENSIONS = ("PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8")


class seq:
    """Replies handed out in order, one per call (thread-safe); the last one repeats."""

    def __init__(self, *replies):
        assert replies
        self.replies = list(replies)
        self.used = 0
        self.lock = threading.Lock()

    def __call__(self, *_):
        with self.lock:
            r = self.replies[min(self.used, len(self.replies) - 1)]
            self.used += 1
            return r


def _reply(script, *args, default):
    """Resolves a reply script: None -> default, str -> itself, callable -> its result."""
    if script is None:
        return default
    if isinstance(script, str):
        return script
    r = script(*args)
    return default if r is None else r


# ------------------------------------------------------------- certificate

_cert_lock = threading.Lock()
_cert = None


def self_signed_cert():
    """(certfile, keyfile): one self-signed P-256 certificate per process (openssl req)."""
    global _cert
    with _cert_lock:
        if _cert is None:
            d = tempfile.mkdtemp(prefix="mxrelay-sink-cert-")
            atexit.register(shutil.rmtree, d, True)
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=sink",
                                "-days", "1", "-keyout", key, "-out", cert],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError("openssl req failed: %s" % r.stderr)
            _cert = (cert, key)
        return _cert


# ----------------------------------------------------------------- records

class Message:
    """One message the sink accepted (2xx after the final dot)."""

    def __init__(self, conn_id, helo, mail_from, mail_params, rcpts, data, tls, auth):
        self.conn_id = conn_id
        self.helo = helo
        self.mail_from = mail_from        # "" for MAIL FROM:<>
        self.mail_params = mail_params    # e.g. "SIZE=123 BODY=8BITMIME"
        self.rcpts = rcpts                # the recipients this sink accepted
        self.data = data                  # bytes, CRLF, dots removed, without the final "."
        self.tls = tls                    # e.g. "TLSv1.3", None in clear
        self.auth = auth                  # (user, password) or None
        self.time = time.time()
        self.peer = None                  # the relay's source address (set by the sink)

    def parsed(self):
        return email.message_from_bytes(self.data, policy=email.policy.compat32)

    def header(self, name):
        return self.parsed().get(name)

    @property
    def message_id(self):
        return self.header("Message-ID")

    def __repr__(self):
        return "Message(from=%r, rcpts=%r, %d bytes, tls=%r)" % (
            self.mail_from, self.rcpts, len(self.data), self.tls)


class _Closed(Exception):
    pass


class _Conn:
    """Line reader/writer over a (possibly TLS) socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.rate = None  # bytes/s: read slowly (data_read_rate)

    def send(self, text):
        self.sock.sendall(text.encode("utf-8") if isinstance(text, str) else text)

    def line(self):
        for _ in range(100000):
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > MAX_LINE:
                raise _Closed("line too long")
            if self.rate:
                time.sleep(0.1)
                chunk = self.sock.recv(max(1, min(65536, self.rate // 10)))
            else:
                chunk = self.sock.recv(65536)
            if not chunk:
                raise _Closed("closed by peer")
            self.buf += chunk
        raise _Closed("too many reads for one line")


ADDR_RX = re.compile(r"^(MAIL FROM|RCPT TO):\s*<([^>]*)>\s*(.*)$", re.IGNORECASE)


class Sink:
    """An SMTP server on (addr, port) run by threads in this process."""

    def __init__(self, addr="127.0.0.1", port=0, name=None, extensions=DEFAULT_EXTENSIONS,
                 starttls=False, starttls_broken=False, auth=None, hang=False, banner=None,
                 mail=None, rcpt=None,
                 default_rcpt="250 2.1.5 Ok", data=None, data_delay=0.0, hostname="sink.test",
                 drop_in_data=0, stall_in_data=False, rcvbuf=None, data_read_rate=None, mail_by_peer=None,
                 tls_cert=None):
        assert addr.startswith("127."), "loopback only"
        self.addr = addr
        self.port = port
        self.name = name or "%s:%s" % (addr, port)
        self.extensions = list(extensions)
        self.starttls = starttls or starttls_broken
        self.starttls_broken = starttls_broken  # answer 220, then no TLS (see the module doc)
        self.auth = auth
        self.hang = hang
        self.banner = banner          # str / seq / callable(): "220 ..." by default
        self.mail = mail              # str / seq / callable(sender)
        self.mail_by_peer = mail_by_peer  # {peer address: str / seq}: MAIL reply by the client's address
        self.rcpt = rcpt              # dict address -> str/seq, or callable(address)
        self.default_rcpt = default_rcpt
        self.data = data              # str / seq / callable(Message)
        self.data_delay = data_delay
        self.drop_in_data = drop_in_data  # DATA transfers still to cut off mid-message
        self.dropped_in_data = 0
        self.stall_in_data = stall_in_data
        self.stalled = 0              # connections stalled after 354 (stall_in_data)
        self.rcvbuf = rcvbuf          # SO_RCVBUF of accepted connections (inherited from the listener)
        self.data_read_rate = data_read_rate
        self.hostname = hostname
        self.tls_cert = tls_cert      # (certfile, keyfile) for STARTTLS; None: the self-signed one

        self.lock = threading.Lock()
        self.messages = []            # accepted Message objects
        self.rcpt_log = []            # (address, reply) for every RCPT answered
        self.rcpt_params = []         # (address, parameters after the path) for every RCPT
        self.data_log = []            # (rcpts, reply) for every final-dot answer
        self.auth_log = []            # (user, password, accepted, tls version) per AUTH
        self.commands = []            # every command verb seen (upper case), bounded
        self.connections = 0          # accepted TCP connections
        self.conn_log = []            # (conn_id, peer address, time) per accepted connection
        self.peers = {}               # conn_id -> peer address
        self.active_by_peer = {}
        self.peak_by_peer = {}        # peer address -> peak of its concurrent sessions (ended at QUIT)
        self._peer_ended = set()
        self.active = 0
        self.peak = 0                 # peak of concurrent connections
        self.tx_active = 0
        self.tx_peak = 0              # peak of concurrent transactions (MAIL .. end of DATA)
        self.in_data = 0              # messages fully received, their final reply not yet sent
        self.pipelined = 0            # commands that arrived before the previous reply was sent
        self.starttls_count = 0       # completed TLS handshakes
        self.broken_handshakes = 0    # STARTTLS answered with garbage (starttls_broken)
        self.errors = []              # unexpected exceptions in connection threads
        self._stop = threading.Event()
        self._listen = None
        self._threads = []
        self._socks = set()
        self._ctx = None

    # ---------------------------------------------------------- lifecycle

    def start(self):
        if self.starttls:
            cert, key = self.tls_cert or self_signed_cert()
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(cert, key)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        try:
            s.bind((self.addr, self.port))
        except OSError:
            s.close()
            raise
        s.listen(256)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self._listen = s
        t = threading.Thread(target=self._accept_loop, name="sink-accept-" + self.name, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._listen is not None:
            self._listen.close()
        with self.lock:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(timeout=max(0.05, deadline - time.monotonic()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------- queries

    def received(self):
        with self.lock:
            return list(self.messages)

    def recipients(self):
        """Every recipient of every accepted message (with repeats)."""
        with self.lock:
            return [r for m in self.messages for r in m.rcpts]

    def wait_messages(self, count, timeout=20.0):
        """Waits until at least `count` messages were accepted; returns them (asserts on timeout)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            with self.lock:
                n = len(self.messages)
            if n >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        with self.lock:
            if len(self.messages) < count:
                raise AssertionError("sink %s: %d message(s) within %.1fs, wanted %d (rcpt log %r)"
                                     % (self.name, len(self.messages), timeout, count,
                                        self.rcpt_log[-5:]))
            return list(self.messages)

    def stats(self):
        with self.lock:
            return {"connections": self.connections, "peak": self.peak, "tx_peak": self.tx_peak,
                    "messages": len(self.messages), "starttls": self.starttls_count}

    # ------------------------------------------------------------ serving

    def _accept_loop(self):
        for _ in range(10 ** 7):
            if self._stop.is_set():
                return
            try:
                c, peer = self._listen.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                conn_id = self.connections
                self.active += 1
                self.peak = max(self.peak, self.active)
                self._socks.add(c)
                self.peers[conn_id] = peer[0]
                self.conn_log.append((conn_id, peer[0], time.time()))
                n = self.active_by_peer.get(peer[0], 0) + 1
                self.active_by_peer[peer[0]] = n
                self.peak_by_peer[peer[0]] = max(self.peak_by_peer.get(peer[0], 0), n)
            t = threading.Thread(target=self._serve, args=(c, conn_id), daemon=True,
                                 name="sink-conn-%s-%d" % (self.name, conn_id))
            t.start()
            with self.lock:
                self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, sock, conn_id):
        st = {"tx": False, "sock": sock}  # "sock" becomes the SSLSocket after STARTTLS
        try:
            sock.settimeout(IO_TIMEOUT)
            if self.hang:
                self._hang(sock)
            else:
                self._session(sock, conn_id, st)
        except (_Closed, OSError, ssl.SSLError):
            pass
        except Exception as e:  # noqa: BLE001 - reported through self.errors
            with self.lock:
                self.errors.append("conn %d: %r" % (conn_id, e))
        finally:
            with self.lock:
                if st["tx"]:
                    self.tx_active -= 1
                self.active -= 1
                self._peer_done_locked(conn_id)
                self._socks.discard(st["sock"])
            try:
                st["sock"].close()
            except OSError:
                pass

    def _peer_done(self, conn_id):
        with self.lock:
            self._peer_done_locked(conn_id)

    def _peer_done_locked(self, conn_id):
        p = self.peers.get(conn_id)
        if p is not None and conn_id not in self._peer_ended:
            self._peer_ended.add(conn_id)
            self.active_by_peer[p] -= 1

    def _hang(self, sock):
        """Accept and never answer: wait until the peer leaves or the sink stops."""
        sock.settimeout(0.2)
        for _ in range(10 ** 6):
            if self._stop.is_set():
                return
            try:
                if not sock.recv(4096):
                    return
            except socket.timeout:
                continue

    def _tx(self, st, on):
        with self.lock:
            if on and not st["tx"]:
                self.tx_active += 1
                self.tx_peak = max(self.tx_peak, self.tx_active)
            elif not on and st["tx"]:
                self.tx_active -= 1
            st["tx"] = on

    def _session(self, sock, conn_id, st):
        conn = _Conn(sock)
        banner = _reply(self.banner, default="220 %s ESMTP sink" % self.hostname)
        conn.send(banner + "\r\n")
        if not banner.startswith("220"):
            # 421 (or 554) at connect: close (4xx) or wait for QUIT (5xx, bounded).
            if banner.startswith("4"):
                return
        tls = None
        helo = None
        authed = None
        sender = None
        mail_params = ""
        rcpts = []
        for _ in range(MAX_COMMANDS):
            raw = conn.line()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            with self.lock:
                if len(self.commands) < 100000:
                    self.commands.append(verb)
                if conn.buf:
                    self.pipelined += 1  # more was sent before our reply to this command
            if not banner.startswith("220") and verb != "QUIT":
                conn.send("503 5.5.1 Bad sequence of commands\r\n")
                continue
            if verb == "EHLO":
                helo = line[5:].strip()
                sender, rcpts = None, []
                self._tx(st, False)
                ext = list(self.extensions)
                if self.starttls and tls is None:
                    ext.append("STARTTLS")
                if self.auth and (tls is not None or not self.starttls):
                    ext.append("AUTH PLAIN")
                lines = [self.hostname] + ext
                conn.send("".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                                  for i, l in enumerate(lines)))
            elif verb == "HELO":
                helo = line[5:].strip()
                sender, rcpts = None, []
                conn.send("250 %s\r\n" % self.hostname)
            elif verb == "STARTTLS":
                if not self.starttls or tls is not None:
                    conn.send("502 5.5.1 STARTTLS not available\r\n")
                    continue
                ready = "220 2.0.0 Ready to start TLS\r\n"
                garbage = "this is not a TLS server hello\r\n"
                conn.buf = b""  # nothing sent before the handshake counts
                if self.starttls_broken:
                    with self.lock:
                        self.broken_handshakes += 1
                    mode = self.starttls_broken
                    if mode == "same_write":
                        conn.send(ready + garbage)
                    elif mode == "close":
                        conn.send(ready)
                    else:
                        conn.send(ready)
                        conn.send(garbage)
                    return
                conn.send(ready)
                with self.lock:
                    self._socks.discard(sock)
                sock = self._ctx.wrap_socket(sock, server_side=True)
                conn.sock = st["sock"] = sock
                tls = sock.version()
                with self.lock:
                    self._socks.add(sock)
                    self.starttls_count += 1
                helo, sender, rcpts, authed = None, None, [], None
            elif verb == "AUTH":
                parts = line.split()
                if not self.auth or len(parts) < 2 or parts[1].upper() != "PLAIN":
                    conn.send("504 5.5.4 Unrecognized authentication type\r\n")
                    continue
                if len(parts) >= 3:
                    token = parts[2]
                else:
                    conn.send("334 \r\n")
                    token = conn.line().decode("ascii", "replace").strip()
                try:
                    _, user, pw = base64.b64decode(token, validate=True).decode("utf-8").split("\0")
                except (ValueError, UnicodeDecodeError):
                    conn.send("501 5.5.2 Cannot decode\r\n")
                    continue
                ok = (user, pw) == tuple(self.auth) and (tls is not None or not self.starttls)
                with self.lock:
                    self.auth_log.append((user, pw, ok, tls))
                if self.starttls and tls is None:
                    conn.send("538 5.7.11 Encryption required\r\n")
                    continue
                if ok:
                    authed = (user, pw)
                    conn.send("235 2.7.0 Authentication successful\r\n")
                else:
                    conn.send("535 5.7.8 Authentication credentials invalid\r\n")
            elif verb == "MAIL":
                m = ADDR_RX.match(line)
                if not m or m.group(1).upper() != "MAIL FROM":
                    conn.send("501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
                    continue
                if self.auth and authed is None:
                    conn.send("530 5.7.0 Authentication required\r\n")
                    continue
                peer = self.peers.get(conn_id)
                if self.mail_by_peer and peer in self.mail_by_peer:
                    r = _reply(self.mail_by_peer[peer], m.group(2), default="250 2.1.0 Ok")
                else:
                    r = _reply(self.mail, m.group(2), default="250 2.1.0 Ok")
                if r.startswith("2"):
                    sender, mail_params, rcpts = m.group(2), m.group(3), []
                    self._tx(st, True)
                conn.send(r + "\r\n")
                if r.startswith("421"):
                    return
            elif verb == "RCPT":
                m = ADDR_RX.match(line)
                if sender is None:
                    conn.send("503 5.5.1 Need MAIL first\r\n")
                    continue
                if not m or m.group(1).upper() != "RCPT TO":
                    conn.send("501 5.5.4 Syntax: RCPT TO:<address>\r\n")
                    continue
                addr = m.group(2)
                if callable(self.rcpt) and not isinstance(self.rcpt, seq):
                    r = _reply(self.rcpt, addr, default=self.default_rcpt)
                elif self.rcpt is not None:
                    r = _reply((self.rcpt or {}).get(addr.lower()), default=self.default_rcpt)
                else:
                    r = self.default_rcpt
                with self.lock:
                    self.rcpt_log.append((addr, r))
                    self.rcpt_params.append((addr, m.group(3)))
                if r.startswith("2"):
                    rcpts.append(addr)
                conn.send(r + "\r\n")
                if r.startswith("421"):
                    return
            elif verb == "DATA":
                if sender is None or not rcpts:
                    conn.send("554 5.5.1 No valid recipients\r\n")
                    continue
                conn.send("354 End data with <CR><LF>.<CR><LF>\r\n")
                with self.lock:
                    drop = self.drop_in_data > 0
                    if drop:
                        self.drop_in_data -= 1
                        self.dropped_in_data += 1
                if drop:
                    conn.line()  # some of the message, then the connection dies
                    return
                if self.stall_in_data:
                    with self.lock:
                        self.stalled += 1
                    self._stop.wait(IO_TIMEOUT * 4)  # never reads again (bounded by stop())
                    return
                if self.data_read_rate:
                    conn.rate = self.data_read_rate
                chunks, size = [], 0
                for _ in range(10 ** 7):
                    l = conn.line()
                    if l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    size += len(l)
                    if size > MAX_DATA:
                        raise _Closed("message too large")
                    chunks.append(l)
                conn.rate = None
                msg = Message(conn_id, helo, sender, mail_params, list(rcpts), b"".join(chunks),
                              tls, authed)
                msg.peer = self.peers.get(conn_id)
                with self.lock:
                    self.in_data += 1
                try:
                    if self.data_delay:
                        time.sleep(self.data_delay)
                    r = _reply(self.data, msg, default="250 2.0.0 Ok: queued as S%d" % conn_id)
                    with self.lock:
                        self.data_log.append((list(rcpts), r))
                        if r.startswith("2"):
                            self.messages.append(msg)  # accepted, even if the reply is lost
                    sender, rcpts = None, []
                    self._tx(st, False)
                    conn.send(r + "\r\n")
                finally:
                    with self.lock:
                        self.in_data -= 1
                if r.startswith("421"):
                    return
            elif verb == "RSET":
                sender, rcpts = None, []
                self._tx(st, False)
                conn.send("250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                conn.send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                # The client's session ends here: its per-peer count drops
                # before the 221, so its next connection (opened on the 221)
                # is never counted as concurrent with this one.
                self._peer_done(conn_id)
                conn.send("221 2.0.0 Bye\r\n")
                return
            else:
                conn.send("502 5.5.2 Command not recognized\r\n")
        raise _Closed("command limit")


def start_sinks(specs, tries=5):
    """Starts sinks that share one port (all MX hosts are reached on delivery.port).

    specs: [(addr, kwargs), ...]. Picks a free port on 127.0.0.1 and binds every
    sink to it, moving all of them to a new port if one bind fails (bounded).
    Returns (port, [Sink, ...]).
    """
    from relayctl import free_port
    last = None
    for _ in range(tries):
        port = free_port()
        started = []
        try:
            for addr, kw in specs:
                started.append(Sink(addr, port, **kw).start())
            return port, started
        except OSError as e:
            last = e
            for s in started:
                s.stop()
    raise RuntimeError("could not bind sinks on one port in %d tries: %r" % (tries, last))
