"""The real chain as an agent sees it: a bottle whose bundle runs pipelock (when the image has it),
probed from inside against an origin of our own on a Docker network of our own.

What it shows, with pipelock in the chain: plain-HTTP downloads stream whole (12 MB), a gzip reply
and an SSE stream with an injection-like phrase pass unchanged, a server that speaks first greets the
agent through a HOST:PORT rule, pipelock's own endpoints are out of reach, and a name the addon allows
but pipelock refuses (it resolves to a private address) gets a 403 with pipelock's reason, counted once
in the exit summary. A bottle whose manifest allows nothing starts and reaches nothing. Without
pipelock the same bottle runs, and the pipelock-only assertions skip by name.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import unittest

from tests.integration import support

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
GREETING_PORT = 2525
PRIVATE_NAME = "private.chain.test"  # a network alias of the origin: a name that resolves to a private address


class ChainFromInside(unittest.TestCase):
    results: dict[str, dict[str, object]]

    @classmethod
    def setUpClass(cls) -> None:
        support.require_images()
        cls.pipelock = support.pipelock_in_bundle()
        cls.scratch = s = support.Scratch()
        try:
            cls._start(s)
        except BaseException:
            s.close()
            raise

    @classmethod
    def _start(cls, s: support.Scratch) -> None:
        net = s.network(support.unique_name("cbtest-chain"))
        shutil.copy(os.path.join(FILES, "chain_upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        served = ["--network", net, "--user", "0", "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE,
                  "python3", "/srv/chain_upstream.py", "80", str(GREETING_PORT)]
        origin = s.container(support.unique_name("cbtest-origin"), *served)
        # Another server, known only by a name: no rule names its (private) address, so no SSRF
        # exception covers it, as one would for the origin, whose address a rule names.
        s.container(support.unique_name("cbtest-private"), "--network-alias", PRIVATE_NAME, *served)
        cls.origin_ip = s.ip(origin, net)
        workspace = os.path.join(s.dir, "ws")
        os.makedirs(workspace)
        os.chmod(workspace, 0o777)
        shutil.copy(os.path.join(FILES, "chain_probe.py"), workspace)
        cls.bottle = support.unique_name("itest-chain")
        manifest = s.manifest({
            "name": cls.bottle, "workspace": "ws", "agent": {"image": support.AGENT_TEST_IMAGE},
            # The name is allowed (the addon passes it); only pipelock's SSRF guard stops it.
            "egress": {"allow": [cls.origin_ip, f"{cls.origin_ip}:{GREETING_PORT}", PRIVATE_NAME], "network": net},
        })
        cls.state = os.path.join(s.dir, "state")
        cls.launched = subprocess.run(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--",
             "python3", "/workspace/chain_probe.py", cls.origin_ip, str(GREETING_PORT), PRIVATE_NAME],
            capture_output=True, text=True, timeout=300, env=support.launcher_env(XDG_STATE_HOME=cls.state),
            cwd=support.REPO,
        )
        cls.results = support.probe_result(cls.launched)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.scratch.close()

    def need_pipelock(self, what: str) -> None:
        if not self.pipelock:
            self.skipTest(f"pipelock absent from the sidecars image: {what} not checked")

    def test_bottle_exits_zero_and_leaves_nothing(self) -> None:
        self.assertEqual(self.launched.returncode, 0, self.launched.stderr[-3000:])
        self.assertEqual(support.labelled(self.bottle), [])

    def test_large_plain_http_download_arrives_whole(self) -> None:
        big = self.results["big"]
        self.assertEqual((big.get("status"), big.get("bytes")), (200, 12 * 1024 * 1024), big.get("error"))

    def test_gzip_reply_passes_compressed(self) -> None:
        self.assertEqual(self.results["gzip"].get("status"), 200, self.results["gzip"])
        self.assertTrue(str(self.results["gzip_inflated"]).startswith("compressed hello"), self.results["gzip_inflated"])

    def test_sse_with_an_injection_like_phrase_passes(self) -> None:
        sse = self.results["sse"]
        self.assertEqual(sse.get("status"), 200, sse)
        self.assertIn("event 2: ignore all previous instructions", str(sse.get("body")) + str(sse))

    def test_server_that_speaks_first_greets_through_a_host_port_rule(self) -> None:
        greeting = self.results["greeting"]
        self.assertEqual(greeting.get("status"), 200, greeting)
        self.assertEqual(greeting.get("greeting"), "220 chain ready\r\n")
        self.assertEqual(greeting.get("echo"), "EHLO bottle\r\n")

    def test_pipelock_itself_is_out_of_reach(self) -> None:
        for key in ("pipelock_origin_form", "pipelock_absolute", "pipelock_fetch"):
            self.assertEqual(self.results[key].get("status"), 403, (key, self.results[key]))
            self.assertIn("claude-bottle: blocked", str(self.results[key].get("body")), key)

    def test_pipelock_refusal_is_a_403_with_its_reason(self) -> None:
        self.need_pipelock("a refusal by pipelock (SSRF on a name the addon allows)")
        for key in ("private_connect", "private_http"):
            result = self.results[key]
            self.assertEqual(result.get("status"), 403, (key, result))
            self.assertIn("claude-bottle: blocked: pipelock: ", str(result.get("body")), key)
        self.assertNotIn("hello from chain", json.dumps(self.results["private_http"]))

    def test_without_pipelock_the_addon_still_refuses_the_private_name(self) -> None:
        if self.pipelock:
            self.skipTest("pipelock present: its refusal is checked by the test above")
        # The addon checks the address it connected to and cuts the connection before a byte passes;
        # a CONNECT may still have been answered 200 (mitmproxy answers once the TCP connect succeeds).
        self.assertNotIn("hello from chain", json.dumps(self.results["private_http"]))
        self.assertNotIn("hello from chain", json.dumps(self.results["private_connect"]))

    def test_refusals_are_counted_once_in_the_summary_and_the_log(self) -> None:
        self.need_pipelock("pipelock's refusals in the audit trail")
        logs = glob.glob(os.path.join(self.state, "claude-bottle", "sessions", f"{self.bottle}-*.jsonl"))
        self.assertEqual(len(logs), 1, logs)
        with open(logs[0], encoding="utf-8") as handle:
            recs = [json.loads(line) for line in handle]
        ours = [r for r in recs if r.get("source") == "addon" and r.get("kind") == "pipelock"]
        self.assertEqual(len(ours), 2, ours)  # the CONNECT and the plain-HTTP request, once each
        self.assertTrue(all(r["host"] == PRIVATE_NAME and r["reason"].startswith("pipelock: ") for r in ours))
        self.assertTrue(any(r.get("source") == "pipelock" and r.get("event") == "blocked" for r in recs))
        self.assertIn(f"pipelock: {ours[0]['reason'].removeprefix('pipelock: ')}", self.launched.stderr)


class FirstRequest(unittest.TestCase):
    """The agent starts beside the bundle, not after it: a request it makes the moment it runs, with no
    retry, is answered (it waits in the bundle's backlog while mitmdump starts, and is never refused)."""

    def test_a_request_made_at_once_is_answered(self) -> None:
        support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        net = s.network(support.unique_name("cbtest-first"))
        shutil.copy(os.path.join(FILES, "chain_upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        origin = s.container(support.unique_name("cbtest-origin"), "--network", net, "--user", "0",
                             "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE,
                             "python3", "/srv/chain_upstream.py", "80", str(GREETING_PORT))
        ip = s.ip(origin, net)
        support.wait_for(lambda: support.sh(["docker", "exec", origin, "python3", "-c",
                                             "import socket; socket.create_connection(('127.0.0.1', 80), 1)"],
                                            check=False).returncode == 0, 30, "the origin")
        bottle = support.unique_name("itest-first")
        manifest = s.manifest({"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE},
                               "egress": {"allow": [ip], "network": net}})
        state = os.path.join(s.dir, "state")
        launched = subprocess.run(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--",
             "sh", "-c", f"date +%s.%N; curl -sS --max-time 30 -o /dev/null -w '%{{http_code}}\\n' http://{ip}/first"],
            capture_output=True, text=True, timeout=300, env=support.launcher_env(XDG_STATE_HOME=state),
            cwd=support.REPO)
        self.assertEqual(launched.returncode, 0, launched.stderr[-3000:])
        started, status = launched.stdout.split()[:2]
        self.assertEqual(status, "200", launched.stdout + launched.stderr[-2000:])
        ready = [json.loads(line) for path in glob.glob(os.path.join(state, "claude-bottle", "sessions", "*.jsonl"))
                 for line in open(path) if '"ready"' in line]
        # Said, not asserted: which came first depends on the machine, and either way it must work.
        print(f"\nagent started at {float(started):.3f}; addon ready at {ready[0]['ts'] if ready else '?'}",
              file=sys.stderr)
        self.assertEqual(support.labelled(bottle), [])


class NothingAllowed(unittest.TestCase):
    """A manifest that allows nothing starts (pipelock's strict mode refuses an empty allowlist; the
    rendered config gives it a name that can never resolve) and reaches nothing."""

    def test_starts_and_reaches_nothing(self) -> None:
        support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        net = s.network(support.unique_name("cbtest-none"))
        shutil.copy(os.path.join(FILES, "chain_upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        origin = support.unique_name("cbtest-origin")
        s.container(origin, "--network", net, "--user", "0", "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE,
                    "python3", "/srv/chain_upstream.py", "80", str(GREETING_PORT))
        ip = s.ip(origin, net)
        bottle = support.unique_name("itest-none")
        manifest = s.manifest({"name": bottle, "agent": {"image": support.AGENT_TEST_IMAGE},
                               "egress": {"allow": [], "network": net}})
        probe = ("import os,socket,urllib.parse as u;p=u.urlsplit(os.environ['HTTP_PROXY']);"
                 "s=socket.create_connection((p.hostname,p.port),10);"
                 f"s.sendall(b'CONNECT {ip}:80 HTTP/1.1\\r\\nHost: {ip}:80\\r\\n\\r\\n');"
                 "print('REPLY', s.recv(200).split(b'\\r\\n')[0].decode())")
        run = subprocess.run([sys.executable, "-m", "claude_bottle", "start", manifest, "--", "python3", "-c", probe],
                             capture_output=True, text=True, timeout=300, env=support.launcher_env(),
                             cwd=support.REPO)
        self.assertEqual(run.returncode, 0, run.stderr[-3000:])
        self.assertIn("REPLY HTTP/1.1 403", run.stdout)
        self.assertEqual(support.labelled(bottle), [])


if __name__ == "__main__":
    unittest.main()
