"""The command line and the daemon: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(site: Path, *args: str):
    result = CliRunner().invoke(main, ["--config", str(site), *args], catch_exceptions=False)
    return result


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env.update(extra)
    return env


def test_collect_feeds_status(site):
    r = run(site, "collect")
    assert r.exit_code == 0, r.output
    assert "new" in r.output
    r = run(site, "feeds")
    assert r.exit_code == 0 and "files changed" in r.output
    r = run(site, "status")
    assert r.exit_code == 0 and "local" in r.output


def test_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[site]\nname = 1\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "publisher.cli", "--config", str(bad), "collect"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1
    assert "site.url" in err or "site.name" in err


def test_missing_config_via_env(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "publisher.cli", "status"], capture_output=True,
                          text=True, timeout=60,
                          env=subprocess_env(PUBLISHER_CONFIG=str(tmp_path / "none.toml")))
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr
    assert str(tmp_path / "none.toml") in proc.stderr


def test_failure_exits_1(site):
    run(site, "collect")
    r = CliRunner().invoke(main, ["--config", str(site), "withdraw", "no-such-id", "--reason", "x"])
    assert r.exit_code == 1
    assert "no article with id 'no-such-id'" in r.output
    assert "Traceback" not in r.output


def test_verbose_shows_traceback(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("nonsense = [", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "publisher.cli", "--config", str(bad), "-v",
                           "collect"], capture_output=True, text=True, env=subprocess_env(),
                          timeout=60)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_usage_error_exits_2(site):
    r = CliRunner().invoke(main, ["--config", str(site), "digest", "--preview", "--send"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["--config", str(site), "no-such-verb"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["--config", str(site), "digest", "hourly"])
    assert r.exit_code == 2 and "hourly" in r.output


def test_subscribers_round_trip(site, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("email,name,frequency,categories,script,status\n"
                   "good@example.com,张三,daily,本地;经济,zh-hans,active\n"
                   "not-an-address,李四,daily,,zh-hans,active\n"
                   "w@example.com,王五,weekly,,zh-hant,active\n"
                   "x@example.com,赵六,hourly,,zh-hans,active\n", encoding="utf-8")
    r = run(site, "subscribers", "import", str(src))
    assert r.exit_code == 0, r.output
    assert "line 3" in r.output and "line 5" in r.output
    assert "2 added" in r.output
    r = run(site, "subscribers", "import", str(src))
    assert "0 added" in r.output and "2 unchanged" in r.output
    out = tmp_path / "out.csv"
    assert run(site, "subscribers", "export", "-o", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["email"] for r in rows] == ["good@example.com", "w@example.com"]
    assert rows[0]["categories"] == "本地;经济" and rows[1]["script"] == "zh-hant"
    assert run(site, "subscribers", "remove", "w@example.com").exit_code == 0
    r = run(site, "subscribers", "import", str(src))  # suppression wins over an import
    assert "1 suppressed" in r.output
    r = run(site, "subscribers", "add", "bad address")
    assert r.exit_code == 2


def test_digest_preview_writes_html(site):
    run(site, "collect")
    r = run(site, "digest", "daily", "--preview")
    assert r.exit_code == 0, r.output
    previews = list((site.parent / "var" / "preview").glob("*.html"))
    assert previews and "<html" in previews[0].read_text(encoding="utf-8")


def test_scheduler_once(site):
    proc = subprocess.run([sys.executable, str(ROOT / "scheduler.py"), "--once", "--config",
                           str(site)], capture_output=True, text=True, env=subprocess_env(),
                          timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert (site.parent / "feeds" / "rss.xml").is_file()
    assert "collect:" in proc.stdout


def test_scheduler_once_bad_config(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[site]\nname="x"\nurl="https://a.example"\n[email]\nfrom="a@a.example"\n'
                   'transport="carrier-pigeon"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, str(ROOT / "scheduler.py"), "--once", "--config",
                           str(bad)], capture_output=True, text=True, env=subprocess_env(),
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "email.transport" in proc.stderr and "Traceback" not in proc.stderr


def test_scheduler_jobs_persisted(config):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from publisher.daemon import build_scheduler
    from publisher.pipeline import open_store

    open_store(config).close()
    sched = build_scheduler(config, BackgroundScheduler)
    sched.start(paused=True)
    try:
        ids = {j.id for j in sched.get_jobs()}
        digest = sched.get_job("digest:daily")
        assert digest.coalesce is True and digest.misfire_grace_time == 600
        assert str(digest.trigger.timezone) == "Asia/Shanghai"
        assert digest.next_run_time.hour == 7
    finally:
        sched.shutdown(wait=False)
    assert {"collect", "send", "syndicate", "digest:daily", "digest:weekly"} <= ids
    # the jobs live in the database: a new job store sees them
    persisted = SQLAlchemyJobStore(url=config.storage.database_url)
    persisted.start(None, "default")
    assert {j.id for j in persisted.get_all_jobs()} >= ids
    persisted.shutdown()


def test_demo_first_cycle_runs_as_of_the_sample_date(tmp_path):
    """The shipped demo writes digests whatever day it is run: [demo].as_of."""
    from email import message_from_bytes
    from email.policy import default

    from publisher import daemon
    from publisher.config import load_config
    from tests.conftest import write_site

    site = write_site(tmp_path, f'\n[demo]\nsubscribers = "{ROOT / "demo" / "subscribers.csv"}"\n'
                                'as_of = "2026-11-26T22:00:00+08:00"\n')
    report = daemon.run_once(load_config(site))
    assert {e.key for e in report.editions} == {"daily-2026-11-26", "weekly-2026-11-26"}
    messages = [message_from_bytes(p.read_bytes(), policy=default)
                for p in (site.parent / "var" / "outbox").glob("*.eml")]
    assert len(messages) == 5  # every demo subscriber gets a digest
    assert all("2026-11-26" in str(m["Subject"]) for m in messages)
