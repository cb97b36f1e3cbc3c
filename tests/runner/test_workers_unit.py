"""A worker's rounds without switches to reach: when it may take a dead worker's switch over."""

from __future__ import annotations

import datetime as dt

from dialer.app.worker import WorkerService
from dialer.settings import AMISettings, Settings, WorkerSettings
from dialer.store import Store
from dialer.store import workers as registry


async def test_a_standby_takes_over_only_once_it_has_been_steady_for_dead_after(
    store: Store,
) -> None:
    """After the store was away every heartbeat looks old: a worker that has just got the
    store back must not take the others' switches before they could beat again."""
    settings = Settings(
        asterisk=(AMISettings(name="pbx1", port=1),),
        worker=WorkerSettings(heartbeat_s=1, dead_after_s=3),
    )
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with store.session() as s:
        registry.register(s, registry.WorkerIdentity("a"), long_ago)
        registry.claim_switch(s, "pbx1", registry.WorkerIdentity("a"), long_ago)
    service = WorkerService(
        store, settings, registry.WorkerIdentity("b"), agi_url="agi://x", standby=True
    )
    await service.register()
    try:
        await service._round()
        assert service.runs == {}  # just (re)connected to the store: a's heartbeat may come
        assert service._healthy_since is not None
        service._healthy_since -= 3.0  # b has beaten steadily for dead_after
        await service._round()
        assert list(service.runs) == ["pbx1"]  # a is dead: b serves its switch
        with store.session() as s:
            assert registry.switch_owners(s, ["pbx1"]) == {"pbx1": "b"}
    finally:
        service.stop()
        await service.shutdown(0.0)
