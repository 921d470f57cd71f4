"""What a DLP scan costs: the bundle's scanner (one long-running process, rules loaded once) against one
`gitleaks stdin` per request, each against not scanning at all, interleaved in one run.

(a) dlp.Scanner directly: one small request's scan text, socket scanner vs gitleaks process.
(b) Through the real mitmdump + addon on loopback: a 1 KB POST to a host in DLP `scan` mode against
    the same POST to a host in `skip` mode, on kept-alive connections, for a mitmdump whose addon
    scans through the scanner and one that runs gitleaks per request; then throughput under N
    parallel clients for each; then a burst of parallel warn-mode requests, each carrying a key,
    and how many of them were scanned (and why any were not).
Goals (issue 12): a scanned small request adds < 5 ms median over a skipped one (moonshot < 1 ms);
scanned throughput within 2x of skip; warn mode scans every request of a burst.

    python3 bench/dlp_cost.py [--rounds N] [--clients N] [--seconds S] [--burst N] [--before-rev REV]

--before-rev runs the gitleaks-per-request mitmdump with the bundle as it was at a git revision (its
addon, dlp.py and all), for a true before/after. Needs mitmdump and openssl (apt), gitleaks and the
scanner (.ci/build-images; the scanner is built here when Go is installed). Progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from claude_bottle.bundle import dlp  # noqa: E402
from tests.integration import secret_shapes  # noqa: E402
from tests.integration import test_addon_mitmdump as tam  # noqa: E402
from tests.integration import test_scanner as tsc  # noqa: E402

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 160}]}).encode()[:1024]


def progress(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def stats(samples: list[float]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    return statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive, so a figure is the request's cost, not a TCP connect

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        # One write: a head and a body sent apart can wait out a delayed ACK (Nagle), ~40 ms.
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")


class OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a burst of new connections must not be refused here


class Client:
    """One kept-alive connection through a proxy to one origin host."""

    def __init__(self, proxy_port: int, host: str, origin_port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=60)
        self.url = f"http://{host}:{origin_port}/v1/messages"

    def post(self, body: bytes = BODY) -> float:
        start = time.perf_counter()
        self.conn.request("POST", self.url, body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200 or data != b"ok":
            raise RuntimeError(f"{self.url}: {resp.status} {data[:200]!r}")
        return elapsed

    def close(self) -> None:
        self.conn.close()


def policy(origin_port: int, default: str) -> dict[str, Any]:
    return {
        "version": 1,
        "rules": [{"host": h, "wildcard": False, "ports": [origin_port]} for h in ("127.0.0.1", "localhost")],
        "ssrf_allow": ["127.0.0.0/8"],
        "upstream": None,
        "secrets": [],
        "dlp": {"default": default, "hosts": [{"host": "localhost", "wildcard": False, "mode": "skip"}]},
    }


def start_mitmdump(workdir: Path, ca: Path, origin_port: int, default: str, socket_path: str,
                   addon: Path | None = None) -> tam.Mitmdump:
    saved = tam.ADDON
    tam.ADDON = addon or saved
    try:
        proxy = tam.Mitmdump(workdir, policy(origin_port, default), ca,
                             env={"CLAUDE_BOTTLE_SCANNER_SOCKET": socket_path})
    finally:
        tam.ADDON = saved
    proxy.wait_ready()
    return proxy


# ---------- (a) the Scanner API ----------


def bench_api(sock: str, rounds: int, clients: int, seconds: float) -> None:
    """A skipped request costs the API nothing, so these are the absolute costs of a scan: each way
    alone, then the two alternating (the noisier figure: a gitleaks process runs between scans)."""
    text = dlp.scan_text("https://api.example.com/v1/messages", [(b"content-type", b"application/json"),
                         (b"x-api-key", b"CLAUDE_BOTTLE_PLACEHOLDER")], BODY, [])

    async def timed(scanner: dlp.Scanner, name: str) -> float:
        start = time.perf_counter()
        result = await scanner.scan(text)
        if result.verdict != "clean":
            raise RuntimeError(f"{name}: {result}")
        return time.perf_counter() - start

    async def run() -> dict[str, Any]:
        ways = {"scanner": dlp.Scanner(socket_path=sock),
                "gitleaks process": dlp.Scanner(dlp.gitleaks_argv(tsc.GITLEAKS or "gitleaks"), socket_path="")}
        await ways["scanner"].scan(text)  # warm: the first connection
        alone = {name: [await timed(s, name) for _ in range(rounds)] for name, s in ways.items()}
        mixed: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, scanner in ways.items():
                mixed[name].append(await timed(scanner, name))
        rates = {}
        for name, scanner in ways.items():
            done, deadline = 0, time.monotonic() + seconds

            async def worker(scanner: dlp.Scanner = scanner) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    await scanner.scan(text)
                    done += 1

            start = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(clients)))
            rates[name] = done / (time.monotonic() - start)
        ways["scanner"].close()
        return {"alone": alone, "mixed": mixed, "rates": rates}

    progress(f"(a) Scanner API: {rounds} scans each way alone, {rounds} alternating, then {clients} at once "
             f"for {seconds:g} s each")
    out = asyncio.run(run())
    print(f"(a) dlp.Scanner.scan() of a {len(text)}-byte request text; a skipped one costs nothing here")
    for name in out["alone"]:
        (med, p95), (mmed, mp95) = stats(out["alone"][name]), stats(out["mixed"][name])
        print(f"    {name:18s} alone median {med:6.2f} ms (p95 {p95:6.2f})   alternating median {mmed:6.2f} ms "
              f"(p95 {mp95:6.2f})   {out['rates'][name]:6.0f} scans/s ({clients} at once)")
    fast_med, slow_med = (stats(out["alone"][k])[0] for k in ("scanner", "gitleaks process"))
    print(f"    gitleaks process / scanner: {slow_med / fast_med:.0f}x per scan, "
          f"{out['rates']['scanner'] / out['rates']['gitleaks process']:.0f}x throughput")


# ---------- (b) through mitmdump ----------


def interleaved(proxies: dict[str, tam.Mitmdump], origin_port: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    """Per (proxy, mode): the time of each of `rounds` POSTs, every client taking its turn each round."""
    clients = {(name, mode): Client(p.port, "127.0.0.1" if mode == "scan" else "localhost", origin_port)
               for name, p in proxies.items() for mode in ("scan", "skip")}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in clients}
    for client in clients.values():  # warm: connections open, the scanner's pool too
        client.post()
    for _ in range(rounds):
        for key, client in clients.items():
            times[key].append(client.post())
    for client in clients.values():
        client.close()
    return times


def bench_proxy(proxies: dict[str, tam.Mitmdump], origin_port: int, rounds: int) -> None:
    """Scan against skip on each mitmdump alone, then all of them in one interleaved run (a gitleaks
    process next door costs the scanner's requests some cache and CPU: that run is the noisier one)."""
    print(f"(b) a 1 KB POST through mitmdump + addon on loopback, kept-alive connections, scan and skip alternating")
    runs = [(f"alone, {rounds} rounds each", {n: interleaved({n: p}, origin_port, rounds) for n, p in proxies.items()})]
    if len(proxies) > 1:
        progress(f"(b) 1 KB POSTs: {rounds} rounds through every mitmdump in turn")
        runs.append((f"all interleaved, {rounds} rounds", {"all": interleaved(proxies, origin_port, rounds)}))
    for title, results in runs:
        print(f"  {title}")
        added = {}
        for times in results.values():
            for name in sorted({n for n, _ in times}, key=list(proxies).index):
                (scan_med, scan_p95), (skip_med, skip_p95) = stats(times[(name, "scan")]), stats(times[(name, "skip")])
                added[name] = scan_med - skip_med
                print(f"    {name:18s} skip median {skip_med:6.2f} ms (p95 {skip_p95:6.2f})   scan median "
                      f"{scan_med:6.2f} ms (p95 {scan_p95:6.2f})   scan adds {scan_med - skip_med:6.2f} ms = "
                      f"{scan_med / skip_med:5.2f}x skip")
        if len(added) == 2:
            fast, slow = sorted(added.values())
            print(f"    added cost, gitleaks process / scanner: {slow / max(fast, 1e-3):.0f}x")
    print("    (goal: the scanner adds < 5 ms median, moonshot < 1 ms)")


def throughput(proxy: tam.Mitmdump, host: str, origin_port: int, clients: int, seconds: float) -> float:
    count = [0] * clients
    errors: list[str] = []
    start_gate = threading.Barrier(clients + 1)
    stop = [0.0]

    def worker(i: int) -> None:
        client = Client(proxy.port, host, origin_port)
        try:
            start_gate.wait()
            while time.monotonic() < stop[0]:
                client.post()
                count[i] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.monotonic() + seconds
    start_gate.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"throughput ({host}): {errors[:3]}")
    return sum(count) / (time.monotonic() - t0)


