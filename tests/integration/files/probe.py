"""Runs inside a bottle's agent container and tries everything an agent might, printing JSON results.

Usage: probe.py ALLOWED_IP DENIED_IP DNS_NAME HOST_PORT (a port the test listens on, on every host address)
"""

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

allowed, denied, dns_name, host_port = sys.argv[1:5]
results: dict[str, object] = {}


def fetch(url: str) -> dict[str, object]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return {"status": resp.status, "body": resp.read().decode(errors="replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")}
    except Exception as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}


def connect(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=4):
            return "connected"
    except OSError as exc:
        return f"failed: {exc}"


def curl(url: str) -> dict[str, object]:
    proc = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "15", url],
                          capture_output=True, text=True)
    body, _, code = proc.stdout.rpartition("\n")
    return {"rc": proc.returncode, "code": code, "body": body, "stderr": proc.stderr.strip()}


results["http_allowed"] = fetch(f"http://{allowed}/")
results["https_allowed"] = fetch(f"https://{allowed}/")
results["curl_https_allowed"] = curl(f"https://{allowed}/")
results["http_denied_host"] = fetch(f"http://{denied}/")
results["https_denied_host"] = fetch(f"https://{denied}/")
results["http_denied_port"] = fetch(f"http://{allowed}:8081/")
results["https_denied_port"] = fetch(f"https://{allowed}:8443/")
results["direct_allowed_80"] = connect(allowed, 80)
results["direct_denied_80"] = connect(denied, 80)
results["direct_bundle_pipelock"] = connect("bundle", 8888)
# Side by side, over new connections each: the relay and the bundle keep them apart.
with ThreadPoolExecutor(8) as pool:
    results["parallel_allowed"] = [r.get("status") for r in pool.map(fetch, [f"http://{allowed}/?n={n}" for n in range(16)])]
results["interfaces"] = sorted(os.listdir("/sys/class/net"))


def session_of(pid: str) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[3])  # the field after ppid and pgrp


relays = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if cmdline.read().split(b"\0")[0] == b"claude-bottle-gate-relay":
                relays.append(pid)
    except OSError:
        pass
results["relays"] = len(relays)
results["relay_own_session"] = bool(relays) and all(session_of(p) != os.getsid(0) for p in relays)
with open("/proc/net/route") as routes:  # the default route's gateway: the host's side of the bridge
    for line in routes.read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            gateway = socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
            results["host_via_gateway"] = connect(gateway, int(host_port))
            break
    else:
        results["host_via_gateway"] = "failed: no default route"
try:
    results["dns"] = socket.getaddrinfo(dns_name, 443)[0][4][0]
except OSError as exc:
    results["dns"] = f"failed: {exc}"
with open("/proc/self/status") as status:
    fields = dict(line.split(":\t", 1) for line in status.read().splitlines() if ":\t" in line)
results["uid"] = os.getuid()
results["cap_eff"] = fields.get("CapEff", "").strip()
results["no_new_privs"] = fields.get("NoNewPrivs", "").strip()
results["docker_socket"] = os.path.exists("/var/run/docker.sock")
results["env_names"] = sorted(os.environ)
results["ca_file"] = open(os.environ["SSL_CERT_FILE"]).read()
try:
    with open("/workspace/written-by-agent.txt", "w") as out:
        out.write("hello from the bottle\n")
    results["workspace_write"] = "ok"
except OSError as exc:
    results["workspace_write"] = f"failed: {exc}"
print("PROBE-RESULT " + json.dumps(results))
