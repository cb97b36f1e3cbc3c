"""Flows as data: ``config/flows/<name>.yaml`` validated into immutable models.

A flow is a graph of named nodes. Node kinds: ``play``, ``say``, ``menu``, ``collect``,
``verify``, ``action``, ``transfer``, ``result``, ``hangup``. Prompts are names (never
paths); a prompt item may also be a spoken value: ``{say: amount, field: amount_due}``.

Right party first: a node *discloses* when it speaks a contact field (a ``say`` item with
``field``) or is marked ``discloses: true``. ``check_right_party`` walks the graph from the
start and refuses a flow in which any disclosing node is reachable without passing an
identity-confirming edge (a ``verify`` node's ``ok``, or a menu choice with
``confirms_identity: true``). The engine checks the same thing again at run time.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dialer import CONFIG_DIR
from dialer.yamlfile import YamlFileError, load_file
from ivr.errors import FlowDefinitionError, UnknownFlow
from ivr.say import SayKind

NODE_NAME = r"^[a-z][a-z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SayItem(_Frozen):
    """A spoken value inside a prompt list: a contact field, a collected variable, a literal,
    or the bank's own callback number (``{say: digits, bank: callback_number}``: the number of
    the dialer's settings, never one in a recording)."""

    say: SayKind
    field: str | None = None  # contact field (discloses account data)
    var: str | None = None  # a value collected earlier in this call
    value: str | None = None  # a literal
    bank: Literal["callback_number"] | None = None  # settings.bank.callback_number
    prefix: str | None = None  # e.g. merchant kinds: prompt "<prefix><value>"

    @model_validator(mode="after")
    def _one_source(self) -> SayItem:
        if sum(x is not None for x in (self.field, self.var, self.value, self.bank)) != 1:
            raise ValueError("a say item needs exactly one of field, var, value, bank")
        return self


class PromptRef(_Frozen):
    """A prompt chosen by a contact field: ``{prompt_from: merchant_kind, prefix: merchant-}``."""

    prompt_from: str
    prefix: str = ""
    choices: tuple[str, ...]  # the values that have a prompt; others play ``default``
    default: str


PromptItem = str | SayItem | PromptRef


def _discloses(items: tuple[PromptItem, ...]) -> bool:
    return any(isinstance(i, SayItem) and i.field for i in items) or any(
        isinstance(i, PromptRef) for i in items
    )


class _Node(_Frozen):
    discloses: bool = False

    def edges(self) -> Iterator[tuple[str, bool]]:
        """(target node, confirms identity) for every way out of this node."""
        return iter(())

    def prompt_items(self) -> Iterator[PromptItem]:
        return iter(())

    @property
    def reveals(self) -> bool:
        return self.discloses or _discloses(tuple(self.prompt_items()))


class PlayNode(_Node):
    kind: Literal["play"]
    prompts: tuple[PromptItem, ...]
    next: str

    def edges(self) -> Iterator[tuple[str, bool]]:
        yield self.next, False

    def prompt_items(self) -> Iterator[PromptItem]:
        yield from self.prompts


class SayNode(_Node):
    kind: Literal["say"]
    say: SayKind
    field: str | None = None
    var: str | None = None
    value: str | None = None
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    next: str

    def item(self) -> SayItem:
        return SayItem(say=self.say, field=self.field, var=self.var, value=self.value)

    def edges(self) -> Iterator[tuple[str, bool]]:
        yield self.next, False

    def prompt_items(self) -> Iterator[PromptItem]:
        yield from self.before
        yield self.item()
        yield from self.after


class Choice(_Frozen):
    next: str
    confirms_identity: bool = False
    result: str | None = None


def _choice(v: Any) -> Any:
    return {"next": v} if isinstance(v, str) else v


class _Input(_Node):
    prompts: tuple[PromptItem, ...] = ()
    timeout_s: float = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=9)  # extra tries after the first
    invalid: tuple[str, ...] = ("ivr-invalid",)
    no_input: tuple[str, ...] = ("ivr-no-input",)
    on_fail: str

    def prompt_items(self) -> Iterator[PromptItem]:
        yield from self.prompts
        yield from self.invalid
        yield from self.no_input


