"""The subscriber pages through Flask's test client: double opt-in, CSRF, rate
limits, tokens, one-click unsubscribe (RFC 8058), preferences and the archive."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import html as lxml_html
from sqlalchemy import select

from publisher import render, tokens
from publisher import subscribers as subs
from publisher.schema import subscribers as subscribers_table
from publisher.schema import suppressions
from tests.support.subscriberweb import (
    client_for,
    csrf_from,
    get_csrf,
    link_in,
    local_path,
    outbox_messages,
    sample_articles,
    seed_edition,
    subscribe,
)


@pytest.fixture
def web(config, store):
    app, client = client_for(config, store)
    return client


def _doc(resp):
    return lxml_html.fromstring(resp.get_data(as_text=True))


def _status(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(subscribers_table.c.status)
                            .where(subscribers_table.c.email == email)).scalar()


def _suppressed(store, email):
    with store.engine.connect() as conn:
        return conn.execute(select(suppressions.c.reason)
                            .where(suppressions.c.email == email)).scalar()


def _token(config, store, email, action):
    s = subs.get_by_email(store, email)
    return tokens.signer(config).make(s.token_key, action)


def _subscribe_and_confirm(web, config, store, addr="reader@example.org", **fields):
    assert subscribe(web, addr, **fields).status_code == 303
    link = local_path(link_in(outbox_messages(config)[-1], "/confirm/"))
    r = web.post(link, data={"csrf_token": get_csrf(web, link)})
    assert r.status_code == 200
    return link


# -- subscribe and confirm ---------------------------------------------------------

def test_subscribe_sends_confirmation_and_nothing_else_until_confirmed(web, config, store):
    r = subscribe(web, "new.reader@example.org", frequency="weekly", script="zh-hant",
                  categories=["本地", "经济"])
    assert r.status_code == 303 and r.headers["Location"].endswith("/subscribe/check-email")
    assert _status(store, "new.reader@example.org") == "pending"
    msgs = outbox_messages(config)
    assert len(msgs) == 1
    msg = msgs[0]
    assert msg["To"].addresses[0].addr_spec == "new.reader@example.org"
    assert msg["From"].addresses[0].display_name == "江城新闻网"
    assert msg["Message-ID"].endswith("@news.example.com>")
    link = link_in(msg, "/confirm/")
    assert link.startswith("https://news.example.com/confirm/")
    # GET only shows the page: still pending (mail scanners prefetch links)
    page = web.get(local_path(link))
    assert page.status_code == 200
    assert _status(store, "new.reader@example.org") == "pending"
    assert _doc(page).xpath("//form[@method='post']//button")
    r = web.post(local_path(link), data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert r.status_code == 200
    s = subs.get_by_email(store, "new.reader@example.org")
    assert (s.status, s.frequency, s.script, s.categories) == ("active", "weekly", "zh-hant",
                                                               ("本地", "经济"))


def test_consent_record_is_filled(web, config, store):
    _subscribe_and_confirm(web, config, store, "consent@example.org")
    rec = subs.consent_record(store, "consent@example.org")
    assert rec["consent_method"] == "web" and rec["consent_ip"] == "127.0.0.1"
    assert rec["consent_at"] is not None and rec["consent_detail"].startswith("web form")
    assert rec["confirm_method"] == "web" and rec["confirm_ip"] == "127.0.0.1"
    assert rec["confirmed_at"] >= rec["consent_at"]
    assert rec["confirmation_sent_at"] is not None


def test_subscribing_twice_reveals_nothing(web, config, store):
    first = subscribe(web, "twice@example.org")
    pending_again = subscribe(web, "twice@example.org")
    unknown = subscribe(web, "someone.else@example.org")
    pages = [web.get(r.headers["Location"]) for r in (first, pending_again, unknown)]
    assert {r.status_code for r in (first, pending_again, unknown)} == {303}
    assert len({r.headers["Location"] for r in (first, pending_again, unknown)}) == 1
    bodies = [_doc(p).xpath("string(//main)") for p in pages]
    assert bodies[0] == bodies[1] == bodies[2]


def test_active_subscriber_gets_no_second_confirmation(web, config, store):
    _subscribe_and_confirm(web, config, store, "active@example.org")
    before = len(outbox_messages(config))
    r = subscribe(web, "active@example.org", frequency="weekly")
    assert r.status_code == 303
    msgs = outbox_messages(config)[before:]
    # at most one harmless notice: no confirmation link, nothing changed
    assert len(msgs) == 1
    text = msgs[0].get_body(("plain",)).get_content()
    assert "/confirm/" not in text and "/preferences/" in text
    assert subs.get_by_email(store, "active@example.org").frequency == "daily"


def test_confirmation_mails_per_address_are_limited(web, config, store):
    for _ in range(6):
        subscribe(web, "victim@example.org")
    assert len(outbox_messages(config)) == 3


def test_invalid_address_shows_form_with_error(web, store):
    r = subscribe(web, "not an address")
    assert r.status_code == 400
    assert _doc(r).xpath("//ul[@class='problems']/li")
    assert _status(store, "not an address") is None


def test_unknown_category_is_refused(web, store):
    r = subscribe(web, "cat@example.org", categories=["不存在的栏目"])
    assert r.status_code == 400
    assert _status(store, "cat@example.org") is None


def test_honeypot_pretends_success(web, config, store):
    r = subscribe(web, "bot@example.org", website="http://spam.example")
    assert r.status_code == 303
    assert _status(store, "bot@example.org") is None and not outbox_messages(config)


# -- CSRF and rate limit -------------------------------------------------------------

def test_post_without_csrf_is_refused(web, store):
    web.get("/subscribe")
    r = web.post("/subscribe", data={"email": "x@example.org", "frequency": "daily",
                                     "script": "zh-hans"})
    assert r.status_code == 400
    assert _status(store, "x@example.org") is None
    assert "Traceback" not in r.get_data(as_text=True)


def test_post_with_wrong_csrf_or_foreign_origin_is_refused(web, store):
    token = get_csrf(web, "/subscribe")
    data = {"email": "x@example.org", "frequency": "daily", "script": "zh-hans"}
    assert web.post("/subscribe", data=dict(data, csrf_token=token + "x")).status_code == 400
    r = web.post("/subscribe", data=dict(data, csrf_token=token),
                 headers={"Origin": "https://evil.example"})
    assert r.status_code == 400
    assert _status(store, "x@example.org") is None


def test_csrf_token_from_another_session_is_refused(config, store, web):
    token = get_csrf(web, "/subscribe")
    _, other = client_for(config, store)
    other.get("/subscribe")
    r = other.post("/subscribe", data={"csrf_token": token, "email": "y@example.org"})
    assert r.status_code == 400


def test_rate_limit_per_ip(web, config, store):
    limit = config.web.subscribe_rate_per_hour
    codes = [subscribe(web, f"r{i}@example.org").status_code for i in range(limit)]
    assert set(codes) == {303}
    r = subscribe(web, "one.more@example.org")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert _status(store, "one.more@example.org") is None
    # another client address is counted apart
    token = get_csrf(web, "/subscribe")
    r = web.post("/subscribe", data={"csrf_token": token, "email": "other.ip@example.org"},
                 environ_base={"REMOTE_ADDR": "2001:db8::1"})
    assert r.status_code == 303


# -- tokens ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/confirm/", "/preferences/", "/unsubscribe/"])
def test_tampered_token_gets_a_4xx_page(web, config, store, path):
    subs.upsert(store, "t@example.org")
    action = path.strip("/")
    token = _token(config, store, "t@example.org", action)
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "garbage", "x" * 600):
        r = web.get(path + bad)
        assert r.status_code == 400
        assert r.mimetype == "text/html" and "Traceback" not in r.get_data(as_text=True)
        assert _doc(r).xpath("string(//h1)")


def test_token_for_another_action_is_refused(web, config, store):
    subs.upsert(store, "t@example.org")
    prefs = _token(config, store, "t@example.org", tokens.PREFERENCES)
    assert web.get(f"/unsubscribe/{prefs}").status_code == 400
    r = web.post(f"/unsubscribe/{prefs}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 400
    assert _status(store, "t@example.org") == "active"


def test_expired_confirm_token(web, config, store, monkeypatch):
    subs.request_subscription(store, "late@example.org")
    token = _token(config, store, "late@example.org", tokens.CONFIRM)
    monkeypatch.setitem(tokens.MAX_AGE, tokens.CONFIRM, -1)
    r = web.get(f"/confirm/{token}")
    assert r.status_code == 410
    assert "过期" in _doc(r).xpath("string(//main)")
    assert _status(store, "late@example.org") == "pending"


def test_unknown_subscriber_token_is_404(web, config, store):
    token = tokens.signer(config).make(tokens.new_token_key(), tokens.PREFERENCES)
    assert web.get(f"/preferences/{token}").status_code == 404


def test_unknown_page_and_wrong_method_are_pages(web):
    r = web.get("/no/such/page")
    assert r.status_code == 404 and r.mimetype == "text/html"
    r = web.delete("/subscribe")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


# -- unsubscribe -------------------------------------------------------------------

def test_get_never_unsubscribes(web, config, store):
    subs.upsert(store, "stay@example.org")
    token = _token(config, store, "stay@example.org", tokens.UNSUBSCRIBE)
    for _ in range(3):
        r = web.get(f"/unsubscribe/{token}")
        assert r.status_code == 200
    r = web.head(f"/unsubscribe/{token}")
    assert r.status_code == 200
    assert _status(store, "stay@example.org") == "active"
    assert _suppressed(store, "stay@example.org") is None
    assert len(_doc(web.get(f"/unsubscribe/{token}")).xpath("//form//button")) == 1


def test_unsubscribe_button(web, config, store):
    subs.upsert(store, "leave@example.org")
    token = _token(config, store, "leave@example.org", tokens.UNSUBSCRIBE)
    page = web.get(f"/unsubscribe/{token}")
    r = web.post(f"/unsubscribe/{token}", data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert r.status_code == 200
    assert _status(store, "leave@example.org") == "unsubscribed"
    assert _suppressed(store, "leave@example.org") == "unsubscribed"


def test_one_click_unsubscribe_needs_no_cookie(config, store):
    subs.upsert(store, "oneclick@example.org")
    token = _token(config, store, "oneclick@example.org", tokens.UNSUBSCRIBE)
    _, fresh = client_for(config, store)  # no cookie, no CSRF token
    r = fresh.post(f"/unsubscribe/{token}", data="List-Unsubscribe=One-Click",
                   content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    assert _status(store, "oneclick@example.org") == "unsubscribed"
    assert _suppressed(store, "oneclick@example.org") == "unsubscribed"
    # repeated by the mail provider: still 200, nothing else changes
    assert fresh.post(f"/unsubscribe/{token}",
                      data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_unsubscribe_token_does_not_expire(web, config, store, monkeypatch):
    assert tokens.MAX_AGE[tokens.UNSUBSCRIBE] is None
    subs.upsert(store, "old@example.org")
    token = _token(config, store, "old@example.org", tokens.UNSUBSCRIBE)
    r = web.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200


def test_post_without_one_click_body_needs_csrf(config, store):
    subs.upsert(store, "careful@example.org")
    token = _token(config, store, "careful@example.org", tokens.UNSUBSCRIBE)
    _, fresh = client_for(config, store)
    assert fresh.post(f"/unsubscribe/{token}", data={"x": "y"}).status_code == 400
    assert _status(store, "careful@example.org") == "active"


def test_resubscribe_after_unsubscribe_through_double_opt_in(web, config, store):
    subs.upsert(store, "back@example.org")
    subs.remove(store, "back@example.org")
    subscribe(web, "back@example.org")
    assert _status(store, "back@example.org") == "pending"
    assert _suppressed(store, "back@example.org") == "unsubscribed"  # until confirmed
    link = local_path(link_in(outbox_messages(config)[-1], "/confirm/"))
    web.post(link, data={"csrf_token": get_csrf(web, link)})
    assert _status(store, "back@example.org") == "active"
    assert _suppressed(store, "back@example.org") is None


def test_complained_address_gets_no_mail(web, config, store):
    subs.remove(store, "angry@example.org", reason="complained")
    assert subscribe(web, "angry@example.org").status_code == 303
    assert not outbox_messages(config)


# -- preferences -------------------------------------------------------------------

def test_preferences_change_and_save(web, config, store):
    subs.upsert(store, "prefs@example.org")
    token = _token(config, store, "prefs@example.org", tokens.PREFERENCES)
    page = web.get(f"/preferences/{token}")
    doc = _doc(page)
    offered = doc.xpath("//input[@name='categories']/@value")
    assert offered[:4] == ["本地", "经济", "文化", "体育"]
    r = web.post(f"/preferences/{token}", data={
        "csrf_token": csrf_from(page.get_data(as_text=True)), "frequency": "weekly",
        "script": "zh-hant", "categories": ["文化", "体育"]})
    assert r.status_code == 303
    s = subs.get_by_email(store, "prefs@example.org")
    assert (s.frequency, s.script, s.categories) == ("weekly", "zh-hant", ("体育", "文化"))
    saved = web.get(local_path(r.headers["Location"]))
    doc = _doc(saved)
    assert doc.get("lang") == "zh-Hant"
    assert sorted(doc.xpath("//input[@name='categories'][@checked]/@value")) == ["体育", "文化"]
    assert doc.xpath("//*[@role='status']")


def test_preferences_refuse_bad_values(web, config, store):
    subs.upsert(store, "prefs2@example.org")
    token = _token(config, store, "prefs2@example.org", tokens.PREFERENCES)
    csrf = get_csrf(web, f"/preferences/{token}")
    r = web.post(f"/preferences/{token}", data={"csrf_token": csrf, "frequency": "hourly",
                                                 "script": "zh-hans"})
    assert r.status_code == 400
    assert subs.get_by_email(store, "prefs2@example.org").frequency == "daily"


# -- archive ---------------------------------------------------------------------

def test_archive_lists_sent_editions_without_subscriber_data(web, config, store):
    subs.upsert(store, "private.reader@example.org")
    edition = seed_edition(config, store)
    from publisher.editions import get_edition
    from publisher.schema import editions as editions_table
    with store.engine.begin() as conn:
        conn.execute(editions_table.update().values(status="sent"))
    assert get_edition(store, edition.key).status == "sent"
    index = web.get("/archive/")
    assert index.status_code == 200
    hrefs = _doc(index).xpath("//ul[@class='editions']//a/@href")
    assert hrefs == [f"/archive/{edition.key}"]
    page = web.get(hrefs[0])
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for secret in ("private.reader@example.org", render.PREFS_URL, render.UNSUB_URL,
                   render.RECIPIENT, "/unsubscribe/", "/preferences/"):
        assert secret not in text
    doc = _doc(page)
    titles = doc.xpath("//h3//a/text()")
    assert set(titles) == {a.title for a in sample_articles()}
    assert "https://news.example.com/subscribe" in doc.xpath("//a/@href")


def test_archive_excludes_withdrawn_and_converts_script(web, config, store):
    edition = seed_edition(config, store)
    store.withdraw("econ-gdp", "complaint")
    doc = _doc(web.get(f"/archive/{edition.key}"))
    assert "一季度经济数据发布" not in doc.xpath("//h3//a/text()")
    assert len(doc.xpath("//h3//a")) == 3
    hant = _doc(web.get(f"/archive/{edition.key}?script=zh-hant"))
    assert hant.get("lang") == "zh-Hant"
    assert "江城地鐵三號線今日開通運營" in hant.xpath("//h3//a/text()")


def test_archive_unknown_edition_is_404(web):
    assert web.get("/archive/daily-1999-01-01").status_code == 404


def test_pages_send_security_headers(web):
    r = web.get("/subscribe")
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert "SameSite=Lax" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]


# -- outside text ----------------------------------------------------------------

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=st.text(max_size=80), freq=st.text(max_size=10), script=st.text(max_size=10),
       cats=st.lists(st.text(max_size=12), max_size=3))
def test_any_form_input_gets_a_page_never_a_crash(config, store, email, freq, script, cats):
    app, client = client_for(config, store)
    token = get_csrf(client, "/subscribe")
    r = client.post("/subscribe", data={"csrf_token": token, "email": email, "frequency": freq,
                                        "script": script, "categories": cats},
                    environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert r.status_code in (303, 400, 429)
    for msg in outbox_messages(config):
        for value in msg.values():
            assert "\r" not in str(value) and "\n" not in str(value)


def test_behind_a_proxy_the_rate_limit_counts_real_clients(tmp_path):
    """With [web].proxies = 1 the limit is per X-Forwarded-For client, not per proxy."""
    from publisher.config import load_config
    from publisher.web import create_app
    from tests.conftest import write_site

    config = load_config(write_site(tmp_path, "\n[web]\nproxies = 1\nsecure_cookies = true\n"
                                               "subscribe_rate_per_hour = 2\n"))
    app = create_app(config)
    assert app.config["SESSION_COOKIE_SECURE"] is True

    def attempt(client_ip: str) -> int:
        client = app.test_client()
        headers = {"X-Forwarded-For": client_ip, "X-Forwarded-Proto": "https"}
        page = client.get("/subscribe", headers=headers, base_url="https://127.0.0.1")
        form = {"email": f"p{client_ip.replace('.', '')}@example.com", "frequency": "daily",
                "script": "zh-hans", "csrf_token": csrf_from(page.get_data(as_text=True))}
        return client.post("/subscribe", data=form, headers=headers,
                           base_url="https://127.0.0.1").status_code

    assert [attempt("203.0.113.7") for _ in range(3)] == [303, 303, 429]
    assert attempt("198.51.100.9") == 303  # another client behind the same proxy
