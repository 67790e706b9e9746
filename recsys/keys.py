"""The secrets of one install, generated on first use: no key or token is shared between installs.

Why: a pseudonymisation key everybody knows pseudonymises nothing (anyone can hash a guessed id
and find it in the logs), and a default admin token is a default password. So unless a
deployment sets `RECSYS_LOG_KEY` / `RECSYS_ADMIN_TOKEN` (from its secret store), each is made
once, at random, into `RECSYS_HOME/secrets/` with owner-only permissions, and every process of
the install (the service's workers, the CLI) reads the same file. The service refuses a key
shorter than 32 bytes, and refuses to listen beyond loopback unless the admin token was set
explicitly: a generated one lives on one machine, a reachable service needs a managed one.

A third key, the audit key (`RECSYS_AUDIT_KEY`), hashes the ids of forgotten users for the
erasure audit log and the tombstone list (recsys.privacy). It is separate from the log key on
purpose: an audit entry can prove an erasure to someone who knows the id, yet cannot be joined
to the pseudonyms of the logs, and rotating the log key never un-forgets anybody.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from recsys.settings import Settings

MIN_KEY_BYTES = 32
LOG_KEY, ADMIN_TOKEN, AUDIT_KEY = "log-key", "admin-token", "audit-key"


def secrets_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "secrets"


def local_secret(settings: Settings, name: str) -> str:
    """The install's secret `name`, made on first use (64 random URL-safe characters, mode 0600).

    Written to a private temporary file and then hard-linked into place, so a concurrent
    reader (another worker starting at the same moment) sees no file or the whole secret,
    and of two writers the first link wins and both return its value.
    """
    folder = secrets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / name
    if not path.is_file():
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            tmp.unlink()
    return path.read_text().strip()


def log_key(settings: Settings) -> bytes:
    """The HMAC key that pseudonymises user ids in the logs: RECSYS_LOG_KEY, else this install's own."""
    return _hmac_key(settings.log_key, settings, LOG_KEY, "RECSYS_LOG_KEY")


def audit_key(settings: Settings) -> bytes:
    """The HMAC key of erasure audit entries and tombstones: RECSYS_AUDIT_KEY, else this install's own."""
    return _hmac_key(settings.audit_key, settings, AUDIT_KEY, "RECSYS_AUDIT_KEY")


def _hmac_key(configured: SecretStr | None, settings: Settings, name: str, variable: str) -> bytes:
    key = configured.get_secret_value() if configured is not None else local_secret(settings, name)
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ValueError(
            f"{variable} is {len(key.encode())} bytes; an HMAC key needs at least {MIN_KEY_BYTES} "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))', or unset it to use a generated one)"
        )
    return key.encode()


def admin_token(settings: Settings) -> str:
    """The bearer token of the service's admin routes: RECSYS_ADMIN_TOKEN, else this install's own."""
    return settings.admin_token.get_secret_value() if settings.admin_token is not None else local_secret(settings, ADMIN_TOKEN)


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve on a non-loopback interface without an explicitly set admin token."""
    if settings.admin_token is None and not _loopback(host):
        raise RuntimeError(
            f"refusing to listen on {host} without RECSYS_ADMIN_TOKEN: beyond loopback the admin routes need a "
            "token from your secret store (a generated one lives only in RECSYS_HOME/secrets of this machine)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere
