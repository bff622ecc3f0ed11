"""Messages built from pre-encoded pieces, checked by parsing them with email.parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.errors import DeliveryError
from publisher.message import MessageFactory, Recipient, display_text
from publisher.render import PREFS_URL, RECIPIENT, UNSUB_URL, RenderedDigest

DATE = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
TEXT = (f"江城新闻网 每日精选\n\n1. 地铁新线开通 https://news.example.com/a/1\n\n"
        f"设置: {PREFS_URL}\n退订: {UNSUB_URL}\n此邮件发送至 {RECIPIENT}。\n")
HTML = (f'<html><body><p>{"江城新闻 " * 60}</p>\n<p>发送至 {RECIPIENT}</p>'
        f'<a href="{PREFS_URL}">订阅设置</a> · <a href="{UNSUB_URL}">退订</a></body></html>\n')


def recipient(email="reader@example.com", name="张三", token="T" * 40, key="") -> Recipient:
    return Recipient(email, name, f"https://news.example.com/preferences/{token}",
                     f"https://news.example.com/unsubscribe/{token}",
                     f"mailto:unsubscribe@news.example.com?subject=unsubscribe-{token}", key)


def factory(config, subject="江城新闻网 每日精选 2026-03-02", text=TEXT, html=HTML):
    return MessageFactory(config, RenderedDigest(subject, html, text, 3), "daily", DATE)


def parse(data: bytes):
    return message_from_bytes(data, policy=default)


def bodies(msg) -> tuple[str, str]:
    text, html = list(msg.iter_parts())
    # the parser keeps the wire's CRLF; readers' clients show lines either way
    return (text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n"))


def same_name(parsed: str, expected: str) -> bool:
    """Equal; for a name too long for one encoded-word, equal but for the spaces Python's
    address parser puts between adjacent encoded-words (RFC 2047 6.2 says to ignore them)."""
    if parsed == expected:
        return True
    return len(expected.encode()) > 45 and parsed.replace(" ", "") == expected.replace(" ", "")


def raw_header(data: bytes, name: str) -> bytes:
    head = data.split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"^" + name.encode() + rb": ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)
    assert m, name
    return m.group(1)


def check_wire(data: bytes) -> None:
    """7-bit, CRLF only, header lines <= 998, body lines <= 76 (RFC 5322, RFC 2045)."""
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    head, body = data.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert not any(line.startswith(b".") for line in data.split(b"\r\n"))


def test_headers_follow_the_bulk_sender_rules(config):
    r = recipient(key="42")
    data = factory(config).build(r)
    check_wire(data)
    msg = parse(data)
    assert msg["From"].addresses[0].display_name == "江城新闻网"
    assert msg["From"].addresses[0].addr_spec == "newsletter@news.example.com"
    assert msg["To"].addresses[0].display_name == "张三"
    assert msg["To"].addresses[0].addr_spec == "reader@example.com"
    assert msg["Subject"] == "江城新闻网 每日精选 2026-03-02"
    assert msg["Date"].datetime == DATE
    assert msg["Message-ID"].endswith("@news.example.com>") and "42." in msg["Message-ID"]
    assert msg["List-Id"] == "江城新闻网 daily <daily.news.example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert not msg.defects and not any(p.defects for p in msg.iter_parts())


def test_list_unsubscribe_is_one_plain_ascii_line(config):
    r = recipient(token="x" * 180)
    data = factory(config).build(r)
    value = raw_header(data, "List-Unsubscribe")
    assert b"\r\n" not in value and b"=?" not in value
    assert value.decode("ascii") == f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>"
    assert raw_header(data, "Subject").startswith(b"=?utf-8?b?")
    assert parse(data)["List-Unsubscribe"] == f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>"


def test_both_bodies_decode_to_the_rendered_text_with_the_links(config):
    f = factory(config)
    r = recipient()
    text, html = bodies(parse(f.build(r)))
    assert (text, html) == f.expected_bodies(r)
    assert r.unsubscribe_url in text and f'href="{r.unsubscribe_url}"' in html
    assert "PUBLISHER" not in text + html


def test_message_id_is_unique_per_recipient_and_stable_per_row(config):
    f = factory(config)
    ids = {parse(f.build(recipient(f"r{i}@example.com")))["Message-ID"] for i in range(50)}
    assert len(ids) == 50
    again = {parse(f.build(recipient(key="7")))["Message-ID"] for _ in range(2)}
    assert len(again) == 1


@pytest.mark.parametrize("name", ["x\r\nBcc: victim@example.com", "王\n五", "a\x00b"])
def test_line_breaks_in_data_never_reach_a_header(config, name):
    f = factory(config, subject="标题\r\nBcc: victim@example.com")
    msg = parse(f.build(recipient(name=name)))
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and "\n" not in str(msg["To"])
    assert msg["To"].addresses[0].display_name == display_text(name)


@pytest.mark.parametrize("email", ["用户@example.com", "a b@example.com", "no-at-sign"])
def test_unusable_addresses_are_refused(config, email):
    with pytest.raises(DeliveryError):
        factory(config).build(recipient(email))


def test_a_name_of_fifteen_cjk_characters_is_one_encoded_word(config):
    name = "欧阳" * 7 + "娜"
    data = factory(config).build(recipient(name=name))
    assert raw_header(data, "To").count(b"=?utf-8?b?") == 1
    assert parse(data)["To"].addresses[0].display_name == name


def test_idn_domain_is_sent_as_punycode(config):
    msg = parse(factory(config).build(recipient("reader@bücher.example")))
    assert msg["To"].addresses[0].addr_spec == "reader@xn--bcher-kva.example"


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
segments = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
tokens = st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=400)
placeholders = st.sampled_from([PREFS_URL, UNSUB_URL, RECIPIENT])


@st.composite
def bodies_with_slots(draw):
    parts = draw(st.lists(st.tuples(segments, placeholders), max_size=5))
    return "".join(a + b for a, b in parts) + draw(segments)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, subject=names, text=bodies_with_slots(), html=bodies_with_slots(), token=tokens)
def test_any_text_round_trips(config, name, subject, text, html, token):
    f = factory(config, subject=subject or "x", text=text, html=html)
    r = recipient(name=name, token=token)
    data = f.build(r)
    check_wire(data)
    msg = parse(data)
    assert same_name(msg["To"].addresses[0].display_name, display_text(name))
    assert msg["To"].addresses[0].addr_spec == "reader@example.com"
    assert msg["Subject"] == display_text(subject or "x")
    assert msg["List-Unsubscribe"] == f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>"
    assert bodies(msg) == f.expected_bodies(r)
