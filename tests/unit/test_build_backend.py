"""The standard-library build backend: a wheel with the whole package, right metadata and a valid RECORD."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import tarfile
import tempfile
import unittest
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("cb_backend", os.path.join(ROOT, "_build", "backend.py"))
backend = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(backend)  # type: ignore[union-attr]


class WheelTest(unittest.TestCase):
    def setUp(self) -> None:
        self.out = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(self.out, True))

    def test_wheel_holds_the_package_and_its_data_files(self) -> None:
        name = backend.build_wheel(self.out)
        self.assertRegex(name, r"^claude_bottle-\d+\.\d+\.\d+-py3-none-any\.whl$")
        with zipfile.ZipFile(os.path.join(self.out, name)) as wheel:
            names = set(wheel.namelist())
            self.assertIn("claude_bottle/cli.py", names)
            self.assertIn("claude_bottle/bundle/Dockerfile.sidecars", names)
            self.assertIn("claude_bottle/agent/Dockerfile.agent", names)
            self.assertFalse([n for n in names if "__pycache__" in n or n.endswith(".pyc")])
            info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
            self.assertIn("claude-bottle = claude_bottle.cli:main", wheel.read(info).decode())
            meta = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
            self.assertIn("Requires-Python: >=3.11", meta)
            record = wheel.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
            for line in record.splitlines():
                path, digest, size = line.rsplit(",", 2)
                if not digest:
                    continue
                data = wheel.read(path)
                expect = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                self.assertEqual(digest, f"sha256={expect}", path)
                self.assertEqual(int(size), len(data), path)

    def test_sdist_builds_again_from_itself(self) -> None:
        name = backend.build_sdist(self.out)
        with tarfile.open(os.path.join(self.out, name)) as sdist:
            names = sdist.getnames()
        self.assertTrue(any(n.endswith("/_build/backend.py") for n in names))
        self.assertTrue(any(n.endswith("/claude_bottle/cli.py") for n in names))

    def test_no_build_requirements(self) -> None:
        self.assertEqual(backend.get_requires_for_build_wheel(), [])


if __name__ == "__main__":
    unittest.main()
