"""Unit tests for claude_bottle.smolfile: smolvm 0.8.0's Smolfile, read back with tomllib."""

from __future__ import annotations

import tomllib
import unittest

from claude_bottle import smolfile
from claude_bottle.smolfile import render, toml_string

ODD_VALUES = [
    "",
    "plain",
    "a=b=c",
    "=",
    'say "hi"',
    "'single'",
    "back\\slash",
    "C:\\path\\to\\file",
    "\\u0041 not an escape",
    "line1\nline2",
    "crlf\r\n",
    "tab\there",
    "bell\x07 esc\x1b del\x7f nul-less \x01\x08\x0b\x0c\x1f",
    "unicode: \u00e9\u00e8 \u4e2d\u6587 \U0001f600 \u200b \u2028 \u0085",
    "[not] {a} #table ,",
    "trailing space ",
    " leading space",
    '"""',
    "'''",
    "\\",
    '\\"',
    "${HOME} $(id) `id`",
]


def _parse(text: str) -> dict[str, object]:
    return tomllib.loads(text)


class RenderShapeTest(unittest.TestCase):
    def test_exact_keys(self) -> None:
        doc = _parse(render([("A", "1")], "192.168.5.2"))
        self.assertEqual(set(doc), {"env", "network"})
        self.assertEqual(set(doc["network"]), {"allow_cidrs"})  # type: ignore[arg-type]

    def test_allow_cidrs_is_only_the_bundle(self) -> None:
        doc = _parse(render([], "192.168.42.2"))
        self.assertEqual(doc["network"], {"allow_cidrs": ["192.168.42.2/32"]})

    def test_empty_env(self) -> None:
        doc = _parse(render([], "192.168.1.2"))
        self.assertEqual(doc["env"], [])

    def test_env_sorted_k_equals_v(self) -> None:
        env = [("ZED", "z"), ("A", "1"), ("B_2", "x"), ("a", "lower"), ("A0", "0")]
        doc = _parse(render(env, "192.168.1.2"))
        self.assertEqual(doc["env"], sorted(f"{k}={v}" for k, v in env))
        self.assertEqual(doc["env"], sorted(doc["env"]))  # type: ignore[type-var]

    def test_input_order_does_not_matter(self) -> None:
        env = [("B", "2"), ("A", "1"), ("C", "3")]
        self.assertEqual(render(env, "192.168.1.2"), render(list(reversed(env)), "192.168.1.2"))

    def test_accepts_generators(self) -> None:
        doc = _parse(render(((k, v) for k, v in [("A", "1")]), "192.168.1.2"))
        self.assertEqual(doc["env"], ["A=1"])

    def test_text_layout(self) -> None:
        self.assertEqual(
            render([("B", "2"), ("A", "1")], "192.168.9.2"),
            'env = [\n  "A=1",\n  "B=2",\n]\n\n[network]\nallow_cidrs = [\n  "192.168.9.2/32",\n]\n',
        )
        self.assertEqual(render([], "192.168.9.2"), 'env = []\n\n[network]\nallow_cidrs = [\n  "192.168.9.2/32",\n]\n')

    def test_no_other_tables_or_keys(self) -> None:
        text = render([("A", "[vm]\nimage = 'x'")], "192.168.1.2")
        doc = _parse(text)
        self.assertEqual(set(doc), {"env", "network"})
        self.assertEqual(doc["env"], ["A=[vm]\nimage = 'x'"])
        self.assertEqual(sum(1 for line in text.splitlines() if line.startswith("[")), 1)


class RoundTripTest(unittest.TestCase):
    def test_each_odd_value(self) -> None:
        for value in ODD_VALUES:
            with self.subTest(value=value):
                doc = _parse(render([("V", value)], "192.168.1.2"))
                self.assertEqual(doc["env"], [f"V={value}"])

    def test_all_together(self) -> None:
        env = [(f"V{i}", v) for i, v in enumerate(ODD_VALUES)]
        doc = _parse(render(env, "192.168.1.2"))
        self.assertEqual(doc["env"], sorted(f"{k}={v}" for k, v in env))

    def test_every_control_character(self) -> None:
        value = "".join(chr(c) for c in range(1, 0x20)) + "\x7f"
        self.assertEqual(_parse(render([("V", value)], "192.168.1.2"))["env"], [f"V={value}"])

    def test_toml_string_alone(self) -> None:
        for value in ODD_VALUES:
            with self.subTest(value=value):
                self.assertEqual(_parse(f"x = {toml_string(value)}\n")["x"], value)

    def test_toml_string_escapes(self) -> None:
        self.assertEqual(toml_string('a"b'), '"a\\"b"')
        self.assertEqual(toml_string("a\\b"), '"a\\\\b"')
        self.assertEqual(toml_string("\n\t\r"), '"\\n\\t\\r"')
        self.assertEqual(toml_string("\x00\x1f\x7f"), '"\\u0000\\u001F\\u007F"')
        self.assertEqual(toml_string("\u00e9"), '"\u00e9"')
        self.assertNotIn("\n", toml_string("a\nb"))

    def test_rendered_text_has_no_raw_control_characters(self) -> None:
        text = render([("V", "".join(chr(c) for c in range(0x20)) + "\x7f")], "192.168.1.2")
        for ch in text:
            self.assertFalse(ord(ch) < 0x20 and ch != "\n" or ord(ch) == 0x7F, repr(ch))

    def test_module_exports(self) -> None:
        self.assertTrue(callable(smolfile.render))


if __name__ == "__main__":
    unittest.main()
