from __future__ import annotations

from pathlib import Path

import pytest

from dialer.errors import ConfigError, SecretMissing
from dialer.settings import ami_secret_var, get_secret, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_settings_load() -> None:
    s = load_settings(ROOT / "config" / "settings.yaml")
    assert s.default_region == "CN"
    assert s.ami.host == "127.0.0.1"
    assert s.http.host == "127.0.0.1"


def test_secret_in_yaml_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("ami:\n  secret: hunter2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    assert "ami.secret" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("ami:\n  port: 99999\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: ami\.port"):
        load_settings(f)


def test_secret_from_env_or_file(tmp_path: Path) -> None:
    assert get_secret("ami_secret", {"DIALER_AMI_SECRET": "x"}).get_secret_value() == "x"  # type: ignore[union-attr]
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    v = get_secret("secret_key", {"DIALER_SECRET_KEY_FILE": str(f)})
    assert v is not None and v.get_secret_value() == "from-file"
    assert "from-file" not in repr(v)
    with pytest.raises(SecretMissing):
        get_secret("api_token", {})


def test_several_switches_each_with_its_own_secret(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "asterisk:\n  - {name: pbx-1, host: 127.0.0.1, port: 5038}\n"
        "  - {name: pbx-2, host: 127.0.0.2, port: 5039}\n"
        "worker: {heartbeat_s: 2, dead_after_s: 10}\n"
    )
    s = load_settings(f)
    assert [a.name for a in s.switches()] == ["pbx-1", "pbx-2"]
    assert load_settings(ROOT / "config" / "settings.yaml").switches() == (s.ami,)
    env = {"DIALER_AMI_SECRET": "common", "DIALER_AMI_SECRET_PBX_2": "own"}
    one, two = s.switches()
    assert (
        get_secret("ami_secret", env, var=ami_secret_var(one, env)).get_secret_value() == "common"
    )  # type: ignore[union-attr]
    assert get_secret("ami_secret", env, var=ami_secret_var(two, env)).get_secret_value() == "own"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("asterisk: [{name: a}, {name: a}]\n", "distinct"),
        ("asterisk: [{name: 'a b'}]\n", "asterisk.0.name"),
        ("worker: {heartbeat_s: 5, dead_after_s: 6}\n", "two heartbeats"),
    ],
)
def test_switch_and_worker_settings_refused(tmp_path: Path, text: str, problem: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_settings(f)
