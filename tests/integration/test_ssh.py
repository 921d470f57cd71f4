"""SSH from a real bottle, through the real bundle, to real sshd containers of our own.

The far side is a Docker network of ours holding two OpenSSH servers (tests/images/Dockerfile.sshd):
one that the manifest allows with `ssh://IP` (sshd listens on 22 and on 2222, which no rule names),
and one no rule names. The bundle joins that network through `egress.network`. Keys are made here
with ssh-keygen; the client key lives only in an ssh-agent started here, which the bottle reaches
through `ssh.agent: forward`, so no private key enters the bottle.

The same runs twice: on an ordinary Docker network, and on one with a Tailscale-style CGNAT subnet
(100.64.x.0/24), which the bundle's SSRF guard opens only for the address a rule names. When these
tests run as root, the CGNAT run launches claude-bottle as an unprivileged user (uid 4321, with
access to the Docker socket), so both ways the agent's uid is chosen are exercised: 10001 for a root
launcher, the launcher's own uid otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
import unittest

from claude_bottle import docker_argv
from tests.integration import support

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
SSHD_IMAGE = os.environ.get("CLAUDE_BOTTLE_TEST_SSHD_IMAGE", "claude-bottle/sshd-test:dev")
UNPRIVILEGED_UID = 4321
ROOT_AGENT_UID = 10001  # plan.AGENT_FALLBACK_UID


def docker_socket_group() -> int | None:
    """The Docker socket's group, when a member of it may use the socket (so a non-root launcher can)."""
    if os.environ.get("DOCKER_HOST"):
        return None
    try:
        info = os.stat("/var/run/docker.sock")
    except OSError:
        return None
    return info.st_gid if info.st_mode & stat.S_IRGRP and info.st_mode & stat.S_IWGRP else None


def as_user(uid: int, gid: int, groups: str = "") -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={groups}" if groups else "--clear-groups"]


