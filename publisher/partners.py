"""Partner channels: signed webhooks and editor emails (the only partner I/O).

Each ``send`` makes one attempt and returns an :class:`Outcome`; retry
policy, claims and the audit log live in :mod:`publisher.syndication`.

Webhook signing (what a partner verifies)::

    X-Publisher-Timestamp: <unix seconds>
    X-Publisher-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    Idempotency-Key: <stable per partner + article + version + event>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, parseaddr

import requests

from .config import Config, PartnerConfig
from .errors import DeliveryError, SMTPReplyError, SyndicationError
from .message import header_safe, sender_domain
from .models import Article
from .render import render_template
from .rights import Content

logger = logging.getLogger(__name__)

USER_AGENT = "publisher-syndication/1.0"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None  # HTTP status; None for transport errors and email
    error: str = ""
    retryable: bool = False
    ambiguous: bool = False  # the partner may have processed it (read timeout)
    retry_after: float | None = None
    local: bool = False  # failed before anything was sent (configuration): no in-run retry


def idempotency_key(partner: str, article_id: str, version: int, event: str) -> str:
    """Stable for one partner, article, version and event: the same on every retry."""
    raw = f"{partner}\x00{article_id}\x00{version}\x00{event}".encode()
    return hashlib.sha256(raw).hexdigest()[:40]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``"<timestamp>.<raw body>"``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float,
           tolerance: float = 300.0) -> bool:
    """What a receiver does: recompute, compare in constant time, reject stale timestamps."""
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _iso(dt: datetime | None, config: Config) -> str | None:
    return dt.astimezone(config.site.timezone).isoformat() if dt else None


def payload(config: Config, article: Article, event: str, content: Content, *,
            reason: str = "") -> dict:
    """The webhook JSON document for one event."""
    doc = {
        "event": event,
        "id": article.id,
        "version": article.version,
        "title": content.title,
        "url": content.url,
        "author": article.author,
        "published": _iso(article.published, config),
        "updated": _iso(article.modified, config),
        "categories": [article.category] if article.category else [],
        "tags": list(article.tags),
        "origin": "reprint" if content.source is not None else "original",
        "source": content.source,
        "summary": content.summary,
        "html": content.html,
        "text": content.text,
        "attribution": content.attribution,
        "terms_version": config.rights.terms_version,
        "licence": content.mode,
    }
    if event == "withdrawn":
        doc["reason"] = reason
    return doc


def encode(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WebhookSender:
    """POSTs signed JSON to one partner over one keep-alive session."""

    def __init__(self, partner: PartnerConfig, *, clock: Callable[[], float] = time.time,
                 session: requests.Session | None = None):
        if not partner.secret:
            raise SyndicationError(f"partner {partner.name}: environment variable "
                                   f"{partner.secret_env or '(secret_env)'} is not set")
        self.partner = partner
        self.clock = clock
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def headers(self, body: bytes, key: str, event: str) -> dict[str, str]:
        ts = str(int(self.clock()))
        return {"Content-Type": "application/json; charset=utf-8",
                "X-Publisher-Timestamp": ts,
                "X-Publisher-Signature": sign(self.partner.secret, ts, body),
                "X-Publisher-Event": event,
                "Idempotency-Key": key}

    def send(self, body: bytes, key: str, event: str) -> Outcome:
        p = self.partner
        try:
            resp = self.session.post(p.url, data=body, headers=self.headers(body, key, event),
                                     timeout=(p.timeout, p.timeout), allow_redirects=False)
        except requests.ConnectTimeout:
            return Outcome(False, error=f"connect timeout after {p.timeout:g}s", retryable=True)
        except requests.Timeout:
            return Outcome(False, error=f"timeout: no answer within {p.timeout:g}s",
                           retryable=True, ambiguous=True)
        except requests.ConnectionError as e:
            return Outcome(False, error=f"connection error: {_short(e)}", retryable=True)
        except requests.RequestException as e:
            return Outcome(False, error=f"request failed: {_short(e)}")
        with resp:
            status = resp.status_code
        if 200 <= status < 300:
            return Outcome(True, status=status)
        return Outcome(False, status=status, error=f"HTTP {status} {resp.reason or ''}".strip(),
                       retryable=status in RETRYABLE_STATUS,
                       retry_after=_retry_after(resp.headers.get("Retry-After")))

    def close(self) -> None:
        self.session.close()


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


def editor_addresses(partner: PartnerConfig) -> list[str]:
    """The ``url`` of an email partner: one address or several, comma separated."""
    return [addr for _, addr in getaddresses([partner.url]) if "@" in addr]


SUBJECTS = {"published": "[授权稿件]", "updated": "[稿件更新]", "withdrawn": "[撤稿通知]"}


def build_email(config: Config, partner: PartnerConfig, article: Article, event: str,
                content: Content, key: str, now: datetime, *, reason: str = "") -> EmailMessage:
    """One message to the partner's editors: the licensed article, or a kill notice."""
    context = dict(site=config.site, rights=config.rights, partner=partner, article=article,
                   content=content, event=event, reason=reason,
                   published=_iso(article.published, config), version=article.version)
    kind = "withdrawn" if event == "withdrawn" else "article"
    text = render_template(config, f"partner/{kind}.txt", **context)
    html = render_template(config, f"partner/{kind}.html", **context)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = header_safe(config.email.from_addr)
    msg["To"] = ", ".join(editor_addresses(partner))
    version = f" (v{article.version})" if event == "updated" else ""
    msg["Subject"] = header_safe(f"{SUBJECTS[event]}{version} {content.title}")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{key}.{article.version}@{sender_domain(config)}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Publisher-Event"] = event
    msg["X-Publisher-Article"] = header_safe(article.id)
    msg["X-Publisher-Version"] = str(article.version)
    msg["X-Publisher-Terms-Version"] = header_safe(config.rights.terms_version)
    msg["Idempotency-Key"] = key
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


class EmailSender:
    """Hands partner messages to the configured mail transport."""

    def __init__(self, config: Config, transport):
        self.config = config
        self.transport = transport
        self.envelope_from = parseaddr(config.email.from_addr)[1]

    def send(self, partner: PartnerConfig, msg: EmailMessage) -> Outcome:
        rcpts = editor_addresses(partner)
        if not rcpts:
            return Outcome(False, error=f"no editor address in url {partner.url!r}")
        try:
            self.transport.send(self.envelope_from, rcpts, msg.as_bytes(policy=SMTP))
        except SMTPReplyError as e:
            return Outcome(False, status=e.code, error=str(e), retryable=e.code < 500)
        except DeliveryError as e:
            return Outcome(False, error=str(e), retryable=True)
        return Outcome(True)
