"""The one seam through which claude-bottle runs other programs; tests swap in a recorder."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """What one command gave back."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = b""  # stdout as it came: a tar stream must not go through a text decoder


class Runner:
    """The seam itself: SubprocessRunner runs things, tests' FakeRunner records them. A plain base class,
    not a typing.Protocol: the dry run imports this, and typing is a tenth of its imports."""

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None) -> Result:
        """Run to completion, capturing output."""
        raise NotImplementedError

    def run_all(self, commands: Sequence[tuple[Sequence[str], bytes | None]], *, timeout: float | None = None
                ) -> list[Result]:
        """Run several (argv, input) at once, each to completion; results in the same order. For
        Docker calls that don't depend on each other: the daemon does their work side by side."""
        raise NotImplementedError

    def attach(self, argv: Sequence[str], *, stdout_to_stderr: bool = False) -> int:
        """Run with our stdin/stdout/stderr (the agent, image builds) and return its exit status;
        `stdout_to_stderr` sends the child's stdout to our stderr (progress that isn't the agent's)."""
        raise NotImplementedError

    def stream(self, argv: Sequence[str]) -> Iterator[str]:
        """Lines of a long-running command's stdout and stderr as they come (`docker logs --follow`);
        the command is stopped when the iteration ends early."""
        raise NotImplementedError


class SubprocessRunner(Runner):
    # subprocess is imported where it is used: a dry run makes a SubprocessRunner and never runs anything.
    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None) -> Result:
        import subprocess

        try:
            proc = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
        except FileNotFoundError:
            return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Result(tuple(argv), 124, "", f"{argv[0]}: timed out after {timeout} s")
        return Result(
            tuple(argv),
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
            proc.stdout,
        )

    def run_all(self, commands: Sequence[tuple[Sequence[str], bytes | None]], *, timeout: float | None = None
                ) -> list[Result]:
        import threading

        results: list[Result | None] = [None] * len(commands)

        def one(i: int, argv: Sequence[str], input: bytes | None) -> None:
            results[i] = self.run(argv, input=input, timeout=timeout)

        threads = [threading.Thread(target=one, args=(i, argv, input), daemon=True)
                   for i, (argv, input) in enumerate(commands)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [r if r is not None else Result(tuple(c[0]), 1, "", "not run") for r, c in zip(results, commands)]

    def stream(self, argv: Sequence[str]) -> Iterator[str]:
        import subprocess

        try:
            proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace")
        except FileNotFoundError:
            return
        assert proc.stdout is not None
        try:
            yield from proc.stdout
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait()

    def attach(self, argv: Sequence[str], *, stdout_to_stderr: bool = False) -> int:
        import subprocess

        try:
            proc = subprocess.Popen(list(argv), stdout=sys.stderr if stdout_to_stderr else None)
        except FileNotFoundError:
            return 127
        try:
            return proc.wait()
        finally:
            # Reached with the child still running only when a signal handler raised: stop it too.
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
