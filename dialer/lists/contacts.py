"""Contact import: a CSV file becomes clean contacts, or rejected rows with a reason.

Rules (issue "1. Foundations"):
- the file is UTF-8 (with or without BOM) or GBK/GB18030 as Excel writes it in zh-CN; the
  encoding is detected between those two (line by line: a file that is one of them but for
  a few rows is read in it) unless given; any other file is refused, never guessed;
- ``phone`` is required; ``name``, ``language``, ``timezone``, ``priority``, ``external_id``,
  ``valid_until`` and the campaign's declared ``fields`` are read; any other column is
  ignored with ONE warning;
- numbers are parsed with ``phonenumbers`` (default region from settings), stored as E.164
  with the first IANA zone ``phonenumbers`` gives unless a ``timezone`` column says otherwise;
- typed fields are validated; sensitive ones are stored only as a keyed hash;
- a row is imported when its phone and fields are valid and no earlier imported row of the
  file, nor an existing contact of the campaign, has the same number; otherwise it is rejected
  with its row number (1 = first data row) and the FIRST reason found, in this order:
  ``nul_byte``, ``invalid_encoding``, ``missing_phone``, ``invalid_phone``,
  ``invalid_field:<name>``, ``duplicate``; a bad row never stops the rows after it;
- the file is streamed: rows go to the store in bounded batches (duplicates are found by
  asking the store, not by a set of every number), all in one transaction (the caller's
  session), and rejections spill to a temporary file: memory does not grow with the file.
  A physically empty line is skipped silently (it still uses up a row number).
- no error message or traceback carries a customer's number or name (the engine hides SQL
  parameters; rejections carry a row number and a reason code only).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import gc
import hashlib
import hmac
import io
import logging
import os
import re
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import phonenumbers
from phonenumbers import timezone as pn_timezone
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dialer.errors import ImportRejected, StoreError, describe_db_error
from dialer.lists.campaigns import CampaignSpec, FieldSpec, FieldType, spec_of
from dialer.lists.compliance import ContactStatus, is_valid_zone
from dialer.lists.numbers import OTHER_KINDS, NumberKind, add_numbers, rows_for
from dialer.privacy import keyed_hash
from dialer.settings import SECRET_ENV, get_secret
from dialer.store.models import Contact, utcnow

log = logging.getLogger(__name__)

CHUNK_ROWS = 5000
_CONTACT_TABLE: Table = Contact.__table__  # type: ignore[assignment]  # core insert: no ORM cost
_DETECT_BLOCK = 1 << 20
_MAX_NAME = 200
#: Extra number columns (``mobile_phone``, ``home_phone``, ``work_phone``), dialled in this
#: order after the main ``phone`` by multi-step campaigns; stored in ``contact_number``.
OTHER_NUMBER_KINDS = tuple(k.value for k in OTHER_KINDS)
_NUMBERS = "numbers"  # the parsed row's key for them (not a contact column: popped on insert)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_MAX_EXTERNAL_ID = 100
LANGUAGES = ("zh", "en")


class RejectCode:
    """Reason codes of a rejected row (``invalid_field:<name>`` is built with ``field``)."""

    NUL_BYTE = "nul_byte"  # a NUL character in the row
    ENCODING = "invalid_encoding"  # bytes that are not text in the file's encoding
    MISSING_PHONE = "missing_phone"
    INVALID_PHONE = "invalid_phone"
    DUPLICATE = "duplicate"

    @staticmethod
    def field(name: str) -> str:
        return f"invalid_field:{name}"


# --- phone numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedPhone:
    e164: str
    region: str | None
    timezone: str | None  # None when phonenumbers cannot place the number


_E164 = phonenumbers.PhoneNumberFormat.E164
_single_zone_cache: dict[int, str | None] = {}


def _single_zone(country_code: int) -> str | None:
    """The zone of a country code that has exactly one zone in phonenumbers' data."""
    if country_code not in _single_zone_cache:
        cc = str(country_code)
        data: dict[str, tuple[str, ...]] = getattr(pn_timezone, "TIMEZONE_DATA", {})
        zones = {v for k, v in data.items() if k.startswith(cc)}
        only = next(iter(zones)) if len(zones) == 1 else None
        _single_zone_cache[country_code] = only[0] if only and len(only) == 1 else None
    return _single_zone_cache[country_code]


