"""``dialer sms`` commands that need no gateway: send (queue), status, replies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner

from dialer.app.cli import cli
from dialer.messaging import outbox
from dialer.messaging.keywords import Classifier
from dialer.messaging.templates import Channel
from dialer.store import open_store


def test_send_status_replies(tmp_path: Path, sqlite_url: str) -> None:
    db = sqlite_url
    run = CliRunner().invoke
    r = run(cli, ["--db", db, "sms", "send", "--to", "138 0000 0001", "--text", "您好"])
    assert r.exit_code == 0, r.output
    assert "1 part" in r.output
    r = run(cli, ["--db", db, "sms", "send", "--to", "12", "--text", "x"])
    assert r.exit_code != 0 and "not a valid phone number" in str(r.exception or r.output)
    r = run(cli, ["--db", db, "sms", "status", "--json"])
    assert json.loads(r.output) == {"queued": 1}
    store = open_store(db)
    now = dt.datetime.now(dt.UTC)
    with store.session() as s:
        out = outbox.apply_reply(
            s,
            channel=Channel.SMS,
            gateway_id="k:1",
            sender="+8613800000001",
            receiver=None,
            text="请下午再打给我",
            now=now,
            classify=Classifier(),
        )
    store.dispose()
    assert out.message_id is None  # nothing was sent yet: a reply to nothing is still kept
    r = run(cli, ["--db", db, "sms", "replies", "--json"])
    rows = json.loads(r.output)
    assert [x["text"] for x in rows] == ["请下午再打给我"]
    assert rows[0]["from"] == "+86138****0001"
    r = run(cli, ["--db", db, "sms", "replies", "--handled", str(rows[0]["id"]), "--by", "agent7"])
    assert "1 marked handled" in r.output
    r = run(cli, ["--db", db, "sms", "replies", "--json"])
    assert json.loads(r.output) == []
