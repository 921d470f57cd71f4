"""Image names, and the pure parts of building them.

The sidecars image tag carries a digest of its build context, so a changed supervisor or addon is
rebuilt on the next start instead of silently running the old one.
"""

from __future__ import annotations

import functools
import os

from claude_bottle import __version__
from claude_bottle.digest import sha256

BUNDLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundle")
AGENT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent")
SIDECARS_REPO = "claude-bottle/sidecars"
AGENT_IMAGE = f"claude-bottle/agent:{__version__}"
# Files that go into the sidecars image; a change to any of them changes the tag.
BUNDLE_FILES = ("Dockerfile.sidecars", "supervise.py", "addon.py", "addon_responses.py", "addon_websockets.py", "verdicts.py", "policy.py", "dlp.py", "detect.py",
                "detect_text.py", "detect_checks.py", "detect_tokens.py", "detect_secrets.py", "detect_hosts.py",
                "detect_config.py", "detect_finance.py", "detect_layers.py", "detect_decode.py", "tunnel.py",
                "proxy.py", "shared.py", "bip39_english.txt", "gitleaks.toml",
                "scanner/go.mod", "scanner/go.sum", "scanner/main.go", "scanner/gate/main.go",
                "scanner/boot/main.go")
IMAGE_ENV = "CLAUDE_BOTTLE_SIDECARS_IMAGE"  # use a prebuilt image instead (air-gapped hosts)
# "present" or "absent": set on the sidecars image from what its PIPELOCK_IMAGE holds (Dockerfile.sidecars),
# and on the placeholder image that machines without pipelock build in its place.
PIPELOCK_LABEL = "org.claude-bottle.pipelock"
# Carried by Dockerfile.sidecars' intermediate stage, so a build can remove what it left dangling.
STAGE_LABEL = "org.claude-bottle.build-stage"


@functools.lru_cache(maxsize=1)
def _bundle_digest() -> str:
    digest = sha256()
    for name in BUNDLE_FILES:
        digest.update(name.encode() + b"\0")
        try:
            with open(os.path.join(BUNDLE_DIR, name), "rb") as handle:
                digest.update(handle.read())
        except FileNotFoundError:
            digest.update(b"(missing)")
    return digest.hexdigest()[:12]


def sidecars_image() -> str:
    return os.environ.get(IMAGE_ENV) or f"{SIDECARS_REPO}:{__version__}-{_bundle_digest()}"


def build_argv(tag: str, context: str, dockerfile: str, build_args: dict[str, str]) -> list[str]:
    argv = ["docker", "build", "-t", tag, "-f", os.path.join(context, dockerfile)]
    for key in sorted(build_args):
        argv += ["--build-arg", f"{key}={build_args[key]}"]
    return argv + [context]


def sidecars_build(tag: str, build_args: dict[str, str], pipelock_state: str = "present") -> list[str]:
    return build_argv(tag, BUNDLE_DIR, "Dockerfile.sidecars", {**build_args, "PIPELOCK_STATE": pipelock_state})


def label_argv(image: str, label: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image]


def prune_stages_argv() -> list[str]:
    return ["docker", "image", "prune", "--force", "--filter", f"label={STAGE_LABEL}"]


OFFLINE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "offline", "build-images")
AGENT_BASE_IMAGE = f"claude-bottle/agent-base:{__version__}"  # what the offline build gives for agents


def agent_build(build_args: dict[str, str], image: str = AGENT_IMAGE, dockerfile: str = "Dockerfile.agent") -> list[str]:
    return build_argv(image, AGENT_DIR, dockerfile, build_args)
