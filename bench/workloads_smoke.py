#!/usr/bin/env python3
"""ctest bench.workloads_smoke: the issue 19 benchmark scripts still work.

Runs bench/transactional.sh, bench/campaign.sh (with --isolation) and
bench/soak.sh in their small modes against the built relay and a private
Postfix, and checks what each must produce: both systems measured, every
recipient delivered, the troubled destinations kept apart, nothing lost in
the soak. The figures themselves are not judged (the machine is shared);
bench/RESULTS.md holds the real runs.
"""
import csv
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, timeout):
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    print(p.stdout[-4000:], flush=True)
    if p.returncode != 0:
        sys.exit("%s exited with %d" % (cmd[0], p.returncode))
    return p.stdout


def rows(path):
    return list(csv.DictReader(open(path), delimiter="\t"))


def main():
    if os.geteuid() != 0:
        print("needs root (Postfix, ports 25/53 on loopback, cgroups)")
        sys.exit(77)
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
    with tempfile.TemporaryDirectory(prefix="mxr-workloads-") as tmp:
        # Transactional: STARTTLS + AUTH per connection, resumption on.
        out = os.path.join(tmp, "tx")
        run([os.path.join(HERE, "transactional.sh"), "--build", build, "--smoke", "--out", out], 300)
        cell = rows(os.path.join(out, "ecdsa-resume_on-s5", "runs.tsv"))
        by = {r["system"]: r for r in cell}
        assert set(by) == {"ours", "postfix"}, by.keys()
        for system, r in by.items():
            assert int(r["accepted"]) > 0 and int(r["delivered"]) == int(r["accepted"]), (system, r)
            assert r["errors"] == "-", (system, r["errors"])
            assert int(r["tls_handshakes"]) >= int(r["accepted"]), (system, r)
        # The relay hands out TLS 1.3 tickets and takes them back.
        assert int(by["ours"]["tls_resumed"]) > 0, by["ours"]
        table = open(os.path.join(out, "table.md")).read()
        assert re.search(r"\| ecdsa \| on \| 5 \| 1K \| \d+ \| \d+ \| [\d.]+x \|", table), table

        # Campaign + isolation: MX lookups through the loopback DNS server.
        out = os.path.join(tmp, "campaign")
        run([os.path.join(HERE, "campaign.sh"), "--build", build, "--smoke", "--isolation", "--out", out], 600)
        got = {(r["system"], r["pass"]): r for r in rows(os.path.join(out, "runs.tsv"))}
        for system in ("ours", "postfix"):
            h, i = got[(system, "healthy")], got[(system, "isolation")]
            assert int(h["recipients_accepted"]) == 1000, h
            assert int(h["delivered_rcpts"]) == 1000, h
            # 17 of 20 domains healthy: all of theirs arrive; the 421 ones
            # deliver nothing; the slow ones at most what came in 5 s steps.
            assert int(i["healthy_rcpts"]) == 850, i
        table = open(os.path.join(out, "table.md")).read()
        assert "isolation ours: healthy domains keep" in table, table

        # Soak: short, with the loss check.
        out = os.path.join(tmp, "soak")
        text = run([os.path.join(HERE, "soak.sh"), "--build", build, "--seconds", "20", "--sample", "2",
                    "--rate", "200", "--out", out], 300)
        m = re.search(r"lost \(acknowledged - delivered - in the spool\) = (-?\d+)", text)
        assert m and int(m.group(1)) == 0, text[-2000:]
        samples = rows(os.path.join(out, "samples.tsv"))
        assert len(samples) >= 5 and all(float(s["rss_mib"]) > 0 for s in samples), samples
        assert open(os.path.join(out, "soak.svg")).read().startswith("<svg")
    print("workloads smoke: ok")


if __name__ == "__main__":
    main()
