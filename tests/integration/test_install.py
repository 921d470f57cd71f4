"""`pip install .` into a fresh virtual environment, offline, then the installed command's dry run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import unittest
import venv

from tests.integration import support


class InstalledCommand(unittest.TestCase):
    def test_pip_install_then_dry_run(self) -> None:
        where = tempfile.mkdtemp(prefix="cb-venv-")
        self.addCleanup(shutil.rmtree, where, True)
        venv.create(where, with_pip=True)
        python = os.path.join(where, "bin", "python")
        # --no-index: the build backend needs nothing from an index, with or without build isolation.
        install = subprocess.run([python, "-m", "pip", "install", "--no-index", "-q", support.REPO],
                                 capture_output=True, text=True, timeout=300)
        self.assertEqual(install.returncode, 0, install.stderr)
        command = os.path.join(where, "bin", "claude-bottle")
        run = subprocess.run([command, "start", "--dry-run", "--format=json",
                              os.path.join(support.REPO, "examples", "minimal.json")],
                             capture_output=True, text=True, timeout=60, cwd=where)
        self.assertEqual(run.returncode, 0, run.stderr)
        plan = json.loads(run.stdout)
        self.assertEqual(plan["name"], "minimal")
        self.assertTrue(plan["agent"]["image"])
        version = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)
        self.assertRegex(version.stdout, r"^claude-bottle \d")


if __name__ == "__main__":
    unittest.main()
