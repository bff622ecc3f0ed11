"""Webhook syndication against a real partner receiver on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from publisher import partnerlog, pipeline, syndication
from publisher.models import REPRINT
from publisher.schema import deliveries
from publisher.store import Store
from tests.support.partner import PartnerReceiver
from tests.support.syndication import SECRETS, T0, article, partner_toml, site_config


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)


class Site:
    """A config with webhook partners pointed at receivers on one loopback server."""

    def __init__(self, tmp_path, http_server, specs: dict[str, dict], database_url=None):
        self.receivers: dict[str, PartnerReceiver] = {}
        toml = ""
        for name, spec in specs.items():
            spec = dict(spec)
            env = spec.pop("secret_env", "PARTNER_A_SECRET")
            recv_opts = {k: spec.pop(k) for k in ("fail_first", "stall_first", "stall", "status")
                         if k in spec}
            recv = PartnerReceiver(SECRETS[env], path=f"/{name}/hook", **recv_opts)
            url = recv.install(http_server)
            self.receivers[name] = recv
            spec.setdefault("timeout", 2)
            spec.setdefault("retry_base_seconds", 0)
            toml += partner_toml(name, "webhook", url, env, **spec)
        self.config = site_config(tmp_path, toml, database_url=database_url)
        self.store = Store.open(self.config.storage.database_url)
        self.sleeps: list[float] = []

    def save(self, *articles, now=T0):
        for a in articles:
            self.store.save_article(a, now)

    def run(self, now=T0, **kw):
        kw.setdefault("sleep", self.sleeps.append)
        return syndication.run(self.config, self.store, now, **kw)

    def rows(self, partner=None):
        q = select(deliveries).order_by(deliveries.c.id)
        if partner:
            q = q.where(deliveries.c.partner == partner)
        with self.store.engine.connect() as conn:
            return conn.execute(q).all()


@pytest.fixture
def make_site(tmp_path, http_server):
    sites = []

    def make(specs, **kw):
        s = Site(tmp_path, http_server, specs, **kw)
        sites.append(s)
        return s
    yield make
    for s in sites:
        s.store.close()


def test_signed_payload_reaches_the_partner(make_site):
    site = make_site({"alpha": {}})
    site.save(article("a1"))
    report = site.run()
    assert (report.enqueued, report.delivered, report.dead) == (1, 1, 0)
    recv = site.receivers["alpha"]
    assert recv.rejected == []
    [d] = recv.accepted
    doc = d.doc
    assert set(doc) >= {"event", "id", "version", "title", "url", "author", "published", "updated",
                        "categories", "origin", "source", "summary", "html", "text",
                        "attribution", "terms_version"}
    assert (doc["event"], doc["id"], doc["version"]) == ("published", "a1", 1)
    assert doc["url"] == "https://news.example.com/a/a1.html"
    assert doc["categories"] == ["本地"] and doc["origin"] == "original" and doc["source"] is None
    assert "正文第一段" in doc["text"] and "正文第一段" in doc["html"]
    assert doc["attribution"]["credit"] == "来源:江城新闻网"
    assert doc["attribution"]["author"] == "杜才云"
    assert doc["terms_version"] == "2026-01"
    assert doc["published"] == "2026-11-20T09:00:00+08:00"
    assert d.headers["idempotency-key"] and d.headers["x-publisher-event"] == "published"


def test_wrong_secret_is_refused_by_the_partner_and_dead_lettered(make_site, monkeypatch):
    site = make_site({"alpha": {}})
    monkeypatch.setenv("PARTNER_A_SECRET", "not-the-shared-secret")
    site.save(article("a1"))
    report = site.run()
    assert report.dead == 1 and report.delivered == 0
    assert site.receivers["alpha"].rejected == ["bad signature"]
    [row] = site.rows()
    assert (row.status, row.last_status) == ("dead", 401)


def test_retries_with_backoff_in_one_run(make_site):
    site = make_site({"alpha": {"fail_first": 2, "retry_base_seconds": 0.5}})
    site.save(article("a1"))
    report = site.run()
    assert report.delivered == 1
    recv = site.receivers["alpha"]
    assert recv.attempts == 3 and len(recv.accepted) == 1
    assert site.sleeps == [0.5, 1.0]  # exponential
    [row] = site.rows()
    assert (row.status, row.attempts, row.last_status) == ("delivered", 3, 200)
    audit = partnerlog.audit_rows(site.store, "alpha")
    assert [r.response_status for r in audit] == [503, 503, 200]


def test_retries_across_runs_and_never_twice(make_site):
    site = make_site({"alpha": {"fail_first": 4}})
    site.save(article("a1"), article("a2", minutes=1))
    first = site.run()
    assert first.delivered == 0 and first.failed == 1 and first.skipped == 1  # partner down
    recv = site.receivers["alpha"]
    assert recv.attempts == 3
    assert site.run(T0 + timedelta(seconds=30)).delivered == 0  # backoff not over: no attempt
    assert recv.attempts == 3
    later = site.run(T0 + timedelta(minutes=5))
    assert later.delivered == 2
    assert sorted(i for _, i, _ in recv.events()) == ["a1", "a2"]
    for n in range(3):  # later runs send nothing again
        assert site.run(T0 + timedelta(hours=1 + n)).delivered == 0
    assert len(recv.accepted) == 2 and len(set(recv.keys())) == 2


def test_idempotency_key_is_stable_across_retries(make_site):
    site = make_site({"alpha": {"stall_first": 1, "stall": 0.6, "timeout": 0.2}})
    site.save(article("a1"))
    report = site.run()
    assert report.delivered == 1
    recv = site.receivers["alpha"]
    assert recv.attempts == 2 and len(recv.accepted) == 1
    from publisher.partners import idempotency_key

    assert recv.keys() == [idempotency_key("alpha", "a1", 1, "published")]
    audit = partnerlog.audit_rows(site.store, "alpha")
    assert audit[0].response_status is None and audit[0].detail.startswith("timeout")
    assert audit[1].response_status == 200


def test_dead_letter_after_the_deadline(make_site):
    site = make_site({"alpha": {"fail_first": 1000, "retry_deadline_minutes": 4}})
    site.save(article("a1"))
    assert site.run().failed == 1
    assert site.run(T0 + timedelta(minutes=1, seconds=1)).failed == 1  # next try at +3:01
    report = site.run(T0 + timedelta(minutes=4))  # the next one would be after the deadline
    assert report.dead == 1
    [row] = site.rows()
    assert (row.status, row.attempts, row.last_status) == ("dead", 9, 503)
    attempts = site.receivers["alpha"].attempts
    site.run(T0 + timedelta(hours=5))
    assert site.receivers["alpha"].attempts == attempts  # dead stays dead
    dead = [r for r in partnerlog.audit_rows(site.store, "alpha") if r.event == "dead"]
    assert len(dead) == 1 and "deadline" in dead[0].detail


def test_client_error_is_dead_at_once(make_site):
    site = make_site({"alpha": {"status": 410}})
    site.save(article("a1"))
    assert site.run().dead == 1
    assert site.receivers["alpha"].attempts == 1


def test_edit_sends_updated_with_higher_version(make_site):
    site = make_site({"alpha": {}})
    a = article("a1")
    site.save(a)
    site.run()
    site.save(a.evolve(title="更正后的标题", body_html="<p>更正后的正文。</p>"),
              now=T0 + timedelta(minutes=10))
    report = site.run(T0 + timedelta(minutes=11))
    assert report.delivered == 1
    recv = site.receivers["alpha"]
    assert recv.events() == [("published", "a1", 1), ("updated", "a1", 2)]
    assert recv.accepted[1].doc["title"] == "更正后的标题"
    assert "更正后的正文" in recv.accepted[1].doc["text"]
    assert site.run(T0 + timedelta(hours=2)).delivered == 0


def test_edit_before_delivery_supersedes_the_old_version(make_site):
    site = make_site({"alpha": {"fail_first": 3}})
    a = article("a1")
    site.save(a)
    site.run()  # three failures
    site.save(a.evolve(title="新标题"), now=T0 + timedelta(minutes=2))
    site.run(T0 + timedelta(minutes=3))
    recv = site.receivers["alpha"]
    assert recv.events() == [("published", "a1", 2)]
    assert [r.status for r in site.rows()] == ["superseded", "delivered"]


def test_licence_rules_per_partner(make_site):
    site = make_site({
        "all": {},
        "econ": {"categories": ["经济"], "full_text": False},
        "heads": {"reprints": "headline", "secret_env": "PARTNER_B_SECRET"},
        "late": {"embargo_minutes": 120},
    })
    site.save(article("local"), article("econ", category="经济"),
              article("wire", origin=REPRINT, category="经济",
                      body="<p>通讯社的全文不得转发。</p>"))
    site.run()
    got = {n: sorted(i for _, i, _ in r.events()) for n, r in site.receivers.items()}
    assert got == {"all": ["econ", "local"], "econ": ["econ"], "heads": ["econ", "local", "wire"],
                   "late": []}
    econ = site.receivers["econ"].accepted[0].doc
    assert "正文第一段" not in econ["html"] + econ["text"]
    assert econ["summary"] == "econ 的摘要" and econ["url"] in econ["html"]
    wire = next(d.doc for d in site.receivers["heads"].accepted if d.doc["id"] == "wire")
    assert wire["origin"] == "reprint" and wire["source"]["name"] == "新华社"
    assert wire["url"] == "https://xinhua.example.org/wire.htm"
    assert "通讯社的全文" not in wire["html"] + wire["text"] + wire["summary"]
    site.run(T0 + timedelta(minutes=61))  # embargo over for 'local' and 'econ'
    assert sorted(i for _, i, _ in site.receivers["late"].events()) == ["econ", "local"]


def test_withdrawal_reaches_exactly_the_partners_that_received_it(make_site):
    site = make_site({"alpha": {}, "beta": {"categories": ["体育"]},
                      "gamma": {"embargo_minutes": 600}})
    site.save(article("a1"))
    site.run()
    article_, _ = pipeline.withdraw(site.config, site.store, "a1", "版权方投诉",
                                    T0 + timedelta(minutes=5))
    assert article_.status == "withdrawn"
    alpha = site.receivers["alpha"]
    assert alpha.events() == [("published", "a1", 1), ("withdrawn", "a1", 1)]
    assert alpha.accepted[1].doc["reason"] == "版权方投诉"
    assert alpha.accepted[1].doc["text"] == "" and alpha.accepted[1].doc["html"] == ""
    assert site.receivers["beta"].accepted == [] and site.receivers["gamma"].accepted == []
    site.run(T0 + timedelta(hours=12))  # gamma's embargo is over, but the article is gone
    assert site.receivers["gamma"].accepted == []
    assert len(alpha.accepted) == 2
    events = [(r.partner, r.event) for r in partnerlog.audit_rows(site.store, article_id="a1")]
    assert ("", "withdraw") in events and ("alpha", "ack") in events
    assert not any(p in ("beta", "gamma") for p, _ in events)


def test_withdrawal_cancels_what_has_not_gone_out(make_site):
    site = make_site({"alpha": {"fail_first": 3}})
    site.save(article("a1"))
    site.run()
    pipeline.withdraw(site.config, site.store, "a1", "撤稿", T0 + timedelta(minutes=1))
    site.run(T0 + timedelta(hours=1))
    assert site.receivers["alpha"].accepted == []
    assert [r.status for r in site.rows()] == ["cancelled"]


def test_withdrawal_to_a_partner_that_is_down_is_retried(make_site):
    site = make_site({"alpha": {}})
    site.save(article("a1"))
    site.run()
    recv = site.receivers["alpha"]
    recv.fail_first, recv.attempts = 3, 0
    report = pipeline.withdraw(site.config, site.store, "a1", "投诉", T0 + timedelta(minutes=1))
    assert report  # (article, changed feeds)
    assert recv.events() == [("published", "a1", 1)]
    site.run(T0 + timedelta(minutes=3))
    assert recv.events()[-1] == ("withdrawn", "a1", 1)


def test_timed_out_delivery_counts_as_possibly_received(make_site):
    site = make_site({"alpha": {"stall_first": 1000, "stall": 0.5, "timeout": 0.2,
                                "attempts_per_run": 1}})
    site.save(article("a1"))
    site.run()
    recv = site.receivers["alpha"]
    recv.stall_first = 0
    pipeline.withdraw(site.config, site.store, "a1", "投诉", T0 + timedelta(minutes=1))
    assert recv.events() == [("withdrawn", "a1", 1)]


def test_enqueue_is_idempotent(make_site):
    site = make_site({"alpha": {}})
    site.save(article("a1"), article("a2"))
    assert syndication.enqueue(site.config, site.store, T0) == 2
    assert syndication.enqueue(site.config, site.store, T0) == 0
    assert len(site.rows()) == 2


def test_concurrent_workers_deliver_each_version_once(make_site):
    from concurrent.futures import ThreadPoolExecutor

    site = make_site({"alpha": {}})
    site.save(*[article(f"a{i}", minutes=i) for i in range(12)])
    syndication.enqueue(site.config, site.store, T0)
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(
            lambda _: syndication.deliver_pending(site.config, site.store, T0), range(4)))
    assert sum(r.delivered for r in reports) == 12
    keys = site.receivers["alpha"].keys()
    assert len(keys) == 12 and len(set(keys)) == 12


def test_missing_secret_is_an_error_not_an_unsigned_post(make_site, monkeypatch):
    site = make_site({"alpha": {}})
    monkeypatch.delenv("PARTNER_A_SECRET")
    site.save(article("a1"))
    report = site.run()
    assert report.delivered == 0 and report.failed == 1
    assert site.receivers["alpha"].attempts == 0
    [row] = site.rows()
    assert row.status == "pending" and "PARTNER_A_SECRET" in row.last_error


def test_deliver_pending_for_one_partner(make_site):
    site = make_site({"alpha": {}, "beta": {"secret_env": "PARTNER_B_SECRET"}})
    site.save(article("a1"))
    syndication.enqueue(site.config, site.store, T0)
    r = syndication.deliver_pending(site.config, site.store, T0, partner_name="beta")
    assert r.delivered == 1
    assert site.receivers["alpha"].accepted == [] and len(site.receivers["beta"].accepted) == 1


@pytest.mark.postgres
def test_on_postgresql_claims_skip_locked(tmp_path, http_server, pg_url):
    from concurrent.futures import ThreadPoolExecutor

    site = Site(tmp_path, http_server, {"alpha": {}}, database_url=pg_url)
    try:
        site.save(*[article(f"a{i}", minutes=i) for i in range(10)])
        syndication.enqueue(site.config, site.store, T0)
        with ThreadPoolExecutor(3) as pool:
            reports = list(pool.map(
                lambda _: syndication.deliver_pending(site.config, site.store, T0), range(3)))
        assert sum(r.delivered for r in reports) == 10
        assert len(set(site.receivers["alpha"].keys())) == len(site.receivers["alpha"].keys())
        pipeline.withdraw(site.config, site.store, "a3", "投诉", T0 + timedelta(minutes=1))
        assert site.receivers["alpha"].events()[-1] == ("withdrawn", "a3", 1)
    finally:
        site.store.close()


def test_audit_log_is_append_only(any_store, config):
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from publisher.schema import audit_log

    with any_store.engine.begin() as conn:
        partnerlog.audit(conn, T0, config, partner="alpha", article_id="a1", version=1,
                         event="published", response_status=200, detail="delivered")
    for stmt in (update(audit_log).values(detail="rewritten"), delete(audit_log)):
        with pytest.raises(DBAPIError, match="append-only"):
            with any_store.engine.begin() as conn:
                conn.execute(stmt)
    [row] = partnerlog.audit_rows(any_store, "alpha")
    assert row.detail == "delivered"


def test_migration_0006_downgrades_and_upgrades(tmp_path):
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import text

    import publisher.store as store_mod

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        cfg = AlembicConfig(str(__import__("pathlib").Path(store_mod.__file__)
                                .with_name("alembic.ini")))
        cfg.set_main_option("script_location",
                            str(__import__("pathlib").Path(store_mod.__file__)
                                .with_name("migrations")))

        def triggers():
            with store.engine.connect() as conn:
                return sorted(r[0] for r in conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE type='trigger'")))

        assert triggers() == ["audit_log_no_delete", "audit_log_no_update"]
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
        assert triggers() == []
        store_mod.migrate(store.engine)
        assert triggers() == ["audit_log_no_delete", "audit_log_no_update"]
    finally:
        store.close()


def test_in_process_dispatch_delivers_per_partner(make_site):
    """Without [queue], the scale-out dispatcher runs one delivery per partner in threads."""
    from publisher import tasks

    site = make_site({"alpha": {}, "beta": {"secret_env": "PARTNER_B_SECRET"}})
    site.save(article("d1"), article("d2", category="经济"))
    counts = tasks.dispatch_syndication(site.config, site.store, T0)
    assert counts["planned"] == 4 and counts["runs"] == 2
    for name in ("alpha", "beta"):
        got = sorted(d.doc["id"] for d in site.receivers[name].accepted)
        assert got == ["d1", "d2"], name
    again = tasks.dispatch_syndication(site.config, site.store, T0)
    assert again["planned"] == 0
    assert sum(len(r.accepted) for r in site.receivers.values()) == 4
