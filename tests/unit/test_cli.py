"""Unit tests for claude_bottle.cli: flags, dry runs, and one-line errors with exit 2 (no Docker)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Any
from unittest import mock

from claude_bottle import __version__, cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINIMAL = os.path.join(REPO, "examples", "minimal.json")
SUBCOMMANDS = ("start", "validate", "ps", "cleanup", "logs", "build")


def _run(argv: list[str]) -> tuple[int, str, str]:
    """Run cli.main in process; (exit status, stdout, stderr). argparse exits become statuses."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _tree(root: str) -> list[str]:
    found = []
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(base, name), root))
    return sorted(found)


class CliCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        # Keep any state path the code computes inside our temporary directory.
        env = mock.patch.dict(os.environ, {"HOME": os.path.join(self.dir, "home"),
                                           "XDG_STATE_HOME": os.path.join(self.dir, "state")})
        env.start()
        self.addCleanup(env.stop)

    def write(self, doc: Any = None, *, raw: str | None = None, name: str = "m.json") -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as handle:
            handle.write(raw if raw is not None else json.dumps(doc))
        return path

    def assertOneLineError(self, err: str, prefix: str = "claude-bottle: error: ") -> str:
        self.assertTrue(err.endswith("\n"), repr(err))
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, repr(err))
        self.assertTrue(lines[0].startswith(prefix), repr(err))
        self.assertNotIn("Traceback", err)
        return lines[0]


class VersionHelpTest(CliCase):
    def test_version(self) -> None:
        code, out, err = _run(["--version"])
        self.assertEqual(code, 0)
        self.assertEqual(out.strip(), f"claude-bottle {__version__}")
        self.assertEqual(err, "")

    def test_top_help(self) -> None:
        code, out, _ = _run(["--help"])
        self.assertEqual(code, 0)
        self.assertIn("usage: claude-bottle", out)
        for name in SUBCOMMANDS:
            self.assertIn(name, out)
        self.assertIn("exit status", out)

    def test_help_on_every_subcommand(self) -> None:
        for name in SUBCOMMANDS:
            with self.subTest(command=name):
                code, out, err = _run([name, "--help"])
                self.assertEqual(code, 0)
                self.assertIn(f"usage: claude-bottle {name}", out)
                self.assertEqual(err, "")
        _, out, _ = _run(["start", "--help"])
        for flag in ("--dry-run", "--format", "MANIFEST", "CMD"):
            self.assertIn(flag, out)

    def test_no_command_prints_help_and_exits_2(self) -> None:
        code, out, err = _run([])
        self.assertEqual(code, 2)
        self.assertEqual(out, "")
        self.assertIn("usage: claude-bottle", err)


class DryRunImportsTest(unittest.TestCase):
    def test_a_docker_dry_run_loads_neither_openssl_nor_what_its_manifest_does_not_use(self) -> None:
        # Why the module exists: a Docker dry run should not pay for libcrypto. Nor, for a manifest
        # without SSH or a cluster section (most), for the modules those need.
        unused = ("hashlib", "_hashlib", "claude_bottle.ssh", "claude_bottle.kubernetes_settings")
        code = ("import contextlib, io, sys\n"
                "from claude_bottle import cli\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n"
                "    cli.main(['start', '--dry-run', '--format=json', 'examples/minimal.json'])\n"
                f"print([m for m in {unused!r} if m in sys.modules])")
        out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                             cwd=REPO)
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)


