"""Scheduled jobs. Module-level functions taking the config path, so the
persistent job store can record them by reference."""

from __future__ import annotations

import logging

from . import pipeline, syndication
from .config import load_config
from .delivery import send_pending
from .store import utcnow

logger = logging.getLogger(__name__)


def _open(config_path: str):
    config = load_config(config_path)
    return config, pipeline.open_store(config)


def collect_job(config_path: str) -> None:
    config, store = _open(config_path)
    try:
        report = pipeline.collect_and_build(config, store)
        c = report.collected.counts if report.collected else {}
        logger.info("collect: %s new, %s updated, %d feed files changed, %d errors",
                    c.get("new", 0), c.get("updated", 0), len(report.feeds_changed),
                    len(report.errors))
    finally:
        store.close()


def digest_job(config_path: str, name: str) -> None:
    config, store = _open(config_path)
    try:
        edition, report = pipeline.digest(config, store, config.digest(name))
        if edition:
            logger.info("digest %s: edition %s; %s", name, edition.key,
                        report.summary() if report else "queued")
    finally:
        store.close()


def send_job(config_path: str) -> None:
    config, store = _open(config_path)
    try:
        report = send_pending(config, store)
        if sum(report.counts.values()):
            logger.info("send: %s", report.summary())
    finally:
        store.close()


def syndicate_job(config_path: str) -> None:
    config, store = _open(config_path)
    try:
        if config.partners:
            syndication.run(config, store, utcnow())
    finally:
        store.close()