class MenuNode(_Input):
    kind: Literal["menu"]
    choices: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], Choice]

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("choices"), dict):
            data = dict(data)
            data["choices"] = {str(k): _choice(v) for k, v in data["choices"].items()}
        return data

    def edges(self) -> Iterator[tuple[str, bool]]:
        for c in self.choices.values():
            yield c.next, c.confirms_identity
        yield self.on_fail, False


class CollectNode(_Input):
    kind: Literal["collect"]
    digits: int = Field(ge=1, le=32)
    inter_digit_s: float = Field(3.0, gt=0, le=30)
    validator: str = "any"
    save_as: str
    sensitive: bool = False
    next: str

    def edges(self) -> Iterator[tuple[str, bool]]:
        yield self.next, False
        yield self.on_fail, False


class VerifyNode(_Input):
    kind: Literal["verify"]
    field: str  # contact field holding the keyed hash
    digits: int = Field(ge=1, le=32)
    inter_digit_s: float = Field(3.0, gt=0, le=30)
    tries: int = Field(3, ge=1, le=9)
    retry_prompts: tuple[str, ...] = ("verify-retry",)
    hook: str = "verify_identity"
    lock_hook: str | None = "lock_verification"
    locked_hook: str | None = "verification_locked"
    ok: str
    on_fail: str  # reached when the caller gives no input
    lockout: str | None = None  # after ``tries`` mismatches (default: on_fail)
    locked: str | None = None  # already locked out before this call (default: lockout)

    def edges(self) -> Iterator[tuple[str, bool]]:
        yield self.ok, True
        yield self.on_fail, False
        for target in (self.lockout, self.locked):
            if target:
                yield target, False

    def prompt_items(self) -> Iterator[PromptItem]:
        yield from super().prompt_items()
        yield from self.retry_prompts


class ActionNode(_Node):
    kind: Literal["action"]
    hook: str
    args: dict[str, Any] = Field(default_factory=dict)
    next: str
    on: dict[str, str] = Field(default_factory=dict)  # hook outcome -> node
    error: str | None = None  # where to go when the hook fails (default: next)

    def edges(self) -> Iterator[tuple[str, bool]]:
        yield self.next, False
        for target in self.on.values():
            yield target, False
        if self.error:
            yield self.error, False


class TransferNode(_Node):
    kind: Literal["transfer"]
    queue: str | None = None  # default: the campaign's queue, then the flow's
    prompts: tuple[str, ...] = ("transfer-agent",)
    result: str | None = None

    def prompt_items(self) -> Iterator[PromptItem]:
        yield from self.prompts


class ResultNode(_Node):
    kind: Literal["result"]
    set: str
    next: str

    def edges(self) -> Iterator[tuple[str, bool]]:
        yield self.next, False


class HangupNode(_Node):
    kind: Literal["hangup"]
    prompts: tuple[PromptItem, ...] = ()
    result: str | None = None

    def prompt_items(self) -> Iterator[PromptItem]:
        yield from self.prompts


Node = Annotated[
    PlayNode
    | SayNode
    | MenuNode
    | CollectNode
    | VerifyNode
    | ActionNode
    | TransferNode
    | ResultNode
    | HangupNode,
    Field(discriminator="kind"),
]


class Sample(_Frozen):
    """Values a test call (no attempt id) runs with. ``hashed`` fields are hashed on load."""

    name: str = "Sample Customer"
    phone: str = "+8613800000000"
    fields: dict[str, Any] = Field(default_factory=dict)
    hashed: tuple[str, ...] = ()


