"""`claude-bottle validate MANIFEST`: check it and print the normalised manifest and its classification."""

from __future__ import annotations

import argparse
import json

from claude_bottle import manifest as manifest_mod


def run(args: argparse.Namespace) -> int:
    m = manifest_mod.load(args.manifest)
    doc = m.to_json()
    if args.format == "json":
        doc["classified"] = m.egress.to_json()
        print(json.dumps(doc, indent=2))
    else:
        print(f"{m.path}: ok ({m.name}, runtime {m.runtime}, {len(m.egress.port_gates)} egress hosts)")
    return 0
