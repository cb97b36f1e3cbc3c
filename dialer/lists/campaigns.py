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
from dialer.lists.dispositions import DEFAULT_SKIP_REASONS, DispositionSpec, SkipReasonSpec
from dialer.lists.durations import format_duration, parse_duration
from dialer.outcomes import Outcome
from dialer.settings import HHMM, Ceilings, format_hhmm, format_validation_error
from dialer.yamlfile import load_mapping

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
    # the switch's events read this late (s): predictive and power dial progressively
    max_event_lag_s: float = Field(1.0, gt=0, le=60)


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
    # One budget across channels: calls and the messages of counted steps (every SMS and
    # e-mail step unless it says ``counts: false``) spend it, and at most ``daily_cap`` of
    # them reach one contact on one local day (default: the settings'
    # max_calls_per_number_per_day). The hopper and the steps' sequencer both keep them.
    max_attempts: int = Field(4, ge=1, le=50)
    daily_cap: int | None = Field(None, ge=1, le=50)
    retry: dict[Outcome, Duration] = Field(default_factory=dict)
    fields: dict[str, Annotated[FieldSpec, BeforeValidator(_field_shorthand)]] = Field(
        default_factory=dict
    )
    pacing: Pacing = Pacing()
    # Multi-step campaigns across channels (SMS, call, e-mail), kept as written here and
    # validated by dialer.messaging.steps, the layer that runs them.
    steps: list[dict[str, Any]] = Field(default_factory=list)
    # The agents' desktop: the script shown on the screen-pop, the disposition form, and how
    # long wrap-up may last before the agent is made ready again (dialer.lists.dispositions).
    script: str | None = Field(None, max_length=20_000)
    dispositions: dict[str, DispositionSpec] = Field(default_factory=dict)
    wrapup_limit_s: float | None = Field(None, gt=0, le=3600)
    # preview mode: why an agent may skip the contact offered (empty: DEFAULT_SKIP_REASONS)
    skip_reasons: dict[str, SkipReasonSpec] = Field(default_factory=dict)

    @field_validator("dispositions", "skip_reasons")
    @classmethod
    def _disposition_codes(cls, v: dict[str, Any]) -> dict[str, Any]:
        for code in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", code):
                raise ValueError(f"code {code!r} must be lower_snake_case")
        return v

    @property
    def skips(self) -> dict[str, SkipReasonSpec]:
        """The skip reasons an agent may give (the file's, else the defaults)."""
        return self.skip_reasons or DEFAULT_SKIP_REASONS

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
        if not self.dispositions:
            doc.pop("dispositions", None)
        if not self.skip_reasons:
            doc.pop("skip_reasons", None)
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
    """A campaign file that does not say ``state: running`` is paused: applying a new file
    never starts dialling by itself."""
    data = load_mapping(path)
    return parse_campaign({"state": State.PAUSED.value, **data}, str(path))


# --- store side -------------------------------------------------------------------------


def file_document(spec: CampaignSpec) -> dict[str, Any]:
    """What the file itself says: its document, with ``state`` only when the file names it."""
    doc = spec.to_document()
    if "state" not in spec.model_fields_set:
        doc.pop("state", None)
    return doc


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    """Pacing keys one by one (a console change is per key); the rest as they are."""
    out = {k: v for k, v in doc.items() if k != "pacing"}
    out.update({f"pacing.{k}": v for k, v in (doc.get("pacing") or {}).items()})
    return out


def _unflat(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in flat.items() if not k.startswith("pacing.")}
    out["pacing"] = {k[7:]: v for k, v in flat.items() if k.startswith("pacing.")}
    return out


_ABSENT = object()


