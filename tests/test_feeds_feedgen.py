"""RSS and Atom come from feedgen: its generator's output, entries built once and
shared by every document, feedgen 1.0.0's entry-link bug worked around, RFC 5005
and WebSub links through our extension, byte-stable output. Documents are parsed
back with lxml and feedparser."""

from __future__ import annotations

from datetime import timedelta, timezone

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from publisher import feedformats as ff
from publisher.cleaning import strip_xml_illegal
from publisher.feedformats import FeedMeta
from tests.support.feeds import NS, article, parse_feed, parse_xml, reprint

SITE = "https://news.example.com"
CST = timezone(timedelta(hours=8))
META = FeedMeta(id=SITE + "/feeds/archive/atom-2.xml", title="江城新闻网", site_url=SITE,
                self_url=SITE + "/feeds/archive/atom-2.xml", language="zh-CN",
                description="江城本地新闻", rights="© 江城新闻网", author="江城新闻网", tz=CST,
                hub="https://hub.example.org/", archive=True,
                links=(("current", SITE + "/feeds/atom.xml"),
                       ("prev-archive", SITE + "/feeds/archive/atom-1.xml")))


def items(*articles):
    return [ff.prepare(a, site_url=SITE, script="zh-hans", canonical="zh-hans",
                       disclaimer="转载声明", fallback_author="江城新闻网") for a in articles]


def sample():
    return items(reprint(3, image="https://img.example.com/3.jpg", image_type="image/jpeg",
                         image_length=4321, tags=("标签",)),
                 article(2, image="/pics/2.png"), article(1))


def test_documents_are_feedgens_output():
    its = sample()
    for fmt in ff.XML_FORMATS:
        fg = ff.generator(its, META, fmt)
        assert isinstance(fg, FeedGenerator)
        assert all(isinstance(e, FeedEntry) for e in fg.entry())
        assert [e.id() for e in fg.entry()] == [it.id for it in its]  # appended in order
        data = ff.render(its, META, fmt)
        assert data == (fg.rss_str() if fmt == "rss" else fg.atom_str()) + b"\n"
        assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_an_entry_is_built_once_and_shared_by_every_document():
    its = sample()
    first = ff.generator(its, META, "atom").entry()
    second = ff.generator(its[1:], META, "atom").entry()
    assert second[0] is first[1] and second[1] is first[2]
    assert ff.entry(its[0], "rss", CST) is not ff.entry(its[0], "atom", CST)
    # the shared entry renders the same element in both documents
    a = parse_xml(ff.render(its, META, "atom")).findall("atom:entry", namespaces=NS)
    b = parse_xml(ff.render(its[1:], META, "atom")).findall("atom:entry", namespaces=NS)
    assert [etree.tostring(e) for e in a[1:]] == [etree.tostring(e) for e in b]


def test_same_inputs_same_bytes_whatever_the_order():
    fresh = sample()
    expected = {fmt: ff.render(fresh[1:], META, fmt) for fmt in ff.XML_FORMATS}
    shared = sample()
    for fmt in ff.XML_FORMATS:  # entries first built (and cached) by another document
        ff.render(shared, META, fmt)
        ff.render(shared[::-1], META, fmt)
        assert ff.render(shared[1:], META, fmt) == expected[fmt]
        assert ff.render(shared[1:], META, fmt) == expected[fmt]


def test_atom_entry_links_keep_rel_type_title_and_length():
    """feedgen 1.0.0 writes entry links with href only (lkiesow/python-feedgen#135)."""
    root = parse_xml(ff.render(sample(), META, "atom"))
    entry = root.find("atom:entry", namespaces=NS)
    links = {ln.get("rel"): dict(ln.attrib) for ln in entry.findall("atom:link", namespaces=NS)}
    assert links["alternate"] == {"href": "https://news.example.com/articles/a3",
                                  "rel": "alternate", "type": "text/html"}
    assert links["via"] == {"href": "https://xinhua.example.org/3.htm", "rel": "via",
                            "type": "text/html", "title": "新华社"}
    assert links["enclosure"] == {"href": "https://img.example.com/3.jpg", "rel": "enclosure",
                                  "type": "image/jpeg", "length": "4321"}
    second = root.findall("atom:entry", namespaces=NS)[1]
    (enc,) = second.xpath("atom:link[@rel='enclosure']", namespaces=NS)
    assert enc.get("type") == "image/png" and enc.get("length") is None
    d = parse_feed(ff.render(sample(), META, "atom"))
    assert d.entries[0].link == "https://news.example.com/articles/a3"


