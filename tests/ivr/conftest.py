"""Fixtures for the IVR tests: the shipped flows, a seeded store, a fixed clock."""

from __future__ import annotations

import pytest
from ivr_fakepbx import FakeAsterisk, Persona, header, memory_io
from ivr_testkit import Run, RunFn, clock

from dialer.store import Store
from ivr.driver import BlockingAGI, drive_sync
from ivr.engine import Services, run_session
from ivr.flow import FlowLibrary
from ivr.record import StoreRecorder


@pytest.fixture(scope="session")
def library() -> FlowLibrary:
    return FlowLibrary.load()


@pytest.fixture
def services(store: Store, library: FlowLibrary) -> Services:
    return Services(library=library, recorder=StoreRecorder(store, clock), store=store, clock=clock)


@pytest.fixture
def run_flow(services: Services) -> RunFn:
    """Run a flow in memory against the fake Asterisk (same engine and driver as process AGI)."""

    def run(
        flow: str, persona: Persona, *, attempt: int | None = None, language: str = "zh"
    ) -> Run:
        pbx = FakeAsterisk(persona)
        script = flow if attempt is None else f"{flow}?attempt={attempt}"
        read, write = memory_io(pbx, header(script, language=language))
        io = BlockingAGI(read, write)  # type: ignore[arg-type]
        env = io.environment()
        return Run(drive_sync(run_session(services, env), io), pbx)

    return run