class DryRunTest(CliCase):
    def test_json(self) -> None:
        code, out, err = _run(["start", "--dry-run", "--format=json", MINIMAL])
        self.assertEqual((code, err), (0, ""))
        doc = json.loads(out)  # exactly one JSON document: trailing text would fail here
        self.assertIsInstance(doc, dict)
        self.assertEqual(doc["name"], "minimal")
        self.assertEqual(doc["runtime"], "docker")
        self.assertEqual(doc["manifest"], MINIMAL)
        self.assertIn("api.anthropic.com", doc["egress"]["allowlist"])
        self.assertRegex(doc["session"], r"^[0-9a-f]{8}$")
        self.assertEqual(doc["pipelock"]["config"]["mode"], "strict")
        user = doc["agent"]["user"]
        self.assertFalse(user.startswith("0:"), user)

    def test_json_format_separate_argument(self) -> None:
        code, out, _ = _run(["start", "--dry-run", "--format", "json", MINIMAL])
        self.assertEqual(code, 0)
        json.loads(out)

    def test_sessions_differ(self) -> None:
        a = json.loads(_run(["start", "--dry-run", "--format=json", MINIMAL])[1])["session"]
        b = json.loads(_run(["start", "--dry-run", "--format=json", MINIMAL])[1])["session"]
        self.assertNotEqual(a, b)

    def test_text(self) -> None:
        code, out, err = _run(["start", "--dry-run", MINIMAL])
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("bottle minimal  (runtime docker, session "), out)
        for fragment in ("manifest", MINIMAL, "proxy", "http://127.0.0.1:3128  (relayed to the bundle's "
                         "/run/claude-bottle/bundle/proxy.sock)", "egress (host: ports)", "api.anthropic.com",
                         "80, 443", "would create", "(bundle, joins bridge)", "(agent, no network)"):
            self.assertIn(fragment, out)
        self.assertTrue(out.endswith("\n"))
        code2, out2, _ = _run(["start", "--dry-run", "--format=text", MINIMAL])
        self.assertEqual(code2, 0)
        self.assertEqual(out2.splitlines()[1:4], out.splitlines()[1:4])

    def test_text_empty_egress_and_private_ip(self) -> None:
        _, out, _ = _run(["start", "--dry-run", self.write({"name": "empty"})])
        self.assertIn("every outbound connection is refused", out)
        _, out, _ = _run(["start", "--dry-run", self.write({"name": "lan", "egress": {"allow": ["ssh://10.0.0.4"]}})])
        self.assertIn("private addresses opened", out)
        self.assertIn("10.0.0.4/32", out)

    def test_smolmachines(self) -> None:
        path = self.write({"name": "smol", "runtime": "smolmachines", "egress": {"allow": ["@npm"]}})
        code, out, err = _run(["start", "--dry-run", "--format=json", path])
        self.assertEqual((code, err), (0, ""))
        doc = json.loads(out)
        ip = doc["bundle"]["ip"]
        self.assertEqual(doc["agent"]["proxy"], f"http://{ip}:8080")
        self.assertIn(f"{ip}/32", doc["smolfile"])
        self.assertTrue(doc["smolfile_path"].startswith(os.path.join(self.dir, "state")))
        code, out, _ = _run(["start", "--dry-run", path])
        self.assertEqual(code, 0)
        self.assertIn("microvm", out)
        self.assertIn(ip, out)

    def test_command_override(self) -> None:
        code, out, _ = _run(["start", "--dry-run", "--format=json", MINIMAL, "--", "claude", "--resume"])
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["agent"]["command"], ["claude", "--resume"])
        code, out, _ = _run(["start", "--dry-run", "--format=json", MINIMAL, "--", "bash", "-lc", "echo hi"])
        self.assertEqual(json.loads(out)["agent"]["command"], ["bash", "-lc", "echo hi"])
    def test_command_override_after_trailing_flags(self) -> None:
        # Was a bug: argparse binds the empty `agent_command` (nargs="*") together with MANIFEST, so any flag
        # after the manifest makes the `-- CMD` that follows "unrecognized arguments" (exit 2):
        #   claude-bottle start m.json --dry-run -- echo hi
        code, out, err = _run(["start", MINIMAL, "--dry-run", "--format=json", "--", "echo", "hi"])
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out)["agent"]["command"], ["echo", "hi"])
    def test_command_override_keeps_inner_double_dash(self) -> None:
        # Was a bug: argparse (3.11) strips every "--" from the positional list, so `-- git log -- README`
        # runs `git log README` in the agent. Only the first "--" should be the separator.
        code, out, _ = _run(["start", "--dry-run", "--format=json", MINIMAL, "--", "git", "log", "--", "README"])
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["agent"]["command"], ["git", "log", "--", "README"])

    def test_dry_run_creates_no_files_in_process(self) -> None:
        path = self.write({"name": "smol", "runtime": "smolmachines"})
        before = _tree(self.dir)
        for fmt in ("json", "text"):
            self.assertEqual(_run(["start", "--dry-run", f"--format={fmt}", path])[0], 0)
            self.assertEqual(_run(["start", "--dry-run", f"--format={fmt}", MINIMAL])[0], 0)
        self.assertEqual(_tree(self.dir), before)


