"""Tests for publisher.cleaning: decoding, pinyin/ruby removal, sanitizing, scraped pages."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from publisher import cleaning
from publisher.cleaning import (
    ScrapedPage,
    decode_bytes,
    html_to_text,
    make_summary,
    parse_scraped_page,
    sanitize_html,
    scraped_to_html,
    strip_pinyin,
    strip_ruby,
    strip_xml_illegal,
)
from publisher.errors import SourceError

DATA = Path(__file__).parent / "data" / "scraped"
TZ = ZoneInfo("Asia/Shanghai")
BASE = "https://news.example.com/articles/2026/11/a"
HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
ANNOTATION_RE = re.compile(r"[\u4e00-\u9fff][(（][a-zü\u00e0-\u01dc]+[)）]")
SETTINGS = settings(deadline=None, max_examples=200)

PAGES = sorted(p.stem for p in DATA.glob("*.txt"))


def read_page(name: str) -> ScrapedPage:
    path = DATA / f"{name}.txt"
    return parse_scraped_page(decode_bytes(path.read_bytes(), path.name), TZ)


def han(text: str) -> list[str]:
    return HAN_RE.findall(text)


# --------------------------------------------------------------- data cases

@pytest.mark.parametrize("name", PAGES)
def test_scraped_page_matches_expected(name):
    expected = json.loads((DATA / f"{name}.expected.json").read_text(encoding="utf-8"))
    page = read_page(name)
    assert page.title == expected["title"]
    assert page.author == expected["author"]
    assert (page.date.isoformat() if page.date else None) == expected["date"]
    assert page.source_name == expected["source_name"]
    assert page.source_url == expected["source_url"]
    assert page.category == expected["category"]
    assert list(page.paragraphs) == expected["paragraphs"]


@pytest.mark.parametrize("name", PAGES)
def test_scraped_pages_leave_no_pinyin_controls_or_disclaimer(name):
    page = read_page(name)
    text = "\n".join((page.title, *page.paragraphs))
    assert not ANNOTATION_RE.search(text)
    assert strip_xml_illegal(text) == text
    assert not re.search("免[责責][声聲]明|0000-00000000|@", text)


# --------------------------------------------------------------- the seed

SEED = (DATA / "seed.txt").read_text(encoding="utf-8")


def test_seed_title_author_and_body():
    page = read_page("seed")
    assert page.title == "讓鮮紅黨旗高高飄揚在城市上空"
    assert page.author == "杜才云"
    assert len(page.paragraphs) == 5
    assert page.paragraphs[0].startswith("城市是人類文明的標志,沒有城市的成功崛起")
    assert page.paragraphs[-1].endswith("城市街道社區黨組織。")
    assert page.source_name == "" and page.date is None


def test_seed_pinyin_gone():
    page = read_page("seed")
    body = "".join(page.paragraphs)
    assert "(yáng)" not in page.title + body
    for syllable in ("(dòng)", "(qū)", "(lèi)", "(biāo)", "(méi)"):
        assert syllable in SEED and syllable not in body


def test_seed_citation_kept_verbatim():
    # The site itself garbled 報 in the citation; it is kept exactly as it came.
    citation = re.search(r"\(6月18日,《.*?》\)", SEED).group(0)
    assert citation == "(6月18日,《 人民日?qǐng)?bào) 》)"
    assert read_page("seed").paragraphs[0].endswith("治理格局。" + citation)


def test_seed_disclaimer_and_byline_removed():
    body = "\n".join(read_page("seed").paragraphs)
    for piece in ("免責聲明", "025-86163400", "724922822@qq.com", "(杜才云)", "江蘇蘇訊網"):
        assert piece not in body


def test_seed_han_characters_survive_in_order():
    page = read_page("seed")
    kept = han("".join((page.title, *page.paragraphs)))
    original = han(SEED)
    it = iter(original)
    assert all(ch in it for ch in kept)  # a subsequence of the original
    assert len(kept) > 0.8 * len(original)


# --------------------------------------------------------------- decoding

SIMPLIFIED = ("江城市今天召开新闻发布会，介绍全市经济运行情况。"
              "前十个月，规模以上工业增加值同比增长百分之六点五。")
TRADITIONAL = ("臺北市政府今天舉行記者會，說明颱風過後的復原進度。"
               "市長表示，各區清理工作將在本週內全部完成。")
SHORT = ["中国经济", "體育新聞", "今天天氣很好", "文化"]


CODECS = ["gbk", "gb18030", "big5", "utf-8", "utf-8-sig"]


def _encodings(texts: list[str]) -> list[tuple[str, str]]:
    """(text, codec) pairs where the codec can encode the text (Big5 has no simplified)."""
    return [(t, c) for t in texts for c in CODECS if _can_encode(t, c)]


def _can_encode(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize(("text", "codec"), _encodings([SIMPLIFIED, TRADITIONAL, *SHORT]))
def test_decode_picks_the_right_encoding(text, codec):
    assert decode_bytes(text.encode(codec), "x") == text


def test_big5_bytes_also_read_as_gb18030_without_error():
    # The reason for the heuristic: strict GB18030 accepts these Big5 bytes.
    data = TRADITIONAL.encode("big5")
    assert data.decode("gb18030") != TRADITIONAL
    assert decode_bytes(data, "x") == TRADITIONAL


def test_declared_charset_is_honoured():
    data = (DATA / "meta-big5.html").read_bytes()
    assert "香港" in decode_bytes(data, "meta-big5.html")
    undeclared = "<p>香港</p>".encode("big5")
    assert "香港" not in decode_bytes(undeclared, "x")  # too short to tell: GB18030 wins


def test_xml_declaration_gbk():
    data = '<?xml version="1.0" encoding="GB2312"?><rss><title>體育</title></rss>'.encode("gbk")
    assert "體育" in decode_bytes(data, "x")


def test_undecodable_raises_source_error():
    message = r"^undecodable\.bin: cannot decode as UTF-8, GB18030 or Big5$"
    with pytest.raises(SourceError, match=message):
        decode_bytes((DATA / "undecodable.bin").read_bytes(), "undecodable.bin")


def test_bom_and_crlf():
    text = decode_bytes((DATA / "utf8-bom-crlf.txt").read_bytes(), "x")
    assert not text.startswith("\ufeff")
    assert "\r" not in text
    assert decode_bytes(b"a\rb\r\nc\n", "x") == "a\nb\nc\n"


@SETTINGS
@given(st.text())
def test_decode_round_trips_utf8(text):
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assume(_can_encode(text, "utf-8"))  # lone surrogates are not text
    assert decode_bytes(text.encode("utf-8"), "x") == expected


@SETTINGS
@given(st.lists(st.sampled_from(SIMPLIFIED + TRADITIONAL), min_size=12, max_size=80))
def test_decode_round_trips_gbk_and_big5(chars):
    text = "".join(chars)
    for codec in ("gb18030", "big5"):
        if _can_encode(text, codec):
            assert decode_bytes(text.encode(codec), "x") == text


@SETTINGS
@given(st.binary())
def test_decode_either_succeeds_or_raises_source_error(data):
    try:
        text = decode_bytes(data, "x")
    except SourceError:
        return
    assert "\r" not in text


# --------------------------------------------------------------- XML-illegal

def test_strip_xml_illegal_examples():
    assert strip_xml_illegal("a\x00b\x07c\x1bd\x0be\x0cf\ufffeg\uffffh\ud800i") == "abcdefghi"
    assert strip_xml_illegal("tab\tnl\ncr\r中文😀\ue000") == "tab\tnl\ncr\r中文😀\ue000"


def _xml_legal(ch: str) -> bool:
    cp = ord(ch)
    return cp in (9, 10, 13) or 0x20 <= cp <= 0xD7FF or 0xE000 <= cp <= 0xFFFD or cp >= 0x10000


@SETTINGS
@given(st.text(alphabet=st.characters(codec=None)))
def test_strip_xml_illegal_keeps_exactly_the_legal_characters(text):
    assert strip_xml_illegal(text) == "".join(ch for ch in text if _xml_legal(ch))


# --------------------------------------------------------------- pinyin

@pytest.mark.parametrize(("raw", "clean"), [
    ("讓鮮紅黨旗高高飄揚(yáng)在城市上空", "讓鮮紅黨旗高高飄揚在城市上空"),
    ("飄揚（yáng）在", "飄揚在"),
    ("他們(men)說(shuō)", "他們說"),  # toneless, in a text with tone-marked annotations
    ("西安(xī ān)市", "西安市"),
    ("發展(zhan3)", "發展"),
    ("女(nǚ)人", "女人"),
    ("綠(lü4)色", "綠色"),
    ("飄揚(ya\u0301ng)", "飄揚"),  # decomposed tone mark
])
def test_strip_pinyin_removes_annotations(raw, clean):
    assert strip_pinyin(raw) == clean


@pytest.mark.parametrize("text", [
    "(6月18日,《 人民日報 》)",
    "黨組織。(杜才云)",
    "記者(Reuters)報道(AP)",
    "今年(2026)第(1)季度",
    "病毒(covid)",
    "他們(men)",  # toneless alone: could be an English word, kept
    "太陽(sun)",
    "上海 (shàng) 市",  # not directly after a Han character
    "abc(yáng)",
    "飄揚(Yáng)",  # capitalised: not the converter's output
    "字(yáng",
])
def test_strip_pinyin_leaves_real_parentheses(text):
    assert strip_pinyin(text) == text


HAN_CHARS = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
TONED = ["yáng", "lèi", "biāo", "zhì", "méi", "guó", "lǐng", "dǎo", "qū", "xiàn", "lǜ", "nüè",
         "shuāng", "chuàng", "ér", "zhǔn", "kāi"]
TONELESS = ["le", "de", "men", "zi", "me", "an", "ma"]


@SETTINGS
@given(st.lists(st.tuples(HAN_CHARS, st.none() | st.sampled_from(TONED + TONELESS),
                          st.booleans()), min_size=1, max_size=60),
       st.sampled_from(TONED))
def test_strip_pinyin_removes_all_inserted_annotations(items, first_tone):
    plain = "".join(ch for ch, _, _ in items)
    parts = []
    for i, (ch, syllable, full_width) in enumerate(items):
        syllable = first_tone if i == 0 else syllable
        note = (f"（{syllable}）" if full_width else f"({syllable})") if syllable else ""
        parts.append(ch + note)
    assert strip_pinyin("".join(parts)) == plain


@SETTINGS
@given(st.text())
def test_strip_pinyin_never_loses_han_or_non_parenthesised_text(text):
    out = strip_pinyin(text)
    assert Counter(han(out)) == Counter(han(text))
    assert len(out) <= len(text)


@SETTINGS
@given(st.lists(st.sampled_from(["中", "文", "(", ")", "（", "）", "yáng", "le", " ", "6月",
                                 "《", "》", "Reuters", "杜才云", "。"]), max_size=40))
def test_strip_pinyin_on_parenthesis_soup(pieces):
    text = "".join(pieces)
    out = strip_pinyin(text)
    assert han(out) == han(text)
    for word in ("Reuters", "6月", "杜才云", "《", "》"):
        assert out.count(word) == text.count(word)
    assert set(Counter(text) - Counter(out)) <= set("()（）yángle ")


# --------------------------------------------------------------- ruby

@pytest.mark.parametrize(("raw", "clean"), [
    ("<ruby>漢<rp>(</rp><rt>hàn</rt><rp>)</rp></ruby>字", "漢字"),
    ("<p><ruby>飄<rt>piāo</rt>揚<rt>yáng</rt></ruby></p>", "<p>飄揚</p>"),
    ("<ruby>漢<rt>hàn</ruby><ruby>字<rp>(<rt>zì<rp>)</ruby>", "漢字"),  # end tags omitted
    ("<RUBY><rb>東</rb><rtc><rt>dōng</rt></rtc></RUBY>", "東"),
    ("<p>no ruby (here)</p>", "<p>no ruby (here)</p>"),
])
def test_strip_ruby(raw, clean):
    assert strip_ruby(raw) == clean


# --------------------------------------------------------------- sanitizing

def parsed(html: str):
    return lxml.html.fragment_fromstring(html or "<span></span>", create_parent="div")


def test_sanitize_keeps_news_markup_and_makes_urls_absolute():
    raw = ('<p>段落<a href="../b" title="t" onclick="x()">链接</a></p>'
           '<img src="/i.jpg" alt="图" width="10" onerror="alert(1)">'
           '<table><tr><th colspan="2">表</th></tr>'
           '<tr><td rowspan="1" style="c">格</td></tr></table>'
           '<figure><figcaption>说明</figcaption></figure><blockquote><cite>引</cite></blockquote>')
    root = parsed(sanitize_html(raw, BASE))
    link = root.find(".//a")
    assert link.get("href") == "https://news.example.com/articles/2026/b"
    assert link.get("rel") == "noopener noreferrer" and link.get("title") == "t"
    assert link.get("onclick") is None
    img = root.find(".//img")
    assert dict(img.attrib) == {"src": "https://news.example.com/i.jpg", "alt": "图", "width": "10"}
    assert root.find(".//th").get("colspan") == "2"
    assert root.find(".//td").get("style") is None
    assert [el.tag for el in root.iter("figure", "figcaption", "blockquote", "cite")] == \
        ["figure", "figcaption", "blockquote", "cite"]


@pytest.mark.parametrize("raw", [
    '<script>alert(1)</script>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="java&#x0A;script:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<img src="data:text/html;base64,PHNjcmlwdD4=">',
    '<svg onload="alert(1)"><a xlink:href="javascript:alert(1)">x</a></svg>',
    '<iframe src="https://evil.example"></iframe>',
    '<div style="background:url(javascript:alert(1))" onmouseover="x">t</div>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
])
def test_sanitize_removes_xss(raw):
    out = sanitize_html(raw, BASE)
    assert "alert" not in out and "script" not in out.lower() and "evil" not in out
    assert_safe(out)


def test_sanitize_keeps_mailto_and_drops_other_schemes():
    out = sanitize_html('<a href="mailto:a@example.com">m</a><a href="ftp://x/y">f</a>', BASE)
    hrefs = [a.get("href") for a in parsed(out).iter("a")]
    assert hrefs == ["mailto:a@example.com", None]


def test_sanitize_without_base_leaves_relative_urls():
    assert 'href="/x"' in sanitize_html('<a href="/x">x</a>', "")


def test_sanitize_strips_xml_illegal_characters():
    assert sanitize_html("<p>a\x00b\x0bc\ufffe</p>", BASE) == "<p>abc</p>"


def assert_safe(html: str) -> None:
    for el in parsed(html).iter():
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), html
            if name in ("href", "src"):
                assert urlsplit(value).scheme.lower() in ("", "http", "https", "mailto"), html


HOSTILE = st.lists(st.sampled_from([
    "<a href=\"", "<img src=", "javascript:", "JAVASCRIPT:", "java\tscript:", "&#106;avascript:",
    "onerror=", " onclick=\"", "alert(1)", "\"", "'", ">", "<", "</a>", "<script>", "</script>",
    "<svg ", "<p>", "中文", "../x", "//evil", "data:", " ", "=", "<!--", "-->", "\x00",
]), max_size=30).map("".join)


@SETTINGS
@given(st.one_of(st.text(), HOSTILE))
def test_sanitize_never_emits_scripts_or_handlers(raw):
    out = sanitize_html(raw, BASE)
    assert_safe(out)
    assert "<script" not in out.lower()
    assert strip_xml_illegal(out) == out


# --------------------------------------------------------------- text & summary

def test_html_to_text_paragraphs():
    html = "<h2>标题</h2><p>第一段<br>换行</p><ul><li>甲</li><li>乙</li></ul><script>x()</script>"
    assert html_to_text(html) == "标题\n\n第一段\n\n换行\n\n甲\n\n乙"
    assert html_to_text("") == "" and html_to_text("<!-- c -->") == ""
    assert html_to_text("a &amp; b") == "a & b"


def test_make_summary_cuts_at_sentence_end():
    html = "<p>第一句话说完了。第二句话也说完了！第三句话比较长一些，会被截断吗？</p>"
    assert make_summary(html, 20) == "第一句话说完了。第二句话也说完了！"
    assert make_summary(html) == html_to_text(html)


def test_make_summary_hard_cut_adds_ellipsis():
    html = "<p>" + "没有句号的很长的一段文字" * 20 + "</p>"
    summary = make_summary(html, 30)
    assert len(summary) == 30 and summary.endswith("…")


def test_make_summary_joins_paragraphs():
    assert make_summary("<p>甲。</p><p>乙。</p>") == "甲。乙。"
    assert make_summary("<p>Hello</p><p>world</p>") == "Hello world"


@SETTINGS
@given(st.one_of(st.text(), HOSTILE), st.integers(min_value=1, max_value=200))
def test_text_and_summary_never_raise(raw, limit):
    text = html_to_text(raw)
    assert strip_xml_illegal(text) == text
    summary = make_summary(raw, limit)
    assert len(summary) <= limit and "\n" not in summary


# --------------------------------------------------------------- scraped pages

DISCLAIMER = ("本站版权及免责声明:凡本网注明“来源:XXX(非本网)”的作品,均转载自其它媒体。"
              "如有问题请致电0000-00000000,联系邮箱:editor@example.com。")


def page(*lines: str) -> ScrapedPage:
    return parse_scraped_page("\n".join(lines), TZ)


@pytest.mark.parametrize(("line", "expected"), [
    ("2026-06-18 09:30", datetime(2026, 6, 18, 9, 30, tzinfo=TZ)),
    ("2026年6月18日 09:30", datetime(2026, 6, 18, 9, 30, tzinfo=TZ)),
    ("2026年06月18日09时30分", datetime(2026, 6, 18, 9, 30, tzinfo=TZ)),
    ("发布时间:2026-06-18", datetime(2026, 6, 18, tzinfo=TZ)),
    ("發佈時間：2026/6/18 9:30:15", datetime(2026, 6, 18, 9, 30, 15, tzinfo=TZ)),
    ("日期:2026.06.18", datetime(2026, 6, 18, tzinfo=TZ)),
    ("2026-06-18T01:30:00Z", datetime.fromisoformat("2026-06-18T01:30:00+00:00")),
    ("时间:2026-06-18 09:30+08:00", datetime.fromisoformat("2026-06-18T09:30:00+08:00")),
])
def test_header_dates(line, expected):
    result = page("标题", line, "正文。").date
    assert result == expected and result.utcoffset() == expected.utcoffset()


def test_header_fields_on_one_or_more_lines():
    result = page("标题", "标题", "2026-11-25 09:30 来源:新华社 作者:张三", "栏目:经济",
                  "原文链接:https://xinhua.example.org/a.htm", "正文第一段。", "正文第二段。")
    assert (result.source_name, result.author, result.category, result.source_url) == \
        ("新华社", "张三", "经济", "https://xinhua.example.org/a.htm")
    assert result.paragraphs == ("正文第一段。", "正文第二段。")


def test_header_stops_at_first_body_line():
    result = page("标题", "正文说到来源:新华社的报道。", "来源:新华社")
    assert result.source_name == ""
    assert result.paragraphs == ("正文说到来源:新华社的报道。", "来源:新华社")


def test_bad_header_values_start_the_body():
    not_a_url = "原文:人民日报评论员文章"
    assert page("标题", not_a_url, "正文。").paragraphs[0] == not_a_url
    assert page("标题", "2026-13-45 09:30", "正文。").paragraphs[0] == "2026-13-45 09:30"


@pytest.mark.parametrize("source", ["本网", "本網", "本站", "原创"])
def test_self_source_is_not_a_reprint(source):
    assert page("标题", f"来源:{source}", "正文。").source_name == ""


def test_disclaimer_source_line_is_not_taken_as_source():
    result = page("标题", DISCLAIMER)
    assert result.source_name == "" and result.paragraphs == ()


@pytest.mark.parametrize("tail", [
    [DISCLAIMER],
    [DISCLAIMER[:40], DISCLAIMER[40:]],
    ["免責聲明:本網轉載作品僅供參考,如有侵權請聯繫刪除。"],
    ["版權聲明:本文版權歸原作者所有。"],
])
def test_disclaimer_removed(tail):
    assert page("标题", "正文。(张三)", *tail).paragraphs == ("正文。",)


def test_disclaimer_only_at_the_end():
    result = page("标题", "正文提到版权及免责声明的写法。", "第二段。", "第三段。")
    assert len(result.paragraphs) == 3


@pytest.mark.parametrize(("last", "body", "author"), [
    ("正文。(杜才云)", "正文。", "杜才云"),
    ("正文。（杜才云）", "正文。", "杜才云"),
    ("(杜才云)", None, "杜才云"),
    ("正文。(张三、李四)", "正文。", "张三、李四"),
    ("正文。（张三 李四）", "正文。", "张三、李四"),
    ("正文。(记者 王海燕)", "正文。", "王海燕"),
    ("正文。（文/张三 图/李四）", "正文。", "张三、李四"),
    ("正文。(6月18日,《 人民日報 》)", "正文。(6月18日,《 人民日報 》)", ""),
    ("正文。(Reuters)", "正文。(Reuters)", ""),
    ("正文。(2026)", "正文。(2026)", ""),
    ("正文。(完)", "正文。(完)", ""),
    ("正文。（待续）", "正文。（待续）", ""),
    ("正文。(一位很长很长的名字)", "正文。(一位很长很长的名字)", ""),
    ("正文(张三)还没完。", "正文(张三)还没完。", ""),
])
def test_byline(last, body, author):
    result = page("标题", "第一段。", last)
    assert result.author == author
    assert result.paragraphs == ("第一段。",) + ((body,) if body else ())


def test_header_author_wins_but_byline_is_still_removed():
    result = page("标题", "作者:张三", "正文。(李四)")
    assert result.author == "张三" and result.paragraphs == ("正文。",)


def test_title_only_and_empty_pages():
    assert page("只有标题", "只有标题").paragraphs == ()
    with pytest.raises(SourceError):
        parse_scraped_page(" \n\u3000\n\x00\n", TZ)


def test_scraped_to_html_escapes():
    result = ScrapedPage("t", ("a<b>&c", "第二段"), "", None, "", "", "")
    assert scraped_to_html(result) == "<p>a&lt;b&gt;&amp;c</p>\n<p>第二段</p>"


@SETTINGS
@given(st.text())
def test_parse_scraped_page_never_raises_but_source_error(text):
    try:
        result = parse_scraped_page(text, TZ)
    except SourceError:
        assert not "".join(strip_xml_illegal(text).split())
        return
    every = "".join((result.title, *result.paragraphs))
    assert strip_xml_illegal(every) == every
    assert all(p == p.strip() and p for p in result.paragraphs)


@SETTINGS
@given(st.lists(st.text(alphabet=st.sampled_from("中文新闻报道城市经济。,、(杜才云)"), min_size=1,
                        max_size=30), min_size=1, max_size=8))
def test_parse_scraped_page_keeps_body_han_in_order(lines):
    assume(all(line.strip() for line in lines))
    text = "\n".join(["标题", *lines])
    result = parse_scraped_page(text, TZ)
    out = han("".join(result.paragraphs) + result.author)
    source = han("".join(lines))
    assert sorted(out) == sorted(source) or Counter(out) <= Counter(source)


def test_module_is_pure():
    source = Path(cleaning.__file__).read_text(encoding="utf-8")
    assert "print(" not in source and "open(" not in source
