"""Delivery: drain the outbox through the transport.

Rows are claimed before sending and marked after the server accepted them, so
a crash can at most repeat the messages in flight. Each (edition, variant) is
rendered once; recipients only fill in their links.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy import and_, or_, select, update

from . import tokens
from .config import Config
from .editions import Edition, edition_articles, get_edition_by_id
from .errors import DeliveryError, SMTPReplyError
from .message import MessageFactory, Recipient, sender_domain
from .render import Variant, render_digest
from .schema import editions, outbox, subscribers
from .store import Store, utcnow
from .transport import Transport, make_transport

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=10)


@dataclass
class SendReport:
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.counts["sent"] / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        c = self.counts
        return (f"sent {c['sent']}, deferred {c['deferred']}, bounced {c['bounced']}, "
                f"failed {c['failed']}, suppressed {c['suppressed']}, {self.rate:.1f} messages/s")


def links(config: Config, signer: tokens.Signer, token_key: str) -> tuple[str, str, str]:
    """(preferences URL, one-click unsubscribe URL, unsubscribe mailto) for a subscriber."""
    base = config.site.url
    unsub = signer.make(token_key, tokens.UNSUBSCRIBE)
    mailbox = config.email.unsubscribe_mailto or f"unsubscribe@{sender_domain(config)}"
    return (f"{base}/preferences/{signer.make(token_key, tokens.PREFERENCES)}",
            f"{base}/unsubscribe/{unsub}",
            f"mailto:{mailbox}?subject=unsubscribe-{unsub}")


def archive_url(config: Config, edition: Edition) -> str:
    return f"{config.site.url}/archive/{edition.key}"


class FactoryCache:
    """Renders each (edition, variant) once and keeps its MessageFactory."""

    def __init__(self, config: Config, store: Store):
        self.config, self.store = config, store
        self._cache: dict[tuple[int, str], MessageFactory] = {}

    def get(self, edition_id: int, variant_key: str) -> MessageFactory:
        key = (edition_id, variant_key)
        if key not in self._cache:
            edition = get_edition_by_id(self.store, edition_id)
            assert edition is not None
            digest = self.config.digest(edition.digest)
            rendered = render_digest(self.config, digest, edition.key, edition.period_end,
                                     edition_articles(self.store, edition),
                                     Variant.from_key(variant_key), archive_url(self.config, edition))
            self._cache[key] = MessageFactory(self.config, rendered, digest.name, edition.period_end)
        return self._cache[key]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_batch(store: Store, now: datetime, limit: int, edition_id: int | None = None) -> list:
    """Claim up to *limit* due rows for this process; return them joined with subscribers."""
    me = worker_id()
    due = or_(outbox.c.status == "pending",
              and_(outbox.c.status == "deferred", outbox.c.next_attempt_at <= now),
              and_(outbox.c.status == "claimed", outbox.c.claimed_at < now - CLAIM_TIMEOUT))
    with store.engine.begin() as conn:
        q = select(outbox.c.id).where(due).order_by(outbox.c.id).limit(limit)
        if edition_id is not None:
            q = q.where(outbox.c.edition_id == edition_id)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        ids = [r.id for r in conn.execute(q)]
        if not ids:
            return []
        conn.execute(update(outbox).where(outbox.c.id.in_(ids))
                     .values(status="claimed", claimed_at=now, claimed_by=me))
        rows = conn.execute(
            select(outbox.c.id, outbox.c.edition_id, outbox.c.variant, outbox.c.email,
                   outbox.c.attempts, subscribers.c.name, subscribers.c.token_key)
            .join(subscribers, subscribers.c.id == outbox.c.subscriber_id)
            .where(outbox.c.id.in_(ids)).order_by(outbox.c.id)).all()
    return rows


def send_pending(config: Config, store: Store, *, transport: Transport | None = None,
                 now: datetime | None = None, edition_id: int | None = None) -> SendReport:
    """Send every due outbox row; return counts."""
    import time

    report = SendReport()
    transport = transport or make_transport(config)
    factories = FactoryCache(config, store)
    signer = tokens.signer(config)
    sender = parseaddr(config.email.from_addr)[1]
    started = time.monotonic()
    try:
        while rows := claim_batch(store, now or utcnow(), config.email.batch_size, edition_id):
            for row in rows:
                report.counts[_send_one(config, store, transport, factories, signer, sender, row)] += 1
    finally:
        transport.close()
    report.seconds = time.monotonic() - started
    _complete_editions(store)
    return report


def _send_one(config, store, transport, factories, signer, sender, row) -> str:
    prefs, unsub, mailto = links(config, signer, row.token_key)
    try:
        data = factories.get(row.edition_id, row.variant).build(
            Recipient(row.email, row.name, prefs, unsub, mailto))
        transport.send(sender, [row.email], data)
    except SMTPReplyError as e:
        return _mark_failure(store, row, e.code, e.enhanced, str(e), permanent=e.code >= 500)
    except DeliveryError as e:
        logger.warning("outbox %s (%s): %s", row.id, row.email, e)
        return _mark_failure(store, row, None, None, str(e), permanent=False)
    _mark(store, row.id, status="sent", sent_at=utcnow(), attempts=row.attempts + 1)
    return "sent"


def _mark(store: Store, row_id: int, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


def _mark_failure(store, row, code, enhanced, error, *, permanent: bool) -> str:
    attempts = row.attempts + 1
    if permanent:
        status = "bounced"
        _mark(store, row.id, status=status, attempts=attempts, last_code=code,
              last_enhanced=enhanced, last_error=error)
        return status
    delay = timedelta(minutes=min(2 ** attempts, 240))
    status = "failed" if attempts >= 8 else "deferred"
    _mark(store, row.id, status=status, attempts=attempts, last_code=code, last_enhanced=enhanced,
          last_error=error, next_attempt_at=utcnow() + delay)
    return status


def _complete_editions(store: Store) -> None:
    open_rows = select(outbox.c.edition_id).where(
        outbox.c.status.in_(("pending", "claimed", "deferred"))).distinct()
    with store.engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.status == "sending",
                                            editions.c.id.not_in(open_rows))
                     .values(status="sent", completed_at=utcnow()))
