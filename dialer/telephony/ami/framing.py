"""Sans-I/O AMI framing: bytes in, typed messages out.

Why this file exists (and why not panoramisk's parser): panoramisk decodes every ``read()``
on its own with ``errors="ignore"``, so a Chinese customer name whose UTF-8 bytes straddle two
TCP segments loses a character without a trace. Here bytes are buffered and only complete
messages (everything up to a blank line) are decoded, so a character split across reads is
whole by construction; nothing is decoded twice or dropped.

Rules of this file:
- No I/O, no asyncio, no clock. ``receive_data(data)`` returns the messages completed by
  ``data``; ``receive_data(b"")`` is end-of-stream and returns a final :class:`Closed`.
- The greeting line ``Asterisk Call Manager/x.y.z`` (no blank line after it) comes first
  and is returned as :class:`Banner`.
- A message is ``Key: Value`` lines ending with an empty line. ``\\r\\n`` is what Asterisk
  sends; a bare ``\\n`` is accepted too. Stray empty lines between messages are skipped.
- Legacy ``Response: Follows`` (Asterisk < 14 ``Command``) carries free text up to
  ``--END COMMAND--`` that may contain empty lines; it is kept in ``Response.output``.
- Invalid UTF-8 (not split, really invalid) becomes U+FFFD rather than vanishing.
- A message larger than ``max_message_bytes`` is the peer's fault: RemoteProtocolError.
"""

from __future__ import annotations

import re

from dialer.errors import LocalProtocolError, RemoteProtocolError
from dialer.telephony.ami.messages import (
    Banner,
    Closed,
    Event,
    Headers,
    Message,
    Response,
    Unrecognised,
)

BANNER_PREFIX = "Asterisk Call Manager/"
_END = re.compile(rb"\r?\n\r?\n")
_FOLLOWS = b"Response: Follows"
_END_COMMAND = b"--END COMMAND--"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def parse_block(text: str) -> Message:
    """Parse one message's text (no trailing blank line) into a message."""
    pairs: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    loose: list[str] = []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            if line and line != "--END COMMAND--":
                loose.append(line)
            continue
        if value.startswith(" "):
            value = value[1:]
        pairs.append((key, value))
        low = key.lower()
        if low not in first:
            first[low] = value
    headers = Headers(pairs)
    name = first.get("event")
    if name is not None:
        return Event(name, headers)
    status = first.get("response")
    if status is not None:
        return Response(status, headers, tuple(loose))
    return Unrecognised(headers, tuple(loose))


def _parse_crlf_block(block: str) -> Message:
    """Hot path for a block with ``\r\n`` line ends where every line is ``Key: Value``."""
    parts = [line.partition(": ") for line in block.split("\r\n")]
    pairs = tuple([(k, v) for k, sep, v in parts if sep])
    if len(pairs) != len(parts):
        return parse_block(block)
    first = dict(reversed(pairs))
    name = first.get("Event")
    if name is not None:
        return Event(name, Headers._trusted(pairs, first))
    status = first.get("Response")
    if status is not None:
        return Response(status, Headers._trusted(pairs, first))
    return parse_block(block)


class AMIFraming:
    """Incremental AMI reader. One instance per connection."""

    def __init__(
        self, *, expect_banner: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        self._buf = bytearray()
        self._want_banner = expect_banner
        self._max = max_message_bytes
        self._search_from = 0
        self._closed = False
        self.banner: Banner | None = None
        self.bytes_in = 0
        self.messages_out = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def receive_data(self, data: bytes) -> list[Message]:
        if self._closed:
            raise LocalProtocolError("AMI framing fed after end of stream")
        out: list[Message] = []
        if not data:
            self._closed = True
            if self._want_banner:
                # a peer that closes before (or in the middle of) its greeting
                out.append(Closed(clean=not self._buf, pending_bytes=len(self._buf)))
                return out
            rest = bytes(self._buf).strip(b"\r\n")
            out.append(Closed(clean=not rest, pending_bytes=len(rest)))
            self._buf.clear()
            return out
        self.bytes_in += len(data)
        self._buf += data
        if self._want_banner and not self._take_banner(out):
            return out
        self._take_messages(out)
        self.messages_out += len(out)
        return out

    def _take_banner(self, out: list[Message]) -> bool:
        buf = self._buf
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > 1024:
                raise RemoteProtocolError("no AMI greeting line in the first 1024 bytes")
            return False
        text = buf[:nl].decode("utf-8", "replace").rstrip("\r")
        if not text.startswith(BANNER_PREFIX):
            raise RemoteProtocolError(f"not an AMI greeting: {text[:60]!r}")
        del buf[: nl + 1]
        self._want_banner = False
        self.banner = Banner(text)
        out.append(self.banner)
        return True

    def _take_messages(self, out: list[Message]) -> None:
        buf = self._buf
        # Fast path: decode everything up to the last blank line at once (a UTF-8 character
        # never straddles one) when the region has only CRLF line ends and no legacy body.
        end = buf.rfind(b"\r\n\r\n")
        if (
            end > 0
            and buf.find(_FOLLOWS, 0, end) < 0
            and buf.count(b"\n", 0, end + 4) == buf.count(b"\r\n", 0, end + 4)
        ):
            text = buf[:end].decode("utf-8", "replace")
            del buf[: end + 4]
            self._search_from = 0
            for block in text.split("\r\n\r\n"):
                if block:
                    out.append(_parse_crlf_block(block))
        self._take_slow(out)

    def _take_slow(self, out: list[Message]) -> None:
        buf = self._buf
        start = 0
        n = len(buf)
        search = self._search_from
        while True:
            # skip stray line ends between messages
            while start < n and buf[start] in (13, 10):
                start += 1
            if start >= n:
                break
            if buf.startswith(_FOLLOWS, start):
                # legacy command output may hold empty lines: frame on its end marker
                # (rare path: searched from the message start every time)
                end_cmd = buf.find(_END_COMMAND, start)
                m = None if end_cmd < 0 else _END.search(buf, end_cmd)
            else:
                m = _END.search(buf, max(start, search - 3))
            if m is None:
                search = n
                break
            out.append(parse_block(buf[start : m.start()].decode("utf-8", "replace")))
            start = m.end()
            search = start
        if start:
            del buf[:start]
            search -= start
        if len(buf) > self._max:
            raise RemoteProtocolError(
                f"AMI message larger than {self._max} bytes without a terminating blank line"
            )
        self._search_from = max(search, 0)
