"""SHA-256 without hashlib's start-up cost.

`import hashlib` loads OpenSSL's libcrypto (about 5 ms here, a sixth of a dry run's own time); the
builtin `_sha256` module gives the same digests in about 1 ms. hashlib is the fallback where the
builtin is missing or renamed (it is `_sha2` from Python 3.12).
"""

from __future__ import annotations

try:
    from _sha256 import sha256
except ImportError:  # pragma: no cover - depends on the interpreter build
    try:
        from _sha2 import sha256  # type: ignore[no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]

__all__ = ["sha256"]
