"""Shared helpers for the mxrelay integration tests (Python standard library only).

    relay = Relay(self, listeners=[Listener("sub", "starttls")], users={"alice": "pw"})
    relay.start()                       # waits (bounded) for `event=ready`
    c = SmtpClient(relay.port("sub"))   # raw-socket SMTP client
    ...
    relay.stop()                        # SIGTERM by PID, SIGKILL after a bounded wait

Relays do not deliver (delivery.enabled = false) unless given `delivery={...}`
(the [delivery] table; an event_log in the relay's workdir is added unless
given) and `routes=[{...}, ...]` ([[route]] tables). Delivery tests read the
event log with relay.events() / relay.wait_events() and submit with submit()
(smtplib over a plain, trusted listener).

Rules kept here for every test: only loopback addresses (delivery tests use
127.0.0.x for their sinks and a local DNS server); every wait is bounded in time
and count; processes are stopped by their own PID, never by name; every
relay lives in its own tempfile.mkdtemp() directory.
"""

import base64
import json
import http.client
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

MXRELAY_BIN = os.environ.get("MXRELAY_BIN", "/work/main/build/main/mxrelay")
HOST = "127.0.0.1"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 30.0
IO_TIMEOUT = 10.0

_port_lock = threading.Lock()
_ports_handed_out = set()


def free_port():
    """A currently free loopback TCP port (never the same one twice per process)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        with _port_lock:
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("could not find a free port in 50 tries")


def tls_client_context(strict_eof=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the relay's certificate is self-signed
    if strict_eof:
        # Python enables OP_IGNORE_UNEXPECTED_EOF by default; clear it so that a
        # TCP close without a TLS close_notify is reported (ssl.SSLEOFError).
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def read_until_closed(s, seconds=5, max_reads=100):
    """Everything a raw socket receives until the peer closes it, an error,
    or `seconds` pass (bounded in time and in reads)."""
    data = b""
    deadline = time.monotonic() + seconds
    for _ in range(max_reads):
        if time.monotonic() >= deadline:
            break
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def run_cli(args, stdin=None, timeout=CLI_TIMEOUT):
    """Runs `mxrelay ARGS`; returns CompletedProcess (text mode)."""
    return subprocess.run([MXRELAY_BIN] + list(args), input=stdin, capture_output=True,
                          text=True, timeout=timeout)


_hash_cache = {}


def hash_password(password):
    """yescrypt hash from `mxrelay hash-password` (cached per password)."""
    if password not in _hash_cache:
        r = run_cli(["hash-password"], stdin=password + "\n")
        if r.returncode != 0 or not r.stdout.startswith("$"):
            raise RuntimeError("hash-password failed: rc=%d out=%r err=%r"
                               % (r.returncode, r.stdout, r.stderr))
        _hash_cache[password] = r.stdout.strip()
    return _hash_cache[password]


def openssl_sha512_hash(password):
    r = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                       capture_output=True, text=True, timeout=CLI_TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError("openssl passwd failed: %r" % r.stderr)
    return r.stdout.strip()


def stop_process(proc, timeout=10):
    """SIGTERM a helper process we started (by its PID), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def parse_metrics(text):
    """Prometheus text format -> {'name{labels}': float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


SANITIZER_OPTIONS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS")


def sanitizer_log_paths():
    """The log_path prefixes set in the sanitizer option variables (scripts/test.sh
    sets them in its sanitizer stages; a report goes to PREFIX.PID)."""
    out = []
    for var in SANITIZER_OPTIONS:
        for opt in re.split(r"[:\s]+", os.environ.get(var, "")):
            if opt.startswith("log_path="):
                out.append(opt[len("log_path="):])
    return out


def sanitizer_reports(pid):
    """Sanitizer reports a process left in the log_path files ("PREFIX.PID" and
    "PREFIX.PID.*"), as text; [] when there are none or no log_path is set."""
    out = []
    for prefix in sanitizer_log_paths():
        d, base = os.path.split(prefix)
        try:
            names = os.listdir(d or ".")
        except FileNotFoundError:
            continue
        for name in sorted(names):
            if name == "%s.%d" % (base, pid) or name.startswith("%s.%d." % (base, pid)):
                with open(os.path.join(d, name), "rb") as f:
                    out.append("%s:\n%s" % (name, f.read(20000).decode("utf-8", "replace")))
    return out


def unexpected_exit(rc, run):
    """Why a relay run's end was unexpected (a string), or None. Expected: still
    running (None), exit 0, our own SIGKILL, or a refused start (exit > 0
    before ready, which the test asserts on)."""
    if rc is None or rc == 0:
        return None
    if rc == -signal.SIGKILL and run.get("killed"):
        return None
    if rc > 0 and run.get("start_failed"):
        return None
    if rc < 0:
        return "ended by signal %d (%s)" % (-rc, signal.Signals(-rc).name)
    return "exited with status %d" % rc


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_value(v):
    """A TOML value for a Python bool, int, str or list of those."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(toml_value(x) for x in v)
    raise TypeError("no TOML form for %r" % (v,))


