"""Installs a .pth hook so that worker subprocesses started by the tests measure coverage too.

The hook only acts when COVERAGE_PROCESS_START is set (``make test`` sets it), so normal runs
of the venv are unaffected.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

HOOK = "import coverage; coverage.process_startup()\n"


def main() -> int:
    if sys.argv[1:] != ["install"]:
        sys.stderr.write("usage: coverage_hook.py install\n")
        return 2
    target = Path(sysconfig.get_paths()["purelib"]) / "execdist_coverage.pth"
    target.write_text(HOOK)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
