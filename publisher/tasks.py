"""Fan-out: Celery tasks with ``[queue]``, the same functions on threads without.

Three kinds of work fan out, each a Celery task on its own queue:

=================  =====================  ==================================================
task               queue                  what one run does
=================  =====================  ==================================================
``send_batch``     ``<prefix>.send``      claim one batch of due outbox rows, send, mark them
``deliver_partner`` ``<prefix>.partners`` drain one partner's pending deliveries
``build_feeds``    ``<prefix>.feeds``     rebuild ``feeds/`` (one build at a time)
=================  =====================  ==================================================

The dispatchers (:func:`dispatch_send`, :func:`dispatch_syndication`,
:func:`dispatch_feeds`) are what the scheduler's jobs call: with ``[queue]``
they enqueue tasks, without it they run the same ``run_*`` functions here.

Delivery guarantees: tasks are acknowledged late (after they ran), a task whose
worker died is rejected back to the queue, and each worker process reserves one
task per slot, so a killed worker loses nothing. Rows are claimed with
``FOR UPDATE SKIP LOCKED`` (see :func:`publisher.delivery.claim_batch`) and
marked one by one after the server accepted them, so a repeated task can only
resend what was in flight: one message per connection. The claims of a dead
worker are handed back through its liveness lock (:class:`publisher.leader.Liveness`).

``celery -A publisher.tasks worker`` reads the config from ``$PUBLISHER_CONFIG``
(default ``./config.toml``); ``publisher worker`` passes its own.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import KombuError
from sqlalchemy import text

from . import delivery, feeds, syndication
from .config import CONFIG_ENV, Config, QueueConfig, load_config
from .errors import ConfigError, DeliveryError
from .leader import Liveness
from .pipeline import open_store
from .store import Store, utcnow
from .transport import Transport, make_transport

logger = logging.getLogger(__name__)

SEND, PARTNERS, FEEDS = "publisher.send_batch", "publisher.deliver_partner", "publisher.build_feeds"
_QUEUE_SUFFIX = {SEND: "send", PARTNERS: "partners", FEEDS: "feeds"}
FEEDS_LOCK = 0x7075626C_00000003  # one feed build at a time (PostgreSQL advisory lock)
PARTNER_NS = 0x70756270  # int4 namespace: one delivery run per partner at a time


# -- settings ----------------------------------------------------------------

def queue_names(q: QueueConfig) -> dict[str, str]:
    """Task name -> queue name, e.g. ``publisher.send``."""
    return {task: f"{q.prefix}.{suffix}" for task, suffix in _QUEUE_SUFFIX.items()}


def celery_settings(q: QueueConfig) -> dict:
    """The Celery configuration every publisher worker and producer shares."""
    names = queue_names(q)
    return {
        "broker_url": q.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": q.visibility_timeout},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [Queue(n, Exchange(n, type="direct"), routing_key=n)
                        for n in names.values()],
        "task_default_queue": names[SEND],
        "task_routes": {task: {"queue": name} for task, name in names.items()},
    }


app = Celery("publisher", set_as_current=False)
_config: Config | None = None  # the worker's config: set by configure(), else read on demand


@app.on_configure.connect
def _configure_from_environment(sender: Celery, **_) -> None:
    """``celery -A publisher.tasks``: settings come from the publisher config."""
    global _config
    if _config is None:
        _config = load_config()
    if _config.queue is None:
        raise ConfigError(f"{_config.path}: a Celery worker needs [queue].broker_url")
    sender.conf.update(celery_settings(_config.queue))


def configure(config: Config) -> Celery:
    """Set the worker-side app up from *config* (``publisher worker`` does this)."""
    global _config
    if config.queue is None:
        raise ConfigError(f"{config.path}: 'publisher worker' needs [queue].broker_url")
    _config = config
    app.conf.update(celery_settings(config.queue))
    return app


def run_worker(config: Config, celery_args: list[str]) -> None:
    """Start a Celery worker: threads, one per SMTP connection, unless told otherwise."""
    configure(config)
    os.environ[CONFIG_ENV] = str(config.path)
    argv = ["worker", "--loglevel=INFO"]
    if not any(a.startswith(("--pool", "-P")) for a in celery_args):
        argv.append("--pool=threads")
    if not any(a.startswith(("--concurrency", "-c")) for a in celery_args):
        argv.append(f"--concurrency={config.email.smtp.connections}")
    app.worker_main(argv + list(celery_args))


# -- the worker's process state ----------------------------------------------

@dataclass
class _Context:
    config: Config
    store: Store
    liveness: Liveness | None
    pid: int
    factories: delivery.FactoryCache


_context: _Context | None = None
_context_lock = threading.Lock()


def _worker_context() -> _Context:
    """Config, store and liveness of this worker process (a forked child makes its own)."""
    global _context, _config
    with _context_lock:
        if _context is None or _context.pid != os.getpid():
            _config = _config or load_config()
            store = open_store(_config)
            live = Liveness(_config.storage.database_url) if _is_postgres(store) else None
            _context = _Context(_config, store, live, os.getpid(),
                                delivery.FactoryCache(_config, store))
        return _context


def _is_postgres(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


# -- sending -----------------------------------------------------------------

def run_send_batch(config: Config, store: Store, *, edition_id: int | None = None,
                   transport: Transport | None = None,
                   claim_lock: AbstractContextManager | None = None,
                   liveness: Liveness | None = None,
                   factories: delivery.FactoryCache | None = None) -> Counter:
    """Claim one batch of due rows, send it, mark each row; counts by outcome (empty: none due)."""
    if liveness is not None:
        liveness.register(store, delivery.worker_id())
        liveness.reap(store)
    with claim_lock or nullcontext():
        rows = delivery.claim_batch(store, utcnow(), config.email.batch_size, edition_id)
    if not rows:
        return Counter()
    own = transport is None
    transport = transport or make_transport(config)
    try:
        counts = Counter(delivery.send_rows(config, store, rows, transport, factories=factories))
    finally:
        if own:
            transport.close()
    delivery.complete_editions(store)
    return counts


def _send_inline(config: Config, store: Store, edition_id: int | None) -> Counter:
    """Without a queue: one thread per SMTP connection, each draining batch by batch."""
    threads = config.email.smtp.connections if config.email.transport == "smtp" else 1
    # SQLite has no SKIP LOCKED: claims are serialized inside this process
    lock = threading.Lock() if not _is_postgres(store) else None
    factories = delivery.FactoryCache(config, store)

    def drain() -> Counter:
        total, transport = Counter(), make_transport(config)
        try:
            while counts := run_send_batch(config, store, edition_id=edition_id,
                                           transport=transport, claim_lock=lock,
                                           factories=factories):
                total += counts
        finally:
            transport.close()
        return total

    if threads == 1:
        return drain()
    with ThreadPoolExecutor(threads, thread_name_prefix="send") as pool:
        futures = [pool.submit(drain) for _ in range(threads)]
        return sum((f.result() for f in futures), Counter())


def dispatch_send(config: Config, store: Store, *, edition_id: int | None = None) -> Counter:
    """Send what is due: enqueue one ``send_batch`` per batch of due rows not yet
    covered by waiting tasks (``{"enqueued": n}``), or send in-process (outcome counts)."""
    if config.queue is None:
        return _send_inline(config, store, edition_id)
    if _is_postgres(store):
        Liveness(config.storage.database_url).reap(store)
    due = delivery.count_due(store, utcnow(), edition_id)
    slots = -(-due // config.email.batch_size) - waiting(config, SEND)
    n = enqueue(config, SEND, [[edition_id]] * max(0, slots))
    if n:
        logger.info("send: %d due rows, %d batch tasks enqueued", due, n)
    return Counter(enqueued=n)


# -- partners and feeds ------------------------------------------------------

@contextmanager
def _advisory(store: Store, *keys: int, wait: bool) -> Iterator[bool]:
    """Hold a PostgreSQL advisory lock for the block (always True on SQLite)."""
    if not _is_postgres(store):
        yield True
        return
    fn, args = ("pg_advisory_lock" if wait else "pg_try_advisory_lock"), ", ".join(
        f":k{i}" for i in range(len(keys)))
    params = {f"k{i}": k for i, k in enumerate(keys)}
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        result = conn.execute(text(f"SELECT {fn}({args})"), params).scalar()
        got = True if wait else bool(result)  # pg_advisory_lock returns void once held
        try:
            yield got
        finally:
            if got:
                conn.execute(text(f"SELECT pg_advisory_unlock({args})"), params)


def run_deliver_partner(config: Config, store: Store, partner: str | None = None,
                        now: datetime | None = None):
    """Deliver one partner's pending items (all partners when *partner* is None)."""
    now = now or utcnow()
    key = zlib.crc32((partner or "*").encode("utf-8")) - (1 << 31)
    with _advisory(store, PARTNER_NS, key, wait=False) as mine:
        if not mine:
            logger.info("partner %s: another worker is delivering; skipped", partner)
            return None
        return syndication.deliver_pending(config, store, now, partner_name=partner)


