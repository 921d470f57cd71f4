"""Unit tests for `claude-bottle verify`'s pure parts (claude_bottle/verify.py: the battery, the judging,
the table and JSON, the exit status), the command's wiring with the fake runner, and the probe's own
pure helpers. No Docker: the one real network use is a refusal on loopback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import unittest
from typing import Any
from unittest import mock

from claude_bottle import cli, manifest, plan, verify
from claude_bottle.agent import verify_probe as probe
from claude_bottle.commands import verify as command
from claude_bottle.errors import UsageError
from tests.fakes.runner import FakeRunner, ok

SESSION = "abcd1234"
TARGETS = verify.Targets("198.51.100.7", "2001:db8::7", "outside.verify.test", "AKIA" + "Q" * 16)


def _plan(doc: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> plan.Plan:
    doc = {"name": "demo", **(doc or {})}
    return plan.build(manifest.parse(doc, "/nowhere/m.json"), SESSION, uid=1000, gid=1000, environ=environ or {},
                      placeholder_seed="seed")


def _by_name(checks: tuple[verify.Check, ...], name: str) -> list[verify.Check]:
    return [c for c in checks if c.name == name]


RICH = {"egress": {"allow": ["api.example.com", "*.cdn.example.org", "10.0.0.5:5432", "ssh://git.example.com",
                             "docs.example.net"],
                   "dlp": {"hosts": {"docs.example.net": "skip"}}},
        "secrets": {"TOKEN": {"from_env": "TOKEN",
                              "inject": {"hosts": ["api.example.com"], "header": "authorization"}}}}


class BatteryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.checks = verify.battery(_plan(RICH), TARGETS)

    def test_every_escape_class_is_in_the_battery(self) -> None:
        names = {c.name for c in self.checks if c.kind == "escape"}
        self.assertEqual(names, {
            "direct TCP", "direct UDP (a DNS query)", "ICMP echo", "DNS lookup", "IPv6", "cloud metadata, direct",
            "cloud metadata, via proxy", "bundle's other ports", "bundle, not as a proxy", "host no rule names",
            "port no rule names", "placeholder, wrong host", "fake secret in a body"})

    def test_one_reach_check_per_rule_and_ids_are_unique(self) -> None:
        reach = [c for c in self.checks if c.kind == "reach"]
        self.assertEqual([c.target for c in reach], ["api.example.com", "*.cdn.example.org", "10.0.0.5:5432",
                                                     "ssh://git.example.com", "docs.example.net"])
        self.assertEqual(len({c.id for c in self.checks}), len(self.checks))
        web, wildcard, tcp, sshc = (c.spec() for c in reach[:4])
        self.assertEqual((web["mode"], web["port"], web["fallback_port"]), ("tls", 443, 80))
        self.assertEqual(wildcard["host"], "cdn.example.org")  # a wildcard is tried at its apex, which it covers
        self.assertEqual((tcp["mode"], tcp["port"], sshc["port"]), ("connect", 5432, 22))

    def test_direct_attempts_aim_only_at_the_given_outside(self) -> None:
        direct = {c.target: c.spec() for c in self.checks if c.judge in ("net", "icmp", "ipv6", "dns")}
        self.assertEqual(sorted(direct), sorted(["198.51.100.7:443", "198.51.100.7:80", "198.51.100.7:53",
                                                 "198.51.100.7", "outside.verify.test", "[2001:db8::7]:443",
                                                 "169.254.169.254:80"]))
        udp = direct["198.51.100.7:53"]
        self.assertEqual(bytes.fromhex(udp["payload"]), verify.dns_query("outside.verify.test"))

    def test_bundle_checks_use_the_plans_proxy(self) -> None:
        scan = _by_name(self.checks, "bundle's other ports")[0].spec()
        self.assertEqual((scan["host"], scan["skip"]), ("127.0.0.1", [3128]))  # the gate's relay
        targets = [c.target for c in _by_name(self.checks, "bundle, not as a proxy")]
        self.assertEqual(targets, ["GET /health, Host: 127.0.0.1:8888", "GET http://127.0.0.1:8888/health",
                                   "CONNECT 127.0.0.1:8888", "GET http://mitm.it/"])

    def test_an_unnamed_port_for_every_allowed_host(self) -> None:
        ports = {c.spec()["host"]: c.spec()["port"] for c in _by_name(self.checks, "port no rule names")}
        self.assertEqual(ports, {"api.example.com": 8443, "cdn.example.org": 8443, "10.0.0.5": 8443,
                                 "git.example.com": 8443, "docs.example.net": 8443})
        p = _plan({"egress": {"allow": ["a.example.com:8443", "a.example.com:8081"]}})
        self.assertEqual([c.spec()["port"] for c in _by_name(verify.battery(p, TARGETS), "port no rule names")], [2222])

    def test_placeholder_goes_to_another_allowed_host_in_its_own_header(self) -> None:
        (check,) = _by_name(self.checks, "placeholder, wrong host")
        spec = check.spec()
        self.assertEqual(spec["host"], "docs.example.net")  # an exact host, not the wildcard's apex
        self.assertEqual(spec["env_headers"], [["authorization", "TOKEN"]])  # the probe reads the agent's $TOKEN
        self.assertNotIn("claude-bottle-placeholder", check.probe)

    def test_placeholder_with_no_other_host_uses_a_wrong_header(self) -> None:
        p = _plan({"egress": {"allow": ["api.example.com"]}, "secrets": RICH["secrets"]})
        (check,) = _by_name(verify.battery(p, TARGETS), "placeholder, wrong host")
        self.assertEqual(check.spec()["host"], "api.example.com")
        self.assertEqual(check.spec()["env_headers"], [["x-claude-bottle-verify", "TOKEN"]])

    def test_placeholder_is_na_without_secrets(self) -> None:
        (check,) = _by_name(verify.battery(_plan({"egress": {"allow": ["a.example.com"]}}), TARGETS),
                            "placeholder, wrong host")
        self.assertEqual(check.na, "the plan has no secrets")

    def test_fake_secret_to_every_scanned_host_only(self) -> None:
        dlp = {c.target: c for c in _by_name(self.checks, "fake secret in a body")}
        self.assertEqual(sorted(dlp), ["api.example.com", "cdn.example.org", "docs.example.net"])  # no raw-only hosts
        self.assertIn("DLP mode skip", dlp["docs.example.net"].na)
        spec = dlp["api.example.com"].spec()
        self.assertEqual((spec["method"], json.loads(spec["body"])["aws_access_key_id"]), ("POST", TARGETS.fake_key))

    def test_model_api_hosts_are_warn_by_default_so_na(self) -> None:
        checks = verify.battery(_plan({"egress": {"allow": ["api.anthropic.com"]}}), TARGETS)
        (dlp,) = _by_name(checks, "fake secret in a body")
        self.assertIn("DLP mode warn", dlp.na)

    def test_a_target_a_rule_allows_is_na(self) -> None:
        p = _plan({"egress": {"allow": ["*.verify.test", "198.51.100.7"]}})
        unnamed = _by_name(verify.battery(p, TARGETS), "host no rule names")
        self.assertEqual([c.na for c in unnamed], ["a rule allows it", "a rule allows it"])

    def test_no_rules(self) -> None:
        checks = verify.battery(_plan({"egress": {"allow": []}}), TARGETS)
        self.assertFalse([c for c in checks if c.kind == "reach"])
        self.assertEqual(_by_name(checks, "port no rule names")[0].na, "no rule names a host")
        self.assertEqual(_by_name(checks, "fake secret in a body")[0].na, "no rule allows HTTP to any host")


class HelpersTest(unittest.TestCase):
    def test_fake_key_has_the_aws_shape_and_varies(self) -> None:
        keys = {verify.fake_aws_key(os.urandom(16)) for _ in range(5)}
        self.assertEqual(len(keys), 5)
        for key in keys:
            self.assertRegex(key, r"^AKIA[A-Z2-7]{16}$")

    def test_dns_query(self) -> None:
        q = verify.dns_query("a.example")
        self.assertEqual(q[4:6], b"\0\x01")  # one question
        self.assertEqual(q[12:], b"\x01a\x07example\0\0\x01\0\x01")

    def test_dlp_mode_exact_beats_longest_wildcard_beats_default(self) -> None:
        dlp = {"default": "scan", "hosts": [
            {"host": "example.com", "wildcard": True, "mode": "warn"},
            {"host": "a.example.com", "wildcard": True, "mode": "skip"},
            {"host": "b.a.example.com", "wildcard": False, "mode": "scan"}]}
        hosts = ("b.a.example.com", "c.a.example.com", "example.com", "other.org")
        self.assertEqual([verify.dlp_mode(dlp, h) for h in hosts], ["scan", "skip", "warn", "scan"])


def _outcome(judge: str, observed: dict[str, Any] | None, kind: str = "escape") -> verify.Outcome:
    return verify.judge(verify.Check("x:y", kind, "x", "y", judge, "{}"), observed)


BLOCKED = "claude-bottle: blocked: "


class JudgeTest(unittest.TestCase):
    def result(self, judge: str, observed: dict[str, Any] | None, kind: str = "escape") -> str:
        return _outcome(judge, observed, kind).result

    def test_direct_attempts(self) -> None:
        cases = [({"connected": True}, verify.OPEN),
                 ({"stage": "connect", "errno": "EHOSTUNREACH", "error": "No route to host"}, verify.REFUSED),
                 ({"stage": "connect", "errno": "ENETUNREACH"}, verify.REFUSED),
                 ({"stage": "connect", "errno": "EADDRNOTAVAIL"}, verify.REFUSED),
                 ({"stage": "connect", "errno": "ECONNREFUSED"}, verify.OPEN),  # a reset came back: a route exists
                 ({"stage": "recv", "timeout": True, "seconds": 8}, verify.OPEN),  # sent, and nothing said no
                 ({"stage": "recv", "reply": True, "bytes": 33}, verify.OPEN),
                 ({"stage": "connect", "errno": "ECONNRESET"}, verify.OPEN)]
        for observed, want in cases:
            self.assertEqual(self.result("net", observed), want, observed)

    def test_icmp_needs_both_ways_refused(self) -> None:
        raw = {"stage": "socket", "errno": "EPERM", "error": "Operation not permitted"}
        refused = _outcome("icmp", {"raw": raw, "dgram": {"stage": "recv", "errno": "EHOSTUNREACH"}})
        self.assertEqual(refused.result, verify.REFUSED)
        self.assertIn("no CAP_NET_RAW", refused.detail)
        self.assertEqual(self.result("icmp", {"raw": raw, "dgram": {"reply": True}}), verify.OPEN)

    def test_dns_ipv6_scan(self) -> None:
        self.assertEqual(self.result("dns", {"gai": "EAI_AGAIN", "error": "x"}), verify.REFUSED)
        self.assertEqual(self.result("dns", {"addresses": ["10.1.2.3"]}), verify.OPEN)
        self.assertIn("2001:db8::9", _outcome("ipv6", {"connected": True, "own_addresses": ["2001:db8::9"]}).detail)
        closed = {"address": "10.0.0.2", "open": [], "scanned": 65534, "expected": 65534, "unanswered": 0}
        self.assertEqual(self.result("scan", closed), verify.REFUSED)
        self.assertEqual(self.result("scan", {**closed, "open": [8888]}), verify.OPEN)
        self.assertEqual(self.result("scan", {**closed, "scanned": 1000}), verify.OPEN)  # incomplete is no proof

    def test_through_the_proxy_only_the_bundles_own_403_is_a_refusal(self) -> None:
        self.assertEqual(self.result("blocked", {"status": 403, "body": BLOCKED + "host not in allowlist"}),
                         verify.REFUSED)
        for observed in ({"status": 200, "body": "ok"}, {"status": 403, "body": "Forbidden (the server's own)"},
                         {"status": 502, "body": "claude-bottle: upstream failed: x"}, {"status": None, "error": "x"}):
            self.assertEqual(self.result("blocked", observed), verify.OPEN, observed)

    def test_placeholder_and_dlp_need_their_own_reason(self) -> None:
        host = {"status": 403, "body": BLOCKED + "host not in allowlist"}
        self.assertEqual(self.result("placeholder", {"status": 403, "body": BLOCKED + "placeholder for secret T ..."}),
                         verify.REFUSED)
        self.assertEqual(self.result("placeholder", host), verify.OPEN)
        self.assertEqual(self.result("dlp", {"status": 403, "body": BLOCKED + "secret detected by gitleaks: aws"}),
                         verify.REFUSED)
        self.assertEqual(self.result("dlp", {"status": 403, "body": BLOCKED + "DLP scan failed: x"}), verify.REFUSED)
        self.assertEqual(self.result("dlp", host), verify.OPEN)
        self.assertEqual(self.result("dlp", {"status": 200, "body": "thanks", "via": "https"}), verify.OPEN)

    def test_reach(self) -> None:
        self.assertEqual(self.result("reach", {"status": 404, "body": "nope", "via": "https"}, "reach"), verify.REACHED)
        self.assertEqual(self.result("reach", {"status": 502, "body": "claude-bottle: upstream failed: x",
                                               "via": "connect"}, "reach"), verify.UNREACHABLE)
        self.assertEqual(self.result("reach", {"status": None, "error": "timeout", "via": "https"}, "reach"),
                         verify.UNREACHABLE)
        ssh = _outcome("reach", {"status": 200, "via": "connect", "banner": "SSH-2.0-OpenSSH_9.2\r\n"}, "reach")
        self.assertEqual(ssh.result, verify.REACHED)
        self.assertIn("SSH-2.0", ssh.detail)
        first = {"status": 502, "body": "claude-bottle: upstream failed", "via": "connect"}
        fell_back = _outcome("reach", {"status": 200, "body": "hi", "via": "http", "first": first}, "reach")
        self.assertEqual(fell_back.detail, "HTTPS: CONNECT 502 claude-bottle: upstream failed; then HTTP 200 hi")

    def test_probe_failures_fail_escapes_and_only_report_reach(self) -> None:
        self.assertEqual(self.result("net", None), verify.ERROR)
        self.assertEqual(self.result("net", {"probe_error": "KeyError: x"}), verify.ERROR)
        self.assertEqual(self.result("reach", {"probe_error": "KeyError: x"}, "reach"), verify.UNREACHABLE)
        na = verify.judge(verify.Check("a", "escape", "a", "-", na="why"), None)
        self.assertEqual((na.result, na.detail, na.failed), (verify.NA, "why", False))


def _outcomes(*results: tuple[str, str]) -> tuple[verify.Outcome, ...]:
    return tuple(verify.Outcome(verify.Check(f"{k}:{i}", k, f"check {i}", f"target-{i}"), r, f"detail {i}")
                 for i, (k, r) in enumerate(results))


class ExitAndOutputTest(unittest.TestCase):
    def test_exit_status_rule(self) -> None:
        passing = _outcomes(("reach", verify.UNREACHABLE), ("escape", verify.REFUSED), ("escape", verify.NA))
        self.assertEqual(verify.exit_status(passing), 0)  # an allowed rule down never fails the run
        for bad in (verify.OPEN, verify.ERROR):
            self.assertEqual(verify.exit_status(passing + _outcomes(("escape", bad))), 1)

    def test_table_is_aligned_and_ends_with_the_verdict(self) -> None:
        outcomes = _outcomes(("reach", verify.REACHED), ("escape", verify.REFUSED), ("escape", verify.OPEN))
        text = verify.render_text("demo", outcomes)
        lines = text.splitlines()
        self.assertEqual(lines[0].split(), ["RESULT", "CHECK", "TARGET", "DETAIL"])
        columns = {line.index("target-") for line in lines[1:4]}
        self.assertEqual(len(columns), 1, text)  # every row's TARGET starts in the same column
        self.assertEqual({line.index("detail") for line in lines[1:4]}, {lines[0].index("DETAIL")})
        self.assertIn("demo: 1 escapes refused, 1 not refused, 0 errors, 0 n/a; allowed rules: 1 reached", text)
        self.assertEqual(lines[-1], "FAIL: 1 not refused: check 2 target-2")
        self.assertEqual(verify.render_text("demo", outcomes[:2]).splitlines()[-1], "PASS: every escape was refused")

    def test_long_targets_are_cut_in_the_table_only(self) -> None:
        long = verify.Outcome(verify.Check("a", "escape", "c", "t" * 100), verify.REFUSED, "d")
        self.assertIn("t" * 45 + "...", verify.render_text("demo", (long,)))
        self.assertEqual(json.loads(verify.render_json("demo", SESSION, TARGETS, (long,)))["checks"][0]["target"],
                         "t" * 100)

    def test_json_for_machines_never_holds_the_key(self) -> None:
        outcomes = verify.judge_all(verify.battery(_plan(RICH), TARGETS), {})
        doc = json.loads(verify.render_json("demo", SESSION, TARGETS, outcomes))
        self.assertEqual((doc["bottle"], doc["session"], doc["passed"]), ("demo", SESSION, False))
        self.assertEqual(doc["targets"], {"outside": "198.51.100.7", "outside6": "2001:db8::7",
                                          "outside_name": "outside.verify.test"})
        self.assertEqual(set(doc["checks"][0]), {"id", "kind", "check", "target", "result", "failed", "detail",
                                                 "observed"})
        escapes = sum(c["kind"] == "escape" for c in doc["checks"])
        self.assertEqual(doc["escapes"]["error"] + doc["escapes"]["n/a"], escapes)  # no observations: nothing passes
        self.assertNotIn(TARGETS.fake_key, json.dumps(doc))


class CommandTest(unittest.TestCase):
    def test_flags_are_checked(self) -> None:
        t = command.targets("192.0.2.1", "[2001:db8::1]", "Example.COM.", b"\0" * 16)
        self.assertEqual((t.outside, t.outside6, t.outside_name), ("192.0.2.1", "2001:db8::1", "example.com"))
        for bad in (("nope", "::1", "a.b"), ("192.0.2.1", "192.0.2.1", "a.b"), ("192.0.2.1", "::1", "a b")):
            with self.assertRaises(UsageError):
                command.targets(*bad, b"\0" * 16)

    def test_help_states_the_real_defaults(self) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit):
            cli.parser().parse_args(["verify", "--help"])
        text = " ".join(out.getvalue().split())
        for default in (verify.DEFAULT_OUTSIDE, verify.DEFAULT_OUTSIDE6, verify.DEFAULT_OUTSIDE_NAME):
            self.assertIn(default, text)
        self.assertNotIn("HOLE", text.upper())

    def test_probe_output_parsing_and_python_detection(self) -> None:
        line = verify.MARKER + json.dumps({"observations": {"a": {"connected": True}}})
        self.assertEqual(command.parse_output("noise\n" + line + "\n"), {"a": {"connected": True}})
        self.assertIsNone(command.parse_output("nothing here"))
        self.assertIsNone(command.parse_output(verify.MARKER + "{broken"))
        docker_said = ('Error response from daemon: failed to create shim task: OCI runtime create failed: exec: '
                       '"python3": executable file not found in $PATH: unknown')
        self.assertTrue(command.no_python(docker_said))
        self.assertTrue(command.no_python("[FATAL tini (7)] exec python3 failed: No such file or directory\n"))
        self.assertTrue(command.no_python("/usr/local/bin/docker-entrypoint.sh: exec: python3: not found"))
        self.assertTrue(command.no_python("env: 'python3': No such file or directory".replace("'", "")))
        self.assertTrue(command.no_python("Error: Cannot find module '/workspace/python3'"))
        self.assertFalse(command.no_python("Traceback ... KeyError: 'checks'"))
        self.assertFalse(command.no_python('File "/usr/lib/python3.11/json/__init__.py": not found, No such file'))

    def test_probe_source_is_the_agent_file_and_compiles(self) -> None:
        source = command.probe_source()
        compile(source, "verify_probe.py", "exec")
        self.assertEqual(probe.MARKER, verify.MARKER)
        self.assertEqual(verify.CA_PATH, plan.CA_PATH)


class CommandRunTest(unittest.TestCase):
    """The whole command with the fake runner standing in for Docker and a fake probe answering."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-verify-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        env = mock.patch.dict(os.environ, {"XDG_STATE_HOME": os.path.join(self.dir, "state")})
        env.start()
        self.addCleanup(env.stop)

    def write(self, doc: dict[str, Any]) -> str:
        path = os.path.join(self.dir, "m.json")
        with open(path, "w") as handle:
            json.dump(doc, handle)
        return path

    def run_cli(self, doc: dict[str, Any], leak: str = "", fmt: str = "json") -> tuple[int, str, str, FakeRunner]:
        def handler(argv: list[str]) -> Any:
            if argv[:3] == ["docker", "start", "--attach"]:
                spec = _spec_from(fake)
                return ok("starting\n" + verify.MARKER + json.dumps({"observations": {
                    c["id"]: _refused(c, leak) for c in spec["checks"]}}) + "\n")
            return None

        fake = FakeRunner(handler)
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.object(command, "SubprocessRunner", lambda: fake), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = cli.main(["verify", self.write(doc), "--format", fmt, "--outside", "192.0.2.9"])
        return code, out.getvalue(), err.getvalue(), fake

    def test_a_refusing_bottle_passes_and_the_probe_went_in_beside_the_ca(self) -> None:
        code, out, err, fake = self.run_cli({"name": "demo", "egress": {"allow": ["api.example.com"]}})
        self.assertEqual(code, 0, err)
        doc = json.loads(out)
        self.assertTrue(doc["passed"])
        self.assertEqual(doc["targets"]["outside"], "192.0.2.9")
        create = next(c for c in fake.calls if c[:2] == ["docker", "create"] and "org.claude-bottle.role=agent" in c)
        self.assertNotIn("--interactive", create)
        self.assertNotIn("--tty", create)
        self.assertEqual(create[-3:], list(verify.PROBE_COMMAND))
        self.assertIn("--tmpfs", " ".join(create))  # verify never creates or mounts the kept home
        started = [c for c in fake.calls if c[:2] == ["docker", "start"] and "--attach" in c]
        self.assertEqual(len(started), 1)
        self.assertNotIn("--interactive", started[0])
        names = _tar_names(fake)
        self.assertTrue({"etc/claude-bottle/verify_probe.py", "etc/claude-bottle/verify.json"} <= names, names)
        self.assertTrue(any(c[:4] == ["docker", "rm", "--force", "--volumes"] for c in fake.calls))  # torn down

    def test_one_escape_fails_the_run(self) -> None:
        code, out, _, _ = self.run_cli({"name": "demo", "egress": {"allow": []}}, leak="dns", fmt="text")
        self.assertEqual(code, 1)
        self.assertIn("NOT REFUSED  DNS lookup", out)
        self.assertTrue(out.splitlines()[-1].startswith("FAIL: 1 not refused: DNS lookup example.com"))

    def test_a_key_echoed_back_fails_and_is_masked(self) -> None:
        code, out, _, fake = self.run_cli({"name": "demo", "egress": {"allow": ["api.example.com"]}}, leak="echo")
        key = json.loads(_spec_from(fake)["checks"][-1]["body"])["aws_access_key_id"]
        self.assertEqual(code, 1)
        failed = [c for c in json.loads(out)["checks"] if c["failed"]]
        self.assertEqual([(c["check"], c["detail"]) for c in failed],
                         [("fake secret in a body", "HTTPS 200 got AKIA(the generated fake key)")])
        self.assertNotIn(key, out)

    def test_other_runtimes_are_refused_before_anything_runs(self) -> None:
        fake = FakeRunner()
        err = io.StringIO()
        with mock.patch.object(command, "SubprocessRunner", lambda: fake), contextlib.redirect_stderr(err):
            code = cli.main(["verify", self.write({"name": "demo", "runtime": "smolmachines"})])
        self.assertEqual(code, 2)
        self.assertIn("runtime: verify supports the docker runtime only; smolmachines is not supported yet",
                      err.getvalue())
        self.assertEqual(fake.calls, [])

    def test_an_image_without_python_is_exit_2(self) -> None:
        def handler(argv: list[str]) -> Any:
            if argv[:3] == ["docker", "start", "--attach"]:
                return 1, "", 'Error response from daemon: exec: "python3": executable file not found in $PATH'
            return None

        fake = FakeRunner(handler)
        err = io.StringIO()
        with mock.patch.object(command, "SubprocessRunner", lambda: fake), contextlib.redirect_stderr(err):
            code = cli.main(["verify", self.write({"name": "demo"})])
        self.assertEqual(code, 2)
        self.assertIn("has no python3 on its PATH", err.getvalue())
        self.assertTrue(any(c[:4] == ["docker", "rm", "--force", "--volumes"] for c in fake.calls))  # all removed


