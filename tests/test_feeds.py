"""Feeds built from a store: validity to the letter, paths, scripts, incremental
builds, RFC 5005 archives and withdrawal. Every document is parsed back with
feedparser (no bozo) and lxml, and checked against rules the W3C Feed
Validation Service applies."""

from __future__ import annotations

import json
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import feedparser
import lxml.html
import pytest

from publisher import feedformats, feeds, pipeline
from publisher.collect import collect
from publisher.config import load_config
from publisher.feedformats import FeedMeta
from publisher.slugs import category_slugs, slugify
from publisher.store import Store
from tests.conftest import write_site
from tests.support.feeds import (
    NS,
    T0,
    article,
    entry_ids,
    feed_files,
    parse_feed,
    parse_xml,
    reprint,
)

SITE = "https://news.example.com"
NOW = datetime(2027, 1, 1, tzinfo=T0.tzinfo)
CONTRACT = ["rss.xml", "atom.xml", "feed.json"]


@pytest.fixture
def small(tmp_path):
    """A site with no content, 5 items per feed and archive pages of 4."""
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_site(tmp_path, content=empty)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "max_items = 50", "max_items = 5\narchive_size = 4"), encoding="utf-8")
    config = load_config(path)
    store = Store.open(config.storage.database_url)
    yield config, store
    store.close()


def add(store, *articles):
    for a in articles:
        store.save_article(a, now=a.published)


# ------------------------------------------------------------ validators

def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def check_html(html: str) -> None:
    """Content a validator accepts: no script, no handlers, only absolute URLs."""
    if not html.strip():
        return
    doc = lxml.html.fragment_fromstring(html, create_parent="div")
    assert not doc.xpath("//script|//style|//iframe|//object|//embed")
    for el in doc.iter():
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), name
            if name in ("href", "src"):
                assert _absolute(value) or value.startswith("mailto:"), value


def check_rss(root, self_url: str, config) -> None:
    assert root.tag == "rss" and root.get("version") == "2.0"
    ch = root.find("channel")
    assert ch.findtext("title").strip() and ch.findtext("description").strip()
    assert ch.findtext("link") == SITE + "/"
    (me,) = ch.xpath("atom:link[@rel='self']", namespaces=NS)
    assert me.get("href") == self_url and me.get("type") == "application/rss+xml"
    assert ch.findtext("language") in ("zh-cn", "zh-tw")
    assert ch.findtext("copyright") == "© 江城新闻网" or "江城新聞網" in ch.findtext("copyright")
    assert parsedate_to_datetime(ch.findtext("lastBuildDate")).tzinfo is not None
    for item in ch.findall("item"):
        assert item.findtext("title").strip()
        assert _absolute(item.findtext("link"))
        guid = item.find("guid")
        assert guid.get("isPermaLink") == "false" and guid.text.startswith("tag:news.example.com,")
        assert parsedate_to_datetime(item.findtext("pubDate")).tzinfo is not None
        assert item.findtext("dc:creator", namespaces=NS).strip()
        assert item.find("author") is None  # RSS <author> must be an email address
        check_html(item.findtext("content:encoded", namespaces=NS))
        for enc in item.findall("enclosure"):
            assert int(enc.get("length")) > 0 and "/" in enc.get("type")
            assert _absolute(enc.get("url"))
        src = item.find("source")
        if src is not None:
            assert _absolute(src.get("url")) and src.text.strip()
            body = item.findtext("content:encoded", namespaces=NS)
            assert "来源" in body or "來源" in body
        assert len(item.findall("enclosure")) <= 1


def _rfc3339(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text), text
    return datetime.fromisoformat(text)


def check_atom(root, self_url: str) -> None:
    atom = "{http://www.w3.org/2005/Atom}"
    assert root.tag == atom + "feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") in ("zh-CN", "zh-TW")
    assert root.findtext(atom + "id") and root.findtext(atom + "title").strip()
    _rfc3339(root.findtext(atom + "updated"))
    assert root.xpath("atom:author/atom:name/text()", namespaces=NS)
    assert root.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [self_url]
    assert root.xpath("atom:link[@rel='alternate']/@href", namespaces=NS) == [SITE + "/"]
    assert root.findtext(atom + "rights")
    for e in root.findall(atom + "entry"):
        assert e.findtext(atom + "id").startswith("tag:")
        assert e.findtext(atom + "title").strip()
        assert _rfc3339(e.findtext(atom + "updated")) >= _rfc3339(e.findtext(atom + "published"))
        assert e.xpath("atom:author/atom:name/text()", namespaces=NS)
        alt = e.xpath("atom:link[@rel='alternate']/@href", namespaces=NS)
        assert len(alt) == 1 and _absolute(alt[0])
        assert e.find(atom + "content").get("type") == "html"
        check_html(e.findtext(atom + "content"))
        assert e.findtext(atom + "summary").strip()


