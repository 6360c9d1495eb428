"""Helpers to check deploy/ against docs/ (Python standard library; PyYAML if present).

    from deploy_check import metric_names_in_deploy, documented_metric_names
    root = repo_root()
    missing = metric_names_in_deploy(root) - documented_metric_names(root)

Metric names are the base names of docs/METRICS.md: a histogram's `_bucket`,
`_sum` and `_count` series count as the histogram itself; every other name
(counters keep their `_total`) is used as written. Only `mxrelay_*` names are
returned: `up` and other Prometheus-made series are not the relay's.
"""

import json
import os
import re

try:
    import yaml  # PyYAML (Debian: python3-yaml)
except ImportError:  # pragma: no cover - depends on the machine
    yaml = None

DASHBOARD = os.path.join("deploy", "grafana", "mxrelay-dashboard.json")
ALERTS = os.path.join("deploy", "prometheus", "alerts.yml")
METRICS_DOC = os.path.join("docs", "METRICS.md")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_NAME_RE = re.compile(r"\bmxrelay_[a-zA-Z0-9_]+\b")
_TABLE_ROW_RE = re.compile(r"^\|\s*`(mxrelay_[a-z0-9_]+)`\s*\|\s*([a-z]+)")


def repo_root():
    """The repository root (this file lives in tests/integration/)."""
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def documented_metrics(root):
    """{name: type} from the tables of docs/METRICS.md (type: counter, gauge, histogram)."""
    out = {}
    with open(os.path.join(root, METRICS_DOC), encoding="utf-8") as f:
        for line in f:
            m = _TABLE_ROW_RE.match(line.strip())
            if m:
                out[m.group(1)] = m.group(2)
    return out


def documented_metric_names(root):
    """The set of metric names documented in docs/METRICS.md's tables."""
    return set(documented_metrics(root))


def dashboard_expressions(root):
    """[(where, PromQL)] of every panel target and query variable of the dashboard."""
    with open(os.path.join(root, DASHBOARD), encoding="utf-8") as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r}", t["expr"]))
            walk(p.get("panels", []))  # collapsed rows keep their panels inside

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if q:
            out.append((f"variable {v.get('name')!r}", q))
    return out


def _load_yaml(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if yaml is not None:
        return yaml.safe_load(text)
    return None, text


def alert_expressions(root):
    """[(where, PromQL)] of every rule in deploy/prometheus/alerts.yml."""
    path = os.path.join(root, ALERTS)
    doc = _load_yaml(path)
    out = []
    if isinstance(doc, dict):
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                name = r.get("alert") or r.get("record")
                out.append((f"rule {name}", str(r.get("expr", ""))))
        return out
    # Without PyYAML: take every `expr:` value (plain or block scalar).
    lines = doc[1].splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        i += 1
        if value in ("|", "|-", ">", ">-"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i])
                i += 1
            value = "\n".join(block)
        out.append(("rule", value))
    return out


def names_in_expression(expr, histograms):
    """mxrelay_* metric base names in one PromQL expression."""
    names = set()
    for n in _NAME_RE.findall(expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if n.endswith(suffix) and n[: -len(suffix)] in histograms:
                n = n[: -len(suffix)]
                break
        names.add(n)
    return names


def metric_names_in_deploy(root):
    """Set of mxrelay metric (base) names used by the dashboard and the alert rules."""
    histograms = {n for n, t in documented_metrics(root).items() if t == "histogram"}
    names = set()
    for _, expr in dashboard_expressions(root) + alert_expressions(root):
        names |= names_in_expression(expr, histograms)
    return names


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading ("AUTH fails: x (y)" -> "auth-fails-x-y")."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def markdown_anchors(path):
    """Anchors of every #-heading in a Markdown file (outside code fences)."""
    anchors = set()
    fenced = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fenced = not fenced
                continue
            m = None if fenced else re.match(r"^#{1,6}\s+(.*)$", line)
            if m:
                anchors.add(github_anchor(m.group(1)))
    return anchors


if __name__ == "__main__":
    r = repo_root()
    used = metric_names_in_deploy(r)
    documented = documented_metric_names(r)
    for n in sorted(used):
        print(("  " if n in documented else "! ") + n)
    print(f"{len(used)} names used, {len(used - documented)} undocumented, "
          f"{len(documented - used)} documented but unused")
