"""What the launcher and the bundle must agree on, written once.

The launcher imports this as claude_bottle.bundle.shared; the bundle image ships the same file next
to the supervisor and the addon, which import it as the sibling module `shared`. A test holds both
sides to it. Stdlib only, no imports: it must load anywhere.
"""

PROXY_PORT = 8080  # mitmdump: the bundle's one agent-facing port
PIPELOCK_HOST = "127.0.0.1"  # loopback only: the agent must never reach pipelock past the addon
PIPELOCK_PORT = 8888
PIPELOCK_LISTEN = f"{PIPELOCK_HOST}:{PIPELOCK_PORT}"
CONFIG_DIR = "/etc/claude-bottle"  # where the launcher copies policy.json, pipelock.yaml, secrets.json
# The bundle's volume that its agent mounts read-only (Docker runtime): the agent's first program, and
# the session CA's public certificate once the bundle has made it. Other runtimes mount their copy of
# the certificate at the same path, so the agent's CA variables name one place everywhere.
SHARE_DIR = "/run/claude-bottle/bundle"  # beside, not over, the SSH agent socket in /run/claude-bottle
SHARED_CA = f"{SHARE_DIR}/ca.pem"
GATE = f"{SHARE_DIR}/gate"
# The Docker runtime's agent has no network: it reaches the proxy through this socket, in the same
# volume, by way of the gate's relay on its own loopback (AGENT_PROXY). The bundle then binds PROXY_PORT
# on the address in PROXY_HOST_ENV (loopback) and so serves no one on the network it egresses by.
PROXY_SOCKET = f"{SHARE_DIR}/proxy.sock"
# Not 8080: the agent's own dev servers want that one. 3128 is a proxy's port by convention.
AGENT_PROXY_PORT = 3128
AGENT_PROXY = f"127.0.0.1:{AGENT_PROXY_PORT}"
PROXY_HOST_ENV = "CLAUDE_BOTTLE_PROXY_HOST"

# A secret's stand-in in the agent: prefix, the secret's name, "-", 32 hex digits of a per-session seed.
PLACEHOLDER_PREFIX = "claude-bottle-placeholder-"
PLACEHOLDER_PATTERN = r"^claude-bottle-placeholder-[A-Za-z_][A-Za-z0-9_]*-[0-9a-f]{32}$"

DLP_MODES = ("scan", "warn", "skip")

# The addon's log lines: these events, and only these fields (never headers, bodies, paths or queries).
LOG_EVENTS = ("allowed", "blocked", "tunnel_open", "ready", "fatal", "injected", "warning", "failed")
LOG_FIELDS = ("host", "port", "reason", "method", "scheme", "peer", "kind", "secret", "rules", "mode")
