#!/usr/bin/env python3
"""SMS throughput of our side against the gateway's own throttle. Prints figures; not a test.

    .venv/bin/python scripts/bench_sms.py [--messages 100000] [--kannel 2000 --kannel-rate 100]

1. **Our side**: ``--messages`` SMS rendered from a template (sandboxed Jinja2, signature,
   segmentation), queued in a SQLite store, then handed one by one through the
   ``SmsGateway`` interface by the real dispatcher (claim -> DNC check -> pace -> hand over
   -> record, two commits per message). The gateway behind the interface answers at once
   (``InstantGateway``) and its rate is set beyond reach, so this measures what *we* can
   push: messages/s per stage and the process's peak memory (max RSS) over the run.
2. **The gateway**: ``--kannel`` SMS through a real Kannel (bearerbox + smsbox + fake SMSC,
   started in a temporary folder as the tests do) whose SMSC link is throttled to
   ``--kannel-rate`` messages/s, our dispatcher pacing at the same rate, timed until the fake
   SMSC has every message, with 1, 4 (the default) and 8 hand-overs in flight
   (`--in-flight`). That is
   the limit a bank's link imposes.

The ratio our-capacity / gateway-throttle says how much headroom the dispatcher leaves; the
measured Kannel rate over its throttle says how close the whole chain runs to the link.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Kannel fixture the tests use

os.environ.setdefault("DIALER_SECRET_KEY", "bench-only-key")
os.environ.setdefault("DIALER_KANNEL_PASSWORD", "bench-only-kannel")

from dialer import CONFIG_DIR  # noqa: E402
from dialer.messaging import outbox  # noqa: E402
from dialer.messaging.compose import render_sms  # noqa: E402
from dialer.messaging.config import SmsSettings  # noqa: E402
from dialer.messaging.dispatcher import SmsDispatcher  # noqa: E402
from dialer.messaging.kannel import OutboundSms, SubmitStatus  # noqa: E402
from dialer.messaging.templates import TemplateLibrary  # noqa: E402
from dialer.settings import BankSettings  # noqa: E402
from dialer.store import Store, open_store  # noqa: E402


class InstantGateway:
    """The SmsGateway interface answering at once: isolates our side's cost."""

    rate = 1e9

    def __init__(self) -> None:
        self.handed = 0

    async def submit(self, msg: OutboundSms) -> SubmitStatus:
        self.handed += 1
        return SubmitStatus.ACCEPTED

    async def held(self) -> int | None:
        return 0

    async def close(self) -> None:
        return None


def render_and_queue(store: Store, n: int) -> tuple[float, float]:
    tpl = TemplateLibrary.load(CONFIG_DIR / "messages").get("repayment-due-sms")
    bank = BankSettings()
    t0 = time.perf_counter()
    texts = []
    for i in range(n):
        values = {
            "name": "张三",
            "card_last4": f"{i % 10000:04d}",
            "amount_due": f"{1000 + i % 9000}.{i % 100:02d}",
            "due_date": "2026-12-20",
        }
        texts.append(render_sms(tpl, values, sensitive=set(), bank=bank).text)
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, n, 5000):
        with store.session() as s:
            for i in range(start, min(n, start + 5000)):
                outbox.enqueue_sms(s, to=f"+86138{i:08d}", text=texts[i])
    t_queue = time.perf_counter() - t0
    return n / t_render, n / t_queue


async def dispatch_all(store: Store, n: int) -> tuple[float, int]:
    gw = InstantGateway()
    d = SmsDispatcher(store, gw, SmsSettings(batch=1000))
    t0 = time.perf_counter()
    while gw.handed < n:
        handed, _ = await d.dispatch_batch()
        if handed == 0:
            break
    return gw.handed / (time.perf_counter() - t0), gw.handed


async def through_kannel(n: int, rate: float, in_flight: int) -> float:
    from messaging.conftest import SmsRig  # noqa: PLC0415
    from messaging.kannel_box import KannelBox, available, free_port  # noqa: PLC0415

    if not available():
        raise SystemExit("Kannel is not installed (apt-get install kannel kannel-extras)")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/kannel.db")
        box = KannelBox(
            Path(tmp) / "kannel",
            callback_base=f"http://127.0.0.1:{free_port()}",
            password=os.environ["DIALER_KANNEL_PASSWORD"],
            throughput=rate,
        )
        box.start()
        rig = SmsRig(store, box, in_flight=in_flight)
        await rig.start()
        try:
            with store.session() as s:
                for i in range(n):
                    outbox.enqueue_sms(s, to=f"+86139{i:08d}", text=f"【示例银行】第{i}条")
            stop = asyncio.Event()
            t0 = time.perf_counter()
            task = asyncio.create_task(rig.dispatcher.run(stop))
            while len(box.received()) < n:
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - t0
            stop.set()
            await task
        finally:
            await rig.stop()
            box.close()
            store.dispose()
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument(
        "--kannel", type=int, default=2000, help="messages through real Kannel (0: skip)"
    )
    p.add_argument("--kannel-rate", type=float, default=100.0, help="the SMSC link's throughput")
    p.add_argument(
        "--in-flight",
        type=int,
        nargs="+",
        default=[1, 4, 8],
        help="hand-overs at once to Kannel (one run each; the default setting is 4)",
    )
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        render_rate, queue_rate = render_and_queue(store, args.messages)
        dispatch_rate, handed = asyncio.run(dispatch_all(store, args.messages))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        store.dispose()
    assert handed == args.messages, handed

    print(f"SMS benchmark: {args.messages:,} messages (SQLite store, 1 dispatcher)")
    print(f"  render + sign + segment     {render_rate:>10,.0f} msg/s")
    print(f"  queue in the store          {queue_rate:>10,.0f} msg/s")
    print(f"  dispatch via SmsGateway     {dispatch_rate:>10,.0f} msg/s   (instant gateway)")
    print(f"  peak memory (max RSS)       {peak / 2**20:>10,.1f} MiB")
    if args.kannel:
        print(
            f"real Kannel, SMSC link throttled to {args.kannel_rate:g} msg/s, "
            f"{args.kannel:,} messages:"
        )
        for k in args.in_flight:
            kannel_rate = asyncio.run(through_kannel(args.kannel, args.kannel_rate, k))
            print(
                f"  end to end, {k} in flight    {kannel_rate:>10,.0f} msg/s   "
                f"= {kannel_rate / args.kannel_rate:.2f} x the link's throttle"
            )
    print(
        f"our dispatcher / gateway throttle: {dispatch_rate / args.kannel_rate:.1f} x "
        f"(headroom over a {args.kannel_rate:g} msg/s link)"
    )


if __name__ == "__main__":
    main()