class Listener:
    def __init__(self, name, mode, auth_without_tls=None, port=None, extra=None):
        self.name = name
        self.mode = mode
        self.auth_without_tls = auth_without_tls
        self.port = port
        self.extra = dict(extra or {})  # more [[listener]] keys, e.g. proxy_protocol


DEFAULT_LISTENERS = (Listener("sub", "starttls"), Listener("smtps", "implicit_tls"))


class Relay:
    """One mxrelay process with its own data_dir, config and users file."""

    owns_admin_api = False  # a subclass that writes its own [admin_api] section

    def __init__(self, listeners=DEFAULT_LISTENERS, users=None, trusted_networks=(),
                 hostname="relay.test", threads=2, auth=None, limits=None, timeouts=None,
                 workdir=None, delivery=None, routes=(), metrics=True, tls=None, spool=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="mxrelay-it-")
        self._own_workdir = workdir is None
        self.data_dir = os.path.join(self.workdir, "data")
        self.users_file = os.path.join(self.workdir, "users")
        self.config_path = os.path.join(self.workdir, "mxrelay.toml")
        self.log_path = os.path.join(self.workdir, "relay.log")
        self.hostname = hostname
        self.threads = threads
        self.trusted_networks = list(trusted_networks)
        self.auth = {"max_failures": 3, "failure_delay_ms": 0}
        self.auth.update(auth or {})
        self.limits = {"max_message_size": 1048576, "max_recipients": 100,
                       "max_connections_per_ip": 50, "max_line_length": 1000}
        self.limits.update(limits or {})
        self.timeouts = {"command": 300}
        self.timeouts.update(timeouts or {})
        self.listeners = [Listener(l.name, l.mode, l.auth_without_tls, l.port, l.extra) for l in listeners]
        # [delivery] and [[route]] tables; None: delivery disabled (mail stays queued).
        self.delivery = None
        self.event_log_path = None
        if delivery is not None:
            self.delivery = dict(delivery)
            # Test sinks live on loopback, which delivery.deny_networks refuses
            # by default: allow it unless the test asks for the default (None).
            self.delivery.setdefault("deny_networks", [])
            if self.delivery["deny_networks"] is None:
                del self.delivery["deny_networks"]
            self.delivery.setdefault("event_log", os.path.join(self.workdir, "events.jsonl"))
            self.event_log_path = self.delivery["event_log"]
        self.routes = [dict(r) for r in routes]
        # [metrics] on a free loopback port; the bound address is read from
        # the log (event=metrics_listening) into self.metrics_address.
        self.metrics = metrics
        self.metrics_address = None
        self.tls = dict(tls or {})  # [tls] keys, e.g. cert_file / key_file
        self.spool = dict(spool or {})  # [spool] keys, e.g. path
        self.extra_top_level = ""  # raw TOML lines before the first table
        # The relay process's environment changes ({name: value, or None to
        # unset}) and a preexec_fn (e.g. a seccomp filter), for its next start.
        self.env_overrides = {}
        self.preexec_fn = None
        self.proc = None
        self._log = None
        self.starts = 0
        # Every process this Relay started, with how it was expected to end:
        # (Popen, {"killed": SIGKILLed by us, "start_failed": exited before
        # ready, which the test asserts on}). cleanup() checks them all.
        self._runs = []
        users = {"alice": "alice-secret"} if users is None else users
        with open(self.users_file, "w") as f:
            f.write("# test users\n")
            for name, pw in users.items():
                f.write("%s:%s\n" % (name, hash_password(pw)))
        self._assign_ports()

    # ---------------------------------------------------------------- config

    def _assign_ports(self):
        for l in self.listeners:
            l.port = free_port()

    def config_text(self):
        out = ["hostname = %s" % toml_str(self.hostname),
               "data_dir = %s" % toml_str(self.data_dir),
               "threads = %d" % self.threads,
               "trusted_networks = [%s]" % ", ".join(toml_str(n) for n in self.trusted_networks),
               self.extra_top_level,
               "", "[auth]", "users_file = %s" % toml_str(self.users_file)]
        out += ["%s = %s" % (k, toml_value(v)) for k, v in self.auth.items()]
        out += ["", "[limits]"] + ["%s = %d" % kv for kv in self.limits.items()]
        out += ["", "[timeouts]"] + ["%s = %d" % kv for kv in self.timeouts.items()]
        for l in self.listeners:
            out += ["", "[[listener]]", "name = %s" % toml_str(l.name), 'address = "127.0.0.1"',
                    "port = %d" % l.port, "mode = %s" % toml_str(l.mode)]
            if l.auth_without_tls is not None:
                out.append("auth_without_tls = %s" % ("true" if l.auth_without_tls else "false"))
            out += ["%s = %s" % (k, toml_value(v)) for k, v in l.extra.items()]
        if self.delivery is not None:
            out += ["", "[delivery]"] + ["%s = %s" % (k, toml_value(v))
                                         for k, v in self.delivery.items()]
        else:
            # Tests of the receiving side keep their mail queued (and must never
            # reach the system resolver or a port 25 off this machine).
            out += ["", "[delivery]", "enabled = false"]
        if self.spool:
            out += ["", "[spool]"] + ["%s = %s" % (k, toml_value(v)) for k, v in self.spool.items()]
        if self.tls:
            out += ["", "[tls]"] + ["%s = %s" % (k, toml_value(v)) for k, v in self.tls.items()]
        out += ["", "[metrics]", "enabled = %s" % ("true" if self.metrics else "false"),
                'listen = "127.0.0.1:0"']
        if not self.owns_admin_api:
            # The admin API listens on a fixed port by default (127.0.0.1:8026):
            # off here, so that relays of tests and benchmarks running at the
            # same time never meet there (cp_helpers.CpRelay turns it on, on a
            # free port).
            out += ["", "[admin_api]", "enabled = false"]
        for r in self.routes:
            out += ["", "[[route]]"] + ["%s = %s" % (k, toml_value(v)) for k, v in r.items()]
        return "\n".join(out) + "\n"

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.config_text())

    def port(self, name):
        for l in self.listeners:
            if l.name == name:
                return l.port
        raise KeyError(name)

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout=READY_TIMEOUT):
        """Starts the relay and waits for `event=ready` (new ports and a retry on a bind race)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        last_err = None
        for attempt in range(3):
            self.write_config()
            self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            self._log = open(self.log_path, "ab")
            env = dict(os.environ)
            for k, v in self.env_overrides.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = v
            self.proc = subprocess.Popen([MXRELAY_BIN, "run", "-c", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=self._log, start_new_session=True, env=env,
                                         preexec_fn=self.preexec_fn)
            self._run = {"killed": False, "start_failed": False}
            self._runs.append((self.proc, self._run))
            self.starts += 1
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = self.log_text(since_start=True)
                if "event=ready" in text:
                    m = re.search(r"event=metrics_listening address=(\S+)", text)
                    self.metrics_address = m.group(1) if m else None
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            rc = self.proc.poll()
            text = self.log_text(since_start=True)
            if rc is None:
                self._terminate()
                raise RuntimeError("relay not ready within %.0fs; log:\n%s" % (timeout, text))
            self._log.close()
            if rc > 0:  # a refused start (config, bind, user): the caller asserts on it
                self._run["start_failed"] = True
            last_err = "relay exited with %s before ready; log:\n%s" % (rc, text)
            if "cannot bind" in text:
                self._assign_ports()  # someone took a port meanwhile: pick new ones
                continue
            break
        raise RuntimeError(last_err)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM by PID; SIGKILL after `timeout`. Returns (returncode, seconds)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if self._log and not self._log.closed:
            self._log.close()
        return self.proc.returncode, time.monotonic() - t0

    def stop(self, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return None
        return self._terminate(timeout)[0]

    def stop_timed(self, timeout=STOP_TIMEOUT):
        return self._terminate(timeout)

    def kill(self):
        """SIGKILL by PID (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            self._run["killed"] = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        if self._log and not self._log.closed:
            self._log.close()

    def scrape(self, timeout=5.0):
        """GET /metrics -> {'name{labels}': value} (labels as in the text format)."""
        return parse_metrics(self.http_get("/metrics", timeout)[1])

    def http_get(self, path, timeout=5.0):
        """(status, body) of GET path on the metrics listener."""
        assert self.metrics_address, "metrics not enabled or not listening"
        conn = http.client.HTTPConnection(*self.metrics_address.rsplit(":", 1), timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def cleanup(self):
        """Stops the relay (SIGTERM, SIGKILL after 10 s) and removes its work
        directory; then fails (AssertionError) if any process this Relay
        started ended unexpectedly: a signal we did not send (a crash, a
        sanitizer abort, a SIGKILL because SIGTERM did not stop it), an exit
        status other than 0 after a successful start, or a sanitizer report in
        its log_path file (ASAN/UBSAN/TSAN_OPTIONS log_path: reports written at
        exit, e.g. LeakSanitizer's, never reach the relay's log)."""
        if self.proc is not None and self.proc.poll() is None:
            self._terminate(timeout=10.0)  # SIGTERM, SIGKILL after 10 s
        problems = []
        for proc, run in self._runs:
            rc = proc.poll()
            why = unexpected_exit(rc, run)
            reports = sanitizer_reports(proc.pid)
            if why or reports:
                problems.append("relay pid %d %s%s" % (proc.pid, why or "exited 0",
                                                       "".join("\n" + r for r in reports)))
        if problems:
            # Show why before the work directory goes away.
            text = "\n".join(problems) + "\nlog tail:\n" + self.log_tail(60)
            sys.stderr.write("\n[relayctl] %s\n" % text)
        if self._own_workdir and os.environ.get("MXRELAY_KEEP_TMP") is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise AssertionError("[relayctl] " + text)

    # ------------------------------------------------------------------ logs

    def log_text(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, pattern, timeout=10.0, count=1):
        """Waits until regex `pattern` matched `count` times in this run's log."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text(since_start=True)
            if len(rx.findall(text)) >= count:
                return text
            if time.monotonic() >= deadline:
                raise AssertionError("log pattern %r not seen %d time(s) within %.1fs; tail:\n%s"
                                     % (pattern, count, timeout, self.log_tail()))
            time.sleep(0.05)

    # ----------------------------------------------------------------- users

    def append_user(self, name, password):
        with open(self.users_file, "a") as f:
            f.write("%s:%s\n" % (name, hash_password(password)))

    # ----------------------------------------------------------------- queue

    def queue_list(self):
        r = run_cli(["queue", "list", "--json", "--limit", "1000000", "-c", self.config_path])
        if r.returncode != 0:
            raise AssertionError("queue list failed rc=%d stderr=%r" % (r.returncode, r.stderr))
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def queue_by_id(self):
        return {m["id"]: m for m in self.queue_list()}

    def queue_summary(self):
        r = run_cli(["queue", "summary", "-c", self.config_path])
        if r.returncode != 0:
            raise AssertionError("queue summary failed rc=%d stderr=%r" % (r.returncode, r.stderr))
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition(":")
            out[k.strip()] = int(v.strip())
        return out

    def wait_queue_empty(self, timeout=20.0):
        """Waits until `queue list` is empty; returns the last listing (asserts on timeout)."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            q = self.queue_list()
            if not q or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if q:
            raise AssertionError("queue not empty after %.0fs: %d message(s), first %r"
                                 % (timeout, len(q), q[0]))
        return q

    # ------------------------------------------------------------- event log

    def events(self):
        """The delivery event log as a list of dicts (a torn last line is ignored)."""
        if not self.event_log_path:
            raise AssertionError("this relay has no event log")
        try:
            with open(self.event_log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines(keepends=True):
            if line.endswith("\n") and line.strip():
                out.append(json.loads(line))
        return out

    def wait_events(self, pred=None, count=1, timeout=20.0):
        """Waits until `count` events satisfy pred(event); returns them (asserts on timeout)."""
        pred = pred or (lambda e: True)
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            evs = [e for e in self.events() if pred(e)]
            if len(evs) >= count:
                return evs
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        raise AssertionError("%d matching event(s) within %.1fs, wanted %d; last events:\n%s\nrelay log:\n%s"
                             % (len(evs), timeout, count,
                                "\n".join(json.dumps(e) for e in self.events()[-10:]),
                                self.log_tail()))

    def spool_contains(self, needle):
        """True if the raw bytes appear in a spool file (WAL/SST; body CF is uncompressed)."""
        spool = os.path.join(self.data_dir, "spool")
        for name in os.listdir(spool):
            if name.endswith((".log", ".sst")):
                with open(os.path.join(spool, name), "rb") as f:
                    if needle in f.read():
                        return True
        return False


# ---------------------------------------------------------------- SMTP client

QUEUED_RX = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f]{24})$")


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def first(self):
        return "%d %s" % (self.code, self.lines[0] if self.lines else "")

    def queue_id(self):
        m = QUEUED_RX.match(self.first)
        return m.group(1) if m else None

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


class ConnectionClosed(Exception):
    pass


class SmtpClient:
    """A raw-socket SMTP client that reads replies line by line (no hidden buffering)."""

    def __init__(self, port, implicit_tls=False, timeout=IO_TIMEOUT, read_greeting=True,
                 suppress_ragged_eofs=True, source=None):
        self.port = port
        # False: a TCP close without TLS close_notify raises ssl.SSLEOFError.
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.timeout = timeout
        # source: a loopback address to connect from (e.g. "127.0.0.2": another client IP).
        self.sock = socket.create_connection((HOST, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.tls = False
        if implicit_tls:
            self.sock = tls_client_context(not self.suppress_ragged_eofs).wrap_socket(
                self.sock, suppress_ragged_eofs=self.suppress_ragged_eofs)
            self.tls = True
        self.greeting = self.reply() if read_greeting else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete reply within %.1fs (buffer %r)"
                                 % (self.timeout, self.buf[:200]))
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("connection closed by server (buffer %r)" % self.buf[:200])
        self.buf += chunk

    def line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def reply(self, timeout=None):
        """Reads one (possibly multi-line) reply."""
        lines = []
        for _ in range(100):
            l = self.line(timeout)
            if len(l) < 3 or not l[:3].isdigit() or (len(l) > 3 and l[3] not in " -"):
                raise AssertionError("malformed reply line %r" % l)
            lines.append(l[4:])
            if len(l) == 3 or l[3] == " ":
                return Reply(int(l[:3]), lines)
        raise AssertionError("reply with more than 100 lines")

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.reply(timeout)

    def read_until_closed(self, timeout=None):
        """All bytes until the server closes the connection (bounded)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                data, self.buf = self.buf, b""
                return data
            except (ConnectionResetError, ssl.SSLError):
                data, self.buf = self.buf, b""
                return data

    def drain(self, quiet=0.5):
        """Whatever arrives until the connection stays quiet for `quiet` seconds."""
        end = time.monotonic() + quiet
        for _ in range(1000):
            try:
                self.sock.settimeout(max(0.01, end - time.monotonic()))
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                break
            if not chunk:
                break
            self.buf += chunk
            end = time.monotonic() + quiet
        data, self.buf = self.buf, b""
        return data

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, r
        return r

    def extensions(self, ehlo_reply):
        return [l.split(" ")[0].upper() for l in ehlo_reply.lines[1:]]

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        assert self.buf == b"", "server sent bytes after the STARTTLS 220: %r" % self.buf
        self.sock.settimeout(self.timeout)
        self.sock = tls_client_context(not self.suppress_ragged_eofs).wrap_socket(
            self.sock, suppress_ragged_eofs=self.suppress_ragged_eofs)
        self.tls = True
        return r

    def auth_plain(self, user, password):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.cmd("AUTH PLAIN " + token)

    def send_message(self, sender, rcpts, body):
        """MAIL/RCPT/DATA; returns the final reply (asserts the envelope was accepted)."""
        r = self.cmd("MAIL FROM:<%s>" % sender)
        assert r.code == 250, r
        for rc in rcpts:
            r = self.cmd("RCPT TO:<%s>" % rc)
            assert r.code == 250, r
        r = self.cmd("DATA")
        assert r.code == 354, r
        self.send(dot_stuff(body) + b".\r\n")
        return self.reply()


def dot_stuff(body):
    if isinstance(body, str):
        body = body.encode()
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def make_message(sender, rcpts, subject, token=None, body="Hello from the integration tests.",
                 message_id=None):
    token = token or subject
    mid = message_id or "<%s@client.test>" % token
    hdr = ["From: <%s>" % sender, "To: " + ", ".join("<%s>" % r for r in rcpts),
           "Subject: %s" % subject, "Message-ID: %s" % mid,
           "Date: Thu, 01 Jan 2026 00:00:00 +0000"]
    return "\r\n".join(hdr) + "\r\n\r\n" + body + "\r\ntoken: " + token + "\r\n"


def submit(port, sender, rcpts, msg, timeout=IO_TIMEOUT):
    """One message through smtplib (no AUTH: the relay must trust 127.0.0.0/8). Returns the queue id."""
    with smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=timeout) as s:
        return _submit_on(s, sender, rcpts, msg)


def submit_many(port, items, timeout=IO_TIMEOUT):
    """[(sender, rcpts, msg), ...] over one smtplib connection; returns the queue ids."""
    with smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=timeout) as s:
        return [_submit_on(s, sender, rcpts, msg) for sender, rcpts, msg in items]


def _submit_on(s, sender, rcpts, msg):
    if isinstance(msg, str):
        msg = msg.encode()
    s.ehlo_or_helo_if_needed()
    code, resp = s.mail(sender)  # "" gives MAIL FROM:<>
    if code != 250:
        raise AssertionError("MAIL FROM:<%s> -> %d %r" % (sender, code, resp))
    for r in rcpts:
        code, resp = s.rcpt(r)
        if code != 250:
            raise AssertionError("RCPT TO:<%s> -> %d %r" % (r, code, resp))
    code, resp = s.data(msg)
    m = QUEUED_RX.match("%d %s" % (code, resp.decode("utf-8", "replace")))
    if not m:
        raise AssertionError("DATA -> %d %r" % (code, resp))
    return m.group(1)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


# ------------------------------------------------------------- test base class

import unittest  # noqa: E402


class RelayTestCase(unittest.TestCase):
    """Gives each test helpers to start relays and clients that are always cleaned up."""

    def new_relay(self, start=True, **kw):
        relay = Relay(**kw)
        self.addCleanup(relay.cleanup)
        if start:
            relay.start()
        return relay

    def client(self, port, **kw):
        c = SmtpClient(port, **kw)
        self.addCleanup(c.close)
        return c

    def assertReply(self, reply, code, enhanced=None, msg=None):
        self.assertEqual(reply.code, code, msg or reply)
        if enhanced is not None:
            self.assertTrue(reply.lines[0].startswith(enhanced + " "),
                            msg or "expected %d %s, got %r" % (code, enhanced, reply))
