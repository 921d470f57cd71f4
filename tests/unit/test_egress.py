"""Unit tests for claude_bottle.egress: parsing, presets, rejections and classification."""

from __future__ import annotations

import unittest

from claude_bottle import egress
from claude_bottle.egress import PRESETS, RuleError, classify, expand, parse_host, parse_rule


class _Boom(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"[{index}] {message}")
        self.index = index
        self.message = message


def _expand(entries: list[object]) -> tuple[egress.Rule, ...]:
    return expand(entries, _Boom)


def _classify(entries: list[object]) -> egress.Egress:
    return classify(_expand(entries))


class RuleFormsTest(unittest.TestCase):
    def test_plain_host_is_web_on_80_and_443(self) -> None:
        rule = parse_rule("example.com")
        self.assertEqual(rule.kind, "web")
        self.assertEqual(rule.host, "example.com")
        self.assertEqual(rule.ports, (80, 443))
        self.assertIsNone(rule.preset)
        self.assertFalse(rule.wildcard)
        self.assertEqual(rule.text, "example.com")

    def test_wildcard(self) -> None:
        rule = parse_rule("*.example.com")
        self.assertEqual(rule.kind, "wildcard")
        self.assertEqual(rule.host, "*.example.com")
        self.assertEqual(rule.ports, (80, 443))
        self.assertTrue(rule.wildcard)

    def test_deep_wildcard(self) -> None:
        rule = parse_rule("*.a.b.example.co.uk")
        self.assertEqual(rule.host, "*.a.b.example.co.uk")

    def test_wildcard_with_port(self) -> None:
        rule = parse_rule("*.example.com:8443")
        self.assertEqual(rule.kind, "wildcard")
        self.assertEqual(rule.ports, (8443,))
        self.assertEqual(rule.normalized, "*.example.com:8443")

    def test_host_port_is_tcp(self) -> None:
        rule = parse_rule("db.example.com:5432")
        self.assertEqual(rule.kind, "tcp")
        self.assertEqual(rule.host, "db.example.com")
        self.assertEqual(rule.ports, (5432,))

    def test_host_port_443_is_still_one_port(self) -> None:
        rule = parse_rule("example.com:443")
        self.assertEqual(rule.kind, "tcp")
        self.assertEqual(rule.ports, (443,))

    def test_port_bounds(self) -> None:
        self.assertEqual(parse_rule("example.com:1").ports, (1,))
        self.assertEqual(parse_rule("example.com:65535").ports, (65535,))

    def test_ssh_default_port(self) -> None:
        rule = parse_rule("ssh://github.com")
        self.assertEqual(rule.kind, "ssh")
        self.assertEqual(rule.host, "github.com")
        self.assertEqual(rule.ports, (22,))
        self.assertEqual(rule.normalized, "ssh://github.com")

    def test_ssh_with_port(self) -> None:
        rule = parse_rule("ssh://ssh.github.com:443")
        self.assertEqual(rule.kind, "ssh")
        self.assertEqual(rule.host, "ssh.github.com")
        self.assertEqual(rule.ports, (443,))
        self.assertEqual(rule.normalized, "ssh://ssh.github.com:443")

    def test_ssh_scheme_is_case_insensitive(self) -> None:
        self.assertEqual(parse_rule("SSH://GitHub.com").kind, "ssh")
        self.assertEqual(parse_rule("SSH://GitHub.com").host, "github.com")

    def test_ssh_to_ip(self) -> None:
        rule = parse_rule("ssh://10.1.2.3:2222")
        self.assertEqual((rule.kind, rule.host, rule.ports), ("ssh", "10.1.2.3", (2222,)))

    def test_ssh_to_ipv6(self) -> None:
        rule = parse_rule("ssh://[2001:db8::7]")
        self.assertEqual((rule.kind, rule.host, rule.ports), ("ssh", "2001:db8::7", (22,)))
        self.assertEqual(rule.normalized, "ssh://[2001:db8::7]")
        rule = parse_rule("ssh://[2001:db8::7]:2222")
        self.assertEqual(rule.ports, (2222,))
        self.assertEqual(rule.normalized, "ssh://[2001:db8::7]:2222")

    def test_ipv4(self) -> None:
        rule = parse_rule("93.184.216.34")
        self.assertEqual((rule.kind, rule.host, rule.ports), ("web", "93.184.216.34", (80, 443)))
        rule = parse_rule("93.184.216.34:8080")
        self.assertEqual((rule.kind, rule.host, rule.ports), ("tcp", "93.184.216.34", (8080,)))

    def test_bracketed_ipv6_without_port(self) -> None:
        rule = parse_rule("[2001:db8::1]")
        self.assertEqual((rule.kind, rule.host, rule.ports), ("web", "2001:db8::1", (80, 443)))
        self.assertEqual(rule.normalized, "[2001:db8::1]")

    def test_bracketed_ipv6_with_port(self) -> None:
        rule = parse_rule("[2001:db8::1]:8443")
        self.assertEqual((rule.kind, rule.host, rule.ports), ("tcp", "2001:db8::1", (8443,)))
        self.assertEqual(rule.normalized, "[2001:db8::1]:8443")

    def test_ipv6_is_compressed_and_lower_cased(self) -> None:
        self.assertEqual(parse_rule("[2001:0DB8:0000:0000:0000:0000:0000:00AB]").host, "2001:db8::ab")

    def test_case_folding(self) -> None:
        self.assertEqual(parse_rule("API.Anthropic.COM").host, "api.anthropic.com")
        self.assertEqual(parse_rule("*.Example.COM").host, "*.example.com")
        # The original text is kept for messages.
        self.assertEqual(parse_rule("API.Anthropic.COM").text, "API.Anthropic.COM")

    def test_trailing_dot(self) -> None:
        self.assertEqual(parse_rule("example.com.").host, "example.com")
        self.assertEqual(parse_rule("*.example.com.").host, "*.example.com")
        self.assertEqual(parse_rule("example.com.:8080").host, "example.com")

    def test_hyphens_digits_and_xn_labels(self) -> None:
        self.assertEqual(parse_rule("my-host-1.example-2.com").host, "my-host-1.example-2.com")
        self.assertEqual(parse_rule("xn--bcher-kva.example").host, "xn--bcher-kva.example")
        self.assertEqual(parse_rule("1.2.3.4.example.com").host, "1.2.3.4.example.com")
        self.assertEqual(parse_rule("a.b").host, "a.b")

    def test_single_label_host_is_allowed(self) -> None:
        # An intranet short name: not a wildcard, so not a whole TLD.
        self.assertEqual(parse_rule("gitlab").host, "gitlab")

    def test_label_of_63_chars_and_name_of_253(self) -> None:
        self.assertEqual(parse_rule("a" * 63 + ".com").host, "a" * 63 + ".com")
        name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        self.assertEqual(len(name), 253)
        self.assertEqual(parse_rule(name).host, name)
        # The trailing dot does not count.
        self.assertEqual(parse_rule(name + ".").host, name)

    def test_normalized_forms(self) -> None:
        self.assertEqual(parse_rule("Example.COM.").normalized, "example.com")
        self.assertEqual(parse_rule("example.com:8080").normalized, "example.com:8080")
        self.assertEqual(parse_rule("*.example.com").normalized, "*.example.com")

    def test_public_ipv4_mapped_ipv6_accepted(self) -> None:
        self.assertEqual(parse_rule("[::ffff:8.8.8.8]").host, "::ffff:808:808")

    def test_rule_is_frozen(self) -> None:
        rule = parse_rule("example.com")
        with self.assertRaises(AttributeError):
            rule.host = "evil.com"  # type: ignore[misc]


