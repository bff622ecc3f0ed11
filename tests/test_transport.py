"""The SMTP transport against aiosmtpd: pipelined or not, error replies, drops, dots."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from publisher.config import SMTPConfig
from publisher.errors import DeliveryError, SMTPReplyError
from publisher.status import send_progress
from publisher.transport import SMTPTransport, dot_stuff
from tests.support.smtpserver import Handler, SMTPServer

MESSAGE = (b"From: a@news.example.com\r\nTo: b@example.com\r\nSubject: t\r\n\r\n"
           b".leading dot\r\nmiddle\r\n.\r\n..two\r\nend\r\n")


@pytest.mark.parametrize("pipelining", [True, False])
def test_messages_arrive_intact_with_and_without_pipelining(pipelining):
    with SMTPServer(Handler(pipelining=pipelining)) as server:
        t = SMTPTransport(SMTPConfig(port=server.port, timeout=5))
        for i in range(3):
            t.send("a@news.example.com", [f"r{i}@example.com"], MESSAGE)
        assert t.connect().has_extn("pipelining") == pipelining
        t.close()
        assert [m.data.replace(b"\r\n", b"\n") for m in server.received] == \
            [MESSAGE.replace(b"\r\n", b"\n")] * 3
        assert server.handler.connections == 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_error_replies_carry_codes_and_the_connection_is_reset(pipelining):
    handler = Handler(pipelining=pipelining, rcpt_rules={"gone@example.com": ["550 5.1.1 no"]},
                      data_rules={"spam@example.com": ["554 5.7.1 spam"]})
    with SMTPServer(handler) as server:
        t = SMTPTransport(SMTPConfig(port=server.port, timeout=5))
        with pytest.raises(SMTPReplyError) as e:
            t.send("a@news.example.com", ["gone@example.com"], MESSAGE)
        assert (e.value.code, e.value.enhanced) == (550, "5.1.1")
        with pytest.raises(SMTPReplyError) as e:
            t.send("a@news.example.com", ["spam@example.com"], MESSAGE)
        assert (e.value.code, e.value.enhanced) == (554, "5.7.1")
        t.send("a@news.example.com", ["ok@example.com"], MESSAGE)
        t.close()
        assert server.handler.recipients() == ["ok@example.com"]
        assert server.handler.commands["RSET"] >= 1 and server.handler.connections == 1


def test_a_dropped_connection_is_an_error_and_the_next_send_reconnects():
    with SMTPServer(Handler(drop={"x@example.com"})) as server:
        t = SMTPTransport(SMTPConfig(port=server.port, timeout=5))
        with pytest.raises(DeliveryError) as e:
            t.send("a@news.example.com", ["x@example.com"], MESSAGE)
        assert not isinstance(e.value, SMTPReplyError) or e.value.code == 421
        t.send("a@news.example.com", ["x@example.com"], MESSAGE)
        t.close()
        assert server.handler.recipients() == ["x@example.com"]
        assert server.handler.connections == 2


def test_dot_stuffing_and_line_ends():
    assert dot_stuff(b".a\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n.\r\n"
    assert dot_stuff(b"x\r\n") == b"x\r\n.\r\n"


def test_progress_bar_shows_count_and_rate_on_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with send_progress(console) as update:
        update(5, 10)
        update(10, 10)
    assert "10/10" in buf.getvalue() and "msg/s" in buf.getvalue()
    with send_progress(Console(file=io.StringIO(), force_terminal=False)) as update:
        assert update is None
