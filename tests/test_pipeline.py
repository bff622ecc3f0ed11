"""The whole path on the embedded default: sample content → store → feeds → digests → .eml.

Everything generated is parsed back with an independent client (feedparser,
lxml, email.parser) and asserted on what was parsed.
"""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest
from lxml import etree
from lxml import html as lxml_html

from publisher import pipeline, subscribers
from publisher.store import Store

NOW = datetime(2026, 11, 26, 22, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def ran(config):
    store = pipeline.open_store(config)
    for email, cats, script, freq in [("a@example.com", "", "zh-hans", "daily"),
                                      ("b@example.com", "文化;体育", "zh-hant", "daily"),
                                      ("c@example.com", "", "zh-hans", "weekly")]:
        subscribers.upsert(store, email, name="读者", categories=subscribers.parse_categories(cats),
                           script=script, frequency=freq)
    report = pipeline.cycle(config, store, NOW, digests=True)
    yield config, store, report
    store.close()


def emls(config) -> list:
    return [message_from_bytes(p.read_bytes(), policy=default)
            for p in sorted(Path(config.email.outbox_dir).glob("*.eml"))]


def test_collect_stores_sample_site(ran):
    config, store, report = ran
    counts = report.collected.counts
    assert counts["new"] >= 12
    assert counts["duplicate"] >= 1  # the same story shipped twice is stored once
    assert not report.collected.errors
    articles = store.published_articles(NOW)
    assert len({a.category for a in articles}) >= 3
    assert any(a.is_reprint and a.source_name for a in articles)
    assert all(a.published <= NOW for a in articles)  # future-dated not yet published
    assert not any("草稿" in a.title for a in articles)


def test_contract_feed_paths_exist_and_parse(ran):
    config, store, _ = ran
    out = config.feeds.output_dir
    paths = ["rss.xml", "atom.xml", "feed.json", "zh-hant/rss.xml", "zh-hant/atom.xml",
             "zh-hant/feed.json"]
    for slug in ("bendi", "jingji", "wenhua", "tiyu"):
        paths += [f"category/{slug}/rss.xml", f"category/{slug}/atom.xml",
                  f"zh-hant/category/{slug}/rss.xml", f"zh-hant/category/{slug}/atom.xml"]
    for rel in paths:
        assert (out / rel).is_file(), rel
        if rel.endswith(".xml"):
            parsed = feedparser.parse((out / rel).read_bytes())
            assert not parsed.bozo, (rel, parsed.get("bozo_exception"))
            assert parsed.entries, rel
            etree.fromstring((out / rel).read_bytes())  # well-formed to lxml too


def test_feed_entries_are_complete(ran):
    config, store, _ = ran
    parsed = feedparser.parse((config.feeds.output_dir / "atom.xml").read_bytes())
    ids = [e.id for e in parsed.entries]
    assert len(ids) == len(set(ids))
    for e in parsed.entries:
        assert e.link.startswith("https://news.example.com/")
        assert e.get("author")
        assert e.published_parsed and e.updated_parsed
    rss = feedparser.parse((config.feeds.output_dir / "rss.xml").read_bytes())
    reprints = [e for e in rss.entries if e.get("source")]
    assert reprints, "reprints carry <source>"
    assert all(e.source.get("title") for e in reprints)


def test_traditional_feeds_are_converted(ran):
    config, _, _ = ran
    hans = feedparser.parse((config.feeds.output_dir / "rss.xml").read_bytes())
    hant = feedparser.parse((config.feeds.output_dir / "zh-hant" / "rss.xml").read_bytes())
    assert len(hans.entries) == len(hant.entries)
    assert [e.id for e in hans.entries] == [e.id for e in hant.entries]
    assert any(a.title != b.title for a, b in zip(hans.entries, hant.entries, strict=True))


def test_digests_written_as_eml(ran):
    config, _, report = ran
    assert {e.digest for e in report.editions} == {"daily", "weekly"}
    messages = emls(config)
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in messages) == \
        ["a@example.com", "b@example.com", "c@example.com"]
    for m in messages:
        assert m.get_content_type() == "multipart/alternative"
        text, html = [p for p in m.iter_parts()]
        assert text.get_content_type() == "text/plain"
        assert html.get_content_type() == "text/html"
        subject = str(make_header(decode_header(m["Subject"])))
        assert ("江城新聞網" if m["To"].addresses[0].username == "b" else "江城新闻网") in subject
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert m["Message-ID"].endswith("@news.example.com>")


def test_digest_html_is_inlined_with_footer(ran):
    config, _, _ = ran
    m = next(m for m in emls(config) if m["To"].addresses[0].addr_spec == "a@example.com")
    body = m.get_body(("html",)).get_content()
    doc = lxml_html.fromstring(body)
    styles = doc.xpath("//style")
    assert all("@media" in s.text_content() for s in styles)
    assert doc.xpath("//td[@style]"), "CSS is inlined"
    text = doc.text_content()
    assert "凡本网注明" in text  # the [rights] disclaimer
    assert "来源" in text  # reprints labelled with their source
    links = doc.xpath("//a/@href")
    assert all(h.startswith(("https://news.example.com", "https://", "mailto:")) for h in links)
    assert any("/unsubscribe/" in h for h in links)
    assert any("/preferences/" in h for h in links)
    plain = m.get_body(("plain",)).get_content()
    assert "https://news.example.com/articles/" in plain


def test_subscriber_gets_only_chosen_categories_and_script(ran):
    config, store, _ = ran
    m = next(m for m in emls(config) if m["To"].addresses[0].addr_spec == "b@example.com")
    body = m.get_body(("html",)).get_content()
    doc = lxml_html.fromstring(body)
    cats = [c.text_content().strip() for c in doc.xpath("//*[@class='category']")]
    assert cats and set(cats) <= {"文化", "體育"}
    assert "體育" in cats or "文化" in cats


def test_second_cycle_sends_nothing_again(ran):
    config, store, _ = ran
    before = len(emls(config))
    report = pipeline.cycle(config, store, NOW, digests=True)
    assert report.collected.counts["new"] == 0
    assert report.feeds_changed == []
    assert len(emls(config)) == before


def test_withdraw_removes_from_feeds(ran):
    config, store, _ = ran
    victim = store.published_articles(NOW)[0]
    pipeline.withdraw(config, store, victim.id, "版权投诉", NOW)
    for rel in ("rss.xml", "atom.xml", "zh-hant/rss.xml"):
        parsed = feedparser.parse((config.feeds.output_dir / rel).read_bytes())
        assert victim.url not in [e.link for e in parsed.entries]


def test_same_pipeline_on_postgresql(tmp_path, pg_url):
    from publisher.config import load_config
    from tests.conftest import write_site

    config = load_config(write_site(tmp_path, database_url=pg_url))
    store = pipeline.open_store(config)
    subscribers.upsert(store, "pg@example.com")
    report = pipeline.cycle(config, store, NOW, digests=True)
    assert report.collected.counts["new"] >= 12
    assert report.sent.counts["sent"] >= 1
    assert isinstance(store, Store)
    store.close()
