"""Settings: YAML files under ``config/`` validated into immutable objects.

Secrets never live in YAML. Each comes from an environment variable, or from the file
named by the same variable with ``_FILE`` appended (``DIALER_AMI_SECRET_FILE=/run/secrets/ami``).
A YAML file that carries a secret key is refused. Errors name the file, the key and the
problem. A running service swaps the whole object on reload, never parts of it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from dialer import CONFIG_DIR
from dialer.errors import ConfigError, SecretMissing
from dialer.yamlfile import load_mapping

SECRET_ENV = {
    "ami_secret": "DIALER_AMI_SECRET",
    "api_token": "DIALER_API_TOKEN",
    "secret_key": "DIALER_SECRET_KEY",
    "kannel_password": "DIALER_KANNEL_PASSWORD",  # smsbox sendsms-user (dialer.messaging)
    "kannel_status_password": "DIALER_KANNEL_STATUS_PASSWORD",  # bearerbox status page
    "smtp_password": "DIALER_SMTP_PASSWORD",  # SMTP AUTH (dialer.messaging)
}
_SECRET_KEYS_IN_YAML = {"secret", "ami_secret", "api_token", "secret_key", "password", "token"}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_hhmm(value: Any) -> dt.time:
    """``"09:00"`` (or YAML 1.1's sexagesimal 540) -> time; ``"24:00"`` is ``time.max``."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int):  # YAML 1.1 reads 09:00 as sexagesimal minutes
        if value == 24 * 60:
            return dt.time.max
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


def format_hhmm(value: dt.time) -> str:
    return "24:00" if value == dt.time.max else value.strftime("%H:%M")


HHMM = Annotated[dt.time, BeforeValidator(parse_hhmm)]


class AMISettings(Frozen):
    """One Asterisk server (one AMI connection). Its secret comes from
    ``DIALER_AMI_SECRET_<NAME>`` (name upper-cased, ``-`` as ``_``), else ``DIALER_AMI_SECRET``."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=0, le=65535)
    username: str = "dialer"
    connect_timeout_s: float = Field(5.0, gt=0)
    action_timeout_s: float = Field(10.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


class WorkerSettings(Frozen):
    """How workers sharing one store see each other (DESIGN.md section 8)."""

    heartbeat_s: float = Field(5.0, gt=0)  # how often a worker writes its heartbeat
    dead_after_s: float = Field(30.0, gt=0)  # no heartbeat for this long: the worker is dead


class ListenSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class BankSettings(Frozen):
    name_zh: str = "示例银行"
    name_en: str = "Example Bank"
    callback_number: str = "95588"


class CallingHours(Frozen):
    """The local hours no campaign may call outside of (in each contact's own zone)."""

    start: HHMM = dt.time(8, 0)
    end: HHMM = dt.time(21, 0)

    @model_validator(mode="after")
    def _order(self) -> CallingHours:
        if self.end <= self.start:
            raise ValueError("calling_hours.end must be after start (same local day)")
        return self


class Ceilings(Frozen):
    """Compliance ceilings (``compliance:`` in the settings file). Campaign files and the
    console may only stay at or under them; nothing at run time raises them: a settings
    reload may lower them, raising them takes a restart."""

    abandon_cap: float = Field(0.03, gt=0, le=0.5)
    hold_limit_s: float = Field(2.0, gt=0, le=60)
    calling_hours: CallingHours = CallingHours()

    def raised_over(self, old: Ceilings) -> list[str]:
        """The ceilings this one sets higher than ``old`` (wider hours count as higher)."""
        out = []
        if self.abandon_cap > old.abandon_cap:
            out.append(f"abandon_cap {old.abandon_cap} -> {self.abandon_cap}")
        if self.hold_limit_s > old.hold_limit_s:
            out.append(f"hold_limit_s {old.hold_limit_s} -> {self.hold_limit_s}")
        new_h, old_h = self.calling_hours, old.calling_hours
        if new_h.start < old_h.start or new_h.end > old_h.end:
            out.append(
                f"calling_hours {format_hhmm(old_h.start)}-{format_hhmm(old_h.end)} -> "
                f"{format_hhmm(new_h.start)}-{format_hhmm(new_h.end)}"
            )
        return out


class Settings(Frozen):
    default_region: str = Field("CN", min_length=2, max_length=2)
    max_calls_per_number_per_day: int = Field(3, ge=1)
    ami: AMISettings = AMISettings()
    #: several Asterisk servers, each served by one worker at a time; empty: ``ami`` alone
    asterisk: tuple[AMISettings, ...] = ()
    worker: WorkerSettings = WorkerSettings()
    fastagi: ListenSettings = ListenSettings(port=4573)
    http: ListenSettings = ListenSettings(port=8080)
    bank: BankSettings = BankSettings()
    compliance: Ceilings = Ceilings()
    campaigns_dir: str = "campaigns"  # relative to the settings file's folder
    flows_dir: str = "flows"
    source: str | None = None  # the file these settings came from

    @model_validator(mode="after")
    def _distinct_switches(self) -> Settings:
        names = [a.name for a in self.asterisk]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"asterisk: server names must be distinct ({', '.join(dup)})")
        if self.worker.dead_after_s <= 2 * self.worker.heartbeat_s:
            raise ValueError("worker: dead_after_s must exceed two heartbeats")
        return self

    def switches(self) -> tuple[AMISettings, ...]:
        """The Asterisk servers this deployment dials through."""
        return self.asterisk or (self.ami,)


def format_validation_error(file: str | os.PathLike[str] | None, exc: ValidationError) -> str:
    """One line per problem: ``file: key.path: message``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{file or '<input>'}: {key}: {err['msg']}")
    return "\n".join(lines)


def _refuse_secrets(data: Mapping[str, Any], file: str, prefix: str = "") -> None:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if str(key).lower() in _SECRET_KEYS_IN_YAML:
            raise ConfigError(
                "secrets are not read from YAML; set the environment variable instead",
                file=file,
                key=path,
            )
        if isinstance(value, Mapping):
            _refuse_secrets(value, file, path + ".")


def default_settings_path() -> Path:
    env = os.environ.get("DIALER_SETTINGS")
    return Path(env) if env else CONFIG_DIR / "settings.yaml"


def load_settings(path: Path | None = None) -> Settings:
    """Load and validate settings; a missing default file gives the built-in defaults."""
    explicit = path is not None or "DIALER_SETTINGS" in os.environ
    path = path or default_settings_path()
    if not path.exists():
        if explicit:
            raise ConfigError("file not found", file=str(path))
        return Settings()
    data = load_mapping(path)
    _refuse_secrets(data, str(path))
    try:
        return Settings.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from exc


def ami_secret_var(server: AMISettings, env: Mapping[str, str] | None = None) -> str:
    """The variable holding ``server``'s AMI secret: its own if set, else the common one."""
    env = os.environ if env is None else env
    own = f"{SECRET_ENV['ami_secret']}_{server.name.upper().replace('-', '_').replace('.', '_')}"
    return own if env.get(own) or env.get(f"{own}_FILE") else SECRET_ENV["ami_secret"]


def get_secret(
    name: str, env: Mapping[str, str] | None = None, *, required: bool = True, var: str = ""
) -> SecretStr | None:
    """Read secret ``name`` (``ami_secret``, ``api_token``, ``secret_key``).

    The value comes from ``$VAR`` or from the file named by ``$VAR_FILE``; it is wrapped
    in ``SecretStr`` so that printing it shows ``**********``. ``var`` names another
    variable for it (one AMI secret per server).
    """
    env = os.environ if env is None else env
    var = var or SECRET_ENV[name]
    if env.get(var):
        return SecretStr(env[var])
    file_var = f"{var}_FILE"
    if env.get(file_var):
        try:
            value = Path(env[file_var]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretMissing(f"cannot read {file_var}: {exc.strerror}", key=var) from exc
        if value:
            return SecretStr(value)
    if required:
        raise SecretMissing(f"set {var} (or {file_var}, a file that holds it)", key=var)
    return None
