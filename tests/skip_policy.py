"""The skip policy of the test suite, shared by tests/integration/runtests.py
(Python unittest skips) and scripts/check_skips.py (ctest skips: GTEST_SKIP,
SKIP_RETURN_CODE, disabled tests).

A skipped test fails the run in CI (CI=true) or with MXRELAY_STRICT_SKIPS=1
unless tests/skip-allowlist.txt names it with a reason. Outside CI, skips are
listed and allowed (a developer without root can still run the suite).
"""

import fnmatch
import os
import sys

ALLOWLIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "skip-allowlist.txt")


def strict():
    return os.environ.get("CI") == "true" or os.environ.get("MXRELAY_STRICT_SKIPS") == "1"


def load_allowlist(path=ALLOWLIST):
    """[(glob, reason)] from lines "GLOB -- REASON" ('#' comments, blank lines).
    A line without a reason is an error: the list exists to say why."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            glob, sep, reason = line.partition(" -- ")
            if not sep or not glob.strip() or not reason.strip():
                raise ValueError("%s:%d: expected 'TEST-ID-GLOB -- reason', got %r" % (path, n, line))
            out.append((glob.strip(), reason.strip()))
    return out


def allowed(test_id, allowlist):
    """The allow-list's reason for test_id, or None."""
    for glob, reason in allowlist:
        if fnmatch.fnmatchcase(test_id, glob):
            return reason
    return None


def report(skipped, who, allowlist=None, out=sys.stderr):
    """Prints every skip [(test id, reason)]; returns those that fail the
    policy (not allow-listed, in strict mode), [] otherwise."""
    allowlist = load_allowlist() if allowlist is None else allowlist
    bad = []
    for test_id, reason in skipped:
        why = allowed(test_id, allowlist)
        if why is not None:
            out.write("%s: skipped (allow-listed: %s): %s: %s\n" % (who, why, test_id, reason))
        elif strict():
            out.write("%s: SKIP NOT ALLOWED in CI: %s: %s\n" % (who, test_id, reason))
            bad.append((test_id, reason))
        else:
            out.write("%s: skipped (would fail in CI): %s: %s\n" % (who, test_id, reason))
    if skipped:
        out.write("%s: %d skipped, %d not allowed%s\n"
                  % (who, len(skipped), len(bad), "" if strict() else " (not strict: CI is not 'true')"))
    out.flush()
    return bad
