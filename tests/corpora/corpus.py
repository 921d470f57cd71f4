"""Reading the DLP corpora: JSON lines, one request a line.

    {"id", "category", "method", "url", "headers": [[name, value], ...], "body": text | "body_b64": base64,
     "expect": "block" | "pass", "wildcard": "example.com" (optional: the host matched a `*.example.com` rule)}

A line may instead be sealed, {"id", "category", "expect", "sealed": ...}: the same fields, JSON,
compressed, XORed with a fixed key and base64-encoded. attacks.jsonl is stored that way so that no
secret-shaped string (fake as they all are) sits in the repository for scanners and push protection
to trip on. `python3 -m tests.corpora.corpus show ID` prints one case unsealed; `... dump FILE` writes
all of them, unsealed, as plain JSON lines (keep that file out of the repository).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import zlib
from dataclasses import dataclass
from itertools import cycle

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACKS = os.path.join(HERE, "attacks.jsonl")
BENIGN = os.path.join(HERE, "benign.jsonl")
_KEY = b"claude-bottle corpus seal, not a secret"


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    expect: str
    wildcard: str = ""


def _xor(data: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, cycle(_KEY)))


def seal(fields: dict) -> str:
    return base64.b64encode(_xor(zlib.compress(json.dumps(fields).encode(), 9))).decode()


def unseal(sealed: str) -> dict:
    return json.loads(zlib.decompress(_xor(base64.b64decode(sealed))))


def parse(record: dict) -> Case:
    if "sealed" in record:
        record = {**record, **unseal(record["sealed"])}
    if "body_b64" in record:
        body = base64.b64decode(record["body_b64"])
    else:
        body = (record.get("body") or "").encode("utf-8", "surrogateescape")
    headers = [(str(k).encode("latin-1"), str(v).encode("utf-8")) for k, v in record.get("headers") or []]
    return Case(str(record["id"]), str(record.get("category", "")), str(record.get("method", "GET")),
                str(record["url"]), headers, body, str(record.get("expect", "")), str(record.get("wildcard") or ""))


def load(path: str) -> list[Case]:
    with open(path, encoding="utf-8") as handle:
        return [parse(json.loads(line)) for line in handle if line.strip()]


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "show":
        for path in (ATTACKS, BENIGN):
            for case in load(path):
                if case.id == argv[2]:
                    print(json.dumps({**case.__dict__, "headers": [[k.decode(), v.decode()] for k, v in case.headers],
                                      "body": case.body.decode("utf-8", "backslashreplace")}, indent=2))
                    return 0
        print(f"no case {argv[2]}", file=sys.stderr)
        return 1
    if len(argv) == 3 and argv[1] == "dump":  # every case unsealed, as plain JSON lines
        with open(argv[2], "w", encoding="utf-8") as out:
            for path in (ATTACKS, BENIGN):
                for case in load(path):
                    out.write(json.dumps({**case.__dict__, "headers": [[k.decode("latin-1"), v.decode("utf-8", "replace")] for k, v in case.headers],
                                          "body_b64": base64.b64encode(case.body).decode()}) + "\n")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