class ParseHostTest(unittest.TestCase):
    def test_parse_host_forms(self) -> None:
        self.assertEqual(parse_host("Example.COM."), "example.com")
        self.assertEqual(parse_host("10.0.0.1"), "10.0.0.1")
        self.assertEqual(parse_host("[2001:DB8::1]"), "2001:db8::1")

    def test_parse_host_rejections(self) -> None:
        for bad in ("", "[2001:db8::1", "[example.com]", "[10.0.0.1]", "2001:db8::1", "localhost"):
            with self.subTest(bad=bad), self.assertRaises(RuleError):
                parse_host(bad)


class PresetTest(unittest.TestCase):
    def test_every_preset_expands_to_valid_rules(self) -> None:
        self.assertEqual(set(PRESETS), {"@anthropic", "@github", "@npm", "@pypi", "@go", "@openai", "@gemini"})
        for name, members in PRESETS.items():
            with self.subTest(preset=name):
                rules = _expand([name])
                self.assertEqual(len(rules), len(members))
                self.assertEqual(tuple(r.text for r in rules), members)
                for rule in rules:
                    self.assertEqual(rule.preset, name)
                    self.assertEqual(rule.normalized, name)
                    self.assertIn(rule.kind, ("web", "wildcard"))
                    self.assertEqual(rule.ports, (80, 443))

    def test_anthropic(self) -> None:
        hosts = {r.host for r in _expand(["@anthropic"])}
        self.assertIn("api.anthropic.com", hosts)
        self.assertIn("statsig.anthropic.com", hosts)
        self.assertTrue({"claude.ai", "platform.claude.com", "console.anthropic.com"} <= hosts)  # login
        # Shared third-party telemetry services would be channels out for anything.
        self.assertFalse({"statsig.com", "sentry.io"} & hosts)

    def test_other_agents(self) -> None:
        self.assertEqual({r.host for r in _expand(["@openai"])}, {"api.openai.com"})
        self.assertEqual({r.host for r in _expand(["@gemini"])}, {"generativelanguage.googleapis.com"})

    def test_github(self) -> None:
        hosts = {r.host for r in _expand(["@github"])}
        self.assertIn("github.com", hosts)
        self.assertIn("api.github.com", hosts)
        self.assertIn("codeload.github.com", hosts)

    def test_npm_pypi_go(self) -> None:
        self.assertEqual({r.host for r in _expand(["@npm"])}, {"registry.npmjs.org"})
        self.assertEqual({r.host for r in _expand(["@pypi"])}, {"pypi.org", "files.pythonhosted.org"})
        self.assertEqual({r.host for r in _expand(["@go"])}, {"proxy.golang.org", "sum.golang.org"})

    def test_unknown_preset_did_you_mean(self) -> None:
        with self.assertRaises(_Boom) as cm:
            _expand(["example.com", "@githb"])
        self.assertEqual(cm.exception.index, 1)
        self.assertIn("unknown preset '@githb'", cm.exception.message)
        self.assertIn("did you mean @github?", cm.exception.message)

    def test_unknown_preset_lists_known(self) -> None:
        with self.assertRaises(_Boom) as cm:
            _expand(["@zzzzzzzz"])
        self.assertIn("unknown preset", cm.exception.message)
        self.assertIn("known: @anthropic, @gemini, @github, @go, @npm, @openai, @pypi", cm.exception.message)

    def test_preset_is_case_sensitive(self) -> None:
        with self.assertRaises(_Boom):
            _expand(["@GitHub"])

    def test_preset_and_rules_mix_and_dedupe(self) -> None:
        eg = _classify(["@github", "github.com", "@github", "GITHUB.COM."])
        self.assertEqual(eg.allowlist.count("github.com"), 1)
        self.assertEqual(len([r for r in eg.rules if r.host == "github.com"]), 1)


