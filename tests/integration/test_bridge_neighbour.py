"""The bundle egresses by Docker's default bridge, which other containers share: attacked from there.

A running bottle (its agent sleeps) with a secret the bundle would inject for an allowed host; then a
container of ours on the default bridge, as any neighbour would be, tries every TCP port of the
bundle's bridge address, and asks it to proxy with the placeholder. Nothing may answer: the bundle's
proxy listens on its loopback and on the Unix socket in the volume its agent mounts, nowhere else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import unittest

from tests.integration import support

# Runs in the neighbour: every port of the bundle's address, then one proxy request per known port.
ATTACK = r"""
import json, socket, sys
ip = sys.argv[1]
open_ports = []
for port in range(1, 65536):
    s = socket.socket()
    s.settimeout(0.5)
    if s.connect_ex((ip, port)) == 0:
        open_ports.append(port)
    s.close()
answers = {}
for port in (8080, 8888):
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            s.sendall(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer "
                      + sys.argv[2].encode() + b"\r\n\r\n")
            answers[port] = s.recv(200).decode(errors="replace")
    except OSError as exc:
        answers[port] = f"failed: {exc}"
print("NEIGHBOUR " + json.dumps({"open": open_ports, "answers": answers}))
"""


class BundleFromTheBridge(unittest.TestCase):
    def test_a_neighbour_on_the_default_bridge_reaches_nothing_of_the_bundle(self) -> None:
        support.require_images()
        s = support.Scratch()
        self.addCleanup(s.close)
        bottle = support.unique_name("neighbour")
        manifest = s.manifest({
            "name": bottle,
            "agent": {"image": support.AGENT_TEST_IMAGE},
            "egress": {"allow": ["api.example.com"]},
            "secrets": {"API_TOKEN": {"from_env": "CB_TEST_TOKEN", "inject": {"hosts": ["api.example.com"], "header": "Authorization"}}},
        })
        launcher = subprocess.Popen(
            [sys.executable, "-m", "claude_bottle", "start", manifest, "--", "sleep", "120"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=support.REPO,
            env=support.launcher_env(CB_TEST_TOKEN="real-token-never-seen"),
        )
        try:
            bundle = self._running_bundle(bottle, launcher)
            nets = json.loads(support.sh(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                          bundle]).stdout)
            self.assertEqual(list(nets), ["bridge"])
            ip = nets["bridge"]["IPAddress"]
            attack = support.sh(["docker", "run", "--rm", "--label", s.label, "--network", "bridge",
                                 support.AGENT_TEST_IMAGE, "python3", "-c", ATTACK, ip, "placeholder"], timeout=300)
            line = next(x for x in attack.stdout.splitlines() if x.startswith("NEIGHBOUR "))
            found = json.loads(line.removeprefix("NEIGHBOUR "))
            self.assertEqual(found["open"], [], f"the bundle at {ip} answers its neighbours on these ports")
            for port, answer in found["answers"].items():
                self.assertTrue(answer.startswith("failed"), (port, answer))
        finally:
            launcher.send_signal(signal.SIGTERM)
            _, err = launcher.communicate(timeout=120)
        self.assertEqual(support.labelled(bottle), [], err[-2000:])

    def _running_bundle(self, bottle: str, launcher: subprocess.Popen[str]) -> str:
        names: list[str] = []

        def up() -> bool:
            if launcher.poll() is not None:
                raise AssertionError(f"the bottle ended early: {launcher.communicate()[1][-2000:]}")
            out = support.sh(["docker", "ps", "--filter", f"label=org.claude-bottle.bottle={bottle}",
                              "--filter", "label=org.claude-bottle.role=agent", "--format", "{{.Names}}"]).stdout
            names[:] = out.split()
            return bool(names)

        support.wait_for(up, 120, "the bottle's agent to run")
        return names[0].removesuffix("-agent") + "-bundle"


if __name__ == "__main__":
    unittest.main()
