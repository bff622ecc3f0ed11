"""The one writer for ``feeds/``: safe joins, atomic writes, no file twice per run.

A file whose bytes would not change is not touched (its mtime stays), so a
rebuild where nothing changed rewrites nothing. With a :class:`FeedState`
the writer also remembers, per file, a fingerprint of what the file was built
from (the ``feed_state`` table), so the feed builder can skip rendering a
document whose inputs have not changed at all.
"""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from .errors import RenderError
from .schema import feed_state

if TYPE_CHECKING:
    from .store import Store

logger = logging.getLogger(__name__)


def safe_join(root: Path, rel: str) -> Path:
    """Join *rel* under *root*, refusing anything that would escape it."""
    root = Path(root).resolve()
    if "\x00" in rel:
        raise RenderError(f"refusing a path with NUL: {rel!r}")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise RenderError(f"refusing to write outside {root}: {rel!r}")
    return target


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write *data* to *path* through a temp file in the same folder and a rename.

    Readers see the old file or the new one, never a part. With *durable* the
    data is also fsynced before the rename; :class:`FeedWriter` writes many
    files without it and syncs once at the end (:meth:`FeedWriter.sync`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _put(path: Path, data: bytes) -> bool:
    """Write *data* to *path* unless it already holds exactly that; True if written."""
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
        atomic_write(path, data, durable=False)
        return True
    except OSError as e:
        raise RenderError(f"cannot write {path}: {e.strerror}") from e


class FeedState:
    """Fingerprints of the files last written, kept in the ``feed_state`` table.

    Keys are paths relative to the output folder. Changes are collected and
    saved in one transaction by :meth:`save`.
    """

    def __init__(self, store: Store | None):
        self.store = store
        self.known: dict[str, str] = {}
        self.pending: dict[str, str | None] = {}
        if store is not None:
            try:
                with store.engine.connect() as conn:
                    rows = conn.execute(select(feed_state.c.path, feed_state.c.fingerprint))
                    self.known = {r.path: r.fingerprint for r in rows}
            except SQLAlchemyError as e:
                logger.warning("feed state unavailable, rendering everything: %s", e)

    def get(self, rel: str) -> str | None:
        return self.known.get(rel)

    def set(self, rel: str, fingerprint: str | None) -> None:
        if fingerprint is None:
            self.known.pop(rel, None)
        else:
            self.known[rel] = fingerprint
        self.pending[rel] = fingerprint

    def save(self, now: datetime | None = None) -> None:
        if self.store is None or not self.pending:
            return
        now = now or datetime.now(UTC)
        keys = list(self.pending)
        try:
            with self.store.engine.begin() as conn:
                for i in range(0, len(keys), 500):
                    conn.execute(delete(feed_state).where(feed_state.c.path.in_(keys[i:i + 500])))
                rows = [{"path": k, "fingerprint": v, "written_at": now}
                        for k, v in self.pending.items() if v is not None]
                if rows:
                    conn.execute(insert(feed_state), rows)
        except SQLAlchemyError as e:
            logger.warning("could not save feed state (next build renders again): %s", e)
        self.pending.clear()


class FeedWriter:
    """Writes feed files under *root*; with *background*, the disk work overlaps rendering.

    In background mode :meth:`write` returns at once and :meth:`finish` waits for
    the writes, records them in submission order and returns the errors.
    """

    def __init__(self, root: Path, state: FeedState | None = None, *, background: bool = False):
        self.root = Path(root)
        self.state = state or FeedState(None)
        self.written: set[str] = set()
        self.changed: list[str] = []
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="feedwriter") if background else None
        self._pending: list[tuple[str, str | None, Future]] = []

    def up_to_date(self, rel: str, fingerprint: str) -> bool:
        """True when *rel* exists and was last built from the same *fingerprint*."""
        if self.state.get(rel) != fingerprint:
            return False
        return os.path.isfile(os.path.join(self.root, rel))  # rel came from the state: ours

    def all_present(self) -> bool:
        """Whether every file the state knows of exists (a deleted one must be rebuilt)."""
        root = str(self.root)
        return all(os.path.isfile(os.path.join(root, rel))
                   for rel in self.state.known if not rel.startswith("."))

    def keep(self, rel: str) -> None:
        """Note that *rel* is part of this build although it was not rendered."""
        if rel in self.written:
            raise RenderError(f"{rel} written twice in one build")
        self.written.add(rel)

    def write(self, rel: str, data: bytes, fingerprint: str | None = None) -> bool | None:
        """Write one file; return True if its content changed (None in background mode)."""
        self.keep(rel)
        path = safe_join(self.root, rel)
        if self._pool is None:
            return self._record(rel, fingerprint, _put(path, data))
        self._pending.append((rel, fingerprint, self._pool.submit(_put, path, data)))
        return None

    def finish(self) -> list[str]:
        """Wait for background writes and record them; return what failed."""
        errors = []
        for rel, fingerprint, future in self._pending:
            try:
                self._record(rel, fingerprint, future.result())
            except RenderError as e:
                logger.error("%s", e)
                errors.append(str(e))
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return errors

    def _record(self, rel: str, fingerprint: str | None, changed: bool) -> bool:
        if fingerprint is not None:
            self.state.set(rel, fingerprint)
        if changed:
            logger.debug("wrote %s", rel)
            self.changed.append(rel)
        return changed

    def sync(self) -> None:
        """Flush what this build wrote to disk (once, before the state is saved)."""
        if self.changed and hasattr(os, "sync"):
            os.sync()

    def remove_stale(self) -> list[str]:
        """Delete files this writer built before that are no longer part of the site."""
        stale = [rel for rel in list(self.state.known)
                 if rel not in self.written and not rel.startswith(".")]
        for rel in stale:
            try:
                path = safe_join(self.root, rel)
                if path.is_file():
                    path.unlink()
                    self.changed.append(rel)
                    logger.info("removed stale feed %s", path)
            except (OSError, RenderError) as e:
                logger.warning("cannot remove stale feed %s: %s", rel, e)
            self.state.set(rel, None)
        return stale
