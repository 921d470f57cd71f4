import hashlib
import unittest

from claude_bottle import digest


class DigestTest(unittest.TestCase):
    def test_same_digests_as_hashlib(self) -> None:
        for data in (b"", b"claude-bottle", bytes(range(256)) * 300):
            with self.subTest(size=len(data)):
                self.assertEqual(digest.sha256(data).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_incremental_updates(self) -> None:
        d = digest.sha256()
        d.update(b"a\0")
        d.update(b"b")
        self.assertEqual(d.hexdigest(), hashlib.sha256(b"a\0b").hexdigest())


if __name__ == "__main__":
    unittest.main()
