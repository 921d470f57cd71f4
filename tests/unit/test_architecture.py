"""The shape of the tree, read from its imports: commands are leaves, and no module imports itself
back through others (every import counts, lazy ones inside functions too)."""

from __future__ import annotations

import ast
import os
import unittest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "claude_bottle")


def modules() -> dict[str, set[str]]:
    """claude_bottle module -> the claude_bottle modules it imports (the bundle's files stand alone)."""
    found: dict[str, set[str]] = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in ("bundle", "agent", "__pycache__")]
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
            mod = rel.removesuffix(".__init__")
            imports: set[str] = set()
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imports |= {a.name for a in node.names if a.name.startswith("claude_bottle")}
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("claude_bottle"):
                    if node.module in ("claude_bottle", "claude_bottle.commands"):
                        imports |= {f"{node.module}.{a.name}" for a in node.names}
                    else:
                        imports.add(node.module)
            found[mod] = {i for i in imports if not i.startswith("claude_bottle.bundle") and i != mod}
    return found


class ArchitectureTest(unittest.TestCase):
    def test_only_the_cli_imports_a_command(self) -> None:
        for mod, imports in modules().items():
            if mod == "claude_bottle.cli":
                continue
            commands = sorted(i for i in imports if i.startswith("claude_bottle.commands."))
            self.assertEqual(commands, [], f"{mod} imports a command module")

    def test_no_import_cycle(self) -> None:
        graph = modules()
        known = {m for m in graph}
        state: dict[str, int] = {}

        def visit(mod: str, path: list[str]) -> None:
            state[mod] = 1
            for dep in sorted(graph.get(mod, ())):
                if dep not in known:
                    continue
                if state.get(dep) == 1:
                    self.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
                if dep not in state:
                    visit(dep, path + [dep])
            state[mod] = 2

        for mod in sorted(graph):
            if mod not in state:
                visit(mod, [mod])


if __name__ == "__main__":
    unittest.main()
