#!/usr/bin/env python3
"""Throughput of Celery workers sending one edition, against a relay that adds latency.

An SMTP sink (aiosmtpd, its own process) answers each message after --delay
seconds (20 ms: a remote relay). One edition of --recipients rows is sent by
1, 2 and 4 workers (real ``celery -A publisher.tasks worker`` processes, threads
pool) with --connections SMTP connections each, over PostgreSQL and Redis.
Printed side by side: messages/s, and the efficiency against linear scaling in
total connections from the 1-worker run measured in the same run (target ≥ 80 %
until the sink or the CPU saturates; the ceiling per connection is 1/delay).

    .venv/bin/python benchmarks/scale.py [--recipients 6400] [--connections 4] [--batch 100]

Needs PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, update  # noqa: E402

from publisher import editions, subscribers, tasks  # noqa: E402
from publisher.config import load_config  # noqa: E402
from publisher.models import Article  # noqa: E402
from publisher.schema import editions as editions_table  # noqa: E402
from publisher.schema import outbox  # noqa: E402
from publisher.store import Store, utcnow  # noqa: E402

CONFIG = """
[site]
name = "江城新闻网"
url = "https://news.example.com"
[storage]
database_url = "{db}"
pool_size = {pool}
[email]
from = "江城新闻网 <newsletter@news.example.com>"
transport = "smtp"
batch_size = {batch}
[email.smtp]
host = "127.0.0.1"
port = {port}
connections = {connections}
[queue]
broker_url = "{broker}"
prefix = "{prefix}"
[[digests]]
name = "daily"
schedule = "0 7 * * *"
subject = "{{site}} 每日精选 {{date}}"
"""


def run_sink(port: int, delay: float) -> None:
    """The SMTP sink process: accept everything, each DATA after *delay* seconds."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            await asyncio.sleep(delay)
            return "250 2.0.0 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database() -> tuple[str, str]:
    import psycopg

    name = f"publisher_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(config, store: Store, recipients: int) -> int:
    now = utcnow()
    for i in range(3):
        store.save_article(Article(
            id=f"bench-{i}", title=f"基准测试文章 {i}", url=f"https://news.example.com/b/{i}",
            published=now - timedelta(hours=1 + i), body_html="<p>" + "正文。" * 200 + "</p>",
            author="杜才云", category="本地"), now)
    for i in range(recipients):
        subscribers.upsert(store, f"reader{i:06d}@example.org", status="active")
    edition = editions.compose(config, store, config.digest("daily"), now)
    return edition.id


def reset(store: Store, edition_id: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(outbox).values(status="pending", claimed_at=None, claimed_by=None,
                                           sent_at=None, attempts=0))
        conn.execute(update(editions_table).where(editions_table.c.id == edition_id)
                     .values(status="sending", completed_at=None))


def sent(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(outbox)
                            .where(outbox.c.status == "sent")).scalar_one()


def start_workers(config_path: Path, n: int, connections: int, logdir: Path) -> list:
    procs = []
    for i in range(n):
        log = open(logdir / f"worker{i}.log", "wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "publisher.tasks", "worker", "--pool=threads",
             f"--concurrency={connections}", "-n", f"bench{i}-{uuid.uuid4().hex[:6]}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
            cwd=ROOT, env=dict(os.environ, PUBLISHER_CONFIG=str(config_path)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    return procs


def wait_ready(config, n: int, timeout: float = 60) -> None:
    app = tasks.producer_app(config.queue)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= n:
            return
    raise SystemExit(f"workers not ready after {timeout}s")


def stop_workers(procs: list) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (Linux)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process *pid* (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(config, store, edition_id, workers: int, args, logdir: Path,
            sink_pid: int) -> tuple[float, float, float]:
    """(messages/s, share of the machine's CPU busy, share of one core the sink used)."""
    reset(store, edition_id)
    procs = start_workers(config.path, workers, args.connections, logdir)
    try:
        wait_ready(config, workers)
        started, cpu0, sink0 = time.monotonic(), cpu_times(), process_cpu(sink_pid)
        tasks.dispatch_send(config, store, edition_id=edition_id)
        deadline = started + args.timeout
        while (done := sent(store)) < args.recipients:
            if time.monotonic() > deadline:
                raise SystemExit(f"{workers} workers: only {done} sent after {args.timeout}s")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu1, sink = cpu_times(), (process_cpu(sink_pid) - sink0) / elapsed
        busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
        return args.recipients / elapsed, busy, sink
    finally:
        stop_workers(procs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipients", type=int, default=6400)
    p.add_argument("--connections", type=int, default=4, help="SMTP connections per worker")
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--delay", type=float, default=0.02, help="sink latency per message (s)")
    p.add_argument("--batch", type=int, default=100,
                   help="outbox rows per task ([email].batch_size; production default 500)")
    p.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    port = free_port()
    sink = multiprocessing.Process(target=run_sink, args=(port, args.delay), daemon=True)
    sink.start()
    dbname, url = create_database()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(CONFIG.format(db=url, pool=args.connections + 2, batch=args.batch,
                                      port=port, connections=args.connections,
                                      broker=args.broker, prefix=prefix), encoding="utf-8")
        config = load_config(path)
        store = Store.open(url)
        try:
            edition_id = seed(config, store, args.recipients)
            results = {w: measure(config, store, edition_id, w, args, Path(tmp), sink.pid)
                       for w in counts}
        finally:
            store.close()
            _delete_queues(config)
            tasks.close_producers()
            drop_database(dbname)
            sink.terminate()
    report(results, args)


def _delete_queues(config) -> None:
    from kombu import Connection

    with Connection(config.queue.broker_url) as conn:
        channel = conn.channel()
        for name in tasks.queue_names(config.queue).values():
            channel.queue_delete(name)


def report(results: dict[int, tuple[float, float, float]], args) -> None:
    base_workers = min(results)
    per_conn = results[base_workers][0] / (base_workers * args.connections)
    ceiling = 1 / args.delay
    print(f"{args.recipients} messages, sink latency {args.delay * 1000:.0f} ms "
          f"(ceiling {ceiling:.0f} msg/s per connection), batch {args.batch}")
    print(f"{os.cpu_count()} CPUs; 'machine' is the share of all CPUs busy, 'sink' the share of "
          "one core the (single-process) sink used")
    print(f"{'workers':>7} {'conns':>5} {'msg/s':>8} {'per conn':>8} {'vs linear':>9} "
          f"{'machine':>8} {'sink':>6}")
    for w, (rate, busy, sink) in sorted(results.items()):
        conns = w * args.connections
        eff = rate / (per_conn * conns)
        note = "" if eff >= 0.8 else ("  < 80 %: sink saturated" if sink >= 0.85
                                      else "  < 80 %: machine saturated" if busy >= 0.9
                                      else "  < 80 %")
        print(f"{w:>7} {conns:>5} {rate:>8.1f} {rate / conns:>8.1f} {eff:>8.0%} "
              f"{busy:>8.0%} {sink:>6.0%}" + note)


if __name__ == "__main__":
    main()
