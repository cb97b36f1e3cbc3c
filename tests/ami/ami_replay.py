"""Replay recorded Asterisk transcripts through the framing and the tracker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dialer.ami.framing import AMIFraming
from dialer.ami.messages import Event, Message, Response
from dialer.ami.transcript import action_fields, read_transcript
from dialer.tracker import CallPlan, CallTracker, Finished, Update

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


def replay(name: str, plans: list[CallPlan] | None = None, *, flush: bool = True) -> Replay:
    """Feed every connection of a transcript; Originates become attempts 1, 2, 3..."""
    tracker = CallTracker()
    finished: list[Finished] = []
    updates: list[Update] = []
    registered: list[int] = []
    channel_ids: list[str] = []
    now = 0.0
    for conn in read_transcript(fixture(name)):
        cuts = [pos for pos, _ in conn.sent] + [len(conn.received_lines)]
        prev = 0
        originate_ids: dict[str, int] = {}
        for i, cut in enumerate(cuts):
            for msg in parse(conn.received_bytes(prev, cut), banner=prev == 0):
                if isinstance(msg, Event):
                    ts = msg.headers.get("Timestamp")
                    if ts:
                        now = float(ts)
                    ups = tracker.feed(msg, now)
                elif isinstance(msg, Response) and msg.action_id in originate_ids:
                    ups = []
                    if not msg.ok:
                        ups = tracker.originate_rejected(
                            originate_ids[msg.action_id], msg.message, now
                        )
                else:
                    continue
                updates.extend(ups)
                finished.extend(u for u in ups if isinstance(u, Finished))
            prev = cut
            if i >= len(conn.sent):
                break
            fields = action_fields(conn.sent[i][1])
            if fields.get("Action") != "Originate" or "Channel" not in fields:
                continue
            attempt_id = len(registered) + 1
            channel_id = fields.get("ChannelId")
            other = fields.get("OtherChannelId")
            if not channel_id:
                # recorded without ChannelId: the first two Newchannels are the two legs
                legs = [
                    m.headers["Uniqueid"]
                    for m in parse(conn.received_bytes(cut), banner=False)
                    if isinstance(m, Event) and m.name == "Newchannel"
                ][:2]
                channel_id = legs[0] if legs else fields["ActionID"]
                other = legs[1] if len(legs) > 1 else None
            plan = plans[attempt_id - 1] if plans else CallPlan()
            tracker.register(
                attempt_id,
                channel_id,
                other_channel_id=other,
                action_id=fields["ActionID"],
                plan=plan,
                now=now,
            )
            originate_ids[fields["ActionID"]] = attempt_id
            registered.append(attempt_id)
            channel_ids.append(channel_id)
    if flush:
        for u in tracker.tick(now + 1000):
            updates.append(u)
            if isinstance(u, Finished):
                finished.append(u)
    return Replay(tracker, finished, updates, registered, channel_ids)
