"""Kannel, the SMS gateway: the only module that knows its wire format.

Three HTTP conversations, all on loopback or the bank's LAN:

- we call smsbox's ``sendsms`` (POST, parameters in ``X-Kannel-*`` headers, never GET: see
  ``SendsmsRequest``): one request per message, the text in UTF-8 with ``coding`` 0 (GSM
  7-bit) or 2 (UCS-2); Kannel splits long texts itself with the
  same rules as ``dialer.messaging.sms`` (``concatenation = true``, ``max-messages``).
  ``202`` with ``0: Accepted for delivery`` or ``3: Queued for later delivery`` means Kannel
  has it; ``4xx`` is a refusal for good; ``5xx`` and a refused connection mean nothing was
  taken. A request that left with no answer is *in doubt*: it is never sent again blindly.
- Kannel calls our ``dlr-url`` for each delivery report; the URL carries our message id
  (``uid``) and Kannel's escapes (``%d`` report type, ``%A`` SMSC answer, ``%T`` time).
- Kannel's ``sms-service`` calls our MO URL for each incoming SMS (``%p`` sender, ``%P``
  receiver, ``%a`` text, recoded to UTF-8 by ``mo-recode``, ``%I`` Kannel's id, ``%t`` time).

Idempotence is ours: Kannel has no client message id, so each message has one ``uid`` from
the store, is handed to Kannel at most once unless Kannel provably did not take it, and every
report or reply is matched by that uid / Kannel's MO id, so a repeated callback changes
nothing. The transport is injected (``Transport``), so an SMPP adapter can sit beside this
one behind the same ``SmsGateway`` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

import h11
from pydantic import BaseModel, ConfigDict, Field

from dialer.errors import RemoteProtocolError
from dialer.messaging.errors import GatewayInDoubt, GatewayUnavailable, MessageRejected
from dialer.messaging.lifecycle import MsgEvent
from dialer.messaging.sms import KANNEL_CODING, Encoding

DLR_PATH = "/kannel/dlr"
MO_PATH = "/kannel/mo"


class KannelSettings(BaseModel):
    """Where our smsbox is and how to use it (the password comes from the environment)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sendsms_url: str = "http://127.0.0.1:13013/cgi-bin/sendsms"
    username: str = "dialer"
    smsc_id: str | None = None  # route to one SMSC (Kannel's smsc-id); None: Kannel chooses
    sender: str = "106900000000"  # the bank's SMS service number
    rate: float = Field(100.0, gt=0, le=10000)  # parts per second: the SMSC's throughput
    max_parts: int = Field(10, ge=1, le=255)
    validity_min: int | None = Field(None, ge=1)  # the network stops trying after this
    request_timeout_s: float = Field(10.0, gt=0)
    callback_base: str = "http://127.0.0.1:8091"  # our endpoint, as Kannel reaches it
    # bearerbox's status page (admin port); with it a doubt with no later traffic can end:
    # Kannel holding nothing and no report for it means Kannel never took it
    status_url: str | None = None  # e.g. http://127.0.0.1:13000/status.xml


@dataclass(frozen=True)
class OutboundSms:
    uid: str
    to: str  # E.164
    text: str
    encoding: Encoding
    parts: int


class DlrType(enum.IntEnum):
    """Kannel's delivery report types (``%d``); the mask we ask for is their sum."""

    DELIVERED = 1
    UNDELIVERABLE = 2
    BUFFERED = 4
    SMSC_ACK = 8
    SMSC_REJECT = 16


DLR_MASK = sum(DlrType)


class SubmitStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # "0: Accepted for delivery"
    QUEUED = "queued"  # "3: Queued for later delivery" (Kannel stores it; still taken)


@dataclass(frozen=True)
class DeliveryReport:
    uid: str
    type: DlrType
    answer: str  # the SMSC's words, e.g. "ACK/" or "id:... stat:EXPIRED ..."
    at: dt.datetime | None

    @property
    def expired(self) -> bool:
        return self.type is DlrType.UNDELIVERABLE and "EXPIRED" in self.answer.upper()


@dataclass(frozen=True)
class IncomingSms:
    gateway_id: str  # Kannel's id for the MO message: a repeated callback is recognised
    sender: str
    receiver: str
    text: str
    at: dt.datetime | None


# --- requests and answers (pure) ----------------------------------------------------------


def dlr_url(cfg: KannelSettings, uid: str) -> str:
    """Our delivery-report URL for one message, with Kannel's escapes left for Kannel."""
    return f"{cfg.callback_base}{DLR_PATH}?uid={quote(uid)}&type=%d&answer=%A&ts=%T"


def mo_url(callback_base: str) -> str:
    """The ``get-url`` of the ``sms-service`` that hands incoming SMS to us."""
    return f"{callback_base}{MO_PATH}?id=%I&from=%p&to=%P&text=%a&ts=%t"


