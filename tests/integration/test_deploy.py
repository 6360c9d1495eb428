"""deploy/: Prometheus config and alert rules (promtool), the Grafana dashboard,
Compose and Kubernetes YAML, the seccomp profile, the systemd unit, and the
metric names they use against docs/METRICS.md.

    cd tests/integration && python3 runtests.py test_deploy

Needs no running relay. promtool (Debian package `prometheus`) runs the rule
checks and unit tests, PyYAML (python3-yaml) parses the YAML files and
systemd-analyze (package `systemd`) verifies the unit: scripts/install-deps.sh
installs all three. Without one, its tests are skipped with a message, and
in CI (CI=true) a skip fails the run (runtests.py, tests/skip_policy.py).
With MXRELAY_BIN pointing at a built binary, the container configurations
are also checked with `mxrelay check-config`.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import unittest

import deploy_check
from deploy_check import (documented_metric_names, documented_metrics, github_anchor,
                          markdown_anchors, metric_names_in_deploy)

ROOT = deploy_check.repo_root()
DEPLOY = os.path.join(ROOT, "deploy")
PROMTOOL = shutil.which("promtool")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
MXRELAY_BIN = os.environ.get("MXRELAY_BIN", os.path.join(ROOT, "build", "main", "mxrelay"))
TOOL_TIMEOUT = 120
yaml = deploy_check.yaml


def path(*parts):
    return os.path.join(DEPLOY, *parts)


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)


def load_yaml_all(p):
    with open(p, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def need_yaml(test):
    return unittest.skipIf(yaml is None, "PyYAML is not installed (apt-get install python3-yaml)")(test)


def need_promtool(test):
    return unittest.skipIf(PROMTOOL is None,
                           "promtool not found: apt-get install prometheus (Debian 12) to run the "
                           "Prometheus config/rule checks")(test)


class PromtoolTest(unittest.TestCase):
    @need_promtool
    def test_check_config(self):
        p = run([PROMTOOL, "check", "config", path("prometheus", "prometheus.yml")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @need_promtool
    def test_check_compose_config(self):
        # Compose mounts alerts.yml next to docker/prometheus.yml: rebuild that layout.
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(path("docker", "prometheus.yml"), d)
            shutil.copy(path("prometheus", "alerts.yml"), d)
            p = run([PROMTOOL, "check", "config", os.path.join(d, "prometheus.yml")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @need_promtool
    def test_check_rules(self):
        p = run([PROMTOOL, "check", "rules", path("prometheus", "alerts.yml")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @need_promtool
    @need_yaml
    def test_dashboard_expressions_parse(self):
        # promtool parses rule expressions: wrap every panel query in a recording rule,
        # with Grafana's variables replaced by values Prometheus accepts.
        rules = []
        for i, (where, expr) in enumerate(deploy_check.dashboard_expressions(ROOT)):
            if expr.startswith("label_values("):
                continue
            expr = (expr.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$site", ".*"))
            self.assertNotIn("$", expr, where)
            rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
        self.assertGreater(len(rules), 40)
        with tempfile.TemporaryDirectory() as d:
            fn = os.path.join(d, "dashboard_rules.yml")
            with open(fn, "w", encoding="utf-8") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            p = run([PROMTOOL, "check", "rules", fn])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @need_promtool
    def test_rule_unit_tests(self):
        p = run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=path("prometheus"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class MetricNamesTest(unittest.TestCase):
    def test_documented_names_parsed(self):
        docs = documented_metrics(ROOT)
        self.assertGreater(len(docs), 30)
        self.assertEqual(docs.get("mxrelay_time_to_250_seconds"), "histogram")
        self.assertEqual(docs.get("mxrelay_queue_messages"), "gauge")
        self.assertEqual(docs.get("mxrelay_process_cpu_seconds_total"), "counter")

    def test_every_used_name_is_documented(self):
        used = metric_names_in_deploy(ROOT)
        self.assertIn("mxrelay_time_to_250_seconds", used, "histogram base names are reported")
        self.assertNotIn("mxrelay_time_to_250_seconds_bucket", used)
        missing = used - documented_metric_names(ROOT)
        self.assertFalse(missing, f"used in deploy/ but not in docs/METRICS.md: {sorted(missing)}")

    def test_histogram_quantile_only_over_histogram_buckets(self):
        histograms = {n for n, t in documented_metrics(ROOT).items() if t == "histogram"}
        exprs = deploy_check.dashboard_expressions(ROOT) + deploy_check.alert_expressions(ROOT)
        for where, expr in exprs:
            for name in re.findall(r"\b(mxrelay_[a-z0-9_]+)_bucket\b", expr):
                self.assertIn(name, histograms, f"{where}: {name}_bucket is not a histogram")

    def test_suffix_stripping(self):
        hist = {"mxrelay_x_seconds"}
        self.assertEqual(deploy_check.names_in_expression(
            "rate(mxrelay_x_seconds_bucket[1m]) + mxrelay_y_count", hist),
            {"mxrelay_x_seconds", "mxrelay_y_count"})


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(path("grafana", "mxrelay-dashboard.json"), encoding="utf-8") as f:
            cls.dash = json.load(f)

    def panels(self):
        out = []

        def walk(ps):
            for p in ps:
                out.append(p)
                walk(p.get("panels", []))

        walk(self.dash["panels"])
        return out

    def test_datasource_variable(self):
        self.assertGreaterEqual(self.dash["schemaVersion"], 36)
        self.assertNotIn("__inputs", self.dash, "provisioned dashboards must not need import inputs")
        variables = {v["name"]: v for v in self.dash["templating"]["list"]}
        ds = variables["datasource"]
        self.assertEqual((ds["type"], ds["query"]), ("datasource", "prometheus"))
        site = variables["site"]
        q = site["query"]["query"] if isinstance(site["query"], dict) else site["query"]
        self.assertEqual(q, "label_values(mxrelay_site_attempts_total, site)")
        self.assertNotIn("${DS_", json.dumps(self.dash))

    def test_every_panel_has_datasource_expr_and_description(self):
        ids = set()
        for p in self.panels():
            self.assertNotIn(p["id"], ids, f"duplicate panel id {p['id']}")
            ids.add(p["id"])
            self.assertIn("gridPos", p)
            if p["type"] == "row":
                continue
            title = p.get("title")
            self.assertEqual(p.get("datasource", {}).get("uid"), "${datasource}", title)
            self.assertTrue(p.get("description", "").strip(), f"{title}: no description")
            self.assertTrue(p.get("targets"), f"{title}: no targets")
            for t in p["targets"]:
                self.assertTrue(t.get("expr", "").strip(), f"{title}: empty expr")
                self.assertEqual(t.get("datasource", {}).get("uid"), "${datasource}", title)

    def test_required_panels(self):
        exprs = " ".join(t["expr"] for p in self.panels() for t in p.get("targets", []))
        for needle in ["mxrelay_messages_received_total", 'outcome="deferred"', 'outcome=~"bounced|expired"',
                       "mxrelay_queue_oldest_message_age_seconds", "mxrelay_site_backed_off",
                       "histogram_quantile(0.99, sum by (le) (rate(mxrelay_time_to_250_seconds_bucket",
                       "mxrelay_delivery_latency_seconds_bucket", "mxrelay_spool_commit_duration_seconds_bucket",
                       "mxrelay_dns_lookup_duration_seconds_bucket", "mxrelay_connections_refused_total",
                       "mxrelay_tls_handshakes_total", "mxrelay_auth_attempts_total",
                       'class=~"4xx|5xx"', "mxrelay_spool_healthy", "mxrelay_spool_commit_batch_messages_bucket",
                       "mxrelay_spool_write_stalls_total", "mxrelay_spool_background_errors_total",
                       "mxrelay_spool_disk_bytes", "mxrelay_process_resident_memory_bytes",
                       "mxrelay_process_open_fds", "mxrelay_process_cpu_seconds_total",
                       "mxrelay_egress_source_jobs_total", "mxrelay_shaping_paths_suspended",
                       "mxrelay_delivery_failures_total", "mxrelay_egress_source_warmup_sent_today"]:
            self.assertIn(needle, exprs)

    @need_yaml
    def test_provisioning_files(self):
        (dashboards,) = load_yaml_all(path("grafana", "provisioning", "dashboards", "mxrelay.yaml"))
        provider = dashboards["providers"][0]
        self.assertEqual(provider["type"], "file")
        (datasources,) = load_yaml_all(path("grafana", "provisioning", "datasources", "prometheus.yaml"))
        self.assertEqual(datasources["datasources"][0]["type"], "prometheus")
        # compose.yaml mounts the dashboard JSON where the provider looks for it.
        (compose,) = load_yaml_all(path("docker", "compose.yaml"))
        mounts = compose["services"]["grafana"]["volumes"]
        target = provider["options"]["path"].rstrip("/") + "/mxrelay-dashboard.json"
        self.assertTrue(any(isinstance(m, str) and m.split(":")[1] == target for m in mounts), mounts)


class AlertRulesTest(unittest.TestCase):
    @need_yaml
    def test_annotations_and_runbooks(self):
        (doc,) = load_yaml_all(path("prometheus", "alerts.yml"))
        anchors = markdown_anchors(os.path.join(ROOT, "docs", "OPERATIONS.md"))
        names = []
        for g in doc["groups"]:
            for r in g["rules"]:
                names.append(r["alert"])
                a = r.get("annotations", {})
                for key in ("summary", "description", "runbook"):
                    self.assertTrue(a.get(key), f"{r['alert']}: no {key}")
                self.assertIn(r.get("labels", {}).get("severity"), ("warning", "critical"), r["alert"])
                self.assertRegex(a["description"], r'event=|"outcome"', f"{r['alert']}: no log line named")
                doc_path, _, anchor = a["runbook"].partition("#")
                self.assertEqual(doc_path, "docs/OPERATIONS.md", r["alert"])
                self.assertIn(anchor, anchors, f"{r['alert']}: runbook anchor #{anchor} not in OPERATIONS.md")
        for required in ["MxrelayDown", "MxrelayNotReady", "MxrelaySpoolUnhealthy", "MxrelayQueueGrowing",
                         "MxrelayOldestMessageOld", "MxrelayOldestMessageVeryOld", "MxrelayNoDeliveries",
                         "MxrelayBounceRateHigh", "MxrelayDeferralRateHigh", "MxrelayTlsHandshakeFailures",
                         "MxrelayAuthFailures", "MxrelayEgressPathSuspended"]:
            self.assertIn(required, names)

    @need_yaml
    def test_unit_tests_cover_alerts(self):
        (doc,) = load_yaml_all(path("prometheus", "alerts_test.yml"))
        tested = {t["alertname"] for test in doc["tests"] for t in test.get("alert_rule_test", [])}
        self.assertGreaterEqual(len(tested), 4, tested)

    def test_log_events_named_in_docs_exist_in_code(self):
        # Every event=name in the alerts and OPERATIONS.md must be logged somewhere in the code.
        code_events = set()
        for folder in ("relay", "queue", "delivery", "main", "common", "metrics", "dkim", "tenants", "api"):
            for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
                for fn in files:
                    if fn.endswith((".cc", ".h")):
                        with open(os.path.join(dirpath, fn), encoding="utf-8", errors="replace") as f:
                            code_events |= set(re.findall(r"event=([a-z_]+)", f.read()))
        for doc in (path("prometheus", "alerts.yml"), os.path.join(ROOT, "docs", "OPERATIONS.md")):
            with open(doc, encoding="utf-8") as f:
                named = set(re.findall(r"event=([a-z_]+)", f.read()))
            unknown = named - code_events - {"name"}
            self.assertFalse(unknown, f"{os.path.relpath(doc, ROOT)} names events the code never logs: "
                                      f"{sorted(unknown)}")

    def test_operations_internal_links(self):
        ops = os.path.join(ROOT, "docs", "OPERATIONS.md")
        anchors = markdown_anchors(ops)
        with open(ops, encoding="utf-8") as f:
            links = re.findall(r"\]\(#([^)]+)\)", f.read())
        self.assertTrue(links)
        for link in links:
            self.assertIn(link, anchors)
        self.assertEqual(github_anchor("AUTH fails: full address or bare name"),
                         "auth-fails-full-address-or-bare-name")


class PrometheusConfigsTest(unittest.TestCase):
    @need_yaml
    def test_compose_config_differs_only_in_target(self):
        (host,) = load_yaml_all(path("prometheus", "prometheus.yml"))
        (compose,) = load_yaml_all(path("docker", "prometheus.yml"))
        self.assertEqual(host["scrape_configs"][0]["static_configs"][0]["targets"], ["127.0.0.1:9465"])
        self.assertEqual(compose["scrape_configs"][0]["static_configs"][0]["targets"], ["mxrelay:9465"])
        for cfg in (host, compose):
            cfg["scrape_configs"][0]["static_configs"][0]["targets"] = []
        self.assertEqual(host, compose)
        self.assertEqual(host["scrape_configs"][0]["job_name"], "mxrelay")


class ContainerTest(unittest.TestCase):
    @need_yaml
    def test_compose(self):
        (doc,) = load_yaml_all(path("docker", "compose.yaml"))
        services = doc["services"]
        self.assertEqual(set(services), {"mxrelay", "prometheus", "grafana"})
        relay = services["mxrelay"]
        self.assertIn("seccomp=./seccomp-io_uring.json", relay["security_opt"])
        self.assertIn("spool:/var/lib/mxrelay", relay["volumes"])
        self.assertIn("spool", doc["volumes"])
        self.assertEqual(relay["stop_grace_period"], "45s")
        here = path("docker")
        for svc in services.values():
            for v in svc.get("volumes", []):
                src = v["source"] if isinstance(v, dict) else v.split(":")[0]
                if src.startswith(".") and src != "./users":  # ./users is the operator's
                    self.assertTrue(os.path.exists(os.path.join(here, src)), f"missing bind source {src}")

    def test_seccomp_profile(self):
        with open(path("docker", "seccomp-io_uring.json"), encoding="utf-8") as f:
            prof = json.load(f)
        self.assertEqual(prof["defaultAction"], "SCMP_ACT_ERRNO")
        unconditional = set()
        for r in prof["syscalls"]:
            if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") and not r.get("includes") \
                    and not r.get("excludes"):
                unconditional |= set(r["names"])
        for name in ("io_uring_setup", "io_uring_enter", "io_uring_register", "read", "write", "futex",
                     "mmap", "epoll_wait", "accept4", "connect", "fdatasync", "getrandom", "rseq"):
            self.assertIn(name, unconditional)
        for name in ("mount", "ptrace", "bpf", "kexec_load", "clone3"):
            self.assertNotIn(name, unconditional)

    def test_dockerfile(self):
        with open(path("docker", "Dockerfile"), encoding="utf-8") as f:
            text = f.read()
        self.assertEqual(len(re.findall(r"^FROM debian:12-slim", text, re.M)), 2)
        self.assertIn("-DMXRELAY_BENCHMARKS=OFF", text)
        self.assertIn("ninja -C build mxrelay", text)
        self.assertRegex(text, r"(?m)^EXPOSE 2525 5587 5465 9465$")
        self.assertRegex(text, r"(?m)^HEALTHCHECK .*\n?.*/healthz")
        self.assertRegex(text, r"(?m)^USER mxrelay")
        # Every component the top-level CMakeLists.txt always adds is copied
        # into the build stage (a new folder would break the image build).
        with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
            subdirs = re.findall(r"(?m)^add_subdirectory\((\w+)\)", f.read())
        self.assertIn("dkim", subdirs)
        for d in subdirs:
            self.assertRegex(text, r"(?m)^COPY %s \./%s$" % (d, d), f"the Dockerfile does not copy {d}/")

    def test_container_relay_configs(self):
        with open(path("docker", "mxrelay.toml"), "rb") as f:
            cfg = tomllib.load(f)
        self.assertEqual(cfg["data_dir"], "/var/lib/mxrelay")
        self.assertEqual(cfg["metrics"], {"enabled": True, "listen": "0.0.0.0:9465", "site_labels": 20})
        self.assertTrue(all(l["address"] == "0.0.0.0" for l in cfg["listener"]))
        self.assertEqual(sorted(l["port"] for l in cfg["listener"]), [2525, 5465, 5587])

    @unittest.skipUnless(os.access(MXRELAY_BIN, os.X_OK), "no mxrelay binary (MXRELAY_BIN) to run check-config")
    def test_check_config_with_binary(self):
        files = [path("docker", "mxrelay.toml")]
        with tempfile.TemporaryDirectory() as d:
            if yaml is not None:
                cm = next(x for x in load_yaml_all(path("kubernetes", "mxrelay.yaml")) if x["kind"] == "ConfigMap")
                k8s = os.path.join(d, "k8s.toml")
                with open(k8s, "w", encoding="utf-8") as f:
                    f.write(cm["data"]["mxrelay.toml"])
                files.append(k8s)
            for fn in files:
                p = run([MXRELAY_BIN, "check-config", "-c", fn])
                self.assertEqual(p.returncode, 0, f"{fn}: {p.stdout}{p.stderr}")


class KubernetesTest(unittest.TestCase):
    @need_yaml
    def test_manifests(self):
        docs = load_yaml_all(path("kubernetes", "mxrelay.yaml"))
        by_kind = {}
        for d in docs:
            self.assertNotIn("namespace", d["metadata"], "manifests are namespace-free")
            by_kind.setdefault(d["kind"], []).append(d)
        self.assertEqual(sorted(by_kind), ["ConfigMap", "Service", "StatefulSet"])
        self.assertNotIn("Secret", by_kind, "the users Secret is created with kubectl, not applied")

        cfg = tomllib.loads(by_kind["ConfigMap"][0]["data"]["mxrelay.toml"])
        self.assertEqual(cfg["metrics"]["listen"], "0.0.0.0:9465")

        sts = by_kind["StatefulSet"][0]["spec"]
        self.assertEqual(sts["replicas"], 1)
        pod = sts["template"]["spec"]
        ann = sts["template"]["metadata"]["annotations"]
        self.assertEqual((ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"]),
                         ("true", "9465", "/metrics"))
        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], 45)
        sec = pod["securityContext"]
        self.assertTrue(sec["runAsNonRoot"])
        self.assertEqual(sec["seccompProfile"]["type"], "Localhost")
        (c,) = pod["containers"]
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": 9465})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": 9465})
        self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        (claim,) = sts["volumeClaimTemplates"]
        self.assertEqual(mounts[claim["metadata"]["name"]], "/var/lib/mxrelay")
        self.assertEqual(cfg["auth"]["users_file"], mounts["users"] + "/users")

        services = {s["metadata"]["name"]: s["spec"] for s in by_kind["Service"]}
        self.assertEqual(services[by_kind["StatefulSet"][0]["spec"]["serviceName"]]["clusterIP"], "None")
        smtp = next(s for s in services.values() if s.get("clusterIP") != "None")
        ports = {p["port"]: p["targetPort"] for p in smtp["ports"]}
        container_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual({k: container_ports[v] for k, v in ports.items()}, {587: 5587, 465: 5465, 2525: 2525})


class SystemdUnitTest(unittest.TestCase):
    UNIT = path("systemd", "mxrelay.service")

    @classmethod
    def setUpClass(cls):
        cls.keys = {}
        with open(cls.UNIT, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith(("#", ";", "[")) or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                cls.keys.setdefault(k.strip(), []).append(v.strip())

    def one(self, key):
        self.assertIn(key, self.keys, f"{key}= missing")
        return self.keys[key][-1]

    def test_hardening(self):
        expected = {
            "User": "mxrelay", "StateDirectory": "mxrelay", "ConfigurationDirectory": "mxrelay",
            "ExecStart": "/usr/local/bin/mxrelay run -c /etc/mxrelay/mxrelay.toml",
            "ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM", "TimeoutStopSec": "45",
            "AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
            "ProtectKernelLogs": "yes", "LimitNOFILE": "1048576",
        }
        for k, v in expected.items():
            self.assertEqual(self.one(k), v, k)
        self.assertNotEqual(self.keys.get("DynamicUser", ["no"])[-1], "yes")
        self.assertEqual(set(self.one("RestrictAddressFamilies").split()),
                         {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"})
        self.assertIn("LimitMEMLOCK", self.keys)
        allow = [v for v in self.keys["SystemCallFilter"] if not v.startswith("~")]
        allowed = set(" ".join(allow).split())
        self.assertTrue({"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed)
        denied = set(" ".join(v[1:] for v in self.keys["SystemCallFilter"] if v.startswith("~")).split())
        if SYSTEMD_ANALYZE:
            # None of the denied groups may contain io_uring.
            for group in denied:
                p = run([SYSTEMD_ANALYZE, "syscall-filter", group])
                self.assertNotIn("io_uring", p.stdout, group)

    @unittest.skipIf(SYSTEMD_ANALYZE is None, "systemd-analyze not found")
    def test_systemd_analyze_verify(self):
        # The binary is not installed here: verify a copy that runs /bin/true instead.
        with tempfile.TemporaryDirectory() as d:
            unit = os.path.join(d, "mxrelay.service")
            with open(self.UNIT, encoding="utf-8") as f:
                text = f.read().replace("/usr/local/bin/mxrelay", "/bin/true")
            with open(unit, "w", encoding="utf-8") as f:
                f.write(text)
            p = run([SYSTEMD_ANALYZE, "verify", unit])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class DebianPackageTest(unittest.TestCase):
    """packaging/deb: the conffile lists every documented key, commented out."""

    PKG = os.path.join(ROOT, "packaging", "deb")
    SETTING = re.compile(r"^#(\[|[a-z0-9_]+ = )")

    def conffile(self):
        with open(os.path.join(self.PKG, "mxrelay.toml"), encoding="utf-8") as f:
            return f.read()

    def uncommented(self):
        return "\n".join(l[1:] if self.SETTING.match(l) else l for l in self.conffile().splitlines()) + "\n"

    @staticmethod
    def documented_keys():
        """{section: {key}} from the key tables of docs/CONFIG.md ("" = top level)."""
        keys, section, in_table = {}, None, False
        with open(os.path.join(ROOT, "docs", "CONFIG.md"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("## "):
                    m = re.search(r"`\[\[?([a-z_]+)\]?\]`", line)
                    section = m.group(1) if m else ("" if "Top level" in line else None)
                    in_table = False
                elif line.startswith("`[[") and section is not None:
                    # A sub-table documented inside a section: "`[[dkim.rule]]` (repeatable; ...".
                    m = re.match(r"`\[\[([a-z_.]+)\]\]` \(repeatable", line)
                    section = m.group(1) if m else section
                elif line.startswith("| key |"):
                    in_table = section is not None
                elif not line.startswith("|"):
                    in_table = False
                elif in_table and line.startswith("| `"):
                    first = line.split("|")[1]
                    keys.setdefault(section, set()).update(re.findall(r"`([a-z0-9_]+)`", first))
        return keys

    def test_every_line_is_a_comment(self):
        for n, line in enumerate(self.conffile().splitlines(), 1):
            self.assertTrue(not line.strip() or line.startswith("#"), f"line {n}: {line}")

    def test_every_documented_key_is_listed(self):
        cfg = tomllib.loads(self.uncommented())
        documented = self.documented_keys()
        self.assertGreater(len(documented.get("delivery", ())), 20)
        text = self.conffile()
        for section, keys in documented.items():
            table = cfg
            for part in section.split(".") if section else ():
                table = table.get(part) if isinstance(table, dict) else None
                if isinstance(table, list):
                    self.assertEqual(len(table), 1, section)
                    table = table[0]
            self.assertIsInstance(table, dict, f"[{section}] missing")
            for k in keys:
                # In the table once uncommented, or shown as an alternative
                # ("# key = ...": keys of which a table takes only one).
                self.assertTrue(k in table or re.search(r"^# %s = " % k, text, re.M),
                                f"{section or 'top level'}.{k} not in packaging/deb/mxrelay.toml")
        self.assertEqual(cfg["data_dir"], "/var/lib/mxrelay")

    def test_maintainer_scripts_parse(self):
        for name in ("postinst", "prerm", "postrm"):
            p = run(["sh", "-n", os.path.join(self.PKG, name)])
            self.assertEqual(p.returncode, 0, name + p.stderr)
            self.assertTrue(os.access(os.path.join(self.PKG, name), os.X_OK), name)

    @unittest.skipIf(SYSTEMD_ANALYZE is None, "systemd-analyze not found")
    def test_packaged_unit(self):
        """The unit Packaging.cmake derives from deploy/systemd at configure time (any configured build dir)."""
        candidates = [os.path.join(ROOT, d, "packaging", "deb", "mxrelay.service")
                      for d in (os.environ.get("MXRELAY_DEB_BUILD_DIR", "build-deb"), "build")]
        generated = next((c for c in candidates if os.path.exists(c)), None)
        if generated is None:
            self.skipTest("no configured build dir (build-deb/ or build/)")
        with open(generated, encoding="utf-8") as f:
            text = f.read()
        with open(SystemdUnitTest.UNIT, encoding="utf-8") as f:
            original = f.read()
        directives = lambda t: [l for l in t.splitlines() if l and not l.startswith("#")]
        self.assertEqual([l for l in directives(text) if not l.startswith("ExecCondition=")],
                         [l.replace("/usr/local/", "/usr/") for l in directives(original)])
        self.assertIn('ExecCondition=/bin/grep -Eq "^[[:space:]]*data_dir[[:space:]]*=" /etc/mxrelay/mxrelay.toml',
                      text.splitlines())
        self.assertNotIn("/usr/local", text)
        with tempfile.TemporaryDirectory() as d:
            unit = os.path.join(d, "mxrelay.service")
            with open(unit, "w", encoding="utf-8") as f:
                f.write(text.replace("/usr/bin/mxrelay", "/bin/true"))
            p = run([SYSTEMD_ANALYZE, "verify", unit])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @unittest.skipUnless(os.access(MXRELAY_BIN, os.X_OK), "no mxrelay binary (MXRELAY_BIN) to run check-config")
    def test_uncommented_conffile_passes_check_config(self):
        with tempfile.TemporaryDirectory() as d:
            text = self.uncommented().replace("/etc/mxrelay/", d + "/").replace("/var/lib/mxrelay", d)
            fn = os.path.join(d, "mxrelay.toml")
            with open(fn, "w", encoding="utf-8") as f:
                f.write(text)
            for name in ("fullchain.pem", "privkey.pem", "users", "tenants.toml"):
                open(os.path.join(d, name), "w").close()
            # The example DKIM rule's key: a real one, owner-only, as the relay requires.
            for key in re.findall(re.escape(d) + r"/dkim/[a-z0-9._-]+\.pem", text):
                os.makedirs(os.path.dirname(key), exist_ok=True)
                g = run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key])
                self.assertEqual(g.returncode, 0, g.stderr)
                os.chmod(key, 0o600)
            p = run([MXRELAY_BIN, "check-config", "-c", fn])
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
