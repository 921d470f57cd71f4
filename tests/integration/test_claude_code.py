"""Claude Code as its users run it, in a real bottle: a subscription token the agent never holds, and
an agent home kept across sessions (and a clean one when the manifest asks).

An upstream of our own answers as api.anthropic.com (a network alias on a network of ours, with a
certificate for that name from a test CA): it reports SHA-256 digests of the headers that arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import unittest

from tests.integration import support

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
REAL_TOKEN = "sk-ant-oat01-" + "q" * 20 + "-test-only-" + "z" * 40  # shaped like `claude setup-token`'s
PROBE = """
import json, os, ssl, urllib.request
token = os.environ.get("CLAUDE_CODE_OAUTH_TOKEN", "")
req = urllib.request.Request("https://api.anthropic.com/echo", headers={"Authorization": "Bearer " + token})
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
with urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx)).open(req, timeout=30) as r:
    seen = json.loads(r.read())
print("PROBE-RESULT " + json.dumps({"held": token, "seen": seen}))
"""


def start(manifest: str, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "claude_bottle", "start", manifest, "--", *command],
                          capture_output=True, text=True, timeout=300, env=support.launcher_env(**env),
                          cwd=support.REPO)


class SubscriptionToken(unittest.TestCase):
    def test_the_real_token_arrives_while_the_agent_holds_a_placeholder(self) -> None:
        support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        net = s.network(support.unique_name("cbtest-api"))
        shutil.copy(os.path.join(FILES, "dlp_upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        api = support.unique_name("cbtest-api")
        s.container(api, "--network", net, "--network-alias", "api.anthropic.com", "--user", "0",
                    "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE, "sleep", "infinity")
        ip = s.ip(api, net)
        ca, crt, key = support.make_tls(s, ip, "api.anthropic.com")
        subprocess.Popen(["docker", "exec", "-d", api, "python3", "/srv/dlp_upstream.py", "/srv/srv.pem",
                          "/srv/srv.key"]).wait(timeout=60)
        bottle = support.unique_name("itest-cc")
        # The address rule only opens the SSRF guards for our upstream's private address; the token
        # is bound to api.anthropic.com by the @anthropic credentials alone (nothing in `secrets`).
        manifest = s.manifest({"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE, "state": "ephemeral"},
                               "egress": {"allow": ["@anthropic", ip], "trusted_ca": ca, "network": net}})
        env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
        run = subprocess.run([sys.executable, "-m", "claude_bottle", "start", manifest, "--", "python3", "-c", PROBE],
                             capture_output=True, text=True, timeout=300, cwd=support.REPO,
                             env={**support.launcher_env(), **{k: env[k] for k in ("PATH",) if k in env},
                                  "CLAUDE_CODE_OAUTH_TOKEN": REAL_TOKEN})
        result = support.probe_result(run)
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        self.assertTrue(str(result["held"]).startswith("claude-bottle-placeholder-CLAUDE_CODE_OAUTH_TOKEN-"))
        self.assertNotIn(REAL_TOKEN, run.stdout + run.stderr)
        seen = result["seen"]["headers"]
        self.assertEqual(seen["authorization"], hashlib.sha256(f"Bearer {REAL_TOKEN}".encode()).hexdigest())
        self.assertIn("CLAUDE_CODE_OAUTH_TOKEN", run.stderr)  # the exit summary names what was injected
        self.assertEqual(support.labelled(bottle), [])


class KeptHome(unittest.TestCase):
    def test_a_second_session_sees_what_the_first_left_and_cleanup_state_removes_it(self) -> None:
        support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        bottle = support.unique_name("itest-home")
        volume = f"claude-bottle-{bottle}-state"
        self.addCleanup(support.sh, ["docker", "volume", "rm", "-f", volume], check=False)
        manifest = s.manifest({"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE}})
        first = start(manifest, "sh", "-c", "mkdir -p ~/.claude && echo remembered > ~/.claude/note && id -u")
        self.assertEqual(first.returncode, 0, first.stderr[-2000:])
        second = start(manifest, "cat", "/home/agent/.claude/note")
        self.assertEqual((second.returncode, second.stdout.strip()), (0, "remembered"), second.stderr[-2000:])
        self.assertEqual(support.labelled(bottle), [], "a session's containers and networks still go")
        ps = support.sh([sys.executable, "-m", "claude_bottle", "ps", "--format", "json"], cwd=support.REPO,
                        env=support.launcher_env())
        self.assertIn({"name": volume, "bottle": bottle}, json.loads(ps.stdout)["state_volumes"])
        kept = support.sh([sys.executable, "-m", "claude_bottle", "cleanup", bottle], cwd=support.REPO,
                          env=support.launcher_env())
        self.assertNotIn(volume, kept.stdout)
        self.assertEqual(support.sh(["docker", "volume", "inspect", volume], check=False).returncode, 0)
        gone = support.sh([sys.executable, "-m", "claude_bottle", "cleanup", bottle, "--state"], cwd=support.REPO,
                          env=support.launcher_env())
        self.assertIn(volume, gone.stdout)
        self.assertNotEqual(support.sh(["docker", "volume", "inspect", volume], check=False).returncode, 0)

    def test_ephemeral_starts_clean_every_time(self) -> None:
        support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        bottle = support.unique_name("itest-clean")
        manifest = s.manifest({"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE, "state": "ephemeral"}})
        self.assertEqual(start(manifest, "sh", "-c", "echo x > ~/left").returncode, 0)
        again = start(manifest, "sh", "-c", "test ! -e ~/left")
        self.assertEqual(again.returncode, 0, "the second session saw the first one's file")
        listed = support.sh(["docker", "volume", "ls", "-q", "--filter", f"label=org.claude-bottle.bottle={bottle}"])
        self.assertEqual(listed.stdout.split(), [])


if __name__ == "__main__":
    unittest.main()