@dataclass(frozen=True)
class SendsmsRequest:
    """One ``POST`` to sendsms: parameters as ``X-Kannel-*`` headers, the text as the body.

    POST, not GET: an HTTP client may silently repeat a GET whose connection broke (GET is
    "idempotent" to HTTP; sendsms is not: aiohttp does exactly that, and the SMS went out
    twice when smsbox died mid-request). Nobody repeats a POST."""

    headers: dict[str, str]
    body: bytes


def sendsms_request(msg: OutboundSms, cfg: KannelSettings, password: str) -> SendsmsRequest:
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "X-Kannel-Username": cfg.username,
        "X-Kannel-Password": password,
        "X-Kannel-From": cfg.sender,
        "X-Kannel-To": msg.to,
        "X-Kannel-Coding": str(KANNEL_CODING[msg.encoding]),
        "X-Kannel-DLR-Mask": str(DLR_MASK),
        "X-Kannel-DLR-Url": dlr_url(cfg, msg.uid),
    }
    if cfg.smsc_id:
        headers["X-Kannel-SMSC"] = cfg.smsc_id
    if cfg.validity_min:
        headers["X-Kannel-Validity"] = str(cfg.validity_min)
    return SendsmsRequest(headers, msg.text.encode("utf-8"))


def read_sendsms_answer(status: int, body: str) -> SubmitStatus:
    """Kannel's answer to ``sendsms``; raises when it did not take the message."""
    text = body.strip()
    if status == 202 or status == 200:
        if text.startswith("0:"):
            return SubmitStatus.ACCEPTED
        if text.startswith("3:"):
            return SubmitStatus.QUEUED
        raise RemoteProtocolError(f"sendsms answered {status} {text[:80]!r}")
    if status >= 500:
        raise GatewayUnavailable(f"sendsms: {status} {text[:80]}")
    raise MessageRejected(f"sendsms: {status} {text[:80]}")


def _time(value: str | None) -> dt.datetime | None:
    if not value or not value.strip().isdigit():
        return None
    return dt.datetime.fromtimestamp(int(value), dt.UTC)


def read_dlr(query: Mapping[str, str]) -> DeliveryReport:
    uid = query.get("uid", "")
    try:
        kind = DlrType(int(query.get("type", "")))
    except ValueError:
        raise RemoteProtocolError(f"delivery report with type {query.get('type')!r}") from None
    if not uid:
        raise RemoteProtocolError("delivery report without uid")
    return DeliveryReport(uid, kind, query.get("answer", ""), _time(query.get("ts")))


def read_mo(query: Mapping[str, str]) -> IncomingSms:
    sender = query.get("from", "").strip()
    if not sender or not query.get("id"):
        raise RemoteProtocolError("incoming SMS without sender or id")
    return IncomingSms(
        gateway_id=query["id"],
        sender=sender,
        receiver=query.get("to", ""),
        text=query.get("text", ""),
        at=_time(query.get("ts")),
    )


