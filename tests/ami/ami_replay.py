"""Replay recorded Asterisk transcripts through the framing and the tracker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import Event, Message, Response
from dialer.telephony.ami.transcript import action_fields, read_transcript
from dialer.telephony.tracker import CallPlan, CallTracker, Finished, Update

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"


def fixture(name: str) -> Path:
    return FIXTURES / name


def parse(data: bytes, *, banner: bool) -> list[Message]:
    f = AMIFraming(expect_banner=banner)
    return f.receive_data(data) + f.receive_data(b"")


@dataclasses.dataclass
class Replay:
    tracker: CallTracker
    finished: list[Finished]
    updates: list[Update]
    registered: list[int]
    channel_ids: list[str]

    def outcome_of(self, attempt_id: int) -> str:
        [f] = [f for f in self.finished if f.attempt_id == attempt_id]
        return f.outcome.value


@dataclasses.dataclass(frozen=True)
class Register:
    attempt_id: int
    channel_id: str
    other_channel_id: str | None
    action_id: str


Step = Register | Event | Response


def steps(name: str) -> list[Step]:
    """A transcript as what the dialer does and sees: registrations, events, responses."""
    out: list[Step] = []
    n = 0
    for conn in read_transcript(fixture(name)):
        cuts = [pos for pos, _ in conn.sent] + [len(conn.received_lines)]
        prev = 0
        for i, cut in enumerate(cuts):
            out += [
                m
                for m in parse(conn.received_bytes(prev, cut), banner=prev == 0)
                if isinstance(m, Event | Response)
            ]
            prev = cut
            if i >= len(conn.sent):
                break
            fields = action_fields(conn.sent[i][1])
            if fields.get("Action") != "Originate" or "Channel" not in fields:
                continue
            n += 1
            channel_id = fields.get("ChannelId")
            other = fields.get("OtherChannelId")
            if not channel_id:
                legs = [
                    m.headers["Uniqueid"]
                    for m in parse(conn.received_bytes(cut), banner=False)
                    if isinstance(m, Event) and m.name == "Newchannel"
                ][:2]
                channel_id = legs[0] if legs else fields["ActionID"]
                other = legs[1] if len(legs) > 1 else None
            out.append(Register(n, channel_id, other, fields["ActionID"]))
    return out


def run_steps(
    seq: list[Step], plans: list[CallPlan] | None = None, *, flush: bool = True
) -> Replay:
    tracker = CallTracker()
    finished: list[Finished] = []
    updates: list[Update] = []
    registered: list[int] = []
    channel_ids: list[str] = []
    originate_ids: dict[str, int] = {}
    now = 0.0
    for step in seq:
        ups: list[Update] = []
        if isinstance(step, Register):
            plan = plans[step.attempt_id - 1] if plans else CallPlan()
            tracker.register(
                step.attempt_id,
                step.channel_id,
                other_channel_id=step.other_channel_id,
                action_id=step.action_id,
                plan=plan,
                now=now,
            )
            originate_ids[step.action_id] = step.attempt_id
            registered.append(step.attempt_id)
            channel_ids.append(step.channel_id)
        elif isinstance(step, Event):
            ts = step.headers.get("Timestamp")
            if ts:
                now = max(now, float(ts))
            ups = tracker.feed(step, now)
        elif step.action_id in originate_ids and not step.ok:
            ups = tracker.originate_rejected(originate_ids[step.action_id], step.message, now)
        updates.extend(ups)
        finished.extend(u for u in ups if isinstance(u, Finished))
    if flush:
        for u in tracker.tick(now + 1000):
            updates.append(u)
            if isinstance(u, Finished):
                finished.append(u)
    return Replay(tracker, finished, updates, registered, channel_ids)


def replay(name: str, plans: list[CallPlan] | None = None, *, flush: bool = True) -> Replay:
    """Feed every connection of a transcript; Originates become attempts 1, 2, 3..."""
    return run_steps(steps(name), plans, flush=flush)