class RejectionTest(unittest.TestCase):
    def assertRejected(self, rule: object, *fragments: str) -> str:
        with self.assertRaises(RuleError, msg=repr(rule)) as cm:
            parse_rule(rule)
        message = str(cm.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertNotIn("\n", message)
        return message

    def test_rejections(self) -> None:
        cases = [
            # wildcards
            "*", "*.com", "*.uk", "a.*.com", "*foo.com", "foo*.com", "*.*.com", "**.example.com",
            "*.example.*", "*.", "*.10.0.0.1", "ssh://*.example.com", "*:443", "*.internal",
            "*.localhost", "*.google.internal", "*.metadata.google.internal",
            # URLs
            "example.com/", "example.com/path", "example.com?x=1", "example.com#frag",
            "user@example.com", "user:pass@example.com", "ssh://git@github.com", "ssh://github.com/x",
            "https://example.com", "http://example.com", "ftp://example.com", "HTTPS://example.com",
            "git://example.com", "socks5://example.com", "://example.com",
            # ports
            "example.com:0", "example.com:65536", "example.com:99999", "example.com:abc",
            "example.com:", "example.com:080", "example.com:00", "example.com:-1", "example.com:+80",
            "example.com: 80", "example.com:1_000", "[2001:db8::1]:", "[2001:db8::1]:0",
            "[2001:db8::1]:70000", "[2001:db8::1]x", "ssh://example.com:0",
            # labels and names
            "-example.com", "example-.com", "ex_ample.com", "exa mple.com", "example..com",
            ".example.com", "example.com..", "a" * 64 + ".com", ".",
            ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 63]),
            # unbracketed / bad IPv6
            "2001:db8::1", "::1", "fe80::1", "::ffff:127.0.0.1", "[2001:db8::1", "[nothex::1]",
            "[10.0.0.1]", "[fe80::1%eth0]", "[2001:db8::1%1]",
            # loopback, unspecified, link-local, metadata
            "localhost", "LOCALHOST", "localhost.", "foo.localhost", "127.0.0.1", "127.5.5.5",
            "127.255.255.255", "0.0.0.0", "0.1.2.3", "[::1]", "[::]", "[0:0:0:0:0:0:0:1]",
            "169.254.169.254", "169.254.0.1", "[fe80::1]", "[febf::1]", "metadata.google.internal",
            "METADATA.Google.Internal.", "metadata", "instance-data", "metadata.azure.com",
            "168.63.129.16", "100.100.100.200", "[fd00:ec2::254]", "[::ffff:127.0.0.1]",
            "[::ffff:169.254.169.254]", "[::ffff:0.0.0.0]", "127.0.0.1:8080", "ssh://127.0.0.1",
            "ssh://localhost", "[::1]:443",
            # IPv4 in disguise
            "2130706433", "0x7f000001", "0x7f.0.0.1", "1.2.3", "127.1", "0177.0.0.1", "127.000.000.001",
            "10.1", "example.0x7f", "3232235521",
            # multicast
            "224.0.0.1", "[ff02::1]",
            # non-ASCII
            "ex\u00e4mple.com", "b\u00fccher.de", "\u0430pple.com", "example.\u0441om", "\u0130x.com",
            # whitespace and emptiness
            "", " ", " example.com", "example.com ", "example.com\n", "\texample.com",
        ]
        for rule in cases:
            with self.subTest(rule=rule):
                self.assertRejected(rule)

    def test_non_string_rules(self) -> None:
        for rule in (None, 42, 4.2, True, ["example.com"], {"host": "example.com"}):
            with self.subTest(rule=rule):
                self.assertRejected(rule, "must be a string")

    def test_messages(self) -> None:
        self.assertRejected("*", "every host")
        self.assertRejected("*.com", "top-level domain")
        self.assertRejected("a.*.com", "whole first label")
        self.assertRejected("*foo.com", "whole first label")
        self.assertRejected("https://example.com", "only ssh://", "write just the host")
        self.assertRejected("http://example.com", "write just the host")
        msg = self.assertRejected("ftp://example.com", "only ssh://")
        self.assertNotIn("write just the host", msg)
        self.assertRejected("example.com/path", "a path")
        self.assertRejected("example.com?q", "a query")
        self.assertRejected("example.com#f", "a fragment")
        self.assertRejected("u@example.com", "user info")
        self.assertRejected("example.com:0", "1 to 65535")
        self.assertRejected("example.com:65536", "1 to 65535")
        self.assertRejected("example.com:abc", "1 to 65535")
        self.assertRejected("-a.com", "inner hyphens")
        self.assertRejected("a..com", "empty label")
        self.assertRejected("a" * 64 + ".com", "longer than 63")
        self.assertRejected(".".join(["a" * 63] * 4), "longer than 253")
        self.assertRejected("2001:db8::1", "bracketed")
        self.assertRejected("localhost", "never reach")
        self.assertRejected("127.0.0.1", "127.0.0.0/8")
        self.assertRejected("169.254.169.254", "169.254.0.0/16")
        self.assertRejected("[::ffff:127.0.0.1]", "127.0.0.0/8")
        self.assertRejected("2130706433", "dotted-quad")
        self.assertRejected("ex\u00e4mple.com", "ASCII", "xn--")
        self.assertRejected("*.google.internal", "metadata.google.internal")
        self.assertRejected("ssh://*.example.com", "not a wildcard")
        self.assertRejected("*.10.0.0.1", "IP address")
    def test_trailing_newline_inside_host_is_rejected(self) -> None:
        # Was a bug: egress._LABEL uses `$`, which also matches before a trailing "\n"; the whole-rule
        # strip() check only looks at the ends of the rule, so "example.com\n:443" is accepted with
        # host "example.com\n" (same for ssh://HOST\n:PORT and *.DOMAIN\n:PORT). Use \Z or fullmatch.
        for rule in ("example.com\n:443", "ssh://example.com\n:22", "*.example.com\n:443"):
            with self.subTest(rule=rule):
                self.assertRejected(rule)
    def test_non_ascii_that_lower_cases_to_ascii_is_rejected(self) -> None:
        # Was a bug: parse_host lower-cases before its isascii() check, and U+212A KELVIN SIGN lower-cases
        # to ASCII "k": "\u212aexample.com" is accepted as "kexample.com".
        self.assertRejected("\u212aexample.com")
    def test_error_messages_are_one_line(self) -> None:
        # Was a bug: the "must be bracketed" message embeds the rule text raw (not repr), so a rule with an
        # inner newline, "a\nb:c:d", yields a two-line error on stderr.
        self.assertRejected("a\nb:c:d")
    def test_aws_metadata_fqdn_is_rejected(self) -> None:
        # Was a bug (defence in depth): FORBIDDEN_NAMES has the short AWS metadata name "instance-data" but
        # not its fully qualified forms, so "instance-data.ec2.internal" is accepted.
        self.assertRejected("instance-data.ec2.internal")


