"""Runs inside a bottle's agent: uses its placeholder credentials and sends secret-shaped bodies.

Usage: secrets_probe.py BOUND_IP OTHER_IP   (bodies come from /workspace/bodies.json)
Prints one "PROBE-RESULT {json}" line, writes /workspace/probe-done, then waits for /workspace/release
so the test can look at the running bottle from outside.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

bound, other = sys.argv[1:3]
results: dict[str, object] = {}


def fetch(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> dict[str, object]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return {"status": resp.status, "body": resp.read().decode(errors="replace"),
                    "headers": {k.lower(): v for k, v in resp.getheaders()}}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")}
    except Exception as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}


token, file_token = os.environ["TEST_TOKEN"], os.environ["FILE_TOKEN"]
results["env"] = {k: os.environ.get(k) for k in ("TEST_TOKEN", "FILE_TOKEN", "ANTHROPIC_API_KEY")}
auth = {"Authorization": f"Bearer {token}"}
results["inject_bound"] = fetch(f"https://{bound}/echo", auth)
results["inject_file"] = fetch(f"https://{bound}/echo", {"X-File-Token": file_token})
results["other_host"] = fetch(f"https://{other}/echo", auth)
results["plain_http"] = fetch(f"http://{bound}/echo", auth)
results["in_url"] = fetch(f"https://{bound}/echo?token={token}")
results["wrong_header"] = fetch(f"https://{bound}/echo", {"X-Api-Key": token})
results["reflect"] = fetch(f"https://{bound}/reflect", auth)

with open("/workspace/bodies.json") as handle:
    bodies = json.load(handle)
for label, body in bodies.items():
    results[f"dlp_{label}_bound"] = fetch(f"https://{bound}/echo", data=body.encode())
    results[f"dlp_{label}_other"] = fetch(f"https://{other}/echo", data=body.encode())

# Server-sent events: each event must arrive when it is sent, not when the stream ends.
arrivals: list[float] = []
started = time.monotonic()
try:
    with urllib.request.urlopen(f"https://{bound}/sse", timeout=30) as resp:
        results["sse_type"] = resp.headers.get("content-type")
        for line in resp:
            if line.startswith(b"data:"):
                arrivals.append(round(time.monotonic() - started, 3))
except Exception as exc:
    results["sse_error"] = f"{type(exc).__name__}: {exc}"
results["sse_arrivals"] = arrivals

print("PROBE-RESULT " + json.dumps(results), flush=True)
with open("/workspace/probe-done", "w") as handle:
    handle.write("done\n")
deadline = time.monotonic() + 240
while not os.path.exists("/workspace/release") and time.monotonic() < deadline:
    time.sleep(0.2)
