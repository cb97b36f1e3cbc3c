"""Console users: Argon2 hashes, lock-out after repeated failures, disabled accounts, the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import select

from dialer.app.cli import cli
from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.lists.users import (
    LOCKOUT_AFTER,
    Passwords,
    Role,
    add_user,
    authenticate,
    set_disabled,
    set_password,
    update_user,
)
from dialer.store import Store
from dialer.store.models import AuditEntry
from dialer.store.people import AppUser

CHEAP = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
GOOD = "violet-harbour-ledger-42"
T = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)


def _add(store: Store, name: str = "li.wei", role: Role = Role.AGENT) -> None:
    with store.session() as s:
        add_user(
            s,
            name,
            role,
            GOOD,
            actor="test",
            passwords=CHEAP,
            interface="Local/1001@agents" if role is Role.AGENT else None,
        )


def _sign_in(store: Store, password: str, at: dt.datetime = T, name: str = "li.wei") -> str:
    with store.session() as s:
        signed = authenticate(s, name, password, now=at, passwords=CHEAP)
    return signed.user.username if signed.user else signed.refused


def test_the_store_keeps_an_argon2_hash_never_the_password(store: Store) -> None:
    _add(store)
    with store.session() as s:
        row = s.scalars(select(AppUser)).one()
    assert row.password_hash.startswith("$argon2id$") and GOOD not in row.password_hash
    assert _sign_in(store, GOOD) == "li.wei"
    assert _sign_in(store, GOOD + "x") == "wrong user name or password"
    assert _sign_in(store, GOOD, name="nobody") == "wrong user name or password"


def test_repeated_failures_lock_the_account_and_a_new_password_lifts_it(store: Store) -> None:
    _add(store)
    for i in range(LOCKOUT_AFTER):
        assert _sign_in(store, f"wrong-{i}", T + dt.timedelta(seconds=i)).startswith("wrong")
    # locked: even the right password is refused until the lock-out ends
    assert "locked" in _sign_in(store, GOOD, T + dt.timedelta(minutes=1))
    assert _sign_in(store, GOOD, T + dt.timedelta(minutes=16)) == "li.wei"
    for i in range(LOCKOUT_AFTER):
        _sign_in(store, f"wrong-{i}", T + dt.timedelta(minutes=20))
    with store.session() as s:
        set_password(s, "li.wei", "amber-quarry-lantern-77", actor="admin", passwords=CHEAP)
    assert _sign_in(store, "amber-quarry-lantern-77", T + dt.timedelta(minutes=21)) == "li.wei"
    with store.session() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions.count(AuditAction.USER_LOCKED) == 2
    assert actions.count(AuditAction.USER_LOGIN_FAILED) == 2 * LOCKOUT_AFTER + 1
    assert AuditAction.USER_PASSWORD in actions


def test_a_disabled_account_cannot_sign_in(store: Store) -> None:
    _add(store)
    with store.session() as s:
        set_disabled(s, "li.wei", True, actor="admin")
    assert _sign_in(store, GOOD) == "this account is disabled"


@pytest.mark.parametrize(
    ("name", "role", "password", "interface", "why"),
    [
        ("Li Wei", Role.AGENT, GOOD, "Local/1@agents", "user name"),
        ("li.wei", Role.AGENT, GOOD, None, "needs --interface"),
        ("li.wei", Role.AGENT, GOOD, "1001", "queue member interface"),
        ("li.wei", Role.ADMIN, "short", None, "at least 10"),
        ("li.wei", Role.ADMIN, "password123", None, "too easy"),
    ],
)
def test_bad_users_are_refused_with_the_reason(
    store: Store, name: str, role: Role, password: str, interface: str | None, why: str
) -> None:
    with store.session() as s, pytest.raises(ConfigError, match=why):
        add_user(s, name, role, password, actor="t", passwords=CHEAP, interface=interface)


def test_cli_adds_lists_disables_and_sets_passwords(db_url: str) -> None:
    def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
        r = CliRunner().invoke(cli, ["--db", db_url, "users", *args], input=stdin)
        return r.exit_code, r.output + (str(r.exception) if r.exception else "")

    code, out = run(
        "add",
        "wang.fang",
        "--role",
        "agent",
        "--interface",
        "PJSIP/1002",
        "--campaign",
        "collections-demo",
        "--password-stdin",
        stdin=GOOD + "\n",
    )
    assert code == 0, out
    code, out = run("add", "zhao", "--role", "agent", "--password-stdin", stdin=GOOD + "\n")
    assert code != 0 and "needs --interface" in out
    code, out = run("list", "--json")
    (user,) = json.loads(out)
    assert user["interface"] == "PJSIP/1002" and user["campaigns"] == ["collections-demo"]
    assert "hash" not in out and GOOD not in out
    assert run("disable", "wang.fang")[0] == 0
    assert "disabled" in run("list")[1]
    code, out = run("passwd", "nobody", "--password-stdin", stdin=GOOD + "\n")
    assert code != 0 and "no user named" in out


def test_role_phone_and_campaigns_change_under_the_same_rules(store: Store, db_url: str) -> None:
    _add(store)
    _add(store, "zhou.admin", Role.ADMIN)
    with store.session() as s:
        user = update_user(
            s, "li.wei", actor="user:zhou.admin", role=Role.SUPERVISOR, campaigns=["b", "a", "a"]
        )
        assert user.role is Role.SUPERVISOR and user.campaigns == ("a", "b")
        assert user.interface == "Local/1001@agents"  # kept when not given
        for kw, why in [
            ({"role": Role.AGENT, "interface": None}, "needs --interface"),
            ({"interface": "not a phone"}, "queue member interface"),
            ({"language": "fr"}, "zh or en"),
        ]:
            with pytest.raises(ConfigError, match=why):
                update_user(s, "li.wei", actor="t", **kw)
        with pytest.raises(ConfigError, match="no user named"):
            update_user(s, "nobody", actor="t", role=Role.ADMIN)
    with store.session() as s:
        (row,) = s.scalars(select(AuditEntry).where(AuditEntry.action == AuditAction.USER_UPDATE))
        assert row.actor == "user:zhou.admin" and row.detail == {
            "user": "li.wei",
            "role": "supervisor",
            "campaigns": ["a", "b"],
        }
    r = CliRunner().invoke(
        cli, ["--db", db_url, "users", "set", "li.wei", "--all-campaigns", "--no-interface"]
    )
    assert r.exit_code == 0, r.output
    assert "no phone" in r.output and "campaigns all" in r.output
    r = CliRunner().invoke(cli, ["--db", db_url, "users", "set", "li.wei", "--role", "agent"])
    assert r.exit_code != 0 and "needs --interface" in (r.output + str(r.exception))
