"""Runs integration test modules like `python3 -m unittest -v MODULE...` and
then applies the project's skip policy (tests/skip-allowlist.txt):

  - every skipped test is listed at the end with its reason;
  - in CI (CI=true) or with MXRELAY_STRICT_SKIPS=1, a skipped test that is not
    on the allow-list fails the run (exit 1), so a missing tool, a missing
    privilege or a refused mount cannot pass as green.

    cd tests/integration && CI=true python3 runtests.py test_deploy

ctest runs every integration module through this (tests/CMakeLists.txt);
scripts/check_skips.py applies the same allow-list to ctest's own skips
(gtest's GTEST_SKIP, SKIP_RETURN_CODE).
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import skip_policy  # noqa: E402  (tests/skip_policy.py)


def main(argv):
    prog = unittest.main(module=None, argv=["runtests"] + argv, exit=False, verbosity=2)
    result = prog.result
    skipped = [(test.id(), reason) for test, reason in result.skipped]
    code = 0 if result.wasSuccessful() else 1
    if not result.testsRun:
        print("runtests: no test ran", file=sys.stderr)
        code = 1
    bad = skip_policy.report(skipped, "runtests")
    if bad:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
