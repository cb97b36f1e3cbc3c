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


def test_scrub_masks_cards_and_ids_as_people_write_them() -> None:
    from dialer.privacy import scrub_json

    text = (
        "卡号 6222 0212 3456 7890, 另一张 4111-1111-1111-1111, "
        "身份证 11010519491231002X; 电话 13800138000; 金额 1234.50 元, 2026-12-15"
    )
    out = scrub(text)
    for clear in ("6222 0212", "0212 3456", "4111-1111", "1101051949123", "138001"):
        assert clear not in out, out
    assert "卡号 ************7890, 另一张 ************1111," in out
    assert "**************002X" in out
    assert "1234.50" in out and "2026-12-15" in out  # amounts and dates are not identities
    assert scrub_json({"a": [text], "n": 5, "h": "h1:abc"}) == {"a": [out], "n": 5, "h": "(hashed)"}


def test_contacts_list_masks_cards_in_free_text(tmp_path, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    import json

    from click.testing import CliRunner

    from dialer.app.cli import cli

    db = sqlite_url
    camp = tmp_path / "c.yaml"
    camp.write_text(
        "name: priv\nmode: progressive\nqueue: q\nchannel: Local/{number}@customer\n"
        "caller_id: '95588'\nfields:\n  note: text\n",
        encoding="utf-8",
    )
    csv = tmp_path / "c.csv"
    csv.write_text(
        "phone,name,external_id,note\n"
        "13800138000,张伟 6222021234567890,110105194912310021,卡 6222 0212 3456 7890 挂失\n",
        encoding="utf-8",
    )
    r = CliRunner()
    for args in (["campaign", "apply", str(camp)], ["contacts", "import", "priv", str(csv)]):
        res = r.invoke(cli, ["--db", db, *args])
        assert res.exit_code == 0, res.output
    for args in (["contacts", "list", "priv"], ["contacts", "list", "priv", "--json"]):
        res = r.invoke(cli, ["--db", db, *args])
        assert res.exit_code == 0, res.output
        for clear in ("622202123456", "6222 0212", "11010519491231", "13800138000"):
            assert clear not in res.output, (args, res.output)
        assert "7890" in res.output and "张伟" in res.output
    doc = json.loads(r.invoke(cli, ["--db", db, "contacts", "list", "priv", "--json"]).output)
    assert doc[0]["fields"]["note"] == "卡 ************7890 挂失"
