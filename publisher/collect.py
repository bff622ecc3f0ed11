"""Collect: read every source, clean, convert to the canonical script, store.

One bad file or source is logged, counted and reported by name; the others go
on. Each source's last success, last error and article count are kept in
``source_state`` for ``publisher status``.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, update

from . import cleaning, readers, scripts, upstream
from .config import Config, SourceConfig
from .errors import SourceError, StoreError
from .models import Article
from .schema import articles, source_state
from .store import NEW, UPDATED, Store, utcnow

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)


@dataclass
class CollectReport:
    counts: Counter = field(default_factory=Counter)  # new / updated / unchanged / duplicate
    errors: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.counts[NEW] or self.counts[UPDATED])


def collect(config: Config, store: Store, now: datetime | None = None) -> CollectReport:
    """Run every source once (concurrently) and store what they yield."""
    now = now or utcnow()
    report = CollectReport()
    due = [s for s in config.sources if _due(store, s, now)]
    workers = max(1, min(8, len(due)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collect") as pool:
        results = list(pool.map(lambda s: _run_source(config, store, s), due))
    for source, (found, errors, fatal) in zip(due, results, strict=True):
        report.errors.extend(errors)
        for article in found:
            try:
                outcome = store.save_article(_canonical(article, config), now)
            except StoreError as e:
                logger.error("%s", e)
                report.errors.append(str(e))
                continue
            report.counts[outcome] += 1
            if outcome in (NEW, UPDATED):
                report.changed_ids.append(article.id)
        _record(store, source, now, fatal)
    return report


def _run_source(config: Config, store: Store, source: SourceConfig):
    """Return (articles, per-item errors, fatal error or None) for one source."""
    try:
        if source.type == "directory":
            found, errors = read_directory(config, source)
        else:
            found, errors = read_feed_source(config, store, source)
        return found, errors, None
    except SourceError as e:
        logger.error("%s", e)
        return [], [str(e)], str(e)


def read_directory(config: Config, source: SourceConfig) -> tuple[list[Article], list[str]]:
    root = source.path
    assert root is not None
    if not root.is_dir():
        raise SourceError(f"source {source.name}: directory not found: {root}")
    found, errors = [], []
    for path in sorted(_content_files(root)):
        try:
            found.append(readers.read_file(path, root, config, source.name))
        except readers.Skip as e:
            logger.debug("%s", e)
        except SourceError as e:
            logger.error("%s", e)
            errors.append(str(e))
    return found, errors


def _content_files(root: Path):
    for path in root.rglob("*"):
        if path.suffix in (".md", ".txt") and path.is_file() \
                and not path.name.upper().startswith("README") and not path.name.startswith("."):
            yield path


def read_feed_source(config: Config, store: Store,
                     source: SourceConfig) -> tuple[list[Article], list[str]]:
    state = _state(store, source.name)
    result = upstream.fetch(source, etag=state.get("etag"), last_modified=state.get("last_modified"))
    if result.status == 304:
        logger.info("source %s: not modified", source.name)
        return [], []
    articles, problems = upstream.parse_feed(result.body, source, config, result.content_type)
    with store.engine.begin() as conn:
        conn.execute(update(source_state).where(source_state.c.name == source.name)
                     .values(etag=result.etag, last_modified=result.last_modified))
    return articles, problems


def _canonical(article: Article, config: Config) -> Article:
    """The article in the site's canonical script, no field carrying a character XML forbids."""
    target = config.site.script

    def text(value: str) -> str:
        return scripts.to_script(cleaning.strip_xml_illegal(value), target)

    return article.evolve(
        title=text(article.title),
        summary=text(article.summary),
        body_html=scripts.convert_html(cleaning.strip_xml_illegal(article.body_html), target),
        author=text(article.author),
        category=text(article.category),
        tags=tuple(t for t in (text(t) for t in article.tags) if t),
        source_name=text(article.source_name),
        source_url=cleaning.strip_xml_illegal(article.source_url),
        url=cleaning.strip_xml_illegal(article.url),
        image=cleaning.strip_xml_illegal(article.image),
    )


def _state(store: Store, name: str) -> dict:
    with store.engine.begin() as conn:
        row = conn.execute(select(source_state).where(source_state.c.name == name)).first()
        if row is None:
            conn.execute(insert(source_state).values(name=name, consecutive_failures=0,
                                                     article_count=0))
            return {}
        return dict(row._mapping)


def _due(store: Store, source: SourceConfig, now: datetime) -> bool:
    state = _state(store, source.name)
    nxt = state.get("next_attempt_at")
    if nxt and nxt > now:
        logger.info("source %s backed off until %s", source.name, nxt.isoformat())
        return False
    return True


def _record(store: Store, source: SourceConfig, now: datetime, error: str | None) -> None:
    state = _state(store, source.name)
    if error:
        failures = (state.get("consecutive_failures") or 0) + 1
        backoff = min(MAX_BACKOFF, timedelta(minutes=2 ** min(failures, 10))) if failures >= 3 \
            else None
        values = dict(last_attempt=now, last_error=error, last_error_at=now,
                      consecutive_failures=failures,
                      next_attempt_at=now + backoff if backoff else None)
    else:
        values = dict(last_attempt=now, last_success=now, consecutive_failures=0,
                      next_attempt_at=None,
                      )
    with store.engine.begin() as conn:
        if not error:
            values["article_count"] = conn.execute(
                select(func.count()).select_from(articles)
                .where(articles.c.collected_from == source.name)).scalar_one()
        conn.execute(update(source_state).where(source_state.c.name == source.name).values(**values))


def source_statuses(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(source_state).order_by(source_state.c.name))]
