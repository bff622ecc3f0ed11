"""The pipeline: every stage in order, in a few lines (Pelican's ``run``).

The CLI and the scheduler both call these functions; there is one way to
build feeds, compose a digest or run a cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from . import collect, editions, feeds, subscribers, syndication
from .config import Config, DigestConfig
from .delivery import SendReport, send_pending
from .editions import Edition
from .models import Article
from .store import Store, utcnow

logger = logging.getLogger(__name__)


def open_store(config: Config) -> Store:
    """Open (and migrate) the configured database; load demo subscribers into an empty one."""
    store = Store.open(config.storage.database_url, **config.storage.engine_kwargs())
    if config.demo_subscribers and not subscribers.count(store):
        report = subscribers.import_csv(store, config.demo_subscribers, method="demo")
        logger.info("loaded %d demo subscribers from %s", report.added, config.demo_subscribers)
    return store


@dataclass
class CycleReport:
    collected: collect.CollectReport | None = None
    feeds_changed: list[str] = field(default_factory=list)
    editions: list[Edition] = field(default_factory=list)
    sent: SendReport | None = None
    syndicated: syndication.SyndicationReport | None = None

    @property
    def errors(self) -> list[str]:
        errs = list(self.collected.errors) if self.collected else []
        if self.syndicated:
            errs += self.syndicated.errors
        return errs


def collect_and_build(config: Config, store: Store, now: datetime | None = None) -> CycleReport:
    now = now or utcnow()
    report = CycleReport(collected=collect.collect(config, store, now))
    report.feeds_changed = feeds.build_all(config, store, now)
    return report


def digest(config: Config, store: Store, d: DigestConfig, now: datetime | None = None, *,
           send: bool = True) -> tuple[Edition | None, SendReport | None]:
    """Compose today's edition of *d* and, with *send*, drain its outbox."""
    edition = editions.compose(config, store, d, now)
    if edition is None or not send:
        return edition, None
    return edition, send_pending(config, store, edition_id=edition.id)


def cycle(config: Config, store: Store, now: datetime | None = None, *,
          digests: bool = False) -> CycleReport:
    """Collect, build feeds, (with *digests*) compose every digest, send, syndicate."""
    now = now or utcnow()
    report = collect_and_build(config, store, now)
    if digests:
        for d in config.digests:
            edition = editions.compose(config, store, d, now)
            if edition:
                report.editions.append(edition)
    report.sent = send_pending(config, store)
    if config.partners:
        report.syndicated = syndication.run(config, store, now)
    return report


def withdraw(config: Config, store: Store, article_id: str, reason: str,
             now: datetime | None = None) -> tuple[Article, list[str]]:
    """Take an article down everywhere: store, feeds at once, partners notified."""
    now = now or utcnow()
    article = store.withdraw(article_id, reason, now)
    changed = feeds.build_all(config, store, now)
    syndication.withdraw(config, store, article, reason, now)
    return article, changed
