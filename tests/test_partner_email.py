"""Email partners: each licensed article, updates and kill notices reach the editors."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes
from email.parser import BytesParser
from email.policy import default

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher import partnerlog, pipeline, syndication
from publisher.models import REPRINT
from publisher.partners import build_email, idempotency_key
from publisher.rights import FULL, licensed_content
from publisher.store import Store
from tests.support.syndication import T0, article, partner_toml, site_config

EDITORS = "desk@partner.example, 值班编辑 <night@partner.example>"


def smtp_config(config, port):
    smtp = replace(config.email.smtp, host="127.0.0.1", port=port, timeout=5)
    return replace(config, email=replace(config.email, transport="smtp", smtp=smtp))


@pytest.fixture
def env(tmp_path, smtp_server):
    config = site_config(tmp_path, partner_toml("paper", "email", EDITORS, categories=["本地"],
                                                reprints="headline", retry_base_seconds=0))
    config = smtp_config(config, smtp_server.port)
    store = Store.open(config.storage.database_url)
    yield config, store, smtp_server
    store.close()


def parsed(received):
    return BytesParser(policy=default).parsebytes(received.data)


def body_text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def test_each_licensed_article_is_a_message_with_attribution(env):
    config, store, smtp = env
    store.save_article(article("a1"), T0)
    store.save_article(article("sport", category="体育"), T0)
    store.save_article(article("wire", origin=REPRINT, body="<p>通讯社全文。</p>"), T0)
    report = syndication.run(config, store, T0, sleep=lambda s: None)
    assert report.delivered == 2
    msgs = {parsed(r)["X-Publisher-Article"]: (r, parsed(r)) for r in smtp.received}
    assert set(msgs) == {"a1", "wire"}
    rcvd, msg = msgs["a1"]
    assert sorted(rcvd.rcpt_tos) == ["desk@partner.example", "night@partner.example"]
    assert msg["Subject"] == "[授权稿件] 标题 a1"
    assert msg["X-Publisher-Terms-Version"] == "2026-01"
    text = body_text(msg)
    assert "正文第一段" in text
    assert f"来源:{config.site.name}" in text and "作者:杜才云" in text
    assert "https://news.example.com/a/a1.html" in text
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert 'class="attribution"' in html
    _, wire = msgs["wire"]
    assert "通讯社全文" not in body_text(wire)
    assert "https://xinhua.example.org/wire.htm" in body_text(wire)
    assert "来源:新华社" in body_text(wire)


def test_update_and_kill_notice(env):
    config, store, smtp = env
    a = article("a1")
    store.save_article(a, T0)
    syndication.run(config, store, T0)
    store.save_article(a.evolve(body_html="<p>更正。</p>"), T0 + timedelta(minutes=5))
    syndication.run(config, store, T0 + timedelta(minutes=6))
    pipeline.withdraw(config, store, "a1", "当事人投诉", T0 + timedelta(minutes=7))
    msgs = [parsed(r) for r in smtp.received]
    assert [m["X-Publisher-Event"] for m in msgs] == ["published", "updated", "withdrawn"]
    assert [m["X-Publisher-Version"] for m in msgs] == ["1", "2", "2"]
    kill = msgs[2]
    assert kill["Subject"].startswith("[撤稿通知]")
    assert "当事人投诉" in body_text(kill) and "更正" not in body_text(kill)
    assert "撤稿" in body_text(kill)
    events = [r.event for r in partnerlog.audit_rows(store, "paper")]
    assert events == ["published", "updated", "withdrawn", "ack"]


def test_temporary_smtp_failure_is_retried(env):
    config, store, smtp = env
    for rcpt in ("desk@partner.example", "night@partner.example"):
        smtp.handler.rcpt_rules[rcpt] = ["451 4.3.0 try again later", "250 OK"]
    store.save_article(article("a1"), T0)
    report = syndication.run(config, store, T0, sleep=lambda s: None)
    assert report.delivered == 1
    assert len(smtp.received) == 1
    statuses = [r.response_status for r in partnerlog.audit_rows(store, "paper")]
    assert statuses == [451, None]


def test_file_transport(tmp_path):
    config = site_config(tmp_path, partner_toml("paper", "email", "desk@partner.example"))
    store = Store.open(config.storage.database_url)
    try:
        store.save_article(article("a1"), T0)
        assert syndication.run(config, store, T0).delivered == 1
        [eml] = list(config.email.outbox_dir.glob("*.eml"))
        msg = message_from_bytes(eml.read_bytes(), policy=default)
        assert msg["To"] == "desk@partner.example"
        assert "来源:江城新闻网" in body_text(msg)
    finally:
        store.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(min_size=1, max_size=80))
def test_any_title_gives_one_clean_subject(tmp_path, title):
    config = site_config(tmp_path, partner_toml("paper", "email", "desk@partner.example"))
    a = article("a1", title=title)
    msg = build_email(config, config.partners[0], a, "published",
                      licensed_content(config, a, FULL),
                      idempotency_key("paper", "a1", 1, "published"), T0)
    back = BytesParser(policy=default).parsebytes(msg.as_bytes())
    subject = str(back["Subject"])
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("[授权稿件]")
    words = [w for w in title.split() if w.isprintable()]
    for w in words:
        assert w in subject
