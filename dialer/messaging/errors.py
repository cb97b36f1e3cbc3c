"""Messaging errors; they hang under ``DialerError`` (see ``dialer.errors``).

DialerError
└── MessagingError              something about a message or a channel is wrong
    ├── TemplateError           a template does not parse, names a missing field, or escapes
    ├── GatewayError            the SMS gateway or SMTP server did not take a message
    │   ├── GatewayUnavailable  ... and nothing reached it: safe to try again
    │   └── GatewayInDoubt      ... and it may have taken it: never sent again blindly
    └── MessageRejected         the gateway refused this message for good (bad number, auth)
"""

from __future__ import annotations

from dialer.errors import DialerError


class MessagingError(DialerError):
    """Something about a message or a channel is wrong."""


class TemplateError(MessagingError):
    """A template does not parse, names a missing field, or tries to escape the sandbox."""


class GatewayError(MessagingError):
    """The gateway did not take the message."""


class GatewayUnavailable(GatewayError):
    """Nothing reached the gateway (refused connection, 503): the message may be sent again."""


class GatewayInDoubt(GatewayError):
    """The request left but no answer came back: the gateway may have taken it."""


class MessageRejected(MessagingError):
    """The gateway refused the message for good."""


class RecipientRefused(MessageRejected):
    """The relay refused the recipient's address for good."""
