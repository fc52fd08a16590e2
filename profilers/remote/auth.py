"""The agent's start-up checks: its bearer token (argument, token file or environment) and the host it binds.

A token shorter than :data:`~profilers.remote.wire.MIN_TOKEN_CHARS` is refused
at start-up; with none given, a random one is generated (the caller prints it
once). Token files are bounded, must be regular UTF-8 files, and a warning is
given when other users can read them.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from latnas.schema.errors import LatnasError
from profilers.remote.wire import MIN_TOKEN_CHARS, TOKEN_ENV

TOKEN_FILE_MAX_BYTES = 4096


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token_file(path: str | Path) -> str:
    """The token stored in ``path`` (first line, stripped); one-line LatnasError if unusable."""
    path = Path(path)
    try:
        if not path.is_file():
            raise LatnasError(f"token file {path} does not exist or is not a regular file")
        if path.stat().st_size > TOKEN_FILE_MAX_BYTES:
            raise LatnasError(f"token file {path} is larger than {TOKEN_FILE_MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LatnasError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LatnasError(f"token file {path} is not UTF-8 text") from None
    lines = text.strip().splitlines()
    if not lines:
        raise LatnasError(f"token file {path} is empty")
    return lines[0].strip()


def token_file_warning(path: str | Path) -> str | None:
    """A warning line when the token file can be read by other users, else ``None``."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"warning: token file {path} is readable by other users (chmod 600 {path})"
    return None


def resolve_token(token: str | None, token_file: str | Path | None = None) -> tuple[str, bool]:
    """The token to serve with and whether it was generated here.

    Taken from ``token``, else ``token_file``, else ``$LATNAS_AGENT_TOKEN``; an
    explicit token must have at least :data:`MIN_TOKEN_CHARS` characters. With
    none, a random one is made with :func:`secrets.token_urlsafe` (the caller
    prints it once).
    """
    if token is not None and token_file is not None:
        raise LatnasError("give the agent token once: --token or --token-file, not both")
    if token is None and token_file is not None:
        token = read_token_file(token_file)
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        return secrets.token_urlsafe(32), True
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise LatnasError(f"agent token too short: use at least {MIN_TOKEN_CHARS} characters (or omit it to get a random one)")
    return token, False
