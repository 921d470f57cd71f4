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

from claude_bottle import audit, cli, manifest, paths, plan
from claude_bottle.bundle import policy
from claude_bottle.commands import logs as logs_cmd
from claude_bottle.runner import Result
from tests.fakes.runner import FakeRunner

SECRET = "sk-real-0123456789abcdef"


def addon(event: str, **fields: Any) -> str:
    return policy.log_line(event, **fields)


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _pipelock_lines() -> list[str]:
    """Real pipelock log lines (see the notes in the file: how they were captured, with which config)."""
    with open(os.path.join(DATA, "pipelock_events.jsonl"), encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.startswith("{")]


PIPELOCK_LINES = _pipelock_lines()


def pipelock(event: str, contains: str = "") -> str:
    """The first real pipelock line of that event kind whose text contains `contains`."""
    for line in PIPELOCK_LINES:
        if json.loads(line)["event"] == event and contains in line:
            return line
    raise AssertionError(f"no {event} line with {contains!r} in the fixture")


PIPELOCK_BLOCK = pipelock("blocked", '"url":"http://evil.test/path?token=abc"')
# What each kind of pipelock line becomes: (event, a text that picks the line) -> host, port, method, kind, reason.
EXPECTED: list[tuple[tuple[str, str], tuple[str | None, int | None, str | None, str | None, str]]] = [
    (("startup", "6f92c273"), (None, None, None, None,
                               "pipelock 0.1.0-dev listening on 127.0.0.1:18888, mode strict, config 6f92c273ed3a")),
    (("blocked", '"target":"evil.test:443"'), ("evil.test", 443, "CONNECT", "allowlist",
                                                 "domain not in allowlist: evil.test")),
    (("blocked", "http://evil.test/path"), ("evil.test", 80, "GET", "allowlist", "domain not in allowlist: evil.test")),
    (("blocked", '"target":"[::1]:18022"'), ("::1", 18022, "CONNECT", "allowlist", "domain not in allowlist: ::1")),
    (("blocked", '"target":"localhost:18443"'), ("localhost", 18443, "CONNECT", "ssrf",
                                                   "SSRF blocked: localhost resolves to internal IP 127.0.0.1")),
    (("blocked", "/p?q=1"), ("localhost", 18080, "GET", "ssrf",
                             "SSRF blocked: localhost resolves to internal IP 127.0.0.1")),
    (("blocked", '"target":"private.test:443"'), ("private.test", 443, "CONNECT", "ssrf",
                                                    "SSRF blocked: private.test resolves to internal IP 10.200.0.7")),
    (("blocked", '"target":"no-such-host.test:443"'), (
        "no-such-host.test", 443, "CONNECT", "ssrf",
        "SSRF check failed: DNS resolution error for no-such-host.test: lookup no-such-host.test on "
        "10.255.255.53:53: dial udp 10.255.255.53:53: connect: network is unreachable")),
    (("blocked", "?k=AKIA"), ("localhost", 18080, "GET", "core_dlp", "core DLP match: AWS Access ID (critical)")),
    (("error", '"method":"CONNECT"'), ("localhost", 18999, "CONNECT", None,
                                       "dial tcp 127.0.0.1:18999: connect: connection refused")),
    (("error", '"method":"GET"'), ("localhost", 18999, "GET", None,  # the URL's path is cut from Go's error text
                                   'Get "http://localhost:18999": dial tcp 127.0.0.1:18999: connect: '
                                   "connection refused")),
    (("sni_mismatch", "other.allowed.test"), ("localhost", None, None, "sni",
                                              "SNI verification failed (mismatch): the ClientHello names "
                                              "other.allowed.test")),
    (("sni_mismatch", '"category":"timeout"'), ("localhost", None, None, "sni", "SNI verification failed (timeout)")),
    (("tunnel_open", "localhost:18022"), ("localhost", 18022, None, None, "tunnel opened")),
    (("tunnel_close", "localhost:18022"), ("localhost", 18022, None, None, "closed after 0.0 s, 42 bytes")),
    (("forward_http", "/path/secret"), ("localhost", 18080, "GET", None, "status 200")),
    (("allowed", "/f?q=1"), ("localhost", 18080, "GET", None, "status 200")),
    (("response_scan", "/inject"), ("localhost", 18080, "GET", None, "warn: Prompt Injection")),
    (("body_dlp", "/up"), ("localhost", 18080, "POST", None, "warn: AWS Access ID, Credential in URL")),
    (("header_dlp", "X-Token"), ("localhost", 18080, "GET", None, "warn: GitHub Token in header X-Token")),
    (("config_reload", "success"), (None, None, None, None, "config reload success: mode=strict, config 5e21c4d3b7c9")),
    (("shutdown", ""), (None, None, None, None, "signal received")),
]


