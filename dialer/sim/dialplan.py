"""extensions.conf for the simulated PBX: loading, pattern matching, ``${}`` and ``$[]``.

Loads what the recorded configuration uses and what the dialer's contexts need: ``#include``
(paths relative to the including file), ``exten =>`` / ``same =>``, priorities ``n``,
``n(label)`` and numbers, patterns (``_X.``, ``_+X.``, ``Z``, ``N``, ``[1-5]``, ``!``),
``include =>`` between contexts and ``[globals]``. An application the simulator cannot run
is refused at load time with the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dialer.errors import ConfigError

#: Applications the simulator runs (checked at load time).
SUPPORTED_APPS = frozenset(
    {
        "Answer",
        "Bridge",
        "NoOp",
        "Set",
        "Wait",
        "Playback",
        "Ringing",
        "AGI",
        "SendDTMF",
        "Busy",
        "Congestion",
        "Hangup",
        "Goto",
        "GotoIf",
        "Queue",
        "AMD",
        "Verbose",
        "Progress",
        # simulator-only: hands the call to the simulated called party (sim/customer.conf)
        "SimCalledParty",
    }
)


@dataclass(frozen=True, slots=True)
class Step:
    priority: int
    app: str
    data: str
    label: str | None
    file: str
    line: int


@dataclass
class Extension:
    name: str
    steps: dict[int, Step] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    last: int = 0

    def add(self, step: Step) -> None:
        self.steps[step.priority] = step
        if step.label:
            self.labels[step.label] = step.priority
        self.last = step.priority


@dataclass
class Context:
    name: str
    exact: dict[str, Extension] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], Extension]] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)


_PAT_CHARS = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}


def pattern_regex(pat: str) -> re.Pattern[str]:
    out = []
    i = 0
    body = pat[1:]
    while i < len(body):
        c = body[i]
        if c.upper() in _PAT_CHARS and c not in "xzn" or c in "xzn":
            out.append(_PAT_CHARS[c.upper()])
        elif c == "[":
            j = body.index("]", i)
            out.append("[" + body[i + 1 : j] + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def _specificity(pat: str) -> tuple[int, int]:
    # fewer wildcards and a longer literal prefix sort first (Asterisk sorts "most specific")
    wild = sum(1 for c in pat[1:] if c in ".!")
    return (wild, -len(pat))


class Dialplan:
    def __init__(self) -> None:
        self.contexts: dict[str, Context] = {}
        self.globals: dict[str, str] = {}
        self.files: list[str] = []

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, *extra: str | Path) -> Dialplan:
        dp = cls()
        for p in (path, *extra):
            dp._load_file(Path(p), set())
        dp._sort_patterns()
        return dp

    @classmethod
    def from_text(cls, text: str, name: str = "<text>", base: Path | None = None) -> Dialplan:
        dp = cls()
        dp._parse(text.splitlines(), name, base or Path("."), set(), [None, None])
        dp._sort_patterns()
        return dp

    def merge(self, other: Dialplan) -> None:
        for name, ctx in other.contexts.items():
            self.contexts[name] = ctx
        self.globals.update(other.globals)

    def _sort_patterns(self) -> None:
        for ctx in self.contexts.values():
            ctx.patterns.sort(key=lambda pe: _specificity(pe[1].name))

    def _load_file(self, path: Path, seen: set[Path]) -> None:
        path = path.resolve()
        if path in seen:
            raise ConfigError("#include loop", file=str(path))
        if not path.exists():
            raise ConfigError("file not found", file=str(path))
        seen = seen | {path}
        self.files.append(str(path))
        state: list[str | None] = [None, None]  # current context, last exten
        self._parse(
            path.read_text(encoding="utf-8").splitlines(), str(path), path.parent, seen, state
        )

    def _parse(
        self, lines: list[str], fname: str, base: Path, seen: set[Path], state: list[str | None]
    ) -> None:
        for lineno, raw in enumerate(lines, 1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            if line.startswith("#include"):
                inc = line[len("#include") :].strip().strip('"').strip("<>").strip()
                incp = Path(inc) if Path(inc).is_absolute() else base / inc
                self._load_file(incp, seen)
                continue
            if line.startswith("[") and "]" in line:
                name = line[1 : line.index("]")].strip()
                state[0] = name
                state[1] = None
                if name not in ("general", "globals"):
                    self.contexts.setdefault(name, Context(name))
                continue
            ctxname = state[0]
            if ctxname is None:
                raise ConfigError(f"line {lineno}: statement outside a context", file=fname)
            if ctxname == "general":
                continue
            m = re.match(r"^(\w+)\s*=>?\s*(.*)$", line)
            if not m:
                raise ConfigError(f"line {lineno}: cannot parse {line!r}", file=fname)
            key, value = m.group(1).lower(), m.group(2).strip()
            if ctxname == "globals":
                self.globals[m.group(1)] = value
                continue
            ctx = self.contexts[ctxname]
            if key == "include":
                ctx.includes.append(value)
                continue
            if key == "exten":
                parts = value.split(",", 2)
                if len(parts) < 3:
                    raise ConfigError(f"line {lineno}: exten needs name,priority,app", file=fname)
                exten_name, prio_s, appspec = parts[0].strip(), parts[1].strip(), parts[2].strip()
            elif key == "same":
                if state[1] is None:
                    raise ConfigError(f"line {lineno}: 'same =>' without an exten", file=fname)
                parts = value.split(",", 1)
                if len(parts) < 2:
                    raise ConfigError(f"line {lineno}: same needs priority,app", file=fname)
                exten_name, prio_s, appspec = state[1], parts[0].strip(), parts[1].strip()
            else:
                raise ConfigError(f"line {lineno}: unsupported statement {key!r}", file=fname)
            state[1] = exten_name
            ext = self._extension(ctx, exten_name)
            label = None
            lm = re.match(r"^(\w+|n)\((\w+)\)$", prio_s)
            if lm:
                prio_s, label = lm.group(1), lm.group(2)
            if prio_s == "n":
                prio = ext.last + 1
            elif prio_s == "hint":
                continue
            else:
                try:
                    prio = int(prio_s)
                except ValueError as exc:
                    raise ConfigError(
                        f"line {lineno}: bad priority {prio_s!r}", file=fname
                    ) from exc
            app, data = split_app(appspec)
            if app not in SUPPORTED_APPS:
                raise ConfigError(
                    f"line {lineno}: application {app!r} is not supported by the simulated PBX"
                    f" (supported: {', '.join(sorted(SUPPORTED_APPS))})",
                    file=fname,
                )
            ext.add(Step(prio, app, data, label, fname, lineno))

    @staticmethod
    def _extension(ctx: Context, name: str) -> Extension:
        if name.startswith("_"):
            for _rx, e in ctx.patterns:
                if e.name == name:
                    return e
            e = Extension(name)
            ctx.patterns.append((pattern_regex(name), e))
            return e
        if name not in ctx.exact:
            ctx.exact[name] = Extension(name)
        return ctx.exact[name]

    # ------------------------------------------------------------------ lookups
    def find(self, context: str, exten: str, _depth: int = 0) -> Extension | None:
        ctx = self.contexts.get(context)
        if ctx is None or _depth > 8:
            return None
        e = ctx.exact.get(exten)
        if e is not None:
            return e
        for rx, pe in ctx.patterns:
            if rx.match(exten):
                return pe
        for inc in ctx.includes:
            found = self.find(inc, exten, _depth + 1)
            if found is not None:
                return found
        return None

    def has_context(self, context: str) -> bool:
        return context in self.contexts


def _strip_comment(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out.append(line[i + 1])
            i += 2
            continue
        if c == ";":
            break
        out.append(c)
        i += 1
    return "".join(out)


def split_app(spec: str) -> tuple[str, str]:
    spec = spec.strip()
    m = re.match(r"^([A-Za-z_][\w]*)\s*(?:\((.*)\))?\s*$", spec, re.S)
    if not m:
        # App(args with unbalanced text...) -- take up to the first "("
        if "(" in spec:
            return spec[: spec.index("(")].strip(), spec[spec.index("(") + 1 :].rstrip(")")
        return spec, ""
    return m.group(1), m.group(2) or ""


def split_args(data: str) -> list[str]:
    """Split application arguments on commas outside quotes and parentheses."""
    args: list[str] = []
    cur: list[str] = []
    depth = 0
    quote = False
    for c in data:
        if c == '"':
            quote = not quote
            cur.append(c)
        elif c in "([" and not quote:
            depth += 1
            cur.append(c)
        elif c in ")]" and not quote:
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0 and not quote:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    args.append("".join(cur))
    return args


# ---------------------------------------------------------------------- substitution
Resolver = Callable[[str], str | None]


def substitute(text: str, resolve: Resolver) -> str:
    """Expand ``${VAR}``, ``${VAR:off:len}``, ``${FUNC(args)}`` and ``$[expr]``."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("${", i) or text.startswith("$[", i):
            opener = text[i + 1]
            closer = "}" if opener == "{" else "]"
            depth = 1
            j = i + 2
            while j < n and depth:
                if text[j] == opener:
                    depth += 1
                elif text[j] == closer:
                    depth -= 1
                j += 1
            inner = substitute(text[i + 2 : j - 1], resolve)
            if opener == "{":
                out.append(_variable(inner, resolve))
            else:
                out.append(evaluate(inner))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _variable(expr: str, resolve: Resolver) -> str:
    m = re.match(r"^([^:]+?)(?::(-?\d+)(?::(-?\d+))?)?$", expr)
    if not m or "(" in expr and expr.rstrip().endswith(")"):
        return resolve(expr) or ""
    name, off, length = m.group(1), m.group(2), m.group(3)
    value = resolve(name) or ""
    if off is None:
        return value
    o = int(off)
    start = max(0, len(value) + o) if o < 0 else o
    if length is None:
        return value[start:]
    ln = int(length)
    if ln < 0:
        return value[start : len(value) + ln]
    return value[start : start + ln]


_TOKEN = re.compile(
    r'\s*(?:"((?:[^"\\]|\\.)*)"|(<=|>=|!=|=~|[=<>&|!+\-*/%()?:])|([^\s"=<>&|!+\-*/%()?:]+))'
)


def evaluate(expr: str) -> str:
    """A small ``$[...]`` evaluator: comparisons, & | !, + - * / %, quoted strings."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("s", m.group(1)))
        elif m.group(2) is not None:
            tokens.append(("op", m.group(2)))
        elif m.group(3) is not None:
            tokens.append(("s", m.group(3)))
    parser = _ExprParser(tokens)
    try:
        val = parser.parse_or()
    except IndexError:
        return ""
    return _fmt(val)


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def _fmt(v: str | float) -> str:
    if isinstance(v, float):
        return str(int(v)) if v == int(v) else str(v)
    return v


def _truthy(v: str) -> bool:
    return v not in ("", "0")


class _ExprParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> tuple[str, str]:
        tok = self.t[self.i]
        self.i += 1
        return tok

    def parse_or(self) -> str:
        left = self.parse_and()
        while self.peek() == ("op", "|"):
            self.take()
            right = self.parse_and()
            left = left if _truthy(left) else right
        return left

    def parse_and(self) -> str:
        left = self.parse_cmp()
        while self.peek() == ("op", "&"):
            self.take()
            right = self.parse_cmp()
            left = left if _truthy(left) and _truthy(right) else "0"
        return left

    def parse_cmp(self) -> str:
        left = self.parse_add()
        while self.peek() in {("op", o) for o in ("=", "!=", "<", ">", "<=", ">=")}:
            op = self.take()[1]
            right = self.parse_add()
            a, b = _num(left), _num(right)
            x: float | str
            y: float | str
            x, y = (a, b) if a is not None and b is not None else (left, right)
            res = {
                "=": x == y,
                "!=": x != y,
                "<": x < y,  # type: ignore[operator]
                ">": x > y,  # type: ignore[operator]
                "<=": x <= y,  # type: ignore[operator]
                ">=": x >= y,  # type: ignore[operator]
            }[op]
            left = "1" if res else "0"
        return left

    def parse_add(self) -> str:
        left = self.parse_mul()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            right = self.parse_mul()
            a, b = _num(left) or 0.0, _num(right) or 0.0
            left = _fmt(a + b if op == "+" else a - b)
        return left

    def parse_mul(self) -> str:
        left = self.parse_unary()
        while self.peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            op = self.take()[1]
            right = self.parse_unary()
            a, b = _num(left) or 0.0, _num(right) or 0.0
            if op == "*":
                left = _fmt(a * b)
            elif b == 0:
                left = "0"
            else:
                left = _fmt(float(int(a / b)) if op == "/" else a % b)
        return left

    def parse_unary(self) -> str:
        tok = self.peek()
        if tok == ("op", "!"):
            self.take()
            return "0" if _truthy(self.parse_unary()) else "1"
        if tok == ("op", "("):
            self.take()
            v = self.parse_or()
            if self.peek() == ("op", ")"):
                self.take()
            return v
        if tok is None:
            return ""
        return self.take()[1]


def channel_functions(name: str, vars: Mapping[str, str]) -> str | None:
    return vars.get(name)
