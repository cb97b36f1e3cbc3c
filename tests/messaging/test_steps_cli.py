"""``dialer campaign apply`` checks steps; ``dialer hopper explain`` explains each step."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from dialer.app.cli import cli

CAMPAIGN = {
    "name": "steps-cli",
    "mode": "progressive",
    "queue": "sales",
    "fields": {
        "amount_due": "decimal",
        "due_date": "date",
        "card_last4": {"type": "digits", "length": 4},
    },
    "steps": [
        {"channel": "sms", "template": "repayment-due-sms", "at": "09:00"},
        {"channel": "call", "at": "10:00", "when": "no_reply"},
        {"channel": "sms", "template": "repayment-fallback-sms", "when": "calls_failed"},
    ],
}


def test_apply_and_explain(tmp_path: Path, sqlite_url: str) -> None:
    db = ["--db", sqlite_url]
    run = CliRunner().invoke
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**CAMPAIGN, "steps": [{"channel": "sms"}]}), "utf-8")
    r = run(cli, [*db, "campaign", "apply", str(bad)])
    assert r.exit_code != 0 and "needs a template" in str(r.exception)
    late = {**CAMPAIGN, "steps": [{"channel": "sms", "template": "card-offer-sms", "at": "20:30"}]}
    bad.write_text(yaml.safe_dump(late), "utf-8")
    r = run(cli, [*db, "campaign", "apply", str(bad)])
    assert "outside the sms window 09:00-20:00 for marketing" in str(r.exception)
    wrong = {**CAMPAIGN, "steps": [{"channel": "email", "template": "card-offer-sms"}]}
    bad.write_text(yaml.safe_dump(wrong), "utf-8")
    r = run(cli, [*db, "campaign", "apply", str(bad)])
    assert "is for sms" in str(r.exception)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(CAMPAIGN, allow_unicode=True), "utf-8")
    assert run(cli, [*db, "campaign", "apply", str(good)]).exit_code == 0
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "phone,name,amount_due,due_date,card_last4\n"
        "13800000001,张三,100.00,2026-12-20,1234\n13800000002,李四,200.00,2026-12-20,5678\n",
        "utf-8",
    )
    assert run(cli, [*db, "contacts", "import", "steps-cli", str(contacts)]).exit_code == 0
    r = run(cli, [*db, "hopper", "explain", "steps-cli", "--at", "2026-12-01T08:30+08:00"])
    assert r.exit_code == 0, r.output
    assert "waiting for step 1 at 09:00" in r.output
    r = run(
        cli, [*db, "hopper", "explain", "steps-cli", "--at", "2026-12-01T09:30+08:00", "--json"]
    )
    assert json.loads(r.output)["steps"] == {"step 1: sms now": 2}