class RecordTest(unittest.TestCase):
    def test_addon_lines_keep_only_known_fields(self) -> None:
        line = json.loads(addon("blocked", host="a.test", port=443, reason="host not in allowlist"))
        line["headers"] = {"authorization": SECRET}  # a future addon bug must not reach the file
        rec = audit.record(json.dumps(line))
        assert rec is not None
        self.assertEqual((rec["source"], rec["event"], rec["host"], rec["port"]), ("addon", "blocked", "a.test", 443))
        self.assertNotIn("headers", rec)

    def test_each_kind_of_pipelock_line(self) -> None:
        for (event, contains), (host, port, method, kind, reason) in EXPECTED:
            with self.subTest(event=event, line=contains):
                rec = audit.record(pipelock(event, contains))
                assert rec is not None
                self.assertEqual((rec["source"], rec["event"]), ("pipelock", event))
                self.assertEqual((rec["host"], rec["port"], rec.get("method"), rec.get("kind"), rec["reason"]),
                                 (host, port, method, kind, reason))
                self.assertEqual(rec["ts"], json.loads(pipelock(event, contains))["time"])

    def test_every_kind_in_the_fixture_is_checked(self) -> None:
        kinds = {json.loads(line)["event"] for line in PIPELOCK_LINES}
        self.assertEqual(kinds, {event for (event, _), _ in EXPECTED})

    def test_pipelock_lines_keep_only_fixed_fields(self) -> None:
        for line in PIPELOCK_LINES:
            rec = audit.record(line)
            assert rec is not None
            self.assertLessEqual(set(rec), set(audit.FIELDS), line)
            text = json.dumps(rec)
            for leak in ("/path/secret", "token=abc", "?q=1", "/p?", "?k=", "/inject", "req-", "anonymous"):
                self.assertNotIn(leak, text, line)

    def test_urls_in_free_text_lose_path_and_query(self) -> None:
        rec = audit.record(addon("failed", host="a.test", port=443, method="GET", kind="upstream",
                                 reason='Get "https://u:pw@a.test:8443/p/x?token=abc": EOF'))
        assert rec is not None
        self.assertEqual(rec["reason"], 'Get "https://a.test:8443": EOF')

    def test_a_pipelock_line_is_never_taken_for_the_addon(self) -> None:
        raw = json.loads(PIPELOCK_BLOCK)
        raw["source"] = "addon"  # pipelock has a `source` field of its own (kill_switch_deny)
        rec = audit.record(json.dumps(raw))
        assert rec is not None
        self.assertEqual((rec["source"], rec["host"], rec["port"]), ("pipelock", "evil.test", 80))

    def test_other_lines_are_ignored(self) -> None:
        for line in ("claude-bottle-supervise: started mitmdump", "", "{not json", "[1, 2]", '{"no": "event"}',
                     '{"event": 5}'):
            self.assertIsNone(audit.record(line), line)

    def test_known_values_are_masked(self) -> None:
        recs = audit.records([json.dumps({"source": "addon", "event": "blocked", "reason": f"saw {SECRET}",
                                          "rules": [SECRET]})], {"TOKEN": SECRET})
        self.assertEqual(recs[0]["reason"], "saw [TOKEN]")
        self.assertEqual(recs[0]["rules"], ["[TOKEN]"])


class FileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cb-audit-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_save_is_private_and_loads_back(self) -> None:
        path = paths.session_log(self.dir, "demo", "abcd1234")
        recs = audit.records([addon("allowed", host="a.test", port=443), *PIPELOCK_LINES])
        audit.save(path, recs)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        self.assertEqual(audit.load(path), recs)
        self.assertTrue(path.endswith("/sessions/demo-abcd1234.jsonl"))

    def test_save_refuses_to_follow_a_symlink(self) -> None:
        path = paths.session_log(self.dir, "demo", "abcd1234")
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
        ]
        out = audit.summary(audit.records(lines))
        self.assertEqual(out[0], "3 requests allowed, 3 blocked, 1 secret injection, 1 raw TCP tunnel, 1 DLP warning")
        text = "\n".join(out)
        self.assertRegex(text, r"blocked +2x  evil.test  host not in allowlist")
        self.assertRegex(text, r"blocked +1x  a.test  secret detected by gitleaks: aws-access-token")
        self.assertRegex(text, r"injected +1x  TOKEN  -> api.example.com")
        self.assertRegex(text, r"warning +1x  api.anthropic.com  secret detected by gitleaks: github-pat")

    def test_a_pipelock_refusal_counts_once(self) -> None:
        # The addon asked pipelock, got its 403 and logged it; pipelock logged the same refusal.
        lines = [addon("blocked", host="evil.test", port=443, method="CONNECT", kind="pipelock",
                       reason="pipelock: domain not in allowlist: evil.test"),
                 pipelock("blocked", '"target":"evil.test:443"')]
        self.assertEqual(audit.summary(audit.records(lines)),
                         ["0 requests allowed, 1 blocked, 0 secret injections",
                          "  blocked     1x  evil.test  pipelock: domain not in allowlist: evil.test"])

    def test_pipelock_lines_alone_count_nothing(self) -> None:
        recs = audit.records(PIPELOCK_LINES)
        self.assertEqual(audit.summary(recs), ["0 requests allowed, 0 blocked, 0 secret injections"])
        self.assertEqual(len(recs), len(PIPELOCK_LINES))  # but every one is kept for the file

    def test_failed_requests(self) -> None:
        refused = "pipelock could not reach localhost:18999: tunnel dial failed"
        lines = [addon("allowed", host="localhost", port=18999),
                 addon("failed", host="localhost", port=18999, method="CONNECT", kind="upstream", reason=refused),
                 addon("failed", host="localhost", port=18999, method="CONNECT", kind="upstream", reason=refused),
                 pipelock("error", '"method":"CONNECT"'),
                 addon("failed", host="gone.test", port=443, method="GET", kind="upstream",
                       reason="DNS resolution failed")]
        out = audit.summary(audit.records(lines))
        self.assertEqual(out[0], "1 request allowed, 0 blocked, 0 secret injections, 3 failed")
        self.assertEqual(out[1:], [f"  failed      2x  localhost  {refused}",
                                   "  failed      1x  gone.test  DNS resolution failed"])

    def test_long_lists_are_cut(self) -> None:
        lines = [addon("blocked", host=f"h{i}.test", reason="host not in allowlist") for i in range(20)]
        out = audit.summary(audit.records(lines))
        self.assertEqual(len(out), 1 + audit.SUMMARY_ROWS + 1)
        self.assertIn("and 12 more", out[-1])

    def test_text_line(self) -> None:
        rec = audit.record(addon("blocked", host="a.test\x1b[2J", port=443, kind="dlp", rules=["aws-access-token"],
                                 mode="scan", reason="secret detected by gitleaks: aws-access-token"))
        assert rec is not None
        line = audit.text_line(rec)
        self.assertNotIn("\x1b", line)
        self.assertRegex(line, r"^\d\d:\d\d:\d\d\.\d{3}  addon    blocked       a.test\?\[2J:443 +secret detected by "
                               r"gitleaks: aws-access-token  \[rules=aws-access-token dlp=scan\]$")

    def test_text_line_of_pipelock_records(self) -> None:
        rec = audit.record(pipelock("blocked", '"target":"[::1]:18022"'))
        assert rec is not None
        self.assertEqual(audit.text_line(rec), "21:46:39      pipelock blocked       [::1]:18022" + " " * 22
                                               + "domain not in allowlist: ::1")
        rec = audit.record(pipelock("config_reload"))
        assert rec is not None
        self.assertRegex(audit.text_line(rec), r"^21:46:40      pipelock config_reload -  +config reload success")


def answering(rc: int, out: str) -> FakeRunner:
    return FakeRunner(lambda argv: (rc, out, ""))


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
        logs = "\n".join([addon("allowed", host="a.test", port=443), addon("blocked", reason=f"saw {SECRET}"),
                          "claude-bottle-supervise: started mitmdump"])
        runner = answering(0, logs)
        err = self.finish(runner)
        self.assertEqual(runner.calls, [["docker", "logs", self.plan.container("bundle").name]])
        self.assertIn("claude-bottle: session abcd1234: 1 request allowed, 1 blocked, 0 secret injections", err)
        path = paths.session_log(self.dir, "demo", "abcd1234")
        self.assertIn(path, err)
        with open(path) as handle:
            saved = handle.read()
        self.assertEqual(len(saved.splitlines()), 2)
        self.assertNotIn(SECRET, saved + err)

    def test_no_bundle_no_file(self) -> None:
        self.assertEqual(self.finish(answering(1, "")), "")
        self.assertFalse(os.path.exists(os.path.join(self.dir, paths.SESSIONS_DIR)))

    def test_never_raises(self) -> None:
        with mock.patch.object(audit, "save", side_effect=PermissionError("read-only")):
            err = self.finish(answering(0, addon("allowed", host="a.test")))
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
        path = paths.session_log(os.path.join(self.dir, "claude-bottle"), name, session)
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
                 "claude-bottle-supervise: noise\n"]
        runner = FakeRunner(lines=[line + "\n" for line in lines])
        with mock.patch.object(logs_cmd, "running_bundles", return_value=rows), \
                mock.patch.object(logs_cmd, "SubprocessRunner", return_value=runner):
            code, out, err = self.run_cli("demo", "--follow")
        self.assertEqual(code, 0)
        self.assertEqual(runner.calls, [["docker", "logs", "--follow", "id2"]])
        self.assertIn("showing session s2, the newest (also running: s1", err)
        self.assertRegex(out, r"addon    injected      api.example.com:443 +header x-api-key  \[secret=TOKEN\]\n$")

    def test_running_bundles_parses_docker_ps(self) -> None:
        runner = answering(0, "2026-11-27 11:00:00 +0000 UTC\ts2\tid2\n2026-11-27 10:00:00 +0000 UTC\ts1\tid1\n")
        rows = logs_cmd.running_bundles(runner, "demo")  # type: ignore[arg-type]
        self.assertEqual([r[1] for r in rows], ["s1", "s2"])
        self.assertIn("label=org.claude-bottle.role=bundle", runner.calls[0])


if __name__ == "__main__":
    unittest.main()