def check_json(doc: dict, self_url: str) -> None:
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] and doc["feed_url"] == self_url and doc["home_page_url"] == SITE + "/"
    for item in doc["items"]:
        assert isinstance(item["id"], str) and item["id"].startswith("tag:")
        assert _absolute(item["url"]) and item["content_html"]
        _rfc3339(item["date_published"])
        _rfc3339(item["date_modified"])
        assert item["authors"][0]["name"]
        check_html(item["content_html"])


def check_all(config) -> dict[str, object]:
    """Validate every file under feeds/; return the parsed documents."""
    out = {}
    root = config.feeds.output_dir
    for rel, path in feed_files(root).items():
        data = path.read_bytes()
        url = f"{SITE}/feeds/{rel}"
        if rel.endswith(".json"):  # feedparser 6 reads XML feeds only
            doc = json.loads(data)
            check_json(doc, url)
        else:
            parsed = parse_feed(data)
            doc = parse_xml(data)
            (check_rss(doc, url, config) if path.name.startswith("rss") else check_atom(doc, url))
            assert parsed.version in ("rss20", "atom10")
        out[rel] = doc
    return out


# ----------------------------------------------------------------- tests

def test_sample_site_feeds_are_valid_and_complete(config, store):
    collect(config, store, NOW)
    feeds.build_all(config, store, NOW)
    docs = check_all(config)
    for base in ("", "zh-hant/"):
        for name in CONTRACT:
            assert base + name in docs
        for slug in ("bendi", "jingji", "wenhua", "tiyu"):
            for name in ("rss.xml", "atom.xml"):
                assert f"{base}category/{slug}/{name}" in docs
    assert all(rel.isascii() for rel in docs)
    published = store.published_articles(NOW)
    rss = docs["rss.xml"].find("channel")
    assert len(rss.findall("item")) == min(len(published), config.feeds.max_items)
    reprints = [a for a in published if a.is_reprint]
    assert reprints, "the sample content has reprints"
    by_guid = {i.findtext("guid"): i for i in rss.findall("item")}
    for a in reprints:
        item = by_guid[feeds.entry_id(SITE, a)]
        assert item.find("source").get("url")
        assert config.rights.disclaimer[:10] in item.findtext("content:encoded", namespaces=NS)


def test_channel_link_is_the_site_and_self_link_the_feed(small):
    config, store = small
    add(store, article(1))
    feeds.build_all(config, store, NOW)
    d = parse_feed((config.feeds.output_dir / "rss.xml").read_bytes())
    assert d.feed.link == SITE + "/"
    links = {ln.rel: ln.href for ln in d.feed.links}
    assert links["self"] == SITE + "/feeds/rss.xml"
    atom = parse_feed((config.feeds.output_dir / "atom.xml").read_bytes())
    assert atom.feed.language == "zh-CN" and atom.feed.rights == "© 江城新闻网"
    assert atom.entries[0].author == "张三"
    assert atom.entries[0].link == "https://news.example.com/articles/a1"


def test_content_urls_are_absolute_and_scripts_removed(small):
    config, store = small
    add(store, article(1, body_html='<p onclick="x()">文<script>alert(1)</script>'
                                    '<a href="../x">链接</a><img src="/i.png" alt=""></p>'))
    feeds.build_all(config, store, NOW)
    docs = check_all(config)
    (item,) = docs["rss.xml"].find("channel").findall("item")
    body = item.findtext("content:encoded", namespaces=NS)
    html = lxml.html.fragment_fromstring(body, create_parent="div")
    assert html.xpath("//a/@href") == ["https://news.example.com/x"]
    assert html.xpath("//img/@src") == ["https://news.example.com/i.png"]
    assert "alert" not in body


