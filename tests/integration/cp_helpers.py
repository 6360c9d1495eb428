"""Helpers of the control-plane tests (issue 18): a Relay with [tenants],
[http_api] and [admin_api] sections, API keys, and HTTP calls."""

import hashlib
import http.client
import json
import os
import re
import secrets

from relayctl import Relay, free_port, run_cli, toml_str, toml_value


def new_key():
    """(key, stored form) as `mxrelay tenant apikey` makes them."""
    key = "mxr_" + secrets.token_urlsafe(32)
    return key, "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class CpRelay(Relay):
    """A Relay with a tenants file and the HTTP/admin APIs on free ports."""

    owns_admin_api = True

    def __init__(self, tenants_toml="", http_api=None, admin_api=True, **kw):
        super().__init__(**kw)
        self.tenants_path = os.path.join(self.workdir, "tenants.toml")
        self.tenants_extra = {}
        self.write_tenants(tenants_toml)
        self.http_api = None if http_api is None else dict(http_api)
        if self.http_api is not None:
            self.http_api.setdefault("listen", "127.0.0.1:%d" % free_port())
        self.admin_listen = "127.0.0.1:%d" % free_port() if admin_api else None

    def write_tenants(self, text):
        with open(self.tenants_path, "w") as f:
            f.write(text)

    def config_text(self):
        out = [super().config_text(), "[tenants]", "file = %s" % toml_str(self.tenants_path)]
        out += ["%s = %s" % (k, toml_value(v)) for k, v in self.tenants_extra.items()]
        if self.http_api is not None:
            out += ["", "[http_api]", "enabled = true"] + ["%s = %s" % (k, toml_value(v))
                                                          for k, v in self.http_api.items()]
        out += ["", "[admin_api]", "enabled = %s" % ("true" if self.admin_listen else "false")]
        if self.admin_listen:
            out.append("listen = %s" % toml_str(self.admin_listen))
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------- HTTP

    def api_addr(self):
        host, port = self.http_api["listen"].rsplit(":", 1)
        return host, int(port)

    def api_url(self, path="/api/v1/messages"):
        host, port = self.api_addr()
        scheme = "https" if self.http_api.get("tls") else "http"
        return "%s://%s:%d%s" % (scheme, host, port, path)

    def inject(self, key, payload, timeout=60.0, raw_body=None, conn=None):
        """POST /api/v1/messages -> (status, parsed JSON or text)."""
        own = conn is None
        if own:
            conn = http.client.HTTPConnection(*self.api_addr(), timeout=timeout)
        try:
            body = raw_body if raw_body is not None else json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"}
            if key is not None:
                headers["Authorization"] = "Bearer " + key
            conn.request("POST", "/api/v1/messages", body=body, headers=headers)
            r = conn.getresponse()
            text = r.read().decode()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text
        finally:
            if own:
                conn.close()

    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin-token")) as f:
            return f.read().strip()

    def admin(self, method, path, body=None, token=None, timeout=120.0):
        """An admin API call -> (status, parsed JSON)."""
        host, port = self.admin_listen.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            headers = {"Authorization": "Bearer " + (token or self.admin_token())}
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, json.loads(r.read().decode())
        finally:
            conn.close()

    def cli(self, *args):
        """`mxrelay queue ... --json -c config` -> parsed JSON (asserts rc 0)."""
        r = run_cli(list(args) + ["--json", "-c", self.config_path], timeout=180)
        if r.returncode != 0:
            raise AssertionError("mxrelay %s: rc=%d stderr=%r" % (" ".join(args), r.returncode, r.stderr))
        return json.loads(r.stdout)


def queued_line(relay, qid):
    m = re.search(r"event=queued id=%s .*" % qid, relay.log_text())
    return m.group(0) if m else None
