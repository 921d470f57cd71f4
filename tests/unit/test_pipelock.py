"""Unit tests for claude_bottle.pipelock: the rendered config for each class of rule."""

from __future__ import annotations

import json
import unittest
from typing import Any

from claude_bottle import egress, pipelock

try:  # optional: a YAML parser, if the machine has one, must read the JSON text the same way
    import yaml  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - stdlib-only machines
    yaml = None


def _egress(*entries: object) -> egress.Egress:
    def fail(index: int, message: str) -> Exception:
        return AssertionError(f"rule {index}: {message}")

    return egress.classify(egress.expand(list(entries), fail))


def _config(*entries: object) -> dict[str, Any]:
    return pipelock.config(_egress(*entries))


class BaseConfigTest(unittest.TestCase):
    def test_fixed_settings(self) -> None:
        cfg = _config("example.com")
        self.assertEqual(cfg["version"], 1)
        self.assertEqual(cfg["mode"], "strict")
        self.assertEqual(cfg["fetch_proxy"]["listen"], "127.0.0.1:8888")
        self.assertEqual(pipelock.PIPELOCK_LISTEN, "127.0.0.1:8888")
        self.assertEqual(pipelock.PIPELOCK_PORT, 8888)
        self.assertIs(cfg["forward_proxy"]["enabled"], True)
        self.assertEqual(cfg["logging"]["format"], "json")
        self.assertIs(cfg["logging"]["include_blocked"], True)
        self.assertIs(cfg["logging"]["include_allowed"], True)
        self.assertEqual(cfg["sentry"], {"enabled": False})

    def test_rate_limit_is_high(self) -> None:
        rate = _config("example.com")["fetch_proxy"]["monitoring"]["max_requests_per_minute"]
        self.assertIsInstance(rate, int)
        self.assertGreaterEqual(rate, 10_000)  # <= 0 would become 60/min; an agent needs far more

    def test_tunnels_last_long(self) -> None:
        fwd = _config("example.com")["forward_proxy"]
        self.assertGreater(fwd["max_tunnel_seconds"], 300)
        self.assertGreater(fwd["idle_timeout_seconds"], 0)

    def test_sni_verification_off(self) -> None:
        # On, pipelock waits for a ClientHello before relaying, so server-speaks-first protocols
        # (SMTP, MySQL) on HOST:PORT rules hang; mitmdump pins the upstream SNI itself.
        for entries in ((), ("example.com",), ("smtp.example.com:25",)):
            with self.subTest(entries=entries):
                self.assertIs(_config(*entries)["forward_proxy"]["sni_verification"], False)

    def test_plain_http_is_neither_truncated_nor_cut_short(self) -> None:
        fetch = _config("example.com")["fetch_proxy"]
        self.assertIsInstance(fetch["max_response_mb"], int)
        self.assertGreaterEqual(fetch["max_response_mb"], 1024 * 1024)  # pipelock's default is 10
        self.assertIsInstance(fetch["timeout_seconds"], int)
        self.assertGreaterEqual(fetch["timeout_seconds"], pipelock.MAX_TUNNEL_SECONDS)  # default 30