class Flow(_Frozen):
    name: str = Field(pattern=NODE_NAME)
    description: str = ""
    default_queue: str | None = None
    purpose: Literal["service", "marketing", "collections"] = "service"
    #: Where a caller goes when this flow fails mid-way (docs/contracts.md "Dialplan"): the
    #: campaign's queue when it has one (a hand-over), or straight to the spoken apology with
    #: the callback number (``apology``: the campaign's agents are not the people to take it).
    rescue: Literal["queue", "apology"] = "queue"
    sample: Sample = Sample()
    start: str
    nodes: dict[Annotated[str, Field(pattern=NODE_NAME)], Node]

    @model_validator(mode="after")
    def _graph(self) -> Flow:
        if self.start not in self.nodes:
            raise ValueError(f"start node {self.start!r} is not defined")
        for name, node in self.nodes.items():
            for target, _ in node.edges():
                if target not in self.nodes:
                    raise ValueError(f"node {name!r} goes to undefined node {target!r}")
        check_right_party(self)
        return self

    def prompt_names(self) -> set[str]:
        """Every fixed prompt name this flow can play (spoken values excluded)."""
        names: set[str] = set()
        for node in self.nodes.values():
            for item in node.prompt_items():
                if isinstance(item, str):
                    names.add(item)
                elif isinstance(item, PromptRef):
                    names.update(item.prefix + c for c in item.choices)
                    names.add(item.default)
        return names

    def says_callback_number(self) -> bool:
        """Whether a prompt of this flow says the bank's callback number."""
        return any(
            isinstance(item, SayItem) and item.bank is not None
            for node in self.nodes.values()
            for item in node.prompt_items()
        )

    def hook_names(self) -> set[str]:
        names: set[str] = set()
        for node in self.nodes.values():
            if isinstance(node, ActionNode):
                names.add(node.hook)
            elif isinstance(node, VerifyNode):
                names.update(h for h in (node.hook, node.lock_hook, node.locked_hook) if h)
        return names


def check_right_party(flow: Flow) -> None:
    """Refuse a flow where a disclosing node is reachable before identity is confirmed."""
    seen = {flow.start}
    todo = deque([flow.start])
    while todo:
        name = todo.popleft()
        node = flow.nodes[name]
        if node.reveals:
            raise ValueError(
                f"node {name!r} discloses account data but is reachable before the "
                "caller's identity is confirmed (right party first)"
            )
        for target, confirms in node.edges():
            if not confirms and target not in seen:
                seen.add(target)
                todo.append(target)


# --- loading ----------------------------------------------------------------------------


def parse_flow(data: Any, source: str) -> Flow:
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid flow"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise FlowDefinitionError("\n".join(lines), file=source) from None


def load_flow_file(path: Path) -> Flow:
    try:
        data = load_file(path)
    except YamlFileError as exc:
        raise FlowDefinitionError(str(exc)) from None
    flow = parse_flow(data, str(path))
    if flow.name != path.stem:
        raise FlowDefinitionError(
            f"flow name {flow.name!r} must match the file name", file=str(path)
        )
    return flow


def default_flows_dir() -> Path:
    """``$IVR_FLOWS``, else the shipped ``config/flows``, else of the working dir."""
    import os

    env = os.environ.get("IVR_FLOWS")
    if env:
        return Path(env)
    here = CONFIG_DIR / "flows"
    return here if here.is_dir() else Path.cwd() / "config" / "flows"


HookFn = Callable[..., Any]


class FlowLibrary:
    """The flows a server can run, with their hooks resolved at load time."""

    def __init__(self, flows: Mapping[str, Flow], hooks: Mapping[str, HookFn]) -> None:
        self.flows = dict(flows)
        self.hooks = dict(hooks)

    @classmethod
    def load(
        cls, directory: Path | None = None, hooks: Mapping[str, HookFn] | None = None
    ) -> FlowLibrary:
        from ivr.hooks import DEFAULT_HOOKS

        directory = directory or default_flows_dir()
        if not directory.is_dir():
            raise FlowDefinitionError(f"no flows directory {directory}", file=str(directory))
        registry: dict[str, HookFn] = dict(DEFAULT_HOOKS)
        registry.update(hooks or {})
        flows: dict[str, Flow] = {}
        for path in sorted(directory.glob("*.yaml")):
            flow = load_flow_file(path)
            for name in flow.hook_names():
                if name not in registry:
                    registry[name] = resolve_hook(name, str(path))
            flows[flow.name] = flow
        return cls(flows, registry)

    def get(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            raise UnknownFlow(f"no flow named {name!r}") from None

    def hook(self, name: str) -> HookFn:
        return self.hooks[name]


def resolve_hook(name: str, source: str = "") -> HookFn:
    """``package.module:callable`` -> the callable."""
    module, sep, attr = name.partition(":")
    if not sep:
        raise FlowDefinitionError(
            f"unknown hook {name!r} (not a default hook; use package.module:callable)", file=source
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise FlowDefinitionError(f"cannot import hook {name!r}: {exc}", file=source) from None
    if not callable(fn):
        raise FlowDefinitionError(f"hook {name!r} is not callable", file=source)
    return fn
