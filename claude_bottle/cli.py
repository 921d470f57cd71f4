"""Command line: parse arguments and hand off to claude_bottle.commands. Nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from claude_bottle import __version__
from claude_bottle.errors import EXIT_USAGE, BottleError, Interrupted

EPILOG = """exit status:
  0    success (start: the agent exited 0)
  1    a failure at run time (the bundle never became healthy, an image build failed)
  2    bad input: a manifest, a flag or a file; nothing was created
  125  Docker or smolvm is missing, unreachable or unsafe; nothing was created
  129/130/143  start was stopped by SIGHUP/SIGINT/SIGTERM; everything was removed
  N    start: the agent's own exit status
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other bad input
        self.exit(EXIT_USAGE, f"claude-bottle: error: {message}\n")


def _usage(message: str) -> int:
    print(f"claude-bottle: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="claude-bottle",
        description="Run a coding agent that can reach nothing but an egress-filtering sidecar bundle.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"claude-bottle {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    start = sub.add_parser("start", help="run a bottle", usage="%(prog)s [options] MANIFEST [-- CMD ...]",
                           description="Run a bottle; `-- CMD ...` replaces the agent's command.", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    start.add_argument("manifest", metavar="MANIFEST", help="path to the manifest (JSON)")
    start.add_argument("--dry-run", action="store_true", help="print the plan; create nothing")
    start.add_argument("--format", choices=("text", "json"), default="text", help="plan output format")
    start.add_argument("--unsafe-allow-smolvm-egress-defects", action="store_true",
                       help="run on a smolvm version with known egress-filtering defects (see README)")
    start.set_defaults(agent_command=[])

    validate = sub.add_parser("validate", help="check a manifest and print it normalised")
    validate.add_argument("manifest", metavar="MANIFEST")
    validate.add_argument("--format", choices=("text", "json"), default="json")

    verify = sub.add_parser(
        "verify", help="start the bottle, prove from inside that its policy holds, remove it",
        description="Start the bottle MANIFEST describes (docker runtime), run a built-in battery inside it\n"
                    "with the agent image's python3, and remove everything. Allowed rules are reported as\n"
                    "reached or not (never a failure); every way out must be refused.",
        epilog="exit status:\n  0    every escape was refused\n  1    at least one was not (or could not be "
               "tried), or a failure at run time\n  2    bad input, an agent image without python3, or a runtime "
               "verify does not support yet\n  125  Docker is missing, unreachable or unsafe; nothing was created\n"
               "  129/130/143  stopped by SIGHUP/SIGINT/SIGTERM; everything was removed\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("manifest", metavar="MANIFEST", help="path to the manifest (JSON)")
    verify.add_argument("--format", choices=("text", "json"), default="text", help="a table, or JSON")
    # Defaults live in claude_bottle.verify (a unit test holds this help to them); None keeps cli.py light.
    verify.add_argument("--outside", metavar="ADDR", help="an IPv4 address outside the bottle, for the direct "
                        "TCP, UDP and ICMP attempts (default: the public resolver 1.1.1.1)")
    verify.add_argument("--outside6", metavar="ADDR", help="an IPv6 address outside the bottle "
                        "(default: 2606:4700:4700::1111)")
    verify.add_argument("--outside-name", metavar="NAME", help="a name that resolves outside the bottle "
                        "(default: example.com)")

    ps = sub.add_parser("ps", help="list running bottles")
    ps.add_argument("--format", choices=("text", "json"), default="text")

    cleanup = sub.add_parser("cleanup", help="remove what a killed launcher left behind")
    which = cleanup.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", metavar="NAME", help="the bottle's name")
    which.add_argument("--all", action="store_true", help="every bottle's leftovers")
    cleanup.add_argument("--force", action="store_true", help="also remove sessions whose launcher is alive")
    cleanup.add_argument("--state", action="store_true",
                         help="also remove the bottles' kept agent homes (state volumes): login, settings, history")

    logs = sub.add_parser("logs", help="show what a bottle's bundle allowed, blocked and injected",
                          description="Show a bottle's egress decisions: live from its bundle while it runs, "
                                      "else from the log saved when its session ended.")
    logs.add_argument("name", metavar="NAME", help="the bottle's name")
    logs.add_argument("--session", help="which session, when several run (default: the newest)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new decisions")
    logs.add_argument("--json", action="store_true", help="JSON lines instead of aligned text")

    render = sub.add_parser("render", help="print a bottle's objects for another executor (a cluster)",
                            usage="%(prog)s --target kubernetes [options] MANIFEST [-- CMD ...]",
                            description="Print the session's Kubernetes objects as one kubectl-appliable "
                                        "document (a v1 List in JSON); what only a running session has "
                                        "(the bundle's CA, secret values) is explained on stderr.")
    render.add_argument("manifest", metavar="MANIFEST")
    render.add_argument("--target", choices=("kubernetes",), required=True, help="what to render for")
    render.add_argument("--agent", choices=("pod", "sandbox"), help="the agent as a Pod or an agent-sandbox "
                        "Sandbox (default: the manifest's kubernetes.agent; \"auto\" renders a Pod)")
    render.add_argument("--with-secret-values", action="store_true",
                        help="put the secrets' values into the Secret (they are then in the output)")
    render.set_defaults(agent_command=[])

    build = sub.add_parser("build", help="build the sidecars image (and optionally the agent image)")
    build.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="passed to docker build (e.g. BASE_IMAGE=...)")
    build.add_argument("--agent", nargs="?", const="claude", choices=("claude", "codex", "gemini"), metavar="KIND",
                       help="also build an agent image: claude (the default), codex or gemini")
    build.add_argument("--print-tag", action="store_true", help="print the sidecars image tag and exit")
    build.add_argument("--offline", action="store_true",
                       help="no container registry: build every image from Debian's archive and the Go module "
                            "proxy (a pipelock image already on the machine is used; see the README)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the agent's command, verbatim (argparse would drop an inner
    # `--` and reject one after options), so split it off before parsing.
    command: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    args = parser().parse_args(argv)
    if command is not None:
        if args.command not in ("start", "render"):
            return _usage("only `start` and `render` take `-- CMD`")
        if not command:
            return _usage("`--` must be followed by a command")
        args.agent_command = command
    if args.command is None:
        parser().print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "validate":
            from claude_bottle.commands import validate

            return validate.run(args)
        if args.command == "start":
            from claude_bottle.commands import start

            return start.run(args)
        if args.command == "verify":
            from claude_bottle.commands import verify as verify_cmd

            return verify_cmd.run(args)
        if args.command == "logs":
            from claude_bottle.commands import logs as logs_cmd

            return logs_cmd.run(args)
        if args.command == "render":
            from claude_bottle.commands import render as render_cmd

            return render_cmd.run(args)
        if args.command in ("ps", "cleanup"):
            from claude_bottle.commands import sessions

            return sessions.run(args)
        from claude_bottle.commands import build as build_cmd

        return build_cmd.run(args)
    except BottleError as exc:
        print(f"claude-bottle: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Interrupted as stop:  # a second signal while the first was being handled
        return stop.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