class ValidateTest(CliCase):
    def test_json(self) -> None:
        code, out, err = _run(["validate", MINIMAL])
        self.assertEqual((code, err), (0, ""))
        doc = json.loads(out)
        self.assertEqual(doc["name"], "minimal")
        self.assertEqual(doc["egress"]["allow"], ["@anthropic"])
        self.assertIn("classified", doc)

    def test_text(self) -> None:
        code, out, _ = _run(["validate", "--format=text", MINIMAL])
        self.assertEqual(code, 0)
        self.assertEqual(out, f"{MINIMAL}: ok (minimal, runtime docker, 6 egress hosts)\n")

    def test_bad(self) -> None:
        path = self.write({"name": "x", "egress": {"allow": ["ok.com", "*"]}})
        code, out, err = _run(["validate", path])
        self.assertEqual((code, out), (2, ""))
        line = self.assertOneLineError(err)
        self.assertEqual(line, f"claude-bottle: error: {path}: egress.allow[1]: '*' would allow every host; "
                               "name the hosts instead")


class BadInputTest(CliCase):
    BAD: dict[str, str] = {
        "invalid-json": '{"name": "x",\n "egress": }',
        "wrong-type": '{"name": 5}',
        "unknown-key": '{"name": "x", "egres": {}}',
        "nested-unknown": '{"name": "x", "agent": {"imgae": "i"}}',
        "bad-rule": '{"name": "x", "egress": {"allow": ["a.com", "b.com", "https://c.com/x"]}}',
        "metadata": '{"name": "x", "egress": {"allow": ["169.254.169.254"]}}',
        "deep": "[" * 100000,
        "deep-valid": "[" * 20 + "]" * 20,
        "nan": '{"name": "x", "resources": {"cpus": NaN}}',
        "dupe": '{"name": "x", "name": "y"}',
        "missing-name": "{}",
        "top-list": "[]",
        "reserved-env": '{"name": "x", "agent": {"env": {"HTTPS_PROXY": "http://evil"}}}',
        "bad-preset": '{"name": "x", "egress": {"allow": ["@githb"]}}',
    }

    def test_bad_manifests(self) -> None:
        for label, raw in self.BAD.items():
            path = self.write(raw=raw, name=f"{label}.json")
            for argv in (["start", "--dry-run", path], ["start", "--dry-run", "--format=json", path],
                         ["validate", path]):
                with self.subTest(label=label, argv=argv[:-1]):
                    code, out, err = _run(argv)
                    self.assertEqual(code, 2)
                    self.assertEqual(out, "")
                    self.assertOneLineError(err, f"claude-bottle: error: {path}: ")

    def test_fields_named(self) -> None:
        cases = {
            '{"name": "x", "egress": {"allow": ["a.com", "b.com", "https://c.com"]}}': "egress.allow[2]: ",
            '{"name": "x", "egres": {}}': "egres: unknown key (did you mean 'egress'?)",
            '{"name": "x", "agent": {"imgae": "i"}}': "agent.imgae: unknown key (did you mean 'image'?)",
            '{"name": "Bad Name"}': ": name: ",
            '{"name": "x",\n "egress": }': "invalid JSON at line 2 column 12",
        }
        for raw, fragment in cases.items():
            with self.subTest(raw=raw):
                _, _, err = _run(["start", "--dry-run", self.write(raw=raw)])
                self.assertIn(fragment, self.assertOneLineError(err))

    def test_missing_file(self) -> None:
        path = os.path.join(self.dir, "absent.json")
        code, out, err = _run(["start", "--dry-run", path])
        self.assertEqual((code, out), (2, ""))
        self.assertIn("cannot read", self.assertOneLineError(err, f"claude-bottle: error: {path}: "))

    def test_directory(self) -> None:
        code, _, err = _run(["start", "--dry-run", self.dir])
        self.assertEqual(code, 2)
        self.assertOneLineError(err, f"claude-bottle: error: {self.dir}: ")

    def test_relative_path_reported_absolute(self) -> None:
        self.write({"name": 1}, name="rel.json")
        cwd = os.getcwd()
        self.addCleanup(os.chdir, cwd)
        os.chdir(self.dir)
        code, _, err = _run(["start", "--dry-run", "rel.json"])
        self.assertEqual(code, 2)
        self.assertOneLineError(err, f"claude-bottle: error: {os.path.join(os.getcwd(), 'rel.json')}: name: ")

    def test_huge_and_non_utf8(self) -> None:
        big = os.path.join(self.dir, "big.json")
        with open(big, "w") as handle:
            handle.write('{"name": "x"}' + " " * (1 << 20))
        latin = os.path.join(self.dir, "latin.json")
        with open(latin, "wb") as handle:
            handle.write(b'{"name": "caf\xe9"}')
        for path in (big, latin):
            with self.subTest(path=path):
                code, _, err = _run(["start", "--dry-run", path])
                self.assertEqual(code, 2)
                self.assertOneLineError(err, f"claude-bottle: error: {path}: ")
    def test_newline_in_rule_is_one_line(self) -> None:
        # Was a bug: egress's "must be bracketed" message embeds the rule raw, so ["a\nb:c:d"] prints two lines.
        path = self.write({"name": "x", "egress": {"allow": ["a\nb:c:d"]}})
        code, _, err = _run(["start", "--dry-run", path])
        self.assertEqual(code, 2)
        self.assertOneLineError(err)


