"""Every bad input a user can give the command lines gets one line on stderr and a non-zero exit,
never a traceback, and nothing is written (issue 11, "one-line errors").

The commands run in this process through the same runner as the console scripts
(``dialer.clirun.run_cli``): an exception it does not turn into a line fails the test.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from dialer.app.cli import cli as dialer_cli
from dialer.clirun import run_cli
from dialer.errors import StoreError
from dialer.store.db import require_driver
from ivr.cli import cli as ivr_cli

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "name: bad-input\nmode: progressive\nqueue: q\n# 催收提醒\n"
SIM_FLOOR = PROJECT_ROOT / "config" / "demo" / "floor.yaml"
REHEARSAL = PROJECT_ROOT / "config" / "scenarios" / "anchor20.yaml"


def run(
    group: click.Group, args: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    try:
        run_cli(group, args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def floor(
    tmp_path: Path,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """A store with one campaign, and the files a user gets wrong."""
    monkeypatch.delenv("DIALER_DB", raising=False)
    monkeypatch.delenv("DIALER_SETTINGS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    good = tmp_path / "campaign.yaml"
    good.write_text(CAMPAIGN, encoding="utf-8")
    assert run(dialer_cli, ["--db", sqlite_url, "campaign", "apply", str(good)], capsys)[0] == 0
    (tmp_path / "gbk.yaml").write_bytes(CAMPAIGN.replace("bad-input", "gbk").encode("gbk"))
    (tmp_path / "settings-gbk.yaml").write_bytes("bank:\n  name_zh: 招商银行\n".encode("gbk"))
    (tmp_path / "utf8.csv").write_text("phone,name\n+8613800000001,王伟\n", encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "contacts.xlsx", "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    return {"db": sqlite_url, "tmp": str(tmp_path)}


#: (command line with {db} and {tmp}, what the line must say)
DIALER_CASES = [
    (["--db", "sqlite:///{tmp}/dialr.db", "campaign", "list"], "no store at"),
    (["campaign", "list"], "no store at {tmp}/xdg/bank-dialer/dialer.db"),
    (["--db", "nonsense", "campaign", "list"], "not a database URL"),
    (["--db", "{db}", "campaign", "apply", "{tmp}/gbk.yaml"], "not UTF-8"),
    (["--db", "{db}", "campaign", "apply", "{tmp}/missing.yaml"], "missing.yaml"),
    (
        ["--db", "{db}", "--settings", "{tmp}/settings-gbk.yaml", "contacts", "import"]
        + ["bad-input", "{tmp}/utf8.csv"],
        "not UTF-8",
    ),
    (
        ["--db", "{db}", "contacts", "import", "bad-input", "{tmp}/utf8.csv"]
        + ["--encoding", "utf-16"],
        "not text in utf-16",
    ),
    (["--db", "{db}", "contacts", "import", "bad-input", "{tmp}/contacts.xlsx"], "not a CSV"),
    (["--db", "{db}", "contacts", "import", "nope", "{tmp}/utf8.csv"], "no campaign"),
    (["--db", "{db}", "hopper", "explain", "bad-input", "--at", "yesterday"], "ISO-8601"),
    (["simulate", "team5", "--plot", "{tmp}/missing/plot.png"], "does not exist"),
    (["simulate", "team5", "--plot", "{tmp}"], "is a folder"),
    (["simulate", str(SIM_FLOOR)], "simulated-PBX floor"),
    (["simulate", "no-such-scenario"], "no scenario"),
    (["--db", "{db}", "report", "bad-input", "--chart", "{tmp}/missing/c.png"], "does not exist"),
]

IVR_CASES = [
    (["say", "amount", "abc"], "not an amount"),
    (["say", "date", "2026-13-01"], "month"),
    (["say", "digits", "12a"], "0-9"),
    (["say", "number", "99999999999999999999"], "outside"),
    (["install-sounds", "{tmp}/bad/dir"], "does not exist"),
    (["install-sounds", "{tmp}/a-file"], "is a file"),
    (["--db", "sqlite:///{tmp}/dialr.db", "agi", "card_activation"], "no store at"),
]


def _check(
    group: click.Group,
    args: list[str],
    says: str,
    floor: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(**floor) for a in args]
    t0 = time.monotonic()
    code, out, err = run(group, argv, capsys)
    assert code != 0, (argv, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and says.format(**floor) in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert out == ""  # refused before any work (no table, no partial report)
    assert time.monotonic() - t0 < 5
    assert not Path(floor["tmp"], "dialr.db").exists()  # a typo never creates a store


@pytest.mark.parametrize(("args", "says"), DIALER_CASES, ids=lambda v: str(v)[:60])
def test_dialer_bad_input_is_one_line(
    args: list[str], says: str, floor: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _check(dialer_cli, args, says, floor, capsys)


@pytest.mark.parametrize(("args", "says"), IVR_CASES, ids=lambda v: str(v)[:60])
def test_ivr_bad_input_is_one_line(
    args: list[str], says: str, floor: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _check(ivr_cli, args, says, floor, capsys)
    assert not Path(floor["tmp"], "bad").exists()  # install-sounds creates no folder


def test_a_rehearsal_scenario_is_not_a_floor() -> None:
    from dialer.errors import ConfigError
    from dialer.sim.scenario import load_scenario

    with pytest.raises(ConfigError, match="pacing scenario for `dialer simulate`") as err:
        load_scenario(REHEARSAL)
    assert "\n" not in str(err.value)


def test_db_upgrade_creates_the_store_the_others_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIALER_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert run(dialer_cli, ["campaign", "list"], capsys)[0] == 2
    assert run(dialer_cli, ["db", "upgrade"], capsys)[0] == 0
    store = tmp_path / "xdg" / "bank-dialer" / "dialer.db"
    assert store.is_file() and not (tmp_path / "dialer.db").exists()  # not the current folder
    code, out, _ = run(dialer_cli, ["campaign", "list"], capsys)
    assert code == 0 and "no campaigns" in out


def test_a_missing_database_driver_names_the_extra() -> None:
    def nothing(_name: str) -> object | None:
        return None

    def only_psycopg(name: str) -> object | None:
        return object() if name == "psycopg" else None

    find: Callable[[str], object | None]
    for find, says in ((nothing, "pip install 'bank-dialer[postgres]'"), (only_psycopg, "")):
        url = "postgresql+psycopg://dialer:pw@db/dialer"
        if says:
            with pytest.raises(StoreError, match=r"\[postgres\]") as err:
                require_driver(url, find)
            assert "pw" not in str(err.value)  # the password is never printed
        else:
            require_driver(url, find)
    with pytest.raises(StoreError, match=r"postgresql\+psycopg://"):
        require_driver("postgresql+psycopg2://dialer@db/dialer", only_psycopg)
    require_driver("sqlite:///x.db", nothing)  # SQLite is built in
