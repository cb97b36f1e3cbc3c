"""Dispositions: what an agent records about a call, defined per campaign in its file.

```yaml
script: |                      # shown on the agent's screen-pop
  您好，这里是某某银行信用卡中心……
wrapup_limit_s: 120            # wrap-up ends at the latest this long after the call
dispositions:
  promise_to_pay:
    label: {zh: 承诺还款, en: Promise to pay}
    fields: {amount: decimal, date: date}
    then: retry 3d             # rules | done | dnc | callback | retry <duration>
  callback: {label: {zh: 预约回拨, en: Callback}, then: callback}
  wrong_party: {then: done}
  do_not_call: {then: dnc}
skip_reasons:                  # preview mode: why an agent may skip the contact offered
  not_now: {label: {zh: 稍后再拨, en: Not now}, then: retry 2h}
  complaint_open: {label: {zh: 投诉处理中, en: Complaint open}, then: done}
  wrong_list: {then: done, attempt: true}   # counts against the attempt limit
```

``then`` says what the disposition does to the contact: ``rules`` (the default) leaves the
campaign's retry rules to decide, ``done`` ends it, ``dnc`` ends it and puts the number on the
do-not-call list for calls, ``callback`` books the callback the agent chose (see
``dialer.lists.callbacks``), ``retry 3d`` schedules the next attempt (the attempt limit still
holds). Form values are checked against their field's type; the record keeps no digits in
clear (amounts and dates are not identifying; free text is scrubbed).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from dialer.errors import ConfigError
from dialer.lists.durations import parse_duration
from dialer.privacy import scrub

NOTES_MAX = 1000
_THEN = re.compile(r"^(rules|done|dnc|callback|retry\s+\S+)$")


class FormType(enum.StrEnum):
    DECIMAL = "decimal"  # an amount: up to 2 decimals, >= 0
    DATE = "date"  # YYYY-MM-DD
    TEXT = "text"  # up to 200 characters, scrubbed
    INTEGER = "integer"
    FIELDS = "fields"  # a list of the campaign's field names (what the customer changed)


class ThenKind(enum.StrEnum):
    RULES = "rules"
    DONE = "done"
    DNC = "dnc"
    CALLBACK = "callback"
    RETRY = "retry"


class FormField(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type: FormType
    required: bool = True


def _shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class ThenRule(BaseModel):
    """A labelled rule of what an agent's choice does to the contact (``then``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    label: dict[Literal["zh", "en"], str] = Field(default_factory=dict)
    then: str = "rules"

    @field_validator("then")
    @classmethod
    def _then(cls, v: str) -> str:
        v = v.strip()
        if not _THEN.match(v):
            raise ValueError("then is rules, done, dnc, callback or 'retry <duration>'")
        if v.startswith("retry"):
            parse_duration(v.split(None, 1)[1])
        return v

    @property
    def then_kind(self) -> ThenKind:
        return ThenKind(self.then.split(None, 1)[0])

    @property
    def retry_after(self) -> dt.timedelta | None:
        if self.then_kind is not ThenKind.RETRY:
            return None
        return parse_duration(self.then.split(None, 1)[1])

    def title(self, code: str, lang: str) -> str:
        return self.label.get(lang) or self.label.get("en") or code.replace("_", " ")  # type: ignore[call-overload]


class DispositionSpec(ThenRule):
    fields: dict[str, Annotated[FormField, BeforeValidator(_shorthand)]] = Field(
        default_factory=dict
    )


class SkipReasonSpec(ThenRule):
    """Why an agent in preview mode skipped the contact offered, and what follows: ``then``
    (``retry 1h`` by default; ``rules`` leaves the contact as it was, ``done``, ``dnc``; never
    ``callback``) and whether the skip counts against the attempt limit (``attempt``)."""

    then: str = "retry 1h"
    attempt: bool = False

    @field_validator("then")
    @classmethod
    def _no_callback(cls, v: str) -> str:
        if v.strip() == ThenKind.CALLBACK.value:
            raise ValueError("a skip books no callback: then is rules, done, dnc or retry <d>")
        return v


#: The skip reasons of a preview campaign whose file lists none.
DEFAULT_SKIP_REASONS: dict[str, SkipReasonSpec] = {
    "not_now": SkipReasonSpec(label={"zh": "稍后再拨", "en": "Not now"}, then="retry 1h"),
    "data_to_check": SkipReasonSpec(
        label={"zh": "资料待核实", "en": "Data to check first"}, then="retry 1d"
    ),
}


def check_form(
    code: str, spec: DispositionSpec, data: Any, campaign_fields: set[str]
) -> dict[str, Any]:
    """The form's values, checked and normalised; ``ConfigError`` names the first bad one."""
    if not isinstance(data, dict):
        raise ConfigError("the disposition's fields are an object")
    unknown = set(data) - set(spec.fields)
    if unknown:
        raise ConfigError(f"{code}: no field {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {}
    for name, field in spec.fields.items():
        value = data.get(name)
        if value in (None, "", []):
            if field.required:
                raise ConfigError(f"{code}: {name} is required")
            continue
        out[name] = _value(code, name, field.type, value, campaign_fields)
    return out


def _value(code: str, name: str, kind: FormType, value: Any, campaign_fields: set[str]) -> Any:
    where = f"{code}: {name}"
    if kind is FormType.DECIMAL:
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(f"{where} is an amount like 1234.50") from None
        if not d.is_finite() or d < 0 or d.as_tuple().exponent < -2 or d > Decimal("1e12"):  # type: ignore[operator]
            raise ConfigError(f"{where} is an amount like 1234.50")
        return str(d)
    if kind is FormType.DATE:
        try:
            return dt.date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ConfigError(f"{where} is a date like 2026-12-31") from None
    if kind is FormType.INTEGER:
        if isinstance(value, bool) or not re.fullmatch(r"-?\d{1,9}", str(value)):
            raise ConfigError(f"{where} is a whole number")
        return int(value)
    if kind is FormType.FIELDS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} is a list of field names")
        bad = [v for v in value if v not in campaign_fields]
        if bad:
            raise ConfigError(f"{where}: the campaign has no field {bad[0]!r}")
        return sorted(set(value))
    text = str(value)
    if len(text) > 200:
        raise ConfigError(f"{where} is at most 200 characters")
    return scrub(text)


def clean_notes(notes: Any) -> str | None:
    if notes in (None, ""):
        return None
    if not isinstance(notes, str):
        raise ConfigError("notes are text")
    if len(notes) > NOTES_MAX:
        raise ConfigError(f"notes are at most {NOTES_MAX} characters")
    return scrub(notes)


__all__ = [
    "DEFAULT_SKIP_REASONS",
    "DispositionSpec",
    "SkipReasonSpec",
    "ThenRule",
    "FormField",
    "FormType",
    "ThenKind",
    "check_form",
    "clean_notes",
]
