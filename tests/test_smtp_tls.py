"""The SMTP transport over TLS with AUTH, against real aiosmtpd servers on 127.0.0.1:
STARTTLS, implicit TLS (SMTPS), a wrong password, and a certificate nobody vouches for."""

from __future__ import annotations

import socket
import ssl
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from publisher.config import SMTPConfig
from publisher.errors import DeliveryError
from publisher.transport import SMTPTransport
from tests.support.smtpserver import Handler

USER, PASSWORD = "newsletter", "correct horse battery staple"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def _server_context(authority) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def starttls_server(ca):
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(),
                            tls_context=_server_context(ca[0]), require_starttls=True,
                            authenticator=_authenticator, auth_required=True,
                            auth_require_tls=True)
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def smtps_server(ca):
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(),
                            ssl_context=_server_context(ca[0]), authenticator=_authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield controller, handler
    controller.stop()


def message() -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "news@example.com", "reader@example.com", "测试"
    m.set_content("加密投递。")
    return m.as_bytes()


def config(port: int, security: str, ca_file=None, password_env="TLS_TEST_PW") -> SMTPConfig:
    return SMTPConfig(host="127.0.0.1", port=port, security=security, username=USER,
                      password_env=password_env, timeout=10, ca_file=ca_file)


def test_starttls_with_auth_delivers(starttls_server, ca, monkeypatch):
    controller, handler = starttls_server
    monkeypatch.setenv("TLS_TEST_PW", PASSWORD)
    t = SMTPTransport(config(controller.port, "starttls", ca[1]))
    t.send("news@example.com", ["reader@example.com"], message())
    t.close()
    [got] = handler.received
    assert got.rcpt_tos == ["reader@example.com"]
    assert message_from_bytes(got.data, policy=default).get_content().strip() == "加密投递。"


# aiosmtpd does not count implicit TLS (SMTPS) as TLS for auth_require_tls, so this server
# allows AUTH without it and warns; the whole session is encrypted all the same.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls_delivers(smtps_server, ca, monkeypatch):
    controller, handler = smtps_server
    monkeypatch.setenv("TLS_TEST_PW", PASSWORD)
    t = SMTPTransport(config(controller.port, "ssl", ca[1]))
    t.send("news@example.com", ["reader@example.com"], message())
    t.close()
    assert [r.rcpt_tos for r in handler.received] == [["reader@example.com"]]


def test_wrong_password_is_a_clear_error(starttls_server, ca, monkeypatch):
    controller, handler = starttls_server
    monkeypatch.setenv("TLS_TEST_PW", "wrong")
    t = SMTPTransport(config(controller.port, "starttls", ca[1]))
    with pytest.raises(DeliveryError, match="authentication failed") as info:
        t.send("news@example.com", ["reader@example.com"], message())
    assert "wrong" not in str(info.value)  # the secret never reaches the message
    assert handler.received == []


def test_untrusted_certificate_is_refused(starttls_server, monkeypatch):
    controller, handler = starttls_server
    monkeypatch.setenv("TLS_TEST_PW", PASSWORD)
    t = SMTPTransport(config(controller.port, "starttls"))  # only the system CAs
    with pytest.raises(DeliveryError, match="cannot connect") as info:
        t.send("news@example.com", ["reader@example.com"], message())
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value)
    assert handler.received == []


def test_plain_connection_to_a_starttls_only_server_is_refused(starttls_server, monkeypatch):
    controller, handler = starttls_server
    monkeypatch.setenv("TLS_TEST_PW", PASSWORD)
    t = SMTPTransport(config(controller.port, "none"))
    with pytest.raises(DeliveryError):
        t.send("news@example.com", ["reader@example.com"], message())
    assert handler.received == []
