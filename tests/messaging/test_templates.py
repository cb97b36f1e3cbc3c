"""Templates: sandboxed, strict about missing fields, sensitive fields masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialer import CONFIG_DIR
from dialer.app.cli import cli
from dialer.messaging.compose import render_sms, sample_values
from dialer.messaging.errors import TemplateError
from dialer.messaging.templates import TemplateLibrary
from dialer.settings import BankSettings

HOUSE = {"bank": "示例银行", "callback": "95588"}


def lib(**templates: dict) -> TemplateLibrary:
    return TemplateLibrary.from_mapping(templates)


def test_sensitive_masked_unless_allowed() -> None:
    t = lib(a={"channel": "sms", "text": "卡号{{ card_no }}"}).get("a")
    out = t.render({"card_no": "6222021234567890123"}, sensitive={"card_no"}, house=HOUSE)
    assert out.text == "卡号***"
    t = lib(a={"channel": "sms", "text": "卡号{{ card_no }}", "reveal_last": {"card_no": 4}})
    out = t.get("a").render({"card_no": "6222021234567890123"}, sensitive={"card_no"}, house=HOUSE)
    assert out.text == "卡号****0123"
    assert "622202" not in out.text
    # stored values are keyed hashes: nothing to reveal
    out = t.get("a").render({"card_no": "h1:abcdef0123"}, sensitive={"card_no"}, house=HOUSE)
    assert out.text == "卡号***"


@pytest.mark.parametrize(
    "source",
    [
        "{{ card_no._value }}",
        "{{ card_no.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% set x = [] %}{{ x.append(1) }}",
    ],
)
def test_sandbox_holds(source: str) -> None:
    t = lib(a={"channel": "sms", "text": source}).get("a")
    try:
        out = t.render({"card_no": "6222021234567890123"}, sensitive={"card_no"}, house=HOUSE)
    except TemplateError:
        return
    assert "6222" not in out.text and "subclasses" not in out.text


def test_missing_field_is_an_error() -> None:
    t = lib(a={"channel": "sms", "text": "{{ name }} {{ amount }}"}).get("a")
    with pytest.raises(TemplateError, match="amount"):
        t.render({"name": "张三"}, house=HOUSE)


def test_bad_definitions_refused() -> None:
    with pytest.raises(TemplateError, match="line 1"):
        lib(a={"channel": "sms", "text": "{{ name "})
    with pytest.raises(TemplateError, match="subject"):
        lib(a={"channel": "email", "text": "x"})
    with pytest.raises(TemplateError, match="reveal_last"):
        lib(a={"channel": "sms", "text": "x", "reveal_last": {"card_no": 8}})
    with pytest.raises(TemplateError, match="no template named 'b'"):
        lib(a={"channel": "sms", "text": "x"}).get("b")


def test_html_is_escaped_text_is_not() -> None:
    t = lib(
        e={"channel": "email", "subject": "{{ bank }}", "text": "{{ name }}", "html": "{{ name }}"}
    ).get("e")
    out = t.render({"name": "<b>张</b>"}, house=HOUSE)
    assert out.text == "<b>张</b>" and out.html == "&lt;b&gt;张&lt;/b&gt;"
    assert out.subject == "示例银行"


def test_contact_cannot_shadow_the_bank() -> None:
    t = lib(a={"channel": "sms", "text": "{{ bank }}"}).get("a")
    assert t.render({"bank": "假银行"}, house=HOUSE).text == "示例银行"


def test_shipped_templates_render_for_the_sample_campaign() -> None:
    from dialer.lists.campaigns import load_campaign_file

    spec = load_campaign_file(CONFIG_DIR / "campaigns" / "repayment-reminder-dec.yaml")
    library = TemplateLibrary.load(CONFIG_DIR / "messages")
    assert {"repayment-due-sms", "repayment-fallback-sms", "statement-email"} <= set(
        library.names()
    )
    values = sample_values(spec.fields)
    p = render_sms(library.get("repayment-due-sms"), values, sensitive=set(), bank=BankSettings())
    assert p.text.startswith("【示例银行】")
    assert p.segmentation.part_count == 1  # the reminder fits in one SMS


def test_preview_command(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    r = CliRunner().invoke(
        cli, ["--db", db, "sms", "preview", "card-offer-sms", "--set", "name=李四", "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert (
        doc["text"] == "【示例银行】李四您好，示例银行信用卡分期手续费限时8折，详询95588。回T退订"
    )
    assert doc["encoding"] == "ucs2" and doc["parts"] == 1 and doc["per_part"] == 70
    r = CliRunner().invoke(cli, ["--db", db, "sms", "preview", "--text", "中" * 80])
    assert r.exit_code == 0 and "2 parts (up to 67 each)" in r.output
    r = CliRunner().invoke(cli, ["--db", db, "sms", "preview", "nope"])
    assert r.exit_code != 0
