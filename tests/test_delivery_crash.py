"""Kill a real send with SIGKILL mid-run, several times, resume, and count at the server:
nobody lost, duplicates within one message per connection per crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from publisher.schema import outbox
from publisher.store import Store
from tests.conftest import ROOT
from tests.support.delivery import edition, smtp_site
from tests.support.smtpserver import Handler, SMTPServer

CONNECTIONS = 3
KILLS = (60, 160, 260)
N = 400

pytestmark = pytest.mark.slow


def run_send(config_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PUBLISHER_SECRET_KEY="crash-test-key")
    return subprocess.Popen([sys.executable, "-m", "publisher.cli", "--config", str(config_path),
                             "send"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(server, count, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while len(server.received) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.005)


def test_sigkill_mid_send_loses_nobody(tmp_path):
    emails = [f"reader{i}@example.com" for i in range(N)]
    with SMTPServer(Handler(delay=0.003)) as server:
        config = smtp_site(tmp_path, server.port, connections=CONNECTIONS)
        store = Store.open(config.storage.database_url)
        edition(config, store, emails)
        for at in KILLS:
            proc = run_send(config.path)
            wait_for(server, at, proc)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL
        assert len(server.received) < N  # every kill came mid-run
        proc = run_send(config.path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        counts = server.handler.counts()
    assert sorted(counts) == sorted(emails)  # nobody lost
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= CONNECTIONS * len(KILLS)
    with store.engine.connect() as conn:
        statuses = dict(conn.execute(select(outbox.c.status, func.count())
                                     .group_by(outbox.c.status)).all())
    assert statuses == {"sent": N}
    assert b"sent" in out
    store.close()
