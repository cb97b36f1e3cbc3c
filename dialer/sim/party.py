"""The simulated called party behind the ``customer`` context (``SimCalledParty()``).

With no scenario the party rings briefly, answers and stays on the line until the other side
hangs up (the four deterministic test numbers are handled in ``sim/customer.conf`` by the
recorded dialplan, before this application runs). A scenario replaces this with a
statistical model or a persona (``dialer.sim.scenario``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialer.sim.dialplan import split_args

if TYPE_CHECKING:
    from dialer.sim.engine import Channel, Engine

DEFAULT_RING_S = 2.0


async def run_called_party(e: Engine, ch: Channel, data: str) -> None:
    number = (split_args(data)[0].strip() if data.strip() else "") or ch.exten
    model = e.party_model
    if model is not None:
        await model.run(e, ch, number)
        return
    e.ringing(ch)
    await e.wait(ch, DEFAULT_RING_S)
    e.answer(ch)
    await e.wait(ch, None)
