#!/usr/bin/env python3
"""Applies the skip policy (tests/skip_policy.py, tests/skip-allowlist.txt) to
ctest's JUnit output: a test ctest reports as skipped or disabled (gtest's
GTEST_SKIP, SKIP_RETURN_CODE 77, DISABLED_ tests) fails CI unless allow-listed.
Python tests skipped inside an integration module are checked by
tests/integration/runtests.py itself.

  scripts/check_skips.py build/ctest-junit.xml [more.xml ...]

Exit 0: no skip, or only allowed ones (or not strict); 1: a skip not allowed;
2: a file is missing or has no test case.
"""
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import skip_policy  # noqa: E402


def skipped_cases(path):
    root = ET.parse(path).getroot()
    cases = list(root.iter("testcase"))
    out = []
    for c in cases:
        status = c.get("status", "")
        sk = c.find("skipped")
        if sk is not None or status in ("notrun", "disabled"):
            out.append((c.get("name"), (sk.get("message") if sk is not None else status) or status))
    return cases, out


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    bad = []
    for path in argv:
        if not os.path.exists(path):
            print("check_skips: %s does not exist" % path, file=sys.stderr)
            return 2
        cases, skipped = skipped_cases(path)
        if not cases:
            print("check_skips: %s has no test case" % path, file=sys.stderr)
            return 2
        print("check_skips: %s: %d tests, %d skipped" % (path, len(cases), len(skipped)), file=sys.stderr)
        bad += skip_policy.report(skipped, "check_skips")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
