"""The per-partner Atom feed: token-only, licensed content, never in feeds/."""

from __future__ import annotations

from datetime import timedelta

import feedparser
import pytest
from lxml import html as lxml_html

from publisher import feeds, partnerlog, pipeline
from publisher.models import REPRINT
from publisher.store import Store
from publisher.web import create_app
from tests.support.syndication import SECRETS, T0, article, partner_toml, site_config

TOKEN = SECRETS["PARTNER_F_SECRET"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    toml = (partner_toml("wire", "feed", secret_env="PARTNER_F_SECRET", categories=["本地", "经济"],
                         reprints="headline", full_text=False)
            + partner_toml("full", "feed", secret_env="PARTNER_B_SECRET")
            + partner_toml("hook", "webhook", "http://127.0.0.1:9/", "PARTNER_A_SECRET"))
    config = site_config(tmp_path, toml)
    store = Store.open(config.storage.database_url)
    for a in (article("local"), article("econ", category="经济", minutes=1),
              article("sport", category="体育", minutes=2),
              article("xinhua", origin=REPRINT, minutes=3, body="<p>通讯社全文不得转发。</p>")):
        store.save_article(a, T0)
    app = create_app(config, store)
    app.extensions["publisher.clock"] = lambda: T0
    yield config, store, app.test_client(), app
    store.close()


URL = "/partners/wire/atom.xml"


@pytest.mark.parametrize("headers,query", [
    ({}, ""), ({"Authorization": "Bearer wrong"}, ""), ({}, "?token=wrong"),
    ({"Authorization": f"Basic {TOKEN}"}, ""), ({"Authorization": "Bearer "}, ""),
    ({"Authorization": f"Bearer {SECRETS['PARTNER_B_SECRET']}"}, ""),  # another partner's token
])
def test_refused_without_the_partners_token(env, headers, query):
    _, _, client, _ = env
    resp = client.get(URL + query, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"<feed" not in resp.data


def test_unknown_and_non_feed_partners_are_401(env):
    _, _, client, _ = env
    assert client.get("/partners/nobody/atom.xml?token=x").status_code == 401
    hook = f"/partners/hook/atom.xml?token={SECRETS['PARTNER_A_SECRET']}"
    assert client.get(hook).status_code == 401


def test_licensed_content_with_the_token(env):
    config, _, client, _ = env
    for resp in (client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"}),
                 client.get(f"{URL}?token={TOKEN}")):
        assert resp.status_code == 200
        assert resp.mimetype == "application/atom+xml"
        assert "private" in resp.headers["Cache-Control"]
        parsed = feedparser.parse(resp.data)
        assert not parsed.bozo, parsed.get("bozo_exception")
        ids = [e.id.rsplit(":", 1)[1] for e in parsed.entries]
        assert ids == ["xinhua", "econ", "local"]  # no 体育, newest first
        by_id = {e.id.rsplit(":", 1)[1]: e for e in parsed.entries}
        local = lxml_html.fragment_fromstring(by_id["local"].content[0].value, create_parent="div")
        text = local.text_content()
        assert "正文第一段" not in text  # full_text = false: summary + link
        assert "local 的摘要" in text
        assert f"来源:{config.site.name}" in text and "作者:杜才云" in text
        assert "https://news.example.com/a/local.html" in local.xpath("//a/@href")
        wire = by_id["xinhua"]
        assert wire.link == "https://xinhua.example.org/xinhua.htm"
        assert "通讯社全文" not in wire.content[0].value + wire.get("summary", "")
        assert "来源:新华社" in wire.content[0].value
        assert "2026-01" in parsed.feed.rights


def test_full_text_partner_gets_originals_only(env):
    _, _, client, _ = env
    resp = client.get("/partners/full/atom.xml",
                      headers={"Authorization": f"Bearer {SECRETS['PARTNER_B_SECRET']}"})
    parsed = feedparser.parse(resp.data)
    ids = sorted(e.id.rsplit(":", 1)[1] for e in parsed.entries)
    assert ids == ["econ", "local", "sport"]  # reprints excluded by default
    assert "正文第一段" in parsed.entries[0].content[0].value


def test_never_written_into_public_feeds(env):
    config, store, client, _ = env
    feeds.build_all(config, store, T0)
    client.get(f"{URL}?token={TOKEN}")
    written = [p.relative_to(config.feeds.output_dir).as_posix()
               for p in config.feeds.output_dir.rglob("*") if p.is_file()]
    assert written and not any("partner" in w for w in written)
    for p in config.feeds.output_dir.rglob("*.xml"):
        assert TOKEN not in p.read_text(encoding="utf-8")


def test_fetch_is_audited_once_per_version_and_withdrawal_drops_the_entry(env):
    config, store, client, app = env
    client.get(f"{URL}?token={TOKEN}")
    client.get(f"{URL}?token={TOKEN}")
    rows = partnerlog.audit_rows(store, "wire")
    assert sorted((r.article_id, r.event, r.response_status) for r in rows) == [
        ("econ", "published", 200), ("local", "published", 200), ("xinhua", "published", 200)]
    pipeline.withdraw(config, store, "local", "投诉", T0 + timedelta(minutes=1))
    parsed = feedparser.parse(client.get(f"{URL}?token={TOKEN}").data)
    assert "local" not in [e.id.rsplit(":", 1)[1] for e in parsed.entries]
    events = [(r.article_id, r.event) for r in partnerlog.audit_rows(store, "wire")]
    assert ("local", "withdrawn") in events
    full_events = [(r.article_id, r.event) for r in partnerlog.audit_rows(store, "full")]
    assert full_events == []  # 'full' never fetched: nothing to withdraw there


def test_conditional_get(env):
    _, _, client, _ = env
    first = client.get(f"{URL}?token={TOKEN}")
    again = client.get(f"{URL}?token={TOKEN}", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_embargo_in_the_feed(tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    config = site_config(tmp_path, partner_toml("late", "feed", secret_env="PARTNER_F_SECRET",
                                                 embargo_minutes=90))
    store = Store.open(config.storage.database_url)
    try:
        store.save_article(article("a"), T0)
        app = create_app(config, store)
        client = app.test_client()
        app.extensions["publisher.clock"] = lambda: T0
        assert feedparser.parse(client.get(f"/partners/late/atom.xml?token={TOKEN}").data).entries == []
        app.extensions["publisher.clock"] = lambda: T0 + timedelta(minutes=31)
        parsed = feedparser.parse(client.get(f"/partners/late/atom.xml?token={TOKEN}").data)
        assert len(parsed.entries) == 1
    finally:
        store.close()
