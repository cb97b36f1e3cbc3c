"""From a template and a contact to the exact text that goes out (pure).

The bank's facts come from ``settings.bank``; the SMS signature is its name in 【】 at the
start, and marketing SMS end with the opt-out suffix. What ``preview`` shows is what is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dialer.lists.campaigns import FieldSpec, FieldType
from dialer.messaging import sms
from dialer.messaging.templates import Channel, Rendered, Template
from dialer.settings import BankSettings


def house_of(bank: BankSettings, language: str = "zh") -> dict[str, str]:
    """The bank's own facts a template may use."""
    return {
        "bank": bank.name_zh if language == "zh" else bank.name_en,
        "callback": bank.callback_number,
    }


@dataclass(frozen=True)
class SmsPreview:
    rendered: Rendered
    text: str  # signature + body (+ opt-out suffix)
    segmentation: sms.Segmentation


def sms_text(rendered: Rendered, bank: BankSettings) -> SmsPreview:
    if rendered.channel is not Channel.SMS:
        raise ValueError(f"{rendered.template} is not an SMS template")
    text = sms.compose(
        rendered.text,
        signature=sms.signature_of(bank.name_zh),
        marketing=rendered.marketing,
    )
    return SmsPreview(rendered, text, sms.segment(text))


def render_sms(
    template: Template,
    values: Mapping[str, Any],
    *,
    sensitive: set[str],
    bank: BankSettings,
    language: str = "zh",
) -> SmsPreview:
    rendered = template.render(values, sensitive=sensitive, house=house_of(bank, language))
    return sms_text(rendered, bank)


_SAMPLES: dict[FieldType, Any] = {
    FieldType.DECIMAL: Decimal("12345.67"),
    FieldType.DATE: dt.date(2026, 12, 20),
    FieldType.TEXT: "示例",
    FieldType.INTEGER: 12,
}


def sample_values(fields: Mapping[str, FieldSpec], name: str = "张三") -> dict[str, Any]:
    """Plausible values for a preview, one per field (digits as long as the field)."""
    out: dict[str, Any] = {"name": name}
    for key, spec in fields.items():
        if spec.type is FieldType.DIGITS:
            out[key] = "".join(str((i + 1) % 10) for i in range(spec.length or 4))
        else:
            out[key] = _SAMPLES[spec.type]
    return out


__all__ = ["SmsPreview", "house_of", "render_sms", "sample_values", "sms_text"]
