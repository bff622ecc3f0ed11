"""Coordination between processes through PostgreSQL advisory locks.

Two uses, one mechanism (a session-level advisory lock lives exactly as long as
the database session that took it, so a process that dies releases it at once):

- **Leader election** (:class:`PostgresElection`): every ``scheduler.py`` tries
  ``pg_try_advisory_lock`` on a dedicated connection; the one that gets it fires
  the jobs for as long as that connection lives, the others poll every few
  seconds and take over when it is gone. On SQLite there is one machine, so a
  file lock (:class:`FileElection`) plays the same part.
- **Worker liveness** (:class:`Liveness`): a worker that claims outbox rows holds
  a lock named after its ``claimed_by`` id. Claims whose owner's lock is free
  belong to a dead worker and are handed back (:meth:`Liveness.reap`) at once,
  instead of after the claim timeout.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, create_engine, delete, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .config import Config
from .schema import kv, outbox
from .store import Store, utcnow

logger = logging.getLogger(__name__)

LEADER_LOCK = 0x7075626C_00000002  # bigint key: the scheduler leadership
WORKER_NS = 0x70756277  # int4 namespace for the two-key worker liveness locks
WORKER_KV = "worker:"  # kv rows naming workers that hold a liveness lock
# The server notices a vanished client host in ~20 s instead of the 2-hour TCP default.
KEEPALIVE = ("SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 5",
             "SET tcp_keepalives_count = 3")


class Election(Protocol):
    def try_acquire(self) -> bool:
        """Become the leader if nobody is; True while this instance is the leader."""

    def holds(self) -> bool:
        """Whether this instance still is the leader."""

    def release(self) -> None: ...


def _session(url: str) -> Connection:
    """A dedicated autocommit connection outside any pool, with keepalives."""
    engine = create_engine(url, poolclass=NullPool)
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    for statement in KEEPALIVE:
        conn.execute(text(statement))
    return conn


def _close(conn: Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except SQLAlchemyError:
        pass
    conn.engine.dispose()


class PostgresElection:
    """Leadership = holding ``pg_advisory_lock(key)`` on one dedicated session."""

    def __init__(self, url: str, key: int = LEADER_LOCK):
        self.url, self.key = url, key
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self.holds():
            return True
        try:
            if self._conn is None:
                self._conn = _session(self.url)
            got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                     {"k": self.key}).scalar()
        except SQLAlchemyError as e:
            logger.warning("leader election: database unreachable: %s", e.__class__.__name__)
            self._drop()
            return False
        return bool(got)

    def holds(self) -> bool:
        if self._conn is None:
            return False
        hi, lo = divmod(self.key, 1 << 32)
        try:
            row = self._conn.execute(text(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid = :hi AND objid = :lo"
                " AND objsubid = 1"), {"hi": hi, "lo": lo}).first()
        except SQLAlchemyError:
            self._drop()
            return False
        return row is not None

    def release(self) -> None:
        self._drop()  # closing the session releases every lock it held

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        _close(conn)


class FileElection:
    """Leadership = an exclusive ``flock`` on a file (one machine: SQLite)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holds(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def election_for(config: Config) -> Election:
    """The election that fits the configured database."""
    url = config.storage.database_url
    if url.startswith("postgresql"):
        return PostgresElection(url)
    return FileElection(config.var_dir / "scheduler.lock")


def wait_for_leadership(election: Election, poll_seconds: float,
                        stop: threading.Event) -> bool:
    """Block until *election* is won (True) or *stop* is set (False)."""
    announced = False
    while not stop.is_set():
        if election.try_acquire():
            return True
        if not announced:
            logger.warning("standby: another scheduler is the leader; polling every %gs",
                           poll_seconds)
            announced = True
        stop.wait(poll_seconds)
    return False


# -- worker liveness ----------------------------------------------------------

def worker_key(worker: str) -> int:
    """The int4 lock key of a ``claimed_by`` id."""
    return zlib.crc32(worker.encode("utf-8")) - (1 << 31)


class Liveness:
    """Holds one lock per ``claimed_by`` id of this process, and hands back the
    claims of workers whose lock is free (they died)."""

    def __init__(self, url: str):
        self.url = url
        self._mine: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def register(self, store: Store, worker: str) -> bool:
        """Take *worker*'s lock (once per process) and record it; False if taken."""
        with self._lock:
            if worker in self._mine:
                return True
            conn = _session(self.url)
            got = conn.execute(text("SELECT pg_try_advisory_lock(:ns, :k)"),
                               {"ns": WORKER_NS, "k": worker_key(worker)}).scalar()
            if not got:
                _close(conn)
                logger.warning("liveness lock for %s is held elsewhere", worker)
                return False
            self._mine[worker] = conn
        with store.engine.begin() as c:
            c.execute(delete(kv).where(kv.c.key == WORKER_KV + worker))
            c.execute(insert(kv).values(key=WORKER_KV + worker, value=utcnow().isoformat(),
                                        flag=False))
        return True

    def reap(self, store: Store) -> int:
        """Return the claims of dead registered workers to the queue; the row count."""
        with store.engine.connect() as c:
            owners = {r[0] for r in c.execute(select(outbox.c.claimed_by).distinct().where(
                outbox.c.status == "claimed", outbox.c.claimed_by.is_not(None)))}
            registered = {r[0][len(WORKER_KV):] for r in c.execute(
                select(kv.c.key).where(kv.c.key.startswith(WORKER_KV)))}
        suspects = (owners & registered) - set(self._mine)
        return sum(self._reap_one(store, w) for w in sorted(suspects))

    def _reap_one(self, store: Store, worker: str) -> int:
        conn = _session(self.url)
        try:
            args = {"ns": WORKER_NS, "k": worker_key(worker)}
            if not conn.execute(text("SELECT pg_try_advisory_lock(:ns, :k)"), args).scalar():
                return 0  # alive
            with store.engine.begin() as c:
                n = c.execute(update(outbox).where(
                    outbox.c.status == "claimed", outbox.c.claimed_by == worker)
                    .values(status="pending", claimed_at=None, claimed_by=None)).rowcount
                c.execute(delete(kv).where(kv.c.key == WORKER_KV + worker))
            if n:
                logger.warning("worker %s is gone: %d claimed rows handed back", worker, n)
            return n
        finally:
            _close(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._mine = list(self._mine.values()), {}
        for conn in conns:
            _close(conn)