class _SshBottle(unittest.TestCase):
    """One bottle run per class; the tests read its probe's results. Subclasses set `cgnat`.
    (Not run itself: it is deleted from the module below, so discovery finds only the subclasses.)"""

    cgnat = False
    results: dict[str, object]

    @classmethod
    def setUpClass(cls) -> None:
        support.require_images()
        for tool in ("ssh-keygen", "ssh-agent", "ssh-add", "setpriv"):
            if shutil.which(tool) is None:
                support.unavailable(f"{tool} is not installed (openssh-client, util-linux)")
        if subprocess.run(["docker", "image", "inspect", SSHD_IMAGE], capture_output=True).returncode != 0:
            support.unavailable(f"image {SSHD_IMAGE} missing; run .ci/build-images")
        cls.scratch = support.Scratch()
        cls.agent_proc: subprocess.Popen[bytes] | None = None
        try:
            cls._start(cls.scratch)
        except BaseException:
            cls._stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop()

    @classmethod
    def _stop(cls) -> None:
        if cls.agent_proc is not None:
            cls.agent_proc.terminate()
            try:
                cls.agent_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cls.agent_proc.kill()
                cls.agent_proc.wait()
        cls.scratch.close()

    @classmethod
    def _network(cls, s: support.Scratch) -> tuple[str, str | None]:
        name = support.unique_name("cbtest-sshnet")
        if not cls.cgnat:
            return s.network(name), None
        for _ in range(8):  # a random 100.64.x.0/24; another network may hold one already
            third = random.randint(1, 254)
            made = support.sh(["docker", "network", "create", "--label", s.label, "--subnet", f"100.64.{third}.0/24",
                               name], check=False)
            if made.returncode == 0:
                return name, f"100.64.{third}"
        raise AssertionError(f"no free 100.64.x.0/24 for a test network: {made.stderr.strip()}")

    @classmethod
    def _sshd(cls, s: support.Scratch, net: str, ip: str | None, host_key: str, client_pub: str) -> str:
        name = support.unique_name("cbtest-sshd")
        argv = ["docker", "create", "--name", name, "--label", s.label, "--network", net]
        support.sh(argv + (["--ip", ip] if ip else []) + [SSHD_IMAGE])
        with open(host_key, "rb") as key, open(client_pub, "rb") as pub:
            files = {"etc/ssh/ssh_host_ed25519_key": (key.read(), 0o600),
                     "etc/ssh/authorized_keys/git": (pub.read(), 0o644)}
        copied = subprocess.run(docker_argv.copy_in(name, "/"), input=docker_argv.tar_of(files), capture_output=True,
                                timeout=60)
        if copied.returncode != 0:
            raise AssertionError(f"copying keys into {name} failed: {copied.stderr.decode(errors='replace')}")
        support.sh(["docker", "start", name])
        support.wait_for(lambda: "port 2222" in support.sh(["docker", "logs", name]).stderr, 30, f"{name} listening")
        return name

    @classmethod
    def _start(cls, s: support.Scratch) -> None:
        os.chmod(s.dir, 0o755)  # an unprivileged launcher reads the manifest and known_hosts here
        net, prefix = cls._network(s)
        keys = os.path.join(s.dir, "keys")
        os.mkdir(keys, 0o700)
        for name in ("client", "host-allowed", "host-other"):
            support.sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", os.path.join(keys, name)])
        client = os.path.join(keys, "client")
        allowed = cls._sshd(s, net, f"{prefix}.10" if prefix else None, os.path.join(keys, "host-allowed"),
                            client + ".pub")
        other = cls._sshd(s, net, f"{prefix}.11" if prefix else None, os.path.join(keys, "host-other"), client + ".pub")
        cls.allowed, cls.allowed_ip, cls.other_ip = allowed, s.ip(allowed, net), s.ip(other, net)
        support.sh(["docker", "exec", "-u", "git", allowed, "sh", "-ec",
                    "git init -q --bare -b main /srv/repo.git; git clone -q /srv/repo.git /tmp/w 2>/dev/null; "
                    "cd /tmp/w; echo 'hello from the far side' > README; git add README; "
                    "git -c user.name=far -c user.email=far@example.invalid commit -qm init; git push -q origin main"])
        known = ""
        for ip, key in ((cls.allowed_ip, "host-allowed"), (cls.other_ip, "host-other")):
            with open(os.path.join(keys, key + ".pub")) as handle:
                known += f"{ip} {' '.join(handle.read().split()[:2])}\n"
        s.write("known_hosts", known)

        # Who launches: root (the agent then runs as 10001) or, for the CGNAT run when we are root, an
        # unprivileged user with access to the Docker socket (the agent runs as that user's uid).
        docker_gid = docker_socket_group()
        cls.launch_uid = os.geteuid()
        if cls.cgnat and os.geteuid() == 0 and docker_gid is not None:
            cls.launch_uid = UNPRIVILEGED_UID
        cls.agent_uid = ROOT_AGENT_UID if cls.launch_uid == 0 else cls.launch_uid
        prefix_argv = as_user(cls.launch_uid, cls.launch_uid, str(docker_gid)) if cls.launch_uid != os.geteuid() else []

        # A real ssh-agent holding the client key, running as the agent's uid (ssh-agent serves only its own
        # uid and root). The key is added by us; the bottle only ever sees the socket.
        agent_dir = os.path.join(s.dir, "ssh-agent")
        os.mkdir(agent_dir, 0o700)
        home = os.path.join(s.dir, "home")
        os.mkdir(home, 0o700)
        if os.geteuid() == 0:
            os.chown(agent_dir, cls.agent_uid, cls.agent_uid)
            os.chown(home, cls.launch_uid, cls.launch_uid)
        sock = os.path.join(agent_dir, "agent.sock")
        runs_as = as_user(cls.agent_uid, cls.agent_uid) if cls.agent_uid != os.geteuid() else []
        cls.agent_proc = subprocess.Popen([*runs_as, "ssh-agent", "-D", "-a", sock],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        support.wait_for(lambda: os.path.exists(sock), 10, "ssh-agent's socket")
        support.sh(["ssh-add", "-q", client], env={**os.environ, "SSH_AUTH_SOCK": sock})
        cls.client_fingerprint = support.sh(["ssh-keygen", "-l", "-f", client + ".pub"]).stdout.split()[1]

        workspace = os.path.join(s.dir, "ws")
        os.mkdir(workspace)
        os.chmod(workspace, 0o777)
        shutil.copy(os.path.join(FILES, "ssh_probe.py"), workspace)
        os.chmod(os.path.join(workspace, "ssh_probe.py"), 0o644)
        cls.bottle = support.unique_name("sshtest")
        manifest = s.manifest({
            "name": cls.bottle,
            "workspace": "ws",
            "agent": {"image": support.AGENT_TEST_IMAGE},
            "egress": {"allow": [f"ssh://{cls.allowed_ip}"], "network": net},
            "ssh": {"agent": "forward", "known_hosts": "known_hosts"},
        })
        env = support.launcher_env(SSH_AUTH_SOCK=sock, HOME=home)
        cwd = support.REPO
        if prefix_argv:
            # The checkout may sit in a directory only we can read (a `mktemp -d` clone): the other user
            # runs a copy of the package from the scratch directory, which it can read.
            shutil.copytree(os.path.join(support.REPO, "claude_bottle"), os.path.join(s.dir, "pkg", "claude_bottle"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            for root, dirs, files in os.walk(os.path.join(s.dir, "pkg")):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o644)
            os.chmod(os.path.join(s.dir, "pkg"), 0o755)
            env["PYTHONPATH"] = cwd = os.path.join(s.dir, "pkg")
        cls.launched = subprocess.run(
            [*prefix_argv, sys.executable, "-m", "claude_bottle", "start", manifest, "--",
             "python3", "/workspace/ssh_probe.py", cls.allowed_ip, cls.other_ip],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=400, env=env, cwd=cwd,
        )
        cls.results = support.probe_result(cls.launched)

    def r(self, key: str) -> dict[str, object]:
        value = self.results[key]
        assert isinstance(value, dict)
        return value

    def refused(self, key: str, *fragments: str) -> None:
        result = self.r(key)
        self.assertNotEqual(result["rc"], 0, result)
        for fragment in fragments:
            self.assertIn(fragment, str(result["err"]), result)

    # The tests.
    def test_launcher_exits_zero_and_removes_everything(self) -> None:
        self.assertEqual(self.launched.returncode, 0, self.launched.stderr)
        self.assertEqual(support.labelled(self.bottle), [])

    def test_ssh_runs_a_command_on_the_allowed_host(self) -> None:
        self.assertEqual(self.r("ssh_run")["rc"], 0, self.r("ssh_run"))
        self.assertEqual(self.r("ssh_run")["out"], "hello-over-ssh\n")

    def test_the_bottles_config_applies_without_user_config(self) -> None:
        config = str(self.r("ssh_G")["out"])
        self.assertIn("proxycommand /etc/claude-bottle/bottle-connect %h %p", config)
        self.assertIn("stricthostkeychecking true", config)
        self.assertIn("userknownhostsfile /etc/claude-bottle/known_hosts", config)

    def test_git_clone_over_ssh(self) -> None:
        self.assertEqual(self.r("clone")["rc"], 0, self.r("clone"))
        self.assertEqual(self.results["readme"], "hello from the far side\n")

    def test_git_push_over_ssh_reaches_the_server(self) -> None:
        self.assertEqual(self.r("push")["rc"], 0, self.r("push"))
        log = support.sh(["docker", "exec", "-u", "git", self.allowed, "git", "-C", "/srv/repo.git", "log",
                          "--format=%s", "main"]).stdout
        self.assertEqual(log.split("\n")[0], "pushed from the bottle")

    def test_another_port_of_the_allowed_host_is_refused_by_the_bundle(self) -> None:
        self.refused("other_port", "bottle-connect:", "403", f"port 2222 not allowed for {self.allowed_ip}")

    def test_an_sshd_no_rule_names_is_refused_by_the_bundle(self) -> None:
        self.refused("other_host", "bottle-connect:", "403", "host not in allowlist")
        self.refused("other_host_clone", "403", "host not in allowlist")

    def test_host_keys_are_checked_strictly(self) -> None:
        self.refused("unknown_host_key", "Host key verification failed")

    def test_key_comes_from_the_forwarded_agent_and_no_private_key_is_inside(self) -> None:
        self.assertEqual(self.results["ssh_auth_sock"], "/run/claude-bottle/ssh-agent.sock")
        self.assertIn(self.client_fingerprint, str(self.r("agent_keys")["out"]))
        self.assertEqual(self.results["private_keys"], [])

    def test_a_server_that_speaks_first_is_heard_through_mitmdump(self) -> None:
        # sshd sends its banner without waiting for the client. Through mitmdump alone (the bundle here
        # has no pipelock) the greeting arrives; pipelock's SNI check would hold it (see the README).
        self.assertTrue(str(self.r("server_speaks_first")["out"]).startswith("SSH-2.0-OpenSSH"),
                        self.r("server_speaks_first"))

    def test_agent_runs_as_the_expected_uid(self) -> None:
        self.assertEqual(self.results["uid"], self.agent_uid)


class SshThroughTheBundle(_SshBottle):
    """sshd on an ordinary Docker network, allowed by `ssh://IP`."""


class SshToATailscaleStyleAddress(_SshBottle):
    """sshd at 100.64.x.10 on a CGNAT-subnet network, allowed by `ssh://100.64.x.10`; 100.64.x.11 is not."""

    cgnat = True

    def test_addresses_are_cgnat(self) -> None:
        self.assertTrue(self.allowed_ip.startswith("100.64.") and self.allowed_ip.endswith(".10"), self.allowed_ip)
        self.assertTrue(self.other_ip.startswith("100.64.") and self.other_ip.endswith(".11"), self.other_ip)

    def test_launched_by_an_unprivileged_user(self) -> None:
        if os.geteuid() == 0 and self.launch_uid == 0:
            support.unavailable("running as root, but the Docker socket is not usable by its group")
        self.assertNotEqual(self.launch_uid, 0)
        self.assertEqual(self.results["uid"], self.launch_uid)
        self.assertNotEqual(self.results["user"], "agent")  # the image's own user is uid 10001, not this one


del _SshBottle  # the shared tests run once per subclass, never on their own


if __name__ == "__main__":
    unittest.main()
