"""What every runtime shares about a session: its id, turning signals into exceptions, and teardown.

Teardown works by label, not by memory of what was created: it removes whatever carries the session's
label, so a resource created just as a signal arrived is still found, and running it twice is harmless.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from claude_bottle.errors import Interrupted
from claude_bottle.plan import LABEL

TYPE_CHECKING = False  # the dry run imports this module for the ids alone: keep it light
if TYPE_CHECKING:
    from claude_bottle.runner import Runner

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def new_id() -> str:
    return os.urandom(4).hex()


def placeholder_seed() -> str:
    """Unguessable per session: whoever can reach the bundle must not be able to work out a placeholder."""
    return os.urandom(16).hex()


def launcher_id() -> str:
    """Written on every resource so `cleanup` can tell a live session from an orphan."""
    return f"{os.uname().nodename}:{os.getpid()}"  # what socket.gethostname() returns, without socket


def launcher_alive(value: str) -> bool:
    host, _, pid = value.rpartition(":")
    if not pid.isdigit():
        return False  # no launcher recorded: nothing can still be running it
    if host != os.uname().nodename:
        return True  # another machine's launcher (a shared Docker host): assume alive; --force overrides
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SignalGuard:
    """SIGINT/SIGTERM/SIGHUP raise Interrupted while armed, and are ignored once shielded.

    Shielding before the handlers are restored closes the window in which a signal arriving during
    cleanup would kill the launcher with the bottle half removed.
    """

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}

    def arm(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            raise Interrupted(signum)

        for sig in HANDLED:
            old = signal.signal(sig, handler)
            self._previous.setdefault(sig, old)

    def shield(self) -> None:
        for sig in HANDLED:
            old = signal.signal(sig, signal.SIG_IGN)
            self._previous.setdefault(sig, old)

    def restore(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._previous.clear()


def guarded(body: Callable[[], int], cleanup: Callable[[], list[str]]) -> int:
    """Run a session's body with signals turned into Interrupted, then always run its cleanup.

    Returns the body's exit status, or 128+N after signal N. Cleanup runs shielded from further
    signals, and whatever it reports (or raises) is printed, never allowed to skip the rest."""
    guard = SignalGuard()
    try:
        guard.arm()
        return body()
    except Interrupted as stop:
        guard.shield()
        warn(f"stopped by signal {stop.signum}; removing the bottle")
        return stop.exit_code
    finally:
        guard.shield()
        try:
            problems = cleanup()
        except Exception as exc:  # a cleanup bug must not hide the session's own outcome
            problems = [f"{type(exc).__name__}: {exc}"]
        for problem in problems:
            warn(f"cleanup: {problem}")
        guard.restore()


def save_then(save: Callable[[], None], remove: Callable[[], list[str]]) -> list[str]:
    """Save what must outlive the session (the audit log), then remove it all; a failed save is
    reported, and never stops the removal."""
    problems: list[str] = []
    try:
        save()
    except Exception as exc:
        problems.append(f"saving the session's log failed: {exc}")
    return problems + remove()


def teardown(runner: Runner, label: str, extra: Callable[[], None] | None = None,
             known: tuple[list[str], list[str]] | None = None) -> list[str]:
    """Remove every container, then every network, carrying `label`. Returns problems, never raises.

    `known` (container names, network names): a session whose every create returned, so nothing else
    can carry its label; they are removed by name, side by side, and the listings are only the
    fallback when a removal fails."""
    from claude_bottle import docker_argv

    problems: list[str] = []
    if extra is not None:
        try:
            extra()
        except Exception as exc:  # keep going: the containers and networks matter more
            problems.append(str(exc))
    if known is not None and remove_known(runner, *known):
        return problems
    for kind in ("container", "network"):
        # Until a listing comes back empty: a create cut short by a signal may still land in the daemon
        # after an earlier listing, and a network can report endpoints a moment after its containers go.
        for attempt in range(6):
            listed = runner.run(docker_argv.list_by_label(kind, label), timeout=60)
            ids = listed.stdout.split()
            if listed.returncode != 0:
                problems.append(f"listing {kind}s failed: {listed.stderr.strip()}")
                break
            if not ids:
                break
            if attempt == 5:
                problems.append(f"{kind}s still present after removal: {' '.join(ids)}")
                break
            removed = runner.run(docker_argv.remove(kind, ids), timeout=120)
            if removed.returncode != 0:
                if attempt == 4:
                    problems.append(f"removing {kind}s failed: {removed.stderr.strip()}")
                time.sleep(0.2 * (attempt + 1))
    return problems


def remove_known(runner: Runner, containers: list[str], networks: list[str]) -> bool:
    """Containers (with their anonymous volumes), then networks, by name; True if all went."""
    from claude_bottle import docker_argv

    if containers and runner.run(docker_argv.remove("container", containers), timeout=120).returncode != 0:
        return False
    removed = runner.run_all([(docker_argv.remove("network", [name]), None) for name in networks], timeout=120)
    return all(r.returncode == 0 for r in removed)


def session_label(session: str) -> str:
    return f"{LABEL}.session={session}"


def warn(message: str) -> None:
    print(f"claude-bottle: {message}", file=sys.stderr)
