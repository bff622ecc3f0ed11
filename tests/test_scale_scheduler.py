"""Leader election: exactly one scheduler fires jobs; a standby takes over when
the leader dies (PostgreSQL advisory lock), and a file lock on SQLite."""

from __future__ import annotations

import threading

import psycopg
import pytest

from publisher import daemon, leader
from publisher.config import load_config
from tests.conftest import write_site
from tests.support.scale import scale_site, start_scheduler, wait_for


def _ticks(dsn: str) -> list[tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, pid FROM ticks ORDER BY id").fetchall()


@pytest.mark.postgres
def test_two_schedulers_one_killed_jobs_fire_once(tmp_path, pg_url):
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ticks (id serial PRIMARY KEY, pid int NOT NULL,"
                     " at timestamptz NOT NULL)")
    config_path = scale_site(tmp_path, pg_url, broker_url=None, prefix="", smtp_port=25,
                             poll=0.3)
    first = start_scheduler(config_path, pg_url, tmp_path / "s1.log")
    second = None
    try:
        wait_for(lambda: len(_ticks(dsn)) >= 2, timeout=30, what="the first leader's ticks")
        second = start_scheduler(config_path, pg_url, tmp_path / "s2.log")
        wait_for(lambda: "standby" in second.output(), timeout=30, what="the standby")
        seen = len(_ticks(dsn))
        wait_for(lambda: len(_ticks(dsn)) >= seen + 4, timeout=30, what="more ticks")
        assert {pid for _, pid in _ticks(dsn)} == {first.pid}
        first.kill()
        killed_at = max(i for i, _ in _ticks(dsn))
        # the standby takes over well within 30 s (it polls every 0.3 s here)
        wait_for(lambda: any(pid == second.pid for _, pid in _ticks(dsn)), timeout=30,
                 what="the standby to take over")
        wait_for(lambda: sum(pid == second.pid for _, pid in _ticks(dsn)) >= 3, timeout=30,
                 what="the new leader's ticks")
    finally:
        first.kill()
        if second:
            second.kill()
    rows = _ticks(dsn)
    assert {pid for _, pid in rows} == {first.pid, second.pid}
    # never both at once: every tick of the first precedes every tick of the second
    assert max(i for i, pid in rows if pid == first.pid) <= killed_at
    assert min(i for i, pid in rows if pid == second.pid) > killed_at
    assert "leader: this scheduler fires the jobs" in second.output()


@pytest.mark.postgres
def test_advisory_lock_election(pg_url):
    a, b = leader.PostgresElection(pg_url), leader.PostgresElection(pg_url)
    try:
        assert a.try_acquire() and a.holds()
        assert not b.try_acquire() and not b.holds()
        assert a.try_acquire()  # re-entrant for the holder
        a.release()
        assert not a.holds()
        assert b.try_acquire() and b.holds()
        # the leader's session killed from outside: it notices it lost the lead
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE"
                         " locktype = 'advisory' AND objid = %s AND database ="
                         " (SELECT oid FROM pg_database WHERE datname = current_database())",
                         (leader.LEADER_LOCK % (1 << 32),))
        assert not b.holds()
        assert a.try_acquire()
    finally:
        a.release()
        b.release()


def test_file_lock_election_on_sqlite(tmp_path):
    config = load_config(write_site(tmp_path))
    a, b = leader.election_for(config), leader.election_for(config)
    assert isinstance(a, leader.FileElection)
    try:
        assert a.try_acquire() and not b.try_acquire()
        a.release()
        assert b.try_acquire() and b.holds()
    finally:
        a.release()
        b.release()


def test_run_forever_waits_as_standby_then_leads(tmp_path):
    """In-process: a daemon blocked by another leader starts its jobs once that one goes."""
    config = load_config(write_site(tmp_path, "\n[scheduler]\nleader_poll_seconds = 0.05\n"))
    holder = leader.election_for(config)
    assert holder.try_acquire()
    started, stop, cycles = threading.Event(), threading.Event(), []

    def build(cfg):
        sched = daemon.build_scheduler(cfg)
        started.set()
        return sched

    thread = threading.Thread(target=daemon.run_forever, args=(config,), daemon=True,
                              kwargs={"build": build, "stop": stop,
                                      "first_cycle": lambda: cycles.append(1)})
    thread.start()
    try:
        assert not started.wait(0.5) and cycles == []  # standby while the lock is held
        holder.release()
        assert started.wait(10) and cycles == [1]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
