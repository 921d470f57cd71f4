"""Secrets the agent never holds, request DLP and the audit trail, in a real bottle on the real Docker engine.

"The internet" is a Docker network of our own with two API stand-ins (files/dlp_upstream.py): BOUND, the
host the secrets are injected for (DLP `scan`), and OTHER, another allowed host (DLP `skip`). The agent
runs files/secrets_probe.py with placeholder credentials; while it waits, the test looks at the running
bottle from outside (`docker inspect`, every file and /proc entry the agent can read, `claude-bottle
logs`), then lets it finish and checks the summary and the saved session log.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import unittest

from tests.integration import secret_shapes, support

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
LABEL = "org.claude-bottle"
# Runs in the agent container as the agent's user: which readable file or process environment or
# command line holds any of the values given on stdin? (The values never appear on an argv.)
FIND_VALUES = r"""
import json, os, sys
values = [v.encode() for v in json.load(sys.stdin)]
hits, me = [], str(os.getpid())
def check(path, data):
    if any(v in data for v in values):
        hits.append(path)
for top, dirs, files in os.walk("/"):
    if top == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(top, name)
        try:
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) < 64 << 20:
                with open(path, "rb") as f:
                    check(path, f.read())
        except OSError:
            pass
for pid in os.listdir("/proc"):
    if pid.isdigit() and pid != me:
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    check(f"/proc/{pid}/{what}", f.read())
            except OSError:
                pass
