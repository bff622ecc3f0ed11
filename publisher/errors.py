"""The publisher's exception tree.

    PublisherError
    ├── ConfigError          bad or missing configuration (exit 2)
    ├── UsageError           bad command-line usage (exit 2)
    ├── SourceError          a source could not be read, fetched or decoded
    ├── StoreError           the database could not be opened or migrated
    ├── RenderError          a feed, page or message could not be rendered
    ├── DeliveryError        mail could not be handed to the transport
    │   └── SMTPReplyError   the server answered with an error reply
    └── SyndicationError     a partner delivery failed

Library errors are wrapped with ``raise … from e``; the CLI turns any
``PublisherError`` into one line and an exit code.
"""

from __future__ import annotations


class PublisherError(Exception):
    """Base of every error the publisher raises on purpose."""

    exit_code = 1


class ConfigError(PublisherError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class UsageError(PublisherError):
    """The command was called with arguments that make no sense."""

    exit_code = 2


class SourceError(PublisherError):
    """A content source could not be read, fetched, decoded or parsed."""


class StoreError(PublisherError):
    """The database could not be opened, migrated or queried."""


class RenderError(PublisherError):
    """A feed, web page or message could not be rendered."""


class DeliveryError(PublisherError):
    """A message could not be delivered through the transport."""


class SMTPReplyError(DeliveryError):
    """The SMTP server refused a message or recipient.

    ``code`` is the basic reply code (e.g. 550); ``enhanced`` the RFC 3463
    enhanced status code when the server sent one (e.g. ``"5.1.1"``).
    """

    def __init__(self, code: int, message: str, enhanced: str | None = None):
        super().__init__(f"{code} {enhanced + ' ' if enhanced else ''}{message}")
        self.code = code
        self.enhanced = enhanced
        self.reply = message


class SyndicationError(PublisherError):
    """A partner delivery could not be made."""
