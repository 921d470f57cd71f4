"""`python3 -m tests [PATTERN]`: discover and run every test, then print one closing summary line.

The summary ("tests: N passed, N failed, N skipped") is what CI reads; skips are listed with their
reasons so none is silent.
"""

from __future__ import annotations

import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    start = sys.argv[1] if len(sys.argv) > 1 else "tests"
    suite = unittest.defaultTestLoader.discover(start_dir=os.path.join(ROOT, start), top_level_dir=ROOT)
    result = unittest.TextTestRunner(verbosity=2, buffer=False).run(suite)
    for test, reason in result.skipped:
        print(f"skipped: {test.id()}: {reason}")
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped) - len(result.expectedFailures)
    print(f"tests: {passed} passed, {failed} failed, {len(result.skipped)} skipped")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
