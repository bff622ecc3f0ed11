"""Helpers for the subscriber and web-page tests: sample articles and editions,
a Flask test client, CSRF tokens read from the pages, mail read from the outbox."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lxml import html as lxml_html

from publisher import editions
from publisher.models import Article
from publisher.web import create_app

NOW = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def sample_articles(image_base: str = "https://news.example.com") -> list[Article]:
    """Four articles in three categories, one a reprint, one with an image."""
    base = dict(body_html="<p>正文</p>")
    return [
        Article(id="local-metro", title="江城地铁三号线今日开通运营", url="https://news.example.com/local/metro",
                published=NOW - timedelta(hours=2), summary="全长 30 公里，设站 24 座，沿线居民出行更方便。",
                author="杜才云", category="本地", image=f"{image_base}/img/metro.png", **base),
        Article(id="local-park", title="滨江公园改造完工", url="https://news.example.com/local/park",
                published=NOW - timedelta(hours=4), summary="新增步道与儿童游乐区。", category="本地",
                **base),
        Article(id="econ-gdp", title="一季度经济数据发布", url="https://news.example.com/econ/gdp",
                published=NOW - timedelta(hours=3), summary="地区生产总值同比增长 5.2%。", category="经济",
                origin="reprint", source_name="新华社", source_url="https://xinhua.example/gdp", **base),
        Article(id="culture-opera", title="汉剧新编剧目首演", url="https://news.example.com/culture/opera",
                published=NOW - timedelta(hours=6), summary="座无虚席，掌声不断。", category="文化", **base),
    ]


def seed_edition(config, store, articles=None, now: datetime = NOW, digest: str = "daily"):
    """Save *articles* and compose (with no active subscribers: at once 'sent') an edition."""
    for a in articles if articles is not None else sample_articles():
        store.save_article(a, now)
    return editions.compose(config, store, config.digest(digest), now)


def client_for(config, store):
    app = create_app(config, store)
    app.testing = False  # errors become pages, as in production
    return app, app.test_client()


def csrf_from(page_text: str) -> str:
    doc = lxml_html.fromstring(page_text)
    return doc.xpath('//input[@name="csrf_token"]/@value')[0]


def get_csrf(client, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code)
    return csrf_from(r.get_data(as_text=True))


def outbox_messages(config) -> list[email.message.EmailMessage]:
    """Messages in the file transport's outbox, oldest first."""
    folder = Path(config.email.outbox_dir)
    files = sorted(folder.glob("*.eml"), key=lambda f: (f.stat().st_mtime_ns, f.name)) \
        if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def link_in(msg, path: str) -> str:
    """The first link to *path* in the plain-text part of *msg*."""
    text = msg.get_body(("plain",)).get_content()
    match = re.search(r"https?://[^\s<>)]+" + re.escape(path) + r"[^\s<>)]+", text)
    assert match, text
    return match.group(0)


def local_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def subscribe(client, email_addr: str, **fields):
    token = get_csrf(client, "/subscribe")
    data = {"csrf_token": token, "email": email_addr, "frequency": "daily", "script": "zh-hans"}
    data.update(fields)
    return client.post("/subscribe", data=data)
