"""The agents table: each agent's image builds from a pinned Dockerfile, runs unattended, reaches its
API through its preset, and holds only placeholders for its credentials."""

from __future__ import annotations

import os
import re
import unittest

from claude_bottle import agents, egress, manifest, plan

AGENT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "claude_bottle", "agent")


class KindsTest(unittest.TestCase):
    def test_each_image_has_a_pinned_dockerfile_whose_cmd_is_the_cli(self) -> None:
        for kind in agents.KINDS.values():
            with open(os.path.join(AGENT_DIR, kind.dockerfile), encoding="utf-8") as handle:
                text = handle.read()
            self.assertRegex(text, r"ARG BASE_IMAGE=node:[^@\s]+@sha256:[0-9a-f]{64}", kind.name)
            self.assertRegex(text, r'npm install -g "@[a-z-]+/[a-z-]+@\$\{[A-Z_]+\}"', kind.name)
            self.assertRegex(text, r"ARG [A-Z_]+_VERSION=[0-9]+\.[0-9]+\.[0-9]+", kind.name)
            self.assertIn(f'CMD ["{kind.command[0]}"]', text)
            self.assertIn("USER 10001:10001", text)

    def test_every_kind_runs_unattended_and_its_preset_allows_its_apis(self) -> None:
        for kind in agents.KINDS.values():
            self.assertGreater(len(kind.command), 1, f"{kind.name} would stop to ask for permission")
            hosts = set(egress.PRESETS[kind.preset])
            for cred in kind.credentials:
                self.assertIn(cred.host, hosts, kind.name)

    def test_the_agents_key_is_a_placeholder_injected_for_its_api_only(self) -> None:
        cases = {"codex": ("OPENAI_API_KEY", "api.openai.com", "authorization"),
                 "gemini": ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "x-goog-api-key"),
                 "claude": ("CLAUDE_CODE_OAUTH_TOKEN", "api.anthropic.com", "authorization")}
        for name, (var, host, header) in cases.items():
            m = manifest.parse({"name": "demo", "agent": {"kind": name},
                                "egress": {"allow": [agents.KINDS[name].preset]}}, "/nowhere/m.json")
            p = plan.build(m, "abcd1234", environ={var: "real-value-never-in-the-plan"}, placeholder_seed="s")
            secret = next(s for s in p.secrets if s.secret.name == var)
            self.assertEqual((secret.secret.hosts, secret.secret.header), ((host,), header))
            env = dict(p.agent_env)
            self.assertTrue(env[var].startswith(f"claude-bottle-placeholder-{var}-"), name)
            self.assertNotIn("real-value-never-in-the-plan", str(p.to_json()))
            self.assertEqual(p.agent_command, agents.KINDS[name].command)
            self.assertEqual(p.agent_image, agents.KINDS[name].image)

    def test_no_key_on_the_host_no_secret(self) -> None:
        m = manifest.parse({"name": "demo", "agent": {"kind": "codex"}, "egress": {"allow": ["@openai"]}}, "/x.json")
        self.assertEqual(plan.build(m, "abcd1234", environ={}).secrets, ())

    def test_unknown_kind_is_a_field_error(self) -> None:
        with self.assertRaises(manifest.ManifestError) as cm:
            manifest.parse({"name": "demo", "agent": {"kind": "cursor"}}, "/nowhere/m.json")
        self.assertEqual(cm.exception.field, "agent.kind")
        self.assertTrue(re.search(r"claude, codex, gemini", cm.exception.message))

    def test_codex_trusts_the_bundle_ca_its_own_way(self) -> None:
        m = manifest.parse({"name": "demo", "agent": {"kind": "codex"}}, "/nowhere/m.json")
        self.assertEqual(dict(plan.build(m, "abcd1234").agent_env)["CODEX_CA_CERTIFICATE"], plan.CA_PATH)


if __name__ == "__main__":
    unittest.main()


class CliTest(unittest.TestCase):
    def test_build_agent_choices_are_the_kinds(self) -> None:
        # cli.py spells them out so that parsing never imports the table (start-up time).
        from claude_bottle import cli

        parser = cli.parser()
        build = next(a for a in parser._subparsers._group_actions[0].choices["build"]._actions  # noqa: SLF001
                     if "--agent" in a.option_strings)
        self.assertEqual(set(build.choices), set(agents.KINDS))
