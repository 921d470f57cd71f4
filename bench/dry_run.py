"""Wall time of `claude-bottle start --dry-run --format=json` against a bare `python3 -c pass`.

Both run alternately in one process tree on one machine, so the ratio holds on a noisy host even when
the absolute numbers don't. Goal: under 2x (imports are kept lean for this).

    python3 bench/dry_run.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(REPO, "examples", "minimal.json")


# As installed: pip compiles the package, so its bytecode is read, not rebuilt, on every run (an
# environment with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module each time).
CACHE = tempfile.mkdtemp(prefix="bench-pycache-")
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPYCACHEPREFIX": CACHE}


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=REPO, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    bare = [sys.executable, "-c", "pass"]
    dry = [sys.executable, "-m", "claude_bottle", "start", "--dry-run", "--format=json", MANIFEST]
    timed(dry)  # warm the page cache and bytecode
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(timed(bare))
        b.append(timed(dry))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"python3 -c pass      median {ma * 1000:7.1f} ms")
    print(f"start --dry-run json median {mb * 1000:7.1f} ms")
    print(f"ratio                {mb / ma:7.2f}x  (goal < 2x, {rounds} alternating rounds)")


if __name__ == "__main__":
    main()
