"""Signed tokens for subscriber links (confirm, preferences, unsubscribe).

A token carries the subscriber's random ``token_key`` (never the row id, never
the address) and the action, signed with itsdangerous using the secret from
``PUBLISHER_SECRET_KEY`` (the embedded default generates one under ``var/``).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .config import Config
from .errors import ConfigError

logger = logging.getLogger(__name__)

CONFIRM, PREFERENCES, UNSUBSCRIBE = "confirm", "preferences", "unsubscribe"
# Seconds a token stays valid. An unsubscribe link never expires: a reader who
# finds an old digest must still be able to leave (RFC 8058, Gmail/Yahoo 2024).
MAX_AGE: dict[str, int | None] = {CONFIRM: 7 * 86400, PREFERENCES: 400 * 86400,
                                  UNSUBSCRIBE: None}


class BadToken(Exception):
    """The token is malformed, tampered with, expired or for another action.

    ``reason`` is ``"expired"`` or ``"invalid"``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def secret_key(config: Config) -> str:
    """The signing key: from the environment, else a generated file under var/."""
    key = os.environ.get(config.web.secret_key_env)
    if key:
        return key
    path = config.var_dir / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        logger.warning("generated a signing key in %s; set %s in production",
                       path, config.web.secret_key_env)
        return key
    except FileExistsError:
        return Path(path).read_text().strip()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read or create the signing key: {e.strerror}") from e


def new_token_key() -> str:
    return secrets.token_hex(16)


class Signer:
    def __init__(self, key: str):
        self._s = URLSafeTimedSerializer(key, salt="publisher.subscriber")

    def make(self, token_key: str, action: str) -> str:
        return self._s.dumps([token_key, action])

    def load(self, token: str, action: str) -> str:
        """Return the token_key in a valid *action* token, or raise BadToken."""
        if not isinstance(token, str) or len(token) > 512:
            raise BadToken("invalid")
        try:
            value = self._s.loads(token, max_age=MAX_AGE[action])
        except SignatureExpired as e:
            raise BadToken("expired") from e
        except BadSignature as e:
            raise BadToken("invalid") from e
        if not (isinstance(value, list) and len(value) == 2 and value[1] == action
                and isinstance(value[0], str)):
            raise BadToken("invalid")
        return value[0]


def signer(config: Config) -> Signer:
    return Signer(secret_key(config))
