"""Runs inside a bottle's agent container: SSH and git over SSH through the bundle, printing JSON results.

Usage: ssh_probe.py ALLOWED_IP OTHER_IP
ALLOWED_IP runs sshd on 22 (named by an ssh:// rule) and 2222 (named by none); OTHER_IP runs sshd on 22
and no rule names it. Both host keys are in the bottle's known_hosts, so a refusal is the bundle's.
"""

import json
import os
import pwd
import select
import subprocess
import sys

allowed, other = sys.argv[1:3]
results: dict[str, object] = {}
BATCH = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]


def run(argv: list[str], timeout: float = 90, **kw: object) -> dict[str, object]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        return {"rc": None, "out": "", "err": f"timed out after {timeout} s"}
    return {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def first_bytes_unprompted(host: str, port: str) -> dict[str, object]:
    """Open a tunnel and send nothing: does a server that speaks first get its greeting through?"""
    proc = subprocess.Popen(["/etc/claude-bottle/bottle-connect", host, port], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    # stdin stays open and silent: a client that waits for the server, as SMTP or MySQL clients do.
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    out = os.read(proc.stdout.fileno(), 200) if ready else b""
    proc.kill()
    _, err = proc.communicate()
    return {"out": out.decode(errors="replace"), "err": err.decode(errors="replace"), "waited": not ready}


def private_keys_under(*roots: str) -> list[str]:
    found = []
    for root in roots:
        for base, _, files in os.walk(root):
            for name in files:
                path = os.path.join(base, name)
                try:
                    with open(path, "rb") as handle:
                        if b"PRIVATE" + b" KEY" in handle.read(1 << 20):  # split: this file holds no key
                            found.append(path)
                except OSError:
                    pass
    return found


results["uid"] = os.getuid()
results["user"] = pwd.getpwuid(os.getuid()).pw_name
results["ssh_auth_sock"] = os.environ.get("SSH_AUTH_SOCK")
results["agent_keys"] = run(["ssh-add", "-l"])
results["ssh_G"] = run(["ssh", "-G", allowed])
results["ssh_run"] = run(["ssh", *BATCH, f"git@{allowed}", "echo", "hello-over-ssh"])
results["clone"] = run(["git", "clone", f"ssh://git@{allowed}/srv/repo.git", "/tmp/clone"])
try:
    with open("/tmp/clone/README") as handle:
        results["readme"] = handle.read()
except OSError as exc:
    results["readme"] = f"failed: {exc}"
git = ["git", "-C", "/tmp/clone", "-c", "user.name=bottle", "-c", "user.email=bottle@example.invalid"]
results["commit"] = run([*git, "commit", "--allow-empty", "-m", "pushed from the bottle"])
results["push"] = run([*git, "push", "origin", "HEAD:main"])
results["other_port"] = run(["ssh", *BATCH, "-p", "2222", f"git@{allowed}", "true"])
results["other_host"] = run(["ssh", *BATCH, f"git@{other}", "true"])
results["other_host_clone"] = run(["git", "clone", f"ssh://git@{other}/srv/repo.git", "/tmp/other"])
results["unknown_host_key"] = run(["ssh", *BATCH, "-o", "UserKnownHostsFile=/dev/null", f"git@{allowed}", "true"])
results["server_speaks_first"] = first_bytes_unprompted(allowed, "22")
results["private_keys"] = private_keys_under("/etc/claude-bottle", "/etc/ssh", os.environ.get("HOME", "/"),
                                             "/workspace", "/tmp", "/run/claude-bottle")
print("PROBE-RESULT " + json.dumps(results))
