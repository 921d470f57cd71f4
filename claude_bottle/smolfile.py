"""Render the Smolfile (TOML) for smolvm 0.8.0's shape: `env` and `[network] allow_cidrs`, nothing else.

smolvm rejects unknown keys in every table, so nothing optional is ever written.
"""

from __future__ import annotations

from collections.abc import Iterable


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped; other unicode as is."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _array(items: Iterable[str]) -> str:
    values = [toml_string(i) for i in items]
    if not values:
        return "[]"
    return "[\n" + "".join(f"  {v},\n" for v in values) + "]"


def render(env: Iterable[tuple[str, str]], bundle_ip: str) -> str:
    pairs = sorted(f"{k}={v}" for k, v in env)
    return f"env = {_array(pairs)}\n\n[network]\nallow_cidrs = {_array([bundle_ip + '/32'])}\n"
