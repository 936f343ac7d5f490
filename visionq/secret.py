"""The server secret: the key of the HMACs that name API keys in job records, history rows
and rate-limit counters (``api.security.fingerprint``), so a stored name cannot be turned
back into a weak key offline.

``VISIONQ_SECRET_KEY`` when set (every API host of a deployment must share it); else a
random 32-byte secret created once in ``<state dir>/secret_key`` (mode 0600) and read back
at every start, so names stay stable across restarts.  Several processes starting at once
agree on one file: it is written under a temporary name and linked into place, and a loser
of that race reads the winner's."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET_FILE = "secret_key"  # noqa: S105 - the file's name, not a secret
SECRET_BYTES = 32
MIN_SECRET_CHARS = 16


class SecretError(ValueError):
    pass


def server_secret(configured: str, state_dir: Path) -> bytes:
    if configured:
        if len(configured) < MIN_SECRET_CHARS:
            raise SecretError(f"VISIONQ_SECRET_KEY must be at least {MIN_SECRET_CHARS} "
                              f"characters (got {len(configured)})")
        return configured.encode()
    path = Path(state_dir) / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
        with contextlib.suppress(FileExistsError):  # another process won: use its secret
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_text().strip()
    if len(value) < MIN_SECRET_CHARS:
        raise SecretError(f"{path} holds no usable secret: delete it to make a new one "
                          "(the names of API keys in stored jobs change with it)")
    return value.encode()
