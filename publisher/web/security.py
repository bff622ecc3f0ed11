"""Web security for the subscriber pages: CSRF tokens and per-key rate limits.

CSRF: a random secret lives in Flask's signed session cookie (SameSite=Lax,
HttpOnly); every form carries it in a hidden ``csrf_token`` field, and a POST
whose field does not match, or whose ``Origin`` header names another site, is
refused with 400. The RFC 8058 one-click unsubscribe POST is the one exception:
mail providers send it without cookies, and the signed token in its URL is its
authority.

Rate limits: fixed windows counted in the ``rate_limits`` table, so that every
process behind a load balancer shares them. IPv6 clients are counted per /64.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import request, session
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..schema import rate_limits
from ..store import Store, utcnow

logger = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
_SESSION_KEY = "csrf"


class CSRFError(Exception):
    """The form's CSRF token is missing or wrong, or the request came from another site."""


def csrf_token() -> str:
    """The session's CSRF token, made on first use (templates call this)."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def check_csrf(site_url: str) -> None:
    """Raise CSRFError unless this POST carries the session's token from our own origin."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin not in _own_origins(site_url):
        raise CSRFError(f"cross-site POST from {origin}")
    expected = session.get(_SESSION_KEY)
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not expected:
        raise CSRFError("no CSRF token in the session (cookies blocked or session expired)")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise CSRFError("CSRF token does not match")


def _own_origins(site_url: str) -> set[str]:
    parts = urlsplit(site_url)
    return {f"{parts.scheme}://{parts.netloc}", request.host_url.rstrip("/")}


def client_key(remote_addr: str | None) -> str:
    """The rate-limit key for a client address: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address((remote_addr or "").split("%")[0])
    except ValueError:
        return remote_addr or "unknown"
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def hashed(value: str) -> str:
    """A stable, non-reversible key for values we would rather not store (addresses)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    count: int
    retry_after: int  # seconds until the window ends (0 when allowed)


class RateLimiter:
    """Fixed-window counters in the ``rate_limits`` table."""

    def __init__(self, store: Store):
        self.store = store

    def hit(self, key: str, limit: int, window: timedelta,
            now: datetime | None = None) -> Verdict:
        """Count one event for *key*; allowed while at most *limit* fell in the window."""
        now = now or utcnow()
        key = key[:255]
        for _ in range(3):
            try:
                count, start = self._count(key, window, now)
                break
            except IntegrityError:  # two first hits raced to insert: count again
                continue
        else:
            return Verdict(True, 0, 0)
        if count <= limit:
            return Verdict(True, count, 0)
        retry = max(1, int((start + window - now).total_seconds()))
        return Verdict(False, count, retry)

    def _count(self, key: str, window: timedelta, now: datetime) -> tuple[int, datetime]:
        cutoff = now - window
        with self.store.engine.begin() as conn:
            n = conn.execute(update(rate_limits).where(
                rate_limits.c.key == key, rate_limits.c.window_start > cutoff)
                .values(count=rate_limits.c.count + 1)).rowcount
            if not n:
                n = conn.execute(update(rate_limits).where(rate_limits.c.key == key)
                                 .values(window_start=now, count=1)).rowcount
            if not n:
                conn.execute(delete(rate_limits).where(
                    rate_limits.c.window_start < now - timedelta(days=2)))
                conn.execute(insert(rate_limits).values(key=key, window_start=now, count=1))
            row = conn.execute(select(rate_limits.c.count, rate_limits.c.window_start)
                               .where(rate_limits.c.key == key)).one()
        return row.count, row.window_start