class ExpandTest(unittest.TestCase):
    def test_on_error_gets_index_and_message(self) -> None:
        with self.assertRaises(_Boom) as cm:
            _expand(["example.com", "@github", "*"])
        self.assertEqual(cm.exception.index, 2)
        self.assertIn("every host", cm.exception.message)

    def test_on_error_for_non_string(self) -> None:
        with self.assertRaises(_Boom) as cm:
            _expand(["example.com", 7])
        self.assertEqual(cm.exception.index, 1)
        self.assertIn("must be a string", cm.exception.message)

    def test_empty(self) -> None:
        self.assertEqual(_expand([]), ())
        eg = classify(())
        self.assertEqual((eg.rules, eg.allowlist, eg.ssrf_allow, eg.port_gates), ((), (), (), ()))

    def test_order_kept(self) -> None:
        rules = _expand(["b.example.com", "a.example.com", "ssh://c.example.com"])
        self.assertEqual([r.host for r in rules], ["b.example.com", "a.example.com", "c.example.com"])


class ClassifyTest(unittest.TestCase):
    def test_allowlist_sorted_and_unique(self) -> None:
        eg = _classify(["zeta.example.com", "Alpha.example.com", "alpha.example.com.", "*.mid.example.com",
                        "alpha.example.com:8443", "ssh://alpha.example.com"])
        self.assertEqual(eg.allowlist, tuple(sorted(set(eg.allowlist))))
        self.assertEqual(eg.allowlist, ("*.mid.example.com", "alpha.example.com", "zeta.example.com"))

    def test_rules_deduplicated(self) -> None:
        eg = _classify(["example.com", "EXAMPLE.com", "example.com.", "example.com:443", "example.com:443"])
        self.assertEqual([(r.kind, r.ports) for r in eg.rules], [("web", (80, 443)), ("tcp", (443,))])
        self.assertEqual(eg.rules[0].text, "example.com")

    def test_ports_merged_per_host(self) -> None:
        eg = _classify(["example.com", "example.com:8443", "ssh://example.com", "ssh://example.com:2222",
                        "other.com:5432"])
        gates = {g.host: g for g in eg.port_gates}
        self.assertEqual(gates["example.com"].ports, (22, 80, 443, 2222, 8443))
        self.assertEqual(gates["other.com"].ports, (5432,))
        self.assertFalse(gates["example.com"].wildcard)

    def test_wildcard_gate_is_separate_from_apex(self) -> None:
        eg = _classify(["*.example.com", "example.com:8443"])
        self.assertEqual(
            [g.to_json() for g in eg.port_gates],
            [
                {"host": "example.com", "wildcard": True, "ports": [80, 443], "raw_ports": []},
                {"host": "example.com", "wildcard": False, "ports": [8443], "raw_ports": [8443]},
            ],
        )

    def test_raw_tcp_only_on_ports_that_tcp_and_ssh_rules_name(self) -> None:
        # Web rules carry TLS or HTTP only: raw bytes there would pass uninspected, past the DLP scan.
        eg = _classify(["example.com", "example.com:5432", "ssh://git.example.com", "ssh://h.example.com:2222",
                        "*.example.org", "*.example.net:9000"])
        raw = {("*." if g.wildcard else "") + g.host: g.raw_ports for g in eg.port_gates}
        self.assertEqual(raw["example.com"], (5432,))
        self.assertEqual(raw["git.example.com"], (22,))
        self.assertEqual(raw["h.example.com"], (2222,))
        self.assertEqual(raw["*.example.org"], ())
        self.assertEqual(raw["*.example.net"], (9000,))
        self.assertEqual({g.host: g.ports for g in eg.port_gates}["example.com"], (80, 443, 5432))

    def test_port_gates_sorted(self) -> None:
        eg = _classify(["b.com", "a.com", "c.com:1"])
        self.assertEqual([g.host for g in eg.port_gates], ["a.com", "b.com", "c.com"])

    def test_ssrf_allow_private_ranges(self) -> None:
        eg = _classify([
            "10.0.0.5", "10.255.255.255:8080", "172.16.0.1", "172.31.255.254", "192.168.1.10",
            "ssh://192.168.7.7", "100.64.0.1", "100.127.255.254:53", "[fd12:3456::1]", "[fc00::1]:5432",
        ])
        self.assertEqual(
            eg.ssrf_allow,
            tuple(sorted([
                "10.0.0.5/32", "10.255.255.255/32", "172.16.0.1/32", "172.31.255.254/32",
                "192.168.1.10/32", "192.168.7.7/32", "100.64.0.1/32", "100.127.255.254/32",
                "fd12:3456::1/128", "fc00::1/128",
            ])),
        )

    def test_ssrf_allow_deduplicated(self) -> None:
        eg = _classify(["10.0.0.5", "10.0.0.5:22", "ssh://10.0.0.5"])
        self.assertEqual(eg.ssrf_allow, ("10.0.0.5/32",))
        self.assertEqual(eg.allowlist, ("10.0.0.5",))

    def test_ssrf_allow_not_for_public_ips_or_names(self) -> None:
        eg = _classify([
            "8.8.8.8", "1.1.1.1:53", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1",
            "192.169.0.1", "11.0.0.1", "[2001:db8::1]", "[fe00::1]", "internal.example.com",
            "*.corp.example.com", "ssh://git.example.com", "ten.0.0.5.example.com",
        ])
        self.assertEqual(eg.ssrf_allow, ())

    def test_ssrf_allow_only_for_the_address_named(self) -> None:
        eg = _classify(["10.1.2.3", "example.com"])
        self.assertEqual(eg.ssrf_allow, ("10.1.2.3/32",))
        for cidr in eg.ssrf_allow:
            self.assertTrue(cidr.endswith("/32") or cidr.endswith("/128"))

    def test_to_json(self) -> None:
        eg = _classify(["@npm", "ssh://10.0.0.2", "*.example.com:8443"])
        doc = eg.to_json()
        self.assertEqual(set(doc), {"allowlist", "ssrf_allow", "port_gates", "rules"})
        self.assertEqual(doc["allowlist"], ["*.example.com", "10.0.0.2", "registry.npmjs.org"])
        self.assertEqual(doc["ssrf_allow"], ["10.0.0.2/32"])
        self.assertEqual(
            doc["rules"],
            [
                {"rule": "registry.npmjs.org", "kind": "web", "host": "registry.npmjs.org", "ports": [80, 443],
                 "preset": "@npm"},
                {"rule": "ssh://10.0.0.2", "kind": "ssh", "host": "10.0.0.2", "ports": [22], "preset": None},
                {"rule": "*.example.com:8443", "kind": "wildcard", "host": "*.example.com", "ports": [8443],
                 "preset": None},
            ],
        )

    def test_classify_is_deterministic(self) -> None:
        entries = ["b.com", "a.com:1", "@go", "10.0.0.1", "*.x.com"]
        self.assertEqual(_classify(entries), _classify(list(entries)))
        self.assertEqual(_classify(entries).allowlist, _classify(list(reversed(entries))).allowlist)


if __name__ == "__main__":
    unittest.main()


class GuardedRangesTest(unittest.TestCase):
    def test_every_range_the_bundle_blocks_is_opened_when_named(self) -> None:
        # Otherwise a rule naming such an address validates but can never work.
        for ip in ("198.18.0.5", "192.0.0.9", "240.0.0.1", "[fec0::1]"):
            with self.subTest(ip=ip):
                eg = _classify([ip])
                self.assertEqual(len(eg.ssrf_allow), 1, eg.ssrf_allow)