def test_enclosure_only_with_known_length_media_content_always(small):
    config, store = small
    add(store, article(1, image="https://img.example.com/1.jpg", image_type="image/jpeg",
                       image_length=12345),
        article(2, image="/pics/2.png"))
    feeds.build_all(config, store, NOW)
    ch = parse_xml(config.feeds.output_dir / "rss.xml").find("channel")
    items = {i.findtext("guid").rsplit(":", 1)[1]: i for i in ch.findall("item")}
    enc = items["a00001"].find("enclosure")
    assert (enc.get("url"), enc.get("length"), enc.get("type")) == (
        "https://img.example.com/1.jpg", "12345", "image/jpeg")
    assert items["a00002"].find("enclosure") is None
    (media,) = items["a00002"].xpath("media:content", namespaces=NS)
    assert media.get("url") == "https://news.example.com/pics/2.png"
    assert media.get("type") == "image/png"
    atom = parse_feed((config.feeds.output_dir / "atom.xml").read_bytes())
    encl = {e.id: e.enclosures for e in atom.entries}
    assert encl[feedformats.entry_id(SITE, "a00001")][0]["length"] == "12345"


def test_reprint_carries_source_and_disclaimer_everywhere(small):
    config, store = small
    add(store, reprint(1))
    feeds.build_all(config, store, NOW)
    check_all(config)
    out = config.feeds.output_dir
    item = parse_xml(out / "rss.xml").find("channel/item")
    assert item.find("source").get("url") == "https://xinhua.example.org/1.htm"
    assert item.find("source").text == "新华社"
    entry = parse_feed((out / "atom.xml").read_bytes()).entries[0]
    via = [ln.href for ln in entry.links if ln.rel == "via"]
    assert via == ["https://xinhua.example.org/1.htm"]
    assert config.rights.disclaimer in entry.content[0].value
    item = json.loads((out / "feed.json").read_bytes())["items"][0]
    assert item["external_url"] == "https://xinhua.example.org/1.htm"
    assert item["_source"]["name"] == "新华社"
    hant = parse_xml(out / "zh-hant/rss.xml").find("channel/item")
    assert hant.find("source").text == "新華社"


def test_traditional_copies_convert_text_not_urls(small):
    config, store = small
    add(store, article(1, category="国际"))
    feeds.build_all(config, store, NOW)
    out = config.feeds.output_dir
    hans = parse_feed((out / "atom.xml").read_bytes())
    hant = parse_feed((out / "zh-hant/atom.xml").read_bytes())
    assert hans.entries[0].title == "第1条新闻：软件与头发"
    assert hant.entries[0].title == "第1條新聞：軟體與頭髮"
    assert hant.feed.language == "zh-TW" and hant.feed.title == "江城新聞網"
    assert hant.entries[0].id == hans.entries[0].id
    assert "/rel/1" in hant.entries[0].content[0].value
    assert (out / "category/guoji/rss.xml").is_file()
    assert (out / "zh-hant/category/guoji/atom.xml").is_file()
    hant_cat = parse_feed((out / "zh-hant/category/guoji/rss.xml").read_bytes())
    assert hant_cat.feed.title.endswith("國際")


def test_entry_id_is_stable_across_edits(small):
    config, store = small
    add(store, article(1))
    feeds.build_all(config, store, NOW)
    before = entry_ids(config.feeds.output_dir / "atom.xml")
    store.save_article(article(1, title="更正后的标题", url="https://news.example.com/new"), NOW)
    changed = feeds.build_all(config, store, NOW)
    assert "atom.xml" in changed
    d = parse_feed((config.feeds.output_dir / "atom.xml").read_bytes())
    assert [e.id for e in d.entries] == before and d.entries[0].title == "更正后的标题"


def test_max_items_newest_first(small):
    config, store = small
    add(store, *(article(n) for n in range(1, 9)))
    feeds.build_all(config, store, NOW)
    ids = entry_ids(config.feeds.output_dir / "rss.xml")
    assert ids == [feedformats.entry_id(SITE, f"a{n:05d}") for n in range(8, 3, -1)]


def test_no_change_rebuild_renders_and_writes_nothing(small, monkeypatch):
    config, store = small
    add(store, *(article(n, category="本地" if n % 2 else "经济") for n in range(1, 12)))
    first = feeds.build_all(config, store, NOW)
    assert first
    stamps = {rel: p.stat().st_mtime_ns for rel, p in feed_files(config.feeds.output_dir).items()}

    def boom(*a, **k):
        raise AssertionError("rendered although nothing changed")

    monkeypatch.setattr(feedformats, "render", boom)
    assert feeds.build_all(config, store, NOW) == []
    after = {rel: p.stat().st_mtime_ns for rel, p in feed_files(config.feeds.output_dir).items()}
    assert after == stamps


