"""Partner syndication under the reprint terms (see DESIGN.md and docs/partners.md).

Two steps, each safe to run again and from several workers at once:

- :func:`enqueue` creates one ``deliveries`` row per partner × article ×
  version × event: ``published`` for a licensed article the partner never had,
  ``updated`` when it has an older version, ``withdrawn`` when an article it
  (possibly) received has been withdrawn. The unique key makes this idempotent.
- :func:`deliver_pending` claims due rows one at a time (a lease on
  ``next_attempt_at``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), sends them
  through the partner's channel with in-run retries and exponential backoff,
  then marks them ``delivered``, reschedules them, or dead-letters them after
  ``retry_deadline_minutes``. A delivered row is never sent again.

:func:`run` is both; :func:`withdraw` is called by ``publisher withdraw``.
Partner feeds are pulled, not pushed: :mod:`publisher.web.partnerfeed` records
what it serves. Every attempt and outcome goes to the append-only audit log.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from . import partners as channels
from . import rights
from .config import Config, PartnerConfig
from .errors import PublisherError, SyndicationError
from .models import Article
from .partnerlog import audit, print_partners, print_report  # noqa: F401  (CLI entry points)
from .schema import articles, deliveries
from .store import Store
from .transport import make_transport

logger = logging.getLogger(__name__)

CONTENT_EVENTS = ("published", "updated")
MAX_BACKOFF = 3600.0  # seconds between runs that retry one delivery, at most
FIRST_BACKOFF = 60.0
BATCH = 5000  # due rows looked at per call (the next call takes the rest)


@dataclass
class SyndicationReport:
    delivered: int = 0
    failed: int = 0  # attempts that failed and will be retried
    dead: int = 0
    enqueued: int = 0
    skipped: int = 0  # superseded, cancelled or left for the next run
    errors: list[str] = field(default_factory=list)

    def merge(self, other: SyndicationReport) -> None:
        for name in ("delivered", "failed", "dead", "enqueued", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors

    def summary(self) -> str:
        return (f"{self.enqueued} queued, {self.delivered} delivered, {self.failed} to retry, "
                f"{self.dead} dead")


def run(config: Config, store: Store, now: datetime, **kwargs) -> SyndicationReport:
    """Enqueue what is due, then deliver it."""
    enqueued = enqueue(config, store, now)
    report = deliver_pending(config, store, now, **kwargs)
    report.enqueued = enqueued
    return report


def withdraw(config: Config, store: Store, article: Article, reason: str, now: datetime,
             **kwargs) -> SyndicationReport:
    """Record the withdrawal and notify, at once, every partner that ever received it."""
    with store.engine.begin() as conn:
        audit(conn, now, config, partner="", article_id=article.id, version=article.version,
              event="withdraw", detail=reason)
    queued = _enqueue_withdrawals(config, store, now, article_id=article.id)
    report = deliver_pending(config, store, now, article_id=article.id, **kwargs)
    report.enqueued = queued
    return report


# -- enqueue --------------------------------------------------------------

def _insert_ignore(conn, values: dict) -> bool:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(deliveries).values(**values).on_conflict_do_nothing()
    return conn.execute(stmt).rowcount > 0


def _possibly_received():
    """A content delivery the partner has, or may have (it timed out after sending)."""
    d = deliveries.c
    return and_(d.event.in_(CONTENT_EVENTS),
                or_(d.status == "delivered", and_(d.attempts > 0, d.last_error.like("timeout%"))))


def enqueue(config: Config, store: Store, now: datetime) -> int:
    """Create the delivery rows that are due at *now*; return how many were created."""
    candidates = store.published_articles(now)
    created = 0
    for partner in config.partners:
        if partner.delivery == "feed":
            continue  # pulled: the partner feed records what it serves
        try:
            created += _enqueue_partner(config, store, partner, candidates, now)
        except SQLAlchemyError as e:
            logger.error("partner %s: cannot queue deliveries: %s", partner.name, e)
    return created + _enqueue_withdrawals(config, store, now)


@dataclass
class _Known:
    version: int = 0
    received: bool = False


def _known(store: Store, partner: str) -> dict[str, _Known]:
    d = deliveries.c
    q = (select(d.article_id, d.version, _possibly_received().label("received"))
         .where(d.partner == partner, d.event.in_(CONTENT_EVENTS)))
    known: dict[str, _Known] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(q):
            k = known.setdefault(row.article_id, _Known())
            k.version = max(k.version, row.version)
            k.received = k.received or bool(row.received)
    return known


def _enqueue_partner(config: Config, store: Store, partner: PartnerConfig,
                     candidates: list[Article], now: datetime) -> int:
    known = _known(store, partner.name)
    created = 0
    for article in candidates:
        k = known.get(article.id)
        if (k and k.version >= article.version) or not rights.grant(config, partner, article, now):
            continue
        event = "updated" if k and k.received else "published"
        with store.engine.begin() as conn:
            if k:  # an older version still waiting is not worth sending any more
                conn.execute(update(deliveries).where(
                    deliveries.c.partner == partner.name, deliveries.c.article_id == article.id,
                    deliveries.c.status == "pending", deliveries.c.event.in_(CONTENT_EVENTS),
                    deliveries.c.version < article.version,
                ).values(status="superseded", last_error=f"superseded by version {article.version}"))
            created += _insert_ignore(conn, _new_row(config, partner.name, article, event, now))
    if created:
        logger.info("partner %s: %d deliveries queued", partner.name, created)
    return created


def _new_row(config: Config, partner: str, article: Article, event: str, now: datetime,
             **values) -> dict:
    row = dict(partner=partner, article_id=article.id, version=article.version, event=event,
               status="pending", attempts=0, next_attempt_at=now, created_at=now,
               terms_version=config.rights.terms_version)
    row.update(values)
    return row


def _enqueue_withdrawals(config: Config, store: Store, now: datetime, *,
                         article_id: str | None = None) -> int:
    """Cancel what has not gone out yet; queue ``withdrawn`` for whoever received it."""
    d, a = deliveries.c, articles.c
    withdrawn_ids = select(a.id).where(a.status == "withdrawn")
    if article_id is not None:
        withdrawn_ids = withdrawn_ids.where(a.id == article_id)
    w = deliveries.alias("w")
    q = (select(d.partner, d.article_id).distinct()
         .where(d.article_id.in_(withdrawn_ids), _possibly_received(),
                ~exists().where(w.c.partner == d.partner, w.c.article_id == d.article_id,
                                w.c.event == "withdrawn")))
    with store.engine.begin() as conn:
        targets = conn.execute(q).all()
        conn.execute(update(deliveries).where(
            d.article_id.in_(withdrawn_ids), d.status == "pending", d.event.in_(CONTENT_EVENTS),
        ).values(status="cancelled"))
    created = 0
    for partner_name, aid in targets:
        article = store.get_article(aid)
        if article is not None:
            created += _queue_withdrawal(config, store, partner_name, article, now)
    return created


def _queue_withdrawal(config: Config, store: Store, partner_name: str, article: Article,
                      now: datetime) -> int:
    partner = next((p for p in config.partners if p.name == partner_name), None)
    extra: dict = {}
    detail = ""
    if partner is None:
        detail = "partner no longer configured: notify it by hand"
        extra = dict(status="dead", last_error=detail)
        logger.warning("withdrawal of %s: partner %s %s", article.id, partner_name, detail)
    elif partner.delivery == "feed":
        detail = "dropped from the partner feed"
        extra = dict(status="delivered", delivered_at=now, attempts=1)
    with store.engine.begin() as conn:
        inserted = _insert_ignore(conn, _new_row(config, partner_name, article, "withdrawn",
                                                 now, **extra))
        if inserted and detail:
            audit(conn, now, config, partner=partner_name, article_id=article.id,
                  version=article.version, event="withdrawn" if partner else "dead",
                  detail=detail)
    return int(inserted)


# -- delivery -------------------------------------------------------------

def deliver_pending(config: Config, store: Store, now: datetime,
                    partner_name: str | None = None, *, article_id: str | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.time,
                    transport=None) -> SyndicationReport:
    """Send every due delivery (of one partner, or one article); safe to run concurrently."""
    if partner_name is not None:
        config.partner(partner_name)  # ConfigError for an unknown name
    pushed = {p.name: p for p in config.partners if p.delivery != "feed"
              and (partner_name is None or p.name == partner_name)}
    report = SyndicationReport()
    if not pushed:
        return report
    senders = _Senders(config, clock, transport)
    # A partner that failed this run waits, with all its deliveries, until its backoff ends.
    down: dict[str, datetime] = {}
    try:
        for row_id, name in _due(store, now, list(pushed), article_id):
            if name in down:
                _defer(store, row_id, now, down[name])
                report.skipped += 1
                continue
            row = _claim(store, row_id, now, _lease(pushed[name], config))
            if row is None:
                continue  # another worker has it
            try:
                result = _deliver(config, store, pushed[name], row, now, senders, sleep)
            except (PublisherError, SQLAlchemyError) as e:
                logger.error("partner %s: delivery %s failed: %s", name, row_id, e)
                report.errors.append(f"{name}: {row.article_id}: {e}")
                _release(store, row_id, now)
                down[name] = now
                continue
            if isinstance(result, datetime):
                down[name] = result
                result = "retry"
            _count(report, result, name, row)
    finally:
        senders.close()
    return report


def _defer(store: Store, row_id: int, now: datetime, until: datetime) -> None:
    d = deliveries.c
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).where(
            d.id == row_id, d.status == "pending",
            or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now),
        ).values(next_attempt_at=until))


def _count(report: SyndicationReport, result: str, name: str, row) -> None:
    if result == "delivered":
        report.delivered += 1
    elif result == "retry":
        report.failed += 1
    elif result == "dead":
        report.dead += 1
        report.errors.append(f"{name}: {row.article_id} v{row.version} {row.event}: dead")
    else:
        report.skipped += 1


def _due(store: Store, now: datetime, names: list[str], article_id: str | None):
    d = deliveries.c
    q = (select(d.id, d.partner).where(d.status == "pending", d.partner.in_(names),
                                       or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now))
         .order_by(d.id).limit(BATCH))
    if article_id is not None:
        q = q.where(d.article_id == article_id)
    with store.engine.connect() as conn:
        return conn.execute(q).all()


def _lease(partner: PartnerConfig, config: Config) -> float:
    per_try = 2 * (partner.timeout if partner.delivery == "webhook" else config.email.smtp.timeout)
    sleeps = partner.retry_base_seconds * (2 ** partner.attempts_per_run)
    return partner.attempts_per_run * per_try + sleeps + 60.0


def _claim(store: Store, row_id: int, now: datetime, lease: float):
    """Take one due row by pushing its ``next_attempt_at`` past the lease; None if taken."""
    d = deliveries.c
    due = and_(d.id == row_id, d.status == "pending",
               or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now))
    with store.engine.begin() as conn:
        q = select(deliveries).where(due)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        row = conn.execute(q).first()
        if row is None:
            return None
        taken = conn.execute(update(deliveries).where(due).values(
            next_attempt_at=now + timedelta(seconds=lease))).rowcount
    return row if taken == 1 else None


def _release(store: Store, row_id: int, now: datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == row_id,
                                              deliveries.c.status == "pending")
                     .values(next_attempt_at=now))


class _Senders:
    """One webhook session per partner and one mail transport, made on first use."""

    def __init__(self, config: Config, clock, transport):
        self.config, self.clock = config, clock
        self._transport, self._own_transport = transport, transport is None
        self._webhooks: dict[str, channels.WebhookSender] = {}
        self._email: channels.EmailSender | None = None

    def webhook(self, partner: PartnerConfig) -> channels.WebhookSender:
        if partner.name not in self._webhooks:
            self._webhooks[partner.name] = channels.WebhookSender(partner, clock=self.clock)
        return self._webhooks[partner.name]

    def email(self) -> channels.EmailSender:
        if self._email is None:
            self._transport = self._transport or make_transport(self.config)
            self._email = channels.EmailSender(self.config, self._transport)
        return self._email

    def close(self) -> None:
        for sender in self._webhooks.values():
            sender.close()
        if self._own_transport and self._transport is not None:
            self._transport.close()


def _article_and_content(config, store, partner, row, now):
    """(article, content, reason) for *row*, or (None, final status, why) when it must not go."""
    current = store.get_article(row.article_id)
    if current is None:
        return None, "dead", "article is not in the store"
    article = current.evolve(version=row.version)
    if row.event == "withdrawn":
        return article, rights.withdrawn_content(config, article), _withdraw_reason(store, row)
    if current.status != "published":
        return None, "cancelled", "article withdrawn"
    if current.version != row.version:
        return None, "superseded", f"superseded by version {current.version}"
    mode = rights.grant(config, partner, current, now)
    if mode is None:
        return None, "cancelled", "no longer licensed to this partner"
    return article, rights.licensed_content(config, article, mode), ""


def _withdraw_reason(store: Store, row) -> str:
    with store.engine.connect() as conn:
        return conn.execute(select(articles.c.withdraw_reason)
                            .where(articles.c.id == row.article_id)).scalar() or ""


def _deliver(config, store, partner, row, now, senders, sleep) -> str | datetime:
    article, content, reason = _article_and_content(config, store, partner, row, now)
    if article is None:
        _finish(store, config, row, now, status=content, error=reason)
        return "dead" if content == "dead" else "skipped"
    key = channels.idempotency_key(partner.name, row.article_id, row.version, row.event)
    attempt = _attempt_fn(config, partner, article, row.event, content, key, reason, now, senders)
    attempts, outcome = row.attempts, None
    for i in range(partner.attempts_per_run):
        outcome = attempt()
        attempts += 1
        with store.engine.begin() as conn:
            audit(conn, now, config, partner=partner.name, article_id=row.article_id,
                  version=row.version, event=row.event, response_status=outcome.status,
                  detail="delivered" if outcome.ok else outcome.error)
        if outcome.ok or not outcome.retryable or outcome.local:
            break
        if i + 1 < partner.attempts_per_run:
            sleep(partner.retry_base_seconds * (2 ** i))
    return _settle(config, store, partner, row, now, outcome, attempts)


def _attempt_fn(config, partner, article, event, content, key, reason, now, senders):
    if partner.delivery == "email":
        msg = channels.build_email(config, partner, article, event, content, key, now,
                                   reason=reason)
        return lambda: senders.email().send(partner, msg)
    body = channels.encode(channels.payload(config, article, event, content, reason=reason))

    def post() -> channels.Outcome:
        try:
            sender = senders.webhook(partner)
        except SyndicationError as e:
            return channels.Outcome(False, error=str(e), retryable=True, local=True)
        return sender.send(body, key, event)
    return post


def _settle(config, store, partner, row, now, outcome, attempts: int) -> str | datetime:
    """Record the outcome: "delivered", "dead", or the time of the next try."""
    common = dict(attempts=attempts, last_status=outcome.status,
                  last_error=None if outcome.ok else outcome.error)
    if outcome.ok:
        _finish(store, config, row, now, status="delivered", delivered_at=now, **common)
        if row.event == "withdrawn":
            with store.engine.begin() as conn:
                audit(conn, now, config, partner=partner.name, article_id=row.article_id,
                      version=row.version, event="ack", response_status=outcome.status,
                      detail="withdrawal acknowledged")
        return "delivered"
    deadline = row.created_at + timedelta(minutes=partner.retry_deadline_minutes)
    runs = math.ceil(attempts / partner.attempts_per_run)
    delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(runs - 1, 0))
    if outcome.retry_after:
        delay = max(delay, outcome.retry_after)
    next_at = now + timedelta(seconds=delay)
    if outcome.retryable and next_at <= deadline:
        _finish(store, config, row, now, status="pending", next_attempt_at=next_at, **common)
        return next_at
    why = "retry deadline passed" if outcome.retryable else "permanent failure"
    _finish(store, config, row, now, status="dead", **common)
    with store.engine.begin() as conn:
        audit(conn, now, config, partner=partner.name, article_id=row.article_id,
              version=row.version, event="dead", response_status=outcome.status,
              detail=f"{why} after {attempts} attempts: {outcome.error}")
    logger.warning("partner %s: %s v%s %s is dead: %s", partner.name, row.article_id,
                   row.version, row.event, outcome.error)
    return "dead"


def _finish(store: Store, config: Config, row, now: datetime, *, status: str,
            error: str | None = None, **values) -> None:
    if error is not None:
        values["last_error"] = error
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == row.id)
                     .values(status=status, **values))


# -- partner feeds ----------------------------------------------------------

def feed_entries(config: Config, store: Store, partner: PartnerConfig,
                 now: datetime) -> list[tuple[Article, rights.Content]]:
    """What *partner*'s feed holds at *now*: licensed articles, newest first."""
    entries = []
    for article in store.published_articles(now):
        mode = rights.grant(config, partner, article, now)
        if mode:
            entries.append((article, rights.licensed_content(config, article, mode)))
            if len(entries) >= config.feeds.max_items:
                break
    return entries


def record_feed_fetch(config: Config, store: Store, partner: PartnerConfig,
                      served: list[Article], now: datetime) -> int:
    """Record (once per version) what an authenticated feed fetch handed to *partner*."""
    known = _known(store, partner.name)
    recorded = 0
    for article in served:
        k = known.get(article.id)
        if k and k.version >= article.version:
            continue
        event = "updated" if k else "published"
        row = _new_row(config, partner.name, article, event, now, status="delivered",
                       attempts=1, last_status=200, delivered_at=now)
        with store.engine.begin() as conn:
            if _insert_ignore(conn, row):
                audit(conn, now, config, partner=partner.name, article_id=article.id,
                      version=article.version, event=event, response_status=200,
                      detail="served in the partner feed")
                recorded += 1
    return recorded
