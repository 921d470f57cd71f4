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


if __name__ == "__main__":
    unittest.main()