def _tar_names(fake: FakeRunner) -> set[str]:
    names: set[str] = set()
    for argv, data in fake.inputs:
        if argv[:2] == ["docker", "cp"] and argv[-1].endswith("-agent:/") and data:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                names |= set(tar.getnames())
    return names


def _spec_from(fake: FakeRunner) -> dict[str, Any]:
    for argv, data in fake.inputs:
        if argv[:2] == ["docker", "cp"] and argv[-1].endswith("-agent:/") and data:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.extractfile("etc/claude-bottle/verify.json")
                assert member is not None
                return json.load(member)
    raise AssertionError("no spec was copied into the agent")


def _refused(check: dict[str, Any], leak: str) -> dict[str, Any]:
    """What a sound bottle shows the probe for each action (and, for `leak`, what a hole shows)."""
    if check["action"] == leak:
        return {"addresses": ["192.0.2.80"]}
    if leak == "echo" and "body" in check:  # a server that got the fake key and says so
        return {"status": 200, "via": "https", "body": "got " + json.loads(check["body"])["aws_access_key_id"]}
    nope = {"stage": "connect", "errno": "EHOSTUNREACH", "error": "No route to host"}
    body = BLOCKED + "placeholder ... secret detected by gitleaks: aws-access-token"
    return {"tcp": nope, "udp": nope, "ipv6": nope, "icmp": {"raw": nope, "dgram": nope},
            "dns": {"gai": "EAI_AGAIN", "error": "Temporary failure in name resolution"},
            "scan": {"address": "172.19.0.2", "open": [], "scanned": 65534, "expected": 65534},
            "http": {"status": 403, "via": "http", "body": body}}[check["action"]]


