"""Licensing decisions under the reprint terms (publisher.rights, pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import html as lxml_html

from publisher import rights
from publisher.config import PartnerConfig
from publisher.models import REPRINT
from tests.support.syndication import T0, article, site_config


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return site_config(tmp_path_factory.mktemp("rights"), "")


def partner(**kw) -> PartnerConfig:
    return PartnerConfig(name="p", delivery="webhook", url="http://127.0.0.1/", **kw)


def test_original_in_category_full_text(config):
    assert rights.grant(config, partner(), article("a"), T0) == rights.FULL
    assert rights.grant(config, partner(full_text=False), article("a"), T0) == rights.SUMMARY


def test_categories_filter_by_name_or_slug(config):
    econ = article("e", category="经济")
    assert rights.grant(config, partner(categories=("本地",)), econ, T0) is None
    assert rights.grant(config, partner(categories=("经济",)), econ, T0) == rights.FULL
    assert rights.grant(config, partner(categories=("jingji",)), econ, T0) == rights.FULL


def test_reprints_excluded_by_default_or_headline(config):
    r = article("r", origin=REPRINT)
    assert rights.grant(config, partner(), r, T0) is None
    assert rights.grant(config, partner(reprints="headline"), r, T0) == rights.HEADLINE
    assert rights.grant(config, partner(reprints="headline", full_text=False), r, T0) \
        == rights.HEADLINE


def test_foreign_source_counts_as_reprint_whatever_origin_says(config):
    a = article("x", source_name="中国新闻网")
    assert rights.is_reprint(a, config)
    assert rights.grant(config, partner(), a, T0) is None
    own = article("y", source_name=config.site.name)
    assert not rights.is_reprint(own, config)


def test_embargo(config):
    a = article("a")  # published T0 - 1h
    p = partner(embargo_minutes=90)
    assert rights.grant(config, p, a, T0) is None
    assert rights.grant(config, p, a, T0 + timedelta(minutes=30)) == rights.FULL
    assert rights.available_at(p, a) == a.published + timedelta(minutes=90)


def test_withdrawn_never_granted(config):
    assert rights.grant(config, partner(), article("a", status="withdrawn"), T0) is None


def test_full_content_has_body_and_attribution(config):
    a = article("a")
    c = rights.licensed_content(config, a, rights.FULL)
    assert "正文第一段" in c.text and "第二段内容" in c.text
    assert c.attribution["site"] == config.site.name
    assert c.attribution["url"] == a.url
    assert c.attribution["author"] == "杜才云"
    assert c.attribution["credit"] == f"来源:{config.site.name}"
    assert c.attribution["terms_version"] == "2026-01"
    doc = lxml_html.fragment_fromstring(c.html, create_parent="div")
    block = doc.xpath('//div[@class="attribution"]')[0]
    assert f"来源:{config.site.name}" in block.text_content()
    assert block.xpath(".//a/@href") == [a.url]
    assert f"来源:{config.site.name}" in c.text and a.url in c.text


def test_summary_content_is_summary_and_link(config):
    a = article("a")
    c = rights.licensed_content(config, a, rights.SUMMARY)
    assert "正文第一段" not in c.text and "正文第一段" not in c.html
    assert c.summary == "a 的摘要"
    doc = lxml_html.fragment_fromstring(c.html, create_parent="div")
    assert a.url in doc.xpath("//a/@href")
    assert "作者:杜才云" in c.text


def test_summary_falls_back_to_the_start_of_the_body(config):
    c = rights.licensed_content(config, article("a", summary=""), rights.SUMMARY)
    assert c.summary.startswith("a 正文第一段")


def test_headline_links_to_the_original_source(config):
    r = article("r", origin=REPRINT)
    c = rights.licensed_content(config, r, rights.HEADLINE)
    assert c.url == r.source_url
    assert c.summary == ""
    assert "正文" not in c.html and "正文" not in c.text
    assert c.source == {"name": "新华社", "url": r.source_url}
    assert c.attribution["credit"] == "来源:新华社"
    doc = lxml_html.fragment_fromstring(c.html, create_parent="div")
    assert doc.xpath("//a/@href") == [r.source_url]


def test_withdrawn_content_carries_no_text(config):
    c = rights.withdrawn_content(config, article("a"))
    assert c.html == c.text == c.summary == ""
    assert c.attribution["url"] == "https://news.example.com/a/a.html"


body_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=12,
                    max_size=200).filter(lambda s: len(s.strip()) >= 12)


@settings(max_examples=60, deadline=None)
@given(body=body_text, summary=body_text)
def test_a_reprint_never_carries_its_text(config, body, summary):
    """Whatever the reprint says, a partner gets neither its body nor its summary."""
    from html import escape

    r = article("r", origin=REPRINT, body=f"<p>{escape(body)}</p>", summary=summary)
    for p in (partner(reprints="headline"), partner(reprints="headline", full_text=False)):
        mode = rights.grant(config, p, r, T0)
        c = rights.licensed_content(config, r, mode)
        needle = " ".join(body.split())
        assert needle not in c.text.replace(r.title, "")
        assert summary.strip() not in c.summary
        assert escape(body) not in c.html


@settings(max_examples=60, deadline=None)
@given(body=body_text)
def test_text_keeps_the_words_and_links(body):
    from html import escape

    from publisher.cleaning import html_to_text

    text = html_to_text(f'<p>{escape(body)}</p><p><a href="https://x.example/1">尾</a>段</p>',
                        links=True)
    assert "尾 (https://x.example/1)段" in text
    assert " ".join(body.split()) in " ".join(text.split())
    assert text.endswith("段")