# Fast path for the commonest spelling of all: a Chinese mobile number. For these shapes
# ``phonenumbers.parse`` provably yields country code 86 and the 11 digits as the national
# number (no national/carrier prefix can be stripped from 1[3-9]x, 179 excluded), so only the
# validity check remains, done with phonenumbers' own metadata patterns in its own order.
# tests/test_contacts_phone.py checks the fast path against the full parse.
_CN_MOBILE = re.compile(r"(\+86|0086)?[ -]?(1(?:[3-68-9]\d|7[0-8]))[ -]?(\d{4})[ -]?(\d{4})")
_TYPE_DESCS = (  # valid = general pattern AND any type; the commonest types first
    "mobile",
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


@functools.lru_cache(maxsize=8)
def _national_validator(region: str) -> Callable[[str], bool]:
    """``is_valid_number`` for a national number of ``region``, from its metadata patterns."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None:  # pragma: no cover - only called for CN
        raise ValueError(region)

    def compiled(desc: Any) -> tuple[frozenset[int], re.Pattern[str]] | None:
        if desc is None or not desc.national_number_pattern:
            return None
        return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)

    general = compiled(meta.general_desc)
    names: tuple[str, ...] = _TYPE_DESCS
    if meta.same_mobile_and_fixed_line_pattern:
        names = names[1:]  # phonenumbers then decides by the fixed-line pattern alone
    types = [c for c in (compiled(getattr(meta, n, None)) for n in names) if c is not None]

    def matches(nsn: str, desc: tuple[frozenset[int], re.Pattern[str]]) -> bool:
        lengths, pattern = desc
        if lengths and len(nsn) not in lengths:
            return False
        return pattern.fullmatch(nsn) is not None

    def valid(nsn: str) -> bool:
        if general is None or not matches(nsn, general):
            return False
        return any(matches(nsn, d) for d in types)

    return valid


def _fast_cn_mobile(text: str, default_region: str) -> ParsedPhone | None | bool:
    """A parsed CN mobile, None if it has the shape but is invalid, False if not the shape."""
    m = _CN_MOBILE.fullmatch(text)
    if m is None or (m.group(1) != "+86" and default_region != "CN"):
        return False
    nsn = m.group(2) + m.group(3) + m.group(4)
    if not _national_validator("CN")(nsn):
        return None
    return ParsedPhone("+86" + nsn, "CN", _single_zone(86))


def parse_phone(text: str, default_region: str) -> ParsedPhone | None:
    """Parse and validate a number as written by a person; None if it is not a valid number."""
    fast = _fast_cn_mobile(text, default_region)
    if fast is not False:
        return fast  # type: ignore[return-value]
    return parse_phone_slow(text, default_region)


def parse_phone_slow(text: str, default_region: str) -> ParsedPhone | None:
    """``parse_phone`` through ``phonenumbers.parse`` only."""
    try:
        num = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    tz = _single_zone(num.country_code or 0)
    if tz is None:
        zones = pn_timezone.time_zones_for_number(num)
        tz = zones[0] if zones and zones[0] != pn_timezone.UNKNOWN_TIMEZONE else None
    return ParsedPhone(
        phonenumbers.format_number(num, _E164), phonenumbers.region_code_for_number(num), tz
    )


# --- typed fields -------------------------------------------------------------------------

_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")
_INTEGER = re.compile(r"-?\d+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS = re.compile(r"\d+")


def parse_iso_date(text: str) -> dt.date:
    if not _ISO_DATE.fullmatch(text):
        raise ValueError("expected YYYY-MM-DD")
    return dt.date.fromisoformat(text)


def parse_field(spec: FieldSpec, text: str) -> Any:
    """Validate one typed value; returns its JSON form. Raises ValueError if invalid."""
    if spec.type is FieldType.DECIMAL:
        if not _DECIMAL.fullmatch(text):
            raise ValueError("expected a plain decimal like 1234.50")
        try:
            return str(Decimal(text))
        except InvalidOperation as exc:  # pragma: no cover - the pattern excludes it
            raise ValueError(str(exc)) from exc
    if spec.type is FieldType.DATE:
        return parse_iso_date(text).isoformat()
    if spec.type is FieldType.DIGITS:
        if not _DIGITS.fullmatch(text) or not text.isascii():
            raise ValueError("expected digits")
        if spec.length is not None and len(text) != spec.length:
            raise ValueError(f"expected {spec.length} digits")
        return text
    if spec.type is FieldType.INTEGER:
        if not _INTEGER.fullmatch(text) or not text.isascii():
            raise ValueError("expected an integer")
        return int(text)
    return text  # text


# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    row: int
    reason: str


class RowParser:
    """Turns one CSV record into contact values (a dict) or a reason code (a str).

    Pure apart from the keyed hash: it does not know about duplicates or the store.
    """

    def __init__(self, header: list[str], spec: CampaignSpec, default_region: str) -> None:
        names = [h.strip().lstrip("\ufeff").lower() for h in header]
        self.index: dict[str, int] = {}
        for i, n in enumerate(names):
            self.index.setdefault(n, i)
        if "phone" not in self.index:
            raise ImportRejected("the file has no 'phone' column")
        known = {
            "phone",
            "name",
            "language",
            "timezone",
            "priority",
            "external_id",
            "valid_until",
            "email",
            *(f"{k}_phone" for k in OTHER_NUMBER_KINDS),
            *spec.fields,
        }
        self.ignored = tuple(h for h, n in zip(header, names, strict=True) if n not in known and n)
        self.spec = spec
        self.region = default_region
        self.default_language = spec.language
        self._phone = self.index["phone"]
        self._cols = {
            k: self.index.get(k, len(header))
            for k in ("name", "language", "timezone", "priority", "external_id", "valid_until")
        }
        # channels beside the main number: an e-mail address and more numbers, in this order
        self._email = self.index.get("email", len(header))
        self._numbers = [
            (kind, self.index[f"{kind}_phone"])
            for kind in OTHER_NUMBER_KINDS
            if f"{kind}_phone" in self.index
        ]
        self._width = len(header)  # a missing column reads the empty cell at this index
        self._fields = [
            (name, self.index.get(name, self._width), fs.required, _field_parser(fs), fs.sensitive)
            for name, fs in spec.fields.items()
        ]
        self._hashers: dict[str, Callable[[str], str]] = {}
        if any(fs.sensitive for fs in spec.fields.values()):
            secret = get_secret("secret_key")  # fail before reading a row if it is missing
            assert secret is not None
            env = {SECRET_ENV["secret_key"]: secret.get_secret_value()}
            for name, fs in spec.fields.items():
                if fs.sensitive:
                    self._hashers[name] = _hasher(name, env)

    def _campaign_fields(self, rec: list[str], fields: dict[str, Any]) -> str | None:
        """The campaign's own fields into ``fields`` (sensitive ones hashed); a refusal code."""
        for fname, idx, required, parse_value, sensitive in self._fields:
            text = rec[idx].strip()
            if not text:
                if required:
                    return RejectCode.field(fname)
                continue
            try:
                value = parse_value(text)
            except ValueError:
                return RejectCode.field(fname)
            if sensitive:
                value = self._hashers[fname](str(value))
            fields[fname] = value
        return None

    def _contact_points(
        self, rec: list[str], phone: ParsedPhone, fields: dict[str, Any], out: dict[str, Any]
    ) -> str | None:
        """The e-mail address and the other numbers (in dialling order); a refusal code."""
        email = rec[self._email].strip()
        if email:
            if len(email) > 254 or not _EMAIL.fullmatch(email):
                return RejectCode.field("email")
            fields["email"] = email.lower()
        numbers: list[tuple[str, str]] = []
        for kind, idx in self._numbers:
            text = rec[idx].strip()
            if not text:
                continue
            other = parse_phone(text, self.region)
            if other is None:
                return RejectCode.field(f"{kind}_phone")
            if other.e164 != phone.e164 and all(n != other.e164 for _, n in numbers):
                numbers.append((kind, other.e164))
        if numbers:  # the order they are dialled in: the main number first
            out[_NUMBERS] = [(NumberKind.MAIN.value, phone.e164), *numbers]
        return None

    def parse(self, rec: list[str]) -> dict[str, Any] | str:
        width = self._width
        if len(rec) <= width:
            rec = rec + [""] * (width + 1 - len(rec))
        c = self._cols
        raw_phone = rec[self._phone].strip()
        if not raw_phone:
            return RejectCode.MISSING_PHONE
        phone = parse_phone(raw_phone, self.region)
        if phone is None:
            return RejectCode.INVALID_PHONE

        name = rec[c["name"]].strip() or None
        if name is not None and len(name) > _MAX_NAME:
            return RejectCode.field("name")

        language: str = self.default_language
        lang_text = rec[c["language"]].strip().lower()
        if lang_text:
            language = _LANG_SPLIT.split(lang_text, maxsplit=1)[0]
            if language not in LANGUAGES:
                return RejectCode.field("language")

        tz = rec[c["timezone"]].strip()
        if tz:
            if not is_valid_zone(tz):
                return RejectCode.field("timezone")
        elif phone.timezone is None:
            return RejectCode.field("timezone")  # the number cannot be placed: say where it is
        else:
            tz = phone.timezone

        priority = 0
        prio_text = rec[c["priority"]].strip()
        if prio_text:
            if not _INTEGER.fullmatch(prio_text) or not prio_text.isascii():
                return RejectCode.field("priority")
            priority = int(prio_text)
            if abs(priority) > 1_000_000:
                return RejectCode.field("priority")

        external_id = rec[c["external_id"]].strip() or None
        if external_id is not None and len(external_id) > _MAX_EXTERNAL_ID:
            return RejectCode.field("external_id")

        valid_until = None
        vu_text = rec[c["valid_until"]].strip()
        if vu_text:
            try:
                valid_until = parse_iso_date(vu_text)
            except ValueError:
                return RejectCode.field("valid_until")

        fields: dict[str, Any] = {}
        out = {
            "phone": phone.e164,
            "region": phone.region,
            "name": name,
            "language": language,
            "timezone": tz,
            "priority": priority,
            "external_id": external_id,
            "valid_until": valid_until,
            "fields": fields,
        }
        refused = self._campaign_fields(rec, fields) or self._contact_points(
            rec, phone, fields, out
        )
        return out if refused is None else refused


_LANG_SPLIT = re.compile(r"[-_]")


def _field_parser(spec: FieldSpec) -> Callable[[str], Any]:
    return functools.partial(parse_field, spec)


def _hasher(purpose: str, env: dict[str, str]) -> Callable[[str], str]:
    """``keyed_hash(value, purpose=purpose)`` with the key set up once (a pre-keyed HMAC is
    copied per value). Checked against ``keyed_hash`` itself; if the scheme ever differs,
    ``keyed_hash`` is used as it is."""
    secret = env[SECRET_ENV["secret_key"]].encode("utf-8")
    keyed = hmac.new(secret, digestmod=hashlib.sha256)
    prefix = f"{purpose}\x00".encode()

    def fast(value: str) -> str:
        h = keyed.copy()
        h.update(prefix + value.encode())
        return "h1:" + h.hexdigest()

    def slow(value: str) -> str:
        return keyed_hash(value, purpose=purpose, env=env)

    probe = "0123456789"
    return fast if fast(probe) == slow(probe) else slow


# --- encodings ----------------------------------------------------------------------------

#: a file is read in one encoding when at most this share of its lines fail to decode (those
#: rows are then rejected one by one); more than that and the file is refused
_BAD_LINE_SHARE = 0.01
_BAD_LINES_MIN = 10


@dataclass
class _DecodeCount:
    lines: int = 0
    bad: int = 0
    non_ascii_ok: int = 0  # lines with non-ASCII text that decode: evidence for the encoding


def _count_lines(path: Path, encoding: str) -> _DecodeCount:
    """How many lines of ``path`` decode strictly in ``encoding`` (block-wise, line-wise only
    inside a block that fails)."""
    count = _DecodeCount()
    rest = b""
    with path.open("rb") as f:
        while True:
            block = f.read(_DETECT_BLOCK)
            data = rest + block
            if block:
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
                if not data:
                    continue
            elif not data:
                break
            count.lines += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            try:
                data.decode(encoding)
                count.non_ascii_ok += 0 if data.isascii() else 1
            except UnicodeDecodeError:
                for line in data.splitlines():
                    try:
                        line.decode(encoding)
                    except UnicodeDecodeError:
                        count.bad += 1
                    else:
                        count.non_ascii_ok += 0 if line.isascii() else 1
            if not block:
                break
    return count


#: How spreadsheet files start: .xlsx/.ods are ZIP archives, .xls an OLE2 compound file.
SPREADSHEET_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (.xlsx, .ods)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls",
}


