"""The daemon behind ``scheduler.py``: APScheduler 3 with a persistent job store.

Collection and feeds every few minutes, each digest on its cron in the site's
time zone, the outbox and partner queue every minute. Jobs coalesce and have a
misfire grace time, so a daemon that was down fires each missed job once.
"""

from __future__ import annotations

import logging
import threading

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import jobs, pipeline
from .config import Config

logger = logging.getLogger(__name__)


def build_scheduler(config: Config, scheduler_cls=BlockingScheduler):
    tz = config.site.timezone
    scheduler = scheduler_cls(
        timezone=tz,
        jobstores={"default": SQLAlchemyJobStore(url=config.storage.database_url)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": config.scheduler.misfire_grace_seconds},
    )
    path = str(config.path)
    add = scheduler.add_job
    add(jobs.collect_job, IntervalTrigger(minutes=config.scheduler.collect_minutes, timezone=tz),
        args=[path], id="collect", name="collect and build feeds", replace_existing=True)
    add(jobs.send_job, IntervalTrigger(minutes=1, timezone=tz), args=[path], id="send",
        name="drain the outbox", replace_existing=True)
    add(jobs.syndicate_job, IntervalTrigger(minutes=1, timezone=tz), args=[path],
        id="syndicate", name="partner deliveries", replace_existing=True)
    for d in config.digests:
        add(jobs.digest_job, CronTrigger.from_crontab(d.schedule, timezone=tz),
            args=[path, d.name], id=f"digest:{d.name}", name=f"digest {d.name}",
            replace_existing=True)
    return scheduler


def run_once(config: Config) -> pipeline.CycleReport:
    """Every job once, due or not, digests included."""
    store = pipeline.open_store(config)
    try:
        return pipeline.cycle(config, store, digests=True)
    finally:
        store.close()


def serve_in_background(config: Config) -> threading.Thread:
    """Start the web app on [web].host:port in a daemon thread."""
    from werkzeug.serving import make_server

    from .web import create_app

    server = make_server(config.web.host, config.web.port, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    logger.warning("web: http://%s:%d/ (feeds at /feeds/rss.xml, subscribe at /subscribe)",
                   config.web.host, config.web.port)
    return thread


def run_forever(config: Config, *, serve: bool = False) -> None:
    scheduler = build_scheduler(config)
    if serve:
        serve_in_background(config)
    logger.warning("scheduler running (%d jobs); Ctrl-C stops", len(scheduler.get_jobs()))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=False)