def dispatch_syndication(config: Config, store: Store, now: datetime | None = None) -> Counter:
    """Queue new partner deliveries, then fan out one delivery run per partner."""
    now = now or utcnow()
    if not config.partners:
        return Counter()
    counts = Counter(planned=syndication.enqueue(config, store, now))
    names = [p.name for p in config.partners]
    if config.queue is not None:
        if waiting(config, PARTNERS) < len(names):
            counts["enqueued"] = enqueue(config, PARTNERS, [[n] for n in names])
        return counts
    with ThreadPoolExecutor(min(len(names), 8), thread_name_prefix="partner") as pool:
        reports = list(pool.map(lambda n: run_deliver_partner(config, store, n, now), names))
    counts["runs"] = sum(1 for r in reports if r is not None)
    return counts


def run_build_feeds(config: Config, store: Store, now: datetime | None = None) -> list[str]:
    """Rebuild the feeds; concurrent builds on PostgreSQL wait for each other."""
    with _advisory(store, FEEDS_LOCK, wait=True):
        return feeds.build_all(config, store, now)


def dispatch_feeds(config: Config, store: Store, now: datetime | None = None) -> list[str]:
    """Build feeds now (no queue: the changed paths) or enqueue one build (``[]``)."""
    if config.queue is None:
        return run_build_feeds(config, store, now)
    if waiting(config, FEEDS) == 0:
        enqueue(config, FEEDS, [[]])
    return []


