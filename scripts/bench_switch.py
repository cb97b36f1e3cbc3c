#!/usr/bin/env python3
"""The dialer and the IVR against a real Asterisk 22, each beside its minimal baseline in the
same run. Prints figures; not a test. Needs the Asterisk build of ``scripts/build_asterisk.sh``.

    .venv/bin/python scripts/bench_switch.py originate [--calls 3000 --channels 100]
    .venv/bin/python scripts/bench_switch.py store [--small 500 --large 50000 --calls 1500] [--pg]
    .venv/bin/python scripts/bench_switch.py fastagi [--concurrency 50,100,200]
    ... add ``--profile DIR`` to sample the product's process with py-spy (every thread)

``originate``: callees answer at once; the campaign is IVR-only (broadcast) and its flow is
two AGI commands (a minimal FastAGI server in a process of its own, the same for both), so every
answered call ends at once in the project's own dialplan.
Baseline: a raw-socket script that logs in and sends byte-identical ``Originate`` actions,
keeping the same number of calls live (a call ends with its ``Hangup``). Product: ``dialer run``'s
floor (campaign loop, hopper, dialer core, SQLite store) dialling a campaign of as many contacts.
Figures: attempts/s, CPU per call of each process, and Asterisk's CPU meanwhile.

``store``: the product's rate when the store already holds ``--small`` and ``--large`` finished
calls (contacts, attempts, IVR sessions), and ``EXPLAIN`` of the hot queries on SQLite (and on
a throw-away PostgreSQL with ``--pg``).

``fastagi``: Asterisk runs the ``notice`` flow for N concurrent calls (the callee presses
nothing: 8 AGI commands each), first against a minimal asyncio server that sends the same
commands (``notice_commands``: the engine's own, run in memory) and writes nothing, then against the product's FastAGI server recording to SQLite.
Figures: server CPU per session and the calls' mean length (Asterisk's side).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: the flow of the originate runs: two commands, then the call hangs up (the same AGI server
#: for the script and the product, in a process of its own)
QUICK_COMMANDS = ["SET VARIABLE IVR_RESULT notified", "SET VARIABLE IVR_NEXT hangup"]

#: Called parties: every number answers at once and stays until the dialer's side hangs up.
PARTIES = r"""
[customer]
exten => _+X.,1,Answer()
 same => n,Wait(120)
 same => n,Hangup()