class ResponsesPassTest(unittest.TestCase):
    """mitmdump's addon owns request DLP; responses must reach the agent as the server sent them."""

    def test_response_scanning_only_warns(self) -> None:
        # `enabled: false` would leave pipelock's core patterns blocking; warn only logs a match.
        scan = _config("example.com")["response_scanning"]
        self.assertIs(scan["enabled"], True)
        self.assertEqual(scan["action"], "warn")
        self.assertIs(scan["include_defaults"], False)
        self.assertNotIn("patterns", scan)
        self.assertNotIn("exempt_domains", scan)

    def test_event_streams_pass_through_unscanned(self) -> None:
        self.assertEqual(_config("example.com")["response_scanning"]["sse_streaming"], {"enabled": False})

    def test_media_policy_off(self) -> None:
        self.assertEqual(_config("example.com")["media_policy"], {"enabled": False})

    def test_request_body_scanning_off(self) -> None:
        self.assertEqual(_config("example.com")["request_body_scanning"], {"enabled": False})

    def test_nothing_intercepts_or_escalates(self) -> None:
        cfg = _config("example.com")
        for section in ("tls_interception", "websocket_proxy", "session_profiling", "adaptive_enforcement"):
            with self.subTest(section=section):
                self.assertEqual(cfg[section], {"enabled": False})

    def test_same_for_every_rule_class(self) -> None:
        base = _config("example.com")
        fixed = ("fetch_proxy", "forward_proxy", "response_scanning", "media_policy", "request_body_scanning",
                 "tls_interception", "websocket_proxy", "session_profiling", "adaptive_enforcement",
                 "logging")
        for entries in ((), ("*.example.com",), ("10.0.0.1:5432",), ("ssh://github.com",), ("@anthropic",)):
            cfg = _config(*entries)
            for key in fixed:
                with self.subTest(entries=entries, key=key):
                    self.assertEqual(cfg[key], base[key])

    def test_blocking_checks_stay_on(self) -> None:
        # The firewall itself stays as pipelock ships it: strict allowlist, enforcement on, SSRF
        # ranges (`internal`) and hostname/URL DLP untouched, no exemptions or suppressions.
        cfg = _config("10.0.0.1", "example.com")
        self.assertEqual(cfg["mode"], "strict")
        for key in ("enforce", "internal", "trusted_domains", "dlp", "suppress", "kill_switch"):
            with self.subTest(key=key):
                self.assertNotIn(key, cfg)
        self.assertEqual(cfg["fetch_proxy"]["monitoring"], {"max_requests_per_minute": pipelock.RATE_LIMIT_PER_MINUTE})

    def test_top_level_keys(self) -> None:
        # pipelock rejects unknown keys: every key here must exist in the pinned version.
        self.assertEqual(
            set(_config("example.com")),
            {"version", "mode", "api_allowlist", "fetch_proxy", "forward_proxy", "response_scanning",
             "media_policy", "request_body_scanning", "tls_interception", "websocket_proxy",
             "session_profiling", "adaptive_enforcement", "logging", "sentry"},
        )
        self.assertEqual(set(_config("10.0.0.1")), set(_config("example.com")) | {"ssrf"})

    def test_logging_is_json_lines_on_stdout_with_every_verdict(self) -> None:
        self.assertEqual(
            _config()["logging"],
            {"format": "json", "output": "stdout", "include_allowed": True, "include_blocked": True},
        )

    def test_listen_is_loopback_only(self) -> None:
        self.assertTrue(_config()["fetch_proxy"]["listen"].startswith("127.0.0.1:"))

    def test_version_pinned(self) -> None:
        self.assertRegex(pipelock.PIPELOCK_VERSION, r"^\d+\.\d+\.\d+$")


