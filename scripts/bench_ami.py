#!/usr/bin/env python3
"""Benchmarks of the AMI side of the dialer. Prints figures; not a test.

    .venv/bin/python scripts/bench_ami.py framing [--mb 20]
    .venv/bin/python scripts/bench_ami.py live [--calls 2000 --rate 200]

``framing``: our sans-I/O framing (typed, immutable messages, UTF-8 safe across reads, fed in
64 KiB reads as a socket delivers them) against a plain loop that only splits the same bytes
into key/value pairs (the whole buffer at once, no types, no safety). The ratio is the figure.

``live``: one dialer process (adapter + tracker + store) against the simulated PBX over
loopback: originates/s, AMI events/s and CPU per call with many calls live.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.telephony.ami.framing import AMIFraming  # noqa: E402
from dialer.telephony.ami.messages import Event  # noqa: E402
from dialer.telephony.ami.transcript import read_transcript  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "ami"


def corpus(megabytes: float) -> bytes:
    """Recorded Asterisk traffic (every transcript), repeated to the size asked for."""
    body = b""
    for path in sorted(FIXTURES.glob("ami-*.txt")):
        for conn in read_transcript(path):
            raw = conn.received_bytes()
            body += raw.split(b"\r\n", 1)[1]  # drop each greeting line
    body = body.replace(b"CallerIDName: Dialer", "CallerIDName: 张伟明".encode())
    reps = max(1, int(megabytes * 1e6 / len(body)))
    return b"Asterisk Call Manager/11.0.0\r\n" + body * reps


def plain_split(data: bytes) -> int:
    """The baseline: decode, split on blank lines, split lines on ': '. Nothing else."""
    n = 0
    for block in data.decode("utf-8", "replace").split("\r\n\r\n"):
        pairs = []
        for line in block.split("\r\n"):
            k, _, v = line.partition(": ")
            pairs.append((k, v))
        n += 1
    return n


def framed(data: bytes, read_size: int = 65536) -> int:
    f = AMIFraming()
    n = 0
    for i in range(0, len(data), read_size):
        n += len(f.receive_data(data[i : i + read_size]))
    n += len(f.receive_data(b""))
    return n


def best_of(fn, data: bytes, runs: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_framing(args: argparse.Namespace) -> None:
    data = corpus(args.mb)
    n_msgs = framed(data)
    t_plain = best_of(plain_split, data, args.runs)
    t_framed = best_of(framed, data, args.runs)
    mb = len(data) / 1e6
    print(f"corpus: {mb:.1f} MB of recorded AMI traffic, {n_msgs} messages")
    print(
        f"plain split loop : {t_plain:.3f} s  {mb / t_plain:7.1f} MB/s  {n_msgs / t_plain:>10,.0f} msg/s"
    )
    print(
        f"AMIFraming (64K) : {t_framed:.3f} s  {mb / t_framed:7.1f} MB/s  {n_msgs / t_framed:>10,.0f} msg/s"
    )
    print(f"ratio framing/plain: {t_framed / t_plain:.2f}x the time")


def bench_core(args: argparse.Namespace) -> None:
    """Framing + tracker alone on the simulated PBX's own bytes for many calls (no network, no
    database): the events/s one core of the dialer's AMI side can take."""
    import logging
    import uuid

    from dialer.lists.campaigns import CampaignSpec
    from dialer.sim import SimPbx, VirtualClock
    from dialer.sim.engine import OriginateRequest
    from dialer.sim.events import format_event
    from dialer.sim.queues import AgentBehaviour
    from dialer.telephony.originate import build_originate
    from dialer.telephony.tracker import CallTracker, Finished

    logging.basicConfig(level=logging.ERROR)
    spec = CampaignSpec.model_validate(
        {"name": "bench", "queue": "activation-agents", "caller_id": "95588"}
    )
    reqs = []
    for i in range(args.calls):
        suffix = ("486", "503", "480", "404", "111", "111")[i % 6]
        reqs.append(
            build_originate(
                attempt_id=i + 1,
                phone=f"+86139{i:05d}{suffix}",
                spec=spec,
                language="zh",
                agi_url="agi://127.0.0.1:4573",
                new_id=lambda: str(uuid.uuid4()),
            )
        )

    async def record() -> bytes:
        pbx = SimPbx(clock=VirtualClock(), secret="x", record=True)
        pbx.engine.queues.default_behaviour = AgentBehaviour(
            ring_s=lambda r: 1.0, talk_s=lambda r: 20.0
        )
        for r in reqs:
            f = dict(r.fields)
            pbx.engine.spawn(
                pbx.engine.originate(
                    OriginateRequest(
                        channel=f["Channel"],
                        context=f["Context"],
                        exten=f["Exten"],
                        priority=f["Priority"],
                        timeout_ms=int(f["Timeout"]),
                        callerid=("张伟明", "95588"),
                        channel_id=r.channel_id,
                        other_channel_id=r.other_channel_id,
                        variables=tuple(
                            tuple(v.split("=", 1)) for k, v in r.fields if k == "Variable"
                        ),  # type: ignore[arg-type]
                        action_id=r.action_id,
                        is_async=True,
                    )
                )
            )
        await pbx.clock.run_until_idle(limit=600)
        return b"Asterisk Call Manager/11.0.0\r\n" + b"".join(format_event(e) for e in pbx.events)

    data = asyncio.run(record())
    best = float("inf")
    outcomes: Counter[str] = Counter()
    n_events = 0
    for _ in range(args.runs):
        tracker = CallTracker()
        for r in reqs:
            tracker.register(
                r.attempt_id,
                r.channel_id,
                other_channel_id=r.other_channel_id,
                action_id=r.action_id,
                plan=r.plan,
                now=0.0,
            )
        framing = AMIFraming()
        outcomes = Counter()
        n_events = 0
        t0 = time.perf_counter()
        for i in range(0, len(data), 65536):
            for msg in framing.receive_data(data[i : i + 65536]):
                if isinstance(msg, Event):
                    n_events += 1
                    stamp = msg.headers.get("Timestamp")
                    for u in tracker.feed(msg, float(stamp) if stamp else 0.0):
                        if isinstance(u, Finished):
                            outcomes[u.outcome.value] += 1
        best = min(best, time.perf_counter() - t0)
    print(f"{args.calls} calls, {n_events} events, {len(data) / 1e6:.1f} MB (simulated PBX bytes)")
    print(f"outcomes: {dict(outcomes)}")
    print(
        f"framing + tracker: {best:.3f} s = {n_events / best:,.0f} events/s,"
        f" {1e6 * best / args.calls:.0f} us per call (one core, no DB, no network)"
    )


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def bench_live(args: argparse.Namespace) -> None:
    """One dialer process against ``dialer sim-pbx`` (its own process) over loopback."""
    import logging
    import re
    import subprocess
    import tempfile
    from collections import Counter

    from dialer.lists.campaigns import CampaignSpec, apply_campaign
    from dialer.store import open_store
    from dialer.store.models import Attempt, Contact
    from dialer.telephony.ami.adapter import AMIClient
    from dialer.telephony.core import DialerCore, FinishedAttempt

    logging.basicConfig(level=logging.ERROR)
    secret = os.environ.setdefault("DIALER_AMI_SECRET", "bench-secret")
    sim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from dialer.app.cli import main; main()",
            "sim-pbx",
            "--ami-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DIALER_AMI_SECRET": secret},
    )
    try:
        assert sim.stderr is not None
        port = 0
        while not port:
            line = sim.stderr.readline()
            if not line:
                raise SystemExit("sim-pbx did not start")
            m = re.search(r"AMI on [^:]+:(\d+)", line)
            if m:
                port = int(m.group(1))
        tmp = tempfile.mkdtemp(dir=os.environ.get("BENCH_DB_DIR"))
        store = open_store(f"sqlite:///{tmp}/bench.db")
        spec = CampaignSpec.model_validate(
            {
                "name": "bench",
                "queue": "activation-agents",
                "caller_id": "95588",
                "pacing": {"ring_timeout_s": args.ring},
            }
        )
        n = args.calls
        with store.session() as s:
            row, _ = apply_campaign(s, spec, source=None, actor="bench")
            ids = []
            for i in range(n):
                # ...480 rings until the Originate timeout: every call stays live `ring` s;
                # --answer: that share answers (sim default party) and goes to the queue
                suffix = "111" if (i % 100) < args.answer * 100 else "480"
                c = Contact(
                    campaign_id=row.id, phone=f"+86139{i:05d}{suffix}", timezone="Asia/Shanghai"
                )
                s.add(c)
                s.flush()
                a = Attempt(campaign_id=row.id, contact_id=c.id, phone=c.phone, seq=1, detail={})
                s.add(a)
                s.flush()
                ids.append(a.id)
        client = AMIClient("127.0.0.1", port, "dialer", secret, action_timeout_s=30)
        core = DialerCore(store, client, agi_url="agi://127.0.0.1:4573")
        finished: list[FinishedAttempt] = []
        core.on_finished(finished.append)
        await core.start()
        await core.wait_ready(10)
        cpu0, t0, ev0 = cpu_s(), time.perf_counter(), client.events_in
        sim0 = proc_cpu_s(sim.pid)
        peak = 0
        sem = asyncio.Semaphore(args.inflight)

        async def one(aid: int) -> None:
            async with sem:
                await core.originate(aid)

        interval = 1.0 / args.rate
        tasks = []
        for k, aid in enumerate(ids):
            due = t0 + k * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(aid)))
            peak = max(peak, core.live_calls())
        await asyncio.gather(*tasks)
        t_dial = time.perf_counter() - t0
        cpu_dial = cpu_s() - cpu0
        sim_dial = proc_cpu_s(sim.pid) - sim0
        ev_dial = client.events_in - ev0
        while len(finished) < n:
            await asyncio.sleep(0.2)
            peak = max(peak, core.live_calls())
        t_all = time.perf_counter() - t0
        cpu_all = cpu_s() - cpu0
        events = client.events_in - ev0
        await core.stop(grace_s=0)
        print(
            f"calls: {n}, {100 * args.answer:.0f}% answered into the queue, the rest ring"
            f" {args.ring:g} s (numbers ...480); asked {args.rate:g}/s"
        )
        print(f"outcomes: {dict(Counter(f.outcome.value for f in finished))}")
        print(f"illegal transitions: {core.illegal_transitions}")
        print(f"originates/s sustained : {n / t_dial:8.1f}  ({t_dial:.2f} s to dial all)")
        print(f"peak live calls        : {peak}")
        print(f"AMI events received    : {events} ({events / n:.1f} per call)")
        print(f"AMI events/s (whole run): {events / t_all:8.1f}  over {t_all:.1f} s")
        print(f"AMI events/s (dialling): {ev_dial / t_dial:8.1f}")
        print(
            f"dialer CPU per 1000 AMI events: {1000 * cpu_all / events:.3f} s (all work incl. DB)"
        )
        print(
            f"dialer CPU             : {cpu_all:.2f} s = {1000 * cpu_all / n:.2f} ms per call"
            f" (dialling phase {cpu_dial:.2f} s)"
        )
        print(f"dialer CPU share       : {100 * cpu_all / t_all:.0f}% of one core")
        print(
            f"sim-pbx CPU, dialling  : {sim_dial:.2f} s = {100 * sim_dial / t_dial:.0f}% of one core"
            f" (dialer: {100 * cpu_dial / t_dial:.0f}%)"
        )
    finally:
        sim.terminate()
        sim.wait(10)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fr = sub.add_parser("framing")
    fr.add_argument("--mb", type=float, default=20.0)
    fr.add_argument("--runs", type=int, default=3)
    co = sub.add_parser("core")
    co.add_argument("--calls", type=int, default=2000)
    co.add_argument("--runs", type=int, default=3)
    lv = sub.add_parser("live")
    lv.add_argument("--calls", type=int, default=2000)
    lv.add_argument("--rate", type=float, default=200.0, help="originates per second asked")
    lv.add_argument("--ring", type=float, default=20.0, help="ring timeout (s) of every call")
    lv.add_argument("--inflight", type=int, default=64, help="Originates awaiting a reply")
    lv.add_argument("--answer", type=float, default=0.0, help="share of calls that answer")
    args = ap.parse_args()
    if args.cmd == "framing":
        bench_framing(args)
    elif args.cmd == "core":
        bench_core(args)
    else:
        asyncio.run(bench_live(args))


if __name__ == "__main__":
    main()
