"""Celery workers over PostgreSQL and a real broker: several workers drain one
edition with no duplicates, and a worker SIGKILLed mid-batch loses nothing."""

from __future__ import annotations

import socket
import uuid
from collections import Counter

import feedparser
import pytest

from publisher import tasks
from publisher.config import load_config
from publisher.store import Store
from tests.conftest import port_open
from tests.support.scale import (
    SlowHandler,
    claimers,
    edition_status,
    release_redis_db,
    reserve_redis_db,
    rows_by,
    scale_site,
    seed_edition,
    start_worker,
    wait_for,
    worker_ready,
)
from tests.support.smtpserver import SMTPServer

RECIPIENTS = 60
BATCH = 10


@pytest.fixture
def redis_url():
    if not port_open("127.0.0.1", 6379):
        pytest.skip("Redis is not listening on 127.0.0.1:6379")
    db = reserve_redis_db()
    yield f"redis://127.0.0.1:6379/{db}"
    release_redis_db(db)


@pytest.fixture
def amqp_url():
    if not port_open("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not listening on 127.0.0.1:5672")
    yield "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def prefix():
    return f"pubtest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def slow_smtp():
    with SMTPServer(SlowHandler(delay=0.03)) as server:
        yield server


@pytest.fixture
def producers():
    yield
    tasks.close_producers()


def _delete_amqp_queues(config) -> None:
    from kombu import Connection

    with Connection(config.queue.broker_url) as conn:
        channel = conn.channel()
        for name in tasks.queue_names(config.queue).values():
            channel.queue_delete(name)
            channel.exchange_delete(name)


def _drain(config, store, edition, procs, *, redispatch: bool = False):
    def done():
        for p in procs:
            worker_ready(p) if p.popen.poll() is None else None
        if redispatch:  # what the scheduler's send job does every minute
            tasks.dispatch_send(config, store, edition_id=edition.id)
        return edition_status(store, edition.id) == "sent"

    wait_for(done, timeout=60, interval=0.5 if redispatch else 0.2, what="the edition to be sent")


def _two_workers(tmp_path, pg_url, broker_url, prefix, smtp, pool):
    config = load_config(scale_site(tmp_path, pg_url, broker_url=broker_url, prefix=prefix,
                                    smtp_port=smtp.port, batch_size=BATCH))
    store = Store.open(pg_url)
    try:
        edition = seed_edition(config, store, RECIPIENTS)
        procs = [start_worker(config.path, f"w{i}-{prefix}", tmp_path / f"w{i}.log", pool=pool)
                 for i in (1, 2)]
        try:
            for p in procs:
                wait_for(lambda p=p: worker_ready(p), timeout=30, what="worker ready")
            counts = tasks.dispatch_send(config, store, edition_id=edition.id)
            assert counts["enqueued"] == RECIPIENTS // BATCH
            _drain(config, store, edition, procs)
            # a second dispatch finds nothing due and enqueues nothing
            assert tasks.dispatch_send(config, store, edition_id=edition.id)["enqueued"] == 0
            workers = claimers(store)
            # feed builds are tasks too: a worker writes feeds/ and the feed parses
            assert tasks.dispatch_feeds(config, store) == []
            rss = config.feeds.output_dir / "rss.xml"
            wait_for(rss.exists, timeout=30, what="a worker to build the feeds")
        finally:
            for p in procs:
                p.stop()
    finally:
        store.close()
    received = Counter(smtp.handler.recipients())
    expected = {f"reader{i:04d}@example.org" for i in range(RECIPIENTS)}
    assert set(received) == expected
    assert max(received.values()) == 1, "a recipient got the edition twice"
    assert len(workers) >= 2, f"only {workers} did the work"
    feed = feedparser.parse(rss.read_bytes())
    assert not feed.bozo and {e.title for e in feed.entries} >= {"规模测试文章 0", "规模测试文章 1"}
    parsed = smtp.received[0].message
    assert parsed["List-Unsubscribe"] and "规模测试文章" in parsed.get_body(("plain",)).get_content()
    return config


