"""What runs before anything is created (sidecars.py): the engine, the images, pipelock's presence."""

from __future__ import annotations

import os
import unittest
from unittest import mock

from claude_bottle import images, manifest, plan, sidecars
from claude_bottle.errors import RuntimeFailure
from tests.fakes.runner import FakeRunner


def labelled(value: str) -> FakeRunner:
    """Every image exists; its pipelock label says `value`."""
    return FakeRunner(lambda argv: (0, value + "\n", "") if images.PIPELOCK_LABEL in " ".join(argv) else None)


PLAN = plan.build(manifest.parse({"name": "demo"}, "/nowhere/m.json"), "abcd1234")
CREATES = (["docker", "create"], ["docker", "run"], ["docker", "network"], ["docker", "build"])


class EnsureImagesTest(unittest.TestCase):
    def test_an_image_without_pipelock_is_refused_before_anything_is_created(self) -> None:
        runner = labelled("absent")
        with mock.patch.dict(os.environ, {sidecars.NO_PIPELOCK_ENV: ""}):
            with self.assertRaises(RuntimeFailure) as caught:
                sidecars.ensure_images(runner, PLAN)
        self.assertIn("built without pipelock", str(caught.exception))
        self.assertFalse([c for c in runner.calls if c[:2] in CREATES])

    def test_accepted_by_name(self) -> None:
        with mock.patch.dict(os.environ, {sidecars.NO_PIPELOCK_ENV: "1"}):
            sidecars.ensure_images(labelled("absent"), PLAN)

    def test_present_passes(self) -> None:
        sidecars.ensure_images(labelled("present"), PLAN)


class PipelockStateTest(unittest.TestCase):
    def test_only_the_placeholder_says_absent(self) -> None:
        self.assertEqual(sidecars.pipelock_state(labelled("absent"), {}), "present")  # the pinned upstream
        self.assertEqual(sidecars.pipelock_state(labelled("absent"), {"PIPELOCK_IMAGE": "x"}), "absent")
        self.assertEqual(sidecars.pipelock_state(labelled(""), {"PIPELOCK_IMAGE": "x"}), "present")


class BuildTest(unittest.TestCase):
    def test_progress_goes_to_stderr_and_the_dangling_stage_is_pruned(self) -> None:
        seen: list[dict[str, object]] = []

        class Recording(FakeRunner):
            def attach(self, command: list[str], **kw: object) -> int:  # type: ignore[override]
                seen.append(kw)
                return super().attach(command)

        runner = Recording()
        with mock.patch("sys.stderr"):
            sidecars.build(runner, images.sidecars_build("t:1", {}))
        self.assertEqual(seen, [{"stdout_to_stderr": True}])
        self.assertEqual(runner.calls[-1][:3], ["docker", "image", "prune"])


if __name__ == "__main__":
    unittest.main()


class NotReadyTest(unittest.TestCase):
    """Why a bundle never became ready: what the wait said, and how the bundle ended if it did."""

    def reason(self, said: str, state: str) -> str:
        import contextlib
        import io

        from claude_bottle.runner import Result

        runner = FakeRunner(lambda a: (0, state + "\n", "") if a[:3] == ["docker", "container", "inspect"] else None)
        with contextlib.redirect_stderr(io.StringIO()):
            error = sidecars.not_ready(runner, PLAN.container("bundle"), Result(("docker", "exec"), 1, "", said))
        return str(error)

    def test_a_bundle_that_ended_says_how_even_when_the_engine_said_something_first(self) -> None:
        # The exec raced the bundle's exit: the engine's error alone would hide that the bundle died.
        said = "OCI runtime exec failed: exec failed: unable to start container process: broken pipe"
        self.assertEqual(self.reason(said, "exited (exit 1)"),
                         f"the bundle did not become ready: {said}; its container is exited (exit 1)")
        self.assertEqual(self.reason("", "exited (exit 1)"),
                         "the bundle did not become ready: no answer; its container is exited (exit 1)")

    def test_a_running_bundle_gives_the_supervisors_reason_alone(self) -> None:
        self.assertEqual(self.reason("not ready: pipelock did not answer", "running (exit 0)"),
                         "the bundle did not become ready: not ready: pipelock did not answer")
