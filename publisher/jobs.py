"""Scheduled jobs. Module-level functions taking the config path, so the
persistent job store can record them by reference.

Each job does the cheap database work itself (collect, compose an edition,
plan partner deliveries) and hands the fan-out to :mod:`publisher.tasks`:
Celery tasks with ``[queue]``, threads in this process without.
"""

from __future__ import annotations

import logging

from . import collect, editions, pipeline, tasks
from .config import load_config
from .store import utcnow

logger = logging.getLogger(__name__)


def _open(config_path: str):
    config = load_config(config_path)
    return config, pipeline.open_store(config)


def collect_job(config_path: str) -> None:
    config, store = _open(config_path)
    try:
        if config.queue is None:  # the pipeline's own stage, unchanged
            report = pipeline.collect_and_build(config, store)
            collected = report.collected
            feeds_note = f"{len(report.feeds_changed)} feed files changed"
        else:
            now = utcnow()
            collected = collect.collect(config, store, now)
            tasks.dispatch_feeds(config, store, now)
            feeds_note = "feed build queued"
        c = collected.counts if collected else {}
        logger.info("collect: %s new, %s updated, %s, %d errors", c.get("new", 0),
                    c.get("updated", 0), feeds_note, len(collected.errors) if collected else 0)
    finally:
        store.close()


def digest_job(config_path: str, name: str) -> None:
    config, store = _open(config_path)
    try:
        edition = editions.compose(config, store, config.digest(name))
        if edition:
            counts = tasks.dispatch_send(config, store, edition_id=edition.id)
            logger.info("digest %s: edition %s; %s", name, edition.key, _summary(counts))
    finally:
        store.close()


def send_job(config_path: str) -> None:
    config, store = _open(config_path)
    try:
        counts = tasks.dispatch_send(config, store)
        if sum(counts.values()):
            logger.info("send: %s", _summary(counts))
    finally:
        store.close()


def syndicate_job(config_path: str) -> None:
    config, store = _open(config_path)
    try:
        counts = tasks.dispatch_syndication(config, store, utcnow())
        if sum(counts.values()):
            logger.info("syndicate: %s", _summary(counts))
    finally:
        store.close()


def _summary(counts) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do"