def bench_throughput(proxies: dict[str, tam.Mitmdump], origin_port: int, clients: int, seconds: float) -> None:
    progress(f"(b) throughput: {clients} parallel clients, {seconds:g} s per figure, skip and scan alternating")
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(2):
        for name, proxy in proxies.items():
            for mode, host in (("skip", "localhost"), ("scan", "127.0.0.1")):
                rates.setdefault((name, mode), []).append(throughput(proxy, host, origin_port, clients, seconds))
    print(f"(b) throughput, {clients} parallel clients on kept-alive connections (mean of 2 runs of {seconds:g} s)")
    for name in proxies:
        skip, scan = (statistics.mean(rates[(name, m)]) for m in ("skip", "scan"))
        print(f"    {name:18s} skip {skip:7.0f} req/s   scan {scan:7.0f} req/s   skip/scan {skip / scan:5.2f}x "
              f"(goal < 2x)")


def bench_warn_burst(proxies: dict[str, tam.Mitmdump], origin_port: int, burst: int) -> None:
    """`burst` clients at once, each one POST carrying an AWS key to a warn-mode host; every scan that
    ran logs a dlp warning, every one that did not logs a dlp_error with its reason."""
    print(f"(b) warn mode, a burst of {burst} parallel requests each carrying a key")
    for name, proxy in proxies.items():
        before = len(proxy.events("warning"))
        gate = threading.Barrier(burst)
        errors: list[str] = []

        def one() -> None:
            client = Client(proxy.port, "127.0.0.1", origin_port)
            body = json.dumps({"aws_access_key_id": secret_shapes.aws_access_key()}).encode()
            try:
                gate.wait()
                client.post(body)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
            finally:
                client.close()

        threads = [threading.Thread(target=one, daemon=True) for _ in range(burst)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        passed = time.monotonic() - start

        def split() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            """gitleaks' verdicts (the addon's other detectors, when it has them, log apart) and the misses."""
            events = proxy.events("warning")[before:]
            return ([e for e in events if e.get("kind") == "dlp" and "gitleaks" in str(e.get("reason"))],
                    [e for e in events if e.get("kind") == "dlp_error"])

        proxy.wait_for(lambda: sum(map(len, split())) >= burst, timeout=120)
        found, missed = split()
        done = time.monotonic() - start
        print(f"    {name:18s} all {burst} passed in {passed:5.2f} s; scanned and found {len(found)}/{burst} "
              f"(last verdict at {done:5.2f} s); not scanned {len(missed)}" + (f"; client errors {len(errors)}: "
              f"{errors[0]}" if errors else ""))
        reasons: dict[str, int] = {}
        for e in missed:  # which (method host:port) and why, as the addon logged it
            key = f"{e.get('method')} {e.get('host')}:{e.get('port')}: {e.get('reason', '')}"
            reasons[key] = reasons.get(key, 0) + 1
        for key, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            print(f"        {n}x {key}")


def bundle_at(rev: str, into: Path) -> Path:
    """The bundle's files as they were at git revision `rev`; returns its addon.py."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "claude_bottle/bundle"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "claude_bottle" / "bundle" / "addon.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16, help="parallel clients for the throughput figures")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each throughput run")
    ap.add_argument("--burst", type=int, default=64, help="parallel warn-mode requests")
    ap.add_argument("--before-rev", help="run the gitleaks-per-request mitmdump from the bundle at this git revision")
    args = ap.parse_args()

    if tam.MITMDUMP is None or tam.OPENSSL is None or tsc.GITLEAKS is None:
        raise SystemExit("bench: needs mitmdump and openssl (apt-get install mitmproxy openssl) and gitleaks "
                         "(.ci/build-images)")
    progress("finding or building the scanner")
    tsc.SCANNER = tsc.scanner_binary()
    if tsc.SCANNER is None:
        raise SystemExit("bench: no scanner binary and no Go to build one (.ci/build-images)")
    with tempfile.TemporaryDirectory(prefix="cb-dlp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sock = str(tmp / "scanner.sock")
        scanner = tsc.ScannerProcess(sock)
        server = OriginServer(("127.0.0.1", 0), Origin)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        origin_port = int(server.server_address[1])
        proxies: list[tam.Mitmdump] = []
        try:
            bench_api(sock, args.rounds, args.clients, min(args.seconds, 2.0))
            progress("making certificates and starting mitmdumps")
            ca, _, _ = tam.make_certs(tmp)
            before = bundle_at(args.before_rev, tmp) if args.before_rev else None
            label = f"gitleaks@{args.before_rev}"[:18] if args.before_rev else "gitleaks process"
            scan = {"scanner": start_mitmdump(tmp, ca, origin_port, "scan", sock),
                    label: start_mitmdump(tmp, ca, origin_port, "scan", "", before)}
            proxies += scan.values()
            bench_proxy(scan, origin_port, args.rounds)
            bench_throughput(scan, origin_port, args.clients, args.seconds)
            warn = {"scanner": start_mitmdump(tmp, ca, origin_port, "warn", sock),
                    label: start_mitmdump(tmp, ca, origin_port, "warn", "", before)}
            proxies += warn.values()
            bench_warn_burst(warn, origin_port, args.burst)
        finally:
            for proxy in proxies:
                proxy.stop()
            server.shutdown()
            server.server_close()
            scanner.stop()


if __name__ == "__main__":
    main()