"""


def notice_commands() -> list[str]:
    """The AGI commands the product's engine sends for the ``notice`` flow when the callee
    presses nothing (run in memory, a test call in Chinese), so the baseline sends exactly
    the same ones."""
    import datetime as dt

    from ivr.driver import BlockingAGI, drive_sync
    from ivr.engine import Services, run_session
    from ivr.flow import FlowLibrary
    from ivr.record import MemoryRecorder

    sent: list[str] = []
    replies = [b"agi_network_script: notice\nagi_language: zh\nagi_channel: Local/x\n\n"]

    def write(data: bytes) -> None:
        line = data.decode().rstrip("\n")
        sent.append(line)
        verb = line.split(" ")[0]
        replies.append(
            b"200 result=0 endpos=8000\n"
            if verb == "STREAM"
            else b"200 result=1\n"
            if verb == "SET"
            else b"200 result=0\n"
        )

    def read(_: int) -> bytes:
        return replies.pop(0) if replies else b""

    services = Services(
        library=FlowLibrary.load(),
        recorder=MemoryRecorder(keep=False),
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    io = BlockingAGI(read, write)
    drive_sync(run_session(services, io.environment()), io)
    return sent


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def campaign_doc(name: str, *, flow: str, channels: int, cps: float) -> dict[str, Any]:
    return {
        "name": name,
        "state": "running",
        "mode": "broadcast",
        "flow": flow,
        "channel": "Local/{number}@customer",
        "caller_id": "95588",
        "max_attempts": 1,
        "retry": {},
        "calling_window": {
            "start": "00:00",
            "end": "24:00",
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "skip_holidays": False,
        },
        "pacing": {"ring_timeout_s": 15, "channels": channels, "calls_per_second": cps},
    }


def phone(i: int, base: int = 0) -> str:
    return f"+86139{base + i:08d}"


# --- the switch -----------------------------------------------------------------------------


class Switch:
    """One real Asterisk in a temporary folder (tests/real/pbx.py), on a free AMI port."""

    def __init__(self, work: Path) -> None:
        from tests.real.pbx import Asterisk, build

        self.ast = Asterisk(build(), work / "asterisk", parties=PARTIES, queues="")
        self.ast.start()
        assert self.ast.proc is not None
        self.pid = self.ast.proc.pid
        self.agi = child(["_agi", "quick"])
        assert self.agi.stdout is not None
        self.agi_url = f"agi://127.0.0.1:{int(self.agi.stdout.readline())}"
        os.environ["BENCH_AGI_URL"] = self.agi_url  # for the product's child

    def cpu(self) -> float:
        return cpu_of(self.pid)

    def channels(self) -> int:
        out = self.ast.cli("core show channels count")
        m = re.search(r"(\d+) active channel", out)
        return int(m.group(1)) if m else -1

    def settle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.channels() > 0:
            time.sleep(0.2)

    def stop(self) -> None:
        self.agi.terminate()
        self.agi.wait(10)
        self.ast.stop()


def child(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def profiled(proc: subprocess.Popen[str], profile: Path | None, name: str) -> Any:
    """py-spy on ``proc`` (every thread, idle samples dropped) while it runs."""
    if profile is None:
        return None
    profile.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        # --nonblocking: the process is never paused, so its CPU figures stay its own
        [str(spy), "record", "--pid", str(proc.pid), "-r", "200", "-f", "raw", "--nonblocking"]
        + ["-o", str(profile / f"{name}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> None:
    """Inclusive share of the project's own functions (and sqlite3 / SQLAlchemy as groups)."""
    if not path.exists():
        print(f"  (no profile at {path})")
        return
    total = 0
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        seen = set()
        for f in frames:
            m = re.match(r"(.+?) \((.+?):\d+\)", f)
            if not m:
                continue
            fn, file = m.groups()
            key = None
            if file.startswith(("dialer/", "ivr/")) or "/dialer/" in file or "/ivr/" in file:
                key = f"{file.split('site-packages/')[-1]}:{fn}"
            elif "sqlalchemy" in file:
                key = "[sqlalchemy]"
            if key and key not in seen:
                seen.add(key)
                incl[key] += n
        last = frames[-1] if frames else ""
        m = re.match(r"(.+?) \((.+?):\d+\)", last)
        if m:
            own[f"{m.group(2).split('site-packages/')[-1]}:{m.group(1)}"] += n
    print(f"  profile {path.name}: {total} samples (active threads only)")
    print("  inclusive (project functions, SQLAlchemy as a group):")
    for key, n in incl.most_common(top):
        print(f"    {100 * n / total:5.1f}%  {key}")
    print("  self time (leaf frames):")
    for key, n in own.most_common(12):
        print(f"    {100 * n / total:5.1f}%  {key}")


# --- originate: raw script -------------------------------------------------------------------


