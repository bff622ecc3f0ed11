"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives and
can be told to answer errors or drop the connection for chosen recipients."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=default)


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    # recipient -> list of replies to give on successive RCPT attempts ("250 OK" ends the list)
    rcpt_rules: dict[str, list[str]] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)  # recipients whose DATA drops the connection once
    lock: threading.Lock = field(default_factory=threading.Lock)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            n = self.rcpt_attempts.get(address, 0)
            self.rcpt_attempts[address] = n + 1
            rules = self.rcpt_rules.get(address)
        if rules:
            reply = rules[min(n, len(rules) - 1)]
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.drop:
                with self.lock:
                    self.drop.discard(rcpt)
                session.transport.close()
                return "421 4.4.2 connection dropped"
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or envelope.content)))
        return "250 2.0.0 OK queued"

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.received for r in m.rcpt_tos]


class SMTPServer:
    def __init__(self, handler: Handler | None = None, **kwargs):
        self.handler = handler or Handler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=0,
                                     server_kwargs={"decode_data": False}, **kwargs)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.server.sockets[0].getsockname()[1]

    @property
    def received(self) -> list[Received]:
        return self.handler.received


__all__ = ["SMTPServer", "Handler", "Received", "SMTPProtocol"]
