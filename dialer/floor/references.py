"""Every name a campaign file refers to is checked when it is applied, not when a customer
answers: its IVR flow exists, the prompts that flow and the dialplan play are installed, and
(when a switch is connected) its queue is one the switch knows. A refusal is one line naming the
file, the key and what exists instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec
from dialer.settings import Settings
from ivr.flow import Flow, FlowLibrary, SayItem, VerifyNode, default_flows_dir
from ivr.messages import BankMessage, message_pieces
from ivr.prompts import available, missing_prompts, sounds_dir
from ivr.say import LANGS, SayKind, say

#: The pieces of the bank's messages the dialplan (config/asterisk/extensions_dialer.conf)
#: plays itself (ivr.messages): the callback number's digits are in every flow's vocabulary.
DIGITS = {f"digit-{d}" for d in range(10)}


def flows_dir(settings: Settings) -> Path:
    """The flows folder beside the settings file (``flows_dir``), else the IVR's default."""
    if settings.source:
        here = Path(settings.source).parent / settings.flows_dir
        if here.is_dir():
            return here
    return default_flows_dir()


def load_library(settings: Settings) -> FlowLibrary:
    return FlowLibrary.load(flows_dir(settings))


def _suggest(name: str, names: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(names)) or 'none'})"


def dialplan_prompts(spec: CampaignSpec) -> set[str]:
    needed = set()
    if spec.queue:
        needed |= message_pieces(BankMessage.ABANDON)
    if spec.amd == "message":
        needed |= message_pieces(BankMessage.MACHINE)
    if spec.flow:
        needed |= message_pieces(BankMessage.APOLOGY)
    return needed | DIGITS if needed else needed


def check_references(
    spec: CampaignSpec,
    source: str | None,
    *,
    library: FlowLibrary,
    sounds: Path | None = None,
    queues: Collection[str] | None = None,
) -> None:
    """Raise ``ConfigError`` (one line per problem) when a name in ``spec`` leads nowhere.
    ``queues``: the queues the switch reported (None: no switch connected, not checked)."""
    where = source or f"campaign {spec.name}"
    problems = []
    root = sounds or sounds_dir()
    if spec.flow:
        if spec.flow not in library.flows:
            problems.append(
                f"flow: no IVR flow named {spec.flow!r}{_suggest(spec.flow, library.flows)}"
            )
        else:
            missing = missing_prompts(library.flows[spec.flow], root)
            if missing:
                problems.append(
                    f"flow {spec.flow}: prompts not installed: {', '.join(missing[:5])}"
                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                )
    for lang in LANGS:
        lacking = sorted(dialplan_prompts(spec) - available(lang, root))
        if lacking:
            problems.append(f"dialplan prompts not installed: {lang}/{', '.join(lacking)}")
    if spec.queue and queues is not None and spec.queue not in queues:
        problems.append(
            f"queue: the switch knows no queue named {spec.queue!r}{_suggest(spec.queue, queues)}"
        )
    if problems:
        raise ConfigError("; ".join(f"{where}: {p}" for p in problems))


def values_read(flow: Flow) -> dict[str, set[SayKind]]:
    """The contact fields a flow reads: each one it says aloud (with every way it says it) and
    each one a verification compares against (no way to say). A field chosen among prompts
    (``prompt_from``) has a default and is not required."""
    needs: dict[str, set[SayKind]] = {}
    for node in flow.nodes.values():
        for item in node.prompt_items():
            if isinstance(item, SayItem) and item.field:
                needs.setdefault(item.field, set()).add(item.say)
        if isinstance(node, VerifyNode):
            needs.setdefault(node.field, set())
    return needs


def check_values(flow: Flow, values: Mapping[str, Any]) -> list[str]:
    """What would break the flow mid-call with these values: a field it reads that is absent
    or empty, or one it cannot say as it says it. Names the field and the kind, never the
    value (it may be a card's digits)."""
    problems = []
    for name, kinds in sorted(values_read(flow).items()):
        value = values.get(name)
        ways = sorted(k.value for k in kinds)
        if value is None or value == "":
            how = f" (as {', '.join(ways)})" if ways else ""
            problems.append(f"{name} is missing: flow {flow.name} reads it{how}")
            continue
        for kind in sorted(kinds):
            try:
                say(kind, value, LANGS[0])
            except (ValueError, TypeError, ArithmeticError):
                problems.append(f"{name} cannot be said as {kind.value} by flow {flow.name}")
    return problems