def test_feed_level_links_history_and_language():
    its = sample()
    atom = parse_xml(ff.render(its, META, "atom"))
    assert atom.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-CN"
    rels = {ln.get("rel"): ln.get("href") for ln in atom.findall("atom:link", namespaces=NS)}
    assert rels == {"alternate": SITE + "/", "self": META.self_url, "hub": META.hub,
                    "current": SITE + "/feeds/atom.xml",
                    "prev-archive": SITE + "/feeds/archive/atom-1.xml"}
    assert atom.find("fh:archive", namespaces=NS) is not None
    assert atom.findtext("atom:generator", namespaces=NS) == "publisher"
    assert atom.findtext("atom:author/atom:uri", namespaces=NS) == SITE + "/"
    ch = parse_xml(ff.render(its, META, "rss")).find("channel")
    assert ch.findtext("link") == SITE + "/"
    rss_links = {ln.get("rel"): (ln.get("href"), ln.get("type"))
                 for ln in ch.findall("atom:link", namespaces=NS)}
    assert rss_links == {"self": (META.self_url, "application/rss+xml"),
                         "hub": (META.hub, None),
                         "current": (SITE + "/feeds/atom.xml", "application/rss+xml"),
                         "prev-archive": (SITE + "/feeds/archive/atom-1.xml",
                                          "application/rss+xml")}
    assert ch.find("fh:archive", namespaces=NS) is not None
    assert ch.findtext("language") == "zh-cn" and ch.findtext("generator") == "publisher"
    assert ch.findtext("copyright") == "© 江城新闻网"
    assert ch.findtext("lastBuildDate") == "Sun, 01 Nov 2026 19:00:00 +0800"


def test_rss_items_dc_creator_source_enclosure_media():
    ch = parse_xml(ff.render(sample(), META, "rss")).find("channel")
    first, second, third = ch.findall("item")
    assert first.findtext("dc:creator", namespaces=NS) == "张三" and first.find("author") is None
    assert first.find("guid").get("isPermaLink") == "false"
    assert first.findtext("pubDate") == "Sun, 01 Nov 2026 19:00:00 +0800"
    assert [c.text for c in first.findall("category")] == ["本地", "标签"]
    assert (first.find("source").get("url"), first.find("source").text) == (
        "https://xinhua.example.org/3.htm", "新华社")
    assert dict(first.find("enclosure").attrib) == {
        "url": "https://img.example.com/3.jpg", "length": "4321", "type": "image/jpeg"}
    assert second.find("enclosure") is None  # length unknown
    for item, url in ((first, "https://img.example.com/3.jpg"),
                      (second, "https://news.example.com/pics/2.png")):
        (media,) = item.findall("media:content", namespaces=NS)  # never in a media:group
        assert media.get("url") == url and media.get("medium") == "image"
    assert third.find("media:content", namespaces=NS) is None
    assert third.find("source") is None


def test_an_entry_without_title_or_text_is_still_rendered():
    it = items(article(9, title="", summary="", body_html=""))[0]
    for fmt in ff.XML_FORMATS:
        d = parse_feed(ff.render([it], META, fmt))
        assert d.entries[0].title and d.entries[0].id == it.id


meta_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=80) | \
    st.sampled_from(["", " ", "\x00\x0b", "]]>&<", "\ufffe", "\u202eעברית", "👩‍👩‍👧"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=meta_text, description=meta_text, rights=meta_text, author=meta_text)
def test_any_feed_metadata_keeps_rss_and_atom_well_formed(title, description, rights, author):
    meta = FeedMeta(id=META.id, title=title, site_url=SITE, self_url=META.self_url,
                    language="zh-CN", description=description, rights=rights, author=author)
    its = items(article(1))
    clean = {k: strip_xml_illegal(v) for k, v in
             (("title", title), ("rights", rights), ("description", description))}
    want_title = clean["title"] if clean["title"].strip() else SITE + "/"
    want_rights = clean["rights"] if clean["rights"].strip() else None
    for fmt in ff.XML_FORMATS:
        data = ff.render(its, meta, fmt)
        assert parse_feed(data).entries[0].id == its[0].id  # well formed, no bozo
        root = parse_xml(data)
        if fmt == "rss":
            ch = root.find("channel")
            got = (ch.findtext("title"), ch.findtext("copyright"), ch.findtext("description"))
        else:
            got = tuple(root.findtext(f"atom:{n}", namespaces=NS)
                        for n in ("title", "rights", "subtitle"))
            assert root.findtext("atom:author/atom:name", namespaces=NS).strip()
        assert got[:2] == (want_title, want_rights)
        assert got[2] == (clean["description"] if clean["description"].strip() else want_title)