def refuse_spreadsheet(path: Path) -> None:
    """A spreadsheet is not a CSV: say so, rather than "cannot tell the file's encoding"."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ImportRejected(f"{path}: cannot read: {exc.strerror}") from None
    kind = SPREADSHEET_MAGIC.get(head)
    if kind is not None:
        raise ImportRejected(
            f"{path}: this is {kind}, not a CSV file; save the sheet as CSV (UTF-8) and import that"
        )


def detect_encoding(path: Path) -> str:
    """``utf-8-sig`` for UTF-8 (BOM or not), ``gb18030`` for GBK exports; nothing else is
    guessed. A file that is UTF-8 (or GB18030) but for a few rows is read in that encoding and
    those rows are rejected; any other file is refused: give ``--encoding``."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    utf8 = _count_lines(path, "utf-8")
    if utf8.bad == 0:
        return "utf-8-sig"
    tolerated = max(_BAD_LINES_MIN, int(utf8.lines * _BAD_LINE_SHARE))
    if utf8.non_ascii_ok and utf8.bad <= tolerated:
        return "utf-8-sig"  # real UTF-8 text around a few broken rows
    gb = _count_lines(path, "gb18030")
    if gb.bad <= tolerated:
        return "gb18030"
    raise ImportRejected(
        f"{path}: cannot tell the file's encoding ({utf8.bad} of {utf8.lines} lines are not "
        f"UTF-8, {gb.bad} not GB18030); give --encoding"
    )


