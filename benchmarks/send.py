"""Delivery benchmark: ours against a raw smtplib loop, build throughput, dry-run memory.

    .venv/bin/python benchmarks/send.py                     # N=20,000, 4 connections, 1M dry run
    .venv/bin/python benchmarks/send.py -n 5000 --dry-run 100000 --build 50000

1. An aiosmtpd sink (advertising PIPELINING, discarding content) runs in a
   separate process.
2. N subscribers are imported, an edition is composed and sent through the
   project (``send_pending``): messages/s.
3. A raw ``smtplib`` loop sends N prebuilt messages of the same size over the
   same number of connections to the same sink: messages/s. Ratio ours/raw
   (target >= 0.85).
4. Per-recipient build throughput on one core (target 30,000/s): message
   assembly alone, and with the signed links (itsdangerous) included.
5. Peak RSS of a dry run in a fresh process: M subscribers (default 1,000,000)
   imported, composed, and every message built without sending (target < 300 MB).

Not a test: it prints figures and ratios, it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import smtplib
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sink(port: int, ready, stop) -> None:
    """The SMTP sink process."""
    from aiosmtpd.controller import Controller

    class Handler:
        count = 0

        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server, session, envelope):
            Handler.count += 1
            return "250 2.0.0 OK"

    c = Controller(Handler(), hostname="127.0.0.1", port=port,
                   server_kwargs={"decode_data": False, "data_size_limit": 0})
    c.start()
    ready.set()
    stop.wait()
    c.stop()


def site(tmp: Path, port: int, connections: int):
    from publisher.config import load_config
    from tests.conftest import write_site

    path = write_site(tmp, content=tmp / "empty")
    text = path.read_text(encoding="utf-8").replace(
        'transport = "file"', 'transport = "smtp"\nbatch_size = 1000')
    text += f'\n[email.smtp]\nhost = "127.0.0.1"\nport = {port}\nconnections = {connections}\n'
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def prepare(tmp: Path, port: int, connections: int, n: int):
    """Config, store and a composed edition with *n* recipients."""
    from publisher.editions import compose
    from publisher.store import Store
    from tests.support.delivery import NOW, add_articles, add_subscribers

    config = site(tmp, port, connections)
    store = Store.open(config.storage.database_url)
    add_articles(store, NOW, n=8)
    for start in range(0, n, 50_000):
        add_subscribers(store, [f"reader{i}@example.net" for i in range(start, min(n, start + 50_000))])
    edition = compose(config, store, config.digest("daily"), NOW)
    return config, store, edition


def ours(tmp: Path, port: int, connections: int, n: int) -> tuple[float, bytes]:
    from publisher.delivery import FactoryCache, send_pending
    from tests.support.delivery import NOW

    config, store, edition = prepare(tmp, port, connections, n)
    FactoryCache(config, store).get(edition.id, "zh-hans||daily")  # warm the template cache
    started = time.perf_counter()
    report = send_pending(config, store, now=NOW + timedelta(minutes=1))
    seconds = time.perf_counter() - started
    print(f"ours:  {report.summary()}")
    sample = sample_message(config, store, edition)
    store.close()
    return report.counts["sent"] / seconds, sample


def sample_message(config, store, edition) -> bytes:
    """One message as sent, built again from the first outbox row."""
    from sqlalchemy import select

    from publisher.delivery import RowSender
    from publisher.schema import outbox, subscribers

    with store.engine.connect() as conn:
        row = conn.execute(
            select(outbox.c.id, outbox.c.edition_id, outbox.c.variant, outbox.c.email,
                   subscribers.c.name, subscribers.c.token_key)
            .join(subscribers, subscribers.c.id == outbox.c.subscriber_id).limit(1)).first()
    return RowSender(config, store).build(row)


def raw(port: int, connections: int, n: int, message: bytes) -> float:
    """The baseline: smtplib.sendmail in a loop, one thread per connection."""
    per = [n // connections + (1 if i < n % connections else 0) for i in range(connections)]

    def loop(count: int) -> None:
        conn = smtplib.SMTP("127.0.0.1", port, local_hostname="bench")
        for i in range(count):
            conn.sendmail("newsletter@news.example.com", [f"raw{i}@example.net"], message)
        conn.quit()

    threads = [threading.Thread(target=loop, args=(c,)) for c in per]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - started)


def build_throughput(tmp: Path, count: int) -> tuple[float, float]:
    from publisher import tokens
    from publisher.delivery import FactoryCache, LinkSigner, links
    from publisher.message import Recipient

    config, store, edition = prepare(tmp, 25, 1, 1)
    factory = FactoryCache(config, store).get(edition.id, "zh-hans||daily")
    signer = LinkSigner(config, tokens.signer(config))
    prefs, unsub, mailto = links(config, signer, "0" * 32)
    started = time.perf_counter()
    for i in range(count):
        factory.build(Recipient(f"reader{i}@example.net", "读者", prefs, unsub, mailto, str(i)))
    assembly = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(count):
        p, u, m = links(config, signer, f"{i:032x}")
        factory.build(Recipient(f"reader{i}@example.net", "读者", p, u, m, str(i)))
    with_links = count / (time.perf_counter() - started)
    store.close()
    return assembly, with_links


def dry_run_child(tmp: str, m: int, out) -> None:
    from publisher.delivery import dry_run

    started = time.perf_counter()
    config, store, edition = prepare(Path(tmp), 25, 1, m)
    composed = time.perf_counter() - started
    n, size = dry_run(config, store, edition.id)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.send((n, size, composed, time.perf_counter() - started - composed, peak))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", "--subscribers", type=int, default=20_000)
    ap.add_argument("-c", "--connections", type=int, default=4)
    ap.add_argument("--build", type=int, default=100_000, help="messages for the build figure")
    ap.add_argument("--dry-run", type=int, default=1_000_000, help="subscribers (0 = skip)")
    args = ap.parse_args()

    from tests.support.smtpserver import free_port

    port = free_port()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=sink, args=(port, ready, stop), daemon=True)
    proc.start()
    ready.wait(30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours_rate, sample = ours(Path(tmp), port, args.connections, args.subscribers)
        raw_rate = raw(port, args.connections, args.subscribers, sample)
    finally:
        stop.set()
        proc.join(10)
    print(f"send: ours {ours_rate:,.0f} msg/s, raw smtplib {raw_rate:,.0f} msg/s, "
          f"ratio {ours_rate / raw_rate:.2f} (target >= 0.85); "
          f"{args.subscribers:,} messages of {len(sample):,} bytes over {args.connections} connections")
    with tempfile.TemporaryDirectory() as tmp:
        assembly, with_links = build_throughput(Path(tmp), args.build)
    print(f"build: {assembly:,.0f} msg/s assembly only, {with_links:,.0f} msg/s with signed "
          f"links, one core (target 30,000)")
    if args.dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=dry_run_child, args=(tmp, args.dry_run, child))
            p.start()
            n, size, composed, built, peak = parent.recv()
            p.join()
        print(f"dry run: {n:,} messages ({size / 1e9:.1f} GB) composed in {composed:.0f} s, "
              f"built in {built:.0f} s ({n / built:,.0f} msg/s); peak RSS {peak:.0f} MB "
              f"(target < 300 MB)")


if __name__ == "__main__":
    main()
