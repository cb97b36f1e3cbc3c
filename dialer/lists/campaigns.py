"""Campaign definitions: a YAML file validated into an immutable ``CampaignSpec``.

The file is the source of definitions (DESIGN.md section 9); ``dialer campaign apply``
writes it to the store. Pacing keys are the shared contract of section 9.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.outcomes import Outcome
from dialer.settings import format_validation_error
from dialer.yamlfile import load_mapping

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> dt.timedelta:
    """``"10m"``, ``"2h"``, ``"30d"``, ``90`` (seconds) -> timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10m, 2h or 30d")
    if isinstance(value, int | float):
        return dt.timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return dt.timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    raise ValueError(f"expected a duration like 10m, 2h or 30d, got {value!r}")


def format_duration(td: dt.timedelta) -> str:
    s = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class State(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"


class Purpose(enum.StrEnum):
    SERVICE = "service"
    MARKETING = "marketing"
    COLLECTIONS = "collections"


class Mode(enum.StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    POWER = "power"
    PREDICTIVE = "predictive"
    BROADCAST = "broadcast"


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def index(self) -> int:  # type: ignore[override]  # Monday == 0, as datetime.weekday()
        return list(Weekday).index(self)


ALL_DAYS = tuple(Weekday)


def _parse_hhmm(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int):  # YAML 1.1 reads 09:00 as sexagesimal minutes
        return dt.time(value // 60, value % 60)
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if m and int(m.group(1)) <= 24 and int(m.group(2)) < 60:
            h, mi = int(m.group(1)), int(m.group(2))
            if h == 24:
                if mi:
                    raise ValueError("24:MM is not a time")
                return dt.time.max
            return dt.time(h, mi)
    raise ValueError(f"expected HH:MM, got {value!r}")


HHMM = Annotated[dt.time, BeforeValidator(_parse_hhmm)]


class CallingWindow(Frozen):
    start: HHMM = dt.time(9, 0)
    end: HHMM = dt.time(20, 0)
    days: tuple[Weekday, ...] = ALL_DAYS
    skip_holidays: bool = True

    @model_validator(mode="after")
    def _order(self) -> CallingWindow:
        if self.end <= self.start:
            raise ValueError("calling_window.end must be after start (same local day)")
        if not self.days:
            raise ValueError("calling_window.days must list at least one day")
        return self


class Pacing(Frozen):
    abandon_cap: float = Field(0.03, gt=0, le=0.5)
    abandon_window: Duration = dt.timedelta(days=30)
    hold_limit_s: float = Field(2.0, gt=0, le=60)
    ring_timeout_s: float = Field(25.0, ge=15, le=120)
    max_lines_per_agent: float = Field(3.0, ge=1, le=10)
    min_agents_predictive: int = Field(5, ge=1)
    power_ratio: float = Field(2.0, ge=1, le=10)
    channels: int = Field(30, ge=1, le=10000)
    calls_per_second: float = Field(10.0, gt=0, le=1000)
    wrapup_s: float = Field(10.0, ge=0, le=3600)


class FieldType(enum.StrEnum):
    DECIMAL = "decimal"
    DATE = "date"
    DIGITS = "digits"
    TEXT = "text"
    INTEGER = "integer"


class FieldSpec(Frozen):
    type: FieldType
    length: int | None = Field(None, ge=1, le=64)
    sensitive: bool = False
    required: bool = False


def _field_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


RESERVED_COLUMNS = frozenset(
    {"phone", "name", "language", "timezone", "priority", "external_id", "valid_until"}
    | {"email", "numbers", *(f"{k}_phone" for k in ("mobile", "home", "work"))}  # channels
)


class CampaignSpec(Frozen):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    state: State = State.RUNNING
    purpose: Purpose = Purpose.SERVICE
    mode: Mode = Mode.PROGRESSIVE
    channel: str = "Local/{number}@customer"
    caller_id: str = ""
    flow: str | None = None
    queue: str | None = None
    language: Literal["zh", "en"] = "zh"
    amd: Literal["off", "hangup", "message"] = "off"
    calling_window: CallingWindow = CallingWindow()
    max_attempts: int = Field(4, ge=1, le=50)
    retry: dict[Outcome, Duration] = Field(default_factory=dict)
    fields: dict[str, Annotated[FieldSpec, BeforeValidator(_field_shorthand)]] = Field(
        default_factory=dict
    )
    pacing: Pacing = Pacing()
    # Multi-step campaigns across channels (SMS, call, e-mail), kept as written here and
    # validated by dialer.messaging.steps, the layer that runs them.
    steps: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("channel")
    @classmethod
    def _channel_has_number(cls, v: str) -> str:
        if "{number}" not in v:
            raise ValueError("channel must contain {number}")
        return v

    @field_validator("fields")
    @classmethod
    def _fields_not_reserved(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name, spec in v.items():
            if name in RESERVED_COLUMNS:
                raise ValueError(f"field {name!r} is a reserved contact column")
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"field name {name!r} must be lower_snake_case")
            if spec.type is FieldType.DIGITS and spec.length is None:
                raise ValueError(f"field {name!r}: digits need a length")
        return v

    @model_validator(mode="after")
    def _mode_needs(self) -> CampaignSpec:
        if self.mode is Mode.BROADCAST and not self.flow:
            raise ValueError("mode broadcast needs a flow (IVR-only run)")
        if (
            self.mode in (Mode.PROGRESSIVE, Mode.POWER, Mode.PREDICTIVE, Mode.PREVIEW)
            and not self.queue
        ):
            raise ValueError(f"mode {self.mode.value} needs a queue of agents")
        return self

    def retry_delay(self, outcome: Outcome) -> dt.timedelta | None:
        return self.retry.get(outcome)

    def to_document(self) -> dict[str, Any]:
        """A JSON-safe dict that round-trips through ``CampaignSpec.model_validate``."""
        doc = self.model_dump(mode="json", exclude_none=True)
        if not self.steps:
            doc.pop("steps", None)  # single-channel campaigns keep their stored shape
        doc["retry"] = {k.value: format_duration(v) for k, v in self.retry.items()}
        doc["pacing"]["abandon_window"] = format_duration(self.pacing.abandon_window)
        cw = doc["calling_window"]
        cw["start"] = self.calling_window.start.strftime("%H:%M")
        cw["end"] = (
            "24:00"
            if self.calling_window.end == dt.time.max
            else self.calling_window.end.strftime("%H:%M")
        )
        return doc


def parse_campaign(data: dict[str, Any], source: str | None = None) -> CampaignSpec:
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_campaign_file(path: Path) -> CampaignSpec:
    return parse_campaign(load_mapping(path), str(path))


# --- store side -------------------------------------------------------------------------


def apply_campaign(
    session: Any, spec: CampaignSpec, *, source: str | None, actor: str
) -> tuple[Any, bool]:
    """Create or update the campaign row from ``spec``; audited. Returns (row, created)."""
    from sqlalchemy import select

    from dialer.store.models import AuditEntry, Campaign

    row = session.scalars(select(Campaign).where(Campaign.name == spec.name)).one_or_none()
    created = row is None
    doc = spec.to_document()
    if row is None:
        row = Campaign(name=spec.name)
        session.add(row)
    before = {} if created else {**(row.spec or {}), "state": row.state}
    after = {**doc, "state": spec.state.value}
    diff = {
        k: [before.get(k), after.get(k)]
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k)
    }
    changed = created or bool(diff)
    row.state = spec.state.value
    row.purpose = spec.purpose.value
    row.mode = spec.mode.value
    row.spec = doc
    row.source = source
    session.flush()
    if changed:
        session.add(
            AuditEntry(
                actor=actor,
                action=AuditAction.CAMPAIGN_CREATE if created else AuditAction.CAMPAIGN_APPLY,
                campaign_id=row.id,
                detail={"source": source, "changed": {} if created else diff},
            )
        )
    return row, created


#: Validated specs by their stored text: every finished call reads its campaign's spec, and
#: validating it anew each time was a tenth of the dialer's CPU per call.
_SPEC_CACHE: dict[tuple[str, str], CampaignSpec] = {}
_SPEC_CACHE_SIZE = 256


def spec_of(row: Any) -> CampaignSpec:
    """The validated spec of a stored campaign row (with its live state). Specs are frozen,
    so one validated object serves every row holding the same text."""
    key = (json.dumps(row.spec, sort_keys=True, default=str), str(row.state))
    spec = _SPEC_CACHE.get(key)
    if spec is None:
        spec = CampaignSpec.model_validate({**row.spec, "state": row.state})
        if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[key] = spec
    return spec


def get_campaign(session: Any, name: str) -> Any:
    from sqlalchemy import select

    from dialer.store.models import Campaign

    row = session.scalars(select(Campaign).where(Campaign.name == name)).one_or_none()
    if row is None:
        raise ConfigError(f"no campaign named {name!r} (apply its file first)")
    return row
