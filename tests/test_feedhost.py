"""``publisher serve`` as a feed host: types with charset, ETag, Last-Modified,
304 on conditional GET, gzip; through Flask's test client and over real HTTP."""

from __future__ import annotations

import gzip
import threading
from datetime import UTC, datetime

import pytest
import requests
from werkzeug.serving import make_server

from publisher import feeds
from publisher.web import create_app
from tests.support.feeds import article, parse_feed, reprint

NOW = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def client(config, store):
    store.save_article(article(1), NOW)
    store.save_article(reprint(2), NOW)
    feeds.build_all(config, store, NOW)
    app = create_app(config, store)
    return app.test_client()


@pytest.mark.parametrize("rel, media_type", [
    ("rss.xml", "application/rss+xml"),
    ("atom.xml", "application/atom+xml"),
    ("feed.json", "application/feed+json"),
    ("zh-hant/category/bendi/rss.xml", "application/rss+xml"),
    ("archive/atom-1.xml", "application/atom+xml"),
    ("category/bendi/archive/rss-1.xml", "application/rss+xml"),
])
def test_content_type_with_charset(client, config, rel, media_type):
    resp = client.get(f"/feeds/{rel}")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == f"{media_type}; charset=utf-8"
    assert resp.data == (config.feeds.output_dir / rel).read_bytes()


def test_etag_and_last_modified_give_304(client):
    first = client.get("/feeds/atom.xml")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    again = client.get("/feeds/atom.xml", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    since = client.get("/feeds/atom.xml", headers={"If-Modified-Since": modified})
    assert since.status_code == 304
    stale = client.get("/feeds/atom.xml", headers={"If-None-Match": '"other"',
                                                   "If-Modified-Since": modified})
    assert stale.status_code == 200  # If-None-Match wins over If-Modified-Since
    older = client.get("/feeds/atom.xml",
                       headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert older.status_code == 200 and older.data == first.data


def test_changed_file_gets_a_new_etag(client, config, store):
    etag = client.get("/feeds/rss.xml").headers["ETag"]
    store.save_article(article(3), NOW)
    feeds.build_all(config, store, NOW)
    resp = client.get("/feeds/rss.xml", headers={"If-None-Match": etag})
    assert resp.status_code == 200 and resp.headers["ETag"] != etag
    assert len(parse_feed(resp.data).entries) == 3


def test_gzip_when_accepted(client, config):
    plain = client.get("/feeds/rss.xml")
    zipped = client.get("/feeds/rss.xml", headers={"Accept-Encoding": "br, gzip;q=0.8"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.data) == plain.data
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert int(zipped.headers["Content-Length"]) == len(zipped.data)
    again = client.get("/feeds/rss.xml", headers={"Accept-Encoding": "gzip",
                                                  "If-None-Match": zipped.headers["ETag"]})
    assert again.status_code == 304
    refused = client.get("/feeds/rss.xml", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


def test_head_has_headers_without_body(client):
    resp = client.head("/feeds/feed.json")
    assert resp.status_code == 200 and resp.data == b""
    assert resp.headers["Content-Type"] == "application/feed+json; charset=utf-8"
    assert int(resp.headers["Content-Length"]) > 0


@pytest.mark.parametrize("rel", ["../config.toml", "..%2Fconfig.toml", "nope.xml",
                                 "category", ".rss.xml.tmp", "category/../../config.toml"])
def test_only_feed_files_are_served(client, config, rel):
    (config.feeds.output_dir / ".rss.xml.tmp").write_bytes(b"partial")
    assert client.get(f"/feeds/{rel}").status_code == 404


def test_real_http_server_on_loopback(config, store):
    store.save_article(article(1), NOW)
    feeds.build_all(config, store, NOW)
    server = make_server("127.0.0.1", 0, create_app(config, store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/feeds/atom.xml"
        with requests.Session() as s:
            first = s.get(url, timeout=5)
            assert first.headers["Content-Encoding"] == "gzip"  # requests asks for gzip
            assert parse_feed(first.content).entries[0].title.startswith("第1条")
            second = s.get(url, timeout=5, headers={"If-None-Match": first.headers["ETag"]})
            assert second.status_code == 304
    finally:
        server.shutdown()
        server.server_close()
