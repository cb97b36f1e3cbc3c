"""The flow engine: a flow definition run as a generator of effects, with no I/O.

``run_session(services, env)`` is a generator. It yields

* an AGI ``Command`` - the driver sends it and sends back the checked ``Reply``; when the
  channel is dead the driver *throws* ``CallerHungUp`` in instead;
* a ``Call`` - a blocking function (store, bank hook) the driver runs (in a worker thread
  for FastAGI) and sends back its return value, or throws its exception in;

and returns a ``SessionOutcome``. The same generator runs over FastAGI, process AGI, and in
memory in tests. A hang-up unwinds the node in progress; the engine records that step with
outcome ``hangup`` and finishes the session ``hangup`` with whatever result it had reached.
Any other exception (a bank hook without an error edge, an AGI command error, a broken
definition, an unknown attempt) is the IVR's fault, never the caller's: the session ends
``error`` with the partial result, and the engine tells the dialplan to rescue the caller
(``IVR_NEXT=failed``, ``IVR_RESCUE=queue|apology``) instead of hanging up on them.

Digits typed for verification live only in local variables of ``_verify`` and the hook
call; steps record lengths and match flags, never digits.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dialer.settings import BankSettings
from dialer.store import Store
from ivr import agi
from ivr.agi import AGIEnvironment, Command, Reply
from ivr.context import CallContext
from ivr.errors import CallerHungUp, FlowRuntimeError, HookError
from ivr.flow import (
    ActionNode,
    CollectNode,
    Flow,
    FlowLibrary,
    HangupNode,
    MenuNode,
    PlayNode,
    PromptItem,
    PromptRef,
    ResultNode,
    SayItem,
    SayNode,
    TransferNode,
    VerifyNode,
)
from ivr.hooks import VALIDATORS, HookContext
from ivr.messages import CALLBACK_VAR, callback_digits
from ivr.record import Opened, Recorder
from ivr.say import say

SOUND_DIR = "dialer"  # Asterisk plays prompt <name> as dialer/<name> in the channel language
GET_DATA_PROMPT = "silence/1"  # what GET DATA plays while collecting the rest of the digits
MAX_NODE_VISITS = 200  # a caller pressing "repeat" forever still ends


class SessionStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    HANGUP = "hangup"
    ERROR = "error"


class Next(enum.StrEnum):
    """What ``IVR_NEXT`` tells the dialplan (besides ``queue:<name>``)."""

    HANGUP = "hangup"
    FAILED = "failed"  # the flow failed: the dialplan rescues the caller (IVR_RESCUE)


class Identity(enum.StrEnum):
    UNKNOWN = "unknown"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    LOCKED = "locked"


@dataclass(frozen=True)
class Call:
    """A blocking call the driver performs (store, hooks)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    inline: bool = False  # never blocks (it only queues): the driver runs it in place
    #: the same call for an event loop (it never blocks the loop): an asyncio driver awaits
    #: it instead of running ``fn`` in a thread
    coro: Callable[..., Awaitable[Any]] | None = None

    def run(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


Effect = Command | Call
SessionGen = Generator[Effect, Any, "SessionOutcome"]


@dataclass(frozen=True)
class SessionOutcome:
    flow: str
    status: SessionStatus
    result: str | None
    next: str
    steps: int
    session_id: int | None
    attempt_id: int | None
    is_test: bool
    error: str | None = None


@dataclass
class Services:
    """What a session needs from outside; one instance serves every session."""

    library: FlowLibrary
    recorder: Recorder
    clock: Callable[[], dt.datetime]  # aware UTC; the adapter owns the real clock
    store: Store | None = None
    #: the IVR's own settings' bank: the callback number a flow says when the call did not
    #: bring the dialer's (``DIALER_CALLBACK``), e.g. a test call
    bank: BankSettings = field(default_factory=BankSettings)


def run_session(services: Services, env: AGIEnvironment) -> SessionGen:
    """Route by script name and run the flow (raises ``UnknownFlow`` before any effect)."""
    flow = services.library.get(env.script)
    return _Run(services, flow, env).run()


@dataclass
class _Run:
    services: Services
    flow: Flow
    env: AGIEnvironment
    call: CallContext | None = None
    session_id: int | None = None
    seq: int = 0
    result: str | None = None
    next: str = Next.HANGUP
    identity: Identity = Identity.UNKNOWN
    vars: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    node_name: str = ""
    node_kind: str = ""
    partial: dict[str, Any] = field(default_factory=dict)
    callback: str = ""  # the bank's callback number's digits, when the flow says it

    # -- effects -------------------------------------------------------------------------

    def _cmd(self, command: Command) -> Generator[Effect, Any, Reply]:
        reply = yield command
        assert isinstance(reply, Reply)
        return reply

    def _record(
        self, outcome: str, detail: Mapping[str, Any] | None = None
    ) -> Generator[Effect, Any, None]:
        self.seq += 1
        yield Call(
            self.services.recorder.step,
            (
                self.session_id,
                self.seq,
                self.node_name,
                self.node_kind,
                outcome,
                dict(detail or {}),
            ),
            inline=getattr(self.services.recorder, "queues_steps", False),
        )

    def _hook(self, name: str, **kwargs: Any) -> Generator[Effect, Any, Any]:
        assert self.call is not None
        h = HookContext(
            call=self.call,
            store=self.services.store,
            now=self.services.clock,
            data=self.data,
            vars=self.vars,
        )
        return (yield Call(self.services.library.hook(name), (h,), kwargs))

    # -- prompts -------------------------------------------------------------------------

    def _value(self, item: SayItem) -> Any:
        assert self.call is not None
        if item.field is not None:
            self._require_identity()
            value = self.call.fields.get(item.field)
        elif item.var is not None:
            value = self.vars.get(item.var)
        elif item.bank is not None:
            value = self.callback
        else:
            value = item.value
        if value is None or value == "":
            raise FlowRuntimeError(f"no value for {item.field or item.var!r} to say")
        return value

    def _resolve(self, items: tuple[PromptItem, ...] | list[PromptItem]) -> list[str]:
        assert self.call is not None
        names: list[str] = []
        for item in items:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, SayItem):
                value = self._value(item)
                if item.prefix:
                    names.append(f"{item.prefix}{value}")
                else:
                    names += say(item.say, value, self.call.language)
            elif isinstance(item, PromptRef):
                self._require_identity()
                value = str(self.call.fields.get(item.prompt_from, ""))
                names.append(item.prefix + value if value in item.choices else item.default)
        return names

    def _require_identity(self) -> None:
        if self.identity is not Identity.CONFIRMED:
            raise FlowRuntimeError(
                f"node {self.node_name!r} would disclose account data before identity is confirmed"
            )

    def _note_missing(self, name: str, reply: Reply) -> None:
        """``result=-1 endpos=0``: the prompt is not installed (the channel is alive)."""
        if reply.failed and reply.endpos == 0:
            missing = self.data.setdefault("missing_prompts", [])
            if name not in missing:
                missing.append(name)

    def _play(self, names: list[str]) -> Generator[Effect, Any, None]:
        """Non-interruptible: digits pressed now are lost (Asterisk README item 6)."""
        for name in names:
            reply = yield from self._cmd(agi.stream_file(f"{SOUND_DIR}/{name}", ""))
            self._note_missing(name, reply)

    def _ask(self, names: list[str]) -> Generator[Effect, Any, str | None]:
        """Interruptible prompts; returns the key that interrupted, if any."""
        for name in names:
            reply = yield from self._cmd(agi.stream_file(f"{SOUND_DIR}/{name}", agi.ESCAPE_ALL))
            if reply.digit:
                return reply.digit
            self._note_missing(name, reply)
        return None

    def _first_key(self, names: list[str], timeout_s: float) -> Generator[Effect, Any, str | None]:
        key = yield from self._ask(names)
        if key is None:
            reply = yield from self._cmd(agi.wait_for_digit(int(timeout_s * 1000)))
            key = reply.digit
        return key

    def _read_digits(
        self, names: list[str], n: int, timeout_s: float, inter_s: float
    ) -> Generator[Effect, Any, str | None]:
        """Up to ``n`` digits; ``None`` when nothing was pressed. ``#`` ends early."""
        key = yield from self._first_key(names, timeout_s)
        if key is None:
            return None
        if key == "#":
            return ""
        digits = key
        if n > 1:
            reply = yield from self._cmd(agi.get_data(GET_DATA_PROMPT, int(inter_s * 1000), n - 1))
            if reply.status is agi.Status.SUCCESS and not reply.failed:
                digits += reply.result
        return digits

    # -- nodes ---------------------------------------------------------------------------

    def _node_play(self, node: PlayNode) -> Generator[Effect, Any, str | None]:
        yield from self._play(self._resolve(node.prompts))
        yield from self._record("played")
        return node.next

    def _node_say(self, node: SayNode) -> Generator[Effect, Any, str | None]:
        yield from self._play(self._resolve(list(node.prompt_items())))
        yield from self._record("said", {"say": node.say.value})
        return node.next

    def _retry_prompt(self, names: tuple[str, ...], last: bool) -> Generator[Effect, Any, None]:
        if not last:
            yield from self._play(list(names))

    def _node_menu(self, node: MenuNode) -> Generator[Effect, Any, str | None]:
        prompts = self._resolve(node.prompts)
        invalid = no_input = 0
        for attempt in range(node.retries + 1):
            self.partial = {"try": attempt + 1}
            last = attempt == node.retries
            key = yield from self._first_key(prompts, node.timeout_s)
            if key is None:
                no_input += 1
                yield from self._retry_prompt(node.no_input, last)
                continue
            choice = node.choices.get(key)
            if choice is None:
                invalid += 1
                yield from self._retry_prompt(node.invalid, last)
                continue
            if choice.confirms_identity:
                self.identity = Identity.CONFIRMED
            if choice.result:
                self.result = choice.result
            yield from self._record(f"key:{key}", {"try": attempt + 1})
            return choice.next
        outcome = "no_input" if no_input > invalid else "invalid"
        yield from self._record(outcome, {"no_input": no_input, "invalid": invalid})
        return node.on_fail

    def _node_collect(self, node: CollectNode) -> Generator[Effect, Any, str | None]:
        assert self.call is not None
        prompts = self._resolve(node.prompts)
        validate = VALIDATORS.get(node.validator)
        if validate is None:
            raise FlowRuntimeError(f"unknown validator {node.validator!r}")
        today = self.services.clock().date()
        invalid = no_input = 0
        for attempt in range(node.retries + 1):
            self.partial = {"try": attempt + 1}
            last = attempt == node.retries
            digits = yield from self._read_digits(
                prompts, node.digits, node.timeout_s, node.inter_digit_s
            )
            if digits is None:
                no_input += 1
                yield from self._retry_prompt(node.no_input, last)
                continue
            if len(digits) != node.digits or not digits.isdigit() or not validate(digits, today):
                invalid += 1
                yield from self._retry_prompt(node.invalid, last)
                continue
            self.vars[node.save_as] = digits
            detail: dict[str, Any] = {"try": attempt + 1, "length": len(digits)}
            if not node.sensitive:
                self.data.setdefault("collected", {})[node.save_as] = digits
            yield from self._record("collected", detail)
            return node.next
        outcome = "no_input" if no_input > invalid else "invalid"
        yield from self._record(outcome, {"no_input": no_input, "invalid": invalid})
        return node.on_fail

    def _node_verify(self, node: VerifyNode) -> Generator[Effect, Any, str | None]:
        if node.locked_hook and (yield from self._hook(node.locked_hook, field=node.field)):
            self.identity = Identity.LOCKED
            self.data["identity"] = self.identity.value
            yield from self._record("locked_out")
            return node.locked or node.lockout or node.on_fail
        prompts = self._resolve(node.prompts)
        mismatches = no_input = 0
        for attempt in range(node.tries):
            self.partial = {"try": attempt + 1, "mismatches": mismatches}
            digits = yield from self._read_digits(
                prompts, node.digits, node.timeout_s, node.inter_digit_s
            )
            if digits is None:
                no_input += 1
                if no_input > node.retries:
                    break
                yield from self._play(list(node.no_input))
                continue
            ok = len(digits) == node.digits and bool(
                (yield from self._hook(node.hook, field=node.field, digits=digits))
            )
            del digits  # nothing below may see them
            if ok:
                self.identity = Identity.CONFIRMED
                self.data["identity"] = self.identity.value
                yield from self._record("match", {"try": attempt + 1})
                return node.ok
            mismatches += 1
            if attempt + 1 < node.tries:
                yield from self._play(list(node.retry_prompts))
        if mismatches >= node.tries:
            self.identity = Identity.LOCKED
            if node.lock_hook:
                yield from self._hook(node.lock_hook, field=node.field)
            self.data["identity"] = self.identity.value
            yield from self._record("locked", {"mismatches": mismatches})
            return node.lockout or node.on_fail
        else:
            self.identity = Identity.FAILED
            self.data["identity"] = self.identity.value
            yield from self._record("no_input", {"mismatches": mismatches, "no_input": no_input})
        return node.on_fail

    def _node_action(self, node: ActionNode) -> Generator[Effect, Any, str | None]:
        try:
            outcome = yield from self._hook(node.hook, **node.args)
        except Exception as exc:  # a bank's hook may raise anything; the flow decides
            self.data.setdefault("hook_errors", []).append(f"{node.hook}: {type(exc).__name__}")
            yield from self._record("error", {"error": type(exc).__name__})
            if node.error is None:
                raise HookError(f"hook {node.hook!r} failed: {exc}") from exc
            return node.error
        outcome = "ok" if outcome is True or outcome is None else str(outcome)
        yield from self._record(outcome)
        return node.on.get(outcome, node.next)

    def _node_transfer(self, node: TransferNode) -> Generator[Effect, Any, str | None]:
        assert self.call is not None
        queue = node.queue or self.call.campaign_queue or self.flow.default_queue
        if not queue:
            raise FlowRuntimeError("transfer without a queue (node, campaign and flow name none)")
        if node.result:
            self.result = node.result
        yield from self._play(list(node.prompts))
        self.next = f"queue:{queue}"  # only once the caller heard they are being transferred
        yield from self._record("transfer", {"queue": queue})
        return None

    def _node_result(self, node: ResultNode) -> Generator[Effect, Any, str | None]:
        self.result = node.set
        yield from self._record(node.set)
        return node.next

    def _node_hangup(self, node: HangupNode) -> Generator[Effect, Any, str | None]:
        if node.result:
            self.result = node.result
        self.next = Next.HANGUP
        yield from self._play(self._resolve(node.prompts))
        yield from self._record("end")
        return None

    _DISPATCH: ClassVar[Mapping[type, Callable[..., Generator[Effect, Any, str | None]]]] = {
        PlayNode: _node_play,
        SayNode: _node_say,
        MenuNode: _node_menu,
        CollectNode: _node_collect,
        VerifyNode: _node_verify,
        ActionNode: _node_action,
        TransferNode: _node_transfer,
        ResultNode: _node_result,
        HangupNode: _node_hangup,
    }

    # -- the session ---------------------------------------------------------------------

    def _summary(self) -> str:
        return f"flow={self.flow.name};result={self.result or '-'};identity={self.identity.value}"

    def run(self) -> SessionGen:
        status = SessionStatus.COMPLETED
        recorder = self.services.recorder
        opened: Opened = yield Call(
            recorder.open, (self.services.store, self.flow, self.env), coro=recorder.open_async
        )
        self.call, self.session_id, error = opened.call, opened.session_id, opened.error
        if error is not None:  # the call's context could not be read (an unknown attempt)
            status = SessionStatus.ERROR
        self.data["language"] = self.call.language
        try:
            if status is SessionStatus.COMPLETED:
                yield from self._cmd(agi.answer())
                if self.env.language != self.call.language:
                    yield from self._cmd(agi.set_variable("CHANNEL(language)", self.call.language))
                if self.flow.says_callback_number():
                    self.callback = yield from self._callback_number()
                name: str | None = self.flow.start
                visits = 0
                while name is not None:
                    visits += 1
                    if visits > MAX_NODE_VISITS:
                        raise FlowRuntimeError("too many nodes visited (a loop?)")
                    node = self.flow.nodes[name]
                    self.node_name, self.node_kind, self.partial = name, node.kind, {}
                    if node.reveals:
                        self._require_identity()
                    name = yield from self._DISPATCH[type(node)](self, node)
                self.node_name, self.node_kind = "", ""
            else:
                self.next = Next.FAILED
            yield from self._finish_variables()
        except CallerHungUp:
            status = SessionStatus.HANGUP
            if self.node_name:
                yield from self._record("hangup", self.partial)
        except Exception as exc:  # one session's failure must not take the server down
            status, error = SessionStatus.ERROR, f"{type(exc).__name__}: {exc}"
            if self.node_name:
                yield from self._record("error", {"error": type(exc).__name__})
            self.next = Next.FAILED  # never silence: the dialplan rescues the caller
            try:
                yield from self._finish_variables()
            except Exception:  # the channel or the connection is gone: the dialplan, seeing
                pass  # no IVR_NEXT, rescues a caller still there all the same
        if error:
            self.data["error"] = error[:200]
        yield Call(
            recorder.finish,
            (self.session_id, status.value, self.result, self.next, dict(self.data)),
            coro=recorder.finish_async,
        )
        return SessionOutcome(
            flow=self.flow.name,
            status=status,
            result=self.result,
            next=self.next,
            steps=self.seq,
            session_id=self.session_id,
            attempt_id=self.call.attempt_id,
            is_test=self.call.is_test,
            error=error,
        )

    def _callback_number(self) -> Generator[Effect, Any, str]:
        """The digits of the bank's callback number: the dialer's (``DIALER_CALLBACK`` from
        the Originate, its settings), else the IVR's own settings."""
        reply = yield from self._cmd(agi.get_variable(CALLBACK_VAR))
        given = reply.data if reply.code == 1 and reply.data else ""
        digits = "".join(ch for ch in given if ch.isdigit() or ch in "*#")
        return digits or callback_digits(self.services.bank)

    def _finish_variables(self) -> Generator[Effect, Any, None]:
        """Steer the dialplan: ``IVR_NEXT`` last, as the sign the flow ended (contracts)."""
        yield from self._cmd(agi.set_variable("IVR_RESULT", self.result or ""))
        if self.next.startswith("queue:"):
            yield from self._cmd(agi.set_variable("IVR_SUMMARY", self._summary()))
        if self.next == Next.FAILED:
            yield from self._cmd(agi.set_variable("IVR_RESCUE", self.flow.rescue))
        yield from self._cmd(agi.set_variable("IVR_NEXT", self.next))
