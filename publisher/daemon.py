"""The daemon behind ``scheduler.py``: APScheduler 3 with a persistent job store.

Collection and feeds every few minutes, each digest on its cron in the site's
time zone, the outbox and partner queue every minute. Jobs coalesce and have a
misfire grace time, so a daemon that was down fires each missed job once.

Any number of daemons may run: they elect one leader (:mod:`publisher.leader`),
which alone fires jobs; the others wait as standbys and take over within
``[scheduler].leader_poll_seconds`` of the leader's database session ending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import jobs, leader, pipeline
from .config import Config

logger = logging.getLogger(__name__)


def build_scheduler(config: Config, scheduler_cls=BackgroundScheduler) -> BaseScheduler:
    """The jobs, not yet started (only the leader starts them)."""
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
    """Every job once, due or not, digests included (as of ``[demo].as_of`` when set)."""
    store = pipeline.open_store(config)
    try:
        if config.demo_as_of is not None:
            logger.warning("demo: this first cycle runs as of %s ([demo].as_of)",
                           config.demo_as_of.isoformat())
        return pipeline.cycle(config, store, config.demo_as_of, digests=True)
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


def run_forever(config: Config, *, serve: bool = False,
                first_cycle: Callable[[], object] | None = None,
                build: Callable[[Config], BaseScheduler] = build_scheduler,
                stop: threading.Event | None = None) -> None:
    """Wait to be the leader, then fire jobs for as long as the leadership lasts.

    *first_cycle* runs once, on first becoming leader; *stop* ends the loop
    (Ctrl-C does too).
    """
    stop = stop or threading.Event()
    if serve:
        serve_in_background(config)
    election = leader.election_for(config)
    poll = config.scheduler.leader_poll_seconds
    try:
        while leader.wait_for_leadership(election, poll, stop):
            logger.warning("leader: this scheduler fires the jobs")
            if first_cycle is not None:
                first_cycle()
                first_cycle = None
            _lead(config, election, build, poll, stop)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        election.release()


def _lead(config: Config, election: leader.Election, build: Callable[[Config], BaseScheduler],
          poll: float, stop: threading.Event) -> None:
    """Run the jobs until *stop* or until the leadership is lost."""
    scheduler = build(config)
    scheduler.start()
    logger.warning("scheduler running (%d jobs); Ctrl-C stops", len(scheduler.get_jobs()))
    try:
        while not stop.wait(poll):
            if not election.holds():
                logger.error("leadership lost (database session gone): jobs paused, standing by")
                break
    finally:
        scheduler.shutdown(wait=False)
