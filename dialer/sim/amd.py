"""AMD() placeholder until the model of part 2 lands: NOTSURE/TOOLONG after 5 s."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dialer.sim.engine import Channel, Engine


async def run_amd(e: Engine, ch: Channel, data: str) -> None:
    await e.wait(ch, 5.0)
    e.setvar(ch, "AMDSTATUS", "NOTSURE")
    e.setvar(ch, "AMDCAUSE", "TOOLONG-5000")
