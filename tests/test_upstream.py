"""Upstream feed sources against a real HTTP server on 127.0.0.1: charsets, conditional
GET, retries, timeouts, size caps, malformed XML, and one bad source never stopping the rest."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher import collect, upstream
from publisher.collect import source_statuses
from publisher.config import load_config
from publisher.errors import SourceError
from publisher.store import Store
from tests.conftest import write_site
from tests.support.httpserver import Response

DATA = Path(__file__).parent / "data" / "upstream"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(upstream, "BACKOFF", 0.01)


def feed_site(tmp_path, sources: list[tuple[str, str]], timeout: float = 2.0):
    extra = "".join(f'\n[[sources]]\nname = "{n}"\ntype = "feed"\nurl = "{u}"\ntimeout = {timeout}\n'
                    for n, u in sources)
    config = load_config(write_site(tmp_path, extra, content=tmp_path / "empty"))
    return config, Store.open(config.storage.database_url)


def xml(name: str, ctype: str = "application/rss+xml", **headers) -> Response:
    return Response(200, (DATA / name).read_bytes(), {"Content-Type": ctype, **headers})


def test_gbk_rss_decoded_and_cleaned(tmp_path, http_server):
    http_server.route("GET", "/gbk.xml", xml("gbk.xml"))
    config, store = feed_site(tmp_path, [("up", f"{http_server.url}/gbk.xml")])
    report = collect.collect(config, store, NOW)
    assert report.counts["new"] == 2, report.errors
    arts = {a.title: a for a in store.published_articles(NOW)}
    bridge = arts["长江大桥通车仪式举行"]
    assert bridge.url == "https://upstream.example.cn/news/1.html"  # made absolute
    assert "script" not in bridge.body_html and "onerror" not in bridge.body_html
    assert 'href="https://upstream.example.cn/news/more.html"' in bridge.body_html
    assert 'src="https://upstream.example.cn/img/q.jpg"' in bridge.body_html
    assert bridge.is_reprint and bridge.source_name == "新华社"
    tour = arts["冬季旅游线路发布"]
    assert "javascript" not in tour.body_html


def test_big5_atom_converted_to_canonical_script(tmp_path, http_server):
    http_server.route("GET", "/tw.xml", xml("big5.xml", "application/atom+xml"))
    config, store = feed_site(tmp_path, [("tw", f"{http_server.url}/tw.xml")])
    collect.collect(config, store, NOW)
    [a] = store.published_articles(NOW)
    assert a.title == "台北举办国际书展"  # stored in simplified (the canonical script)
    assert "国际书展" in a.body_html


def test_charset_from_http_header(tmp_path, http_server):
    body = (DATA / "gbk.xml").read_bytes().replace(b'encoding="gbk"', b"")
    http_server.route("GET", "/h.xml", Response(200, body, {"Content-Type":
                                                             "application/xml; charset=gbk"}))
    config, store = feed_site(tmp_path, [("h", f"{http_server.url}/h.xml")])
    collect.collect(config, store, NOW)
    assert "长江大桥通车仪式举行" in [a.title for a in store.published_articles(NOW)]


def test_control_characters_removed(tmp_path, http_server):
    http_server.route("GET", "/c.xml", xml("control.xml"))
    config, store = feed_site(tmp_path, [("c", f"{http_server.url}/c.xml")])
    collect.collect(config, store, NOW)
    [a] = store.published_articles(NOW)
    assert "\x0b" not in a.title and "\x01" not in a.body_html
    assert a.title == "含控制字符的标题"


def test_conditional_get_costs_nothing(tmp_path, http_server):
    def handler(req):
        if req.headers.get("if-none-match") == '"v1"':
            return Response(304)
        return Response(200, (DATA / "gbk.xml").read_bytes(),
                        {"Content-Type": "application/rss+xml", "ETag": '"v1"',
                         "Last-Modified": "Wed, 25 Nov 2026 03:00:00 GMT"})
    http_server.route("GET", "/e.xml", handler)
    config, store = feed_site(tmp_path, [("e", f"{http_server.url}/e.xml")])
    collect.collect(config, store, NOW)
    report = collect.collect(config, store, NOW)
    assert report.counts["new"] == 0 and not report.errors
    second = [r for r in http_server.requests if r.path == "/e.xml"][1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Wed, 25 Nov 2026 03:00:00 GMT"


def test_gzip_response(tmp_path, http_server):
    http_server.route("GET", "/z.xml", Response(200, gzip.compress((DATA / "gbk.xml").read_bytes()),
                                                {"Content-Type": "application/rss+xml",
                                                 "Content-Encoding": "gzip"}))
    config, store = feed_site(tmp_path, [("z", f"{http_server.url}/z.xml")])
    assert collect.collect(config, store, NOW).counts["new"] == 2
    assert "gzip" in http_server.requests[0].headers["accept-encoding"]


def test_retries_5xx_then_succeeds(tmp_path, http_server):
    calls = []

    def flaky(req):
        calls.append(1)
        return Response(503, b"busy") if len(calls) < 3 else xml("gbk.xml")
    http_server.route("GET", "/f.xml", flaky)
    config, store = feed_site(tmp_path, [("f", f"{http_server.url}/f.xml")])
    assert collect.collect(config, store, NOW).counts["new"] == 2
    assert len(calls) == 3


def test_404_is_not_retried(tmp_path, http_server):
    config, store = feed_site(tmp_path, [("gone", f"{http_server.url}/gone.xml")])
    report = collect.collect(config, store, NOW)
    assert len(http_server.requests) == 1
    assert report.errors == [f"source gone: {http_server.url}/gone.xml: HTTP 404"]


def test_malformed_feed_reported_by_name(tmp_path, http_server):
    http_server.route("GET", "/m.xml", xml("malformed.xml"))
    http_server.route("GET", "/ok.xml", xml("gbk.xml"))
    config, store = feed_site(tmp_path, [("broken", f"{http_server.url}/m.xml"),
                                         ("fine", f"{http_server.url}/ok.xml")])
    report = collect.collect(config, store, NOW)
    assert report.counts["new"] == 2
    assert report.errors and all(e.startswith("source broken:") for e in report.errors)
    assert "malformed feed" in report.errors[0]


def test_slow_source_does_not_delay_others(tmp_path, http_server):
    http_server.route("GET", "/slow.xml", Response(200, b"<rss/>", delay=3.0))
    http_server.route("GET", "/ok.xml", xml("gbk.xml"))
    config, store = feed_site(tmp_path, [("slow", f"{http_server.url}/slow.xml"),
                                         ("fine", f"{http_server.url}/ok.xml")], timeout=0.5)
    report = collect.collect(config, store, NOW)
    assert report.counts["new"] == 2
    assert [e for e in report.errors if e.startswith("source slow:")]
    assert len([r for r in http_server.requests if r.path == "/slow.xml"]) == 1 + upstream.RETRIES
    status = {s["name"]: s for s in source_statuses(store)}
    assert status["fine"]["last_success"] is not None and status["fine"]["article_count"] == 2
    assert status["slow"]["last_error"] and status["slow"]["consecutive_failures"] == 1


def test_sources_fetched_concurrently(tmp_path, http_server):
    """Each handler waits until both requests have arrived: sequential fetching would fail."""
    import threading

    barrier = threading.Barrier(2, timeout=5)

    def meet(req):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return Response(500, b"alone")
        return xml("gbk.xml") if req.path == "/one.xml" else xml("big5.xml", "application/atom+xml")
    http_server.route("GET", "/one.xml", meet)
    http_server.route("GET", "/two.xml", meet)
    config, store = feed_site(tmp_path, [("one", f"{http_server.url}/one.xml"),
                                         ("two", f"{http_server.url}/two.xml")], timeout=8)
    report = collect.collect(config, store, NOW)
    assert not report.errors
    assert report.counts["new"] == 3


def test_response_size_capped(tmp_path, http_server):
    http_server.route("GET", "/big.xml", Response(200, b"<rss>" + b" " * 200_000 + b"</rss>"))
    extra = (f'\n[[sources]]\nname = "big"\ntype = "feed"\nurl = "{http_server.url}/big.xml"\n'
             "max_bytes = 100000\n")
    config = load_config(write_site(tmp_path, extra, content=tmp_path / "empty"))
    store = Store.open(config.storage.database_url)
    report = collect.collect(config, store, NOW)
    assert report.errors == ["source big: response larger than 100000 bytes"]


def test_redirect_loop_bounded(tmp_path, http_server):
    http_server.route("GET", "/loop", Response(302, b"", {"Location": "/loop"}))
    config, store = feed_site(tmp_path, [("loop", f"{http_server.url}/loop")])
    report = collect.collect(config, store, NOW)
    assert "more than 5 redirects" in report.errors[0]
    assert len(http_server.requests) <= upstream.MAX_REDIRECTS + 1


def test_repeated_failures_back_off(tmp_path, http_server):
    http_server.route("GET", "/down.xml", Response(500, b""))
    config, store = feed_site(tmp_path, [("down", f"{http_server.url}/down.xml")])
    for i in range(3):
        collect.collect(config, store, NOW + timedelta(seconds=i))
    [state] = [s for s in source_statuses(store) if s["name"] == "down"]
    assert state["consecutive_failures"] == 3
    assert state["next_attempt_at"] > NOW + timedelta(minutes=1)
    before = len(http_server.requests)
    collect.collect(config, store, NOW + timedelta(seconds=10))  # backed off: not fetched
    assert len(http_server.requests) == before
    later = state["next_attempt_at"] + timedelta(seconds=1)
    collect.collect(config, store, later)
    assert len(http_server.requests) > before


def test_connection_refused_is_a_source_error():
    from publisher.config import SourceConfig

    src = SourceConfig(name="x", type="feed", url="http://127.0.0.1:1/feed.xml", timeout=1)
    with pytest.raises(SourceError, match="source x: http://127.0.0.1:1/feed.xml"):
        upstream.fetch(src)


def test_pinyin_and_ruby_removed_from_feed_html(tmp_path, http_server):
    body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            '<link>https://p.example/</link><description>d</description><item>'
            '<title>黨旗飄揚(yáng)在城市上空</title><link>https://p.example/1</link><guid>p1</guid>'
            '<pubDate>Wed, 25 Nov 2026 03:00:00 GMT</pubDate><description><![CDATA['
            '<p>紅旗飄揚(yáng)在<ruby>城<rp>(</rp><rt>chéng</rt><rp>)</rp></ruby>市。'
            '(6月18日,《 人民日報 》)</p>]]></description></item></channel></rss>')
    http_server.route("GET", "/p.xml", Response(200, body.encode(), {"Content-Type": "text/xml"}))
    config, store = feed_site(tmp_path, [("p", f"{http_server.url}/p.xml")])
    collect.collect(config, store, NOW)
    [a] = store.published_articles(NOW)
    assert a.title == "党旗飘扬在城市上空"
    assert "yáng" not in a.body_html and "chéng" not in a.body_html
    assert "红旗飘扬在城市。" in a.body_html
    assert "(6月18日,《 人民日报 》)" in a.body_html  # a real citation stays
