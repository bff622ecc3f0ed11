"""DKIM signing with dkimpy, verified with dkimpy against a test key (no DNS)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import dkim as dkimpy
import pytest

from publisher import confirm, dkim
from publisher import subscribers as subs
from publisher.errors import ConfigError

KEYS = Path(__file__).resolve().parent / "data" / "dkim"
SELECTOR = "news2026"


def _dnsfunc(name, timeout=5):
    assert name in (f"{SELECTOR}._domainkey.news.example.com.".encode(),
                    f"{SELECTOR}._domainkey.news.example.com".encode())
    return dkim.dns_record((KEYS / "test.pub").read_bytes()).encode()


@pytest.fixture
def dkim_config(config):
    email_cfg = replace(config.email, dkim_selector=SELECTOR, dkim_key_path=KEYS / "test.key")
    return replace(config, email=email_cfg)


def _message() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "江城新闻网 <newsletter@news.example.com>"
    msg["To"] = "reader@example.org"
    msg["Subject"] = "江城新闻网 每日精选 2026-11-26"
    msg["Date"] = "Thu, 26 Nov 2026 07:00:00 +0800"
    msg["Message-ID"] = "<abc.123@news.example.com>"
    msg["List-Id"] = "江城新闻网 daily <daily.news.example.com>"
    msg["List-Unsubscribe"] = ("<https://news.example.com/unsubscribe/TOKEN>, "
                               "<mailto:unsubscribe@news.example.com?subject=unsubscribe-TOKEN>")
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["MIME-Version"] = "1.0"
    msg.set_content("正文\n", charset="utf-8", cte="quoted-printable")
    msg.add_alternative("<p>正文</p>\n", subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes(policy=SMTP)


def _signed_headers(signed: bytes) -> list[str]:
    parsed = email.message_from_bytes(signed, policy=email.policy.default)
    tags = dict(t.strip().split("=", 1) for t in
                "".join(str(parsed["DKIM-Signature"]).split()).split(";") if "=" in t)
    return tags["h"].lower().split(":"), tags


def test_sign_and_verify(dkim_config):
    signed = dkim.sign(_message(), dkim_config)
    assert signed.startswith(b"DKIM-Signature:")
    assert dkimpy.verify(signed, dnsfunc=_dnsfunc)
    h, tags = _signed_headers(signed)
    for name in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
                 "list-unsubscribe-post", "mime-version", "content-type"):
        assert name in h
    assert h.count("list-unsubscribe") == 2 and h.count("from") == 2  # oversigned
    assert tags["d"] == "news.example.com" and tags["s"] == SELECTOR
    assert tags["c"] == "relaxed/relaxed" and tags["a"] == "rsa-sha256"


@pytest.mark.parametrize("change", [
    (b"List-Unsubscribe: <https://news.example.com/unsubscribe/TOKEN>",
     b"List-Unsubscribe: <https://evil.example/unsubscribe/TOKEN>"),
    (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x=y"),
    (b"=E6=AD=A3=E6=96=87", b"=E6=AD=A3=E6=96=88"),
])
def test_tampering_breaks_the_signature(dkim_config, change):
    signed = dkim.sign(_message(), dkim_config)
    assert change[0] in signed
    assert not dkimpy.verify(signed.replace(change[0], change[1], 1), dnsfunc=_dnsfunc)


def test_an_added_second_list_unsubscribe_breaks_the_signature(dkim_config):
    signed = dkim.sign(_message(), dkim_config)
    head, body = signed.split(b"\r\n\r\n", 1)
    forged = head + b"\r\nList-Unsubscribe: <https://evil.example/x>\r\n\r\n" + body
    assert not dkimpy.verify(forged, dnsfunc=_dnsfunc)


def test_lf_line_endings_are_signed_too(dkim_config):
    signed = dkim.sign(_message().replace(b"\r\n", b"\n"), dkim_config)
    assert b"\r\n" not in signed
    assert dkimpy.verify(signed, dnsfunc=_dnsfunc)


def test_no_key_configured_leaves_the_message_alone(config):
    message = _message()
    assert dkim.sign(message, config) is message


def test_missing_or_bad_key_is_a_config_error(dkim_config, tmp_path):
    missing = replace(dkim_config, email=replace(dkim_config.email,
                                                 dkim_key_path=tmp_path / "none.key"))
    with pytest.raises(ConfigError, match="none.key"):
        dkim.sign(_message(), missing)
    (tmp_path / "bad.key").write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n"
                                      "-----END RSA PRIVATE KEY-----\n")
    bad = replace(dkim_config, email=replace(dkim_config.email, dkim_key_path=tmp_path / "bad.key"))
    with pytest.raises(ConfigError, match="DKIM key"):
        dkim.sign(_message(), bad)


def test_confirmation_mail_is_signed(dkim_config, store):
    s, _ = subs.request_subscription(store, "reader@example.org")
    data = confirm.build(dkim_config, s)
    assert dkimpy.verify(data, dnsfunc=_dnsfunc)
    h, _ = _signed_headers(data)
    assert {"from", "to", "subject", "date", "message-id"} <= set(h)
