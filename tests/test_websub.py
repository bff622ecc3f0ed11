"""WebSub: every feed advertises the hub; after a build the hub gets
``hub.mode=publish`` for exactly the feeds that changed, with retries; tested
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from publisher import feeds, websub
from publisher.config import load_config
from publisher.store import Store
from tests.conftest import write_site
from tests.support.feeds import NS, article, feed_files, parse_xml
from tests.support.httpserver import Response

NOW = datetime(2027, 1, 1, tzinfo=UTC)
SITE = "https://news.example.com/feeds/"


def hub_site(tmp_path, hub_url: str, extra: str = ""):
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    path = write_site(tmp_path, content=empty)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "max_items = 50", f'max_items = 5\narchive_size = 4\nhub = "{hub_url}"\n{extra}'),
        encoding="utf-8")
    config = load_config(path)
    return config, Store.open(config.storage.database_url)


def pinged(server) -> list[str]:
    urls = []
    for req in server.requests:
        form = parse_qs(req.body.decode("ascii"))
        assert req.method == "POST" and form["hub.mode"] == ["publish"]
        assert req.headers["content-type"] == "application/x-www-form-urlencoded"
        urls += form["hub.url"]
    return urls


@pytest.fixture
def hub(http_server):
    http_server.route("POST", "/hub", Response(204))
    return http_server


def test_every_feed_advertises_the_hub(tmp_path, hub):
    config, store = hub_site(tmp_path, hub.url + "/hub")
    store.save_article(article(1), NOW)
    feeds.build_all(config, store, NOW)
    for rel, path in feed_files(config.feeds.output_dir).items():
        if rel.endswith(".json"):
            assert json.loads(path.read_bytes())["hubs"] == [{"type": "WebSub",
                                                             "url": hub.url + "/hub"}]
        else:
            assert parse_xml(path).xpath("//atom:link[@rel='hub']/@href | "
                                         "/atom:feed/atom:link[@rel='hub']/@href",
                                         namespaces=NS) == [hub.url + "/hub"], rel
    store.close()


def test_hub_is_pinged_for_exactly_the_changed_feeds(tmp_path, hub):
    config, store = hub_site(tmp_path, hub.url + "/hub")
    for n in range(1, 10):
        store.save_article(article(n, category="本地" if n % 2 else "经济"), NOW)
    changed = feeds.build_all(config, store, NOW)
    assert sorted(pinged(hub)) == sorted(SITE + rel for rel in changed)
    hub.requests.clear()
    assert feeds.build_all(config, store, NOW) == []
    assert hub.requests == []
    store.save_article(article(9, title="改", category="本地"), NOW)
    changed = feeds.build_all(config, store, NOW)
    assert SITE + "rss.xml" in pinged(hub)
    assert sorted(pinged(hub)) == sorted(SITE + rel for rel in changed)
    assert not any("jingji" in url for url in pinged(hub))
    store.close()


def test_ping_is_retried_on_server_errors(http_server):
    answers = iter([Response(503), Response(502), Response(204)])
    http_server.route("POST", "/hub", lambda req: next(answers))
    pauses = []
    report = websub.publish(http_server.url + "/hub", [SITE + "rss.xml"], retries=3,
                            timeout=5, sleep=pauses.append)
    assert report.ok == [SITE + "rss.xml"] and not report.failed
    assert len(http_server.requests) == 3 and pauses == [1.0, 2.0]


def test_client_errors_are_not_retried(http_server):
    http_server.route("POST", "/hub", Response(400, b"bad topic"))
    report = websub.publish(http_server.url + "/hub", [SITE + "a.xml", SITE + "b.xml"],
                            retries=3, timeout=5, sleep=lambda s: None)
    assert set(report.failed) == {SITE + "a.xml", SITE + "b.xml"}
    assert report.failed[SITE + "a.xml"].startswith("HTTP 400")
    assert len(http_server.requests) == 2


def test_retries_are_bounded(http_server):
    http_server.route("POST", "/hub", Response(503))
    report = websub.publish(http_server.url + "/hub", [SITE + "rss.xml"], retries=2,
                            timeout=5, sleep=lambda s: None)
    assert list(report.failed) == [SITE + "rss.xml"] and len(http_server.requests) == 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_never_fails_the_build(tmp_path):
    hub_url = f"http://127.0.0.1:{_closed_port()}/hub"
    config, store = hub_site(tmp_path, hub_url, "hub_retries = 1\nhub_timeout = 2\n")
    store.save_article(article(1), NOW)
    changed = feeds.build_all(config, store, NOW)
    assert "rss.xml" in changed
    report = websub.publish_changes(config, changed, sleep=lambda s: None)
    assert set(report.failed) == {SITE + rel for rel in changed} and not report.ok
    assert sum("not attempted" in e for e in report.failed.values()) == len(changed) - 1
    store.close()


def test_no_hub_no_ping(config):
    assert websub.publish_changes(config, ["rss.xml"]) == websub.PingReport()
