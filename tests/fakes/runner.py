"""The one fake of the runner seam (claude_bottle.runner.Runner) for unit tests.

It records every command, answers `run` from a handler (argv -> (code, stdout, stderr[, raw stdout])
or None for the default), `attach` from another, and `stream` from a list of lines. The default is
just enough of Docker for the executors to run a whole session: a server version, a ready bundle
with a CA, and images that exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Union

from claude_bottle.runner import Result, Runner

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
Answer = Union[tuple[int, str, str], tuple[int, str, str, bytes]]


def ok(out: str = "") -> tuple[int, str, str]:
    return 0, out, ""


def docker_default(command: list[str]) -> Answer:
    """Enough of Docker for sidecars.start_bundle, wait_bundle and session.teardown to succeed."""
    if command[:2] == ["docker", "version"]:
        return ok("20.10.24\n")
    if command[:2] == ["docker", "exec"] and "--ca" in command:
        return ok(PEM)
    if command[:2] == ["docker", "exec"] and "--wait" in command:
        return ok(json.dumps({"ca": PEM, "pipelock": True}) + "\n")
    if command[:2] == ["docker", "image"] and "index .Config.Labels" in " ".join(command):
        return ok("present\n")
    if command[:2] == ["docker", "image"] and "json .Config.Entrypoint" in " ".join(command):
        return ok('null\t["sleep","infinity"]\n')  # an image with a CMD and no ENTRYPOINT
    if command[:2] == ["docker", "image"]:
        return ok("sha256:" + "ab" * 32 + "\n")
    return ok()


class FakeRunner(Runner):
    def __init__(self, handler: Callable[[list[str]], Answer | None] | None = None,
                 attach: Callable[[list[str]], int] | None = None, lines: Sequence[str] = ()) -> None:
        self.handler = handler or (lambda a: None)
        self.on_attach = attach or (lambda a: 0)
        self.lines = list(lines)
        self.calls: list[list[str]] = []
        self.inputs: list[tuple[list[str], bytes | None]] = []

    def run(self, command: Sequence[str], *, input: bytes | None = None, timeout: float | None = None) -> Result:
        argv = list(command)
        self.calls.append(argv)
        self.inputs.append((argv, input))
        answer = self.handler(argv) or docker_default(argv)
        raw = answer[3] if len(answer) == 4 else answer[1].encode()  # type: ignore[misc]
        return Result(tuple(argv), answer[0], answer[1], answer[2], raw)

    def run_all(self, commands: Sequence[tuple[Sequence[str], bytes | None]], *, timeout: float | None = None
                ) -> list[Result]:
        """In order, one after the other: what the executors asked for, deterministically recorded."""
        return [self.run(argv, input=input, timeout=timeout) for argv, input in commands]

    def attach(self, command: Sequence[str], **_: object) -> int:
        self.calls.append(list(command))
        return self.on_attach(list(command))

    def stream(self, command: Sequence[str]) -> Iterator[str]:
        self.calls.append(list(command))
        yield from self.lines

    def index(self, prefix: list[str]) -> int:
        return next(i for i, c in enumerate(self.calls) if c[: len(prefix)] == prefix)
