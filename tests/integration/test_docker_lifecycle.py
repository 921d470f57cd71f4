"""Start, stop and clean up real bottles: every exit path leaves zero labelled resources."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import unittest

from tests.integration import support


class Lifecycle(unittest.TestCase):
    def setUp(self) -> None:
        support.require_images()
        self.scratch = support.Scratch()
        self.addCleanup(self.scratch.close)

    def manifest(self, bottle: str, **extra: object) -> str:
        # ephemeral: these tests are about what a session leaves, and a kept home is left on purpose
        doc = {"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE, "state": "ephemeral"}, **extra}
        return self.scratch.manifest(doc, name=f"{bottle}.json")

    def launch(self, manifest: str, *command: str) -> subprocess.Popen[str]:
        bottle = os.path.basename(manifest).removesuffix(".json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--", *command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=support.launcher_env(), cwd=support.REPO,
        )

        def reap() -> None:  # a failed test must not leave a launcher or its bottle behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            support.sh([sys.executable, "-m", "claude_bottle", "cleanup", bottle, "--force"],
                       cwd=support.REPO, env=support.launcher_env(), check=False)

        self.addCleanup(reap)
        return proc

    def running(self, bottle: str, role: str) -> bool:
        out = support.sh(["docker", "ps", "-q", "--filter", f"label=org.claude-bottle.bottle={bottle}",
                          "--filter", f"label=org.claude-bottle.role={role}", "--filter", "status=running"])
        return bool(out.stdout.strip())

    def test_agent_exit_status_becomes_ours_and_nothing_is_left(self) -> None:
        bottle = support.unique_name("exit")
        proc = self.launch(self.manifest(bottle), "sh", "-c", "echo out-marker; exit 7")
        out, err = proc.communicate(timeout=180)
        self.assertEqual(proc.returncode, 7, err)
        self.assertIn("out-marker", out)
        self.assertEqual(support.labelled(bottle), [])

    def test_agent_crash_is_reported_and_cleaned(self) -> None:
        bottle = support.unique_name("crash")
        proc = self.launch(self.manifest(bottle), "sh", "-c", "kill -SEGV $$")
        _, err = proc.communicate(timeout=180)
        self.assertEqual(proc.returncode, 139, err)
        self.assertEqual(support.labelled(bottle), [])

    def test_bad_manifest_creates_nothing(self) -> None:
        bottle = support.unique_name("bad")
        bad = self.manifest(bottle, egress={"allow": ["*"]})
        proc = self.launch(bad, "true")
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 2)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("egress.allow[0]", err)
        self.assertEqual(support.labelled(bottle), [])

    def test_missing_egress_network_creates_nothing(self) -> None:
        bottle = support.unique_name("nonet")
        proc = self.launch(self.manifest(bottle, egress={"network": "cbtest-no-such-network"}), "true")
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 2, err)
        self.assertIn("egress.network", err)
        self.assertEqual(support.labelled(bottle), [])

    def _signal_during(self, sig: int, role: str, expected: int) -> None:
        bottle = support.unique_name(f"sig{int(sig)}")
        proc = self.launch(self.manifest(bottle), "sleep", "120")
        support.wait_for(lambda: self.running(bottle, role) or proc.poll() is not None, 120, f"{role} running")
        self.assertIsNone(proc.poll(), "the launcher exited before the signal")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, expected, err)
        self.assertEqual(support.labelled(bottle), [])

    def test_sigterm_during_the_agents_run(self) -> None:
        self._signal_during(signal.SIGTERM, "agent", 143)

    def test_sigint_during_the_agents_run(self) -> None:
        self._signal_during(signal.SIGINT, "agent", 130)

    def test_sighup_during_start_up(self) -> None:
        self._signal_during(signal.SIGHUP, "bundle", 129)

    def test_sigterm_during_start_up(self) -> None:
        self._signal_during(signal.SIGTERM, "bundle", 143)

    def test_cleanup_reclaims_what_sigkill_left_and_touches_nothing_else(self) -> None:
        bottle = support.unique_name("kill")
        bystander = self.scratch.network(support.unique_name("cbtest-bystander"))
        proc = self.launch(self.manifest(bottle), "sleep", "120")
        support.wait_for(lambda: self.running(bottle, "agent"), 120, "agent running")
        proc.kill()
        proc.wait()
        self.assertNotEqual(support.labelled(bottle), [], "SIGKILL should leave the bottle behind")
        ps = support.sh([sys.executable, "-m", "claude_bottle", "ps"], cwd=support.REPO, env=support.launcher_env())
        self.assertIn(bottle, ps.stdout)
        self.assertIn("orphaned", ps.stdout)
        out = support.sh([sys.executable, "-m", "claude_bottle", "cleanup", bottle], cwd=support.REPO,
                         env=support.launcher_env())
        self.assertIn("removed", out.stdout)
        self.assertEqual(support.labelled(bottle), [])
        support.sh(["docker", "network", "inspect", bystander])  # unlabelled: untouched

    def test_cleanup_leaves_a_live_session_alone(self) -> None:
        bottle = support.unique_name("live")
        proc = self.launch(self.manifest(bottle), "sleep", "120")
        support.wait_for(lambda: self.running(bottle, "agent"), 120, "agent running")
        out = support.sh([sys.executable, "-m", "claude_bottle", "cleanup", bottle], cwd=support.REPO,
                         env=support.launcher_env())
        self.assertIn("still running", out.stdout)
        self.assertTrue(self.running(bottle, "agent"))
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        self.assertEqual(support.labelled(bottle), [])

    def test_two_bottles_of_the_same_name_run_at_once(self) -> None:
        bottle = support.unique_name("twin")
        manifest = self.manifest(bottle)
        procs = [self.launch(manifest, "sh", "-c", f"sleep 3; exit {code}") for code in (3, 4)]
        codes = sorted(p.wait(timeout=240) for p in procs)
        self.assertEqual(codes, [3, 4])
        self.assertEqual(support.labelled(bottle), [])


if __name__ == "__main__":
    unittest.main()
