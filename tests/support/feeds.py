"""Helpers for the feed tests: articles, parsing every generated document."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
from lxml import etree

from publisher.models import REPRINT, Article

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "dc": "http://purl.org/dc/elements/1.1/",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "media": "http://search.yahoo.com/mrss/",
    "fh": "http://purl.org/syndication/history/1.0",
}
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def article(n: int, **kw) -> Article:
    """The *n*-th test article, published *n* hours after T0."""
    values = dict(
        id=f"a{n:05d}", title=f"第{n}条新闻：软件与头发", url=f"https://news.example.com/articles/a{n}",
        published=T0 + timedelta(hours=n),
        body_html=f'<p>正文{n}，<a href="/rel/{n}">相关</a> <img src="img/{n}.jpg" alt=""></p>',
        summary=f"摘要{n}", author="张三", category="本地")
    values.update(kw)
    return Article(**values)


def reprint(n: int, **kw) -> Article:
    kw.setdefault("origin", REPRINT)
    kw.setdefault("source_name", "新华社")
    kw.setdefault("source_url", f"https://xinhua.example.org/{n}.htm")
    return article(n, **kw)


def feed_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def parse_xml(path_or_bytes) -> etree._Element:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def parse_feed(data: bytes):
    """feedparser's view; fails the test when the document is not well formed (bozo)."""
    d = feedparser.parse(data)
    assert not d.bozo, f"bozo: {d.get('bozo_exception')!r}"
    return d


def entry_ids(path: Path) -> list[str]:
    """The article ids (tag: URIs) of a feed file of any format."""
    data = path.read_bytes()
    if path.suffix == ".json":
        return [i["id"] for i in json.loads(data)["items"]]
    root = parse_xml(data)
    if root.tag == "rss":
        return root.xpath("channel/item/guid/text()")
    return root.xpath("atom:entry/atom:id/text()", namespaces=NS)
