"""``AMD()`` as Asterisk 22 behaved with default settings (``ami-amd.txt``).

AMD decides from the audio the other side sends, so the simulator looks at the prompts the
far leg plays (``Channel.media_log``: speech, silence frames or tones) since ``AMD()`` began:

- no frames at all, or a short word followed by no frames: ``NOTSURE``/``TOOLONG-4900``
  when the 5 s analysis time is over;
- a greeting longer than 1.5 s: ``MACHINE``/``LONGGREETING-1500-1500``, ~1.72 s after the
  voice starts (VAD onset plus the 1500 ms greeting limit, as recorded);
- silence frames only: ``MACHINE``/``INITIALSILENCE-2500-2500``, ~2.48 s after they start;
- a short word then silence frames: ``HUMAN``/``HUMAN-800-800``, ~0.66 s after the word ends.

No event of its own: two ``VarSet``s, ``AMDSTATUS`` then ``AMDCAUSE``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from dialer.sim.sounds import Media

if TYPE_CHECKING:
    from dialer.sim.engine import Channel, Engine

TOTAL_ANALYSIS_S = 5.0
GREETING_S = 1.5
LONG_GREETING_DECIDE_S = 1.72
INITIAL_SILENCE_DECIDE_S = 2.48
AFTER_WORD_SILENCE_DECIDE_S = 0.66
#: media counts as contiguous when the next prompt starts within this gap
CONTIGUOUS_S = 0.06


class AmdStatus(enum.Enum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


CAUSES = {
    "long": (AmdStatus.MACHINE, "LONGGREETING-1500-1500"),
    "silence": (AmdStatus.MACHINE, "INITIALSILENCE-2500-2500"),
    "human": (AmdStatus.HUMAN, "HUMAN-800-800"),
    "toolong": (AmdStatus.NOTSURE, "TOOLONG-4900"),
}


def decide(log: list[tuple[float, float, Media]], t0: float) -> tuple[float, str] | None:
    """When and what AMD decides from the media heard so far (None: not decidable yet).

    ``log`` holds (start, duration, media) of the far side's prompts since ``t0``.
    """
    # what is still playing when AMD starts counts from t0 (a greeting AMD joins late is heard)
    entries = sorted((max(s, t0), d - max(0.0, t0 - s), m) for s, d, m in log if s + d > t0 + 1e-9)
    if not entries:
        return None
    start, dur, media = entries[0]
    if media == Media.SILENCE:
        # silence frames: as long as they run on, INITIALSILENCE at 2.48 s
        end = start + dur
        for s, d, m in entries[1:]:
            if m == Media.SILENCE and s <= end + CONTIGUOUS_S:
                end = max(end, s + d)
        if end - start >= INITIAL_SILENCE_DECIDE_S:
            return start + INITIAL_SILENCE_DECIDE_S, "silence"
        return None
    # speech (or tone): how long does the voice run?
    end = start + dur
    rest = entries[1:]
    while rest and rest[0][2] != Media.SILENCE and rest[0][0] <= end + CONTIGUOUS_S:
        end = max(end, rest[0][0] + rest[0][1])
        rest = rest[1:]
    if end - start >= GREETING_S:
        return start + LONG_GREETING_DECIDE_S, "long"
    # a short word: HUMAN if silence frames follow long enough
    if rest and rest[0][2] == Media.SILENCE and rest[0][0] <= end + CONTIGUOUS_S:
        if rest[0][1] + (rest[0][0] - end) >= AFTER_WORD_SILENCE_DECIDE_S:
            return end + AFTER_WORD_SILENCE_DECIDE_S, "human"
    return None


async def run_amd(e: Engine, ch: Channel, data: str) -> None:
    t0 = e.clock.now()
    deadline = t0 + TOTAL_ANALYSIS_S
    result = "toolong"
    while True:
        log = [(s, p.duration, p.media) for s, p in ch.media_log]
        d = decide(log, t0)
        now = e.clock.now()
        if d is not None and d[0] <= now + 1e-9 and d[0] <= deadline:
            result = d[1]
            break
        if now >= deadline - 1e-9:
            break
        wake = deadline if d is None else min(deadline, d[0])
        kind, _ = await e.wait(ch, max(0.0, wake - now), media=True)
    status, cause = CAUSES[result]
    e.setvar(ch, "AMDSTATUS", status.value)
    e.setvar(ch, "AMDCAUSE", cause)
