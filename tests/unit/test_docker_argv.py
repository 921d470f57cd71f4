"""The security flags of the containers and networks a bottle is made of, read off the pure argv
(a regression here would otherwise show only in slow integration tests)."""

from __future__ import annotations

import unittest

from claude_bottle import docker_argv, manifest, plan


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def built(doc: dict[str, object], uid: int = 1000) -> plan.Plan:
    return plan.build(manifest.parse({"name": "demo", **doc}, "/nowhere/m.json"), "abcd1234", uid=uid, gid=uid)


class AgentTest(unittest.TestCase):
    def setUp(self) -> None:
        self.plan = built({"egress": {"allow": ["example.com"]}})
        self.argv = docker_argv.agent_create(self.plan, self.plan.container("agent"), True, False)

    def test_no_capabilities_and_no_privilege_gain(self) -> None:
        self.assertEqual(pairs(self.argv, "--cap-drop"), ["ALL"])
        self.assertNotIn("--cap-add", self.argv)
        self.assertIn("no-new-privileges", pairs(self.argv, "--security-opt"))
        self.assertNotIn("--privileged", self.argv)

    def test_limits(self) -> None:
        self.assertEqual(pairs(self.argv, "--pids-limit"), [str(self.plan.resources.pids)])
        self.assertEqual(pairs(self.argv, "--memory"), [self.plan.resources.memory])
        self.assertTrue(int(self.plan.resources.pids) > 0)

    def test_runs_as_the_launching_user_never_root(self) -> None:
        self.assertEqual(pairs(self.argv, "--user"), ["1000:1000"])
        root_launched = built({}, uid=0)
        user = pairs(docker_argv.agent_create(root_launched, root_launched.container("agent"), True, False), "--user")
        self.assertNotEqual(user[0].partition(":")[0], "0")

    def test_no_network_at_all_and_no_docker_socket(self) -> None:
        self.assertEqual(pairs(self.argv, "--network"), ["none"])
        self.assertNotIn("--network-alias", self.argv)
        joined = " ".join(self.argv)
        self.assertNotIn("docker.sock", joined)
        self.assertNotIn("--volume", self.argv)
        self.assertFalse([m for m in pairs(self.argv, "--mount") if "docker" in m])

    def test_the_gate_relays_the_proxy_port_to_the_bundles_socket(self) -> None:
        env = pairs(self.argv, "--env")
        self.assertIn("CLAUDE_BOTTLE_GATE_PROXY=/run/claude-bottle/bundle/proxy.sock", env)
        self.assertIn("CLAUDE_BOTTLE_GATE_LISTEN=127.0.0.1:3128", env)
        self.assertIn("HTTPS_PROXY=http://127.0.0.1:3128", env)


class BundleTest(unittest.TestCase):
    def test_bundle_is_confined_too(self) -> None:
        p = built({"egress": {"allow": ["example.com"]}})
        argv = docker_argv.bundle_create(p, p.container("bundle"))
        self.assertEqual(pairs(argv, "--cap-drop"), ["ALL"])
        self.assertIn("no-new-privileges", pairs(argv, "--security-opt"))
        self.assertEqual(pairs(argv, "--pids-limit"), [str(docker_argv.BUNDLE_PIDS)])
        self.assertEqual(pairs(argv, "--memory"), [docker_argv.BUNDLE_MEMORY])
        self.assertEqual(pairs(argv, "--restart"), ["no"])


class NetworkTest(unittest.TestCase):
    def test_the_docker_runtime_creates_no_network(self) -> None:
        self.assertEqual(built({}).networks, ())

    def test_the_bundle_serves_its_port_on_loopback_only_where_the_agent_uses_the_socket(self) -> None:
        p = built({})
        argv = docker_argv.bundle_create(p, p.container("bundle"))
        self.assertEqual(pairs(argv, "--network"), ["bridge"])
        self.assertIn("CLAUDE_BOTTLE_PROXY_HOST=127.0.0.1", pairs(argv, "--env"))
        self.assertNotIn("--network-alias", argv)  # Docker refuses aliases on its default bridge


if __name__ == "__main__":
    unittest.main()
