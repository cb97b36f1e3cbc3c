"""The one YAML loader for every file an operator writes (settings, campaigns, scenarios, flows).

Why not plain ``yaml.safe_load``: a 600-byte alias bomb ("billion laughs") expands to
gigabytes and stalls whoever parses it, a duplicate key silently drops the first value, and a
file saved in GBK is decoded as garbage or raises a multi-line traceback. This loader:

- refuses anchors and aliases outright (our files never need them; merge keys ``<<`` need
  aliases, so they go too), before any node is built;
- refuses a duplicate key in any mapping, naming the key and both lines;
- refuses nesting deeper than ``MAX_DEPTH`` (PyYAML's composer recurses: a few kilobytes of
  ``[[[[`` would otherwise end in ``RecursionError``) and files over ``MAX_BYTES``;
- decodes strictly as UTF-8 (a BOM is allowed) and says where the first bad byte is.

Every refusal is a ``YamlFileError`` (a ``ConfigError``) with a one-line message:
``file: line L column C: problem``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from dialer.errors import ConfigError

MAX_BYTES = 1 << 20  # an operator's YAML file is a few kilobytes
MAX_DEPTH = 32


class YamlFileError(ConfigError):
    """A YAML file was refused (bad encoding, syntax, alias, duplicate key, too deep or big)."""


class _Refused(yaml.MarkedYAMLError):
    """Raised inside the loader; turned into ``YamlFileError`` with the mark."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases, with duplicate-key and depth checks."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem=f"aliases are not accepted (*{event.anchor}); write the value out",
                problem_mark=event.start_mark,
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(
                problem=f"anchors are not accepted (&{anchor}); write the value out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    problem=f"nested deeper than {MAX_DEPTH} levels",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise _Refused(
                    problem=(f"duplicate key {key!r} (first at line {first.start_mark.line + 1})"),
                    problem_mark=key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _one_line(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.character:#06x} at offset {exc.position}: not allowed in YAML"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{' '.join(problem.split())}"
    return " ".join(str(exc).split())


def decode_utf8(data: bytes, *, file: str | None = None) -> str:
    """Strict UTF-8 (BOM allowed); a bad byte gives a one-line ``YamlFileError``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlFileError(
            f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start});"
            " save the file as UTF-8",
            file=file,
        ) from None


def loads(text: str | bytes, *, file: str | None = None) -> Any:
    """Parse one YAML document with the strict loader."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise YamlFileError(f"file is larger than {MAX_BYTES} bytes", file=file)
        text = decode_utf8(text, file=file)
    elif len(text) > MAX_BYTES:
        raise YamlFileError(f"file is larger than {MAX_BYTES} characters", file=file)
    try:
        loader = _StrictLoader(text)  # the reader already refuses control characters
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise YamlFileError(f"not valid YAML: {_one_line(exc)}", file=file) from None


def read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlFileError(f"cannot read: {exc.strerror}", file=str(path)) from None
    if len(data) > MAX_BYTES:
        raise YamlFileError(f"file is larger than {MAX_BYTES} bytes", file=str(path))
    return data


def load_file(path: Path) -> Any:
    """Read and parse ``path`` (any top-level type)."""
    return loads(read_bytes(path), file=str(path))


def load_mapping(path: Path) -> dict[str, Any]:
    """Read ``path``; it must hold a mapping (an empty file is an empty mapping)."""
    data = load_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YamlFileError("expected a mapping at the top level", file=str(path))
    return data


__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "YamlFileError",
    "decode_utf8",
    "load_file",
    "load_mapping",
    "loads",
]
