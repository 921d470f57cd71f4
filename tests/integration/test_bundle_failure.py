"""A bundle that never becomes ready stops the agent that started beside it, and `start` says why.

The agent no longer waits for the bundle before it starts (its gate holds only its command), so the
launcher's background readiness wait is what stops a bottle whose bundle dies: here a real bundle
image whose supervisor exits at once, under a real agent that would otherwise sleep for minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest

from tests.integration import support


class DeadBundle(unittest.TestCase):
    def test_the_agent_is_stopped_and_the_reason_said(self) -> None:
        base = support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        broken = f"claude-bottle/sidecars:dead-test-{os.getpid()}"
        # The real image, with a supervisor that gives up before it starts anything.
        s.write("Dockerfile", f"FROM {base}\nUSER root\n"
                              "RUN printf 'import sys\\nsys.exit(1)\\n' > /opt/claude-bottle/supervise.py\n"
                              "USER 10001:10001\n")
        dockerfile = os.path.join(s.dir, "Dockerfile")
        support.sh(["docker", "build", "-q", "-t", broken, "-f", dockerfile, s.dir], timeout=300,
                   env={**os.environ, "DOCKER_BUILDKIT": "0"})
        self.addCleanup(support.sh, ["docker", "image", "rm", "-f", broken], check=False)
        bottle = support.unique_name("itest-dead")
        manifest = s.manifest({"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE, "state": "ephemeral"}})
        started = time.monotonic()
        launched = subprocess.run(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--", "sleep", "300"],
            capture_output=True, text=True, timeout=240, cwd=support.REPO,
            env=support.launcher_env(CLAUDE_BOTTLE_SIDECARS_IMAGE=broken))
        took = time.monotonic() - started
        print(f"\n{launched.stderr.strip()[-1500:]}\n(took {took:.1f} s)", file=sys.stderr)
        self.assertNotEqual(launched.returncode, 0, launched.stderr[-2000:])
        self.assertIn("the bundle did not become ready", launched.stderr)
        self.assertIn("exited (exit 1)", launched.stderr)  # said: how the bundle ended
        self.assertLess(took, 120, "the agent ran on although its bundle was dead")
        self.assertEqual(support.labelled(bottle), [])
