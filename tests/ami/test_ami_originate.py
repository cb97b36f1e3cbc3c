"""The Originate built for an attempt follows contracts.md."""

from __future__ import annotations

import itertools
import uuid

import pytest
from pydantic import ValidationError

from dialer.errors import ConfigError, LocalProtocolError
from dialer.lists.campaigns import CampaignSpec
from dialer.settings import BankSettings
from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import serialize_action
from dialer.telephony.originate import build_originate, dial_string
from ivr.messages import dialplan_messages

SPEC = CampaignSpec.model_validate(
    {
        "name": "card-activation",
        "channel": "Local/{number}@customer",
        "caller_id": "95588",
        "flow": "card_activation",
        "queue": "agents",
        "amd": "message",
        "pacing": {"ring_timeout_s": 25, "hold_limit_s": 2},
    }
)


DIGITS = "&".join(f"dialer/digit-{d}" for d in "95588")


def test_fields_and_variables_per_contract() -> None:
    req = build_originate(
        attempt_id=42,
        phone="+8613800000486",
        spec=SPEC,
        language="en",
        agi_url="agi://127.0.0.1:4573",
        messages=dialplan_messages(BankSettings(callback_number="955-88")),
    )
    f = dict(req.fields)
    assert f["Channel"] == "Local/+8613800000486@customer"
    assert (f["Context"], f["Exten"], f["Priority"], f["Async"]) == (
        "dialer-outbound",
        "s",
        "1",
        "true",
    )
    assert f["Timeout"] == "25000"
    assert f["CallerID"] == '"95588" <95588>'
    assert uuid.UUID(req.channel_id).version == 4 and uuid.UUID(req.other_channel_id).version == 4
    assert f["ChannelId"] == req.channel_id and f["OtherChannelId"] == req.other_channel_id
    assert req.variables() == {
        "DIALER_ATTEMPT": "42",
        "DIALER_CAMPAIGN": "card-activation",
        "DIALER_FLOW": "card_activation",
        "DIALER_QUEUE": "agents",
        "DIALER_HOLD": "2",
        "DIALER_AMD": "message",
        "DIALER_AGI": "agi://127.0.0.1:4573",
        "DIALER_LANG": "en",
        # the bank's messages in the contact's language, naming the settings' bank and number
        "DIALER_MSG_ABANDON": "dialer/hello-this-is&dialer/bank-name&dialer/sh-sorry"
        f"&{DIGITS}&dialer/thank-you",
        "DIALER_MSG_MACHINE": "dialer/hello-this-is&dialer/bank-name&dialer/mm-important"
        f"&{DIGITS}&dialer/thank-you",
        # said when the flow cannot run: the apology, then the callback number's digits
        "DIALER_SORRY": f"dialer/ivr-apology&{DIGITS}",
        # and the number itself, which the IVR's flows say (never a recording)
        "DIALER_CALLBACK": "95588",
    }
    assert req.plan.flow == "card_activation" and req.plan.amd == "message"
    # it goes on the wire as repeated Variable lines and parses back the same
    [msg] = AMIFraming(expect_banner=False).receive_data(
        serialize_action("Originate", req.action_id, req.fields)
    )
    assert len(msg.headers.getall("Variable")) == 12  # type: ignore[union-attr]


def test_ids_are_fixed_length_and_fresh() -> None:
    reqs = [
        build_originate(
            attempt_id=i, phone="+8613800000001", spec=SPEC, language=None, agi_url="agi://x"
        )
        for i in range(50)
    ]
    ids = [r.channel_id for r in reqs] + [r.other_channel_id for r in reqs]
    assert len(set(ids)) == 100 and {len(i) for i in ids} == {36}
    assert reqs[0].variables()["DIALER_LANG"] == "zh"  # campaign default
    short = itertools.chain(["a", "bb"])
    with pytest.raises(LocalProtocolError):
        build_originate(
            attempt_id=1,
            phone="+861",
            spec=SPEC,
            language=None,
            agi_url="x",
            new_id=lambda: next(short),
        )


def test_bad_numbers_and_templates() -> None:
    with pytest.raises(LocalProtocolError):
        dial_string("Local/{number}@customer", "13800000000")
    with pytest.raises(ConfigError):
        dial_string("Local/x@customer", "+8613800000000")


def test_ring_timeout_under_15_s_is_refused_by_the_spec() -> None:
    with pytest.raises(ValidationError):
        CampaignSpec.model_validate({**SPEC.to_document(), "pacing": {"ring_timeout_s": 10}})
