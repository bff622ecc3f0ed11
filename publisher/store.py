"""The article store: one SQLAlchemy engine, migrated by Alembic on open.

SQLite (WAL) is the embedded default; the same code runs on PostgreSQL. Other
stages (subscribers, outbox, syndication) query their own tables from
:mod:`publisher.schema` through ``store.engine``; this module owns articles.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from .errors import StoreError
from .models import Article
from .schema import article_versions, articles

logger = logging.getLogger(__name__)

NEW, UPDATED, UNCHANGED, DUPLICATE = "new", "updated", "unchanged", "duplicate"
MIGRATION_LOCK = 0x7075626C_00000001  # PostgreSQL advisory lock key held while migrating


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_db_engine(url: str, **kwargs) -> Engine:
    """An engine for *url*; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise StoreError(f"cannot open database {_safe_url(url)}: {e}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def migrate(engine: Engine) -> None:
    """Bring the database schema to the newest Alembic revision."""
    cfg = AlembicConfig(str(Path(__file__).with_name("alembic.ini")))
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # many workers start at once: one migrates
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as e:
        raise StoreError(f"cannot migrate database {_safe_url(str(engine.url))}: {e}") from e


@dataclass
class Store:
    engine: Engine

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, **engine_kwargs) -> Store:
        engine = create_db_engine(url, **engine_kwargs)
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- articles -------------------------------------------------------

    def save_article(self, article: Article, now: datetime | None = None) -> str:
        """Store *article*; return NEW, UPDATED, UNCHANGED or DUPLICATE.

        An article seen before with the same content is UNCHANGED; with other
        content it gets the next version. The same story under another id (same
        canonical URL, or same normalized title and day) is a DUPLICATE.
        """
        now = now or utcnow()
        try:
            return self._save(article, now)
        except SQLAlchemyError as e:
            first = str(getattr(e, "orig", e)).splitlines()[0]
            raise StoreError(f"article {article.id}: cannot store: {first}") from e

    def _save(self, article: Article, now: datetime) -> str:
        digest = article.content_hash()
        key = dedupe_key(article)
        with self.engine.begin() as conn:
            row = conn.execute(select(articles.c.id, articles.c.version, articles.c.content_hash,
                                      articles.c.status)
                               .where(articles.c.id == article.id)).first()
            if row is None:
                dup = conn.execute(select(articles.c.id).where(
                    (articles.c.url == article.url) | (articles.c.dedupe_key == key)
                ).limit(1)).first()
                if dup is not None:
                    logger.info("article %s duplicates %s; not stored again", article.id, dup.id)
                    return DUPLICATE
                conn.execute(insert(articles).values(
                    **_article_values(article), version=1, content_hash=digest, dedupe_key=key,
                    status="published", first_seen=now, changed_at=now))
                _record_version(conn, article.id, 1, digest, article, now)
                return NEW
            if row.content_hash == digest:
                return UNCHANGED
            version = row.version + 1
            values = _article_values(article)
            values.pop("id")
            if article.updated is None:
                values["updated"] = now
            conn.execute(update(articles).where(articles.c.id == article.id).values(
                **values, version=version, content_hash=digest, dedupe_key=key, changed_at=now))
            _record_version(conn, article.id, version, digest, article, now)
            return UPDATED

    def get_article(self, article_id: str) -> Article | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(articles).where(articles.c.id == article_id)).first()
        return row_to_article(row) if row else None

    def published_articles(self, now: datetime, *, since: datetime | None = None,
                           until: datetime | None = None, category: str | None = None,
                           limit: int | None = None,
                           include_withdrawn: bool = False) -> list[Article]:
        """Articles due by *now*, newest first (ties broken by id, so order is stable)."""
        q = select(articles).where(articles.c.published <= (until or now))
        if not include_withdrawn:
            q = q.where(articles.c.status == "published")
        if since is not None:
            q = q.where(articles.c.published > since)
        if category:
            q = q.where(articles.c.category == category)
        q = q.order_by(articles.c.published.desc(), articles.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [row_to_article(r) for r in conn.execute(q)]

    def articles_by_ids(self, ids: Iterable[str]) -> list[Article]:
        ids = list(ids)
        if not ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(articles).where(articles.c.id.in_(ids))).all()
        by_id = {r.id: row_to_article(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def categories(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(articles.c.category).distinct()
                                .where(articles.c.category != "")).all()
        return sorted(r.category for r in rows)

    def withdraw(self, article_id: str, reason: str, now: datetime | None = None) -> Article:
        """Mark an article withdrawn (kept, never deleted). Raises StoreError if unknown."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            n = conn.execute(update(articles).where(articles.c.id == article_id).values(
                status="withdrawn", withdrawn_at=now, withdraw_reason=reason,
                changed_at=now)).rowcount
        if not n:
            raise StoreError(f"no article with id {article_id!r}")
        article = self.get_article(article_id)
        assert article is not None
        return article


def _article_values(a: Article) -> dict:
    return dict(
        id=a.id, url=a.url, title=a.title, summary=a.summary, body_html=a.body_html,
        author=a.author, category=a.category, tags=list(a.tags), published=a.published,
        updated=a.updated, origin=a.origin, source_name=a.source_name, source_url=a.source_url,
        image=a.image, image_type=a.image_type, image_length=a.image_length,
        collected_from=a.collected_from,
    )


def _record_version(conn, article_id, version, digest, a: Article, now) -> None:
    conn.execute(insert(article_versions).values(
        article_id=article_id, version=version, content_hash=digest, title=a.title,
        body_html=a.body_html, recorded_at=now))


def row_to_article(row) -> Article:
    return Article(
        id=row.id, title=row.title, url=row.url, published=row.published,
        body_html=row.body_html, summary=row.summary, author=row.author, category=row.category,
        tags=tuple(row.tags or ()), updated=row.updated, origin=row.origin,
        source_name=row.source_name, source_url=row.source_url, image=row.image,
        image_type=row.image_type, image_length=row.image_length,
        collected_from=row.collected_from, version=row.version, status=row.status,
    )


def normalize_title(title: str) -> str:
    """Title reduced for duplicate detection: NFKC, no spaces or punctuation, lowercase."""
    t = unicodedata.normalize("NFKC", title).lower()
    return "".join(ch for ch in t if unicodedata.category(ch)[0] in "LN")


def dedupe_key(a: Article) -> str:
    return f"{normalize_title(a.title)[:200]}|{a.published.astimezone(UTC).date()}"
