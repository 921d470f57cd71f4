"""The Docker executor (docker.py): the agent starts beside the bundle behind its gate, a bundle that
fails stops it, and teardown goes by name once every create has returned."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
import threading
import unittest
from typing import Any

from claude_bottle import docker, docker_argv, manifest, plan
from claude_bottle.bundle import shared
from claude_bottle.errors import BottleError, Interrupted, ManifestError, RuntimeFailure
from tests.fakes.runner import FakeRunner

PLAN = plan.build(manifest.parse({"name": "demo", "agent": {"image": "example/agent:1"}}, "/nowhere/m.json"),
                  "abcd1234", command=("make", "test"))
BUNDLE, AGENT = PLAN.container("bundle").name, PLAN.container("agent").name
CREATES = (["docker", "create"], ["docker", "network", "create"], ["docker", "volume", "create"])


def run(runner: FakeRunner, the_plan: plan.Plan = PLAN, **kw: Any) -> int:
    with tempfile.TemporaryDirectory() as state, contextlib.redirect_stderr(io.StringIO()):
        return docker.start(the_plan, {}, runner, state, **kw)


def call(runner: FakeRunner, *prefix: str) -> list[str]:
    return next(c for c in runner.calls if c[: len(prefix)] == list(prefix))


class GatedAgentTest(unittest.TestCase):
    def test_the_agent_runs_the_images_entrypoint_behind_the_gate(self) -> None:
        runner = FakeRunner(lambda a: (0, '["/entry.sh"]\t["serve"]\n', "") if "json .Config.Entrypoint" in " ".join(a)
                            else None)
        self.assertEqual(run(runner), 0)
        create = next(c for c in runner.calls if c[:2] == ["docker", "create"] and AGENT in c)
        self.assertEqual(create[create.index("--entrypoint") + 1], shared.GATE)
        self.assertEqual(create[create.index("--volumes-from") + 1], f"{BUNDLE}:ro")
        self.assertIn(f"CLAUDE_BOTTLE_GATE_PROXY={shared.PROXY_SOCKET}", create)
        self.assertIn("CLAUDE_BOTTLE_GATE_LISTEN=127.0.0.1:3128", create)
        self.assertIn(f"CLAUDE_BOTTLE_GATE_CA={shared.SHARED_CA}", create)
        # Replacing the entrypoint drops the image's CMD: the plan's command follows the entrypoint.
        self.assertEqual(create[create.index("example/agent:1") + 1:], ["/entry.sh", "make", "test"])

    def test_without_a_command_the_images_cmd_is_passed_on(self) -> None:
        self.assertEqual(docker_argv.gated_command(["/e"], ["serve", "-v"], ()), ["/e", "serve", "-v"])
        self.assertEqual(docker_argv.gated_command(None, ["sleep", "1"], ()), ["sleep", "1"])
        self.assertEqual(docker_argv.gated_command(None, ["sleep", "1"], ("true",)), ["true"])

    def test_nothing_to_run_is_exit_125_before_anything_is_created(self) -> None:
        runner = FakeRunner(lambda a: (0, "null\tnull\n", "") if "json .Config.Entrypoint" in " ".join(a) else None)
        bare = dataclasses.replace(PLAN, agent_command=())
        with self.assertRaises(RuntimeFailure) as caught:
            run(runner, bare)
        self.assertIn("no ENTRYPOINT or CMD", str(caught.exception))
        self.assertFalse([c for c in runner.calls if any(c[: len(p)] == p for p in CREATES)])

    def test_the_agent_is_started_without_waiting_for_the_bundle(self) -> None:
        # The bundle's readiness wait is still running when the agent starts (and ends with it).
        released = threading.Event()

        def handler(argv: list[str]) -> Any:
            if argv[:2] == ["docker", "exec"] and "--wait" in argv:
                released.wait(5)
            return None

        def attach(argv: list[str]) -> int:
            self.assertFalse(released.is_set())
            released.set()
            return 7

        runner = FakeRunner(handler, attach=attach)
        self.assertEqual(run(runner), 7)
        self.assertIn(["docker", "start", BUNDLE], runner.calls)


class EgressNetworkTest(unittest.TestCase):
    """The bundle joins a network it never creates: Docker's bridge, or egress.network. Checked side by
    side with the image look-ups, before anything is built or created."""

    def missing(self, name: str) -> FakeRunner:
        return FakeRunner(lambda a: (1, "", f"network {name} not found") if a[:3] == ["docker", "network", "inspect"]
                          else None)

    def test_no_default_bridge_is_exit_125_and_says_what_to_do(self) -> None:
        runner = self.missing("bridge")
        with self.assertRaisesRegex(RuntimeFailure, "no 'bridge' network.*egress.network") as caught:
            run(runner)
        self.assertEqual(caught.exception.exit_code, 125)
        self.assertFalse([c for c in runner.calls if any(c[: len(p)] == p for p in CREATES)])

    def test_a_missing_named_network_is_the_manifests_error(self) -> None:
        named = plan.build(manifest.parse({"name": "demo", "agent": {"image": "example/agent:1"},
                                           "egress": {"network": "lab"}}, "/nowhere/m.json"), "abcd1234",
                           command=("true",))
        runner = self.missing("lab")
        with self.assertRaises(ManifestError) as caught:
            run(runner, named)
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn("egress.network", str(caught.exception))
        self.assertIn(docker_argv.network_inspect("lab"), runner.calls)
        self.assertFalse([c for c in runner.calls if any(c[: len(p)] == p for p in CREATES)])


class BundleFailureTest(unittest.TestCase):
    def test_a_bundle_that_never_becomes_ready_stops_the_agent_and_says_why(self) -> None:
        killed = threading.Event()

        def handler(argv: list[str]) -> Any:
            if argv[:2] == ["docker", "exec"] and "--wait" in argv:
                return 1, "", "not ready after 60 s: the mitmdump addon has not reported ready"
            if argv[:2] == ["docker", "kill"]:
                killed.set()
            return None

        def attach(argv: list[str]) -> int:
            self.assertTrue(killed.wait(5), "the agent was never stopped")
            return 137

        runner = FakeRunner(handler, attach=attach)
        with self.assertRaises(BottleError) as caught:
            run(runner)
        self.assertIn("the bundle did not become ready: not ready after 60 s", str(caught.exception))
        self.assertIn(["docker", "kill", AGENT], runner.calls)
        self.assertIn(docker_argv.remove("container", [BUNDLE, AGENT]), runner.calls)  # and all was removed


class TeardownTest(unittest.TestCase):
    def test_a_session_whose_creates_all_returned_is_removed_by_name_without_listings(self) -> None:
        runner = FakeRunner()
        run(runner)
        self.assertIn(docker_argv.remove("container", [BUNDLE, AGENT]), runner.calls)
        for net in PLAN.networks:
            self.assertIn(docker_argv.remove("network", [net.name]), runner.calls)
        self.assertFalse([c for c in runner.calls if c[:3] in (["docker", "ps", "--all"], ["docker", "network", "ls"])])

    def test_a_failed_removal_falls_back_to_the_label_sweep(self) -> None:
        failed: list[bool] = []

        def handler(argv: list[str]) -> tuple[int, str, str] | None:
            if argv[:2] == ["docker", "rm"] and not failed:
                failed.append(True)
                return 1, "", "removal of container already in progress"
            return None

        runner = FakeRunner(handler)
        run(runner)
        self.assertTrue([c for c in runner.calls if c[:3] == ["docker", "ps", "--all"]])
        self.assertTrue([c for c in runner.calls if c[:3] == ["docker", "network", "ls"]])  # an older session's too

    def test_an_interrupted_session_is_swept_by_label(self) -> None:
        def attach(argv: list[str]) -> int:
            raise Interrupted(2)

        runner = FakeRunner(attach=attach)
        self.assertEqual(run(runner), 130)
        self.assertTrue([c for c in runner.calls if c[:3] == ["docker", "ps", "--all"]])


if __name__ == "__main__":
    unittest.main()
