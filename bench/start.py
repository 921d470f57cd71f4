"""Wall time of a whole bottle (`claude-bottle start M -- true` as a user runs it: the launcher's own
start-up and checks, up, run, down) against a bare `docker run --rm AGENT_IMAGE true`, alternating in
one run so the ratio survives a noisy host. Goal: under 4x. Also prints where a bottle's time goes,
from one more run's docker calls.

    python3 bench/start.py [ROUNDS]       (needs Docker and the images from .ci/build-images)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from claude_bottle import docker, manifest as manifest_mod, paths, plan as plan_mod, session  # noqa: E402
from claude_bottle.runner import Result, SubprocessRunner  # noqa: E402

AGENT = os.environ.get("CLAUDE_BOTTLE_TEST_AGENT_IMAGE", "claude-bottle/agent-test:dev")


class PhaseRunner(SubprocessRunner):
    """Times each docker subcommand, to show where the time goes."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    def _note(self, argv: list[str] | tuple[str, ...], seconds: float) -> None:
        key = " ".join(argv[1:3]) if argv[1] in ("network", "image") else argv[1]
        if argv[1] == "exec":
            key = "exec (health/CA)"
        self.phases[key] = self.phases.get(key, 0.0) + seconds

    def run(self, argv, *, input=None, timeout=None) -> Result:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super().run(argv, input=input, timeout=timeout)
        finally:
            self._note(argv, time.perf_counter() - start)

    def attach(self, argv) -> int:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super().attach(argv)
        finally:
            self._note(["docker", "start --attach (agent run)"], time.perf_counter() - start)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    from tests.integration import support

    if not support.pipelock_in_bundle():
        print("bench: pipelock absent from the sidecars image: figures are for mitmdump alone", file=sys.stderr)
        os.environ["CLAUDE_BOTTLE_ALLOW_NO_PIPELOCK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = tmp  # each bottle saves its audit log; keep them out of the user's
        path = os.path.join(tmp, "bench.json")
        with open(path, "w") as handle:
            json.dump({"name": "bench", "agent": {"image": AGENT, "state": "ephemeral"}}, handle)
        # What a user runs, whole: the launcher's own start-up, its checks, up, `true`, down.
        cli = [sys.executable, "-m", "claude_bottle", "start", path, "--", "true"]
        bare: list[float] = []
        bottle: list[float] = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", AGENT, "true"], check=True)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(cli, check=True, cwd=REPO, stderr=subprocess.DEVNULL)
            bottle.append(time.perf_counter() - start)
        # Where the time goes: the same bottle once more, in this process, each docker call timed.
        manifest = manifest_mod.load(path)
        runner = PhaseRunner()
        plan = plan_mod.build(manifest, session.new_id(), command=("true",), uid=os.getuid(), gid=os.getgid(),
                              launcher=session.launcher_id())
        start = time.perf_counter()
        code = docker.start(plan, {}, runner, paths.state_dir())
        phased = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"bottle exited {code}")
    mb, ma = statistics.median(bottle), statistics.median(bare)
    print(f"docker run --rm {AGENT} true   median {ma:6.2f} s")
    print(f"claude-bottle start M -- true  median {mb:6.2f} s")
    print(f"ratio                          {mb / ma:6.2f}x  (goal < 4x, moonshot 2.5x; {rounds} alternating rounds)")
    print(f"where a bottle's time goes (one more run, in-process: {phased:.2f} s; calls side by side overlap):")
    for key, value in sorted(runner.phases.items(), key=lambda kv: -kv[1]):
        print(f"  {key:34s} {value:6.2f} s")


if __name__ == "__main__":
    main()
