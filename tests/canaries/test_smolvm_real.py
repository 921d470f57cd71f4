"""Canary: what claude-bottle assumes about smolvm, checked against a real smolvm when one is installed.

Opt-in (CLAUDE_BOTTLE_RUN_CANARIES=1), and skipped when `smolvm` is missing or is the test fake. These
are the assumptions the fake (tests/fakes/smolvm) encodes; when one fails, fix the fake and the
executor together. Machines created here are named claude-bottle-canary-*-vm and always deleted.

The full start (last test) also needs Docker, KVM (or macOS), the sidecars image, and an agent image
smolvm can pack, named by CLAUDE_BOTTLE_CANARY_AGENT_IMAGE (smolvm may pull it from a registry).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import unittest
from contextlib import redirect_stderr

from claude_bottle import cli, manifest as manifest_mod, plan as plan_mod, smolvm_argv as argv
from tests import fakes

RUN = os.environ.get("CLAUDE_BOTTLE_RUN_CANARIES") == "1"
# 7 only when the guest got the Smolfile's env (proxy, CA path) and can read the CA through the volume.
PROBE = 'test -n "$HTTPS_PROXY" && grep -q "BEGIN CERTIFICATE" "$SSL_CERT_FILE" && exit 7; env; exit 3'


def real_smolvm() -> str | None:
    found = shutil.which("smolvm")
    if found is None or os.path.dirname(os.path.realpath(found)) == os.path.realpath(fakes.FAKES_DIR):
        return None
    return found


def smolvm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["smolvm", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@unittest.skipUnless(RUN, "canaries are opt-in: set CLAUDE_BOTTLE_RUN_CANARIES=1")
@unittest.skipUnless(real_smolvm(), "no real smolvm on PATH")
class RealSmolvmTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="claude-bottle-canary-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.vm = f"claude-bottle-canary-{secrets.token_hex(4)}-vm"
        self.addCleanup(smolvm, "machine", "delete", self.vm, "-f")
        self.addCleanup(smolvm, "machine", "stop", "--name", self.vm)  # cleanups run last-in, first-out

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.folder, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def project_smolfile(self) -> str:
        workspace = os.path.join(self.folder, "ws")
        os.makedirs(workspace, exist_ok=True)
        manifest = manifest_mod.parse({"version": 1, "name": "canary", "runtime": "smolmachines"},
                                      os.path.join(self.folder, "bottle.json"))
        plan = plan_mod.build(manifest, secrets.token_hex(4), state_dir=self.folder)
        return self.write("project.smolfile", plan.smolfile or "")

    def test_version_line(self) -> None:
        result = smolvm("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIsNotNone(argv.parse_version(result.stdout), f"unparsable: {result.stdout!r}")
        self.assertTrue(result.stdout.startswith("smolvm "), result.stdout)

    def test_machine_ls_json_shape(self) -> None:
        result = smolvm("machine", "ls", "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        listed = json.loads(result.stdout)
        self.assertIsInstance(listed, list)
        for entry in listed:
            self.assertIn("name", entry)
            self.assertIn("state", entry)

    def test_project_smolfile_accepted_and_unknown_keys_rejected(self) -> None:
        created = smolvm("machine", "create", self.vm, "--smolfile", self.project_smolfile())
        self.assertEqual(created.returncode, 0, f"`machine create NAME --smolfile` refused: {created.stderr}")
        names = [e["name"] for e in json.loads(smolvm("machine", "ls", "--json").stdout)]
        self.assertIn(self.vm, names, "`machine create NAME` (positional) did not create a machine of that name")
        deleted = smolvm("machine", "delete", self.vm, "-f")
        self.assertEqual(deleted.returncode, 0, deleted.stderr)
        bad = self.write("bad.smolfile", "env = []\n\n[network]\nallow_cidrs = []\nbogus_key = 1\n")
        refused = smolvm("machine", "create", self.vm, "--smolfile", bad)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("unknown field `bogus_key`", refused.stderr)

    def test_from_artifact_with_smolfile(self) -> None:
        """The executor's `machine create NAME --from ART --smolfile S`: does this smolvm accept it?"""
        image = os.environ.get("CLAUDE_BOTTLE_CANARY_AGENT_IMAGE")
        if not image:
            self.skipTest("set CLAUDE_BOTTLE_CANARY_AGENT_IMAGE to an image smolvm can pack")
        out = os.path.join(self.folder, "agent")
        packed = smolvm(*argv.pack_create(image, out)[1:], timeout=1800)
        self.assertEqual(packed.returncode, 0, packed.stderr)
        self.assertTrue(os.path.isfile(out + argv.ARTIFACT_SUFFIX), os.listdir(self.folder))
        created = smolvm("machine", "create", self.vm, "--from", out + argv.ARTIFACT_SUFFIX, "--smolfile",
                         self.project_smolfile())
        self.assertEqual(created.returncode, 0,
                         "this smolvm cannot create a machine from a .smolmachine with a Smolfile; "
                         f"claude-bottle will refuse to start (exit 125): {created.stderr}")

    def test_full_start(self) -> None:
        image = os.environ.get("CLAUDE_BOTTLE_CANARY_AGENT_IMAGE")
        if not image:
            self.skipTest("set CLAUDE_BOTTLE_CANARY_AGENT_IMAGE to an image smolvm can pack")
        path = self.write("bottle.json", json.dumps({"version": 1, "name": f"canary-{secrets.token_hex(3)}",
                                                     "runtime": "smolmachines",
                                                     "agent": {"image": image, "command": ["sh", "-c", PROBE]}}))
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            code = cli.main(["start", path])
        self.assertEqual(code, 7, stderr.getvalue())
        ours = [e["name"] for e in json.loads(smolvm("machine", "ls", "--json").stdout)
                if e["name"].startswith("claude-bottle-canary-")]
        self.assertEqual(ours, [])


if __name__ == "__main__":
    unittest.main()