# --- the import ---------------------------------------------------------------------------


class RejectionLog:
    """Rejected rows, in row order, in bounded memory: counts by reason, and every rejection
    spilled to an anonymous temporary file (10 bytes each) past ``keep`` in memory."""

    _REC = struct.Struct("<QH")

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self.counts: dict[str, int] = {}
        self._reasons: list[str] = []
        self._ids: dict[str, int] = {}
        self._head: list[Rejection] = []
        self._spill: IO[bytes] | None = None
        self._n = 0

    def add(self, row: int, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self._n += 1
        if len(self._head) < self.keep:
            self._head.append(Rejection(row, reason))
            return
        rid = self._ids.get(reason)
        if rid is None:
            rid = self._ids[reason] = len(self._reasons)
            self._reasons.append(reason)
        if self._spill is None:
            self._spill = tempfile.TemporaryFile()
        self._spill.write(self._REC.pack(row, rid))

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Rejection]:
        yield from self._head
        if self._spill is None:
            return
        self._spill.flush()
        with open(os.dup(self._spill.fileno()), "rb", closefd=True) as f:
            f.seek(0)
            while chunk := f.read(self._REC.size * 4096):
                for row, rid in self._REC.iter_unpack(chunk):
                    yield Rejection(row, self._reasons[rid])

    def first(self, n: int) -> list[Rejection]:
        return self._head[:n]

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None


