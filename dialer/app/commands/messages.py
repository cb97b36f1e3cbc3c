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
