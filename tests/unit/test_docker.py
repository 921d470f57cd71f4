"""docker.py's decisions that need no engine: what it runs before anything is created."""

from __future__ import annotations

import os
import unittest
from collections.abc import Sequence
from unittest import mock

from claude_bottle import docker, images
from claude_bottle.errors import RuntimeFailure
from claude_bottle.runner import Result


class LabelRunner:
    """Answers `docker image inspect` with a fixed pipelock label; records every command."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append(tuple(argv))
        out = self.label if "--format" in argv and images.PIPELOCK_LABEL in " ".join(argv) else "sha256:x"
        return Result(tuple(argv), 0, out + "\n", "")

    def attach(self, argv: Sequence[str], **_: object) -> int:
        self.calls.append(tuple(argv))
        return 0


class Plan:
    sidecars_image = "claude-bottle/sidecars:test"
    agent_image = images.AGENT_IMAGE


class EnsureImagesTest(unittest.TestCase):
    def test_an_image_without_pipelock_is_refused_before_anything_is_created(self) -> None:
        runner = LabelRunner("absent")
        with mock.patch.dict(os.environ, {docker.NO_PIPELOCK_ENV: ""}):
            with self.assertRaises(RuntimeFailure) as caught:
                docker.ensure_images(runner, Plan())  # type: ignore[arg-type]
        self.assertIn("built without pipelock", str(caught.exception))
        self.assertFalse([c for c in runner.calls if c[1:2] in (("create",), ("run",), ("network",))])

    def test_accepted_by_name(self) -> None:
        runner = LabelRunner("absent")
        with mock.patch.dict(os.environ, {docker.NO_PIPELOCK_ENV: "1"}):
            docker.ensure_images(runner, Plan())  # type: ignore[arg-type]

    def test_present_passes(self) -> None:
        docker.ensure_images(LabelRunner("present"), Plan())  # type: ignore[arg-type]


class PipelockStateTest(unittest.TestCase):
    def test_only_the_placeholder_says_absent(self) -> None:
        self.assertEqual(docker.pipelock_state(LabelRunner("absent"), {}), "present")  # the pinned upstream
        self.assertEqual(docker.pipelock_state(LabelRunner("absent"), {"PIPELOCK_IMAGE": "x"}), "absent")
        self.assertEqual(docker.pipelock_state(LabelRunner(""), {"PIPELOCK_IMAGE": "x"}), "present")


if __name__ == "__main__":
    unittest.main()
