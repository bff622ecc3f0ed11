"""Sending: messages built from rendered variants, and the connection threads.

:class:`FactoryCache` renders each (edition, variant) once; :class:`RowSender`
builds one recipient's message (links signed by :class:`LinkSigner`), sends it
and applies the reply rules; :class:`Sender` feeds claimed rows to one thread
per SMTP connection and group-commits the 'sent' marks through a
:class:`Marker`, each connection waiting for its previous mark before it sends
again (so a crash repeats at most one message per connection).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy import bindparam, update
from sqlalchemy.exc import SQLAlchemyError

from . import bounces, tokens
from .config import Config
from .editions import Edition, edition_articles, get_edition_by_id
from .errors import DeliveryError, SMTPReplyError
from .message import MessageFactory, Recipient, sender_domain
from .ratelimit import RateLimiter
from .render import Variant, render_digest
from .schema import outbox, subscribers
from .store import Store, utcnow
from .transport import Transport, TransportPool

logger = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=4)
MAX_CONNECT_FAILURES = 3  # in a row, per connection, before that connection gives up
Progress = Callable[[int, int], None]  # (done, total)


def links(config: Config, signer: tokens.Signer | LinkSigner, token_key: str) -> tuple[str, str, str]:
    """(preferences URL, one-click unsubscribe URL, unsubscribe mailto) for a subscriber."""
    base = config.site.url
    unsub = signer.make(token_key, tokens.UNSUBSCRIBE)
    mailbox = config.email.unsubscribe_mailto or f"unsubscribe@{sender_domain(config)}"
    return (f"{base}/preferences/{signer.make(token_key, tokens.PREFERENCES)}",
            f"{base}/unsubscribe/{unsub}",
            f"mailto:{mailbox}?subject=unsubscribe-{unsub}")


class LinkSigner:
    """Makes the same tokens as :class:`tokens.Signer` (itsdangerous), ten times faster.

    The derived key and the JSON layout are computed once; each token is one
    HMAC. At start it proves itself against ``Signer.load``; if the token format
    ever differs it quietly falls back to ``Signer.make``.
    """

    def __init__(self, config: Config, signer: tokens.Signer):
        self.signer = signer
        secret = tokens.secret_key(config).encode("utf-8")
        self.key = hashlib.sha1(b"publisher.subscriber" + b"signer" + secret).digest()
        probe = secrets.token_hex(16)
        self.fast = all(self._load(self._fast(probe, a), a) == probe
                        for a in (tokens.UNSUBSCRIBE, tokens.PREFERENCES))

    def _load(self, token: str, action: str) -> str | None:
        try:
            return self.signer.load(token, action)
        except tokens.BadToken:
            return None

    def _fast(self, token_key: str, action: str) -> str:
        payload = _b64(json.dumps([token_key, action], separators=(",", ":")).encode("ascii"))
        now = int(time.time())
        value = payload + b"." + _b64(now.to_bytes((now.bit_length() + 7) // 8, "big"))
        return (value + b"." + _b64(hmac.new(self.key, value, hashlib.sha1).digest())).decode()

    def make(self, token_key: str, action: str) -> str:
        if self.fast and _HEX_KEY.fullmatch(token_key):
            return self._fast(token_key, action)
        return self.signer.make(token_key, action)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_HEX_KEY = re.compile(r"[0-9a-f]{8,64}")  # what new_token_key makes: never compressible


def archive_url(config: Config, edition: Edition) -> str:
    return f"{config.site.url}/archive/{edition.key}"


class FactoryCache:
    """Renders each (edition, variant) once and keeps its MessageFactory (thread-safe).

    A long-lived cache (one per worker process) calls :meth:`refresh` before each
    batch: an edition whose still-published articles changed (a withdrawal) is
    rendered again, so no later message carries a withdrawn article.
    """

    def __init__(self, config: Config, store: Store):
        self.config, self.store = config, store
        self._cache: dict[tuple[int, str], MessageFactory] = {}
        self._snapshots: dict[int, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def refresh(self, edition_ids: set[int]) -> None:
        for edition_id in edition_ids:
            edition = get_edition_by_id(self.store, edition_id)
            current = tuple(a.id for a in edition_articles(self.store, edition)) if edition else ()
            with self._lock:
                if self._snapshots.get(edition_id, current) != current:
                    for key in [k for k in self._cache if k[0] == edition_id]:
                        del self._cache[key]
                self._snapshots[edition_id] = current

    def get(self, edition_id: int, variant_key: str) -> MessageFactory:
        key = (edition_id, variant_key)
        factory = self._cache.get(key)
        if factory is None:
            with self._lock:
                factory = self._cache.get(key) or self._make(edition_id, variant_key)
                self._cache[key] = factory
        return factory

    def _make(self, edition_id: int, variant_key: str) -> MessageFactory:
        edition = get_edition_by_id(self.store, edition_id)
        if edition is None:
            raise DeliveryError(f"outbox row for unknown edition {edition_id}")
        digest = self.config.digest(edition.digest)
        rendered = render_digest(self.config, digest, edition.key, edition.period_end,
                                 edition_articles(self.store, edition),
                                 Variant.from_key(variant_key), archive_url(self.config, edition))
        return MessageFactory(self.config, rendered, digest.name, edition.period_end)

def release(store: Store, row_ids: list[int]) -> None:
    """Give claimed rows back untouched (the run stopped before trying them)."""
    for i in range(0, len(row_ids), 500):
        with store.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id.in_(row_ids[i:i + 500]),
                                              outbox.c.status == "claimed")
                         .values(status="pending", claimed_at=None, claimed_by=None))


# -- one row ------------------------------------------------------------------------

class RowSender:
    """Builds, sends and marks single rows; shared by all connection threads."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], datetime] = utcnow,
                 factories: FactoryCache | None = None):
        self.config, self.store, self.clock = config, store, clock
        self.factories = factories or FactoryCache(config, store)
        self.signer = LinkSigner(config, tokens.signer(config))
        self.sender = parseaddr(config.email.from_addr)[1]
        smtp = config.email.smtp
        self.limiter = RateLimiter(smtp.rate_per_second, smtp.per_domain_rate)
        self.dkim = _dkim_signer(config)

    def build(self, row) -> bytes:
        prefs, unsub, mailto = links(self.config, self.signer, row.token_key)
        data = self.factories.get(row.edition_id, row.variant).build(
            Recipient(row.email, row.name, prefs, unsub, mailto, message_key=str(row.id)))
        return self.dkim(data, self.config) if self.dkim else data

    def send(self, transport: Transport, row,
             ready: Callable[[], None] | None = None) -> tuple[str, bool]:
        """Send one claimed row and mark it; return (outcome, whether the connection failed).

        *ready* is called just before the message goes out: the connection thread
        waits there until its previous message is marked sent.
        """
        if row.suppressed or row.subscriber_status != "active":
            self.mark(row.id, status="suppressed",
                      last_error=f"subscriber {row.suppressed or row.subscriber_status}")
            return "skipped", False
        try:
            data = self.build(row)
        except DeliveryError as e:
            self.mark(row.id, status="failed", attempts=row.attempts + 1, last_error=str(e))
            return "failed", False
        self.limiter.acquire(row.email)
        if ready is not None:
            ready()
        try:
            transport.send(self.sender, [row.email], data)
        except SMTPReplyError as e:
            enhanced = e.enhanced or bounces.enhanced_in(e.reply)
            return self.failure(row, e.code, enhanced, str(e)), e.code == 421
        except DeliveryError as e:
            logger.warning("outbox %s (%s): %s", row.id, row.email, e)
            return self.failure(row, None, None, str(e), connection=True), True
        now = self.clock()
        self.mark_sent(row.id, now, row.attempts + 1, row.first_attempt_at or now)
        return "sent", False

    def mark_sent(self, row_id: int, at: datetime, attempts: int, first: datetime) -> None:
        self.mark(row_id, status="sent", sent_at=at, attempts=attempts, first_attempt_at=first,
                  last_code=250, last_enhanced=None, last_error=None)

    def mark(self, row_id: int, **values) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))

    def failure(self, row, code, enhanced, error, *, connection: bool = False) -> str:
        now = self.clock()
        kind = bounces.TRANSIENT if connection else bounces.classify(code, enhanced)
        values = dict(attempts=row.attempts + 1, last_code=code, last_enhanced=enhanced,
                      last_error=error[:1000], first_attempt_at=row.first_attempt_at or now)
        if connection or code is None or 400 <= code < 500:  # temporary, greylisting too
            deadline = values["first_attempt_at"] + timedelta(
                hours=self.config.email.retry_deadline_hours)
            if now < deadline:
                retry = min(now + backoff(row.attempts + 1), deadline)
                self.mark(row.id, status="deferred", next_attempt_at=retry, **values)
                return "deferred"
        status = {bounces.HARD: "bounced", bounces.POLICY: "rejected"}.get(kind, "failed")
        with self.store.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == row.id)
                         .values(status=status, **values))
            suppressed = self._judge(conn, row, kind, connection, f"{code} {enhanced or ''} {error}")
        if kind == bounces.POLICY:
            logger.warning("policy rejection for %s (not held against the subscriber): %s",
                           row.email, error)
        return status + ("+suppressed" if suppressed else "")

    @staticmethod
    def _judge(conn, row, kind: str, connection: bool, detail: str) -> bool:
        if kind == bounces.HARD:
            return bounces.hard_bounce(conn, row.email, detail)
        if connection or kind == bounces.POLICY:
            return False
        return bounces.soft_bounce(conn, row.email, detail)

    def reset_soft_bounces(self, subscriber_ids: list[int]) -> None:
        """A delivered message ends a run of soft bounces."""
        if not subscriber_ids:
            return
        with self.store.engine.begin() as conn:
            conn.execute(update(subscribers).where(subscribers.c.id.in_(subscriber_ids),
                                                   subscribers.c.soft_bounces > 0)
                         .values(soft_bounces=0))