# -- the broker ----------------------------------------------------------------

_producers: dict[QueueConfig, Celery] = {}
_producers_lock = threading.Lock()


def producer_app(q: QueueConfig) -> Celery:
    """A Celery app that only sends, one per broker (tasks are sent by name)."""
    with _producers_lock:
        if q not in _producers:
            producer = Celery("publisher-producer", set_as_current=False)
            producer.conf.update(celery_settings(q))
            _producers[q] = producer
        return _producers[q]


def close_producers() -> None:
    with _producers_lock:
        producers = list(_producers.values())
        _producers.clear()
    for producer in producers:
        producer.close()


def _broker_call(config: Config, what: str, fn: Callable[[Celery], int]) -> int:
    assert config.queue is not None
    try:
        return fn(producer_app(config.queue))
    except (KombuError, OSError) as e:
        raise DeliveryError(f"broker {_safe(config.queue.broker_url)}: cannot {what}: {e}") from e


def enqueue(config: Config, task: str, arg_lists: list[list]) -> int:
    """Send one *task* message per argument list; the number sent."""
    if not arg_lists:
        return 0

    def send(producer_app_: Celery) -> int:
        with producer_app_.producer_or_acquire() as producer:
            for args in arg_lists:
                producer_app_.send_task(task, args=args, producer=producer)
        return len(arg_lists)

    return _broker_call(config, f"enqueue {task}", send)


def waiting(config: Config, task: str) -> int:
    """Messages waiting in *task*'s queue (not counting those reserved by workers)."""
    assert config.queue is not None
    name = queue_names(config.queue)[task]

    def count(producer_app_: Celery) -> int:
        with producer_app_.connection_for_write() as conn:
            queue = producer_app_.amqp.queues[name]
            return int(queue(conn.default_channel).queue_declare().message_count)

    return _broker_call(config, f"count {name}", count)


def _safe(url: str) -> str:
    return url.split("@", 1)[-1] if "@" in url else url


# -- the Celery tasks ----------------------------------------------------------

_TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@app.task(name=SEND, **_TASK_OPTIONS)
def send_batch(edition_id: int | None = None) -> dict[str, int]:
    ctx = _worker_context()
    return dict(run_send_batch(ctx.config, ctx.store, edition_id=edition_id,
                               liveness=ctx.liveness, factories=ctx.factories))


@app.task(name=PARTNERS, **_TASK_OPTIONS)
def deliver_partner(partner: str | None = None) -> bool:
    ctx = _worker_context()
    return run_deliver_partner(ctx.config, ctx.store, partner) is not None


@app.task(name=FEEDS, **_TASK_OPTIONS)
def build_feeds() -> int:
    ctx = _worker_context()
    return len(run_build_feeds(ctx.config, ctx.store))
