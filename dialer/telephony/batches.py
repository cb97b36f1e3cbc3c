"""The dialer core's store work, batched: Originates prepared and tracker updates written in
batches on one database thread, so AMI events never wait for the store.

A batch that fails is written again one update at a time: a poisoned update is dropped (and
counted), the rest are written; updates that failed because the database is away are kept
and retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import OperationalError

from dialer.errors import StoreError
from dialer.telephony.originate import OriginateRequest
from dialer.telephony.rows import AttemptRows, FinishedAttempt, NotDialled
from dialer.telephony.tracker import Update

log = logging.getLogger(__name__)

#: Failures of the database itself (locked, gone): the write is retried, not dropped.
StoreErrors = (OperationalError, StoreError)


class StoreBatches:
    """Preparations and writes for one dialer core, on its own database thread."""

    def __init__(
        self,
        rows: AttemptRows,
        flush_s: float,
        on_done: Callable[[list[FinishedAttempt]], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        db: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        self.rows = rows
        self.flush_s = flush_s  # on ``sleep``'s clock
        self.on_done = on_done
        self.sleep = sleep
        self.db = db or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dialer-db")
        self.flush_lock = asyncio.Lock()
        self.write_errors = 0
        self._writes: list[Update] = []
        self._write_wakeup = asyncio.Event()
        self._prep_queue: list[tuple[int, asyncio.Future[OriginateRequest | NotDialled]]] = []
        self._prep_task: asyncio.Task[None] | None = None

    async def prepare(self, attempt_id: int) -> OriginateRequest | NotDialled:
        fut: asyncio.Future[OriginateRequest | NotDialled] = (
            asyncio.get_running_loop().create_future()
        )
        self._prep_queue.append((attempt_id, fut))
        if self._prep_task is None or self._prep_task.done():
            self._prep_task = asyncio.create_task(self._prepare_queued(), name="dialer-core-prep")
        return await fut

    async def _prepare_queued(self) -> None:
        loop = asyncio.get_running_loop()
        while self._prep_queue:
            batch, self._prep_queue = self._prep_queue, []
            try:
                results = await loop.run_in_executor(
                    self.db, self.rows.prepare_many, [a for a, _ in batch]
                )
            except Exception as exc:  # the transaction itself failed: nobody was prepared
                log.exception("preparing %d Originates failed", len(batch))
                results = [exc] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def add(self, updates: list[Update]) -> None:
        self._writes.extend(updates)
        self._write_wakeup.set()

    async def writer(self) -> None:
        while True:
            await self._write_wakeup.wait()
            await self.sleep(self.flush_s)  # gather a batch
            await self.flush()

    async def flush(self) -> None:
        async with self.flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        if not self._writes:
            return
        batch, self._writes = self._writes, []
        self._write_wakeup.clear()
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(self.db, self.rows.write_batch, batch)
        except Exception:
            # one bad update must not hold back the others: write them one by one, and
            # retry later only what failed for a reason other than the update itself
            log.exception("writing %d tracker updates failed; one by one", len(batch))
            done = []
            retry: list[Update] = []
            for u in batch:
                try:
                    done += await loop.run_in_executor(self.db, self.rows.write_batch, [u])
                except StoreErrors:
                    retry.append(u)  # the database is away: keep it for later
                except Exception:
                    self.write_errors += 1
                    log.exception("attempt %s: update dropped: %r", u.attempt_id, u)
            if retry:
                self._writes[:0] = retry
                self._write_wakeup.set()
                await asyncio.sleep(0.5)
        self.on_done(done)