@dataclass
class ImportReport:
    imported: int = 0
    rejections: RejectionLog = field(default_factory=RejectionLog)
    encoding: str = ""
    ignored_columns: tuple[str, ...] = ()
    rows: int = 0
    dry_run: bool = False

    @property
    def rejected(self) -> list[Rejection]:
        """Every rejection as a list (tests, small files); ``rejections`` streams them."""
        return list(self.rejections)

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "rejected": [{"row": r.row, "reason": r.reason} for r in self.rejections],
        }


#: Called with (rows read so far, bytes read so far); used for the progress bar.
Progress = Callable[[int, int], None]


def _records(text: IO[str]) -> Iterator[list[str]]:
    sample = text.readline()
    dialect: type[csv.Dialect] = csv.excel
    if sample.count("\t") > sample.count(",") and sample.count("\t") > sample.count(";"):
        dialect = csv.excel_tab
    elif sample.count(";") > sample.count(","):

        class _Semicolon(csv.excel):
            delimiter = ";"

        dialect = _Semicolon
    yield from csv.reader(io.StringIO(sample), dialect)
    yield from csv.reader(text, dialect)


#: a NUL byte (PostgreSQL cannot store it in text) or an undecodable byte (read as a lone
#: surrogate by ``surrogateescape``) makes the row unreadable
_UNREADABLE = re.compile("[\x00\udc80-\udcff]")