def raw_child(port: int, secret: str, actions_file: str, channels: int) -> None:
    """The baseline: byte-identical Originates over a bare socket, ``channels`` calls live."""
    blobs = json.loads(Path(actions_file).read_text())
    actions = [(b.encode(), cid) for b, cid in blobs]

    async def main() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(f"Action: Login\r\nUsername: dialer\r\nSecret: {secret}\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        live: dict[str, float] = {}
        lengths: list[float] = []
        room = asyncio.Event()
        done = asyncio.Event()
        ended = 0
        n = len(actions)

        async def read() -> None:
            nonlocal ended
            buf = b""
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                buf += data
                *blocks, buf = buf.split(b"\r\n\r\n")
                for block in blocks:
                    # the bare minimum a script that follows calls does: every message
                    # split into a dict (no types, no UTF-8 safety across reads)
                    msg = dict(ln.partition(": ")[::2] for ln in block.decode().split("\r\n"))
                    if msg.get("Event") != "Hangup":
                        continue
                    uid = msg.get("Uniqueid", "")
                    if uid in live:
                        lengths.append(time.perf_counter() - live.pop(uid))
                        ended += 1
                        room.set()
                        if ended == n:
                            done.set()

        task = asyncio.create_task(read())
        cpu0, t0 = cpu_self(), time.perf_counter()
        for blob, cid in actions:
            while len(live) >= channels:
                room.clear()
                await room.wait()
            live[cid] = time.perf_counter()
            writer.write(blob)
            await writer.drain()
        await asyncio.wait_for(done.wait(), 120)
        wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
        task.cancel()
        writer.close()
        return {
            "calls": n,
            "wall": wall,
            "cpu": cpu,
            "call_s": sum(lengths) / len(lengths),
            "busy_lines": sum(lengths) / wall,
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def raw_actions(n: int, channels: int, path: Path, agi_url: str) -> None:
    """The product's own Originate fields (build_originate), framed as AMI actions."""
    from dialer.lists.campaigns import parse_campaign
    from dialer.telephony.originate import build_originate

    spec = parse_campaign(campaign_doc("raw", flow="notice", channels=channels, cps=1000))
    out = []
    for i in range(n):
        req = build_originate(
            attempt_id=10_000_000 + i, phone=phone(i), spec=spec, language="zh", agi_url=agi_url
        )
        lines = ["Action: Originate", f"ActionID: {req.action_id}"]
        lines += [f"{k}: {v}" for k, v in req.fields]
        out.append(("\r\n".join(lines) + "\r\n\r\n", req.channel_id))
    path.write_text(json.dumps(out))


# --- originate: the product ------------------------------------------------------------------


def fill_store(store: Any, campaign: Any, contacts: int, history: int, tmp: Path) -> None:
    """``contacts`` fresh contacts to dial, and ``history`` finished calls (contacts done,
    attempts with their outcome, IVR sessions) already in the store."""
    from sqlalchemy import insert, select

    from dialer.lists.contacts import import_contacts
    from dialer.store.models import Attempt, Contact, IvrSession

    path = tmp / "contacts.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["phone"])
        for i in range(contacts):
            w.writerow([phone(i)])
    now = dt.datetime.now(dt.UTC)
    with store.session() as s:
        report = import_contacts(s, campaign, path, default_region="CN", now=now)
        assert report.imported == contacts, report
    if not history:
        return
    past = now - dt.timedelta(days=3)
    chunk = 5000
    for lo in range(0, history, chunk):
        hi = min(history, lo + chunk)
        with store.session() as s:
            s.execute(
                insert(Contact),
                [
                    {
                        "campaign_id": campaign.id,
                        "phone": phone(i, 50_000_000),
                        "timezone": "Asia/Shanghai",
                        "region": "CN",
                        "language": "zh",
                        "status": "done",
                        "attempts": 1,
                        "last_outcome": "completed",
                        "last_attempt_at": past,
                        "fields": {},
                    }
                    for i in range(lo, hi)
                ],
            )
            ids = dict(
                s.execute(
                    select(Contact.phone, Contact.id).where(
                        Contact.phone.in_([phone(i, 50_000_000) for i in range(lo, hi)])
                    )
                ).all()
            )
            s.execute(
                insert(Attempt),
                [
                    {
                        "campaign_id": campaign.id,
                        "contact_id": ids[phone(i, 50_000_000)],
                        "phone": phone(i, 50_000_000),
                        "seq": 1,
                        "state": "ended",
                        "outcome": "completed",
                        "created_at": past + dt.timedelta(seconds=i),
                        "ended_at": past + dt.timedelta(seconds=i + 20),
                        "detail": {},
                    }
                    for i in range(lo, hi)
                ],
            )
            aids = s.scalars(
                select(Attempt.id).where(Attempt.campaign_id == campaign.id).order_by(Attempt.id)
            ).all()[lo:hi]
            s.execute(
                insert(IvrSession),
                [
                    {
                        "attempt_id": a,
                        "flow": "notice",
                        "channel": "Local/x",
                        "is_test": False,
                        "status": "completed",
                        "result": "notified",
                        "next": "hangup",
                        "data": {},
                        "started_at": past,
                    }
                    for a in aids
                ],
            )


def product_child(
    port: int, secret: str, calls: int, channels: int, history: int, db_url: str | None
) -> None:
    """The product: the floor of ``dialer run`` dialling ``calls`` contacts."""
    import logging

    import dialer.floor.loop as floor_loop
    from dialer.app.compose import FloorRoot
    from dialer.lists.campaigns import apply_campaign, parse_campaign
    from dialer.settings import Settings
    from dialer.store import open_store
    from dialer.telephony.ami.adapter import AMIClient

    logging.basicConfig(level=logging.ERROR)
    leases: list[int] = []  # contacts taken per lease transaction
    take = floor_loop.lease_and_start

    lease_s: list[float] = []
    lease_at: list[tuple[float, float]] = []

    def counted(*args: Any) -> Any:
        t = time.perf_counter()
        got = take(*args)
        lease_s.append(time.perf_counter() - t)
        lease_at.append((t, time.perf_counter()))
        leases.append(len(got))
        return got

    floor_loop.lease_and_start = counted  # type: ignore[assignment]
    from dialer.telephony.rows import AttemptRows

    write = AttemptRows.write_batch
    writes_at: list[tuple[float, float, int]] = []

    def timed_write(self: Any, batch: Any) -> Any:
        t = time.perf_counter()
        out = write(self, batch)
        writes_at.append((t, time.perf_counter(), len(batch)))
        return out

    AttemptRows.write_batch = timed_write  # type: ignore[method-assign]
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    tmp = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    store = open_store(db_url or f"sqlite:///{tmp}/dialer.db")
    spec = parse_campaign(campaign_doc("bench", flow="notice", channels=channels, cps=1000))
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="bench")
        s.expunge(row)
    fill_store(store, row, calls, history, tmp)

    async def main() -> dict[str, Any]:
        client = AMIClient("127.0.0.1", port, "dialer", secret, action_timeout_s=30)
        agi_url = os.environ["BENCH_AGI_URL"]
        root = FloorRoot(
            store,
            Settings(),
            client,
            agi_url=agi_url,
            max_channels=channels,
        )
        await root.start()
        await root.core.wait_ready(10)
        outcomes: collections.Counter[str] = collections.Counter()
        all_done = asyncio.Event()

        def finished(item: Any) -> None:
            outcomes[item.outcome.value] += 1
            if sum(outcomes.values()) >= calls:
                all_done.set()

        lengths: list[float] = []  # followed by the tracker (before its Originate) -> ended

        decisions: list[tuple[float, int, int, int]] = []
        if os.environ.get("BENCH_DECISIONS"):
            root.dialer.on_decision.append(
                lambda run, inp, n: decisions.append(
                    (time.perf_counter(), n, root.core.live_calls(), run.pending)
                )
            )
        root.core.on_finished(finished)
        root.core.on_finished(lambda f: lengths.append(f.facts.ended_at - f.facts.originated_at))
        await root.dialer.load_campaigns()
        print("ready", flush=True)  # the parent may attach a profiler now
        await asyncio.sleep(0.5)
        cpu0, t0, ev0 = cpu_self(), time.perf_counter(), client.events_in
        task = asyncio.create_task(root.dialer.run())
        await asyncio.wait_for(all_done.wait(), 600)
        wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
        root.dialer.stop()
        await task
        await root.stop(grace_s=1)
        events = client.events_in - ev0
        if decisions:
            Path(os.environ["BENCH_DECISIONS"]).write_text(
                json.dumps([decisions, lease_at, writes_at])
            )
        return {
            "calls": calls,
            "wall": wall,
            "cpu": cpu,
            "outcomes": dict(outcomes),
            "events_per_call": events / calls,
            "per_lease": sum(leases) / max(1, len(leases)),
            "lease_ms": 1000 * sum(lease_s) / max(1, len(lease_s)),
            "leases": len(leases),
            "call_s": sum(lengths) / max(1, len(lengths)),
            "busy_lines": sum(lengths) / wall,
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def run_child(
    argv: list[str], sw: Switch, profile: Path | None, name: str, wait_ready: bool
) -> tuple[dict[str, Any], float]:
    """Run one child; returns its JSON and Asterisk's CPU seconds while it dialled."""
    proc = child(argv)
    assert proc.stdout is not None
    spy = None
    if wait_ready:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{name}: child did not start: {line!r}")
        spy = profiled(proc, profile, name)
    a0 = sw.cpu()
    out = proc.stdout.readline()
    a1 = sw.cpu()
    proc.wait(60)
    if spy is not None:
        spy.wait(30)
    if not out:
        raise SystemExit(f"{name}: child failed")
    return json.loads(out), a1 - a0


def line(label: str, r: dict[str, Any], ast_cpu: float) -> str:
    rate = r["calls"] / r["wall"]
    return (
        f"  {label:<26} {rate:8.1f} attempts/s   CPU {1000 * r['cpu'] / r['calls']:6.2f} ms/call"
        f"   process {100 * r['cpu'] / r['wall']:4.0f}%   Asterisk {100 * ast_cpu / r['wall']:4.0f}%"
        f"   call {1000 * r['call_s']:5.1f} ms, lines busy {r['busy_lines']:5.1f}"
    )


def bench_originate(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    sw = Switch(work)
    try:
        actions = work / "actions.json"
        raw_actions(args.calls, args.channels, actions, sw.agi_url)
        print(
            f"originate path: {args.calls} calls, {args.channels} live at most, callees answer"
            " at once (real Asterisk 22)"
        )
        results = []
        for rep in range(args.reps):
            raw, raw_ast = run_child(
                ["_raw", str(sw.ast.ami_port), sw.ast.secret, str(actions), str(args.channels)],
                sw,
                None,
                "raw",
                False,
            )
            sw.settle()
            raw_actions(args.calls, args.channels, actions, sw.agi_url)  # fresh ChannelIds
            prod, prod_ast = run_child(
                [
                    "_product",
                    str(sw.ast.ami_port),
                    sw.ast.secret,
                    str(args.calls),
                    str(args.channels),
                    "0",
                ],
                sw,
                args.profile if rep == 0 else None,
                "originate",
                True,
            )
            sw.settle()
            print(
                f" run {rep + 1}: outcomes {prod['outcomes']},"
                f" {prod['events_per_call']:.1f} AMI events per call,"
                f" {prod['per_lease']:.1f} calls per lease transaction ({prod['leases']},"
                f" {prod['lease_ms']:.1f} ms each)"
            )
            print(line("raw-socket script", raw, raw_ast))
            print(line("product (dialer floor)", prod, prod_ast))
            results.append((raw, prod))
        rr = sum(p["calls"] / p["wall"] for _, p in results) / sum(
            r["calls"] / r["wall"] for r, _ in results
        )
        cr = sum(p["cpu"] for _, p in results) / sum(r["cpu"] for r, _ in results)
        print(f" product / raw: rate {rr:.2f}x (goal >= 0.8), CPU per call {cr:.2f}x (goal <= 2)")
        if args.profile:
            summarize_profile(args.profile / "originate.txt")
    finally:
        sw.stop()


# --- store size ---------------------------------------------------------------------------


def explain_hot_queries(url: str) -> None:
    """The query plans of the dialling path's hot queries (dialer.telephony.plans)."""
    from dialer.lists.campaigns import apply_campaign, parse_campaign
    from dialer.store import open_store
    from dialer.telephony.plans import hot_query_plans, scans

    store = open_store(url)
    spec = parse_campaign(campaign_doc("plans", flow="notice", channels=10, cps=10))
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="bench")
        cid = row.id
    for name, plan in hot_query_plans(store, cid).items():
        bad = scans(plan, store.engine.dialect.name)
        print(f"   {name}: {'SCANS A GROWING TABLE' if bad else 'index'}")
        for p in plan:
            print(f"      {p}")
    store.dispose()


def bench_store(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    sw = Switch(work)
    pg = None
    try:
        print(
            f"cost against store size: {args.calls} calls dialled, {args.channels} live at most,"
            f" the store already holding {args.small} / {args.large} finished calls"
        )
        rates = {}
        for history in (args.small, args.large):
            url = None
            if args.pg:
                from tests.pgcluster import PgCluster

                if pg is None:
                    pg = PgCluster.start()
                url = pg.tcp_url(pg.create_database())
            argv = ["_product", str(sw.ast.ami_port), sw.ast.secret, str(args.calls)]
            argv += [str(args.channels), str(history)] + ([url] if url else [])
            r, a = run_child(argv, sw, args.profile, f"store-{history}", True)
            sw.settle()
            rates[history] = r["calls"] / r["wall"]
            print(line(f"store of {history:,} calls", r, a))
        ratio = rates[args.large] / rates[args.small]
        print(f" rate at {args.large:,} / at {args.small:,}: {ratio:.2f} (goal >= 0.90)")
        print(" query plans (SQLite):")
        tmp = Path(tempfile.mkdtemp(prefix="bench-switch-plans-"))
        explain_hot_queries(f"sqlite:///{tmp}/plans.db")
        if pg is not None:
            print(" query plans (PostgreSQL):")
            explain_hot_queries(pg.tcp_url(pg.create_database()))
    finally:
        sw.stop()
        if pg is not None:
            pg.stop()


# --- FastAGI ------------------------------------------------------------------------------


def minimal_agi_child(commands: list[str]) -> None:
    """The baseline: an asyncio server that reads the header and sends the same commands."""
    cmds = [(c + "\n").encode() for c in commands]

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\n", b""):
                pass
            for c in cmds:
                writer.write(c)
                await writer.drain()
                reply = await reader.readline()
                while reply.startswith(b"HANGUP"):
                    reply = await reader.readline()
                if not reply.startswith(b"200"):
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(session, "127.0.0.1", 0, backlog=1024)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def product_agi_child(db_url: str) -> None:
    """The product: ``ivr serve``'s FastAGI server recording to the store."""
    import logging

    from ivr.fastagi import start_in_process

    logging.basicConfig(level=logging.ERROR)
    from dialer.store import open_store

    store = open_store(db_url)

    async def main() -> None:
        srv = await start_in_process(store)
        print(srv.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def agi_attempts(db_url: str, n: int) -> list[int]:
    """``n`` attempt rows of a notice campaign (the IVR reads each call's attempt)."""
    from dialer.lists.campaigns import apply_campaign, parse_campaign
    from dialer.store import open_store
    from dialer.store.models import Attempt, Contact

    store = open_store(db_url)
    spec = parse_campaign(campaign_doc("notice-bench", flow="notice", channels=10, cps=100))
    ids = []
    with store.session() as s:
        row, _ = apply_campaign(s, spec, source=None, actor="bench")
        for i in range(n):
            c = Contact(campaign_id=row.id, phone=phone(i), timezone="Asia/Shanghai", language="zh")
            s.add(c)
            s.flush()
            a = Attempt(campaign_id=row.id, contact_id=c.id, phone=c.phone, seq=1, detail={})
            s.add(a)
            s.flush()
            ids.append(a.id)
    store.dispose()
    return ids


def check_sessions(db_url: str, n: int) -> None:
    """The product's figures count only if it did the work: every call's session recorded
    ``completed`` with its steps."""
    from sqlalchemy import func, select

    from dialer.store import open_store
    from dialer.store.models import IvrSession, IvrStep

    store = open_store(db_url)
    with store.session() as s:
        done = s.scalar(select(func.count()).where(IvrSession.status == "completed"))
        steps = s.scalar(select(func.count()).select_from(IvrStep))
    store.dispose()
    if done != n:
        raise SystemExit(f"product: {done} of {n} sessions completed")
    print(f"    product recorded {done} completed sessions, {steps} steps")


async def drive_calls(
    sw: Switch, agi_port: int, attempts: list[int], concurrency: int
) -> tuple[float, float]:
    """Originate a call per attempt, ``concurrency`` live at once, into the notice flow over
    FastAGI on ``agi_port``. Returns (wall seconds, mean call length)."""
    from dialer.lists.campaigns import parse_campaign
    from dialer.telephony.originate import build_originate

    spec = parse_campaign(campaign_doc("notice-bench", flow="notice", channels=10, cps=100))
    reader, writer = await asyncio.open_connection("127.0.0.1", sw.ast.ami_port)
    await reader.readline()
    writer.write(f"Action: Login\r\nUsername: dialer\r\nSecret: {sw.ast.secret}\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    started: dict[str, float] = {}
    lengths: list[float] = []
    room = asyncio.Event()
    done = asyncio.Event()

    async def read() -> None:
        buf = b""
        while data := await reader.read(65536):
            buf += data
            *blocks, buf = buf.split(b"\r\n\r\n")
            for block in blocks:
                if not block.startswith(b"Event: Hangup\r\n"):
                    continue
                i = block.find(b"\r\nUniqueid: ")
                uid = block[i + 12 : block.find(b"\r\n", i + 12)].decode()
                if uid in started:
                    lengths.append(time.perf_counter() - started.pop(uid))
                    room.set()
                    if len(lengths) == len(attempts):
                        done.set()

    task = asyncio.create_task(read())
    t0 = time.perf_counter()
    for aid in attempts:
        while len(started) >= concurrency:
            room.clear()
            await room.wait()
        req = build_originate(
            attempt_id=aid,
            phone=phone(aid),
            spec=spec,
            language="zh",
            agi_url=f"agi://127.0.0.1:{agi_port}",
        )
        lines = ["Action: Originate", f"ActionID: {req.action_id}"]
        lines += [f"{k}: {v}" for k, v in req.fields]
        started[req.channel_id] = time.perf_counter()
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
    await asyncio.wait_for(done.wait(), 300)
    wall = time.perf_counter() - t0
    task.cancel()
    writer.close()
    return wall, sum(lengths) / len(lengths)


def bench_fastagi(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    sw = Switch(work)
    levels = [int(x) for x in args.concurrency.split(",")]
    try:
        print(
            f"FastAGI: the notice flow ({len(notice_commands())} AGI commands, the callee presses"
            " nothing) on a real"
            " Asterisk 22, each level with 1x its concurrency in calls"
        )
        ratios = []
        for c in levels:
            db_url = f"sqlite:///{work}/ivr-{c}.db"
            attempts = agi_attempts(db_url, c * args.rounds)
            figures = {}
            for kind in ("minimal", "product"):
                proc = child(["_agi", kind, db_url])
                assert proc.stdout is not None
                port = int(proc.stdout.readline())
                spy = profiled(proc, args.profile, f"fastagi-{c}") if kind == "product" else None
                cpu0 = cpu_of(proc.pid)
                wall, mean_len = asyncio.run(drive_calls(sw, port, attempts, c))
                cpu = cpu_of(proc.pid) - cpu0
                proc.terminate()
                proc.wait(10)
                if spy is not None:
                    spy.wait(30)
                sw.settle()
                figures[kind] = (cpu, wall, mean_len)
                if kind == "product":
                    check_sessions(db_url, len(attempts))
            (mc, _, ml), (pc, _, pl) = figures["minimal"], figures["product"]
            n = len(attempts)
            ratios.append(pc / mc)
            print(
                f"  {c:4d} concurrent: minimal {1000 * mc / n:5.2f} ms CPU/session, calls"
                f" {ml:5.2f} s | product {1000 * pc / n:5.2f} ms CPU/session, calls {pl:5.2f} s"
                f" | CPU ratio {pc / mc:4.1f}x (goal <= 3), calls {pl - ml:+.2f} s longer"
            )
        print(
            " CPU per session, product / minimal: "
            + ", ".join(f"{r:.1f}x at {c}" for c, r in zip(levels, ratios, strict=True))
            + f" (goal <= 3 at each: {'met' if max(ratios) <= 3 else 'NOT met'})"
        )
        if args.profile:
            for c in levels:
                summarize_profile(args.profile / f"fastagi-{c}.txt")
    finally:
        sw.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        kind, *rest = sys.argv[1:]
        if kind == "_raw":
            raw_child(int(rest[0]), rest[1], rest[2], int(rest[3]))
        elif kind == "_product":
            url = rest[5] if len(rest) > 5 else None
            product_child(int(rest[0]), rest[1], int(rest[2]), int(rest[3]), int(rest[4]), url)
        elif kind == "_agi":
            if rest[0] == "quick":
                minimal_agi_child(QUICK_COMMANDS)
            elif rest[0] == "minimal":
                minimal_agi_child(notice_commands())
            else:
                product_agi_child(rest[1])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw output folder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("originate")
    o.add_argument("--calls", type=int, default=3000)
    o.add_argument("--channels", type=int, default=100)
    o.add_argument("--reps", type=int, default=2)
    st = sub.add_parser("store")
    st.add_argument("--calls", type=int, default=1500)
    st.add_argument("--channels", type=int, default=100)
    st.add_argument("--small", type=int, default=500)
    st.add_argument("--large", type=int, default=50_000)
    st.add_argument("--pg", action="store_true", help="the store on a throw-away PostgreSQL")
    fa = sub.add_parser("fastagi")
    fa.add_argument("--concurrency", default="50,100,200")
    fa.add_argument("--rounds", type=int, default=1, help="calls per level = rounds x level")
    args = ap.parse_args()
    os.environ.setdefault("DIALER_SECRET_KEY", "bench-switch-key")
    {"originate": bench_originate, "store": bench_store, "fastagi": bench_fastagi}[args.cmd](args)


if __name__ == "__main__":
    main()
