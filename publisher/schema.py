"""Database tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Times are stored as timezone-aware UTC (``UTCDateTime()``).
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

articles = Table(
    "articles", metadata,
    Column("id", String(255), primary_key=True),
    Column("url", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("body_html", Text, nullable=False, default=""),
    Column("author", String(255), nullable=False, default=""),
    Column("category", String(255), nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=list),
    Column("published", UTCDateTime(), nullable=False),
    Column("updated", UTCDateTime()),
    Column("origin", String(16), nullable=False, default="original"),
    Column("source_name", String(255), nullable=False, default=""),
    Column("source_url", Text, nullable=False, default=""),
    Column("image", Text, nullable=False, default=""),
    Column("image_type", String(64), nullable=False, default=""),
    Column("image_length", Integer, nullable=False, default=0),
    Column("collected_from", String(255), nullable=False, default=""),
    Column("version", Integer, nullable=False, default=1),
    Column("content_hash", String(64), nullable=False),
    Column("dedupe_key", String(255), nullable=False, default=""),
    Column("status", String(16), nullable=False, default="published"),
    Column("withdrawn_at", UTCDateTime()),
    Column("withdraw_reason", Text),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Index("ix_articles_published", "published"),
    Index("ix_articles_url", "url"),
    Index("ix_articles_dedupe", "dedupe_key"),
    Index("ix_articles_changed", "changed_at"),
)

article_versions = Table(
    "article_versions", metadata,
    Column("article_id", String(255), ForeignKey("articles.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
)

source_state = Table(
    "source_state", metadata,
    Column("name", String(255), primary_key=True),
    Column("last_attempt", UTCDateTime()),
    Column("last_success", UTCDateTime()),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime()),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("article_count", Integer, nullable=False, default=0),
    Column("etag", Text),
    Column("last_modified", Text),
)

subscribers = Table(
    "subscribers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(255), nullable=False, default=""),
    Column("frequency", String(16), nullable=False, default="daily"),
    Column("categories", Text, nullable=False, default=""),  # ';'-separated, empty = all
    Column("script", String(16), nullable=False, default="zh-hans"),
    Column("status", String(16), nullable=False, default="pending"),
    Column("token_key", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("consent_method", String(32), nullable=False, default=""),  # web | import | cli | demo
    Column("consent_ip", String(64), nullable=False, default=""),
    Column("consent_at", UTCDateTime()),
    Column("consent_detail", Text, nullable=False, default=""),  # form page / file:line
    Column("confirmed_at", UTCDateTime()),
    Column("confirm_method", String(32), nullable=False, default=""),  # web | import | cli
    Column("confirm_ip", String(64), nullable=False, default=""),
    Column("confirmation_sent_at", UTCDateTime()),
    Column("unsubscribed_at", UTCDateTime()),
    Column("soft_bounces", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime()),
    Index("ix_subscribers_status", "status"),
)

suppressions = Table(
    "suppressions", metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(32), nullable=False),  # unsubscribed | bounced | complained | manual
    Column("detail", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

editions = Table(
    "editions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(255), nullable=False),
    Column("key", String(255), nullable=False, unique=True),  # e.g. daily:2026-11-26
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    Column("article_ids", JSON, nullable=False, default=list),
    Column("status", String(16), nullable=False, default="sending"),  # sending | sent | empty
    Column("created_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime()),
    Column("total", Integer, nullable=False, default=0),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition_id", Integer, ForeignKey("editions.id"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("variant", String(255), nullable=False),
    # pending | claimed | sent | deferred | failed | bounced | rejected | suppressed
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("claimed_at", UTCDateTime()),
    Column("claimed_by", String(128)),
    Column("first_attempt_at", UTCDateTime()),  # start of the retry deadline
    Column("sent_at", UTCDateTime()),
    Column("last_code", Integer),
    Column("last_enhanced", String(16)),
    Column("last_error", Text),
    UniqueConstraint("edition_id", "subscriber_id", name="uq_outbox_edition_subscriber"),
    Index("ix_outbox_status", "status", "edition_id"),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partner", String(255), nullable=False),
    Column("article_id", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event", String(16), nullable=False),  # published | updated | withdrawn
    Column("status", String(16), nullable=False, default="pending"),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    Column("terms_version", String(64), nullable=False, default=""),
    UniqueConstraint("partner", "article_id", "version", "event", name="uq_delivery"),
    Index("ix_deliveries_status", "status", "partner"),
    Index("ix_deliveries_article", "article_id", "event"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("partner", String(255), nullable=False, default=""),
    Column("article_id", String(255), nullable=False, default=""),
    Column("version", Integer),
    Column("event", String(32), nullable=False),  # published | updated | withdrawn | withdraw | ack | dead
    Column("terms_version", String(64), nullable=False, default=""),
    Column("response_status", Integer),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_partner", "partner", "at"),
)

feed_state = Table(
    "feed_state", metadata,
    Column("path", String(512), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("written_at", UTCDateTime(), nullable=False),
)

feed_items = Table(
    "feed_items", metadata,  # an article prepared for feeds, per script (a cache)
    Column("article_id", String(255), ForeignKey("articles.id"), primary_key=True),
    Column("script", String(16), primary_key=True),
    Column("version", Integer, nullable=False),  # the article version it was made from
    Column("context", String(64), nullable=False),  # hash of everything else that shapes it
    Column("data", Text, nullable=False),  # the Item as JSON
)

rate_limits = Table(
    "rate_limits", metadata,
    Column("key", String(255), primary_key=True),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("count", Integer, nullable=False, default=0),
)

kv = Table(
    "kv", metadata,
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("flag", Boolean, nullable=False, default=False),
)
