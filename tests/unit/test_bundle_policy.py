"""claude_bottle.bundle.policy: what the bundle's mitmdump addon allows, refuses and logs."""

from __future__ import annotations

import copy
import datetime
import json
import os
import tempfile
import unittest
from typing import Any

from claude_bottle.bundle import policy

EXAMPLE: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"host": "api.anthropic.com", "wildcard": False, "ports": [80, 443]},
        {"host": "example.org", "wildcard": True, "ports": [80, 443]},
        {"host": "git.example.com", "wildcard": False, "ports": [22]},
        {"host": "100.64.1.2", "wildcard": False, "ports": [22]},
        {"host": "2001:db8::1", "wildcard": False, "ports": [443]},
    ],
    "ssrf_allow": ["100.64.1.2/32"],
    "upstream": "http://127.0.0.1:8888",
}


def load(**changes: Any) -> policy.Policy:
    data = copy.deepcopy(EXAMPLE)
    data.update(changes)
    return policy.load_policy(data)


def with_rule(**rule: Any) -> dict[str, Any]:
    return dict(copy.deepcopy(EXAMPLE), rules=[dict({"host": "a.test", "wildcard": False, "ports": [443]}, **rule)])


class LoadPolicyTest(unittest.TestCase):
    def test_example_loads(self) -> None:
        p = load()
        self.assertEqual(len(p.rules), 5)
        self.assertEqual(p.rules[1], policy.Rule("example.org", True, frozenset({80, 443})))
        self.assertEqual([str(n) for n in p.ssrf_allow], ["100.64.1.2/32"])
        self.assertEqual(p.upstream, ("127.0.0.1", 8888))

    def test_policy_is_frozen(self) -> None:
        p = load()
        with self.assertRaises(AttributeError):
            p.rules = ()  # type: ignore[misc]

    def test_optional_keys(self) -> None:
        p = policy.load_policy({"version": 1, "rules": []})
        self.assertEqual((p.rules, p.ssrf_allow, p.upstream), ((), (), None))
        self.assertIsNone(load(upstream=None).upstream)
        load(upstream_trusted_ca="/etc/claude-bottle/upstream-ca.pem")  # written by the launcher's plan

    def test_rule_hosts_are_normalized(self) -> None:
        p = policy.load_policy(
            {"version": 1, "rules": [
                {"host": "API.Example.COM.", "wildcard": False, "ports": [443]},
                {"host": "[2001:DB8:0::1]", "wildcard": False, "ports": [443]},
            ]}
        )
        self.assertEqual([r.host for r in p.rules], ["api.example.com", "2001:db8::1"])

    def test_load_policy_file(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "policy.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(EXAMPLE, f)
            self.assertEqual(policy.load_policy_file(path), load())
            with open(path, "w", encoding="utf-8") as f:
                f.write("{not json")
            with self.assertRaises(ValueError):
                policy.load_policy_file(path)

    def assert_bad(self, data: Any, fragment: str) -> None:
        with self.assertRaises(ValueError) as cm:
            policy.load_policy(data)
        self.assertIn(fragment, str(cm.exception))

    def test_bad_top_level(self) -> None:
        self.assert_bad([], "must be an object")
        self.assert_bad(None, "must be an object")
        self.assert_bad(dict(EXAMPLE, extra=1), "unknown keys ['extra']")
        self.assert_bad({"rules": []}, "version")
        for version in (2, "1", True, 1.0001):
            self.assert_bad(dict(EXAMPLE, version=version), "version")
        self.assert_bad({"version": 1}, "rules")
        self.assert_bad({"version": 1, "rules": {}}, "rules")

    def test_bad_rules(self) -> None:
        self.assert_bad(dict(EXAMPLE, rules=["example.org"]), "rule must be an object")
        self.assert_bad(dict(EXAMPLE, rules=[{"host": "a.test", "ports": [443]}]), "rule keys")
        self.assert_bad(with_rule(comment="x"), "rule keys")
        for host in ("", " ", "exa mple.org", "-bad.org", "bad-.org", "a..b", "a.b..", "*.example.org",
                     "127.1", "2130706433", "0x7f.0.0.1", "x" * 64 + ".org", "[example.org]",
                     "[127.0.0.1]", "ex\u00e4mple.org", "a.b/c", "a.b:443", 5, None):
            with self.subTest(host=host):
                self.assert_bad(with_rule(host=host), "invalid host")
        for wildcard in ("yes", 1, None):
            self.assert_bad(with_rule(wildcard=wildcard), "wildcard must be")
        self.assert_bad(with_rule(host="10.0.0.1", wildcard=True), "cannot apply to an IP")
        self.assert_bad(with_rule(ports=[]), "non-empty list")
        self.assert_bad(with_rule(ports=443), "non-empty list")
        for port in (0, 65536, -1, "443", True, 443.0, None):
            with self.subTest(port=port):
                self.assert_bad(with_rule(ports=[port]), "port must be")
        self.assert_bad(dict(EXAMPLE, rules=[EXAMPLE["rules"][0], {"host": "", "wildcard": False, "ports": [1]}]),
                        "rules[1]")

    def test_bad_ssrf_allow(self) -> None:
        self.assert_bad(dict(EXAMPLE, ssrf_allow="10.0.0.0/8"), "list of CIDRs")
        for cidr in ("10.0.0.1/8", "nope", "10.0.0.0/33", 10, None, ""):
            with self.subTest(cidr=cidr):
                self.assert_bad(dict(EXAMPLE, ssrf_allow=[cidr]), "invalid CIDR")

    def test_bad_upstream(self) -> None:
        for url in ("https://127.0.0.1:8888", "http://127.0.0.1", "127.0.0.1:8888", "http://:8888",
                    "http://127.0.0.1:0", "http://127.0.0.1:99999", "http://u:p@127.0.0.1:8888",
                    "http://127.0.0.1:8888/path", "socks5://127.0.0.1:1080"):
            with self.subTest(url=url):
                self.assert_bad(dict(EXAMPLE, upstream=url), "upstream")
        self.assert_bad(dict(EXAMPLE, upstream=8888), "upstream")
        self.assert_bad(dict(EXAMPLE, upstream_trusted_ca=1), "upstream_trusted_ca")

    def test_parse_upstream(self) -> None:
        self.assertEqual(policy.parse_upstream("http://127.0.0.1:8888"), ("127.0.0.1", 8888))
        self.assertEqual(policy.parse_upstream("http://[::1]:8888/"), ("::1", 8888))
        self.assertEqual(policy.parse_upstream("http://Pipelock:8888"), ("pipelock", 8888))


class DecideTest(unittest.TestCase):
    p = load()

    def assert_allowed(self, host: str, port: int) -> None:
        d = policy.decide(self.p, host, port)
        self.assertEqual(d, policy.Decision(True, d.reason), f"{host}:{port}")

    def assert_blocked(self, host: str, port: int, reason: str) -> None:
        self.assertEqual(policy.decide(self.p, host, port), policy.Decision(False, reason), f"{host}:{port}")

    def test_exact_host(self) -> None:
        self.assert_allowed("api.anthropic.com", 443)
        self.assert_allowed("api.anthropic.com", 80)
        self.assert_blocked("x.api.anthropic.com", 443, "host not in allowlist")  # not a wildcard
        self.assert_blocked("anthropic.com", 443, "host not in allowlist")

    def test_case_and_trailing_dot(self) -> None:
        self.assert_allowed("API.Anthropic.COM", 443)
        self.assert_allowed("api.anthropic.com.", 443)
        self.assert_allowed("WWW.EXAMPLE.ORG.", 443)
        self.assert_blocked("api.anthropic.com..", 443, "invalid host")

    def test_wildcard_apex_and_any_depth(self) -> None:
        for host in ("example.org", "www.example.org", "a.b.example.org", "x.y.z.example.org"):
            self.assert_allowed(host, 443)

    def test_look_alikes_never_match(self) -> None:
        for host in ("evilexample.org", "example.org.evil.com", "wwwexample.org", "example.org-evil.com",
                     "example.orgx", "xexample.org", "example.com", "org", "api.anthropic.com.evil.com",
                     "evil-api.anthropic.com"):
            self.assert_blocked(host, 443, "host not in allowlist")

    def test_ports(self) -> None:
        self.assert_blocked("example.org", 8443, "port 8443 not allowed for example.org")
        self.assert_blocked("A.Example.Org.", 22, "port 22 not allowed for a.example.org")
        self.assert_blocked("git.example.com", 443, "port 443 not allowed for git.example.com")
        self.assert_allowed("git.example.com", 22)

    def test_overlapping_rules_add_up(self) -> None:
        p = policy.load_policy({"version": 1, "rules": [
            {"host": "example.org", "wildcard": True, "ports": [443]},
            {"host": "ssh.example.org", "wildcard": False, "ports": [22]},
        ]})
        self.assertTrue(policy.decide(p, "ssh.example.org", 22).allowed)
        self.assertTrue(policy.decide(p, "ssh.example.org", 443).allowed)
        self.assertFalse(policy.decide(p, "www.example.org", 22).allowed)

    def test_ip_literals(self) -> None:
        self.assert_allowed("100.64.1.2", 22)
        self.assert_blocked("100.64.1.3", 22, "host not in allowlist")
        self.assert_allowed("2001:db8::1", 443)
        self.assert_allowed("[2001:db8::1]", 443)
        self.assert_allowed("[2001:DB8:0:0::1]", 443)
        self.assert_allowed("2001:0db8::0001", 443)
        self.assert_blocked("[2001:db8::1]", 80, "port 80 not allowed for 2001:db8::1")
        self.assert_blocked("[2001:db8::2]", 443, "host not in allowlist")

    def test_invalid_hosts(self) -> None:
        for host in ("", "[example.org]", "[100.64.1.2]", "a b.example.org", "example.org\x00.evil",
                     "127.1", "0x64.0x40.1.2", "1681915906", "[2001:db8::1"):
            self.assert_blocked(host, 443, "invalid host")

    def test_empty_policy_blocks_everything(self) -> None:
        p = policy.load_policy({"version": 1, "rules": []})
        self.assertEqual(policy.decide(p, "example.org", 443), policy.Decision(False, "host not in allowlist"))


class AuthorityHostTest(unittest.TestCase):
    def test_forms(self) -> None:
        cases = {
            "example.org": "example.org",
            "Example.ORG:443": "example.org",
            "example.org.:8080": "example.org",
            "127.0.0.1:8080": "127.0.0.1",
            "[2001:DB8::1]:443": "2001:db8::1",
            "[::1]": "::1",
        }
        for header, host in cases.items():
            self.assertEqual(policy.authority_host(header), host, header)

    def test_malformed(self) -> None:
        for header in ("", "example.org:", "example.org:abc", "example.org:1:2", "[::1", "[::1]x",
                       "[::1]:", "::1", "a b", "[example.org]:443", "user@example.org"):
            self.assertIsNone(policy.authority_host(header), header)


class PeerAllowedTest(unittest.TestCase):
    p = load()
    bare = policy.load_policy({"version": 1, "rules": []})

    def test_blocked_ranges(self) -> None:
        for ip in (
            "127.0.0.1", "127.255.255.254", "::1",  # loopback
            "0.0.0.0", "0.1.2.3", "::",  # unspecified / "this network"
            "169.254.169.254", "169.254.0.1", "fe80::1", "febf::1",  # link-local
            "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.1.1",  # RFC 1918
            "fc00::1", "fd12:3456::1",  # ULA
            "100.64.0.1", "100.100.100.200", "100.127.255.255",  # CGNAT
            "224.0.0.1", "239.255.255.250", "ff02::1", "ff05::2",  # multicast
            "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.0.1", "fec0::1",  # reserved & co
        ):
            with self.subTest(ip=ip):
                self.assertFalse(policy.peer_allowed(self.bare, ip))

    def test_public_addresses_pass(self) -> None:
        for ip in ("8.8.8.8", "1.1.1.1", "160.79.104.10", "172.15.255.255", "172.32.0.1", "100.63.255.255",
                   "100.128.0.1", "169.253.255.255", "2606:4700:4700::1111", "2a00:1450:4001::200e"):
            with self.subTest(ip=ip):
                self.assertTrue(policy.peer_allowed(self.bare, ip))

    def test_ipv4_in_ipv6_forms_are_unwrapped(self) -> None:
        for ip in ("::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:10.1.2.3", "::ffff:169.254.169.254",
                   "::ffff:100.64.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.0.0.1", "2002:7f00:1::1",
                   "2002:a9fe:a9fe::", "::127.0.0.1", "::10.0.0.1"):
            with self.subTest(ip=ip):
                self.assertFalse(policy.peer_allowed(self.bare, ip))
        self.assertTrue(policy.peer_allowed(self.bare, "::ffff:8.8.8.8"))
        self.assertTrue(policy.peer_allowed(self.bare, "64:ff9b::8.8.8.8"))

    def test_spellings(self) -> None:
        self.assertFalse(policy.peer_allowed(self.bare, "[::1]"))
        self.assertFalse(policy.peer_allowed(self.bare, "fe80::1%eth0"))
        self.assertTrue(policy.peer_allowed(self.bare, " 8.8.8.8 "))
        for junk in ("", "localhost", "example.org", "127.1", "2130706433", "999.1.1.1"):
            self.assertFalse(policy.peer_allowed(self.bare, junk), junk)

    def test_ssrf_allow_opens_exactly_its_cidr(self) -> None:
        self.assertTrue(policy.peer_allowed(self.p, "100.64.1.2"))
        self.assertTrue(policy.peer_allowed(self.p, "::ffff:100.64.1.2"))
        self.assertFalse(policy.peer_allowed(self.p, "100.64.1.3"))
        self.assertFalse(policy.peer_allowed(self.p, "100.64.1.1"))
        self.assertFalse(policy.peer_allowed(self.p, "127.0.0.1"))

    def test_ssrf_allow_wider_and_v6(self) -> None:
        p = load(ssrf_allow=["127.0.0.0/8", "fd00:1::/64"])
        self.assertTrue(policy.peer_allowed(p, "127.0.0.1"))
        self.assertTrue(policy.peer_allowed(p, "127.9.9.9"))
        self.assertTrue(policy.peer_allowed(p, "fd00:1::5"))
        self.assertFalse(policy.peer_allowed(p, "fd00:2::5"))
        self.assertFalse(policy.peer_allowed(p, "::1"))  # IPv6 loopback is not 127.0.0.0/8

    def test_ipv6_allow_never_matches_ipv4_by_accident(self) -> None:
        # An IPv4 address as an integer falls inside ::/96; the families must be kept apart.
        p = load(ssrf_allow=["::/96"])
        self.assertFalse(policy.peer_allowed(p, "127.0.0.1"))
        self.assertFalse(policy.peer_allowed(p, "10.0.0.1"))


class LogLineTest(unittest.TestCase):
    def test_shape(self) -> None:
        line = policy.log_line("blocked", host="evil.example", port=443, reason="host not in allowlist")
        self.assertNotIn("\n", line)
        rec = json.loads(line)
        self.assertEqual(
            {k: rec[k] for k in ("source", "event", "host", "port", "reason")},
            {"source": "addon", "event": "blocked", "host": "evil.example", "port": 443,
             "reason": "host not in allowlist"},
        )
        ts = datetime.datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
        self.assertEqual(ts.utcoffset(), datetime.timedelta(0))
        self.assertTrue(rec["ts"].endswith("Z"))
        self.assertLess(abs((datetime.datetime.now(datetime.timezone.utc) - ts).total_seconds()), 60)

    def test_events(self) -> None:
        for event in ("allowed", "blocked", "tunnel_open"):
            rec = json.loads(policy.log_line(event))
            self.assertEqual((rec["event"], rec["host"], rec["port"], rec["reason"]), (event, None, None, ""))
        with self.assertRaises(ValueError):
            policy.log_line("request")

    def test_refuses_fields_that_could_carry_secrets(self) -> None:
        for field in ("headers", "body", "path", "url", "query", "authorization", "content"):
            with self.subTest(field=field), self.assertRaises(ValueError):
                policy.log_line("allowed", host="a.test", **{field: "s3cr3t"})

    def test_hostile_values_stay_one_line(self) -> None:
        line = policy.log_line("blocked", host="a\nb\"c", reason="x\r\n{}")
        self.assertNotIn("\n", line)
        self.assertEqual(json.loads(line)["host"], "a\nb\"c")


PH = "claude-bottle-placeholder-TOKEN-" + "ab" * 16
PH2 = "claude-bottle-placeholder-OTHER-" + "cd" * 16
SECRETS = [
    {"name": "TOKEN", "placeholder": PH, "hosts": ["api.example.com", "API.example.net."], "header": "authorization"},
    {"name": "OTHER", "placeholder": PH2, "hosts": ["api.example.com"], "header": "x-api-key"},
]


class SecretsPolicyTest(unittest.TestCase):
    def test_secrets_load(self) -> None:
        p = load(secrets=SECRETS)
        self.assertEqual(p.secrets[0], policy.Secret("TOKEN", PH, frozenset({"api.example.com", "api.example.net"}),
                                                     "authorization"))
        self.assertEqual(load().secrets, ())

    def test_bad_secrets(self) -> None:
        def bad(fragment: str, **change: Any) -> None:
            with self.subTest(change=change), self.assertRaises(ValueError) as cm:
                load(secrets=[dict(SECRETS[0], **change)])
            self.assertIn(fragment, str(cm.exception))

        bad("placeholder does not look like", placeholder="short")
        bad("placeholder does not look like", placeholder=PH + "x")
        bad("placeholder does not look like", placeholder="Bearer " + PH)
        bad("invalid name", name="A-B")
        bad("invalid header", header="Authorization")  # the launcher writes it in lower case
        bad("invalid header", header="x key")
        bad("hosts must be a non-empty list", hosts=[])
        bad("invalid host", hosts=["*.example.com"])
        bad("exactly the keys", format="Bearer {}")
        with self.assertRaises(ValueError):
            load(secrets=[SECRETS[0], dict(SECRETS[1], name="TOKEN")])  # duplicate name
        with self.assertRaises(ValueError):
            load(secrets=[SECRETS[0], dict(SECRETS[1], placeholder=PH)])  # duplicate placeholder
        with self.assertRaises(ValueError):
            load(secrets={"TOKEN": SECRETS[0]})

    def test_secret_values(self) -> None:
        p = load(secrets=SECRETS)
        values = policy.load_secret_values({"version": 1, "values": {"TOKEN": "t0k", "OTHER": "0th", "X": "y"}}, p)
        self.assertEqual(values, {"TOKEN": "t0k", "OTHER": "0th"})
        for data in ({"version": 1, "values": {"TOKEN": "t0k"}}, {"version": 1, "values": {"TOKEN": "", "OTHER": "o"}},
                     {"version": 1, "values": {"TOKEN": "a\nb", "OTHER": "o"}}, {"values": {}}, [],
                     {"version": 1, "values": []}):
            with self.subTest(data=data), self.assertRaises(ValueError) as cm:
                policy.load_secret_values(data, p)
            self.assertNotIn("a\nb", str(cm.exception))

    def test_where_a_placeholder_may_go(self) -> None:
        p = load(secrets=SECRETS)
        ok = [("api.example.com", "https", f"Bearer {PH}", "authorization"),
              ("API.EXAMPLE.NET.", "https", PH, "authorization"),
              ("api.example.com", "https", PH2, "x-api-key"),
              ("evil.example", "https", "no placeholder here", "authorization")]
        for case in ok:
            self.assertIsNone(policy.misplaced_placeholder(p, *case), case)
        bad = [("evil.example", "https", PH, "authorization", "TOKEN"),
               ("api.example.com", "http", PH, "authorization", "TOKEN"),
               ("api.example.com", "https", PH, "x-api-key", "TOKEN"),
               ("api.example.com", "https", PH2, "authorization", "OTHER"),
               ("api.example.com", "https", f"/v1?k={PH}", None, "TOKEN"),
               ("api.example.net", "https", PH2, "x-api-key", "OTHER")]
        for host, scheme, where, header, name in bad:
            found = policy.misplaced_placeholder(p, host, scheme, where, header)
            self.assertEqual(found.name if found else None, name, (host, scheme, where, header))

    def test_refusal_reasons_name_the_secret_never_a_value(self) -> None:
        secret = load(secrets=SECRETS).secrets[0]
        self.assertEqual(policy.placeholder_rule(secret, "evil.example", "https"),
                         "placeholder for secret TOKEN may only be sent in header authorization to "
                         "api.example.com, api.example.net")
        self.assertEqual(policy.placeholder_rule(secret, "api.example.com", "http"),
                         "placeholder for secret TOKEN sent over plain HTTP; it is only swapped in over HTTPS")


class DlpPolicyTest(unittest.TestCase):
    def test_without_a_dlp_section_everything_is_scanned(self) -> None:
        self.assertEqual(load().dlp, policy.Dlp("scan"))
        self.assertEqual(load().dlp.mode("anything.example"), "scan")

    def test_modes(self) -> None:
        d = load(dlp={"default": "scan", "hosts": [
            {"host": "api.anthropic.com", "wildcard": False, "mode": "warn"},
            {"host": "example.org", "wildcard": True, "mode": "skip"},
            {"host": "deep.example.org", "wildcard": True, "mode": "warn"},
            {"host": "www.example.org", "wildcard": False, "mode": "scan"},
        ]}).dlp
        cases = {"api.anthropic.com": "warn", "API.Anthropic.com.": "warn", "x.api.anthropic.com": "scan",
                 "example.org": "skip", "a.example.org": "skip", "a.deep.example.org": "warn",
                 "deep.example.org": "warn", "www.example.org": "scan", "other.test": "scan",
                 "bad host": "scan"}
        for host, mode in cases.items():
            self.assertEqual(d.mode(host), mode, host)

    def test_bad_dlp(self) -> None:
        for dlp in ({"hosts": []}, {"default": "block"}, {"default": "scan", "extra": 1},
                    {"default": "scan", "hosts": {}},
                    {"default": "scan", "hosts": [{"host": "a.test", "wildcard": False}]},
                    {"default": "scan", "hosts": [{"host": "a.test", "wildcard": 1, "mode": "scan"}]},
                    {"default": "scan", "hosts": [{"host": "a b", "wildcard": False, "mode": "scan"}]},
                    {"default": "scan", "hosts": [{"host": "a.test", "wildcard": False, "mode": "off"}]},
                    "scan"):
            with self.subTest(dlp=dlp), self.assertRaises(ValueError):
                load(dlp=dlp)


class NewLogFieldsTest(unittest.TestCase):
    def test_injected_and_warning_events(self) -> None:
        rec = json.loads(policy.log_line("injected", host="api.example.com", port=443, secret="TOKEN",
                                         reason="header authorization"))
        self.assertEqual((rec["event"], rec["secret"]), ("injected", "TOKEN"))
        rec = json.loads(policy.log_line("warning", kind="dlp", rules=["aws-access-token"], mode="warn"))
        self.assertEqual(rec["rules"], ["aws-access-token"])

    def test_fields_that_could_carry_a_value_are_refused(self) -> None:
        for fields in ({"secret": "sk-ant-api03 with spaces"}, {"secret": "a-b"}, {"rules": "aws-access-token"},
                       {"rules": ["has space"]}, {"rules": [{"Secret": "x"}]}, {"value": "x"},
                       {"match": "x"}):
            with self.subTest(fields=fields), self.assertRaises(ValueError):
                policy.log_line("blocked", **fields)


if __name__ == "__main__":
    unittest.main()


class RawTcpTest(unittest.TestCase):
    """Only ports named by HOST:PORT or ssh:// rules may carry bytes that are neither TLS nor HTTP."""

    def policy(self, **rule: Any) -> policy.Policy:
        base = {"host": "git.example.com", "wildcard": False, "ports": [22, 443]}
        return policy.load_policy({"version": 1, "rules": [{**base, **rule}]})

    def test_raw_only_on_listed_ports(self) -> None:
        p = self.policy(raw_ports=[22])
        self.assertTrue(policy.raw_allowed(p, "GIT.example.com.", 22))
        self.assertFalse(policy.raw_allowed(p, "git.example.com", 443))
        self.assertFalse(policy.raw_allowed(p, "other.example.com", 22))

    def test_no_raw_ports_means_none(self) -> None:
        self.assertFalse(policy.raw_allowed(self.policy(), "git.example.com", 22))

    def test_raw_ports_must_be_allowed_ports(self) -> None:
        for bad in ([8022], "22", [True], [0]):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                self.policy(raw_ports=bad)