class Marker:
    """Group commit of 'sent' marks: every mark waiting goes in one transaction.

    A connection thread hands its mark over, builds its next message, then
    waits for the commit before sending it: at most one accepted-but-unmarked
    message per connection at any time.
    """

    STATEMENT = (update(outbox).where(outbox.c.id == bindparam("b_id"))
                 .values(status="sent", sent_at=bindparam("b_at"), attempts=bindparam("b_n"),
                         first_attempt_at=bindparam("b_first"), last_code=250,
                         last_enhanced=None, last_error=None))

    def __init__(self, store: Store):
        self.store = store
        self.errors: list[str] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="outbox-marker", daemon=True)
        self._thread.start()

    def sent(self, row_id: int, at: datetime, attempts: int, first: datetime) -> threading.Event:
        done = threading.Event()
        self._queue.put((dict(b_id=row_id, b_at=at, b_n=attempts, b_first=first), done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            batch = [item]
            while len(batch) < 500:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list) -> None:
        try:
            with self.store.engine.begin() as conn:
                conn.execute(self.STATEMENT, [params for params, _ in batch])
        except SQLAlchemyError as e:
            logger.error("cannot mark %d sent messages: %s", len(batch), e)
            self.errors.append(f"cannot mark sent messages: {e}")
        finally:
            for _, done in batch:
                done.set()


class MarkingRowSender(RowSender):
    """A RowSender whose 'sent' marks go through a :class:`Marker`."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], datetime],
                 marker: Marker, factories: FactoryCache | None = None):
        super().__init__(config, store, clock, factories)
        self.marker = marker
        self.tickets = threading.local()

    def mark_sent(self, row_id: int, at: datetime, attempts: int, first: datetime) -> None:
        self.tickets.last = self.marker.sent(row_id, at, attempts, first)

    def wait_marked(self) -> None:
        """Block until this thread's last 'sent' mark is committed."""
        last = getattr(self.tickets, "last", None)
        if last is not None:
            last.wait()
            self.tickets.last = None


class Sender:
    """Connection threads fed from a bounded queue: rows stream through, memory stays flat."""

    def __init__(self, config: Config, store: Store, pool: TransportPool, *,
                 progress: Progress | None = None, total: int = 0,
                 clock: Callable[[], datetime] = utcnow, factories: FactoryCache | None = None):
        self.store, self.pool = store, pool
        self.marker = Marker(store)
        self.rows = MarkingRowSender(config, store, clock, self.marker, factories)
        self.progress, self.total = progress, total
        self.counts: Counter = Counter()
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue(maxsize=max(pool.size * 4, 64))
        self._lock = threading.Lock()
        self._done = 0
        self._sent_subscribers: list[int] = []
        self._threads = [threading.Thread(target=self._work, name=f"smtp-{i}", daemon=True)
                         for i in range(pool.size)]
        self._given_up = 0
        for t in self._threads:
            t.start()

    @property
    def alive(self) -> bool:
        return self._given_up < len(self._threads)

    def submit(self, rows: list) -> None:
        """Queue claimed rows; rows left when every connection has given up are released."""
        for i, row in enumerate(rows):
            while True:
                try:
                    self._queue.put(row, timeout=0.2)
                    break
                except queue.Full:
                    if not self.alive:
                        release(self.store, [r.id for r in rows[i:]])
                        return

    def finish(self) -> None:
        for _ in self._threads:
            while self.alive:
                try:
                    self._queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for t in self._threads:
            t.join()
        self.marker.close()
        self.errors += self.marker.errors
        left = []
        while not self._queue.empty():
            row = self._queue.get_nowait()
            if row is not None:
                left.append(row.id)
        release(self.store, left)
        self._flush_resets(force=True)
        if self.progress:
            self.progress(self._done, max(self.total, self._done))

    def _work(self) -> None:
        transport = self.pool.make()
        failures = 0
        while (row := self._queue.get()) is not None:
            outcome, connection_failed = self._send(transport, row)
            failures = failures + 1 if connection_failed else 0
            self._record(row, outcome)
            if failures >= MAX_CONNECT_FAILURES:
                self.rows.wait_marked()
                with self._lock:
                    self._given_up += 1
                    self.errors.append(f"{threading.current_thread().name}: gave up after "
                                       f"{failures} connection failures in a row")
                return

    def _send(self, transport: Transport, row) -> tuple[str, bool]:
        try:
            return self.rows.send(transport, row, ready=self.rows.wait_marked)
        except Exception as e:  # noqa: BLE001 - one bad row must not kill the connection thread
            logger.exception("outbox %s: unexpected error", row.id)
            return self.rows.failure(row, None, None, f"internal error: {e!r}",
                                     connection=True), False

    def _record(self, row, outcome: str) -> None:
        status, _, suppressed = outcome.partition("+")
        with self._lock:
            self.counts[status] += 1
            if suppressed:
                self.counts["suppressed"] += 1
            self._done += 1
            if status == "sent":
                self._sent_subscribers.append(row.subscriber_id)
            done = self._done
        self._flush_resets()
        if self.progress and done % 25 == 0:
            self.progress(done, max(self.total, done))

    def _flush_resets(self, force: bool = False) -> None:
        with self._lock:
            if not self._sent_subscribers or (len(self._sent_subscribers) < 500 and not force):
                return
            ids, self._sent_subscribers = self._sent_subscribers, []
        self.rows.reset_soft_bounces(ids)


def backoff(attempt: int) -> timedelta:
    """Exponential backoff with 'equal jitter': between half and all of base·2^(n-1)."""
    ceiling = min(RETRY_BASE * 2 ** max(0, attempt - 1), RETRY_CAP)
    return ceiling / 2 + ceiling / 2 * random.random()


def _dkim_signer(config: Config):
    if not config.email.dkim_selector:
        return None
    try:
        from .dkim import sign
    except ImportError as e:
        raise DeliveryError(f"DKIM is configured but cannot be loaded: {e}") from e
    return sign
