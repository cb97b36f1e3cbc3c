#!/usr/bin/env python3
"""IVR benchmark: what one FastAGI server process holds and how fast it answers.

Runs the server in a child process (so its RSS and CPU are its own) and plays Asterisk from
this process with an in-script AGI client (no sleeps: replies are immediate, as if every
caller answered at once - the worst case for the server).

1. **held sessions**: N sessions opened together and all held *inside* a flow (each waits
   at its first WAIT FOR DIGIT); server RSS before and with all N live -> memory per session.
2. **throughput**: C concurrent sessions running ``satisfaction_survey`` / ``notice`` loops
   back to back for T seconds -> AGI commands per second, sessions per second, server CPU.
3. **process AGI vs FastAGI**: the same flow run K times as ``python -m ivr agi notice``
   (a process per call, as ``AGI(script)`` does) and K times over FastAGI: wall time and CPU
   per call, side by side.

    python scripts/bench_ivr.py                       # N=1000, C=100 (2 client procs), T=10 s, K=5
    python scripts/bench_ivr.py --held 2000 --concurrency 200 --seconds 20 --recorder store
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def header(script: str) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1/{script}",
        "agi_channel: Local/+8613800000000@customer-00000001;1",
        "agi_language: zh",
        "agi_type: Local",
        "agi_uniqueid: 8b0195a0-3778-4a5b-916d-757d2a3f4ab6",
        "agi_version: 22.10.1",
        "agi_callerid: 95588",
        "agi_context: dialer-outbound",
        "agi_extension: s",
        "agi_priority: 4",
    ]
    return ("\n".join(lines) + "\n\n").encode()


def reply_to(line: str, keys: list[str]) -> bytes:
    """A minimal Asterisk: the caller presses ``keys`` one per WAIT FOR DIGIT."""
    if line.startswith("WAIT FOR DIGIT"):
        k = keys.pop(0) if keys else ""
        return f"200 result={ord(k) if k else 0}\n".encode()
    if line.startswith("STREAM FILE"):
        return b"200 result=0 endpos=8000\n"
    if line.startswith("GET DATA"):
        return b"200 result= (timeout)\n"
    if line.startswith("SET VARIABLE") or line.startswith("VERBOSE"):
        return b"200 result=1\n"
    return b"200 result=0\n"


async def client_session(
    port: int,
    script: str,
    keys: list[str],
    hold: asyncio.Event | None = None,
    reached: list[int] | None = None,
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(header(script))
    commands = 0
    held = False
    try:
        while line := await reader.readline():
            commands += 1
            text = line.decode().rstrip("\n")
            if hold is not None and not held and text.startswith("WAIT FOR DIGIT"):
                held = True
                if reached is not None:
                    reached[0] += 1
                await hold.wait()
            writer.write(reply_to(text, keys))
            await writer.drain()
    finally:
        writer.close()
    return commands


def proc_stat(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return rss, cpu


def start_server(
    db_url: str, recorder: str, max_sessions: int
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--db",
            db_url,
            "--recorder",
            recorder,
            "--max-sessions",
            str(max_sessions),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DIALER_SECRET_KEY": os.environ.get("DIALER_SECRET_KEY", "bench-key")},
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().strip())
    return proc, port


def serve(db_url: str, recorder_kind: str, max_sessions: int) -> None:
    import datetime as dt

    from dialer.store import open_store
    from ivr.engine import Services
    from ivr.fastagi import FastAGIServer
    from ivr.flow import FlowLibrary
    from ivr.record import MemoryRecorder, StoreRecorder

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    store = open_store(db_url) if recorder_kind == "store" else None
    recorder = StoreRecorder(store, clock) if store is not None else MemoryRecorder(keep=False)
    services = Services(library=FlowLibrary.load(), recorder=recorder, store=store, clock=clock)

    async def main() -> None:
        srv = FastAGIServer(
            services, port=0, max_sessions=max_sessions, blocking_in_threads=store is not None
        )
        await srv.start()
        print(srv.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def bench_held(port: int, pid: int, n: int) -> None:
    rss0, _ = proc_stat(pid)
    hold = asyncio.Event()
    reached = [0]
    tasks = [
        asyncio.create_task(client_session(port, "satisfaction_survey", ["3"], hold, reached))
        for _ in range(n)
    ]
    t0 = time.monotonic()
    while reached[0] < n and time.monotonic() - t0 < 120:
        await asyncio.sleep(0.05)
        if any(t.done() for t in tasks):
            break
    ramp = time.monotonic() - t0
    rss1, _ = proc_stat(pid)
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"held sessions      : {reached[0]}/{n} live at once (all inside the flow), ramp {ramp:.2f} s"
    )
    print(
        f"server RSS         : {rss0:.1f} MB idle -> {rss1:.1f} MB with {reached[0]} live sessions"
    )
    if reached[0]:
        print(f"memory per session : {(rss1 - rss0) * 1024 / reached[0]:.1f} KB")


async def _throughput_worker(
    port: int, concurrency: int, seconds: float, offset: int
) -> tuple[int, int]:
    stop = time.monotonic() + seconds
    counts = [0, 0]

    async def worker(i: int) -> None:
        while time.monotonic() < stop:
            if i % 2:
                c = await client_session(port, "satisfaction_survey", [str(i % 5 + 1)])
            else:
                c = await client_session(port, "notice", ["1", "1", "1", ""])
            counts[0] += c
            counts[1] += 1

    await asyncio.gather(*(worker(offset + i) for i in range(concurrency)))
    return counts[0], counts[1]


def _throughput_proc(a: tuple[int, int, float, int]) -> tuple[int, int]:
    return asyncio.run(_throughput_worker(*a))


def bench_throughput(port: int, pid: int, concurrency: int, seconds: float, procs: int) -> None:
    from multiprocessing import Pool

    _, cpu0 = proc_stat(pid)
    t0 = time.monotonic()
    per = max(1, concurrency // procs)
    with Pool(procs) as pool:
        results = pool.map(_throughput_proc, [(port, per, seconds, i * per) for i in range(procs)])
    wall = time.monotonic() - t0
    _, cpu1 = proc_stat(pid)
    commands = sum(r[0] for r in results)
    sessions = sum(r[1] for r in results)
    cpu = cpu1 - cpu0
    print(
        f"throughput         : {commands / wall:,.0f} AGI commands/s, {sessions / wall:,.0f} sessions/s "
        f"({per * procs} concurrent from {procs} client process(es), {wall:.1f} s)"
    )
    print(
        f"server CPU         : {100 * cpu / wall:.0f}% of one core -> {commands / max(cpu, 1e-9):,.0f} "
        f"commands per server CPU-second ({commands / max(sessions, 1):.1f} commands per session)"
    )


def one_process_agi(db_url: str) -> tuple[float, float]:
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr", "--db", db_url, "agi", "notice"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
        cwd=str(ROOT),
        env={**os.environ, "DIALER_SECRET_KEY": os.environ.get("DIALER_SECRET_KEY", "bench-key")},
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(header("/usr/bin/ivr"))
    keys = ["1", "1", "1", ""]
    while line := proc.stdout.readline():
        proc.stdin.write(reply_to(line.decode().rstrip("\n"), keys))
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return time.monotonic() - t0, cpu


async def bench_process_vs_fastagi(db_url: str, port: int, pid: int, k: int) -> None:
    proc_runs = [one_process_agi(db_url) for _ in range(k)]
    fast_wall = []
    _, cpu0 = proc_stat(pid)
    for _ in range(k):
        t0 = time.monotonic()
        await client_session(port, "notice", ["1", "1", "1", ""])
        fast_wall.append(time.monotonic() - t0)
    _, cpu1 = proc_stat(pid)
    pw = sum(w for w, _ in proc_runs) / k
    pc = sum(c for _, c in proc_runs) / k
    fw = sum(fast_wall) / k
    fc = (cpu1 - cpu0) / k
    print(
        f"process AGI        : {pw * 1000:7.1f} ms wall, {pc * 1000:7.1f} ms CPU per call ({k} calls, notice flow, store-backed)"
    )
    print(
        f"FastAGI            : {fw * 1000:7.1f} ms wall, {fc * 1000:7.1f} ms CPU per call (same flow, same store)"
    )
    print(
        f"ratio              : process AGI costs {pc / max(fc, 1e-6):.0f}x the CPU of a FastAGI session"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--held", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--calls", type=int, default=5, help="process-AGI vs FastAGI calls")
    ap.add_argument("--client-procs", type=int, default=2, help="client processes for part 2")
    ap.add_argument(
        "--recorder",
        choices=["memory", "store"],
        default="memory",
        help="held/throughput server: record to memory or to a SQLite store",
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--max-sessions", type=int, default=10000, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.db, args.recorder, args.max_sessions)
        return 0

    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s); recorder for parts 1-2: {args.recorder}"
        )
        srv, port = start_server(db_url, args.recorder, max(args.held + 100, 1000))
        try:
            time.sleep(0.3)
            asyncio.run(bench_held(port, srv.pid, args.held))
            bench_throughput(port, srv.pid, args.concurrency, args.seconds, args.client_procs)
        finally:
            srv.terminate()
            srv.wait()
        srv, port = start_server(db_url, "store", 1000)
        try:
            asyncio.run(bench_process_vs_fastagi(db_url, port, srv.pid, args.calls))
        finally:
            srv.terminate()
            srv.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
