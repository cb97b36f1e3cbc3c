"""The dialplan interpreter: loading, patterns, substitutions, expressions, refusals."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from dialer.errors import ConfigError
from dialer.sim.dialplan import Dialplan, evaluate, split_args, substitute
from dialer.sim.pbx import DEFAULT_CUSTOMER, DEFAULT_DIALPLAN
from dialer.sim.sounds import Media, SoundLibrary


def test_include_relative_and_priorities(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inc.conf").write_text(
        "[inc]\nexten => s,1,NoOp(a)\n same => n(two),NoOp(b)\n same => n,Goto(two)\n"
    )
    (tmp_path / "main.conf").write_text(
        "[general]\nstatic=yes\n#include sub/inc.conf\n[m]\nexten => _X.,1,NoOp()\n"
    )
    dp = Dialplan.load(tmp_path / "main.conf")
    ext = dp.find("inc", "s")
    assert ext is not None and ext.labels == {"two": 2} and sorted(ext.steps) == [1, 2, 3]
    assert dp.find("m", "123") is not None and dp.find("m", "+123") is None


def test_unknown_application_refused_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "x.conf"
    f.write_text("[c]\nexten => s,1,NoOp()\n same => n,Dial(PJSIP/100)\n")
    with pytest.raises(ConfigError) as err:
        Dialplan.load(f)
    msg = str(err.value)
    assert str(f) in msg and "line 3" in msg and "'Dial'" in msg


def test_patterns_prefer_exact_and_specific() -> None:
    dp = Dialplan.from_text(
        "[c]\nexten => _X.,1,NoOp(any)\nexten => _4XX,1,NoOp(4xx)\nexten => 404,1,NoOp(exact)\n"
        "exten => _+86[1-3]X.,1,NoOp(cn)\n"
    )
    assert dp.find("c", "404").steps[1].data == "exact"  # type: ignore[union-attr]
    assert dp.find("c", "405").steps[1].data == "4xx"  # type: ignore[union-attr]
    assert dp.find("c", "4055").steps[1].data == "any"  # type: ignore[union-attr]
    assert dp.find("c", "+8613800000000").steps[1].data == "cn"  # type: ignore[union-attr]
    assert dp.find("c", "+8693800000000") is None


def test_substitutions_and_expressions() -> None:
    v = {"EXTEN": "+8613800000486", "X": "queue:fraud-agents", "E": ""}.get
    assert substitute("${EXTEN:-3}", v) == "486"
    assert substitute("${EXTEN:0:6}", v) == "+86138"
    assert substitute("${X:6}", v) == "fraud-agents"
    assert substitute('$["${X:0:6}" = "queue:"]', v) == "1"
    assert substitute('$["${E}" = ""]', v) == "1"
    assert evaluate('"off" = "off" | "a" = ""') == "1"
    assert evaluate("2 + 3 * 4") == "14"
    assert evaluate('"MACHINE" != "MACHINE"') == "0"
    assert split_args('a,"b,c",d(e,f)') == ["a", '"b,c"', "d(e,f)"]


def test_default_operator_files_load() -> None:
    dp = Dialplan.load(DEFAULT_DIALPLAN, DEFAULT_CUSTOMER)
    for ctx in ("dialer-outbound", "customer", "ivr", "park", "agent-sim"):
        assert dp.has_context(ctx)
    assert dp.find("customer", "+8613800000123") is not None


def test_prompt_durations_from_wav_and_catalogue(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    with wave.open(str(tmp_path / "zh" / "safe-harbour.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 3)
    lib = SoundLibrary([tmp_path])
    p = lib.lookup("dialer/safe-harbour", "zh")
    assert p is not None and abs(p.duration - 3.0) < 1e-6
    fallback = lib.lookup("dialer/not-rendered-yet", "en")
    assert fallback is not None and fallback.duration == 2.0
    assert lib.lookup("beep").duration == 0.44  # type: ignore[union-attr]
    assert lib.lookup("silence/6").media == Media.SILENCE  # type: ignore[union-attr]
    assert lib.lookup("no-such-prompt") is None
