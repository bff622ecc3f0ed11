"""Arbitrary Unicode (controls, emoji, RTL, surrogate-free but otherwise anything,
huge) in every text field keeps every feed format well formed, and the text
comes back as written, less only what XML 1.0 cannot carry."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher import feedformats as ff
from publisher.cleaning import strip_xml_illegal
from publisher.feedformats import FeedMeta
from publisher.models import ORIGINAL, REPRINT
from tests.support.feeds import NS, article, parse_feed, parse_xml

SITE = "https://news.example.com"
META = FeedMeta(id=SITE + "/feeds/atom.xml", title="江城 ‫עברית‬ 🗞", site_url=SITE,
                self_url=SITE + "/feeds/atom.xml", language="zh-CN", description="d",
                rights="© 江城", author="江城新闻网", disclaimer="免责声明\x07")

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)
tricky = st.sampled_from(["\x00\x01\x1b", "]]>", "&amp;", "<script>x</script>", "👩‍👩‍👧‍👦🇨🇳",
                          "مرحبا بالعالم", "\u202e\u200f", "\ufeff\ufffe\uffff", "\r\n\t", "𠀀𪚥"])
field = st.one_of(text, tricky, st.lists(st.one_of(text, tricky), max_size=4).map("".join))


def _expected(s: str) -> str:
    return strip_xml_illegal(s)


def _render_all(a, script="zh-hans"):
    item = ff.prepare(a, site_url=SITE, script=script, canonical="zh-hans",
                      disclaimer=META.disclaimer, fallback_author=META.author)
    return item, {fmt: ff.render([item], META, fmt) for fmt in ff.FORMATS}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=field, body=field, summary=field, author=field, category=field, source=field,
       reprint=st.booleans())
def test_any_text_keeps_every_format_well_formed(title, body, summary, author, category,
                                                 source, reprint):
    a = article(1, title=title, body_html=body, summary=summary, author=author,
                category=category, source_name=source, tags=(category,),
                origin=REPRINT if reprint else ORIGINAL,
                source_url="https://x.example.org/" if reprint else "")
    item, docs = _render_all(a)
    rss = parse_xml(docs["rss"]).find("channel/item")
    atom = parse_xml(docs["atom"]).find("atom:entry", namespaces=NS)
    assert rss.findtext("title") == item.title == atom.findtext("atom:title", namespaces=NS)
    if _expected(title).strip():
        assert item.title == _expected(title)
    assert rss.findtext("dc:creator", namespaces=NS) == item.author
    assert atom.findtext("atom:content", namespaces=NS) == item.content_html
    for fmt in ("rss", "atom"):
        d = parse_feed(docs[fmt])
        assert len(d.entries) == 1 and d.entries[0].id == item.id
    doc = json.loads(docs["json"])
    assert doc["items"][0]["title"] == item.title
    assert doc["items"][0]["content_html"] == item.content_html


@settings(max_examples=15, deadline=None)
@given(title=field, body=field)
def test_any_text_in_traditional_script(title, body):
    item, docs = _render_all(article(2, title=title, body_html=body), "zh-hant")
    for fmt in ("rss", "atom"):
        assert parse_feed(docs[fmt]).entries[0].id == item.id
    assert json.loads(docs["json"])["items"][0]["title"] == item.title


def test_huge_article_stays_well_formed():
    body = "<p>" + ("江城新闻🗞‫שלום‬\x0b" * 60_000) + "</p>"
    item, docs = _render_all(article(3, title="长" * 5000, body_html=body))
    atom = parse_xml(docs["atom"])
    content = atom.findtext("atom:entry/atom:content", namespaces=NS)
    assert content.count("江城新闻🗞") == 60_000 and "\x0b" not in content
    assert len(parse_feed(docs["rss"]).entries[0].title) == 5000
