"""Errors the CLI turns into one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

# Exit statuses, documented in the README. 125 mirrors `docker run`: the launcher itself failed.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LAUNCHER = 125


class BottleError(Exception):
    """A failure we can explain in one line."""

    exit_code = EXIT_FAILURE


class UsageError(BottleError):
    """Bad input from the user: a manifest, a flag, a file."""

    exit_code = EXIT_USAGE


class ManifestError(UsageError):
    """A problem at one field of one file: `FILE: FIELD: what is wrong`."""

    def __init__(self, file: str, field: str, message: str) -> None:
        self.file = file
        self.field = field
        self.message = message
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {message}")


class RuntimeFailure(BottleError):
    """The environment (Docker, smolvm, KVM) is missing or broken; nothing of ours is left running."""

    exit_code = EXIT_LAUNCHER


class Interrupted(BaseException):
    """A signal asked us to stop; BaseException so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