@pytest.mark.postgres
@pytest.mark.redis
def test_two_prefork_workers_on_redis_drain_one_edition_once(tmp_path, pg_url, redis_url,
                                                             prefix, slow_smtp, producers):
    _two_workers(tmp_path, pg_url, redis_url, prefix, slow_smtp, "prefork")


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_two_thread_workers_on_rabbitmq_drain_one_edition_once(tmp_path, pg_url, amqp_url,
                                                               prefix, slow_smtp, producers):
    config = None
    try:
        config = _two_workers(tmp_path, pg_url, amqp_url, prefix, slow_smtp, "threads")
    finally:
        if config is None:
            config = load_config(tmp_path / "site" / "config.toml")
        _delete_amqp_queues(config)


@pytest.mark.postgres
@pytest.mark.redis
def test_worker_killed_mid_batch_loses_nothing(tmp_path, pg_url, redis_url, prefix, slow_smtp,
                                               producers):
    concurrency = 2
    config = load_config(scale_site(tmp_path, pg_url, broker_url=redis_url, prefix=prefix,
                                    smtp_port=slow_smtp.port, batch_size=BATCH))
    store = Store.open(pg_url)
    try:
        edition = seed_edition(config, store, RECIPIENTS)
        victim = start_worker(config.path, f"victim-{prefix}", tmp_path / "victim.log",
                              concurrency=concurrency)
        survivor = None
        try:
            wait_for(lambda: worker_ready(victim), timeout=30, what="worker ready")
            tasks.dispatch_send(config, store, edition_id=edition.id)
            me = f"{socket.gethostname()}:{victim.pid}"
            wait_for(lambda: rows_by(store, me, "sent") and rows_by(store, me, "claimed"),
                     timeout=30, interval=0.05, what="the victim to be mid-batch")
            victim.kill()
            stranded = rows_by(store, me, "claimed")
            assert stranded > 0
            survivor = start_worker(config.path, f"survivor-{prefix}", tmp_path / "surv.log",
                                    concurrency=concurrency)
            wait_for(lambda: worker_ready(survivor), timeout=30, what="worker ready")
            _drain(config, store, edition, [survivor], redispatch=True)
            assert rows_by(store, me, "claimed") == 0
        finally:
            victim.kill()
            if survivor:
                survivor.stop()
    finally:
        store.close()
    received = Counter(slow_smtp.handler.recipients())
    assert set(received) == {f"reader{i:04d}@example.org" for i in range(RECIPIENTS)}
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= concurrency, f"{duplicates} resent, more than the {concurrency} in flight"


@pytest.mark.redis
def test_dispatch_counts_waiting_tasks_instead_of_piling_up(tmp_path, redis_url, prefix,
                                                            producers):
    """Without workers, repeated dispatches (the scheduler's minute ticks) add nothing
    while enough tasks wait; the tasks carry the project's reliability settings."""
    url = f"sqlite:///{tmp_path / 'pub.db'}"
    config = load_config(scale_site(tmp_path, url, broker_url=redis_url, prefix=prefix,
                                    smtp_port=25, batch_size=BATCH))
    store = Store.open(url)
    try:
        seed_edition(config, store, 25)
        assert tasks.dispatch_send(config, store)["enqueued"] == 3
        assert tasks.dispatch_send(config, store)["enqueued"] == 0
        assert tasks.waiting(config, tasks.SEND) == 3
        tasks.dispatch_feeds(config, store)
        tasks.dispatch_feeds(config, store)
        assert tasks.waiting(config, tasks.FEEDS) == 1
    finally:
        store.close()
    settings = tasks.producer_app(config.queue).conf
    assert settings.task_acks_late and settings.task_reject_on_worker_lost
    assert settings.worker_prefetch_multiplier == 1
    assert settings.task_routes[tasks.SEND] == {"queue": f"{prefix}.send"}


def test_worker_without_queue_is_a_config_error(config):
    from publisher.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[queue\]\.broker_url"):
        tasks.run_worker(config, [])
