"""The digest and confirmation templates, parsed with lxml and email.parser."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from lxml import html as lxml_html

from publisher import confirm, render
from publisher import subscribers as subs
from tests.support.subscriberweb import NOW, sample_articles

ARCHIVE = "https://news.example.com/archive/daily-2026-11-26"


def _render(config, script="zh-hans", categories=(), web=False):
    return render.render_digest(config, config.digest("daily"), "daily-2026-11-26", NOW,
                                sample_articles(), render.Variant(script, categories, "daily"),
                                ARCHIVE, web=web)


@pytest.fixture
def digest(config):
    return _render(config)


def test_layout_is_tables_600_wide_and_fluid(digest):
    doc = lxml_html.fromstring(digest.html)
    container = doc.xpath("//table[contains(@class, 'container')]")[0]
    assert "max-width:600px" in container.get("style").replace(" ", "")
    assert container.get("width") == "100%"
    assert "[if mso]" in digest.html and 'width="600"' in digest.html  # Outlook's fixed box
    styles = doc.xpath("//style/text()")
    rules = [s for s in styles if "mso-" not in s and "Microsoft YaHei" not in s]
    assert rules and all(s.strip().startswith("@media") for s in rules)
    assert not doc.xpath("//div[contains(@class, 'item')]")  # articles sit in table cells


def test_css_is_inlined(digest):
    doc = lxml_html.fromstring(digest.html)
    title = doc.xpath("//h3[contains(@class,'item-title')]")[0]
    assert "font-size:18px" in title.get("style").replace(" ", "")


def test_preheader_is_first_and_hidden(digest):
    doc = lxml_html.fromstring(digest.html)
    pre = doc.xpath("//body/*[1]")[0]
    assert "preheader" in pre.get("class")
    assert "display:none" in pre.get("style").replace(" ", "")
    assert pre.text_content().startswith("江城地铁三号线今日开通运营")


def test_images_have_alt_and_dimensions(digest):
    doc = lxml_html.fromstring(digest.html)
    imgs = doc.xpath("//img")
    assert imgs
    for img in imgs:
        assert img.get("alt") and img.get("width") == "552" and img.get("height") == "311"
        assert img.get("src").startswith("https://")


def test_grouped_by_category_with_title_summary_date_link(digest):
    doc = lxml_html.fromstring(digest.html)
    assert doc.xpath("//h2/text()") == ["本地", "经济", "文化"]
    local = doc.xpath("//h2[text()='本地']/following-sibling::table//h3/a/text()")
    assert local[:2] == ["江城地铁三号线今日开通运营", "滨江公园改造完工"]
    item = doc.xpath("//table[contains(@class,'item')]")[0]
    assert item.xpath(".//h3/a/@href") == ["https://news.example.com/local/metro"]
    assert "2026-11-26 06:00" in item.xpath("string(.//p[contains(@class,'item-meta')])")
    assert "全长 30 公里" in item.xpath("string(.//p[contains(@class,'item-summary')])")


def test_reprint_is_labelled_with_its_source(digest):
    doc = lxml_html.fromstring(digest.html)
    meta = doc.xpath("//a[@href='https://news.example.com/econ/gdp']/ancestor::td[1]"
                     "//p[contains(@class,'item-meta')]")[0]
    text = meta.text_content()
    assert "转载" in text and "来源:新华社(非本网)" in text
    assert meta.xpath(".//a/@href") == ["https://xinhua.example/gdp"]
    original = doc.xpath("//a[@href='https://news.example.com/local/park']/ancestor::td[1]")[0]
    assert "转载" not in original.text_content()


def test_footer_has_disclaimer_links_and_contact(config, digest):
    doc = lxml_html.fromstring(digest.html)
    footer = doc.xpath("//td[contains(@class,'footer')]")[0]
    text = footer.text_content()
    assert config.rights.disclaimer in text and "江城市文化路 88 号" in text
    hrefs = footer.xpath(".//a/@href")
    assert render.PREFS_URL in hrefs and render.UNSUB_URL in hrefs and ARCHIVE in hrefs
    assert render.RECIPIENT in text


def test_plain_text_reads_on_its_own(config, digest):
    text = digest.text
    assert "<" not in re.sub(r"<https?://[^>]+>|<PUBLISHER\w+>", "", text)
    assert "https://news.example.com/local/metro" in text
    assert "来源:" in text and "新华社" in text and config.rights.disclaimer in text
    assert render.UNSUB_URL in text and render.PREFS_URL in text
    assert "\u034f" not in text  # the preheader filler stays out


def test_categories_and_script_variant(config):
    r = _render(config, "zh-hant", ("文化",))
    doc = lxml_html.fromstring(r.html)
    assert doc.get("lang") == "zh-Hant"
    assert doc.xpath("//h3/a/text()") == ["漢劇新編劇目首演"]
    assert "閱讀全文" in r.html and "阅读全文" not in r.html
    assert r.article_count == 1


def test_web_variant_has_no_recipient(config):
    r = _render(config, web=True)
    for marker in (render.PREFS_URL, render.UNSUB_URL, render.RECIPIENT):
        assert marker not in r.html and marker not in r.text
    assert "https://news.example.com/subscribe" in r.html


def test_confirmation_message_headers(config, store):
    s, _ = subs.request_subscription(store, "Reader@Example.ORG", script="zh-hant")
    raw = confirm.build(config, s)
    assert max(raw) < 128  # 7-bit clean
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "=?utf-8?" in head  # RFC 2047 From name and Subject
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"].addresses[0].display_name == "江城新闻网"
    assert msg["To"].addresses[0].addr_spec == "Reader@example.org"
    assert msg["Subject"] == "請確認訂閱江城新聞網電子報"
    assert msg["Message-ID"].endswith("@news.example.com>") and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64", "7bit")
    link = re.search(r"https://news\.example\.com/confirm/\S+", msg.get_body(("plain",))
                     .get_content()).group(0)
    html_doc = lxml_html.fromstring(msg.get_body(("html",)).get_content())
    assert link in html_doc.xpath("//a/@href")