def test_changed_article_rewrites_only_its_feeds(small):
    config, store = small
    add(store, *(article(n, category="本地" if n % 2 else "经济") for n in range(1, 12)))
    feeds.build_all(config, store, NOW)
    files = feed_files(config.feeds.output_dir)
    before = {rel: p.read_bytes() for rel, p in files.items()}
    store.save_article(article(3, title="新标题", category="本地"), NOW)  # in page 1 of 3
    changed = set(feeds.build_all(config, store, NOW))
    actually = {rel for rel, p in files.items() if p.read_bytes() != before[rel]}
    assert changed == actually
    expected_some = {"archive/atom-1.xml", "zh-hant/archive/rss-1.xml",
                     "category/bendi/archive/atom-1.xml"}
    assert expected_some <= changed
    assert not any("jingji" in rel for rel in changed)
    assert "rss.xml" not in changed  # a3 is not among the 5 newest
    assert not any(rel.endswith(("-2.xml", "-3.xml")) for rel in changed)


def test_archives_let_a_reader_walk_the_whole_history(small):
    config, store = small
    add(store, *(article(n) for n in range(1, 12)))
    feeds.build_all(config, store, NOW)
    out = config.feeds.output_dir
    for fmt, main in (("atom", "atom.xml"), ("rss", "rss.xml")):
        seen, url, pages = set(entry_ids(out / main)), None, 0
        doc = parse_feed((out / main).read_bytes())
        url = next(ln.href for ln in doc.feed.links if ln.rel == "prev-archive")
        while url and pages < 10:
            rel = url.removeprefix(SITE + "/feeds/")
            root = parse_xml(out / rel)
            head = root if fmt == "atom" else root.find("channel")
            assert head.find("fh:archive", namespaces=NS) is not None
            current = head.xpath("atom:link[@rel='current']/@href", namespaces=NS)
            assert current == [f"{SITE}/feeds/{main}"]
            seen |= set(entry_ids(out / rel))
            prev = head.xpath("atom:link[@rel='prev-archive']/@href", namespaces=NS)
            url, pages = (prev[0] if prev else None), pages + 1
        assert pages == 3
        assert seen == {feedformats.entry_id(SITE, f"a{n:05d}") for n in range(1, 12)}
    assert parse_xml(out / "atom.xml").find("fh:archive", namespaces=NS) is None


def test_complete_archive_pages_stay_unchanged(small):
    config, store = small
    add(store, *(article(n) for n in range(1, 12)))  # pages: 4, 4, 3
    feeds.build_all(config, store, NOW)
    out = config.feeds.output_dir
    page = {n: (out / f"archive/atom-{n}.xml").read_bytes() for n in (1, 2, 3)}
    add(store, article(12))  # page 3 fills up
    changed = feeds.build_all(config, store, NOW)
    assert "archive/atom-3.xml" in changed and "archive/atom-2.xml" not in changed
    add(store, article(13))  # page 4 starts; page 3 gains its next-archive link
    changed = feeds.build_all(config, store, NOW)
    assert (out / "archive/atom-4.xml").is_file()
    assert (out / "archive/atom-1.xml").read_bytes() == page[1]
    assert (out / "archive/atom-2.xml").read_bytes() == page[2]
    assert not {"archive/atom-1.xml", "archive/atom-2.xml"} & set(changed)


def test_withdrawn_article_leaves_every_feed(small):
    config, store = small
    add(store, *(article(n) for n in range(1, 8)), article(8, category="体育"))
    feeds.build_all(config, store, NOW)
    gone = feedformats.entry_id(SITE, "a00008")
    _, changed = pipeline.withdraw(config, store, "a00008", "complaint", NOW)
    assert "category/tiyu/rss.xml" in changed and "zh-hant/feed.json" in changed
    for rel, path in feed_files(config.feeds.output_dir).items():
        assert gone not in entry_ids(path), rel
        assert "a00008" not in path.read_text(encoding="utf-8"), rel
    assert entry_ids(config.feeds.output_dir / "category/tiyu/atom.xml") == []
    check_all(config)
    assert entry_ids(config.feeds.output_dir / "rss.xml")[0] == feedformats.entry_id(SITE, "a00007")


