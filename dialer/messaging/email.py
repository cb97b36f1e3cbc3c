"""E-mail messages, out and in (pure: ``email.message`` objects, no sockets).

Out: text + HTML alternatives with the bank's name in ``From``; ``Message-ID`` from our uid;
a per-message **reply address** ``reply+<uid>@<reply domain>`` in ``Reply-To`` and a VERP
**return path** ``bounce+<uid>@<bounce domain>`` as the envelope sender, so that a reply or a
bounce names the message (and through it the contact) without guessing; marketing mail gets
``List-Unsubscribe`` (mailto ``unsubscribe+<uid>@...``) and one-click ``List-Unsubscribe-Post``
(RFC 8058).

In: ``read_inbound`` sorts a message that reached our endpoint by the address it was sent to:
a DSN (RFC 3464 ``multipart/report; report-type=delivery-status``) to a bounce address, a
reply to a reply address, an unsubscribe request. A DSN whose action is ``failed`` is a hard
bounce (the address is marked invalid); ``delayed`` is only noted.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import make_msgid

from pydantic import BaseModel, ConfigDict, Field

from dialer.errors import RemoteProtocolError
from dialer.messaging.templates import Rendered

_UID = r"[0-9a-f]{32}"


class MailSettings(BaseModel):
    """The bank's sending identity and our inbound addresses (no secrets here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_address: str = "noreply@bank.example"
    domain: str = "bank.example"  # reply+, bounce+ and unsubscribe+ addresses live here
    unsubscribe_url: str | None = None  # https://.../unsubscribe?u={uid} for one-click
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str = "dialer"
    starttls: bool = True
    cafile: str | None = None  # CA bundle for the relay's certificate (default: the system's)
    timeout_s: float = Field(30.0, gt=0)
    rate: float = Field(20.0, gt=0)  # messages per second the relay accepts from us
    listen_host: str = "127.0.0.1"  # our inbound SMTP endpoint (replies and bounces)
    listen_port: int = Field(8025, ge=0, le=65535)


class Role(enum.StrEnum):
    BOUNCE = "bounce"
    REPLY = "reply"
    UNSUBSCRIBE = "unsubscribe"


def address_for(role: Role, uid: str, domain: str) -> str:
    return f"{role.value}+{uid}@{domain}"


def role_of(rcpt: str, domain: str) -> tuple[Role, str] | None:
    """``bounce+<uid>@domain`` -> (BOUNCE, uid); anything else None."""
    m = re.fullmatch(rf"(bounce|reply|unsubscribe)\+({_UID})@{re.escape(domain)}", rcpt.lower())
    return (Role(m.group(1)), m.group(2)) if m else None


@dataclass(frozen=True)
class Outgoing:
    envelope_from: str  # the VERP return path
    to: str
    message: EmailMessage


def compose(
    rendered: Rendered, *, to: str, uid: str, bank_name: str, cfg: MailSettings
) -> Outgoing:
    if rendered.subject is None:
        raise ValueError(f"{rendered.template} has no subject")
    msg = EmailMessage(policy=policy.SMTP)
    local, _, dom = cfg.from_address.partition("@")
    msg["From"] = Address(display_name=bank_name, username=local, domain=dom)
    msg["To"] = to
    msg["Subject"] = rendered.subject
    msg["Message-ID"] = make_msgid(idstring=uid, domain=cfg.domain)
    msg["Reply-To"] = address_for(Role.REPLY, uid, cfg.domain)
    msg["X-Dialer-Message"] = uid
    if rendered.marketing:
        links = [f"<mailto:{address_for(Role.UNSUBSCRIBE, uid, cfg.domain)}>"]
        if cfg.unsubscribe_url:
            links.append(f"<{cfg.unsubscribe_url.format(uid=uid)}>")
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["List-Unsubscribe"] = ", ".join(links)
    msg.set_content(rendered.text)
    if rendered.html:
        msg.add_alternative(rendered.html, subtype="html")
    return Outgoing(address_for(Role.BOUNCE, uid, cfg.domain), to, msg)


@dataclass(frozen=True)
class Bounce:
    uid: str
    recipient: str | None
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str

    @property
    def hard(self) -> bool:
        return self.action == "failed"


@dataclass(frozen=True)
class Reply:
    uid: str
    sender: str
    text: str
    message_id: str


@dataclass(frozen=True)
class Unsubscribe:
    uid: str
    sender: str


Inbound = Bounce | Reply | Unsubscribe


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)  # policy.default builds EmailMessage
    return msg


def _dsn_fields(msg: Message) -> list[dict[str, str]]:
    """The per-recipient field groups of a delivery-status part."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        groups: list[dict[str, str]] = []
        if isinstance(payload, list):  # the parser gives one Message per field group
            for block in payload:
                if isinstance(block, Message):
                    groups.append({k.lower(): str(v) for k, v in block.items()})
        else:
            for block in str(payload).split("\n\n"):
                fields: dict[str, str] = {}
                for line in block.splitlines():
                    key, sep, value = line.partition(":")
                    if sep:
                        fields[key.strip().lower()] = value.strip()
                if fields:
                    groups.append(fields)
        return groups
    return []


def read_bounce(uid: str, msg: Message) -> Bounce:
    if msg.get_content_type() != "multipart/report":
        raise RemoteProtocolError("a message to a bounce address that is not a DSN")
    for fields in _dsn_fields(msg):
        if "action" in fields:
            rcpt = fields.get("final-recipient") or fields.get("original-recipient")
            return Bounce(
                uid,
                rcpt.split(";", 1)[-1].strip() if rcpt else None,
                fields["action"].strip().lower(),
                fields.get("status", "").strip(),
                fields.get("diagnostic-code", "")[:200],
            )
    raise RemoteProtocolError("a DSN without a recipient's action")


_QUOTE_START = re.compile(r"^(>|On .* wrote:|在.*写道[:：]|-----Original Message-----)")


def reply_text(msg: EmailMessage) -> str:
    """The customer's own words: the plain-text part without the quoted original."""
    body = msg.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    if body is not None and body.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    out = []
    for line in text.splitlines():
        if _QUOTE_START.match(line.strip()):
            break
        out.append(line)
    return "\n".join(out).strip()


def read_inbound(rcpt: str, mail_from: str, raw: bytes, domain: str) -> Inbound:
    role = role_of(rcpt, domain)
    if role is None:
        raise RemoteProtocolError(f"no such mailbox: {rcpt}")
    kind, uid = role
    msg = parse(raw)
    if kind is Role.BOUNCE:
        return read_bounce(uid, msg)
    sender = str(msg.get("From", mail_from))
    if kind is Role.UNSUBSCRIBE:
        return Unsubscribe(uid, sender)
    return Reply(uid, sender, reply_text(msg), str(msg.get("Message-ID", "")))


__all__ = [
    "Bounce",
    "Inbound",
    "MailSettings",
    "Outgoing",
    "Reply",
    "Role",
    "Unsubscribe",
    "address_for",
    "compose",
    "read_bounce",
    "read_inbound",
    "reply_text",
    "role_of",
]
