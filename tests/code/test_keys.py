"""No shared secrets: each install generates its own key and token, private, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from recsys import keys
from recsys.settings import Settings


def test_secrets_are_generated_once_privately_and_differ_between_installs(tmp_path: Path) -> None:
    one, other = Settings(home=tmp_path / "a"), Settings(home=tmp_path / "b")
    key = keys.log_key(one)
    assert key == keys.log_key(one) and len(key) >= keys.MIN_KEY_BYTES  # made once, then read back
    assert key != keys.log_key(other)  # nothing shared between installs
    token = keys.admin_token(one)
    assert token != key.decode() and (keys.secrets_dir(one) / keys.ADMIN_TOKEN).read_text().strip() == token
    for path in (keys.secrets_dir(one) / keys.LOG_KEY, keys.secrets_dir(one) / keys.ADMIN_TOKEN):
        assert path.stat().st_mode & 0o777 == 0o600
    assert keys.secrets_dir(one).stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in keys.secrets_dir(one).iterdir()) == [keys.ADMIN_TOKEN, keys.LOG_KEY]  # no temp files left


def test_configured_secrets_win_and_short_keys_are_refused(tmp_path: Path) -> None:
    configured = Settings(home=tmp_path, log_key=SecretStr("k" * 40), admin_token=SecretStr("t" * 40))
    assert keys.log_key(configured) == b"k" * 40 and keys.admin_token(configured) == "t" * 40
    assert not keys.secrets_dir(configured).exists()  # nothing generated when configured
    with pytest.raises(ValueError, match="at least 32"):
        keys.log_key(Settings(home=tmp_path, log_key=SecretStr("recsys-local-dev-key")))


def test_beyond_loopback_needs_an_explicit_admin_token(tmp_path: Path) -> None:
    generated = Settings(home=tmp_path)
    for host in ("127.0.0.1", "::1", "localhost"):
        keys.check_bind(generated, host)  # loopback: a generated token is enough
    for host in ("0.0.0.0", "10.1.2.3", "example.org"):
        with pytest.raises(RuntimeError, match="RECSYS_ADMIN_TOKEN"):
            keys.check_bind(generated, host)
    keys.check_bind(Settings(home=tmp_path, admin_token=SecretStr("t" * 40)), "0.0.0.0")
