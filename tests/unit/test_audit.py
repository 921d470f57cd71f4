"""Unit tests for claude_bottle.audit and `claude-bottle logs`: records, the session file, the summary."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
import unittest
from collections.abc import Sequence
from typing import Any
from unittest import mock

from claude_bottle import audit, cli, manifest, plan
from claude_bottle.bundle import policy
from claude_bottle.commands import logs as logs_cmd
from claude_bottle.runner import Result

SECRET = "sk-real-0123456789abcdef"


def addon(event: str, **fields: Any) -> str:
    return policy.log_line(event, **fields)


PIPELOCK_BLOCK = json.dumps({"level": "warn", "time": "2026-11-27T10:00:00Z", "event": "blocked", "method": "GET",
                             "url": "https://evil.example:8443/path/secret?token=abc", "reason": "domain not allowed",
                             "scanner": "blocklist", "client_ip": "127.0.0.1", "request_id": "r1"})  # fmt: skip
PIPELOCK_TUNNEL = json.dumps({"level": "info", "time": "2026-11-27T10:00:01Z", "event": "tunnel_open",
                              "target": "api.example.com:443", "client_ip": "127.0.0.1"})  # fmt: skip


class RecordTest(unittest.TestCase):
    def test_addon_lines_keep_only_known_fields(self) -> None:
        line = json.loads(addon("blocked", host="a.test", port=443, reason="host not in allowlist"))
        line["headers"] = {"authorization": SECRET}  # a future addon bug must not reach the file
        rec = audit.record(json.dumps(line))
        assert rec is not None
        self.assertEqual((rec["source"], rec["event"], rec["host"], rec["port"]), ("addon", "blocked", "a.test", 443))
        self.assertNotIn("headers", rec)

    def test_pipelock_lines_are_reduced_to_host_and_port(self) -> None:
        rec = audit.record(PIPELOCK_BLOCK)
        self.assertEqual(rec, {"ts": "2026-11-27T10:00:00Z", "source": "pipelock", "event": "blocked",
                               "host": "evil.example", "port": 8443, "reason": "domain not allowed", "method": "GET",
                               "kind": "blocklist"})  # fmt: skip
        rec = audit.record(PIPELOCK_TUNNEL)
        assert rec is not None
        self.assertEqual((rec["host"], rec["port"]), ("api.example.com", 443))
        self.assertNotIn("token", json.dumps(audit.record(PIPELOCK_BLOCK)))

    def test_other_lines_are_ignored(self) -> None:
        for line in ("claude-bottle-supervise: started mitmdump", "", "{not json", "[1, 2]", '{"no": "event"}',
                     '{"event": 5}'):  # fmt: skip
            self.assertIsNone(audit.record(line), line)

    def test_known_values_are_masked(self) -> None:
        recs = audit.records([json.dumps({"source": "addon", "event": "blocked", "reason": f"saw {SECRET}",
                                          "rules": [SECRET]})], {"TOKEN": SECRET})  # fmt: skip
        self.assertEqual(recs[0]["reason"], "saw [TOKEN]")
        self.assertEqual(recs[0]["rules"], ["[TOKEN]"])


class FileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-audit-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_save_is_private_and_loads_back(self) -> None:
        path = audit.session_path(self.dir, "demo", "abcd1234")
        recs = audit.records([addon("allowed", host="a.test", port=443), PIPELOCK_BLOCK])
        audit.save(path, recs)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        self.assertEqual(audit.load(path), recs)
        self.assertTrue(path.endswith("/sessions/demo-abcd1234.jsonl"))

    def test_save_refuses_to_follow_a_symlink(self) -> None:
        path = audit.session_path(self.dir, "demo", "abcd1234")
        os.makedirs(os.path.dirname(path))
        os.symlink(os.path.join(self.dir, "elsewhere"), path)
        with self.assertRaises(OSError):
            audit.save(path, [])
        self.assertFalse(os.path.exists(os.path.join(self.dir, "elsewhere")))


class SummaryTest(unittest.TestCase):
    def test_counts_by_host_reason_and_secret(self) -> None:
        lines = [addon("allowed", host="a.test", port=443)] * 3 + [
            addon("blocked", host="evil.test", port=443, reason="host not in allowlist"),
            addon("blocked", host="evil.test", port=443, reason="host not in allowlist"),
            addon("blocked", host="a.test", port=443, kind="dlp", rules=["aws-access-token"],
                  reason="secret detected by gitleaks: aws-access-token"),
            addon("injected", host="api.example.com", port=443, secret="TOKEN", reason="header authorization"),
            addon("warning", host="api.anthropic.com", port=443, kind="dlp", rules=["github-pat"],
                  reason="secret detected by gitleaks: github-pat (passed: warn mode)"),
            addon("tunnel_open", host="git.test", port=22, kind="tcp", reason="raw tcp passthrough"),
            PIPELOCK_BLOCK,
        ]  # fmt: skip
        out = audit.summary(audit.records(lines))
        self.assertEqual(out[0], "3 requests allowed, 4 blocked, 1 secret injection, 1 raw TCP tunnel, 1 DLP warning")
        text = "\n".join(out)
        self.assertRegex(text, r"blocked +2x  evil.test  host not in allowlist")
        self.assertRegex(text, r"blocked +1x  a.test  secret detected by gitleaks: aws-access-token")
        self.assertRegex(text, r"blocked +1x  evil.example  domain not allowed")
        self.assertRegex(text, r"injected +1x  TOKEN  -> api.example.com")
        self.assertRegex(text, r"warning +1x  api.anthropic.com  secret detected by gitleaks: github-pat")

    def test_long_lists_are_cut(self) -> None:
        lines = [addon("blocked", host=f"h{i}.test", reason="host not in allowlist") for i in range(20)]
        out = audit.summary(audit.records(lines))
        self.assertEqual(len(out), 1 + audit.SUMMARY_ROWS + 1)
        self.assertIn("and 12 more", out[-1])

    def test_text_line(self) -> None:
        rec = audit.record(addon("blocked", host="a.test\x1b[2J", port=443, kind="dlp", rules=["aws-access-token"],
                                 mode="scan", reason="secret detected by gitleaks: aws-access-token"))  # fmt: skip
        assert rec is not None
        line = audit.text_line(rec)
        self.assertNotIn("\x1b", line)
        self.assertRegex(line, r"^\d\d:\d\d:\d\d\.\d{3}  addon    blocked     a.test\?\[2J:443 +secret detected by "
                               r"gitleaks: aws-access-token  \[rules=aws-access-token dlp=scan\]$")  # fmt: skip


class FakeRunner:
    def __init__(self, rc: int, out: str) -> None:
        self.rc, self.out = rc, out
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append(list(argv))
        return Result(tuple(argv), self.rc, self.out, "")

    def attach(self, argv: Sequence[str]) -> int:
        return 0


class FinishTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-audit-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.plan = plan.build(manifest.parse({"name": "demo"}, "/nowhere/m.json"), "abcd1234")

    def finish(self, runner: FakeRunner) -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            audit.finish(runner, self.plan, {"TOKEN": SECRET}, self.dir)  # type: ignore[arg-type]
        return err.getvalue()

    def test_saves_and_summarises(self) -> None:
        logs = "\n".join([addon("allowed", host="a.test", port=443), f'{{"event":"blocked","reason":"{SECRET}"}}',
                          "claude-bottle-supervise: started mitmdump"])  # fmt: skip
        runner = FakeRunner(0, logs)
        err = self.finish(runner)
        self.assertEqual(runner.calls, [["docker", "logs", self.plan.container("bundle").name]])
        self.assertIn("claude-bottle: session abcd1234: 1 request allowed, 1 blocked, 0 secret injections", err)
        path = audit.session_path(self.dir, "demo", "abcd1234")
        self.assertIn(path, err)
        with open(path) as handle:
            saved = handle.read()
        self.assertEqual(len(saved.splitlines()), 2)
        self.assertNotIn(SECRET, saved + err)

    def test_no_bundle_no_file(self) -> None:
        self.assertEqual(self.finish(FakeRunner(1, "")), "")
        self.assertFalse(os.path.exists(os.path.join(self.dir, audit.SESSIONS_DIR)))

    def test_never_raises(self) -> None:
        with mock.patch.object(audit, "save", side_effect=PermissionError("read-only")):
            err = self.finish(FakeRunner(0, addon("allowed", host="a.test")))
        self.assertIn("the audit log was not saved: read-only", err)


class LogsCommandTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-logs-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        patcher = mock.patch.dict(os.environ, {"XDG_STATE_HOME": self.dir})
        patcher.start()
        self.addCleanup(patcher.stop)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["logs", *argv])
        return code, out.getvalue(), err.getvalue()

    def saved(self, name: str, session: str, recs: list[str]) -> str:
        path = audit.session_path(os.path.join(self.dir, "claude-bottle"), name, session)
        audit.save(path, audit.records(recs))
        return path

    def test_nothing_running_nothing_saved(self) -> None:
        with mock.patch.object(logs_cmd, "running_bundles", return_value=[]):
            code, out, err = self.run_cli("ghost")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "claude-bottle: error: no running bottle ghost, and no saved session log for it\n")

    def test_falls_back_to_the_newest_saved_session(self) -> None:
        old = self.saved("demo", "00000001", [addon("allowed", host="old.test")])
        os.utime(old, (1, 1))
        self.saved("demo", "00000002", [addon("allowed", host="new.test")])
        self.saved("demo-other", "00000003", [addon("allowed", host="other.test")])
        with mock.patch.object(logs_cmd, "running_bundles", return_value=[]):
            code, out, err = self.run_cli("demo", "--json")
            self.assertEqual(json.loads(out)["host"], "new.test")
            self.assertIn("demo is not running; showing the log saved in", err)
            code, out, _ = self.run_cli("demo", "--session", "00000001")
        self.assertEqual(code, 0)
        self.assertIn("old.test", out)

    def test_reads_the_newest_running_bundle(self) -> None:
        rows = [("2026-11-27 10:00:00 +0000 UTC", "s1", "id1"), ("2026-11-27 11:00:00 +0000 UTC", "s2", "id2")]
        lines = [addon("injected", host="api.example.com", port=443, secret="TOKEN", reason="header x-api-key"),
                 "claude-bottle-supervise: noise\n"]  # fmt: skip
        popen = mock.MagicMock()
        popen.return_value.stdout = iter(line + "\n" for line in lines)
        popen.return_value.poll.return_value = 0
        with mock.patch.object(logs_cmd, "running_bundles", return_value=rows), \
                mock.patch.object(logs_cmd.subprocess, "Popen", popen):  # fmt: skip
            code, out, err = self.run_cli("demo", "--follow")
        self.assertEqual(code, 0)
        self.assertEqual(popen.call_args[0][0], ["docker", "logs", "--follow", "id2"])
        self.assertIn("showing session s2, the newest (also running: s1", err)
        self.assertRegex(out, r"addon    injected    api.example.com:443 +header x-api-key  \[secret=TOKEN\]\n$")

    def test_running_bundles_parses_docker_ps(self) -> None:
        runner = FakeRunner(0, "2026-11-27 11:00:00 +0000 UTC\ts2\tid2\n2026-11-27 10:00:00 +0000 UTC\ts1\tid1\n")
        rows = logs_cmd.running_bundles(runner, "demo")  # type: ignore[arg-type]
        self.assertEqual([r[1] for r in rows], ["s1", "s2"])
        self.assertIn("label=org.claude-bottle.role=bundle", runner.calls[0])


if __name__ == "__main__":
    unittest.main()