print(json.dumps({"hits": hits, "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}))
"""


def _cert(s: support.Scratch, ips: list[str]) -> tuple[str, str, str]:
    """A test CA and one server certificate naming both upstreams' IPs."""
    if shutil.which("openssl") is None:
        support.unavailable("openssl CLI not installed")
    d = s.dir
    ext = s.write("api.ext", f"subjectAltName={','.join('IP:' + ip for ip in ips)}\nbasicConstraints=CA:FALSE\n"
                             "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    ca, ca_key = os.path.join(d, "api-ca.pem"), os.path.join(d, "api-ca.key")
    crt, key, csr = os.path.join(d, "api.pem"), os.path.join(d, "api.key"), os.path.join(d, "api.csr")
    support.sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cb api CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", ca_key, "-out", ca])
    support.sh(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=api", "-keyout", key, "-out", csr])
    support.sh(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                "-extfile", ext, "-out", crt])
    for path in (crt, key, ca):
        os.chmod(path, 0o644)
    return ca, crt, key


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SecretsAndDlpInABottle(unittest.TestCase):
    results: dict[str, dict[str, object]]

    @classmethod
    def setUpClass(cls) -> None:
        support.require_images()
        cls.scratch = s = support.Scratch()
        cls.launcher: subprocess.Popen[bytes] | None = None
        try:
            cls._start(s)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls, s: support.Scratch) -> None:
        net = s.network(support.unique_name("cbtest-inet"))
        shutil.copy(os.path.join(FILES, "dlp_upstream.py"), s.dir)
        os.chmod(s.dir, 0o755)
        common = ["--network", net, "--user", "0", "-v", f"{s.dir}:/srv:ro", support.AGENT_TEST_IMAGE]
        bound, other = support.unique_name("cbtest-bound"), support.unique_name("cbtest-other")
        for name in (bound, other):
            s.container(name, *common, "sleep", "infinity")
        cls.bound, cls.other = s.ip(bound, net), s.ip(other, net)
        ca, _, _ = _cert(s, [cls.bound, cls.other])
        for name in (bound, other):
            support.sh(["docker", "exec", "-d", name, "python3", "/srv/dlp_upstream.py", "/srv/api.pem",
                        "/srv/api.key"])
        # The real values: one from the launcher's environment, one from a file outside the workspace,
        # and Claude Code's own key, picked up implicitly.
        cls.real = {"TEST_TOKEN": "cbtest-env-" + secrets.token_hex(16),
                    "FILE_TOKEN": "cbtest-file-" + secrets.token_hex(16),
                    "ANTHROPIC_API_KEY": "sk-ant-cbtest-" + secrets.token_hex(16)}
        s.write("file-token.txt", cls.real["FILE_TOKEN"] + "\n", mode=0o600)
        cls.workspace = ws = os.path.join(s.dir, "ws")
        os.makedirs(ws)
        os.chmod(ws, 0o777)  # the agent runs as uid 10001 when the tests run as root
        shutil.copy(os.path.join(FILES, "secrets_probe.py"), ws)
        cls.shapes = {label: body.decode() for label, (_, body) in secret_shapes.bodies().items()}
        cls.rules = {label: rule for label, (rule, _) in secret_shapes.bodies().items()}
        with open(os.path.join(ws, "bodies.json"), "w") as handle:
            json.dump({**cls.shapes, "clean": json.dumps({"prompt": "def add(a, b):\n    return a + b\n"})}, handle)
        cls.bottle = support.unique_name("secrets")
        manifest = s.manifest({
            "name": cls.bottle,
            "workspace": "ws",
            "agent": {"image": support.AGENT_TEST_IMAGE},
            "egress": {"allow": [cls.bound, cls.other, "api.anthropic.com"], "trusted_ca": ca, "network": net,
                       "dlp": {"hosts": {cls.other: "skip"}}},
            "secrets": {
                "TEST_TOKEN": {"from_env": "CB_ITEST_TOKEN",
                               "inject": {"hosts": [cls.bound], "header": "Authorization"}},
                "FILE_TOKEN": {"from_file": "file-token.txt",
                               "inject": {"hosts": [cls.bound], "header": "X-File-Token"}},
            },
        })
        cls.env = support.launcher_env(CB_ITEST_TOKEN=cls.real["TEST_TOKEN"],
                                       ANTHROPIC_API_KEY=cls.real["ANTHROPIC_API_KEY"])
        cls.out, cls.err = open(os.path.join(s.dir, "stdout"), "w+b"), open(os.path.join(s.dir, "stderr"), "w+b")
        cls.launcher = subprocess.Popen(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--", "python3", "/workspace/secrets_probe.py",
             cls.bound, cls.other],
            stdin=subprocess.DEVNULL, stdout=cls.out, stderr=cls.err, env=cls.env, cwd=support.REPO,
        )
        done = os.path.join(ws, "probe-done")
        launcher = cls.launcher
        support.wait_for(lambda: os.path.exists(done) or launcher.poll() is not None, 300, "the probe")
        if not os.path.exists(done):
            raise AssertionError(f"the probe never finished; rc={cls.launcher.poll()}\n{cls._output()}")
        cls.while_running()
        with open(os.path.join(ws, "release"), "w") as handle:
            handle.write("go\n")
        cls.rc = cls.launcher.wait(timeout=180)
        cls.stdout, cls.stderr = cls._output(split=True)
        line = next((l for l in cls.stdout.splitlines() if l.startswith("PROBE-RESULT ")), None)
        if line is None:
            raise AssertionError(f"no probe result; rc={cls.rc}\n{cls._output()}")
        cls.results = json.loads(line.removeprefix("PROBE-RESULT "))

    @classmethod
    def _output(cls, split: bool = False) -> object:
        texts = []
        for handle in (cls.out, cls.err):
            handle.seek(0)
            texts.append(handle.read().decode(errors="replace"))
        return tuple(texts) if split else f"stdout:\n{texts[0][-3000:]}\nstderr:\n{texts[1][-3000:]}"

    @classmethod
    def container(cls, role: str) -> str:
        ids = support.sh(["docker", "ps", "-q", "--filter", f"label={LABEL}.bottle={cls.bottle}",
                          "--filter", f"label={LABEL}.role={role}"]).stdout.split()
        assert len(ids) == 1, (role, ids)
        return ids[0]

    @classmethod
    def while_running(cls) -> None:
        """Everything the test looks at while the bottle is up."""
        agent, bundle = cls.container("agent"), cls.container("bundle")
        cls.inspect = {role: support.sh(["docker", "inspect", cid]).stdout for role, cid in
                       (("agent", agent), ("bundle", bundle))}
        user = json.loads(cls.inspect["agent"])[0]["Config"]["User"]
        found = support.sh(["docker", "exec", "-i", "-u", user, agent, "python3", "-c", FIND_VALUES],
                           input=json.dumps(list(cls.real.values())), timeout=300)
        cls.agent_scan = json.loads(found.stdout)
        cls.secrets_file = support.sh(["docker", "exec", bundle, "stat", "-c", "%a %u %U",
                                       "/etc/claude-bottle/secrets.json"]).stdout.strip()
        logs = [sys.executable, "-m", "claude_bottle", "logs", cls.bottle]
        cls.logs_json = support.sh([*logs, "--json"], env=cls.env, cwd=support.REPO).stdout
        cls.logs_text = support.sh(logs, env=cls.env, cwd=support.REPO).stdout

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            if cls.launcher is not None and cls.launcher.poll() is None:
                with open(os.path.join(cls.scratch.dir, "ws", "release"), "w") as handle:
                    handle.write("go\n")
                try:
                    cls.launcher.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    cls.launcher.terminate()
                    cls.launcher.wait(timeout=120)
        finally:
            if hasattr(cls, "bottle"):
                support.sh([sys.executable, "-m", "claude_bottle", "cleanup", cls.bottle, "--force"],
                           env=support.launcher_env(), cwd=support.REPO, check=False)
            for handle in (getattr(cls, "out", None), getattr(cls, "err", None)):
                if handle is not None:
                    handle.close()
            cls.scratch.close()

    def r(self, key: str) -> dict[str, object]:
        value = self.results[key]
        assert isinstance(value, dict), (key, value)
        return value

    def assert_no_real_value(self, text: str, where: str) -> None:
        for name, value in self.real.items():
            self.assertNotIn(value, text, f"{name}'s real value in {where}")

    # ---------- injection ----------

    def test_the_agent_holds_placeholders(self) -> None:
        env = self.r("env")
        for name in ("TEST_TOKEN", "FILE_TOKEN", "ANTHROPIC_API_KEY"):
            self.assertRegex(str(env[name]), rf"^claude-bottle-placeholder-{name}-[0-9a-f]{{32}}$")

    def test_placeholders_are_swapped_for_the_bound_host(self) -> None:
        self.assertEqual(self.r("inject_bound")["status"], 200, self.r("inject_bound"))
        seen = json.loads(str(self.r("inject_bound")["body"]))["headers"]
        self.assertEqual(seen["authorization"], sha(f"Bearer {self.real['TEST_TOKEN']}"))
        seen = json.loads(str(self.r("inject_file")["body"]))["headers"]
        self.assertEqual(seen["x-file-token"], sha(self.real["FILE_TOKEN"]))

    def test_placeholders_elsewhere_are_blocked(self) -> None:
        for key, fragment in (("other_host", "may only be sent in header authorization"),
                              ("plain_http", "over plain HTTP"), ("in_url", "placeholder for secret TEST_TOKEN"),
                              ("wrong_header", "may only be sent in header authorization")):
            with self.subTest(key):
                self.assertEqual(self.r(key)["status"], 403, self.r(key))
                self.assertIn("claude-bottle: blocked: ", str(self.r(key)["body"]))
                self.assertIn(fragment, str(self.r(key)["body"]))

    def test_a_reflected_credential_comes_back_as_the_placeholder(self) -> None:
        reflect = self.r("reflect")
        self.assertEqual(reflect["body"], f"you sent Bearer {self.r('env')['TEST_TOKEN']}")

    def test_the_real_values_never_reach_the_agent(self) -> None:
        self.assertEqual(self.agent_scan["hits"], [], "a file or process of the agent holds a real value")
        self.assertGreater(len(self.agent_scan["pids"]), 1)  # it did see the agent's processes
        self.assert_no_real_value(self.inspect["agent"], "docker inspect of the agent")
        self.assert_no_real_value(self.inspect["bundle"], "docker inspect of the bundle (env, argv)")
        self.assert_no_real_value(self.stdout, "the agent's output")
        self.assertEqual(self.secrets_file, "400 10001 bottle")

    # ---------- DLP ----------

    def test_secret_shapes_to_a_scan_host_are_blocked_with_the_rule(self) -> None:
        for label, rule in self.rules.items():
            with self.subTest(label):
                result = self.r(f"dlp_{label}_bound")
                self.assertEqual(result["status"], 403, result)
                self.assertRegex(str(result["body"]), rf"secret detected by gitleaks: [a-z, -]*\b{rule}\b")

    def test_the_same_bodies_pass_to_a_skip_host_and_clean_ones_everywhere(self) -> None:
        for label in [*self.rules, "clean"]:
            with self.subTest(label):
                self.assertEqual(self.r(f"dlp_{label}_other")["status"], 200, self.r(f"dlp_{label}_other"))
        self.assertEqual(self.r("dlp_clean_bound")["status"], 200, self.r("dlp_clean_bound"))

    def test_server_sent_events_arrive_one_by_one(self) -> None:
        self.assertNotIn("sse_error", self.results)
        arrivals = self.results["sse_arrivals"]
        assert isinstance(arrivals, list)
        self.assertEqual(len(arrivals), 2, arrivals)
        self.assertGreater(arrivals[1] - arrivals[0], 1.0, f"events were held back and delivered together: {arrivals}")

    # ---------- the audit trail ----------

    def test_logs_shows_the_running_bottles_decisions(self) -> None:
        recs = [json.loads(line) for line in self.logs_json.splitlines()]
        injected = {(r["secret"], r["host"]) for r in recs if r["event"] == "injected"}
        self.assertEqual(injected, {("TEST_TOKEN", self.bound), ("FILE_TOKEN", self.bound)})
        kinds = {r.get("kind") for r in recs if r["event"] == "blocked"}
        self.assertTrue({"placeholder", "dlp"} <= kinds, kinds)
        self.assertTrue(any(r["event"] == "allowed" and r["host"] == self.other for r in recs))
        self.assertIn("injected", self.logs_text)
        self.assertIn("secret detected by gitleaks", self.logs_text)
        for text, where in ((self.logs_json, "logs --json"), (self.logs_text, "logs")):
            self.assert_no_real_value(text, where)
            for body in self.shapes.values():
                self.assertNotIn(body.strip().splitlines()[-1], text)

    def test_start_prints_a_summary_and_saves_the_session_log(self) -> None:
        self.assertEqual(self.rc, 0, self._output())
        self.assert_no_real_value(self.stderr, "the launcher's stderr")
        self.assertRegex(self.stderr, r"claude-bottle: session [0-9a-f]{8}: \d+ requests allowed, \d+ blocked, "
                                      r"3 secret injections")
        self.assertRegex(self.stderr, rf"injected +2x +TEST_TOKEN +-> {self.bound}")
        self.assertRegex(self.stderr, rf"injected +1x +FILE_TOKEN +-> {self.bound}")
        self.assertRegex(self.stderr, rf"blocked +1x +{self.bound} +secret detected by gitleaks: "
                                      r"[a-z, -]*aws-access-token")
        self.assertRegex(self.stderr, rf"blocked +\dx +{self.other} +placeholder for secret TEST_TOKEN")
        sessions = os.path.join(support.state_home(), "claude-bottle", "sessions")
        saved = [f for f in os.listdir(sessions) if f.startswith(self.bottle + "-")]
        self.assertEqual(len(saved), 1, saved)
        path = os.path.join(sessions, saved[0])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertIn(path, self.stderr)
        with open(path) as handle:
            text = handle.read()
        self.assert_no_real_value(text, "the saved session log")
        recs = [json.loads(line) for line in text.splitlines()]
        self.assertTrue(any(r["event"] == "injected" for r in recs))
        self.assertTrue(any(r.get("kind") == "dlp" for r in recs))
        # The bottle is gone, and `logs` falls back to what was saved.
        self.assertEqual(support.labelled(self.bottle), [])
        after = support.sh([sys.executable, "-m", "claude_bottle", "logs", self.bottle, "--json"], env=self.env,
                           cwd=support.REPO)
        self.assertEqual(after.stdout, text)
        self.assertIn("is not running; showing the log saved in", after.stderr)


if __name__ == "__main__":
    unittest.main()
