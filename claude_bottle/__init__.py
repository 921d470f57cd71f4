"""claude-bottle: run a coding agent where it can reach nothing but an egress-filtering sidecar bundle."""

__version__ = "0.1.0"