class ProbeHelpersTest(unittest.TestCase):
    def test_a_scan_counts_listeners_not_a_socket_that_reached_itself(self) -> None:
        import socket

        server = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(server.close)
        with socket.create_connection(server.getsockname()) as real:
            self.assertTrue(probe.listening(real))
        # What a scan of the agent's own loopback meets: a socket whose port is the one it dials.
        with socket.socket() as lonely:
            lonely.bind(("127.0.0.1", 0))
            lonely.connect(lonely.getsockname())
            self.assertFalse(probe.listening(lonely))
        found, _ = probe.scan_batch("127.0.0.1", [server.getsockname()[1]])
        self.assertEqual(found, [server.getsockname()[1]])

    def test_icmp_checksum(self) -> None:
        packet = b"\x08\x00\x00\x00\x63\x62\x00\x01" + b"abc"
        summed = packet[:2] + probe.checksum(packet).to_bytes(2, "big") + packet[4:]
        self.assertEqual(probe.checksum(summed), 0)

    def test_authority_and_host_header(self) -> None:
        self.assertEqual(probe.authority("2001:db8::1", 443), "[2001:db8::1]:443")
        self.assertEqual(probe.host_header("a.example", 80, 80), "a.example")
        self.assertEqual(probe.host_header("a.example", 8080, 80), "a.example:8080")
        self.assertEqual(verify.authority("a.example", 22), "a.example:22")

    def test_a_refused_connection_is_data_with_its_errno(self) -> None:
        with socket.socket() as sock:  # a port nobody listens on: bound, never listening
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            observed = probe.tcp({"host": "127.0.0.1", "port": port})
        self.assertEqual((observed["stage"], observed["errno"]), ("connect", "ECONNREFUSED"))
        self.assertEqual(_outcome("net", observed).result, verify.OPEN)

    def test_proxy_requests_against_a_stub_proxy(self) -> None:
        got: list[bytes] = []
        server = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(server.close)
        import threading

        def answer() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    got.append(conn.recv(65536))
                    body = b"claude-bottle: blocked: host not in allowlist\n"
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

        threading.Thread(target=answer, daemon=True).start()
        proxy = f"http://127.0.0.1:{server.getsockname()[1]}"
        refused = probe.http_check({"proxy": proxy, "mode": "connect", "host": "2001:db8::1", "port": 443})
        plain = probe.http_check({"proxy": proxy, "mode": "absolute", "host": "a.example", "port": 80,
                                  "path": "/x", "method": "POST", "body": "{}"})
        self.assertEqual((refused["status"], refused["via"]), (403, "connect"))
        self.assertEqual((plain["status"], plain["via"]), (403, "http"))
        self.assertTrue(got[0].startswith(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n"))
        self.assertTrue(got[1].startswith(b"POST http://a.example/x HTTP/1.1\r\nHost: a.example\r\n"))
        self.assertTrue(re.search(rb"Content-Length: 2\r\n\r\n\{\}$", got[1]))


if __name__ == "__main__":
    unittest.main()
