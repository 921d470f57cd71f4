"""Well-known secret shapes for DLP tests, made fresh at run time.

Random, so no key-shaped string lives in the repository (where scanners and push protection would
rightly flag it), and none is a real credential.
"""

from __future__ import annotations

import base64
import os
import math
import secrets
import string


def aws_access_key() -> str:
    """A fresh AWS-shaped key id that gitleaks' rule must flag: its rule also wants a Shannon entropy
    of 3 or more, which about one random key in 5,000 misses (a flaky test, not a finding)."""
    while True:
        key = "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        if _entropy(key) >= 3.3:
            return key


def _entropy(text: str) -> float:
    counts = [text.count(c) for c in set(text)]
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts)


def github_token() -> str:
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


def private_key() -> str:
    body = base64.b64encode(os.urandom(48 * 6)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----\n"


def bodies() -> dict[str, tuple[str, bytes]]:
    """{label: (the gitleaks rule id expected, a request body carrying that shape)}."""
    return {
        "aws": ("aws-access-token", f'{{"aws_access_key_id": "{aws_access_key()}"}}'.encode()),
        "github": ("github-pat", f"token={github_token()}&note=deploy".encode()),
        "private_key": ("private-key", ("notes\n" + private_key()).encode()),
    }
