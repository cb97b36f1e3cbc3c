"""``dialer users add|list|set|disable|enable|passwd``: the people who sign in to the console.

A password is read from the terminal (twice), or from the first line of standard input with
``--password-stdin`` (scripts); never from the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from dialer.app.appctx import AppContext, pass_app
from dialer.app.commands.campaign import actor
from dialer.lists.users import (
    Passwords,
    Role,
    add_user,
    list_users,
    set_disabled,
    set_password,
    update_user,
)

_ROLE = click.Choice([r.value for r in Role])


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group("users")
def users_group() -> None:
    """Console users: agents (bound to their phone), supervisors and admins."""


@users_group.command("add")
@click.argument("username")
@click.option("--role", type=_ROLE, required=True)
@click.option(
    "--interface",
    default=None,
    help="Agents: the queue member interface of their phone (PJSIP/1001, Local/1001@agents).",
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    help="A campaign of theirs (repeat; none: every campaign).",
)
@click.option("--name", "display_name", default=None, help="The name shown on pages.")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_app
def add_cmd(
    app: AppContext,
    username: str,
    role: str,
    interface: str | None,
    campaigns: tuple[str, ...],
    display_name: str | None,
    lang: str,
    password_stdin: bool,
) -> None:
    """Add USERNAME with a role (and, for an agent, the phone's interface)."""
    password = _read_password(password_stdin)
    with app.store.session() as s:
        user = add_user(
            s,
            username,
            Role(role),
            password,
            actor=actor(),
            passwords=Passwords(),
            interface=interface,
            campaigns=campaigns,
            display_name=display_name,
            language=lang,
        )
    click.echo(f"added {user.username} ({user.role.value})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_cmd(app: AppContext, as_json: bool) -> None:
    """List users (never their passwords)."""
    with app.store.session() as s:
        users = list_users(s)
    if as_json:
        click.echo(json.dumps([u.to_json() for u in users], ensure_ascii=False, indent=2))
        return
    for u in users:
        state = "disabled" if u.disabled else ("locked" if u.locked_until else "active")
        where = u.interface or "-"
        camps = ",".join(u.campaigns) or "*"
        click.echo(f"{u.username:<20} {u.role.value:<11} {state:<9} {where:<24} {camps}")


@users_group.command("disable")
@click.argument("username")
@pass_app
def disable_cmd(app: AppContext, username: str) -> None:
    """Disable USERNAME: no sign-in; open sessions end at their next request."""
    with app.store.session() as s:
        set_disabled(s, username, True, actor=actor())
    click.echo(f"disabled {username}")


@users_group.command("enable")
@click.argument("username")
@pass_app
def enable_cmd(app: AppContext, username: str) -> None:
    """Enable USERNAME again."""
    with app.store.session() as s:
        set_disabled(s, username, False, actor=actor())
    click.echo(f"enabled {username}")


@users_group.command("set")
@click.argument("username")
@click.option("--role", type=_ROLE, default=None)
@click.option("--interface", default=None, help="The queue member interface of their phone.")
@click.option("--no-interface", is_flag=True, help="Unbind the phone (not for agents).")
@click.option("--campaign", "campaigns", multiple=True, help="Their campaigns (repeat).")
@click.option("--all-campaigns", is_flag=True, help="Every campaign (clears the list).")
@click.option("--name", "display_name", default=None, help="The name shown on pages.")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@pass_app
def set_cmd(
    app: AppContext,
    username: str,
    role: str | None,
    interface: str | None,
    no_interface: bool,
    campaigns: tuple[str, ...],
    all_campaigns: bool,
    display_name: str | None,
    lang: str | None,
) -> None:
    """Change USERNAME's role, phone, campaigns, name or language (audited)."""
    kw: dict[str, Any] = {}
    if interface is not None or no_interface:
        kw["interface"] = None if no_interface else interface
    if campaigns or all_campaigns:
        kw["campaigns"] = [] if all_campaigns else list(campaigns)
    if display_name is not None:
        kw["display_name"] = display_name
    with app.store.session() as s:
        user = update_user(
            s, username, actor=actor(), role=Role(role) if role else None, language=lang, **kw
        )
    click.echo(
        f"{user.username}: {user.role.value}, {user.interface or 'no phone'}, "
        f"campaigns {', '.join(user.campaigns) or 'all'}"
    )


@users_group.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_app
def passwd_cmd(app: AppContext, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password (it also lifts a lock-out)."""
    password = _read_password(password_stdin)
    with app.store.session() as s:
        set_password(s, username, password, actor=actor(), passwords=Passwords())
    click.echo(f"password set for {username}")


COMMANDS = [users_group]
