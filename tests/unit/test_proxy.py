"""The bundle's mitmdump entry point: its argv is mitmdump's spelling, and nothing runs without the addon."""

import unittest

from claude_bottle.bundle import proxy


class ParseArgsTest(unittest.TestCase):
    def test_mitmdump_spelling_becomes_option_specs(self) -> None:
        specs, addon = proxy.parse_args(["--mode", "regular", "--listen-host", "0.0.0.0", "-p", "8080",
                                         "--set", "confdir=/c", "--set", "connection_strategy=eager",
                                         "-s", "/opt/claude-bottle/addon.py"])
        self.assertEqual(specs, ["mode=regular", "listen_host=0.0.0.0", "listen_port=8080", "confdir=/c",
                                 "connection_strategy=eager"])
        self.assertEqual(addon, "/opt/claude-bottle/addon.py")

    def test_the_addon_is_required(self) -> None:
        with self.assertRaisesRegex(ValueError, "-s ADDON.py is required"):
            proxy.parse_args(["-p", "8080"])

    def test_a_second_addon_or_an_unknown_flag_is_refused(self) -> None:
        for argv in (["-s", "a.py", "-s", "b.py"], ["-s", "a.py", "--anticache", "x"], ["-s", "a.py", "--set", "x"]):
            with self.subTest(argv=argv), self.assertRaises(ValueError):
                proxy.parse_args(argv)

    def test_a_flag_without_its_value_is_refused(self) -> None:
        with self.assertRaisesRegex(ValueError, "needs a value"):
            proxy.parse_args(["-s", "a.py", "-p"])



class LocalPeerTest(unittest.TestCase):
    """A Unix-socket client as mitmproxy 8.1 expects a TCP one (it keys connections by peer address)."""

    class Writer:
        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"peername": "", "sockname": "/run/claude-bottle/bundle/proxy.sock", "socket": "sock"}.get(name, default)

        def write(self, data: bytes) -> str:
            return f"wrote {len(data)}"

    def test_each_connection_has_its_own_loopback_peer_and_the_rest_is_the_writer(self) -> None:
        a, b = proxy.LocalPeer(self.Writer(), 0), proxy.LocalPeer(self.Writer(), 1)  # type: ignore[arg-type]
        self.assertEqual(a.get_extra_info("peername"), ("127.0.0.1", 1))
        self.assertNotEqual(a.get_extra_info("peername"), b.get_extra_info("peername"))
        self.assertEqual(a.get_extra_info("sockname"), ("127.0.0.1", 0))
        self.assertEqual(a.get_extra_info("socket"), "sock")
        self.assertEqual(a.write(b"abc"), "wrote 3")  # type: ignore[attr-defined]
        self.assertEqual(proxy.LocalPeer(self.Writer(), 65535).get_extra_info("peername"), ("127.0.0.1", 1))


class ServersTest(unittest.TestCase):
    def test_both_sockets_are_served_listed_and_closed_together(self) -> None:
        import asyncio
        import os
        import socket
        import tempfile

        path = os.path.join(tempfile.mkdtemp(), "p.sock")

        async def main() -> tuple[int, list[bytes]]:
            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(b"ok")
                await writer.drain()
                writer.close()

            tcp = await asyncio.start_server(answer, "127.0.0.1", 0)
            unix = await asyncio.start_unix_server(answer, path)
            both = proxy.Servers([tcp, unix])
            port = tcp.sockets[0].getsockname()[1]
            got = []
            for family, where in ((socket.AF_INET, ("127.0.0.1", port)), (socket.AF_UNIX, path)):
                reader, writer = await asyncio.open_connection(sock=socket.create_connection(where) if
                                                               family == socket.AF_INET else _unix(where))
                got.append(await reader.read())
                writer.close()
            count = len(both.sockets)
            both.close()
            await both.wait_closed()
            return count, got

        def _unix(where: str) -> socket.socket:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(where)
            return sock

        count, got = asyncio.run(main())
        self.assertEqual((count, got), (2, [b"ok", b"ok"]))
        with self.assertRaises(OSError):
            _unix(path)  # closed: nothing accepts any more


if __name__ == "__main__":
    unittest.main()
