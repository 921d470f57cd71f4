"""Request DLP (claude_bottle/bundle/detect.py) on the corpora: containment and false positives per
category, then the cost of one scanned request.

    python3 bench/dlp.py [-v] [--attacks PATH] [--benign PATH] [--rounds N]

A case is blocked when its host is deny-listed, when it names a wildcard base and label_exfil flags
its host, or when scan() finds anything. Any corpus in the same JSON-lines format can be given (see
tests/corpora/corpus.py); -v lists the cases that went the wrong way, with the rules that fired.
The costs are the median and 95th percentile of scan()'s CPU time (and its median wall time) on a
model-API body of source code of 1 KiB,
64 KiB and 1 MiB, of a 1 MiB base64 image and of a git push of source files, with the cost per KiB
and its ratio to the 1 KiB case (flat means linear).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from claude_bottle.bundle import detect  # noqa: E402
from tests.corpora import build, corpus  # noqa: E402
from tests.corpora.snippets import SNIPPETS  # noqa: E402


def verdict(case: corpus.Case) -> list[str]:
    host = urllib.parse.urlsplit(case.url).netloc.rpartition("@")[2].split(":")[0]  # as sent: case kept
    why = detect.denied_service(host)
    if why:
        return ["deny-list"]
    if case.wildcard:
        why = detect.label_exfil(host, case.wildcard)
        if why:
            return ["hostname-label"]
    return sorted({f.rule for f in detect.scan(case.url, case.headers, case.body)})


def evaluate(cases: list[corpus.Case], verbose: bool) -> tuple[int, int]:
    by: dict[str, list[tuple[corpus.Case, list[str]]]] = {}
    for case in cases:
        by.setdefault(case.category, []).append((case, verdict(case)))
    wrong_total = 0
    for cat in sorted(by):
        rows = by[cat]
        blocked = sum(bool(rules) for _, rules in rows)
        expect = rows[0][0].expect
        if expect == "block":
            print(f"  {cat:<24} {blocked:>4}/{len(rows):<4} contained {100 * blocked / len(rows):6.1f} %")
        else:
            print(f"  {cat:<24} {blocked:>4}/{len(rows):<4} false positives {100 * blocked / len(rows):6.1f} %")
        for case, rules in rows:
            wrong = (case.expect == "block") != bool(rules)
            wrong_total += wrong
            if wrong and verbose:
                print(f"      {case.id}: {'missed' if case.expect == 'block' else 'flagged ' + ','.join(rules)}")
    return len(cases), wrong_total


def sample_body(size: int, rng: random.Random) -> bytes:
    """A model-API request body of about `size` bytes: JSON messages carrying source files."""
    names = list(SNIPPETS)
    head = {"model": "claude-sonnet-4-20250514", "max_tokens": 8192, "messages": []}
    text = ""
    while True:
        name = rng.choice(names)
        piece = f"<file path=\"{name}\">\n{SNIPPETS[name]}</file>\n"
        head["messages"] = [{"role": "user", "content": [{"type": "text", "text": text + piece}]}]
        if len(json.dumps(head)) > size:
            break
        text += piece
    head["messages"] = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    body = json.dumps(head)
    return (body[:-4] + " " * (size - len(body)) + body[-4:]).encode()  # exactly `size` bytes, still JSON


def timed(url: str, headers: list[tuple[bytes, bytes]], body: bytes, rounds: int) -> tuple[list[float], list[float]]:
    """CPU time (what the bundle's two cores pay, steady on a busy host) and wall time of each scan."""
    cpu, wall = [], []
    for _ in range(rounds):
        c, w = time.process_time(), time.perf_counter()
        detect.scan(url, headers, body)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return cpu, wall


def costs(rounds: int) -> None:
    rng = random.Random(7)
    headers = [(b"content-type", b"application/json"), (b"user-agent", b"claude-cli/1.0.31 (external, cli)"),
               (b"x-api-key", b"claude-bottle-placeholder-ANTHROPIC_API_KEY-" + b"0" * 32), (b"anthropic-version", b"2023-06-01")]
    url = "https://api.anthropic.com/v1/messages?beta=true"
    rows = []
    for label, size in (("1 KiB", 1 << 10), ("64 KiB", 64 << 10), ("1 MiB", 1 << 20)):
        body = sample_body(size, rng)
        n = rounds if size < (1 << 20) else max(5, rounds // 20)
        rows.append((label, len(body), timed(url, headers, body, n)))
    image = json.dumps({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                        "data": base64.b64encode(rng.randbytes(700 << 10)).decode()}}]}]}).encode()
    rows.append(("1 MiB base64 image", len(image), timed(url, headers, image, max(5, rounds // 20))))
    files = [SNIPPETS[n].encode() for n in SNIPPETS] * 12
    pack = build.receive_pack(rng, files)
    push = "https://github.com/example/app.git/git-receive-pack"
    rows.append(("git push (pack)", len(pack), timed(push, [(b"content-type", b"application/x-git-receive-pack-request")], pack, max(5, rounds // 20))))
    print(f"  {'body':<20} {'bytes':>9} {'cpu median ms':>14} {'cpu p95 ms':>11} {'wall median':>12} {'us/KiB':>8} {'x 1 KiB':>8}")
    base = None
    for label, size, (cpu, wall) in rows:
        med = statistics.median(cpu)
        p95 = sorted(cpu)[max(0, int(len(cpu) * 0.95) - 1)]
        per_kib = med * 1e6 / (size / 1024)
        base = base or per_kib
        print(f"  {label:<20} {size:>9} {med * 1000:>14.2f} {p95 * 1000:>11.2f} {statistics.median(wall) * 1000:>12.2f}"
              f" {per_kib:>8.1f} {per_kib / base:>8.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--attacks", default=corpus.ATTACKS)
    ap.add_argument("--benign", default=corpus.BENIGN)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--no-cost", action="store_true")
    args = ap.parse_args()
    attacks, benign = corpus.load(args.attacks), corpus.load(args.benign)
    print(f"attacks ({args.attacks}):")
    n_a, missed = evaluate(attacks, args.verbose)
    print(f"  {'all':<24} {n_a - missed:>4}/{n_a:<4} contained {100 * (n_a - missed) / max(1, n_a):6.1f} %")
    print(f"benign ({args.benign}):")
    n_b, fps = evaluate(benign, args.verbose)
    print(f"  {'all':<24} {fps:>4}/{n_b:<4} false positives {100 * fps / max(1, n_b):6.1f} %")
    if not args.no_cost:
        print("cost per scanned request (scan() alone, one core):")
        costs(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
