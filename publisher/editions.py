"""Editions: which articles a digest carries, and one outbox row per recipient.

Composing is idempotent: an edition has a unique key (digest name and local
date), and its outbox rows are written in one transaction with a unique
(edition, subscriber) constraint, so running it twice sends nothing twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select

from .config import Config, DigestConfig
from .models import Article
from .render import Variant
from .schema import editions, outbox, subscribers, suppressions
from .store import Store, utcnow

logger = logging.getLogger(__name__)

WINDOWS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
INSERT_BATCH = 5000


@dataclass(frozen=True)
class Edition:
    id: int
    digest: str
    key: str
    period_start: datetime
    period_end: datetime
    article_ids: tuple[str, ...]
    status: str
    created_at: datetime
    total: int


def edition_key(config: Config, digest: DigestConfig, now: datetime) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", digest.name.lower()).strip("-") or "digest"
    return f"{name}-{now.astimezone(config.site.timezone):%Y-%m-%d}"


def variant_for(row, digest: DigestConfig) -> Variant:
    cats = tuple(sorted(c for c in (row.categories or "").split(";") if c))
    return Variant(script=row.script, categories=cats, frequency=digest.frequency)


def compose(config: Config, store: Store, digest: DigestConfig,
            now: datetime | None = None) -> Edition | None:
    """Create today's edition of *digest* and its outbox; None when there is nothing new."""
    now = now or utcnow()
    key = edition_key(config, digest, now)
    existing = get_edition(store, key)
    if existing:
        logger.info("edition %s already composed", key)
        return existing
    start = now - WINDOWS[digest.frequency]
    articles = store.published_articles(now, since=start, limit=digest.max_articles)
    if not articles:
        logger.info("digest %s: no new articles since %s", digest.name, start.isoformat())
        return None
    with store.engine.begin() as conn:
        edition_id = conn.execute(insert(editions).values(
            digest=digest.name, key=key, period_start=start, period_end=now,
            article_ids=[a.id for a in articles], status="sending", created_at=now,
            total=0)).inserted_primary_key[0]
        total = _write_outbox(conn, edition_id, digest, articles)
        conn.execute(editions.update().where(editions.c.id == edition_id).values(
            total=total, status="sending" if total else "sent", completed_at=None if total else now))
    logger.info("edition %s: %d articles, %d recipients", key, len(articles), total)
    return get_edition(store, key)


def _write_outbox(conn, edition_id: int, digest: DigestConfig, articles: list[Article]) -> int:
    suppressed = select(suppressions.c.email)
    q = (select(subscribers.c.id, subscribers.c.email, subscribers.c.categories,
                subscribers.c.script)
         .where(subscribers.c.status == "active", subscribers.c.frequency == digest.frequency,
                subscribers.c.email.not_in(suppressed))
         .order_by(subscribers.c.id)
         .execution_options(yield_per=INSERT_BATCH))
    total, batch = 0, []
    keys: dict[tuple[str, str], str | None] = {}  # (categories, script) -> variant key
    for row in conn.execute(q):
        choice = (row.categories or "", row.script)
        if choice not in keys:
            variant = variant_for(row, digest)
            selects = any(variant.selects(a) for a in articles)
            keys[choice] = variant.key if selects else None
        key = keys[choice]
        if key is None:
            continue  # nothing in this subscriber's categories
        batch.append(dict(edition_id=edition_id, subscriber_id=row.id, email=row.email,
                          variant=key, status="pending", attempts=0))
        if len(batch) >= INSERT_BATCH:
            total += _flush(conn, batch)
    return total + _flush(conn, batch)


def _flush(conn, batch: list[dict]) -> int:
    if batch:
        conn.execute(insert(outbox), batch)
    n = len(batch)
    batch.clear()
    return n


def _edition(row) -> Edition:
    return Edition(id=row.id, digest=row.digest, key=row.key, period_start=row.period_start,
                   period_end=row.period_end, article_ids=tuple(row.article_ids or ()),
                   status=row.status, created_at=row.created_at, total=row.total)


def get_edition(store: Store, key: str) -> Edition | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(editions).where(editions.c.key == key)).first()
    return _edition(row) if row else None


def get_edition_by_id(store: Store, edition_id: int) -> Edition | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(editions).where(editions.c.id == edition_id)).first()
    return _edition(row) if row else None


def list_editions(store: Store, limit: int = 100) -> list[Edition]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(editions).order_by(editions.c.created_at.desc(),
                                                      editions.c.id.desc()).limit(limit))
        return [_edition(r) for r in rows]


def edition_articles(store: Store, edition: Edition) -> list[Article]:
    """The edition's articles that are still published (a withdrawal removes them)."""
    return [a for a in store.articles_by_ids(edition.article_ids) if a.status == "published"]
