#!/usr/bin/env python3
"""The bundle's mitmdump: mitmproxy's proxy core with the bundle's addon, and none of its other addons.

mitmdump loads every default addon, and importing them pulls in flask (the mitm.it onboarding app),
ldap3 and passlib (proxy authentication): more than half of its start-up, and code the bundle never
runs. Then it makes its CA with a fresh RSA-2048 key, another 0.3 s. This entry point loads only what
the bundle uses (the proxy server, TLS interception, layer choice, option checks, the log) plus the
addon. The session's CA is already in the confdir (the image's entrypoint, claude-bottle-boot, makes it first).

Same argv as mitmdump, for the options the bundle and its tests use:
    proxy.py [--mode MODE] [--listen-host HOST] [-p PORT] [--set NAME=VALUE ...] -s ADDON.py
An unknown option, or an addon that fails to import, ends the process: nothing listens without the
addon (mitmdump's own script loader logs the error and serves on, unguarded).

From the supervisor's environment: $CLAUDE_BOTTLE_LISTEN_FD, the proxy port it bound, and
$CLAUDE_BOTTLE_UNIX_FD, the Unix socket the Docker runtime's agent comes in by, both served instead of
binding one, so that connections made while this starts wait instead of being refused.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import signal
import socket
import sys
import types

USAGE = "usage: proxy.py [--mode MODE] [--listen-host HOST] [-p PORT] [--set NAME=VALUE ...] -s ADDON.py"


def parse_args(argv: list[str]) -> tuple[list[str], str]:
    """mitmdump's spelling of the options we use -> (["name=value", ...], addon path)."""
    flags = {"--mode": "mode", "--listen-host": "listen_host", "-p": "listen_port", "--listen-port": "listen_port"}
    specs: list[str] = []
    addon = ""
    args = iter(argv)
    for arg in args:
        value = next(args, None)
        if value is None:
            raise ValueError(f"{arg} needs a value")
        if arg in flags:
            specs.append(f"{flags[arg]}={value}")
        elif arg == "--set" and "=" in value:
            specs.append(value)
        elif arg == "-s" and not addon:
            addon = value
        else:
            raise ValueError(f"unsupported argument {arg} {value}")
    if not addon:
        raise ValueError("-s ADDON.py is required: the bundle never proxies without its addon")
    return specs, addon


def without_default_addons() -> None:
    """Make `mitmproxy.addons.X` import X alone: the package's __init__ imports every default addon."""
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("mitmproxy.addons not found")
    package = types.ModuleType("mitmproxy.addons")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules.setdefault("mitmproxy.addons", package)


def inherited_proxyserver(tcp_fd: int | None, unix_fd: int | None) -> object:
    """mitmproxy's Proxyserver, serving the listening sockets it was handed instead of binding its own.

    Its server list is a private property (mitmproxy 8.1); on another version we refuse to start
    rather than guess, and the supervisor's sockets keep refusing nothing: connections wait for a fix."""
    from mitmproxy import version
    from mitmproxy.addons import proxyserver

    if not version.VERSION.startswith("8.1."):
        raise RuntimeError(f"serving an inherited socket is written for mitmproxy 8.1, not {version.VERSION}")
    numbers = itertools.count()

    class Proxyserver(proxyserver.Proxyserver):  # same name: the addon looks it up as "proxyserver"
        async def handle_local_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.handle_tcp_connection(reader, LocalPeer(writer, next(numbers)))  # type: ignore[arg-type]

        async def _start_inherited(self) -> Servers:
            # A duplicate each time: stopping a server closes its socket, never the original.
            servers = []
            if tcp_fd is not None:
                servers.append(await asyncio.start_server(self.handle_tcp_connection, sock=_dup(tcp_fd)))
            if unix_fd is not None:
                servers.append(await asyncio.start_unix_server(self.handle_local_connection, sock=_dup(unix_fd)))
            return Servers(servers)

        @property
        def _server_desc(self):  # type: ignore[no-untyped-def]
            for name, instance, set_instance, enabled, start in super()._server_desc:
                if name == "Proxy":
                    start = self._start_inherited
                yield name, instance, set_instance, enabled, start

    return Proxyserver()


def _dup(fd: int) -> socket.socket:
    return socket.socket(fileno=os.dup(fd))


class Servers:
    """Several asyncio servers as mitmproxy 8.1 handles its one: their sockets, close, wait_closed."""

    def __init__(self, servers: list[asyncio.AbstractServer]) -> None:
        self._servers = servers
        self.sockets = [sock for server in servers for sock in (server.sockets or ())]  # type: ignore[attr-defined]

    def close(self) -> None:
        for server in self._servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()


class LocalPeer:
    """A Unix-socket client's writer, as mitmproxy 8.1 expects a TCP client's: it keys its connections by
    the peer's address and prints it as host:port, and a Unix peer has none (""), so each gets the
    agent's own loopback address with a number of its own. Everything else is the real writer."""

    def __init__(self, writer: asyncio.StreamWriter, number: int) -> None:
        self._writer = writer
        self._names = {"peername": ("127.0.0.1", 1 + number % 65535), "sockname": ("127.0.0.1", 0)}

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name in self._names:
            return self._names[name]
        return self._writer.get_extra_info(name, default)

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)


def load_addon(path: str) -> types.ModuleType:
    """The addon as mitmdump's `-s` loads it (its directory on sys.path for its siblings), but any
    exception it raises ends the process instead of being logged and forgotten."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("__mitmproxy_script__.addon", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def serve(specs: list[str], addon: str) -> None:
    from mitmproxy import exceptions, hooks, master, options
    from mitmproxy.addons import core, disable_h2c, errorcheck, next_layer, proxyserver, termlog, tlsconfig

    opts = options.Options()
    proxy = master.Master(opts)
    # Options of mitmproxy's core now (confdir among them), the addons' own as each addon registers.
    opts.set(*specs, defer=True)
    fds = [os.environ.get(name) for name in ("CLAUDE_BOTTLE_LISTEN_FD", "CLAUDE_BOTTLE_UNIX_FD")]
    tcp_fd, unix_fd = (int(fd) if fd else None for fd in fds)
    server = inherited_proxyserver(tcp_fd, unix_fd) if fds != [None, None] else proxyserver.Proxyserver()
    # mitmdump's order, less the addons left out: a script's hooks run where its ScriptLoader sits,
    # after the proxy server's and before mitmproxy's own layer choice and TLS settings.
    proxy.addons.add(termlog.TermLog(), core.Core(), disable_h2c.DisableH2C(), server,
                     load_addon(addon), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                     errorcheck.ErrorCheck(log_to_stderr=True))
    if opts.deferred:
        raise exceptions.OptionsError(f"unknown options: {', '.join(sorted(opts.deferred))}")
    # What mitmdump's start-up does after parsing its options: every addon configures on all of them.
    proxy.addons.trigger(hooks.ConfigureHook(set(opts.keys())))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: loop.call_soon_threadsafe(proxy.shutdown))
    await proxy.run()


def main(argv: list[str]) -> int:
    try:
        specs, addon = parse_args(argv)
    except ValueError as e:
        print(f"proxy.py: {e}\n{USAGE}", file=sys.stderr)
        return 2
    without_default_addons()
    from mitmproxy import exceptions

    try:
        asyncio.run(serve(specs, addon))
    except exceptions.OptionsError as e:
        print(f"proxy.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
