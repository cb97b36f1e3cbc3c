from __future__ import annotations

from dialer.privacy import is_hashed, keyed_hash, mask_digits, mask_phone, matches_hash, scrub

ENV = {"DIALER_SECRET_KEY": "k1"}


def test_hash_is_keyed_and_scoped() -> None:
    h = keyed_hash("123456", purpose="id_last6", env=ENV)
    assert is_hashed(h) and "123456" not in h
    assert matches_hash("123456", h, purpose="id_last6", env=ENV)
    assert not matches_hash("123457", h, purpose="id_last6", env=ENV)
    assert h != keyed_hash("123456", purpose="other", env=ENV)
    assert h != keyed_hash("123456", purpose="id_last6", env={"DIALER_SECRET_KEY": "k2"})


def test_masks() -> None:
    assert mask_digits("6222 0212 3456 7890") == "************7890"
    assert mask_phone("+8613800138000") == "+86138****8000"
    assert scrub("card 6222021234567890 id 110101199001011234") == (
        "card ************7890 id **************1234"
    )
