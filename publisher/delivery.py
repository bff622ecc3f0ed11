"""Delivery: drain the outbox through a pool of transports.

Rows are claimed in batches (``SKIP LOCKED`` on PostgreSQL) and marked one by
one after the server's 250, before that connection takes its next message: a
crash repeats at most one message per connection and loses none (claims held
by a dead process on this host are released when the next send starts; other
claims expire after :data:`CLAIM_TIMEOUT`). Each (edition, variant) is rendered
once; recipients only fill in their links (:mod:`publisher.message`).

Replies: 250 → sent; 4xx or a dropped connection → deferred with exponential
backoff and jitter until ``[email].retry_deadline_hours`` after the first
attempt, then failed; 5xx per :func:`publisher.bounces.classify`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update

from .config import Config
from .schema import editions, outbox, subscribers, suppressions
from .sending import (  # noqa: F401 - part of this module's interface
    FactoryCache,
    LinkSigner,
    Marker,
    Progress,
    RowSender,
    Sender,
    archive_url,
    backoff,
    links,
    release,
)
from .store import Store, utcnow
from .transport import Transport, TransportPool, make_pool

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=10)
OPEN = ("pending", "claimed", "deferred")


@dataclass
class SendReport:
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.counts["sent"] / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        c = self.counts
        text = (f"sent {c['sent']}, deferred {c['deferred']}, bounced {c['bounced']}, "
                f"rejected {c['rejected']}, failed {c['failed']}, skipped {c['skipped']}, "
                f"suppressed {c['suppressed']}, {self.rate:.1f} messages/s")
        return text + "".join(f"; {e}" for e in self.errors)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def due(now: datetime):
    """The outbox rows a claim takes at *now*: pending, deferred and due, or claimed long ago."""
    return or_(outbox.c.status == "pending",
               and_(outbox.c.status == "deferred", outbox.c.next_attempt_at <= now),
               and_(outbox.c.status == "claimed", outbox.c.claimed_at < now - CLAIM_TIMEOUT))


def claim_batch(store: Store, now: datetime, limit: int, edition_id: int | None = None) -> list:
    """Claim up to *limit* due rows for this process; return them joined with subscribers."""
    me = worker_id()
    with store.engine.begin() as conn:
        q = select(outbox.c.id).where(due(now)).order_by(outbox.c.id).limit(limit)
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
                   outbox.c.attempts, outbox.c.first_attempt_at, outbox.c.subscriber_id,
                   subscribers.c.name, subscribers.c.token_key,
                   subscribers.c.status.label("subscriber_status"),
                   suppressions.c.reason.label("suppressed"))
            .join(subscribers, subscribers.c.id == outbox.c.subscriber_id)
            .outerjoin(suppressions, suppressions.c.email == outbox.c.email)
            .where(outbox.c.id.in_(ids)).order_by(outbox.c.id)).all()
    return rows


def release_dead_claims(store: Store) -> int:
    """Put back rows claimed by processes of this host that no longer exist."""
    host = socket.gethostname()
    with store.engine.begin() as conn:
        owners = [r[0] for r in conn.execute(
            select(outbox.c.claimed_by).where(outbox.c.status == "claimed").distinct())]
        dead = [o for o in owners if o and _is_dead(o, host)]
        if not dead:
            return 0
        n = conn.execute(update(outbox).where(outbox.c.status == "claimed",
                                              outbox.c.claimed_by.in_(dead))
                         .values(status="pending", claimed_at=None, claimed_by=None)).rowcount
    logger.info("released %d outbox rows claimed by stopped processes %s", n, ", ".join(dead))
    return n


def _is_dead(owner: str, host: str) -> bool:
    owner_host, _, pid = owner.rpartition(":")
    if owner_host != host or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False



def send_pending(config: Config, store: Store, *, transport: Transport | None = None,
                 now: datetime | None = None, edition_id: int | None = None,
                 progress: Progress | None = None) -> SendReport:
    """Send every due outbox row through ``[email.smtp].connections`` connections."""
    release_dead_claims(store)
    pool = TransportPool.wrap(transport) if transport is not None else make_pool(config)
    total = count_due(store, now or utcnow(), edition_id) if progress else 0
    sender = Sender(config, store, pool, progress=progress, total=total,
                    clock=(lambda: now) if now is not None else utcnow)
    started = time.monotonic()
    try:
        while sender.alive:
            rows = claim_batch(store, now or utcnow(), config.email.batch_size, edition_id)
            if not rows:
                break
            sender.submit(rows)
    finally:
        sender.finish()
        pool.close()
    report = SendReport(counts=sender.counts, seconds=time.monotonic() - started,
                        errors=sender.errors)
    complete_editions(store)
    return report


def send_rows(config: Config, store: Store, rows: list, transport_or_pool, *,
              factories: FactoryCache | None = None) -> Counter:
    """Send an already claimed batch and mark each row; the caller owns the transport.

    *transport_or_pool*: one :class:`Transport` (used by one thread) or a
    :class:`TransportPool` (one thread per connection). *factories*: a render
    cache kept across batches (refreshed here), so variants are not rendered again.
    """
    pool = transport_or_pool if isinstance(transport_or_pool, TransportPool) \
        else TransportPool.wrap(transport_or_pool)
    if factories is not None:
        factories.refresh({row.edition_id for row in rows})
    sender = Sender(config, store, pool, factories=factories)
    try:
        sender.submit(rows)
    finally:
        sender.finish()
    return sender.counts


def dry_run(config: Config, store: Store, edition_id: int, *, batch: int = 2000) -> tuple[int, int]:
    """Build every message of an edition without sending or claiming: (messages, bytes)."""
    rows_sender = RowSender(config, store)
    q = (select(outbox.c.id, outbox.c.edition_id, outbox.c.variant, outbox.c.email,
                subscribers.c.name, subscribers.c.token_key)
         .join(subscribers, subscribers.c.id == outbox.c.subscriber_id)
         .where(outbox.c.edition_id == edition_id).order_by(outbox.c.id)
         .execution_options(yield_per=batch))
    n = size = 0
    with store.engine.connect() as conn:
        for row in conn.execute(q):
            size += len(rows_sender.build(row))
            n += 1
    return n, size


def count_due(store: Store, now: datetime, edition_id: int | None = None) -> int:
    """How many rows a claim would take now."""
    q = select(func.count()).select_from(outbox).where(due(now))
    if edition_id is not None:
        q = q.where(outbox.c.edition_id == edition_id)
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar() or 0)


def complete_editions(store: Store) -> None:
    open_rows = select(outbox.c.edition_id).where(outbox.c.status.in_(OPEN)).distinct()
    with store.engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.status == "sending",
                                            editions.c.id.not_in(open_rows))
                     .values(status="sent", completed_at=utcnow()))

