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
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.ami.framing import AMIFraming  # noqa: E402
from dialer.ami.transcript import read_transcript  # noqa: E402

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


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def bench_live(args: argparse.Namespace) -> None:
    raise SystemExit("live benchmark: needs the simulated PBX (dialer.sim)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fr = sub.add_parser("framing")
    fr.add_argument("--mb", type=float, default=20.0)
    fr.add_argument("--runs", type=int, default=3)
    lv = sub.add_parser("live")
    lv.add_argument("--calls", type=int, default=2000)
    lv.add_argument("--rate", type=float, default=200.0, help="originates per second asked")
    lv.add_argument("--hold", type=float, default=60.0, help="seconds each answered call lasts")
    args = ap.parse_args()
    if args.cmd == "framing":
        bench_framing(args)
    else:
        asyncio.run(bench_live(args))


if __name__ == "__main__":
    main()
