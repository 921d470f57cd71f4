"""A real bottle on the real Docker engine, attacked from inside.

"The internet" is a Docker network of our own holding two upstream containers: one the manifest
allows, one it does not. The bundle joins that network through `egress.network`. Every address
aimed at here is one of those containers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import unittest

from tests.integration import support

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")


class BottleFromInside(unittest.TestCase):
    results: dict[str, object]

    @classmethod
    def setUpClass(cls) -> None:
        support.require_images()
        cls.scratch = s = support.Scratch()
        try:
            cls._start(s)
        except BaseException:
            s.close()
            raise

    @classmethod
    def _start(cls, s: support.Scratch) -> None:
        net = s.network(support.unique_name("cbtest-inet"))
        shutil.copy(os.path.join(FILES, "upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        common = ["--network", net, "--user", "0", "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE]
        denied = s.container(support.unique_name("cbtest-denied"), *common, "python3", "/srv/upstream.py", "denied", "80")
        # The allowed server's certificate names its IP, so start it, read the IP, then add TLS.
        allowed = support.unique_name("cbtest-allowed")
        s.container(allowed, *common, "sleep", "infinity")
        cls.allowed_ip, cls.denied_ip = s.ip(allowed, net), s.ip(denied, net)
        ca, crt, key = support.make_tls(s, cls.allowed_ip)
        subprocess.Popen(["docker", "exec", "-d", allowed, "python3", "/srv/upstream.py", "allowed", "80,8081",
                          "443", "/srv/srv.pem", "/srv/srv.key"]).wait(timeout=60)
        workspace = os.path.join(s.dir, "ws")
        os.makedirs(workspace)
        os.chmod(workspace, 0o777)  # the agent runs as uid 10001 when the tests run as root
        shutil.copy(os.path.join(FILES, "probe.py"), workspace)
        cls.bottle = support.unique_name("itest")
        cls.dns_name = support.unique_name("cbprobe") + ".example.com"
        manifest = s.manifest(
            {
                "name": cls.bottle,
                "workspace": "ws",
                "agent": {"image": support.AGENT_TEST_IMAGE, "env": {"PROBE_MARKER": "yes"}},
                "egress": {"allow": [cls.allowed_ip], "trusted_ca": ca, "network": net},
            }
        )
        cls.workspace = workspace
        env = support.launcher_env(CB_HOST_CANARY="must-not-reach-the-agent")
        # A service on the host itself, on every address: the agent must not reach it either.
        host_service = socket.create_server(("0.0.0.0", 0))
        cls.addClassCleanup(host_service.close)
        cls.launched = subprocess.run(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--",
             "python3", "/workspace/probe.py", cls.allowed_ip, cls.denied_ip, cls.dns_name,
             str(host_service.getsockname()[1])],
            capture_output=True, text=True, timeout=300, env=env, cwd=support.REPO,
        )
        cls.results = support.probe_result(cls.launched)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.scratch.close()

    def r(self, key: str) -> dict[str, object]:
        value = self.results[key]
        assert isinstance(value, dict)
        return value

    def test_probe_exits_zero_and_everything_is_removed(self) -> None:
        self.assertEqual(self.launched.returncode, 0, self.launched.stderr)
        self.assertEqual(support.labelled(self.bottle), [])

    def test_allowed_host_over_http(self) -> None:
        self.assertEqual(self.r("http_allowed")["status"], 200)
        self.assertIn("hello from allowed:80", str(self.r("http_allowed")["body"]))

    def test_allowed_host_over_https_through_the_bundle_ca(self) -> None:
        self.assertEqual(self.r("https_allowed")["status"], 200, self.r("https_allowed"))
        self.assertIn("hello from allowed:443", str(self.r("https_allowed")["body"]))
        self.assertEqual(self.r("curl_https_allowed")["code"], "200", self.r("curl_https_allowed"))

    def test_non_allowed_host_is_refused(self) -> None:
        self.assertEqual(self.r("http_denied_host")["status"], 403)
        self.assertIn("claude-bottle: blocked", str(self.r("http_denied_host")["body"]))
        self.assertNotIn("hello from denied", json.dumps(self.results))
        self.assertIn("403", str(self.r("https_denied_host").get("error")))

    def test_non_allowed_port_of_allowed_host_is_refused(self) -> None:
        self.assertEqual(self.r("http_denied_port")["status"], 403)
        self.assertNotIn("allowed:8081", json.dumps(self.results))
        self.assertIn("403", str(self.r("https_denied_port").get("error")))

    def test_direct_connections_bypassing_the_proxy_fail(self) -> None:
        for key in ("direct_allowed_80", "direct_denied_80", "direct_bundle_pipelock", "host_via_gateway"):
            self.assertTrue(str(self.results[key]).startswith("failed"), (key, self.results[key]))

    def test_the_agent_has_no_network_but_loopback(self) -> None:
        self.assertEqual(self.results["interfaces"], ["lo"])

    def test_parallel_requests_each_get_through(self) -> None:
        self.assertEqual(self.results["parallel_allowed"], [200] * 16)

    def test_the_relay_runs_apart_from_the_agents_terminal_session(self) -> None:
        # One relay, in a session of its own: a ^C at the agent's terminal never reaches it.
        self.assertEqual((self.results["relays"], self.results["relay_own_session"]), (1, True))

    def test_outside_names_do_not_resolve(self) -> None:
        self.assertTrue(str(self.results["dns"]).startswith("failed"), self.results["dns"])

    def test_agent_is_hardened(self) -> None:
        self.assertNotEqual(self.results["uid"], 0)
        self.assertEqual(self.results["cap_eff"], "0000000000000000")
        self.assertEqual(self.results["no_new_privs"], "1")
        self.assertFalse(self.results["docker_socket"])

    def test_agent_gets_only_its_own_environment(self) -> None:
        names = set(self.results["env_names"])  # type: ignore[arg-type]
        self.assertNotIn("CB_HOST_CANARY", names)
        self.assertIn("PROBE_MARKER", names)
        self.assertTrue({"HTTPS_PROXY", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"} <= names)

    def test_agent_gets_the_public_ca_and_no_key(self) -> None:
        ca = str(self.results["ca_file"])
        self.assertIn("BEGIN CERTIFICATE", ca)
        self.assertNotIn("PRIVATE KEY", ca)

    def test_workspace_is_mounted_read_write(self) -> None:
        self.assertEqual(self.results["workspace_write"], "ok")
        with open(os.path.join(self.workspace, "written-by-agent.txt")) as handle:
            self.assertEqual(handle.read(), "hello from the bottle\n")


class DnsStaysOnTheHost(unittest.TestCase):
    """An outside name looked up in the bottle never leaves the host's own interfaces."""

    def test_query_never_reaches_an_external_interface(self) -> None:
        support.require_images()
        if shutil.which("tcpdump") is None or os.geteuid() != 0:
            support.unavailable("tcpdump and root are needed to watch the host's interfaces")
        route = support.sh(["ip", "-o", "route", "show", "default"]).stdout.split()
        if "dev" not in route:
            self.skipTest("no default route on this host: nothing could leave it anyway")
        uplink = route[route.index("dev") + 1]
        name = support.unique_name("cbleak") + ".example.com"
        s = support.Scratch()
        self.addCleanup(s.close)
        manifest = s.manifest({"name": support.unique_name("dnstest"), "agent": {"image": support.AGENT_TEST_IMAGE}})
        capture = subprocess.Popen(["tcpdump", "-i", uplink, "-nn", "-l", "-A", "port 53"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            run = subprocess.run(
                [sys.executable, "-m", "claude_bottle", "start", manifest, "--", "getent", "hosts", name],
                capture_output=True, text=True, timeout=180, env=support.launcher_env(), cwd=support.REPO,
            )
        finally:
            capture.terminate()
            seen, _ = capture.communicate(timeout=30)
        self.assertNotEqual(run.returncode, 0, "the outside name resolved inside the bottle")
        self.assertNotIn(name.split(".")[0], seen)


if __name__ == "__main__":
    unittest.main()
