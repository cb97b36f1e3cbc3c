"""Messaging settings: ``messaging.yaml`` beside the settings file (defaults if absent).

Secrets are not read from it: the smsbox password comes from ``DIALER_KANNEL_PASSWORD`` and
the SMTP password from ``DIALER_SMTP_PASSWORD`` (or ``..._FILE``). The bank's name and SMS
signature come from ``settings.bank``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dialer import CONFIG_DIR
from dialer.errors import ConfigError
from dialer.messaging.email import MailSettings
from dialer.messaging.kannel import KannelSettings
from dialer.messaging.keywords import KeywordRules
from dialer.settings import ListenSettings, Settings, _refuse_secrets, format_validation_error
from dialer.yamlfile import load_mapping


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DispatchSettings(Frozen):
    """What every channel's dispatcher keeps: retry delays, doubts, batch size."""

    retry_s: tuple[float, ...] = (2.0, 5.0, 15.0, 60.0, 300.0)  # gateway unavailable
    doubt_grace_s: float = Field(5.0, ge=0)  # a later message acked this long ago clears a doubt
    doubt_timeout_s: float = Field(3600.0, gt=0)  # in doubt this long without a report: unknown
    batch: int = Field(200, ge=1, le=10000)
    idle_poll_s: float = Field(0.5, gt=0)
    daily_cap: int | None = None  # messages per address per local day (SMS sets one)
    # hand-overs at once (each waits for its answer). More than one reaches a slow gateway's
    # throughput, but several requests cut by an outage become several doubts, and a doubt
    # with no later message on its route can only end as `unknown` (never resent blindly).
    in_flight: int = Field(1, ge=1, le=64)


class SmsSettings(DispatchSettings):
    kannel: KannelSettings = KannelSettings()
    daily_cap: int | None = Field(3, ge=1)  # SMS per number per local day, every campaign
    # smsbox answers each sendsms only after bearerbox queued it (a round trip of some ms):
    # one at a time reached 0.39x of a 100 msg/s link, four reach the link's throttle
    # (scripts/bench_sms.py); a doubt is still cleared only by a message claimed after it
    in_flight: int = Field(4, ge=1, le=64)
    listen: ListenSettings = ListenSettings(port=8091)  # DLR and MO callbacks from Kannel


class EmailSettings(DispatchSettings):
    mail: MailSettings = MailSettings()
    in_flight: int = Field(1, ge=1, le=1)  # one SMTP connection carries one message at a time


class MessagingSettings(Frozen):
    sms: SmsSettings = SmsSettings()
    email: EmailSettings = EmailSettings()
    keywords: KeywordRules = KeywordRules()
    source: str | None = None


def messaging_settings_path(settings: Settings) -> Path:
    return (Path(settings.source).parent if settings.source else CONFIG_DIR) / "messaging.yaml"


def load_messaging_settings(settings: Settings, path: Path | None = None) -> MessagingSettings:
    path = path or messaging_settings_path(settings)
    if not path.exists():
        return MessagingSettings()
    data = load_mapping(path)
    _refuse_secrets(data, str(path))
    try:
        return MessagingSettings.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from exc


__all__ = [
    "DispatchSettings",
    "EmailSettings",
    "MessagingSettings",
    "SmsSettings",
    "load_messaging_settings",
    "messaging_settings_path",
]
