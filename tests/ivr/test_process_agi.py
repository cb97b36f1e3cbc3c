"""``ivr agi FLOW`` as Asterisk runs it: a child process, AGI over stdin/stdout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from ivr_fakepbx import FakeAsterisk, Persona, header
from ivr_testkit import ID_LAST6, seed_attempt
from sqlalchemy import select

from dialer.store import Store
from dialer.store.models import IvrSession


def run_process_agi(
    db_url: str, args: list[str], pbx: FakeAsterisk, script: str, *, sighup_at: int | None = None
) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr", "--db", db_url, "agi", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
        bufsize=0,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(header(script))
    n = 0
    while line := proc.stdout.readline():
        n += 1
        if sighup_at is not None and n == sighup_at:
            proc.send_signal(signal.SIGHUP)  # Asterisk signals the hang-up too
        proc.stdin.write(pbx.reply(line.decode().rstrip("\n")))
    proc.stdin.close()
    rc = proc.wait(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.stdout.close()
    assert ID_LAST6 not in err
    return rc


def test_process_agi_runs_a_flow(store: Store, db_url: str) -> None:
    aid = seed_attempt(store, "card_activation")
    pbx = FakeAsterisk(Persona(answers=[ID_LAST6, "1"]))
    rc = run_process_agi(db_url, ["card_activation", f"attempt={aid}"], pbx, "/usr/bin/ivr")
    assert rc == 0
    assert pbx.variables == {"IVR_RESULT": "activated", "IVR_NEXT": "hangup"}
    with store.session() as s:
        row = s.scalars(select(IvrSession)).one()
        assert (row.attempt_id, row.status, row.result) == (aid, "completed", "activated")


def test_process_agi_survives_sighup_and_records_hangup(store: Store, db_url: str) -> None:
    aid = seed_attempt(store, "repayment_reminder")
    pbx = FakeAsterisk(Persona(answers=["1"], hangup_after=5))
    rc = run_process_agi(db_url, ["repayment_reminder", str(aid)], pbx, "/usr/bin/ivr", sighup_at=5)
    assert rc == 0
    with store.session() as s:
        row = s.scalars(select(IvrSession)).one()
        assert row.status == "hangup" and row.ended_at is not None
