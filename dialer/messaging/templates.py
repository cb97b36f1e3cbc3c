"""Message templates: one sandboxed Jinja2 library for SMS and e-mail (pure).

A template file under ``config/messages/`` maps template names to definitions::

    repayment-due-sms:
      channel: sms
      purpose: service            # marketing adds the opt-out suffix / List-Unsubscribe
      reveal_last: {card_no: 4}   # sensitive fields this template may show the last digits of
      text: "{{ name }}您好，您尾号{{ card_no }}的信用卡应还{{ amount_due }}元。回复1确认。"

E-mail templates have ``subject``, ``text`` and ``html`` (HTML is autoescaped). Every
template sees the contact's ``name`` and fields, ``bank`` (the bank's name from settings)
and ``callback`` (its service number); a contact field never shadows those. A sensitive field renders as ``***`` (or ``****1234`` where the template is allowed
its last digits and the digits are known); its value cannot be reached from the template:
the environment is Jinja2's immutable sandbox and the value sits behind a private attribute.
A template naming a field the contact lacks is an error, never an empty string.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dialer.messaging.errors import TemplateError
from dialer.privacy import is_hashed

_MASK = "***"


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"


class MessagePurpose(enum.StrEnum):
    SERVICE = "service"
    MARKETING = "marketing"


class Sensitive:
    """A sensitive value in a template: prints masked, keeps the value out of reach."""

    __slots__ = ("_value", "_keep")

    def __init__(self, value: Any, keep: int = 0) -> None:
        self._value = value
        self._keep = keep

    def __str__(self) -> str:
        value = "" if self._value is None else str(self._value)
        digits = re.sub(r"\D", "", value)
        if self._keep <= 0 or is_hashed(value) or len(digits) <= self._keep:
            return _MASK
        return "*" * 4 + digits[-self._keep :]

    def __html__(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"Sensitive({self})"


class TemplateSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    channel: Channel
    purpose: MessagePurpose = MessagePurpose.SERVICE
    reveal_last: dict[str, int] = Field(default_factory=dict)
    text: str = Field(min_length=1)
    subject: str | None = None
    html: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> TemplateSpec:
        if self.channel is Channel.EMAIL and not self.subject:
            raise ValueError("an e-mail template needs a subject")
        if self.channel is Channel.SMS and (self.subject or self.html):
            raise ValueError("an SMS template has only text")
        for field, keep in self.reveal_last.items():
            if not 1 <= keep <= 4:
                raise ValueError(f"reveal_last.{field}: 1 to 4 digits")
        return self

    @property
    def marketing(self) -> bool:
        return self.purpose is MessagePurpose.MARKETING


@dataclass(frozen=True)
class Rendered:
    template: str
    channel: Channel
    marketing: bool
    text: str
    subject: str | None = None
    html: str | None = None


_TEXT_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_HTML_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True)


def _compile(env: jinja2.Environment, source: str, where: str) -> jinja2.Template:
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: line {exc.lineno}: {exc.message}") from exc


def _variables(env: jinja2.Environment, source: str) -> set[str]:
    return set(meta.find_undeclared_variables(env.parse(source)))


class Template:
    """One compiled template."""

    def __init__(self, spec: TemplateSpec, *, source: str | None = None) -> None:
        self.spec = spec
        where = f"{source + ': ' if source else ''}{spec.name}"
        self._text = _compile(_TEXT_ENV, spec.text, f"{where}.text")
        self._subject = (
            _compile(_TEXT_ENV, spec.subject, f"{where}.subject") if spec.subject else None
        )
        self._html = _compile(_HTML_ENV, spec.html, f"{where}.html") if spec.html else None

    @property
    def name(self) -> str:
        return self.spec.name

    def variables(self) -> set[str]:
        """Names the template reads (contact fields, ``name``, ``bank``)."""
        out = _variables(_TEXT_ENV, self.spec.text)
        if self.spec.subject:
            out |= _variables(_TEXT_ENV, self.spec.subject)
        if self.spec.html:
            out |= _variables(_HTML_ENV, self.spec.html)
        return out

    def context(
        self, values: Mapping[str, Any], *, sensitive: Iterable[str], house: Mapping[str, Any]
    ) -> dict[str, Any]:
        secret = set(sensitive)
        ctx: dict[str, Any] = dict(house)
        for key, value in values.items():
            if key in ctx:
                continue  # the bank's facts are not overridden by a contact's data
            if key in secret:
                ctx[key] = Sensitive(value, self.spec.reveal_last.get(key, 0))
            else:
                ctx[key] = "" if value is None else value
        return ctx

    def render(
        self,
        values: Mapping[str, Any],
        *,
        sensitive: Iterable[str] = (),
        house: Mapping[str, Any],
    ) -> Rendered:
        """Render for one contact; raises TemplateError naming what is missing or forbidden.

        ``house`` holds the bank's own facts (``bank``, ``callback``); contact values win
        over nothing: a contact field may not shadow them."""
        ctx = self.context(values, sensitive=sensitive, house=house)
        try:
            text = self._text.render(ctx).strip()
            subject = self._subject.render(ctx).strip() if self._subject else None
            html = self._html.render(ctx) if self._html else None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.name}: {exc.message}") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{self.name}: not allowed: {exc}") from exc
        return Rendered(self.name, self.spec.channel, self.spec.marketing, text, subject, html)


class TemplateLibrary:
    """Every template of a deployment, by name."""

    def __init__(self, templates: Iterable[Template] = ()) -> None:
        self._by_name: dict[str, Template] = {}
        for t in templates:
            if t.name in self._by_name:
                raise TemplateError(f"template {t.name!r} is defined twice")
            self._by_name[t.name] = t

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> Template:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise TemplateError(f"no template named {name!r} (known: {known})") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str | None = None) -> TemplateLibrary:
        out = []
        for name, body in data.items():
            if not isinstance(body, Mapping):
                raise TemplateError(f"{source or '<input>'}: {name}: expected a mapping")
            try:
                spec = TemplateSpec.model_validate({"name": name, **body})
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(p) for p in first["loc"]) or "(template)"
                raise TemplateError(
                    f"{source or '<input>'}: {name}: {key}: {first['msg']}"
                ) from exc
            out.append(Template(spec, source=source))
        return cls(out)

    @classmethod
    def load(cls, folder: Path) -> TemplateLibrary:
        """Every ``*.yaml`` in ``folder`` (none is an empty library)."""
        from dialer.yamlfile import load_mapping

        templates: list[Template] = []
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            templates.extend(
                cls.from_mapping(load_mapping(path), source=str(path))._by_name.values()
            )
        return cls(templates)


__all__ = [
    "Channel",
    "MessagePurpose",
    "Rendered",
    "Sensitive",
    "Template",
    "TemplateLibrary",
    "TemplateSpec",
]