def test_stale_category_files_are_removed(small):
    config, store = small
    add(store, article(1, category="体育"))
    feeds.build_all(config, store, NOW)
    assert (config.feeds.output_dir / "category/tiyu/rss.xml").is_file()
    store.save_article(article(1, category="经济", title="改类"), NOW)
    changed = feeds.build_all(config, store, NOW)
    assert "category/tiyu/rss.xml" in changed
    assert not (config.feeds.output_dir / "category/tiyu/rss.xml").exists()
    assert entry_ids(config.feeds.output_dir / "category/jingji/rss.xml")


def test_missing_file_is_rebuilt(small):
    config, store = small
    add(store, article(1))
    feeds.build_all(config, store, NOW)
    (config.feeds.output_dir / "zh-hant/atom.xml").unlink()
    assert feeds.build_all(config, store, NOW) == ["zh-hant/atom.xml"]


def test_category_slugs_are_ascii_stable_and_unique(config):
    slugs = category_slugs(["本地", "国际", "國際", "!!!", "Sports News"], config)
    assert slugs["本地"] == "bendi"
    assert slugs["国际"] == "guoji" and slugs["國際"].startswith("guoji-")
    assert slugs["!!!"].startswith("c-") and slugs["Sports News"] == "sportsnews"
    assert all(re.fullmatch(r"[a-z0-9-]+", s) for s in slugs.values())
    assert len(set(slugs.values())) == len(slugs)
    assert slugify("国际") == "guo-ji"


def test_build_feed_renders_one_document_without_a_store():
    meta = FeedMeta(id=SITE + "/feeds/x.xml", title="T", site_url=SITE,
                    self_url=SITE + "/feeds/x.xml", language="zh-CN", description="d",
                    rights="© x", author="站", disclaimer="声明")
    data = feeds.build_feed([reprint(2), article(1)], meta, "atom")
    d = parse_feed(data)
    assert [e.id for e in d.entries] == [feedformats.entry_id(SITE, "a00002"),
                                         feedformats.entry_id(SITE, "a00001")]
    assert "声明" in d.entries[0].content[0].value


def test_incremental_state_on_every_database(any_store, tmp_path):
    """feed_state works the same on SQLite and PostgreSQL."""
    empty = tmp_path / "empty"
    empty.mkdir()
    config = load_config(write_site(tmp_path, content=empty))
    config = type(config)(**{**config.__dict__,
                             "feeds": type(config.feeds)(output_dir=tmp_path / "out")})
    add(any_store, article(1), article(2, category="经济"))
    first = feeds.build_all(config, any_store, NOW)
    assert "rss.xml" in first and "category/jingji/atom.xml" in first
    assert feeds.build_all(config, any_store, NOW) == []
    any_store.save_article(article(2, title="改", category="经济"), NOW)
    changed = feeds.build_all(config, any_store, NOW)
    assert "category/jingji/rss.xml" in changed and "category/bendi/rss.xml" not in changed


def test_a_file_that_cannot_be_written_fails_alone_and_is_retried(small):
    """Writes happen in the background: a failure is reported, the rest is written, and the
    next build writes what failed."""
    config, store = small
    add(store, *(article(n) for n in range(1, 4)))
    out = config.feeds.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "zh-hant").write_text("a file where a folder must go", encoding="utf-8")
    changed = feeds.build_all(config, store, NOW)
    assert "rss.xml" in changed and "atom.xml" in changed
    assert not any(rel.startswith("zh-hant/") for rel in changed)
    (out / "zh-hant").unlink()
    again = feeds.build_all(config, store, NOW)
    assert "zh-hant/rss.xml" in again and "rss.xml" not in again
    assert feedparser.parse((out / "zh-hant" / "rss.xml").read_bytes()).entries


def test_prepared_items_are_kept_and_follow_edits(small, monkeypatch):
    """A full rebuild reuses each article's prepared item; an edit prepares it again."""
    config, store = small
    add(store, *(article(n) for n in range(1, 4)))
    feeds.build_all(config, store, NOW)
    calls = []
    real = feedformats.prepare
    monkeypatch.setattr(feedformats, "prepare", lambda a, **kw: calls.append(a.id) or real(a, **kw))
    for path in sorted(config.feeds.output_dir.rglob("*.xml")):
        path.unlink()
    assert "rss.xml" in feeds.build_all(config, store, NOW)
    assert calls == []  # every item came from feed_items
    store.save_article(article(2, title="改过的标题"), NOW)
    feeds.build_all(config, store, NOW)
    assert sorted(set(calls)) == [article(2).id]
    rss = feedparser.parse((config.feeds.output_dir / "rss.xml").read_bytes())
    assert "改过的标题" in [e.title for e in rss.entries]
