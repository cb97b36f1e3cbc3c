"""E-mail composition and inbound reading (pure)."""

from __future__ import annotations

import pytest

from dialer.errors import RemoteProtocolError
from dialer.messaging import email
from dialer.messaging.config import load_messaging_settings
from dialer.messaging.templates import Channel, Rendered
from dialer.settings import load_settings

UID = "0123456789abcdef0123456789abcdef"
CFG = email.MailSettings(domain="bank.example")


def test_addresses_name_the_message() -> None:
    assert email.role_of(f"Bounce+{UID}@Bank.Example", "bank.example") == (email.Role.BOUNCE, UID)
    assert email.role_of(f"reply+{UID}@other.example", "bank.example") is None
    assert email.role_of("reply+123@bank.example", "bank.example") is None


def test_compose_and_read_back_a_reply() -> None:
    r = Rendered("t", Channel.EMAIL, False, "正文", subject="主题", html="<p>正文</p>")
    out = email.compose(r, to="a@customer.test", uid=UID, bank_name="示例银行", cfg=CFG)
    assert out.envelope_from == f"bounce+{UID}@bank.example"
    raw = (
        f"From: a@customer.test\r\nTo: reply+{UID}@bank.example\r\nMessage-ID: <x@c>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n好的\r\n在 2026年12月3日 写道：\r\n> 正文\r\n"
    ).encode()
    item = email.read_inbound(f"reply+{UID}@bank.example", "a@customer.test", raw, CFG.domain)
    assert isinstance(item, email.Reply) and item.text == "好的" and item.uid == UID
    with pytest.raises(RemoteProtocolError):
        email.read_inbound(f"bounce+{UID}@bank.example", "", raw, CFG.domain)


def test_shipped_messaging_settings_load() -> None:
    m = load_messaging_settings(load_settings())
    assert m.keywords.confirm == ("1", "是", "Y", "YES")
    assert m.sms.kannel.callback_base.startswith("http://127.0.0.1")