def merge_file_change(
    old_file: dict[str, Any], new_file: dict[str, Any], live: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Three-way merge of a changed file into the live definition: a key takes the file's new
    value only where the file's own value changed; elsewhere the live value (a console pause,
    a pacing change) holds. Returns (merged live document, audit detail)."""
    old_f, new_f, cur = _flat(old_file), _flat(new_file), _flat(live)
    merged = dict(cur)
    replaced: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for key in sorted(set(old_f) | set(new_f) | set(cur)):
        was, now = old_f.get(key, _ABSENT), new_f.get(key, _ABSENT)
        held = cur.get(key, _ABSENT)
        if was != now and now is not _ABSENT:
            merged[key] = now
            if held is not _ABSENT and held != was and held != now:
                replaced[key] = {"live": held, "file_before": _none(was), "file_after": now}
        elif was != now:  # the file no longer names the key: the live value stays
            continue
        elif held is not _ABSENT and held != now and now is not _ABSENT:
            kept[key] = {"live": held, "file": now}
    changed = {
        k: [_none(cur.get(k, _ABSENT)), merged[k]]
        for k in sorted(merged)
        if cur.get(k, _ABSENT) != merged[k]
    }
    return _unflat(merged), {"changed": changed, "overrides_replaced": replaced, "kept": kept}


def _none(value: Any) -> Any:
    return None if value is _ABSENT else value


def check_ceilings(spec: CampaignSpec, ceilings: Ceilings, source: str | None) -> None:
    """Refuse a campaign whose compliance limits go above the settings' ceilings."""
    where = source or f"campaign {spec.name}"
    problems = []
    if spec.pacing.abandon_cap > ceilings.abandon_cap:
        problems.append(
            f"pacing.abandon_cap {spec.pacing.abandon_cap} is above the ceiling "
            f"{ceilings.abandon_cap} (settings compliance.abandon_cap)"
        )
    if spec.pacing.hold_limit_s > ceilings.hold_limit_s:
        problems.append(
            f"pacing.hold_limit_s {spec.pacing.hold_limit_s:g} is above the ceiling "
            f"{ceilings.hold_limit_s:g} (settings compliance.hold_limit_s)"
        )
    hours, window = ceilings.calling_hours, spec.calling_window
    if window.start < hours.start or window.end > hours.end:
        problems.append(
            f"calling_window {format_hhmm(window.start)}-{format_hhmm(window.end)} is outside "
            f"the calling hours {format_hhmm(hours.start)}-{format_hhmm(hours.end)} "
            "(settings compliance.calling_hours)"
        )
    if problems:
        raise ConfigError("; ".join(f"{where}: {p}" for p in problems))


def within_ceilings(spec: CampaignSpec, ceilings: Ceilings) -> CampaignSpec:
    """The spec the floor runs: every compliance limit at or under its ceiling, whatever the
    store holds (a row written before the ceiling was lowered, or by hand)."""
    pacing = spec.pacing.model_copy(
        update={
            "abandon_cap": min(spec.pacing.abandon_cap, ceilings.abandon_cap),
            "hold_limit_s": min(spec.pacing.hold_limit_s, ceilings.hold_limit_s),
        }
    )
    window = spec.calling_window
    start = max(window.start, ceilings.calling_hours.start)
    end = min(window.end, ceilings.calling_hours.end)
    days: tuple[Weekday, ...] = window.days
    if end <= start:  # no hour left to call in: a window that never opens
        end, days = start, ()
    window = window.model_copy(update={"start": start, "end": end, "days": days})
    if pacing == spec.pacing and window == spec.calling_window:
        return spec
    return spec.model_copy(update={"pacing": pacing, "calling_window": window})


def apply_campaign(
    session: Any,
    spec: CampaignSpec,
    *,
    source: str | None,
    actor: str,
    ceilings: Ceilings | None = None,
) -> tuple[Any, bool]:
    """Create or update the campaign row from ``spec``; audited. Returns (row, created).

    The row keeps the file's document as last applied (``applied``) apart from the live
    definition (``spec``, ``state``): re-applying an unchanged file changes nothing, and a
    changed file moves only the keys whose own value in the file changed, so a console pause
    or pacing change holds until the file itself says otherwise (the audit names both)."""
    from sqlalchemy import select

    from dialer.store.models import AuditEntry, Campaign

    if ceilings is not None:
        check_ceilings(spec, ceilings, source)
    row = session.scalars(select(Campaign).where(Campaign.name == spec.name)).one_or_none()
    new_file = file_document(spec)
    if row is None:
        state = spec.state
        row = Campaign(name=spec.name, state=state.value, purpose=spec.purpose.value)
        row.mode, row.source, row.applied = spec.mode.value, source, new_file
        row.spec = {**spec.to_document(), "state": state.value}
        session.add(row)
        session.flush()
        detail: dict[str, Any] = {"source": source, "changed": {}, "state": state.value}
        session.add(
            AuditEntry(
                actor=actor, action=AuditAction.CAMPAIGN_CREATE, campaign_id=row.id, detail=detail
            )
        )
        return row, True
    live = {**(row.spec or {}), "state": row.state}
    old_file = row.applied if row.applied is not None else live
    row.source = source
    if new_file == old_file:
        return row, False  # the file did not change: nothing it says is re-applied
    merged, detail = merge_file_change(old_file, new_file, live)
    merged_spec = parse_campaign(merged, source)
    row.spec = {**merged_spec.to_document(), "state": merged_spec.state.value}
    row.state = merged_spec.state.value
    row.purpose, row.mode, row.applied = merged_spec.purpose.value, merged_spec.mode.value, new_file
    session.flush()
    session.add(
        AuditEntry(
            actor=actor,
            action=AuditAction.CAMPAIGN_APPLY,
            campaign_id=row.id,
            detail={"source": source, **detail},
        )
    )
    return row, False


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