def _unreadable(rec: list[str]) -> str | None:
    m = _UNREADABLE.search("\x1f".join(rec))
    if m is None:
        return None
    return RejectCode.NUL_BYTE if m.group() == "\x00" else RejectCode.ENCODING


class _Batch:
    """One bounded batch of rows: good rows by phone (first seen wins) and rejections, both
    released in row order once the store has said which phones it already holds."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[int, dict[str, Any]]] = {}
        self.rejected: list[Rejection] = []
        self.size = 0

    def add(self, row: int, result: dict[str, Any] | str) -> None:
        self.size += 1
        if isinstance(result, str):
            self.rejected.append(Rejection(row, result))
        elif result["phone"] in self.rows:
            self.rejected.append(Rejection(row, RejectCode.DUPLICATE))
        else:
            self.rows[result["phone"]] = (row, result)


class _Inserter:
    """Inserts batches of parsed rows into one campaign, refusing the numbers it already holds."""

    def __init__(
        self,
        session: Session,
        campaign_id: int,
        created_at: dt.datetime,
        chunk_rows: int,
        report: ImportReport,
    ) -> None:
        self.session = session
        self.chunk_rows = chunk_rows
        self.report = report
        # the columns every row shares are bound once, not per row
        self.stmt = insert(_CONTACT_TABLE).values(
            campaign_id=campaign_id,
            status=ContactStatus.ACTIVE.value,
            attempts=0,
            created_at=created_at,
        )
        self.known = select(Contact.phone).where(Contact.campaign_id == campaign_id)

    def flush(self, batch: _Batch) -> None:
        session, chunk_rows, report = self.session, self.chunk_rows, self.report
        known, stmt, rejections = self.known, self.stmt, self.report.rejections
        rows = batch.rows
        if rows:
            # always chunk_rows values: one SQL text, so the driver's statement cache holds one
            # prepared statement, not one per batch length (~250 kB each in sqlite3)
            phones = list(rows)
            phones += phones[-1:] * (chunk_rows - len(phones))
            held = set(session.scalars(known.where(Contact.phone.in_(phones))))
            for phone in held:
                batch.rejected.append(Rejection(rows.pop(phone)[0], RejectCode.DUPLICATE))
            if rows:
                # several numbers: the contact_number rows, once the contacts have their ids
                several = {p: v.pop(_NUMBERS) for p, (_, v) in rows.items() if _NUMBERS in v}
                try:
                    session.execute(stmt, [values for _, values in rows.values()])
                    if several:
                        ids = session.execute(
                            known.add_columns(Contact.id).where(Contact.phone.in_(list(several)))
                        )
                        add_numbers(
                            session, [r for p, cid in ids for r in rows_for(cid, several[p])]
                        )
                except DBAPIError as exc:  # e.g. a concurrent import of the same numbers
                    first = min(r for r, _ in rows.values())
                    raise StoreError(
                        f"the store refused the batch from row {first}: {describe_db_error(exc)}"
                    ) from None
            report.imported += len(rows)
        for r in sorted(batch.rejected, key=lambda r: r.row):
            rejections.add(r.row, r.reason)


def _stream(
    path: Path,
    enc: str,
    spec: CampaignSpec,
    default_region: str,
    inserter: _Inserter,
    progress: Progress | None,
) -> None:
    """Read the file row by row into batches of ``inserter.chunk_rows``."""
    with path.open("rb") as raw:
        # an undecodable byte becomes a lone surrogate: that row is rejected, not the file
        text = io.TextIOWrapper(raw, encoding=enc, newline="", errors="surrogateescape")
        try:
            _stream_rows(path, enc, text, raw, spec, default_region, inserter, progress)
        except UnicodeError as exc:  # the codec itself gave up (UTF-16 without a BOM, odd bytes)
            raise ImportRejected(f"{path}: not text in {enc} ({exc}); give --encoding") from None


def _stream_rows(
    path: Path,
    enc: str,
    text: IO[str],
    raw: IO[bytes],
    spec: CampaignSpec,
    default_region: str,
    inserter: _Inserter,
    progress: Progress | None,
) -> None:
    report, chunk_rows = inserter.report, inserter.chunk_rows
    flush = inserter.flush
    records = _records(text)
    try:
        header = next(records)
    except StopIteration:
        raise ImportRejected(f"{path}: the file is empty") from None
    if _unreadable(header):
        raise ImportRejected(f"{path}: the header line is not readable text in {enc}")
    parser = RowParser(header, spec, default_region)
    report.ignored_columns = parser.ignored
    if parser.ignored:  # the CLI prints the one warning; this is for services
        log.info("ignoring unknown columns: %s", ", ".join(parser.ignored))
    row = 0
    batch = _Batch()
    for rec in records:
        row += 1
        if not rec:
            continue
        batch.add(row, _unreadable(rec) or parser.parse(rec))
        if batch.size >= chunk_rows:
            flush(batch)
            batch = _Batch()
            gc.collect()  # only this import's objects: the rest is frozen
        if progress is not None and row % 2000 == 0:
            progress(row, raw.tell())
    flush(batch)
    report.rows = row
    if progress is not None:
        progress(row, raw.tell())


def import_contacts(
    session: Session,
    campaign: Any,
    path: Path,
    *,
    default_region: str,
    encoding: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
    now: dt.datetime | None = None,
) -> ImportReport:
    """Import ``path`` into ``campaign`` (a Campaign row) inside ``session``'s transaction.

    Streams: rows are parsed, checked against the store for duplicates and inserted in batches
    of ``chunk_rows``, so memory does not grow with the file. A ``dry_run`` does the same
    inside a savepoint that is rolled back. The caller commits.
    """
    spec = spec_of(campaign)
    refuse_spreadsheet(path)
    enc = encoding or detect_encoding(path)
    try:
        codecs.lookup(enc)
    except LookupError as exc:
        raise ImportRejected(f"unknown encoding {enc!r}") from exc
    report = ImportReport(encoding=enc, dry_run=dry_run)
    created_at = now or utcnow()
    inserter = _Inserter(session, campaign.id, created_at, chunk_rows, report)

    # Millions of short-lived rows would make the cyclic GC rescan the heap again and again
    # (~15% of the CPU time); the rows build no reference cycles, and the few that the store's
    # statements build are collected once per batch, over this import's objects only.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # what exists now is not rescanned by the per-batch collections
    savepoint = session.begin_nested() if dry_run else None
    try:
        _stream(path, enc, spec, default_region, inserter, progress)
    except csv.Error as exc:
        raise ImportRejected(f"{path}: not a readable CSV file: {exc}") from None
    finally:
        if savepoint is not None and savepoint.is_active:
            savepoint.rollback()
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    return report


# --- listing ------------------------------------------------------------------------------


def masked_fields(spec: CampaignSpec, fields: dict[str, Any]) -> dict[str, Any]:
    """Fields for display: sensitive ones (stored hashed) become ``***``."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        fs = spec.fields.get(name)
        out[name] = "***" if fs is not None and fs.sensitive else value
    return out


__all__ = [
    "ImportReport",
    "ParsedPhone",
    "RejectCode",
    "Rejection",
    "RejectionLog",
    "RowParser",
    "detect_encoding",
    "import_contacts",
    "masked_fields",
    "parse_field",
    "parse_phone",
]
