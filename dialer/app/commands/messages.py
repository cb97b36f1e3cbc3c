"""``dialer sms ...``: templates, previews, and (with a gateway) sending and replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dialer import CONFIG_DIR
from dialer.app.appctx import AppContext, pass_app
from dialer.messaging import sms
from dialer.messaging.compose import render_sms, sample_values, sms_text
from dialer.messaging.templates import Channel, Rendered, TemplateLibrary


def templates_dir(app: AppContext) -> Path:
    """``messages/`` beside the settings file (``config/messages`` by default)."""
    source = app.settings.source
    return (Path(source).parent if source else CONFIG_DIR) / "messages"


def load_library(app: AppContext) -> TemplateLibrary:
    return TemplateLibrary.load(templates_dir(app))


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--set")
        out[key.strip()] = value
    return out


def _preview_json(p: Any) -> dict[str, Any]:
    seg: sms.Segmentation = p.segmentation
    return {
        "template": p.rendered.template,
        "marketing": p.rendered.marketing,
        "text": p.text,
        "encoding": seg.encoding.value,
        "characters": seg.chars,
        "units": seg.units,
        "parts": seg.part_count,
        "per_part": seg.per_part,
        "part_texts": list(seg.parts),
    }


@click.group("sms")
def sms_group() -> None:
    """SMS: templates, previews, sending through the gateway, replies."""


@sms_group.command("templates")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def templates_cmd(app: AppContext, as_json: bool) -> None:
    """List the message templates (SMS and e-mail) and the fields each reads."""
    lib = load_library(app)
    rows = [
        {
            "name": n,
            "channel": lib.get(n).spec.channel.value,
            "purpose": lib.get(n).spec.purpose.value,
            "fields": sorted(lib.get(n).variables()),
        }
        for n in lib.names()
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['name']:28} {r['channel']:6} {r['purpose']:10} {', '.join(r['fields'])}")


@sms_group.command("preview")
@click.argument("template", required=False)
@click.option("--text", default=None, help="Preview this text instead of a template.")
@click.option("--marketing", is_flag=True, help="With --text: a marketing message.")
@click.option(
    "--campaign-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Sample values shaped by this campaign's fields (sensitive ones masked).",
)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A field's value.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def preview_cmd(
    app: AppContext,
    template: str | None,
    text: str | None,
    marketing: bool,
    campaign_file: Path | None,
    sets: tuple[str, ...],
    as_json: bool,
) -> None:
    """The exact SMS a TEMPLATE (or --text) sends: signature, suffix, encoding and parts."""
    bank = app.settings.bank
    if (template is None) == (text is None):
        raise click.UsageError("give a TEMPLATE or --text (one of them)")
    if text is not None:
        rendered = Rendered("(text)", Channel.SMS, marketing, text)
        preview = sms_text(rendered, bank)
        sampled: list[str] = []
    else:
        assert template is not None
        tpl = load_library(app).get(template)
        if tpl.spec.channel is not Channel.SMS:
            raise click.UsageError(f"{template} is an {tpl.spec.channel.value} template")
        values: dict[str, Any] = {}
        sensitive: set[str] = set()
        if campaign_file is not None:
            from dialer.lists.campaigns import load_campaign_file

            spec = load_campaign_file(campaign_file)
            values = sample_values(spec.fields)
            sensitive = {k for k, f in spec.fields.items() if f.sensitive}
        values.update(_pairs(sets))
        house = {"bank", "callback"}
        sampled = sorted(tpl.variables() - set(values) - house)
        for key in sampled:
            values[key] = "张三" if key == "name" else "示例"
        preview = render_sms(tpl, values, sensitive=sensitive, bank=bank)
    if as_json:
        click.echo(json.dumps({**_preview_json(preview), "sampled": sampled}, ensure_ascii=False))
        return
    seg = preview.segmentation
    click.echo(preview.text)
    click.echo(f"-- {seg.summary()}")
    if seg.part_count > 1:
        for i, part in enumerate(seg.parts, 1):
            click.echo(f"   part {i}: {part}")
    if sampled:
        click.echo(f"-- sample values for: {', '.join(sampled)} (set them with --set NAME=VALUE)")


COMMANDS = [sms_group]


# --- sending through the gateway ------------------------------------------------------------


def _messaging(app: AppContext) -> Any:
    from dialer.messaging.config import load_messaging_settings

    return load_messaging_settings(app.settings)


@sms_group.command("send")
@click.argument("template", required=False)
@click.option("--to", "to", required=True, help="The number (E.164 or national).")
@click.option("--text", default=None, help="Send this text instead of a template.")
@click.option("--marketing", is_flag=True, help="With --text: a marketing message.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A field's value.")
@pass_app
def send_cmd(
    app: AppContext,
    template: str | None,
    to: str,
    text: str | None,
    marketing: bool,
    sets: tuple[str, ...],
) -> None:
    """Queue one SMS (sent by `dialer sms run`); DNC applies when it is handed over."""
    from dialer.lists.dnc import normalize_number
    from dialer.messaging.outbox import enqueue_sms
    from dialer.messaging.templates import MessagePurpose

    if (template is None) == (text is None):
        raise click.UsageError("give a TEMPLATE or --text (one of them)")
    number = normalize_number(to, app.settings.default_region)
    bank = app.settings.bank
    if text is not None:
        preview = sms_text(Rendered("(text)", Channel.SMS, marketing, text), bank)
    else:
        assert template is not None
        tpl = load_library(app).get(template)
        if tpl.spec.channel is not Channel.SMS:
            raise click.UsageError(f"{template} is an {tpl.spec.channel.value} template")
        preview = render_sms(tpl, _pairs(sets), sensitive=set(), bank=bank)
    purpose = MessagePurpose.MARKETING if preview.rendered.marketing else MessagePurpose.SERVICE
    with app.store.session() as s:
        row = enqueue_sms(s, to=number, text=preview.text, purpose=purpose, template=template)
        uid = row.uid
    click.echo(f"queued {uid}: {preview.segmentation.summary()}")


def _serve(app: AppContext, *, sms: bool, email: bool, steps: bool, tick_s: float = 5.0) -> None:
    import asyncio
    import signal

    from dialer.messaging.service import Secrets, serve
    from dialer.settings import get_secret

    def secret(name: str) -> str | None:
        value = get_secret(name, required=False)
        return value.get_secret_value() if value is not None else None

    cfg = _messaging(app)
    secrets = Secrets(
        secret("kannel_password"), secret("smtp_password"), secret("kannel_status_password")
    )
    library = load_library(app)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            app.store,
            app.settings,
            cfg,
            library,
            secrets,
            stop,
            sms=sms,
            email=email,
            steps=steps,
            tick_s=tick_s,
            started=click.echo,
        )

    asyncio.run(main())


@sms_group.command("run")
@pass_app
def run_cmd(app: AppContext) -> None:
    """Hand queued SMS to Kannel and take its delivery reports and replies (Ctrl-C stops)."""
    _serve(app, sms=True, email=False, steps=False)


@sms_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """SMS by state (queued, sent, delivered, failed, suppressed, ...)."""
    from dialer.messaging.outbox import counts_by_state

    with app.store.session() as s:
        counts = counts_by_state(s, Channel.SMS)
    if as_json:
        click.echo(json.dumps(counts))
        return
    for state, n in sorted(counts.items()):
        click.echo(f"  {state:12} {n:>9}")


@sms_group.command("replies")
@click.option("--all", "show_all", is_flag=True, help="Also replies an agent has handled.")
@click.option(
    "--handled",
    "handled",
    multiple=True,
    type=int,
    metavar="ID",
    help="Mark these replies handled.",
)
@click.option("--by", "by", default="cli", help="Who handled them (with --handled).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def replies_cmd(
    app: AppContext, show_all: bool, handled: tuple[int, ...], by: str, as_json: bool
) -> None:
    """Free-text replies kept for agents (keyword replies act by themselves)."""
    import datetime as dt

    from dialer.messaging.outbox import free_text_replies, mark_handled
    from dialer.privacy import mask_phone

    with app.store.session() as s:
        if handled:
            n = mark_handled(s, handled, by, dt.datetime.now(dt.UTC))
            click.echo(f"{n} marked handled")
            return
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "channel": r.channel,
                "from": mask_phone(r.sender) if r.sender.startswith("+") else r.sender,
                "contact_id": r.contact_id,
                "message_id": r.message_id,
                "received_at": r.received_at.isoformat(),
                "text": r.text,
                "handled_by": r.handled_by,
            }
            for r in free_text_replies(s, unhandled_only=not show_all)
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['id']:>6} {r['received_at'][:16]} {r['from']:16} {r['text']}")


@sms_group.command("kannel-config")
@pass_app
def kannel_config_cmd(app: AppContext) -> None:
    """The sendsms-user and sms-service groups to add to kannel.conf (password left out)."""
    from dialer.messaging.kannel import service_groups

    cfg = _messaging(app)
    click.echo(
        service_groups(cfg.sms.kannel.callback_base, username=cfg.sms.kannel.username), nl=False
    )


# --- e-mail ---------------------------------------------------------------------------------


@click.group("email")
def email_group() -> None:
    """E-mail: send through the SMTP relay, take replies and bounces."""


@email_group.command("send")
@click.argument("template")
@click.option("--to", "to", required=True, help="The address.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A field's value.")
@pass_app
def email_send_cmd(app: AppContext, template: str, to: str, sets: tuple[str, ...]) -> None:
    """Queue one e-mail from TEMPLATE (sent by `dialer email run`)."""
    from dialer.messaging.compose import house_of
    from dialer.messaging.outbox import enqueue_email
    from dialer.messaging.templates import MessagePurpose

    if "@" not in to or to.startswith("@") or to.endswith("@"):
        raise click.BadParameter(f"not an e-mail address: {to!r}", param_hint="--to")
    tpl = load_library(app).get(template)
    if tpl.spec.channel is not Channel.EMAIL:
        raise click.UsageError(f"{template} is an {tpl.spec.channel.value} template")
    r = tpl.render(_pairs(sets), house=house_of(app.settings.bank))
    purpose = MessagePurpose.MARKETING if r.marketing else MessagePurpose.SERVICE
    with app.store.session() as s:
        row = enqueue_email(
            s,
            to=to,
            subject=r.subject or "",
            text=r.text,
            html=r.html,
            purpose=purpose,
            template=template,
        )
        uid = row.uid
    click.echo(f"queued {uid}: {r.subject}")


@email_group.command("run")
@pass_app
def email_run_cmd(app: AppContext) -> None:
    """Send queued e-mail through the relay and take replies and bounces (Ctrl-C stops)."""
    _serve(app, sms=False, email=True, steps=False)


@email_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def email_status_cmd(app: AppContext, as_json: bool) -> None:
    """E-mail by state."""
    from dialer.messaging.outbox import counts_by_state

    with app.store.session() as s:
        counts = counts_by_state(s, Channel.EMAIL)
    if as_json:
        click.echo(json.dumps(counts))
        return
    for state, n in sorted(counts.items()):
        click.echo(f"  {state:12} {n:>9}")


COMMANDS.append(email_group)


# --- every channel and the campaign steps ---------------------------------------------------


@click.group("messages")
def messages_group() -> None:
    """Every channel beside voice, and the steps of multi-step campaigns."""


@messages_group.command("run")
@click.option("--sms/--no-sms", default=True, help="SMS through Kannel.")
@click.option("--email/--no-email", default=True, help="E-mail through the SMTP relay.")
@click.option("--steps/--no-steps", default=True, help="Run the steps of running campaigns.")
@click.option(
    "--tick",
    "tick_s",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between two passes over the campaigns' steps.",
)
@pass_app
def messages_run_cmd(app: AppContext, sms: bool, email: bool, steps: bool, tick_s: float) -> None:
    """SMS, e-mail and the campaigns' steps on one loop (Ctrl-C stops)."""
    _serve(app, sms=sms, email=email, steps=steps, tick_s=tick_s)


@messages_group.command("report")
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def messages_report_cmd(app: AppContext, campaign: str, as_json: bool) -> None:
    """Per step of CAMPAIGN: messages sent, delivered, failed, suppressed; replies by kind."""
    from dialer.lists.campaigns import get_campaign
    from dialer.messaging.sequencer import step_report

    with app.store.session() as s:
        report = step_report(s, get_campaign(s, campaign).id)
    if as_json:
        click.echo(json.dumps({str(k): v for k, v in sorted(report.items())}))
        return
    for step, counts in sorted(report.items()):
        shown = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
        click.echo(f"  step {step}: {shown}")


COMMANDS.append(messages_group)
