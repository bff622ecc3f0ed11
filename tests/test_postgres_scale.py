"""Storage and in-process fan-out on PostgreSQL: migrations (also when many
processes open the database at once), article versions, outbox claims with
SKIP LOCKED, liveness of claiming workers, and the same send tasks on threads."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text, update

from publisher import delivery, leader, tasks
from publisher.config import load_config
from publisher.models import Article
from publisher.schema import article_versions, outbox
from publisher.store import NEW, UNCHANGED, UPDATED, Store, utcnow
from tests.conftest import write_site
from tests.support.scale import edition_status, scale_site, seed_edition

pytestmark = pytest.mark.postgres



def _head() -> str:
    from pathlib import Path

    import publisher

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(publisher.__file__).with_name("migrations")))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_concurrent_opens_migrate_once_to_head(pg_url):
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store.open(pg_url, pool_size=2, max_overflow=0),
                               range(4)))
    try:
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
            tables = set(inspect(conn).get_table_names())
        assert {"articles", "article_versions", "outbox", "editions", "kv"} <= tables
        assert stores[0].engine.pool.size() == 2
    finally:
        for s in stores:
            s.close()


def test_storage_pool_keys_reach_the_engine(tmp_path, pg_url):
    path = write_site(tmp_path, database_url=pg_url)
    assert load_config(path).storage.engine_kwargs() == {"pool_size": 5, "max_overflow": 10}
    path.write_text(path.read_text(encoding="utf-8").replace(
        "[storage]\n", "[storage]\npool_size = 12\nmax_overflow = 0\n"), encoding="utf-8")
    from publisher.pipeline import open_store

    store = open_store(load_config(path))
    try:
        assert store.engine.pool.size() == 12 and store.engine.pool._max_overflow == 0
    finally:
        store.close()


titles = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                 min_size=1, max_size=80)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=titles, second=titles)
def test_article_upsert_and_versions_on_postgres(pg_store, first, second):
    aid = f"pg-{uuid.uuid4().hex}"
    first, second = f"{aid} {first}", f"{aid} {second}"  # unique: same-title stories dedupe
    now = utcnow()
    a = Article(id=aid, title=first, url=f"https://news.example.com/{aid}", published=now,
                body_html="<p>正文</p>", category="本地")
    assert pg_store.save_article(a, now) == NEW
    assert pg_store.save_article(a, now) == UNCHANGED
    assert pg_store.get_article(aid).title == first
    if second != first:
        assert pg_store.save_article(a.evolve(title=second), now) == UPDATED
        got = pg_store.get_article(aid)
        assert (got.title, got.version) == (second, 2)
    with pg_store.engine.connect() as conn:
        versions = conn.execute(select(article_versions.c.version, article_versions.c.title)
                                .where(article_versions.c.article_id == aid)
                                .order_by(article_versions.c.version)).all()
    assert versions[0] == (1, first) and len(versions) == (1 if second == first else 2)


@pytest.fixture
def pg_store(pg_url):
    s = Store.open(pg_url)
    yield s
    s.close()


@pytest.fixture
def pg_edition(tmp_path, pg_url, smtp_server):
    config = load_config(scale_site(tmp_path, pg_url, broker_url=None, prefix="",
                                    smtp_port=smtp_server.port, batch_size=5, connections=3))
    store = Store.open(pg_url)
    edition = seed_edition(config, store, 30)
    yield config, store, edition
    store.close()


def test_claim_skips_rows_locked_by_another_worker(pg_edition):
    config, store, edition = pg_edition
    with store.engine.connect() as other:
        tx = other.begin()
        locked = [r.id for r in other.execute(select(outbox.c.id).order_by(outbox.c.id)
                                              .limit(10).with_for_update())]
        rows = delivery.claim_batch(store, utcnow(), 10, edition.id)  # does not wait
        tx.rollback()
    assert rows and not {r.id for r in rows} & set(locked)
    assert len(rows) == 10


def test_concurrent_claims_never_overlap(pg_edition):
    config, store, edition = pg_edition

    def claim_all() -> list[int]:
        got = []
        while rows := delivery.claim_batch(store, utcnow(), 3, edition.id):
            got += [r.id for r in rows]
        return got

    with ThreadPoolExecutor(4) as pool:
        claimed = [i for part in pool.map(lambda _: claim_all(), range(4)) for i in part]
    assert len(claimed) == len(set(claimed)) == 30


def test_claims_of_a_dead_worker_are_handed_back(pg_edition, pg_url):
    config, store, edition = pg_edition
    ghost, other = leader.Liveness(pg_url), leader.Liveness(pg_url)
    try:
        assert ghost.register(store, "ghost:1")
        assert not other.register(store, "ghost:1")  # one holder per id
        with store.engine.begin() as conn:
            ids = [r.id for r in conn.execute(select(outbox.c.id).order_by(outbox.c.id).limit(7))]
            conn.execute(update(outbox).where(outbox.c.id.in_(ids[:4])).values(
                status="claimed", claimed_at=utcnow(), claimed_by="ghost:1"))
            # claimed by an unregistered in-process sender: left to the claim timeout
            conn.execute(update(outbox).where(outbox.c.id.in_(ids[4:])).values(
                status="claimed", claimed_at=utcnow(), claimed_by="cli:2"))
        assert other.reap(store) == 0  # ghost is alive
        ghost.close()  # its session ends: as if the process was killed
        assert other.reap(store) == 4
        with store.engine.connect() as conn:
            statuses = Counter(r.status for r in conn.execute(
                select(outbox.c.status).where(outbox.c.id.in_(ids))))
        assert statuses == {"pending": 4, "claimed": 3}
    finally:
        ghost.close()
        other.close()


def test_in_process_dispatch_sends_on_threads_once(pg_edition, smtp_server):
    config, store, edition = pg_edition
    counts = tasks.dispatch_send(config, store, edition_id=edition.id)
    assert counts == Counter(sent=30)
    received = Counter(smtp_server.handler.recipients())
    assert len(received) == 30 and set(received.values()) == {1}
    assert edition_status(store, edition.id) == "sent"
    with store.engine.connect() as conn:
        workers = {r[0] for r in conn.execute(select(outbox.c.claimed_by).distinct())}
    assert len(workers) == 1  # one process, three connections


def test_in_process_dispatch_on_sqlite_serializes_claims(tmp_path, smtp_server):
    url = f"sqlite:///{tmp_path / 'pub.db'}"
    config = load_config(scale_site(tmp_path, url, broker_url=None, prefix="",
                                    smtp_port=smtp_server.port, batch_size=2, connections=4))
    store = Store.open(url)
    try:
        edition = seed_edition(config, store, 24)
        assert tasks.dispatch_send(config, store) == Counter(sent=24)
        assert edition_status(store, edition.id) == "sent"
    finally:
        store.close()
    assert Counter(smtp_server.handler.recipients()).most_common(1)[0][1] == 1


def test_count_due_matches_claim_predicate(pg_edition):
    config, store, edition = pg_edition
    now = utcnow()
    assert delivery.count_due(store, now, edition.id) == 30
    delivery.claim_batch(store, now, 5, edition.id)
    assert delivery.count_due(store, now, edition.id) == 25
    # a claim older than the claim timeout counts as due again
    assert delivery.count_due(store, now + delivery.CLAIM_TIMEOUT + timedelta(seconds=1)) == 30


def test_feed_builds_wait_for_each_other(tmp_path, pg_url):
    config = load_config(write_site(tmp_path, database_url=pg_url))
    store = Store.open(pg_url)
    try:
        from publisher import collect

        collect.collect(config, store)
        results, barrier = [], threading.Barrier(3)

        def build():
            barrier.wait()
            results.append(tasks.run_build_feeds(config, store))

        threads = [threading.Thread(target=build) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        store.close()
    import feedparser

    parsed = feedparser.parse((config.feeds.output_dir / "rss.xml").read_bytes())
    assert not parsed.bozo and parsed.entries
    # serialized: exactly one build wrote the files, the others found nothing changed
    assert sorted(bool(r) for r in results) == [False, False, True]
