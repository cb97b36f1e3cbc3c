"""SMS length rules: GSM 7-bit / UCS-2 segmentation, signature and opt-out suffix."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dialer.messaging import sms
from dialer.messaging.sms import Encoding, segment

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = "^{}\\[~]|€\f"


def test_gsm_alphabet_costs() -> None:
    assert all(sms.gsm_septets(c) == 1 for c in GSM_BASIC)
    assert all(sms.gsm_septets(c) == 2 for c in GSM_EXT)
    for c in "中ç`😀":
        assert sms.gsm_septets(c) is None


def test_boundaries() -> None:
    assert segment("a" * 160).part_count == 1
    assert segment("a" * 161).part_count == 2
    assert segment("a" * 306).part_count == 2
    assert segment("a" * 307).part_count == 3
    assert segment("中" * 70).part_count == 1
    assert segment("中" * 71).part_count == 2
    assert segment("中" * 134).part_count == 2
    assert segment("中" * 135).part_count == 3
    # one euro sign costs two septets: 159 + 2 > 160
    assert segment("a" * 159 + "€").part_count == 2
    assert segment("a" * 158 + "€").part_count == 1
    # a backtick is not GSM: the whole text goes UCS-2
    assert segment("a" * 69 + "`").encoding is Encoding.UCS2
    assert segment("").part_count == 0


def test_escape_and_surrogate_never_split() -> None:
    seg = segment("a" * 152 + "€" + "b" * 10)
    assert seg.parts[0] == "a" * 152 and seg.parts[1].startswith("€")
    seg = segment("中" * 66 + "😀" + "中" * 10)
    assert seg.parts[0] == "中" * 66 and seg.parts[1].startswith("😀")


def test_compose_signature_and_suffix_once() -> None:
    sig = sms.signature_of("示例银行")
    assert sig == "【示例银行】"
    text = sms.compose(" 您好 ", signature=sig, marketing=True)
    assert text == "【示例银行】您好回T退订"
    assert sms.compose(text, signature=sig, marketing=True) == text
    assert sms.compose("您好", signature=sig, marketing=False) == "【示例银行】您好"


def units(enc: Encoding, text: str) -> int:
    if enc is Encoding.GSM7:
        return sum(sms.gsm_septets(c) or 0 for c in text)
    return sum(sms.ucs2_units(c) for c in text)


gsm_text = st.text(alphabet=st.sampled_from(GSM_BASIC + GSM_EXT), max_size=700)
any_text = st.text(max_size=400) | gsm_text | st.text(alphabet="中文银行€a😀", max_size=400)


@given(any_text)
def test_segmentation_invariants(text: str) -> None:
    seg = segment(text)
    assert "".join(seg.parts) == text
    enc = seg.encoding
    assert enc is (Encoding.GSM7 if all(sms.gsm_septets(c) for c in text) else Encoding.UCS2)
    assert seg.units == units(enc, text)
    lim = sms.LIMITS[enc]
    if seg.units <= lim.single:
        assert seg.part_count == (1 if text else 0)
    else:
        assert seg.part_count >= 2
        assert all(0 < units(enc, p) <= lim.part for p in seg.parts)
        # greedy is minimal: each part but the last could not take the next character
        for part, nxt in zip(seg.parts, seg.parts[1:], strict=False):
            assert units(enc, part) + units(enc, nxt[0]) > lim.part
        # and never fewer parts than the units allow
        assert seg.part_count >= -(-seg.units // lim.part)


@given(gsm_text)
def test_pure_gsm_stays_gsm(text: str) -> None:
    assert segment(text).encoding is Encoding.GSM7


@given(st.text(max_size=200), st.booleans())
def test_compose_is_idempotent(body: str, marketing: bool) -> None:
    once = sms.compose(body, signature="【示例银行】", marketing=marketing)
    assert once.startswith("【示例银行】")
    assert once.endswith(sms.OPT_OUT_SUFFIX) or not marketing
    assert sms.compose(once, signature="【示例银行】", marketing=marketing) == once
