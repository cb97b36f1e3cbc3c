"""A second AMI session beside the dialer's, with no event filters: what the switch says (every
``Newexten``, ``VarSet``...), where the dialer's own session hears only what it reads
(``dialer.telephony.subscription``). For tests that check what a caller heard."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable

from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.ami.messages import Event


@contextlib.asynccontextmanager
async def switch_events(port: int, listener: Callable[[Event], None]) -> AsyncIterator[None]:
    client = AMIClient("127.0.0.1", port, "dialer", os.environ["DIALER_AMI_SECRET"])
    client.add_listener(listener)
    await client.start()
    try:
        await client.wait_ready(10)
        yield
    finally:
        await client.close()
