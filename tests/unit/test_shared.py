"""One source for what the launcher and the bundle share (claude_bottle/bundle/shared.py): both sides
are held to it, and the bundle image is built with the same file."""

from __future__ import annotations

import os
import re
import unittest
from pathlib import Path

from claude_bottle import audit, dlp, docker_argv, images, pipelock, plan, secrets
from claude_bottle.bundle import policy, shared, supervise

BUNDLE = Path(__file__).resolve().parents[2] / "claude_bottle" / "bundle"


class LauncherTest(unittest.TestCase):
    def test_the_launcher_reads_the_shared_values(self) -> None:
        self.assertEqual(plan.PROXY_PORT, shared.PROXY_PORT)
        self.assertEqual(pipelock.PIPELOCK_LISTEN, shared.PIPELOCK_LISTEN)
        self.assertEqual(dlp.MODES, shared.DLP_MODES)
        self.assertEqual(docker_argv.BUNDLE_CONFIG_DIR, shared.CONFIG_DIR)
        self.assertTrue(set(shared.LOG_FIELDS) <= set(audit.FIELDS))
        self.assertRegex(secrets.placeholder("seed", "TOKEN"), shared.PLACEHOLDER_PATTERN)


class BundleTest(unittest.TestCase):
    def test_the_bundle_reads_the_shared_values(self) -> None:
        self.assertEqual(supervise.MITM_PORT, shared.PROXY_PORT)
        self.assertEqual(supervise.PIPELOCK_LISTEN, shared.PIPELOCK_LISTEN)
        self.assertEqual(str(supervise.CONF_DIR), shared.CONFIG_DIR)
        self.assertEqual(policy.DLP_MODES, shared.DLP_MODES)
        self.assertEqual(set(policy.EVENTS), set(shared.LOG_EVENTS))
        self.assertEqual(set(policy._LOG_FIELDS), set(shared.LOG_FIELDS))  # noqa: SLF001
        self.assertEqual(policy._PLACEHOLDER.pattern, shared.PLACEHOLDER_PATTERN)  # noqa: SLF001

    def test_the_image_ships_it_and_its_tag_depends_on_it(self) -> None:
        self.assertIn("shared.py", images.BUNDLE_FILES)
        dockerfile = (BUNDLE / "Dockerfile.sidecars").read_text()
        copy = next(line for line in dockerfile.splitlines() if line.startswith("COPY supervise.py"))
        self.assertIn("shared.py", copy.split())
        for name in ("supervise.py", "addon.py", "policy.py"):
            text = (BUNDLE / name).read_text()
            self.assertTrue(re.search(r"^import shared\b|^from shared import|^    import shared\b", text, re.M)
                            or name == "addon.py", f"{name} does not import shared")

    def test_shared_imports_nothing(self) -> None:
        text = (BUNDLE / "shared.py").read_text()
        self.assertIsNone(re.search(r"^\s*(import|from)\s", text, re.M), "shared.py must load anywhere")
        self.assertTrue(os.path.isfile(BUNDLE / "shared.py"))


if __name__ == "__main__":
    unittest.main()
