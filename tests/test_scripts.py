"""Tests for publisher.scripts: OpenCC conversion of text and HTML, script detection."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher import scripts
from publisher.scripts import convert_html, detect_script, to_script

SETTINGS = settings(deadline=None, max_examples=100)
TAG_RE = re.compile(r"<[^>]*>")


@pytest.mark.parametrize(("simplified", "traditional"), [
    ("软件", "軟體"),  # phrase level, Taiwan usage
    ("头发", "頭髮"),
    ("鼠标和网络", "滑鼠和網路"),
    ("里面", "裡面"),
    ("让鲜红党旗高高飘扬在城市上空", "讓鮮紅黨旗高高飄揚在城市上空"),
    ("江城地铁5号线开通", "江城地鐵5號線開通"),
])
def test_to_traditional(simplified, traditional):
    assert to_script(simplified, "zh-hant") == traditional


@pytest.mark.parametrize(("traditional", "simplified"), [
    ("讓鮮紅黨旗高高飄揚在城市上空", "让鲜红党旗高高飘扬在城市上空"),
    ("頭髮", "头发"),
    ("經濟", "经济"),
    ("體育", "体育"),
])
def test_to_simplified(traditional, simplified):
    assert to_script(traditional, "zh-hans") == simplified


def test_non_chinese_and_empty_text_untouched():
    assert to_script("", "zh-hant") == ""
    assert to_script("https://news.example.com/a?b=1", "zh-hant") == "https://news.example.com/a?b=1"


def test_unknown_script():
    with pytest.raises(ValueError, match="unknown script 'zh-tw'"):
        to_script("中文", "zh-tw")


def test_converters_are_cached():
    to_script("软件", "zh-hant")
    assert scripts._converter("s2twp") is scripts._converter("s2twp")


def test_convert_html_leaves_markup_alone():
    html = ('<p title="软件">软件<a href="https://example.com/软件/头发?q=网络">头发</a></p>'
            '<img src="/图片/头发.jpg" alt="头发"><!-- 软件 --><script>var 软 = "头";</script>后面')
    out = convert_html(html, "zh-hant")
    expected = html.replace(">软件<", ">軟體<").replace(">头发<", ">頭髮<").replace("后面", "後面")
    assert out == expected


def test_convert_html_to_simplified():
    assert convert_html("<p>體育<b>新聞</b></p>", "zh-hans") == "<p>体育<b>新闻</b></p>"


@SETTINGS
@given(st.lists(st.sampled_from([
    "<p>", "</p>", '<a href="https://x.example/软件">', "</a>", '<img alt="头发" src="/头.jpg">',
    "软件", "头发", "體育", "新闻", "&amp;", " ", "<!-- 网络 -->", "<br/>", "中文", "abc",
]), max_size=30).map("".join))
def test_convert_html_never_changes_tags(html):
    for script in scripts.SCRIPTS:
        assert TAG_RE.findall(convert_html(html, script)) == TAG_RE.findall(html)


@pytest.mark.parametrize(("text", "script"), [
    ("讓鮮紅黨旗高高飄揚在城市上空", "zh-hant"),
    ("让鲜红党旗高高飘扬在城市上空", "zh-hans"),
    ("中國", "zh-hant"),
    ("中国", "zh-hans"),
    ("你好", "zh-hans"),  # the same in both: the default
    ("hello world", "zh-hans"),
    ("", "zh-hans"),
    ("臺北市政府今天舉行記者會，說明颱風過後的復原進度。", "zh-hant"),
    ("江城市今天召开新闻发布会，介绍全市经济运行情况。", "zh-hans"),
])
def test_detect_script(text, script):
    assert detect_script(text) == script


@SETTINGS
@given(st.text(alphabet=st.sampled_from("软件头发网络经济体育新闻城市发展的是在 ,。"), min_size=1))
def test_round_trip_detects_both_ways(text):
    traditional = to_script(text, "zh-hant")
    assert detect_script(traditional) == ("zh-hant" if traditional != text else "zh-hans")
    assert detect_script(to_script(traditional, "zh-hans")) == "zh-hans"
