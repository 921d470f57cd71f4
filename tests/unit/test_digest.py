import hashlib
import subprocess
import sys
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

    def test_dry_run_path_does_not_load_openssl(self) -> None:
        # The reason the module exists: a Docker dry run should not pay for libcrypto.
        code = ("import sys, claude_bottle.plan, claude_bottle.commands.start; "
                "print('hashlib' in sys.modules, '_hashlib' in sys.modules)")
        out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.split(), ["False", "False"], out.stderr)


if __name__ == "__main__":
    unittest.main()
