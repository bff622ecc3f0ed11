"""A scheduler process for the leader-election test: ``publisher.daemon.run_forever``
with one job that writes a row (this process's pid) to a ``ticks`` table every 0.3 s.

    python -m tests.support.tick_scheduler CONFIG DATABASE_URL
"""

from __future__ import annotations

import logging
import os
import sys

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from publisher import daemon
from publisher.config import load_config


def tick(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO ticks (pid, at) VALUES (%s, clock_timestamp())", (os.getpid(),))


def main(config_path: str, url: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dsn = url.replace("postgresql+psycopg://", "postgresql://")

    def build(config):
        scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.add_job(tick, "interval", seconds=0.3, args=[dsn], id="tick")
        return scheduler

    daemon.run_forever(load_config(config_path), build=build)


if __name__ == "__main__":
    main(*sys.argv[1:3])
