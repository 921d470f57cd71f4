"""Canary: the pinned pipelock and gitleaks still build from source and behave as the bundle assumes.

Opt-in (CLAUDE_BOTTLE_RUN_CANARIES=1): these fetch modules through the Go module proxy and take minutes.
pipelock is built at a pinned commit (CLAUDE_BOTTLE_PIPELOCK_REF overrides it); on a machine whose module
proxy refuses pipelock (as this project's own CI machines do), that test fails, and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest

from claude_bottle import egress, pipelock

RUN = os.environ.get("CLAUDE_BOTTLE_RUN_CANARIES") == "1"
GITLEAKS = "github.com/zricethezav/gitleaks/v8@v8.30.1"
# pipelock's module path has no /vN suffix, so its v2+ tags can't be named; a commit pseudo-version can.
PIPELOCK_REF = os.environ.get("CLAUDE_BOTTLE_PIPELOCK_REF", "v1.5.1-0.20260906191326-75c3f5ac52eb")
PIPELOCK = f"github.com/luckyPipewrench/pipelock/cmd/pipelock@{PIPELOCK_REF}"
AWS_KEY_LINE = "aws_access_key_id = AKIAQYLPMN5HFIQR7XYZ\n"


@unittest.skipUnless(RUN, "canaries are opt-in: CLAUDE_BOTTLE_RUN_CANARIES=1")
class UpstreamTools(unittest.TestCase):
    def setUp(self) -> None:
        if shutil.which("go") is None:
            self.fail("go is needed to build the pinned tools")
        self.bin = tempfile.mkdtemp(prefix="cb-canary-")
        self.addCleanup(shutil.rmtree, self.bin, True)

    def install(self, module: str) -> str:
        env = dict(os.environ, GOBIN=self.bin, CGO_ENABLED="0")
        proc = subprocess.run(["go", "install", module], capture_output=True, text=True, timeout=1800, env=env)
        if proc.returncode != 0:
            self.fail(f"go install {module} failed: {proc.stderr.strip()[-1500:]}")
        path = module.split("@")[0].split("/")
        if path[-1][:1] == "v" and path[-1][1:].isdigit():  # go names the binary without a /vN suffix
            path.pop()
        return os.path.join(self.bin, path[-1])

    def test_gitleaks_builds_and_finds_a_key_on_stdin(self) -> None:
        gitleaks = self.install(GITLEAKS)
        argv = [gitleaks, "stdin", "--redact", "-f", "json", "-r", "-", "--exit-code", "99", "--no-banner"]
        found = subprocess.run(argv, input=AWS_KEY_LINE, capture_output=True, text=True, timeout=60)
        self.assertEqual(found.returncode, 99, found.stderr)
        self.assertIn("aws-access-token", found.stdout)
        self.assertNotIn("AKIAQYLPMN5HFIQR7XYZ", found.stdout, "--redact must keep the secret out of reports")
        clean = subprocess.run(argv, input="hello\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(clean.returncode, 0, clean.stderr)

    def test_pipelock_builds_and_accepts_the_rendered_config(self) -> None:
        binary = self.install(PIPELOCK)
        rules = egress.expand(["@anthropic", "*.example.org", "db.example.com:5432", "ssh://git.example.com",
                               "100.64.1.2:22"], lambda i, m: ValueError(m))
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.bin, delete=False) as handle:
            handle.write(pipelock.render(egress.classify(rules)))
        check = subprocess.run([binary, "check", "--config", handle.name], capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        blocked = subprocess.run([binary, "check", "--config", handle.name, "--url", "https://evil.example.net/"],
                                 capture_output=True, text=True, timeout=60)
        self.assertNotEqual(blocked.returncode, 0, "a host outside the allowlist must be blocked")
        allowed = subprocess.run([binary, "check", "--config", handle.name, "--url", "https://api.anthropic.com/"],
                                 capture_output=True, text=True, timeout=60)
        self.assertEqual(allowed.returncode, 0, allowed.stdout + allowed.stderr)


if __name__ == "__main__":
    unittest.main()
