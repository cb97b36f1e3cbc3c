"""Build the AMI ``Originate`` for an attempt (contracts.md "Originate"), pure.

The attempt row exists before this runs (``dialer.lists.hopper.start_attempt``); the service writes
the chosen ``ChannelId`` to it *before* the action goes on the wire, so a crash between the two
leaves a row the next resync can reconcile. The action is sent exactly once: the adapter never
re-sends, and nothing here retries.

Ids: ``ChannelId`` and ``OtherChannelId`` are uuid4 strings, all the same length, because
Asterisk matches channel ids by prefix (``conc-1`` collides with a live ``conc-10;2``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping

from dialer.errors import ConfigError, LocalProtocolError
from dialer.lists.campaigns import CampaignSpec
from dialer.telephony.tracker import CallPlan

DIALPLAN_CONTEXT = "dialer-outbound"
DIALPLAN_EXTEN = "s"
DIALPLAN_PRIORITY = "1"
MIN_RING_TIMEOUT_S = 15.0
DEFAULT_HOLD_S = 2


@dataclasses.dataclass(frozen=True, slots=True)
class OriginateRequest:
    attempt_id: int
    action_id: str
    channel_id: str
    other_channel_id: str
    fields: tuple[tuple[str, str], ...]
    plan: CallPlan

    def field(self, key: str) -> str | None:
        for k, v in self.fields:
            if k == key:
                return v
        return None

    def variables(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.fields:
            if k == "Variable":
                name, _, value = v.partition("=")
                out[name] = value
        return out


def dial_string(template: str, number: str) -> str:
    if "{number}" not in template:
        raise ConfigError("channel template must contain {number}", key="channel")
    if not number.startswith("+") or not number[1:].isdigit():
        raise LocalProtocolError(f"not an E.164 number: {number[:4]}...")
    return template.replace("{number}", number)


def _clean(value: str) -> str:
    """A channel-variable value: no line breaks (AMI framing) and no commas (Set() splits)."""
    return value.replace("\r", " ").replace("\n", " ").replace(",", " ")


def build_originate(
    *,
    attempt_id: int,
    phone: str,
    spec: CampaignSpec,
    language: str | None,
    agi_url: str,
    messages: Mapping[str, Mapping[str, str]] | None = None,
    action_id: str | None = None,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    agent_channel: str | None = None,
    agent_name: str | None = None,
) -> OriginateRequest:
    """The Originate for one attempt: fields in wire order, ``Variable`` lines repeated.
    ``messages`` holds, per language, the variables with the bank's messages (playlists built
    by ``ivr.messages.dialplan_messages`` from the settings). ``agent_channel``: a personal
    callback's agent, answered and waiting on that channel (``dialer-personal``): the
    customer who answers is bridged to it (``DIALER_AGENT``)."""
    ring_timeout_s = spec.pacing.ring_timeout_s
    if ring_timeout_s < MIN_RING_TIMEOUT_S:
        raise ConfigError(
            f"ring timeout {ring_timeout_s} s is under {MIN_RING_TIMEOUT_S} s",
            key="pacing.ring_timeout_s",
        )
    channel_id = new_id()
    other_channel_id = new_id()
    if len(channel_id) != len(other_channel_id):
        raise LocalProtocolError("ChannelIds must all have the same length (prefix matching)")
    hold_s = max(1, round(spec.pacing.hold_limit_s)) if spec.pacing.hold_limit_s else DEFAULT_HOLD_S
    lang = language if language in ("zh", "en") else spec.language
    fields: list[tuple[str, str]] = [
        ("Channel", dial_string(spec.channel, phone)),
        ("Context", DIALPLAN_CONTEXT),
        ("Exten", DIALPLAN_EXTEN),
        ("Priority", DIALPLAN_PRIORITY),
        ("Async", "true"),
        ("Timeout", str(int(ring_timeout_s * 1000))),
        ("ChannelId", channel_id),
        ("OtherChannelId", other_channel_id),
    ]
    if spec.caller_id:
        cid = _clean(spec.caller_id).replace('"', "")
        fields.append(("CallerID", f'"{cid}" <{cid}>'))
    variables = {
        "DIALER_ATTEMPT": str(attempt_id),
        "DIALER_CAMPAIGN": spec.name,
        "DIALER_FLOW": spec.flow or "",
        "DIALER_QUEUE": spec.queue or "",
        "DIALER_HOLD": str(hold_s),
        "DIALER_AMD": spec.amd,
        "DIALER_AGI": agi_url,
        "DIALER_LANG": lang,
        **(messages or {}).get(lang, {}),
    }
    if agent_channel:
        variables["DIALER_AGENT"] = agent_channel
    fields += [("Variable", f"{k}={_clean(v)}") for k, v in variables.items()]
    return OriginateRequest(
        attempt_id=attempt_id,
        action_id=action_id or f"orig-{attempt_id}-{channel_id[:8]}",
        channel_id=channel_id,
        other_channel_id=other_channel_id,
        fields=tuple(fields),
        plan=CallPlan(
            amd=spec.amd,
            flow=spec.flow,
            queue=spec.queue,
            ring_timeout_s=ring_timeout_s,
            agent=agent_channel or None,
            agent_name=agent_name if agent_channel else None,
        ),
    )


#: The context an agent-first personal callback rings the agent's phone into (its answered
#: channel waits there for the customer's bridge: ``config/asterisk/extensions_dialer.conf``).
PERSONAL_CONTEXT = "dialer-personal"
#: How long the agent's phone rings before the callback waits for the agent again.
AGENT_RING_S = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class AgentLeg:
    """The Originate that rings an agent's phone for a personal callback (no attempt row: the
    customer's leg is the attempt, written once the agent answered)."""

    action_id: str
    channel_id: str
    fields: tuple[tuple[str, str], ...]


def build_agent_leg(
    *,
    interface: str,
    callback_id: int,
    spec: CampaignSpec,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> AgentLeg:
    """Ring ``interface`` for ``AGENT_RING_S`` into ``dialer-personal``; answered, the agent
    waits there ``DIALER_AGENT_WAIT`` seconds (the customer's ring time and a margin) for the
    customer's leg to bridge them."""
    channel_id = new_id()
    wait_s = int(spec.pacing.ring_timeout_s) + 15
    fields: list[tuple[str, str]] = [
        ("Channel", interface),
        ("Context", PERSONAL_CONTEXT),
        ("Exten", DIALPLAN_EXTEN),
        ("Priority", DIALPLAN_PRIORITY),
        ("Async", "true"),
        ("Timeout", str(int(AGENT_RING_S * 1000))),
        ("ChannelId", channel_id),
    ]
    if spec.caller_id:
        cid = _clean(spec.caller_id).replace('"', "")
        fields.append(("CallerID", f'"{cid}" <{cid}>'))
    variables = {
        "DIALER_CAMPAIGN": spec.name,
        "DIALER_CALLBACK": str(callback_id),
        "DIALER_AGENT_WAIT": str(wait_s),
    }
    fields += [("Variable", f"{k}={_clean(v)}") for k, v in variables.items()]
    return AgentLeg(f"agent-{callback_id}-{channel_id[:8]}", channel_id, tuple(fields))