def read_status(xml: str) -> int:
    """Messages bearerbox still holds for sending (its queues, its store, each SMSC link's
    queue) from ``status.xml``."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise RemoteProtocolError(f"bearerbox status is not XML: {exc}") from exc

    def num(path: str) -> int:
        text = root.findtext(path)
        if text is None:
            raise RemoteProtocolError(f"bearerbox status without {path}")
        return max(0, int(text.strip() or 0))

    held = num("sms/sent/queued") + num("sms/storesize")
    held += sum(max(0, int((q.text or "0").strip())) for q in root.iterfind("smscs/smsc/queued"))
    return held


def service_groups(
    callback_base: str, *, username: str = "dialer", password: str = "<DIALER_KANNEL_PASSWORD>"
) -> str:
    """The ``sendsms-user`` and ``sms-service`` groups to add to ``kannel.conf``."""
    return (
        "group = sendsms-user\n"
        f"username = {username}\n"
        f"password = {password}\n"
        "max-messages = 10\n"
        "concatenation = true\n"
        "\n"
        "group = sms-service\n"
        "keyword = default\n"
        "catch-all = true\n"
        "max-messages = 0\n"
        f'get-url = "{mo_url(callback_base)}"\n'
    )


# --- the gateway interface and Kannel's adapter ------------------------------------------------


class SmsGateway(Protocol):
    """What the dispatcher needs from any SMS gateway (Kannel today, SMPP tomorrow)."""

    @property
    def rate(self) -> float:
        """Parts per second the gateway accepts (its throttle)."""
        ...

    async def submit(self, msg: OutboundSms) -> SubmitStatus:
        """Hand one message over. Raises GatewayUnavailable (nothing taken: try again),
        GatewayInDoubt (may have been taken: never resend blindly) or MessageRejected."""
        ...

    async def held(self) -> int | None:
        """Messages the gateway still holds for sending (None: it cannot tell)."""
        ...

    async def close(self) -> None: ...


#: One HTTP POST: (url, request, timeout) -> (status, body). Raises ConnectionError when the
#: request never left, TimeoutError/OSError when it left and no answer came back.
Transport = Callable[[str, SendsmsRequest, float], Awaitable[tuple[int, str]]]


class H11Transport:
    """One connection per request, the request written in ONE segment (h11 frames it).

    Why not aiohttp here: it writes the headers and the body as two TCP segments, and smsbox
    answers such a request only after the peer's delayed ACK (~20 ms instead of ~0.3 ms per
    message on loopback), which caps a dispatcher at ~35 messages/s whatever the link's
    throughput. A fresh connection per request also means a broken pooled connection can
    never pass for a doubt."""

    async def __call__(self, url: str, req: SendsmsRequest, timeout: float) -> tuple[int, str]:
        return await self.request("POST", url, req.headers, req.body, timeout)

    async def get(self, url: str, timeout: float) -> tuple[int, str]:
        return await self.request("GET", url, {}, b"", timeout)

    async def request(
        self, method: str, url: str, extra: Mapping[str, str], body: bytes, timeout: float
    ) -> tuple[int, str]:
        u = urlsplit(url)
        host, port = u.hostname or "127.0.0.1", u.port or 80
        target = u.path + (f"?{u.query}" if u.query else "")
        conn = h11.Connection(h11.CLIENT)
        headers = [
            ("Host", f"{host}:{port}"),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            *extra.items(),
        ]
        wire = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        wire += (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"{host}:{port}: {exc}") from exc
        try:
            writer.write(wire)
            return await asyncio.wait_for(self._answer(conn, reader), timeout)
        except (OSError, TimeoutError, h11.RemoteProtocolError) as exc:
            raise TimeoutError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @staticmethod
    async def _answer(conn: h11.Connection, reader: asyncio.StreamReader) -> tuple[int, str]:
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body.decode("utf-8", "replace")
            elif isinstance(event, h11.ConnectionClosed):
                raise TimeoutError("connection closed before the answer")

    async def close(self) -> None:
        return None


class KannelGateway:
    def __init__(
        self,
        cfg: KannelSettings,
        password: str,
        transport: Transport | None = None,
        *,
        status_password: str | None = None,
    ) -> None:
        self.cfg = cfg
        self._password = password
        self._status_password = status_password
        self._own = transport is None
        self._transport: Transport = transport or H11Transport()

    @property
    def rate(self) -> float:
        return self.cfg.rate

    async def submit(self, msg: OutboundSms) -> SubmitStatus:
        req = sendsms_request(msg, self.cfg, self._password)
        try:
            status, body = await self._transport(
                self.cfg.sendsms_url, req, self.cfg.request_timeout_s
            )
        except ConnectionError as exc:
            raise GatewayUnavailable(f"sendsms: {exc}") from exc
        except (TimeoutError, OSError) as exc:
            raise GatewayInDoubt(f"sendsms: no answer ({exc})") from exc
        return read_sendsms_answer(status, body)

    async def held(self) -> int | None:
        """Messages bearerbox still holds (None: no status page configured or reachable)."""
        if not self.cfg.status_url:
            return None
        url = f"{self.cfg.status_url}?password={quote(self._status_password or '')}"
        try:
            status, body = await H11Transport().get(url, self.cfg.request_timeout_s)
            if status != 200:
                return None
            return read_status(body)
        except (ConnectionError, TimeoutError, RemoteProtocolError):
            return None

    async def close(self) -> None:
        if self._own and isinstance(self._transport, H11Transport):
            await self._transport.close()


__all__ = [
    "DLR_MASK",
    "DLR_PATH",
    "MO_PATH",
    "H11Transport",
    "DeliveryReport",
    "DlrType",
    "IncomingSms",
    "KannelGateway",
    "KannelSettings",
    "OutboundSms",
    "SmsGateway",
    "SubmitStatus",
    "Transport",
    "dlr_url",
    "event_of",
    "mo_url",
    "read_dlr",
    "read_mo",
    "read_sendsms_answer",
    "read_status",
    "SendsmsRequest",
    "sendsms_request",
    "service_groups",
]


def event_of(report: DeliveryReport) -> MsgEvent:
    """Kannel's report type as a lifecycle event."""
    if report.type is DlrType.UNDELIVERABLE:
        return MsgEvent.EXPIRED if report.expired else MsgEvent.FAILED
    return _EVENT_OF_DLR[report.type]


_EVENT_OF_DLR: dict[DlrType, MsgEvent] = {
    DlrType.DELIVERED: MsgEvent.DELIVERED,
    DlrType.BUFFERED: MsgEvent.BUFFERED,
    DlrType.SMSC_ACK: MsgEvent.SMSC_ACK,
    DlrType.SMSC_REJECT: MsgEvent.FAILED,
}