class RuleClassesTest(unittest.TestCase):
    def test_empty_allowlist_gets_the_never_resolving_sentinel(self) -> None:
        # Strict mode refuses an empty api_allowlist; one reserved .invalid name (RFC 6761) lets
        # pipelock start while allowing nothing that can resolve.
        cfg = _config()
        self.assertEqual(cfg["api_allowlist"], [pipelock.NOTHING_ALLOWED])
        self.assertEqual(pipelock.NOTHING_ALLOWED, "nothing-allowed.invalid")
        self.assertTrue(pipelock.NOTHING_ALLOWED.endswith(".invalid"))
        self.assertEqual(cfg["mode"], "strict")
        self.assertNotIn("ssrf", cfg)

    def test_sentinel_only_when_nothing_is_allowed(self) -> None:
        for entries in (("example.com",), ("10.0.0.1",), ("ssh://github.com",), ("@npm",)):
            with self.subTest(entries=entries):
                self.assertNotIn(pipelock.NOTHING_ALLOWED, _config(*entries)["api_allowlist"])

    def test_sentinel_is_a_valid_host_name(self) -> None:
        # Whatever reads the allowlist (pipelock, the plan, describe) sees an ordinary name.
        self.assertEqual(egress.parse_host(pipelock.NOTHING_ALLOWED), pipelock.NOTHING_ALLOWED)

    def test_web(self) -> None:
        cfg = _config("api.example.com")
        self.assertEqual(cfg["api_allowlist"], ["api.example.com"])
        self.assertNotIn("ssrf", cfg)

    def test_wildcard_kept_as_pattern(self) -> None:
        cfg = _config("*.Example.com")
        self.assertEqual(cfg["api_allowlist"], ["*.example.com"])
        self.assertNotIn("ssrf", cfg)

    def test_tcp_host_without_port(self) -> None:
        # pipelock ignores ports: the allowlist names the host; the port is the addon's business.
        cfg = _config("db.example.com:5432")
        self.assertEqual(cfg["api_allowlist"], ["db.example.com"])
        self.assertNotIn("5432", json.dumps(cfg))

    def test_ssh(self) -> None:
        cfg = _config("ssh://github.com", "ssh://git.example.com:2222")
        self.assertEqual(cfg["api_allowlist"], ["git.example.com", "github.com"])
        self.assertNotIn("ssh://", json.dumps(cfg))

    def test_public_ip(self) -> None:
        cfg = _config("93.184.216.34", "[2001:db8::1]:443")
        self.assertEqual(cfg["api_allowlist"], ["2001:db8::1", "93.184.216.34"])
        self.assertNotIn("ssrf", cfg)

    def test_private_ip_opens_ssrf_for_exactly_that_address(self) -> None:
        cfg = _config("10.1.2.3:5432")
        self.assertEqual(cfg["api_allowlist"], ["10.1.2.3"])
        self.assertEqual(cfg["ssrf"], {"ip_allowlist": ["10.1.2.3/32"]})

    def test_every_guarded_range(self) -> None:
        cfg = _config("ssh://192.168.1.1", "172.20.0.5", "100.64.9.9", "[fd00::5]", "example.com")
        self.assertEqual(
            cfg["ssrf"]["ip_allowlist"],
            sorted(["192.168.1.1/32", "172.20.0.5/32", "100.64.9.9/32", "fd00::5/128"]),
        )
        for cidr in cfg["ssrf"]["ip_allowlist"]:
            self.assertRegex(cidr, r"/(32|128)$")

    def test_mixed(self) -> None:
        cfg = _config("@github", "*.corp.example.com", "ssh://10.0.0.7", "example.com:8443", "example.com")
        self.assertEqual(cfg["api_allowlist"], sorted(cfg["api_allowlist"]))
        self.assertEqual(len(cfg["api_allowlist"]), len(set(cfg["api_allowlist"])))
        self.assertIn("*.corp.example.com", cfg["api_allowlist"])
        self.assertIn("github.com", cfg["api_allowlist"])
        self.assertIn("10.0.0.7", cfg["api_allowlist"])
        self.assertEqual(cfg["ssrf"]["ip_allowlist"], ["10.0.0.7/32"])

    def test_config_is_fresh_each_time(self) -> None:
        eg = _egress("example.com")
        first = pipelock.config(eg)
        first["api_allowlist"].append("evil.com")
        self.assertEqual(pipelock.config(eg)["api_allowlist"], ["example.com"])
        self.assertEqual(eg.allowlist, ("example.com",))


class RenderTest(unittest.TestCase):
    CASES: tuple[tuple[str, ...], ...] = (
        (),
        ("example.com",),
        ("*.example.com", "ssh://10.0.0.1:2222", "[fd00::1]", "@anthropic", "@github", "@npm", "@pypi", "@go"),
    )

    def test_render_is_json_of_config(self) -> None:
        for entries in self.CASES:
            with self.subTest(entries=entries):
                eg = _egress(*entries)
                text = pipelock.render(eg)
                self.assertTrue(text.endswith("\n"))
                self.assertEqual(json.loads(text), pipelock.config(eg))

    def test_every_string_is_double_quoted(self) -> None:
        text = pipelock.render(_egress("*.example.com", "10.0.0.1"))
        self.assertIn('"*.example.com"', text)
        self.assertIn('"10.0.0.1/32"', text)
        self.assertIn('"127.0.0.1:8888"', text)
        self.assertNotIn("'", text)

    def test_render_is_deterministic(self) -> None:
        a = pipelock.render(_egress("b.com", "a.com", "10.0.0.1"))
        b = pipelock.render(_egress("10.0.0.1", "a.com", "b.com"))
        self.assertEqual(a, b)

    def test_json_quoting_of_odd_hosts(self) -> None:
        # Rules are validated, so such hosts never get here; the renderer must still quote them safely.
        odd = egress.Egress(
            rules=(),
            allowlist=("a: b", "- x", "#c", "*", "yes", "null", '"q"', "back\\slash", "new\nline", "\u00e9"),
            ssrf_allow=("10.0.0.1/32",),
            port_gates=(),
        )
        text = pipelock.render(odd)
        self.assertEqual(json.loads(text)["api_allowlist"], list(odd.allowlist))
        if yaml is not None:
            self.assertEqual(yaml.safe_load(text)["api_allowlist"], list(odd.allowlist))

    @unittest.skipIf(yaml is None, "no YAML parser on this machine")
    def test_yaml_reads_the_same(self) -> None:
        for entries in self.CASES:
            with self.subTest(entries=entries):
                eg = _egress(*entries)
                self.assertEqual(yaml.safe_load(pipelock.render(eg)), pipelock.config(eg))


if __name__ == "__main__":
    unittest.main()
