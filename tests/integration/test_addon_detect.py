"""The DLP corpora through the real mitmdump and addon (scan mode), all on loopback.

Every attack case must be refused with a 403 that names what was found, and be logged as a `blocked`
line of kind dlp (or deny_list) with its rule ids; every benign case must reach the origin. Requests
go through a CONNECT tunnel to a local HTTPS origin with the case's path, query, headers and body; a
case about the host name itself (hostname labels, deny-listed services) is a CONNECT to that name under
a wildcard rule, refused before anything is dialled.
"""

from __future__ import annotations

import http.client
import unittest
import urllib.parse
from typing import Any

from claude_bottle.dlp import WARN_BY_DEFAULT
from tests.corpora import corpus
from tests.integration.test_addon_mitmdump import TIMEOUT, AddonTestBase, Mitmdump, proxy_connect

HOST_CATEGORIES = ("hostname-label", "deny-listed")


def _base(host: str, wildcard: str) -> str:
    """The wildcard rule a host-name case is allowed by: its own, or the name's last two labels."""
    return wildcard or ".".join(host.split(".")[-2:])


class CorporaThroughTheAddon(AddonTestBase):
    proxy: Mitmdump
    attacks: list[corpus.Case]
    benign: list[corpus.Case]

    @classmethod
    def setUpProxies(cls) -> None:
        cls.attacks, cls.benign = corpus.load(corpus.ATTACKS), corpus.load(corpus.BENIGN)
        bases = sorted({_base(urllib.parse.urlsplit(c.url).hostname or "", c.wildcard) for c in cls.attacks
                        if c.category in HOST_CATEGORIES})
        ports = [cls.port(cls.https)]
        # 127.0.0.1 stands for any host (scan); localhost for the model APIs, which are warn by default.
        rules: list[dict[str, Any]] = [{"host": h, "wildcard": False, "ports": ports} for h in ("127.0.0.1", "localhost")]
        rules += [{"host": b, "wildcard": True, "ports": [443]} for b in bases]
        cls.proxy = cls.start_proxy({"version": 1, "rules": rules, "ssrf_allow": ["127.0.0.0/8"], "upstream": None,
                                     "dlp": {"default": "scan", "hosts": [{"host": "localhost", "wildcard": False,
                                                                           "mode": "warn"}]}})

    def send(self, case: corpus.Case) -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(case.url)
        # An attack is sent to a scan host whatever its URL says; benign traffic keeps its host's mode.
        origin = "localhost" if case.expect == "pass" and parts.hostname in WARN_BY_DEFAULT else "127.0.0.1"
        if case.category in HOST_CATEGORIES:
            sent = parts.netloc.rpartition("@")[2].partition(":")[0]  # as written: .hostname lowercases
            status, body, sock = proxy_connect(self.proxy.port, sent, 443)
            sock.close()
            return status, body
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=TIMEOUT,
                                           context=self.proxy.client_tls())
        conn.set_tunnel(origin, self.port(self.https))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in case.headers
                   if k.lower() not in (b"host", b"content-length", b"transfer-encoding")}
        try:
            conn.request(case.method, target, body=case.body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def test_every_attack_is_refused_with_its_reason_in_the_403_and_the_log(self) -> None:
        for case in self.attacks:
            with self.subTest(case.id):
                status, body = self.send(case)
                self.assertEqual(status, 403, (case.id, body[:300]))
                self.assertTrue(body.startswith(b"claude-bottle: blocked: "), body[:300])
        blocked = [e for e in self.proxy.events("blocked") if e.get("kind") in ("dlp", "deny_list")]
        self.assertGreaterEqual(len(blocked), len(self.attacks) - sum(c.category == "deny-listed"
                                                                      for c in self.attacks))
        self.assertTrue(all(e.get("rules") for e in blocked if e.get("kind") == "dlp"))

    def test_the_benign_corpus_passes_whole(self) -> None:
        for case in self.benign:
            with self.subTest(case.id):
                status, body = self.send(case)
                self.assertNotEqual(status, 403, (case.id, body[:300]))


if __name__ == "__main__":
    unittest.main()
