"""The article store, on SQLite and on PostgreSQL: migrations, versions, dedupe, due dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select

from publisher.errors import StoreError
from publisher.models import Article
from publisher.schema import article_versions
from publisher.store import DUPLICATE, NEW, UNCHANGED, UPDATED, Store, migrate

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def art(i: int, **kw) -> Article:
    base = dict(id=f"a{i}", title=f"标题{i}", url=f"https://news.example.com/articles/a{i}",
                published=T0 + timedelta(hours=i), body_html=f"<p>正文{i}</p>", category="本地")
    base.update(kw)
    return Article(**base)


def test_migrations_create_every_table(any_store: Store):
    names = set(inspect(any_store.engine).get_table_names())
    assert {"articles", "article_versions", "subscribers", "suppressions", "editions", "outbox",
            "deliveries", "audit_log", "source_state", "alembic_version"} <= names


def test_migrate_twice_is_harmless(any_store: Store):
    migrate(any_store.engine)
    assert any_store.save_article(art(1)) == NEW


def test_new_unchanged_updated(any_store: Store):
    assert any_store.save_article(art(1)) == NEW
    assert any_store.save_article(art(1)) == UNCHANGED
    assert any_store.save_article(art(1, body_html="<p>改过</p>")) == UPDATED
    stored = any_store.get_article("a1")
    assert stored.version == 2 and stored.body_html == "<p>改过</p>"
    assert stored.updated is not None and stored.updated.tzinfo is not None
    with any_store.engine.connect() as conn:
        versions = conn.execute(select(article_versions.c.version)
                                .where(article_versions.c.article_id == "a1")).scalars().all()
    assert sorted(versions) == [1, 2]


def test_datetimes_round_trip_aware(any_store: Store):
    shanghai = timezone(timedelta(hours=8))
    any_store.save_article(art(1, published=datetime(2026, 11, 26, 9, 30, tzinfo=shanghai)))
    got = any_store.get_article("a1").published
    assert got == datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    assert got.utcoffset() == timedelta(0)


def test_duplicates_by_url_and_by_title_and_day(any_store: Store):
    any_store.save_article(art(1))
    assert any_store.save_article(art(2, url=art(1).url)) == DUPLICATE
    same_title = art(3, title="标题1", published=T0 + timedelta(hours=2))
    assert any_store.save_article(same_title) == DUPLICATE
    # punctuation and width differences do not hide a duplicate
    assert any_store.save_article(art(4, title="标题 1！", published=T0 + timedelta(hours=3))) \
        == DUPLICATE
    assert any_store.get_article("a2") is None


def test_published_articles_orders_and_filters(any_store: Store):
    for i in range(5):
        any_store.save_article(art(i, category="经济" if i % 2 else "本地"))
    now = T0 + timedelta(hours=3, minutes=30)  # a4 is not due yet
    ids = [a.id for a in any_store.published_articles(now)]
    assert ids == ["a3", "a2", "a1", "a0"]
    assert [a.id for a in any_store.published_articles(now, category="经济")] == ["a3", "a1"]
    assert [a.id for a in any_store.published_articles(now, since=T0 + timedelta(hours=1))] \
        == ["a3", "a2"]
    assert len(any_store.published_articles(now, limit=2)) == 2
    assert any_store.categories() == ["本地", "经济"]


def test_withdraw_keeps_the_article(any_store: Store):
    any_store.save_article(art(1))
    a = any_store.withdraw("a1", "版权投诉")
    assert a.status == "withdrawn"
    assert any_store.published_articles(T0 + timedelta(days=1)) == []
    assert any_store.get_article("a1") is not None
    assert [x.id for x in any_store.published_articles(T0 + timedelta(days=1),
                                                       include_withdrawn=True)] == ["a1"]
    with pytest.raises(StoreError, match="no article with id 'zzz'"):
        any_store.withdraw("zzz", "x")


def test_naive_datetime_is_refused(any_store: Store):
    with pytest.raises(StoreError, match="article a1: cannot store: naive datetime"):
        any_store.save_article(art(1, published=datetime(2026, 1, 1)))


def test_sqlite_uses_wal(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_unreachable_database_is_a_store_error():
    with pytest.raises(StoreError, match="cannot migrate database"):
        Store.open("postgresql+psycopg://nobody:pw@127.0.0.1:1/none",
                   connect_args={"connect_timeout": 2})


def test_password_hidden_in_errors():
    with pytest.raises(StoreError) as info:
        Store.open("postgresql+psycopg://user:topsecret@127.0.0.1:1/none",
                   connect_args={"connect_timeout": 2})
    assert "topsecret" not in str(info.value)


def test_database_refusal_is_a_store_error(pg_url):
    """PostgreSQL refuses NUL in text; whatever the database refuses becomes a StoreError."""
    store = Store.open(pg_url)
    with pytest.raises(StoreError, match="article a1: cannot store"):
        store.save_article(art(1, title="a\x00b"))
    store.close()
