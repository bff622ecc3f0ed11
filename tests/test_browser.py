"""The subscriber's whole journey in a real browser: Playwright driving Debian's
Chromium (never a browser Playwright downloads) against the app on loopback.

subscribe → confirmation mail read from the outbox → confirm → preferences →
unsubscribe; an RFC 8058 one-click POST with requests; screenshots of a
rendered digest at 375 px and 800 px in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from publisher import render, tokens
from publisher import subscribers as subs
from publisher.config import load_config
from publisher.store import Store
from publisher.web import create_app
from tests.conftest import ROOT, write_site
from tests.support.httpserver import Response
from tests.support.subscriberweb import NOW, link_in, outbox_messages, sample_articles

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's Chromium is not installed at /usr/bin/chromium "
                              "(apt-get install chromium; .ci/run does it)"),
]


@pytest.fixture
def live(tmp_path):
    """The app on 127.0.0.1:<free port>, its [site].url pointing at itself."""
    holder = {}
    server = make_server("127.0.0.1", 0, lambda env, start: holder["app"](env, start),
                         threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    path = write_site(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("https://news.example.com", base),
                    encoding="utf-8")
    config = load_config(path)
    store = Store.open(config.storage.database_url)
    holder["app"] = create_app(config, store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, config, store
    server.shutdown()
    thread.join(timeout=10)
    store.close()


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=30000)
        yield b
        b.close()


def test_subscribe_confirm_preferences_unsubscribe(live, browser):
    base, config, store = live
    page = browser.new_page()
    page.set_default_timeout(15000)
    page.goto(f"{base}/subscribe")
    page.fill("#email", "browser.reader@example.org")
    page.check("input[name=frequency][value=weekly]")
    page.check("input[name=categories][value=本地]")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/subscribe/check-email")
    assert "请查收邮件" in page.inner_text("h1")
    assert subs.get_by_email(store, "browser.reader@example.org").status == "pending"

    confirm_link = link_in(outbox_messages(config)[-1], "/confirm/")
    assert confirm_link.startswith(f"{base}/confirm/")
    page.goto(confirm_link)
    assert subs.get_by_email(store, "browser.reader@example.org").status == "pending"
    page.click("button[type=submit]")
    page.wait_for_selector("text=订阅成功")
    s = subs.get_by_email(store, "browser.reader@example.org")
    assert (s.status, s.frequency, s.categories) == ("active", "weekly", ("本地",))

    page.click("text=订阅设置")
    page.wait_for_selector("input[name=categories][value=文化]")
    page.check("input[name=categories][value=文化]")
    page.check("input[name=script][value=zh-hant]")
    page.check("input[name=frequency][value=daily]")
    page.click("text=保存设置")
    page.wait_for_selector("[role=status]")
    s = subs.get_by_email(store, "browser.reader@example.org")
    assert (s.frequency, s.script, s.categories) == ("daily", "zh-hant", ("文化", "本地"))

    page.click("button.secondary")  # 退订 (shown in the reader's script)
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "您已退訂"
    assert subs.get_by_email(store, "browser.reader@example.org").status == "unsubscribed"
    page.close()


def test_rfc8058_one_click_post_with_requests(live):
    base, config, store = live
    subs.upsert(store, "oneclick@example.org")
    s = subs.get_by_email(store, "oneclick@example.org")
    url = f"{base}/unsubscribe/{tokens.signer(config).make(s.token_key, tokens.UNSUBSCRIBE)}"
    assert requests.get(url, timeout=10).status_code == 200  # a prefetch changes nothing
    assert subs.get_by_email(store, "oneclick@example.org").status == "active"
    r = requests.post(url, data="List-Unsubscribe=One-Click", timeout=10,
                      headers={"Content-Type": "application/x-www-form-urlencoded"},
                      allow_redirects=False)
    assert r.status_code == 200 and not r.cookies
    assert subs.get_by_email(store, "oneclick@example.org").status == "unsubscribed"


def _png(width: int, height: int, rgb=(183, 28, 28)) -> bytes:
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width", [375, 800])
def test_digest_screenshots(config, browser, http_server, width):
    http_server.route("GET", "/img/metro.png",
                      Response(200, _png(552, 311), {"Content-Type": "image/png"}))
    articles = sample_articles(image_base=http_server.url)
    rendered = render.render_digest(config, config.digest("daily"), "daily-2026-11-26", NOW,
                                    articles, render.Variant("zh-hans", (), "daily"),
                                    "https://news.example.com/archive/daily-2026-11-26")
    page = browser.new_page(viewport={"width": width, "height": 900})
    html = (rendered.html.replace(render.PREFS_URL, "https://news.example.com/preferences/T")
            .replace(render.UNSUB_URL, "https://news.example.com/unsubscribe/T")
            .replace(render.RECIPIENT, "reader@example.org"))
    page.set_content(html, wait_until="load")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"digest-{width}.png"), full_page=True)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width  # fluid: no sideways scrolling on a phone
    box = page.eval_on_selector("table.container", "e => e.getBoundingClientRect().width")
    assert box == (600 if width >= 640 else width)
    img = page.eval_on_selector("img", "e => [e.naturalWidth, e.getBoundingClientRect().width]")
    assert img[0] == 552 and img[1] <= min(552, width)
    page.close()
