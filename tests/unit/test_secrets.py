"""Unit tests for claude_bottle.secrets and claude_bottle.dlp: the manifest's `secrets` and `egress.dlp`,
placeholders in the plan, values resolved only by the executor and handed to the bundle alone."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import unittest
from typing import Any
from unittest import mock

from claude_bottle import cli, dlp, docker_argv, launch, manifest, plan, secrets
from tests.fakes.runner import FakeRunner
from claude_bottle.bundle import policy as bundle_policy
from claude_bottle.errors import EXIT_USAGE, ManifestError

SESSION = "abcd1234"
REAL = "sk-real-value-0123456789abcdef"
PLACEHOLDER_RE = re.compile(r"^claude-bottle-placeholder-([A-Za-z_][A-Za-z0-9_]*)-[0-9a-f]{32}$")
ALLOW = ["@anthropic", "api.example.com", "*.example.org"]


def parse(secrets_section: Any = None, **doc: Any) -> manifest.Manifest:
    doc.setdefault("name", "demo")
    doc.setdefault("egress", {"allow": ALLOW})
    if secrets_section is not None:
        doc["secrets"] = secrets_section
    return manifest.parse(doc, "/nowhere/bottle.json")


def env_secret(var: str = "HOST_TOKEN", hosts: list[str] | None = None,
               header: str = "Authorization") -> dict[str, Any]:
    return {"from_env": var, "inject": {"hosts": hosts or ["api.example.com"], "header": header}}


class ManifestSecretsTest(unittest.TestCase):
    def assert_error(self, section: Any, field: str, fragment: str, **doc: Any) -> None:
        with self.assertRaises(ManifestError) as cm:
            parse(section, **doc)
        self.assertEqual(cm.exception.field, field)
        self.assertIn(fragment, cm.exception.message)

    def test_env_and_file_sources(self) -> None:
        m = parse({"TOKEN": env_secret(hosts=["API.Example.com.", "www.example.org", "api.example.com"]),
                   "FILE_TOKEN": {"from_file": "tok.txt",
                                  "inject": {"hosts": ["example.org"], "header": "X-Key"}}})
        by_name = {s.name: s for s in m.secrets}
        hosts = ("api.example.com", "www.example.org")
        self.assertEqual(by_name["TOKEN"], secrets.Secret("TOKEN", "env", "HOST_TOKEN", hosts, "authorization"))
        self.assertEqual(by_name["FILE_TOKEN"].source, "file")
        self.assertEqual(by_name["FILE_TOKEN"].ref, "/nowhere/tok.txt")  # relative to the manifest
        self.assertEqual(by_name["FILE_TOKEN"].header, "x-key")
        doc = m.to_json()["secrets"]
        self.assertEqual(doc["TOKEN"], {"from_env": "HOST_TOKEN", "inject": {
            "hosts": ["api.example.com", "www.example.org"], "header": "authorization"}})

    def test_null_opts_out(self) -> None:
        m = parse({"ANTHROPIC_API_KEY": None})
        self.assertEqual((m.secrets, m.secrets_opted_out), ((), ("ANTHROPIC_API_KEY",)))
        self.assertEqual(m.to_json()["secrets"], {"ANTHROPIC_API_KEY": None})
        self.assertNotIn("secrets", parse().to_json())

    def test_bad_names(self) -> None:
        self.assert_error({"1X": env_secret()}, "secrets.'1X'", "not a valid variable name")
        self.assert_error({"HTTPS_PROXY": env_secret()}, "secrets.HTTPS_PROXY", "set by claude-bottle")
        self.assert_error({"HOME": env_secret()}, "secrets.HOME", "set by claude-bottle")
        self.assert_error({"TOKEN": env_secret()}, "secrets.TOKEN", "also set in agent.env",
                          agent={"env": {"TOKEN": "x"}})
        self.assert_error([], "secrets", "must be an object")

    def test_bad_sources(self) -> None:
        inject = {"hosts": ["api.example.com"], "header": "x-key"}
        self.assert_error({"T": {"inject": inject}}, "secrets.T", "exactly one of from_env")
        self.assert_error({"T": {"from_env": "A", "from_file": "b", "inject": inject}}, "secrets.T", "exactly one")
        self.assert_error({"T": {"from_env": "A-B", "inject": inject}}, "secrets.T.from_env", "not a valid variable")
        self.assert_error({"T": {"from_env": "", "inject": inject}}, "secrets.T.from_env", "must not be empty")
        self.assert_error({"T": {"from_env": "A"}}, "secrets.T.inject", "is required")
        self.assert_error({"T": {"from_env": "A", "inject": inject, "format": "Bearer {}"}}, "secrets.T.format",
                          "unknown key")

    def test_bad_inject(self) -> None:
        self.assert_error({"T": env_secret(hosts=["*.example.org"])}, "secrets.T.inject.hosts[0]", "wildcard")
        self.assert_error({"T": env_secret(hosts=["other.example.com"])}, "secrets.T.inject.hosts[0]",
                          "not reachable: add it to egress.allow")
        self.assert_error({"T": env_secret(hosts=["localhost"])}, "secrets.T.inject.hosts[0]", "never reach")
        self.assert_error({"T": {"from_env": "A", "inject": {"hosts": [], "header": "x"}}}, "secrets.T.inject.hosts",
                          "non-empty list")
        self.assert_error({"T": {"from_env": "A", "inject": {"hosts": ["api.example.com"]}}},
                          "secrets.T.inject.header", "is required")
        self.assert_error({"T": env_secret(header="x key")}, "secrets.T.inject.header", "not an HTTP header name")
        for header in ("Host", "content-length", "Proxy-Authorization", "transfer-encoding"):
            self.assert_error({"T": env_secret(header=header)}, "secrets.T.inject.header", "HTTP framing or the proxy")

    def test_wildcard_rule_covers_a_bound_host_and_its_apex(self) -> None:
        self.assertEqual(parse({"T": env_secret(hosts=["example.org", "a.b.example.org"])}).secrets[0].hosts,
                         ("a.b.example.org", "example.org"))


class ImplicitClaudeKeyTest(unittest.TestCase):
    def planned(self, m: manifest.Manifest, environ: dict[str, str]) -> dict[str, secrets.Planned]:
        return {p.secret.name: p for p in plan.plan_secrets(m, SESSION, environ)}

    def test_added_when_the_host_has_the_key_and_the_api_is_allowed(self) -> None:
        got = self.planned(parse(), {"ANTHROPIC_API_KEY": REAL})
        s = got["ANTHROPIC_API_KEY"].secret
        self.assertEqual((s.source, s.ref, s.hosts, s.header, s.implicit),
                         ("env", "ANTHROPIC_API_KEY", ("api.anthropic.com",), "x-api-key", True))

    def test_not_added_otherwise(self) -> None:
        cases = {
            "no key on the host": (parse(), {}),
            "empty key": (parse(), {"ANTHROPIC_API_KEY": ""}),
            "opted out": (parse({"ANTHROPIC_API_KEY": None}), {"ANTHROPIC_API_KEY": REAL}),
            "api not allowed": (parse(egress={"allow": ["api.example.com"]}), {"ANTHROPIC_API_KEY": REAL}),
            "agent.env sets it": (parse(agent={"env": {"ANTHROPIC_API_KEY": "x"}}), {"ANTHROPIC_API_KEY": REAL}),
        }
        for label, (m, environ) in cases.items():
            with self.subTest(label):
                self.assertEqual(self.planned(m, environ), {})

    def test_the_manifest_can_redefine_it(self) -> None:
        m = parse({"ANTHROPIC_API_KEY": {"from_file": "/keys/anthropic", "inject": {
            "hosts": ["api.anthropic.com"], "header": "x-api-key"}}})
        got = self.planned(m, {"ANTHROPIC_API_KEY": REAL})["ANTHROPIC_API_KEY"].secret
        self.assertEqual((got.source, got.implicit), ("file", False))


class PlanTest(unittest.TestCase):
    def build(self, **kw: Any) -> plan.Plan:
        m = parse({"TOKEN": env_secret()})
        return plan.build(m, SESSION, environ={"ANTHROPIC_API_KEY": REAL, "HOST_TOKEN": REAL}, **kw)

    def test_the_agent_gets_placeholders_and_the_plan_no_values(self) -> None:
        p = self.build()
        env = dict(p.agent_env)
        for name in ("ANTHROPIC_API_KEY", "TOKEN"):
            m = PLACEHOLDER_RE.match(env[name])
            self.assertIsNotNone(m, env[name])
            self.assertEqual(m.group(1), name)  # type: ignore[union-attr]
        text = json.dumps(p.to_json())
        self.assertNotIn(REAL, text)
        self.assertNotIn(REAL, repr(p))
        listed = {s["name"]: s for s in p.to_json()["secrets"]}
        self.assertEqual(listed["TOKEN"]["placeholder"], env["TOKEN"])
        self.assertEqual(listed["TOKEN"]["from_env"], "HOST_TOKEN")
        self.assertTrue(listed["ANTHROPIC_API_KEY"]["implicit"])

    def test_placeholders_are_per_session_and_per_name(self) -> None:
        a, b = secrets.placeholder("s1", "TOKEN"), secrets.placeholder("s2", "TOKEN")
        self.assertNotEqual(a, b)
        self.assertNotEqual(a, secrets.placeholder("s1", "OTHER"))
        self.assertEqual(a, secrets.placeholder("s1", "TOKEN"))  # the plan is a pure function of its inputs

    def test_the_bundle_policy_loads_in_the_addon_and_carries_no_value(self) -> None:
        p = self.build()
        self.assertNotIn(REAL, p.bundle_policy)
        loaded = bundle_policy.load_policy(json.loads(p.bundle_policy))
        by_name = {s.name: s for s in loaded.secrets}
        self.assertEqual(by_name["TOKEN"].header, "authorization")
        self.assertEqual(by_name["TOKEN"].hosts, frozenset({"api.example.com"}))
        self.assertEqual(by_name["TOKEN"].placeholder, dict(p.agent_env)["TOKEN"])
        written = secrets.values_file({"TOKEN": REAL, "ANTHROPIC_API_KEY": REAL})
        values = bundle_policy.load_secret_values(json.loads(written), loaded)
        self.assertEqual(values["TOKEN"], REAL)
        self.assertEqual(loaded.dlp.mode("api.anthropic.com"), "warn")
        self.assertEqual(loaded.dlp.mode("api.example.com"), "scan")

    def test_smolmachines_env_carries_placeholders(self) -> None:
        m = parse({"TOKEN": env_secret()}, runtime="smolmachines")
        p = plan.build(m, SESSION, environ={"HOST_TOKEN": REAL}, state_dir="/state")
        self.assertIn(f"TOKEN={dict(p.agent_env)['TOKEN']}", p.smolfile or "")
        self.assertNotIn(REAL, p.smolfile or "")


class ResolveTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-secrets-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def planned(self, section: dict[str, Any]) -> tuple[secrets.Planned, ...]:
        m = manifest.parse({"name": "demo", "egress": {"allow": ALLOW}, "secrets": section},
                           os.path.join(self.dir, "bottle.json"))
        return plan.plan_secrets(m, SESSION, {})

    def write(self, name: str, data: bytes, mode: int = 0o600) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, mode)
        return path

    def resolve_error(self, section: dict[str, Any], environ: dict[str, str] | None = None) -> ManifestError:
        with mock.patch.dict(os.environ, environ or {}), self.assertRaises(ManifestError) as cm:
            secrets.resolve(self.planned(section), "/m.json")
        self.assertEqual(cm.exception.exit_code, EXIT_USAGE)
        self.assertNotIn(REAL, str(cm.exception))
        return cm.exception

    def test_env_and_file(self) -> None:
        self.write("tok", (REAL + "\n").encode())
        section = {"A": env_secret("CB_TEST_A"), "B": {"from_file": "tok", "inject": {"hosts": ["api.example.com"],
                                                                                     "header": "x-key"}}}
        with mock.patch.dict(os.environ, {"CB_TEST_A": REAL}):
            self.assertEqual(secrets.resolve(self.planned(section), "/m.json"), {"A": REAL, "B": REAL})

    def test_missing_variable_names_the_field(self) -> None:
        os.environ.pop("CB_TEST_MISSING", None)
        err = self.resolve_error({"A": env_secret("CB_TEST_MISSING")})
        self.assertEqual(err.field, "secrets.A.from_env")
        self.assertIn("CB_TEST_MISSING is not set", err.message)
        self.assertEqual(self.resolve_error({"A": env_secret("CB_TEST_EMPTY")}, {"CB_TEST_EMPTY": ""}).field,
                         "secrets.A.from_env")

    def test_bad_files(self) -> None:
        inject = {"hosts": ["api.example.com"], "header": "x-key"}
        self.assertIn("cannot read", self.resolve_error({"B": {"from_file": "nope", "inject": inject}}).message)
        self.write("empty", b"\n")
        self.assertIn("is empty", self.resolve_error({"B": {"from_file": "empty", "inject": inject}}).message)
        self.write("big", b"x" * (secrets.MAX_FILE_BYTES + 1))
        self.assertIn("larger than", self.resolve_error({"B": {"from_file": "big", "inject": inject}}).message)
        self.write("bin", b"\xff\xfe")
        self.assertIn("not UTF-8", self.resolve_error({"B": {"from_file": "bin", "inject": inject}}).message)
        self.write("two", (REAL + "\nsecond line\n").encode())
        err = self.resolve_error({"B": {"from_file": "two", "inject": inject}})
        self.assertEqual(err.field, "secrets.B.from_file")
        self.assertIn("line break", err.message)

    def test_control_characters_in_an_env_value(self) -> None:
        self.assertIn("control character", self.resolve_error({"A": env_secret("CB_TEST_A")},
                                                              {"CB_TEST_A": REAL + "\x1b"}).message)


def recorder() -> FakeRunner:
    """Docker answers enough for the bundle to come up, and its log shows one injection."""
    line = '{"source":"addon","event":"injected","host":"api.example.com","secret":"TOKEN","reason":"x"}\n'
    return FakeRunner(lambda argv: (0, line, "") if argv[:2] == ["docker", "logs"] else None)


class ExecutorTest(unittest.TestCase):
    def setUp(self) -> None:
        self.state = tempfile.mkdtemp(prefix="cb-state-")
        self.addCleanup(shutil.rmtree, self.state, True)
        patcher = mock.patch.dict(os.environ, {"XDG_STATE_HOME": self.state, "HOST_TOKEN": REAL})
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop("ANTHROPIC_API_KEY", None)

    def test_values_reach_the_bundle_only_through_the_copy_on_stdin(self) -> None:
        runner = recorder()
        with contextlib.redirect_stderr(io.StringIO()) as err:
            code = launch.run(parse({"TOKEN": env_secret()}), ("true",), runner)
        self.assertEqual(code, 0)
        for argv, _ in runner.inputs:
            self.assertNotIn(REAL, " ".join(argv))
        copies = [(argv, data) for argv, data in runner.inputs if argv[:3] == ["docker", "cp", "-"] and data]
        carrying = [(argv, data) for argv, data in copies if REAL.encode() in data]
        self.assertEqual(len(carrying), 1)
        argv, data = carrying[0]
        self.assertTrue(argv[-1].endswith("-bundle:/etc/claude-bottle"), argv)
        with tarfile.open(fileobj=io.BytesIO(data or b"")) as tar:
            member = tar.getmember("secrets.json")
            self.assertEqual((member.mode, member.uid, member.gid), (0o400, docker_argv.BUNDLE_UID,
                                                                     docker_argv.BUNDLE_UID))
            self.assertEqual(json.load(tar.extractfile(member))["values"], {"TOKEN": REAL})  # type: ignore[arg-type]
            for other in tar.getmembers():
                if other.name != "secrets.json":
                    self.assertNotIn(REAL.encode(), tar.extractfile(other).read())  # type: ignore[union-attr]
        self.assertIn("1 secret injection", err.getvalue())
        self.assertNotIn(REAL, err.getvalue())
        saved = os.listdir(os.path.join(self.state, "claude-bottle", "sessions"))
        self.assertEqual(len(saved), 1)

    def test_a_missing_variable_stops_before_anything_is_created(self) -> None:
        runner = recorder()
        with mock.patch.dict(os.environ, {"HOST_TOKEN": ""}), self.assertRaises(ManifestError) as cm:
            launch.run(parse({"TOKEN": env_secret()}), ("true",), runner)
        self.assertEqual(cm.exception.field, "secrets.TOKEN.from_env")
        self.assertFalse([a for a in runner.calls if a[:3] in (["docker", "network", "create"], ["docker", "create"])
                          or a[:2] == ["docker", "build"]])

    def test_no_secrets_no_secrets_file(self) -> None:
        p = plan.build(parse(), SESSION)
        with tarfile.open(fileobj=io.BytesIO(docker_argv.bundle_files(p))) as tar:
            self.assertEqual(sorted(tar.getnames()), ["pipelock.yaml", "policy.json"])


class DryRunTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-dry-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "m.json")
        with open(self.path, "w") as handle:
            json.dump({"name": "demo", "egress": {"allow": ALLOW}, "secrets": {"TOKEN": env_secret("CB_DRY_TOKEN")}},
                      handle)

    def run_cli(self, environ: dict[str, str], *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.dict(os.environ, {"XDG_STATE_HOME": self.dir, **environ}), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_json_shows_placeholders_and_never_values(self) -> None:
        code, out, _ = self.run_cli({"CB_DRY_TOKEN": REAL, "ANTHROPIC_API_KEY": REAL}, "start", "--dry-run",
                                    "--format=json", self.path)
        self.assertEqual(code, 0)
        self.assertNotIn(REAL, out)
        doc = json.loads(out)
        names = {s["name"]: s for s in doc["secrets"]}
        self.assertEqual(set(names), {"TOKEN", "ANTHROPIC_API_KEY"})
        self.assertEqual(doc["agent"]["env"]["TOKEN"], names["TOKEN"]["placeholder"])
        self.assertEqual(doc["bundle_policy"]["dlp"]["default"], "scan")

    def test_text_lists_secrets_without_values(self) -> None:
        code, out, _ = self.run_cli({"CB_DRY_TOKEN": REAL}, "start", "--dry-run", self.path)
        self.assertEqual(code, 0)
        self.assertIn("TOKEN", out)
        self.assertIn("$CB_DRY_TOKEN -> header authorization to api.example.com", out)
        self.assertNotIn(REAL, out)

    def test_an_unresolvable_secret_fails_the_dry_run(self) -> None:
        os.environ.pop("CB_DRY_TOKEN", None)
        code, out, err = self.run_cli({}, "start", "--dry-run", self.path)
        self.assertEqual((code, out), (EXIT_USAGE, ""))
        self.assertEqual(err, f"claude-bottle: error: {self.path}: secrets.TOKEN.from_env: the host variable "
                              "CB_DRY_TOKEN is not set (or is empty)\n")


class DlpManifestTest(unittest.TestCase):
    def effective(self, section: Any = None, allow: list[str] | None = None) -> dict[str, Any]:
        egress: dict[str, Any] = {"allow": allow or ALLOW}
        if section is not None:
            egress["dlp"] = section
        m = manifest.parse({"name": "demo", "egress": egress}, "/nowhere/m.json")
        return dlp.effective(m.dlp, m.egress)

    def modes(self, section: Any = None, allow: list[str] | None = None) -> bundle_policy.Dlp:
        return bundle_policy.load_policy({"version": 1, "rules": [], "dlp": self.effective(section, allow)}).dlp

    def test_default_scans_and_the_model_api_warns(self) -> None:
        d = self.modes()
        self.assertEqual(d.default, "scan")
        self.assertEqual([d.mode(h) for h in ("api.anthropic.com", "claude.ai", "statsig.com", "api.example.com")],
                         ["warn", "warn", "scan", "scan"])
        self.assertEqual(self.effective(allow=["api.example.com"])["hosts"], [])  # nothing for hosts not allowed

    def test_manifest_entries_win(self) -> None:
        d = self.modes({"hosts": {"api.anthropic.com": "scan", "*.example.org": "skip", "www.example.org": "warn"}})
        hosts = ("api.anthropic.com", "claude.ai", "a.example.org", "example.org", "www.example.org")
        self.assertEqual([d.mode(h) for h in hosts], ["scan", "warn", "skip", "skip", "warn"])
        d = self.modes({"hosts": {"*.anthropic.com": "scan"}}, allow=["*.anthropic.com"])
        self.assertEqual(d.mode("api.anthropic.com"), "scan")

    def test_another_default_is_used_everywhere(self) -> None:
        for default in ("warn", "skip"):
            d = self.modes({"default": default})
            self.assertEqual({d.mode(h) for h in ("api.anthropic.com", "api.example.com")}, {default})

    def test_errors(self) -> None:
        cases = [
            ({"default": "block"}, "egress.dlp.default", "must be one of scan, warn, skip"),
            ({"hosts": {"api.example.com": "off"}}, "egress.dlp.hosts.'api.example.com'", "must be one of"),
            ({"hosts": {"nothere.example.com": "skip"}}, "egress.dlp.hosts.'nothere.example.com'", "matches no host"),
            ({"hosts": {"api.example.com:8443": "skip"}}, "egress.dlp.hosts.'api.example.com:8443'", "without a port"),
            ({"hosts": ["api.example.com"]}, "egress.dlp.hosts", "must be an object"),
            ({"mode": "scan"}, "egress.dlp.mode", "unknown key"),
        ]
        for section, field, fragment in cases:
            with self.subTest(section=section), self.assertRaises(ManifestError) as cm:
                self.effective(section)
            self.assertEqual(cm.exception.field, field)
            self.assertIn(fragment, cm.exception.message)

    def test_to_json(self) -> None:
        m = manifest.parse({"name": "d", "egress": {"allow": ALLOW, "dlp": {"hosts": {"*.example.org": "skip"}}}},
                           "/n/m.json")
        self.assertEqual(m.to_json()["egress"]["dlp"], {"default": "scan", "hosts": {"*.example.org": "skip"}})


if __name__ == "__main__":
    unittest.main()


class PlaceholderSeedTest(unittest.TestCase):
    def test_the_session_id_alone_does_not_give_the_placeholder(self) -> None:
        # The session id is in every container name; the placeholder must need the random seed too.
        a = secrets.placeholder("seed-one", "TOKEN")
        b = secrets.placeholder("seed-two", "TOKEN")
        self.assertNotEqual(a, b)
        self.assertTrue(a.startswith("claude-bottle-placeholder-"))
