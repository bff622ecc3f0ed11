"""Helpers for the scale-out tests: broker fixtures' plumbing, a seeded edition,
Celery workers and schedulers as real subprocesses, a slow SMTP handler."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from publisher import editions, subscribers
from publisher.models import Article
from publisher.schema import editions as editions_table
from publisher.schema import outbox
from publisher.store import Store, utcnow
from tests.conftest import write_site
from tests.support.smtpserver import Handler

ROOT = Path(__file__).resolve().parents[2]
RESERVED = "publisher_test_reserved"


def reserve_redis_db(host: str = "127.0.0.1", port: int = 6379) -> int:
    """An empty Redis database number (1-15), marked as taken by this test."""
    import redis

    numbers = list(range(1, 16))
    random.shuffle(numbers)
    for n in numbers:
        client = redis.Redis(host=host, port=port, db=n)
        try:
            if client.dbsize() == 0 and client.set(RESERVED, "1", nx=True):
                return n
        finally:
            client.close()
    raise RuntimeError("no empty Redis database among 1-15")


def release_redis_db(n: int, host: str = "127.0.0.1", port: int = 6379) -> None:
    import redis

    client = redis.Redis(host=host, port=port, db=n)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class SlowHandler(Handler):
    """Answers each DATA after *delay* seconds, like a remote relay."""

    delay: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def scale_site(tmp_path: Path, database_url: str, *, broker_url: str | None, prefix: str,
               smtp_port: int, batch_size: int = 10, connections: int = 2,
               poll: float = 0.5) -> Path:
    """A config.toml on PostgreSQL, sending by SMTP to *smtp_port*, with a [queue]."""
    extra = (f'\n[email.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
             f"connections = {connections}\n\n[scheduler]\nleader_poll_seconds = {poll}\n")
    if broker_url:
        extra += f'\n[queue]\nbroker_url = "{broker_url}"\nprefix = "{prefix}"\n'
    path = write_site(tmp_path, extra, content=tmp_path / "no-content", database_url=database_url)
    text = path.read_text(encoding="utf-8").replace(
        'transport = "file"', f'transport = "smtp"\nbatch_size = {batch_size}')
    path.write_text(text, encoding="utf-8")
    return path


def seed_edition(config, store: Store, recipients: int) -> editions.Edition:
    """Two fresh articles, *recipients* active daily subscribers, today's edition composed."""
    now = utcnow()
    for i in range(2):
        store.save_article(Article(
            id=f"scale-{i}", title=f"规模测试文章 {i}", url=f"https://news.example.com/scale/{i}",
            published=now - timedelta(hours=1 + i), body_html=f"<p>第 {i} 篇正文。</p>",
            author="杜才云", category="本地"), now)
    for i in range(recipients):
        subscribers.upsert(store, f"reader{i:04d}@example.org", name=f"读者{i}", status="active")
    edition = editions.compose(config, store, config.digest("daily"), now)
    assert edition is not None and edition.total == recipients
    return edition


def edition_status(store: Store, edition_id: int) -> str:
    with store.engine.connect() as conn:
        return conn.execute(select(editions_table.c.status)
                            .where(editions_table.c.id == edition_id)).scalar_one()


def rows_by(store: Store, worker: str, status: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.claimed_by == worker, outbox.c.status == status)).scalar_one()


def claimers(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(select(outbox.c.claimed_by).distinct())}


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll *predicate* until truthy (its value) or fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class Proc:
    """A subprocess with its output in a log file; killed on exit."""

    def __init__(self, argv: list[str], log: Path, config_path: Path):
        self.log = log
        env = dict(os.environ, PUBLISHER_CONFIG=str(config_path), PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:  # a warm shutdown on AMQP can linger ~10 s after its tasks are done
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(config_path: Path, name: str, log: Path, *, pool: str = "threads",
                 concurrency: int = 2) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "publisher.tasks", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"]
    return Proc(argv, log, config_path)


def worker_ready(proc: Proc) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"worker exited early:\n{proc.output()[-3000:]}")
    return " ready." in proc.output()


def start_scheduler(config_path: Path, ticks_url: str, log: Path) -> Proc:
    argv = [sys.executable, "-m", "tests.support.tick_scheduler", str(config_path), ticks_url]
    return Proc(argv, log, config_path)
