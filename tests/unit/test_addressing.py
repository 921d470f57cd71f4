"""Unit tests for claude_bottle.addressing: pinned 192.168.N.0/24 bundle subnets."""

from __future__ import annotations

import hashlib
import ipaddress
import unittest

from claude_bottle import addressing
from claude_bottle.addressing import first_free_subnet, smolmachines_bundle_subnet

SLUGS = [f"bottle-{i}" for i in range(500)]


def _start(slug: str) -> int:
    """The first candidate, as addressing documents it (sha256 of the slug, mod 256)."""
    return int.from_bytes(hashlib.sha256(slug.encode()).digest()[:4], "big") % 256


def _slug_hashing_to(n: int) -> str:
    return next(s for s in (f"s{i}" for i in range(100_000)) if _start(s) == n)


def _third(subnet: str) -> int:
    return int(subnet.split(".")[2])


class SubnetTest(unittest.TestCase):
    def test_shape(self) -> None:
        subnet, gateway, ip = smolmachines_bundle_subnet("demo")
        net = ipaddress.ip_network(subnet)
        self.assertEqual(net.prefixlen, 24)
        self.assertTrue(net.subnet_of(ipaddress.ip_network("192.168.0.0/16")))
        self.assertEqual(ipaddress.ip_address(gateway), net.network_address + 1)
        self.assertEqual(ipaddress.ip_address(ip), net.network_address + 2)

    def test_stable(self) -> None:
        for slug in ("demo", "a", "my-project", "x" * 40):
            with self.subTest(slug=slug):
                first = smolmachines_bundle_subnet(slug)
                self.assertEqual(first, smolmachines_bundle_subnet(slug))
                self.assertEqual(first, first_free_subnet(slug, []))
                self.assertEqual(first, first_free_subnet(slug, ()))

    def test_known_value(self) -> None:
        # Pinned: changing the hash would move every existing bottle's bundle.
        n = _start("demo")
        want = n if n != 17 else 18
        self.assertEqual(smolmachines_bundle_subnet("demo"), (f"192.168.{want}.0/24", f"192.168.{want}.1",
                                                              f"192.168.{want}.2"))

    def test_spread(self) -> None:
        thirds = {_third(smolmachines_bundle_subnet(s)[0]) for s in SLUGS}
        self.assertGreater(len(thirds), 150)

    def test_never_17(self) -> None:
        for slug in SLUGS:
            self.assertNotEqual(_third(smolmachines_bundle_subnet(slug)[0]), 17, slug)
        self.assertIn(17, addressing.SKIPPED_THIRD_OCTETS)

    def test_slug_hashing_to_17_moves_on(self) -> None:
        slug = _slug_hashing_to(17)
        self.assertEqual(smolmachines_bundle_subnet(slug), ("192.168.18.0/24", "192.168.18.1", "192.168.18.2"))

    def test_slug_hashing_to_16_skips_17_when_taken(self) -> None:
        slug = _slug_hashing_to(16)
        self.assertEqual(smolmachines_bundle_subnet(slug)[0], "192.168.16.0/24")
        self.assertEqual(first_free_subnet(slug, ["192.168.16.0/24"])[0], "192.168.18.0/24")

    def test_wraps_around_255(self) -> None:
        slug = _slug_hashing_to(255)
        self.assertEqual(first_free_subnet(slug, ["192.168.255.0/24"])[0], "192.168.0.0/24")


class FirstFreeTest(unittest.TestCase):
    def setUp(self) -> None:
        self.slug = "demo"
        self.home = _third(smolmachines_bundle_subnet(self.slug)[0])

    def _next(self, n: int) -> int:
        n = (n + 1) % 256
        return n + 1 if n == 17 else n

    def test_skips_exactly_taken(self) -> None:
        subnet, gateway, ip = first_free_subnet(self.slug, [f"192.168.{self.home}.0/24"])
        nxt = self._next(self.home)
        self.assertEqual((subnet, gateway, ip), (f"192.168.{nxt}.0/24", f"192.168.{nxt}.1", f"192.168.{nxt}.2"))

    def test_skips_overlapping(self) -> None:
        nxt = self._next(self.home)
        for taken in (f"192.168.{self.home}.128/25", f"192.168.{self.home}.5/32", f"192.168.{self.home}.77/24",
                      f"192.168.{self.home}.0/23" if self.home % 2 == 1 else f"192.168.{self.home}.0/25"):
            with self.subTest(taken=taken):
                got = _third(first_free_subnet(self.slug, [taken])[0])
                self.assertNotEqual(got, self.home)
                if not taken.endswith("/23"):
                    self.assertEqual(got, nxt)

    def test_wide_route_covering_several(self) -> None:
        taken = str(ipaddress.ip_network(f"192.168.{self.home}.0/22", strict=False))
        got = first_free_subnet(self.slug, [taken])[0]
        self.assertFalse(ipaddress.ip_network(got).overlaps(ipaddress.ip_network(taken)))

    def test_ignores_unrelated(self) -> None:
        want = smolmachines_bundle_subnet(self.slug)
        taken = ["10.0.0.0/8", "172.17.0.0/16", "192.169.0.0/16", "fd00::/8", "::/0", "192.167.0.0/16"]
        self.assertEqual(first_free_subnet(self.slug, taken), want)

    def test_deterministic(self) -> None:
        taken = [f"192.168.{n}.0/24" for n in range(0, 256, 3)]
        first = first_free_subnet(self.slug, taken)
        for _ in range(5):
            self.assertEqual(first_free_subnet(self.slug, list(reversed(taken))), first)
        self.assertNotIn(first[0], taken)

    def test_accepts_any_iterable(self) -> None:
        taken = (f"192.168.{self.home}.0/24" for _ in range(1))
        self.assertNotEqual(_third(first_free_subnet(self.slug, taken)[0]), self.home)

    def test_all_taken_raises(self) -> None:
        with self.assertRaises(ValueError):
            first_free_subnet(self.slug, ["192.168.0.0/16"])
        with self.assertRaises(ValueError):
            first_free_subnet(self.slug, [f"192.168.{n}.0/24" for n in range(256) if n != 17])
        with self.assertRaises(ValueError):
            first_free_subnet(self.slug, ["0.0.0.0/0"])

    def test_only_17_free_still_raises(self) -> None:
        # 17 is never used, even when it is the last free /24.
        with self.assertRaises(ValueError):
            first_free_subnet(self.slug, [f"192.168.{n}.0/24" for n in range(256) if n != 17])

    def test_last_free_is_found(self) -> None:
        free = (self.home + 100) % 256
        if free == 17:
            free = 18
        taken = [f"192.168.{n}.0/24" for n in range(256) if n != free]
        self.assertEqual(first_free_subnet(self.slug, taken)[0], f"192.168.{free}.0/24")

    def test_bad_cidr_raises(self) -> None:
        with self.assertRaises(ValueError):
            first_free_subnet(self.slug, ["not-a-cidr"])


if __name__ == "__main__":
    unittest.main()
