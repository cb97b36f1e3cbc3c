"""Settings: YAML files under ``config/`` validated into immutable objects.

Secrets never live in YAML. Each comes from an environment variable, or from the file
named by the same variable with ``_FILE`` appended (``DIALER_AMI_SECRET_FILE=/run/secrets/ami``).
A YAML file that carries a secret key is refused. Errors name the file, the key and the
problem. A running service swaps the whole object on reload, never parts of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from dialer import CONFIG_DIR
from dialer.errors import ConfigError, SecretMissing
from dialer.yamlfile import load_mapping

SECRET_ENV = {
    "ami_secret": "DIALER_AMI_SECRET",
    "api_token": "DIALER_API_TOKEN",
    "secret_key": "DIALER_SECRET_KEY",
}
_SECRET_KEYS_IN_YAML = {"secret", "ami_secret", "api_token", "secret_key", "password", "token"}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AMISettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=0, le=65535)
    username: str = "dialer"
    connect_timeout_s: float = Field(5.0, gt=0)
    action_timeout_s: float = Field(10.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


class ListenSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class BankSettings(Frozen):
    name_zh: str = "示例银行"
    name_en: str = "Example Bank"
    callback_number: str = "95588"


class Settings(Frozen):
    default_region: str = Field("CN", min_length=2, max_length=2)
    max_calls_per_number_per_day: int = Field(3, ge=1)
    ami: AMISettings = AMISettings()
    fastagi: ListenSettings = ListenSettings(port=4573)
    http: ListenSettings = ListenSettings(port=8080)
    bank: BankSettings = BankSettings()
    campaigns_dir: str = "campaigns"  # relative to the settings file's folder
    flows_dir: str = "flows"
    source: str | None = None  # the file these settings came from


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


def get_secret(
    name: str, env: Mapping[str, str] | None = None, *, required: bool = True
) -> SecretStr | None:
    """Read secret ``name`` (``ami_secret``, ``api_token``, ``secret_key``).

    The value comes from ``$VAR`` or from the file named by ``$VAR_FILE``; it is wrapped
    in ``SecretStr`` so that printing it shows ``**********``.
    """
    env = os.environ if env is None else env
    var = SECRET_ENV[name]
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