class UsageErrorTest(CliCase):
    def test_unknown_flags(self) -> None:
        for argv in (["--bogus"], ["start", "--bogus", MINIMAL], ["start", "--dry-run", MINIMAL, "--bogus"],
                     ["validate", MINIMAL, "--bogus"], ["bogus"], ["start", "--format=yaml", MINIMAL],
                     ["start"], ["validate"], ["cleanup"], ["cleanup", "x", "--all"]):
            with self.subTest(argv=argv):
                code, out, err = _run(argv)
                self.assertEqual(code, 2)
                self.assertEqual(out, "")
                self.assertOneLineError(err)

    def test_unknown_flag_message(self) -> None:
        _, _, err = _run(["start", "--bogus", MINIMAL])
        self.assertEqual(err, "claude-bottle: error: unrecognized arguments: --bogus\n")
    def test_missing_manifest_message(self) -> None:
        # Was a cosmetic bug: `claude-bottle start` says "the following arguments are required: MANIFEST, -- CMD";
        # the agent command is optional.
        _, _, err = _run(["start"])
        self.assertNotIn("CMD", err)


class SubprocessTest(unittest.TestCase):
    """`python3 -m claude_bottle` from the checkout, in a throwaway HOME and XDG_STATE_HOME."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-cli-sub-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.home = os.path.join(self.dir, "home")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.home)
        os.mkdir(self.state)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CLAUDE_BOTTLE"))}
        self.env.update(HOME=self.home, XDG_STATE_HOME=self.state, PYTHONDONTWRITEBYTECODE="1", LC_ALL="C.UTF-8")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "claude_bottle", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=30)

    def test_dry_run_json(self) -> None:
        before = _tree(self.dir)
        proc = self._run("start", "--dry-run", "--format=json", "examples/minimal.json")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stderr, "")
        doc = json.loads(proc.stdout)
        self.assertEqual(doc["name"], "minimal")
        self.assertEqual(doc["manifest"], MINIMAL)
        self.assertEqual(_tree(self.dir), before)

    def test_dry_run_smolmachines_creates_nothing(self) -> None:
        manifest_path = os.path.join(self.dir, "smol.json")
        with open(manifest_path, "w") as handle:
            json.dump({"name": "smol", "runtime": "smolmachines"}, handle)
        before = _tree(self.dir)
        for fmt in ("json", "text"):
            proc = self._run("start", "--dry-run", f"--format={fmt}", manifest_path)
            self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(_tree(self.dir), before)
        self.assertTrue(json.loads(self._run("start", "--dry-run", "--format=json", manifest_path).stdout)
                        ["smolfile_path"].startswith(self.state))

    def test_bad_manifest_exit_2_one_line(self) -> None:
        path = os.path.join(self.dir, "bad.json")
        with open(path, "w") as handle:
            handle.write("[" * 100000)
        proc = self._run("start", "--dry-run", path)
        self.assertEqual(proc.returncode, 2)
        self.assertEqual(proc.stdout, "")
        lines = proc.stderr.splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertTrue(lines[0].startswith(f"claude-bottle: error: {path}: "), proc.stderr)

    def test_version(self) -> None:
        proc = self._run("--version")
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, f"claude-bottle {__version__}"))
    def test_lone_surrogate_is_a_usage_error(self) -> None:
        # Was a bug: {"agent": {"image": "img\ud800"}} passes validation, then `start --dry-run` (text) dies
        # printing it: UnicodeEncodeError traceback, exit 1, instead of one line and exit 2.
        path = os.path.join(self.dir, "sur.json")
        with open(path, "w") as handle:
            handle.write('{"name": "x", "agent": {"image": "img\\ud800"}}')
        proc = self._run("start", "--dry-run", path)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual(proc.returncode, 2)


if __name__ == "__main__":
    unittest.main()
