"""Live answers and abandons over the cap window and the short window (for ``AbandonCounts``).

The live runner and the rehearsal count the same way: record each live answer when it is
answered and each abandon when it is abandoned; ask for :meth:`AbandonTracker.counts` at each
decision. Pure (the clock comes in as ``now``). For a long cap window (30 days) the runner can
start from the store's counts with :meth:`AbandonTracker.rebase` instead of replaying history;
several workers sharing a campaign re-read both windows from the store now and then
(:meth:`AbandonTracker.rebase_cap`, :meth:`AbandonTracker.rebase_short`), so the cap holds for the
campaign, not for each worker.
"""

from __future__ import annotations

from collections import deque

from dialer.pacing.types import SHORT_WINDOW_S, AbandonCounts


class _Window:
    def __init__(self, length_s: float | None) -> None:
        self.length = length_s
        self.live: deque[float] = deque()
        self.ab: deque[float] = deque()
        self.n_live = 0
        self.n_ab = 0

    def add(self, now: float, abandoned: bool) -> None:
        if self.length is None:
            if abandoned:
                self.n_ab += 1
            else:
                self.n_live += 1
        else:
            (self.ab if abandoned else self.live).append(now)

    def clear(self) -> None:
        self.live.clear()
        self.ab.clear()
        self.n_live = self.n_ab = 0

    def counts(self, now: float) -> tuple[int, int]:
        if self.length is None:
            return self.n_live, self.n_ab
        cut = now - self.length
        while self.live and self.live[0] < cut:
            self.live.popleft()
        while self.ab and self.ab[0] < cut:
            self.ab.popleft()
        return len(self.live), len(self.ab)


class AbandonTracker:
    """Counts for :class:`AbandonCounts`; ``window_s=None`` means since the start."""

    def __init__(self, window_s: float | None, short_s: float = SHORT_WINDOW_S) -> None:
        self.short_s = short_s
        self._cap = _Window(window_s)
        self._short = _Window(short_s)
        self._base = (0, 0)
        self._short_base = (0, 0)

    def rebase(self, live: int, abandoned: int) -> None:
        """Counts from before this tracker (e.g. the store's 30-day figures); never expire."""
        if not 0 <= abandoned <= live:
            raise ValueError("abandons are a subset of live answers")
        self._base = (live, abandoned)

    def rebase_cap(self, live: int, abandoned: int) -> None:
        """The shared store's counts over the cap window replace everything recorded so far
        (several workers: each one's own outcomes are in the store, with everyone else's)."""
        self.rebase(live, abandoned)
        self._cap.clear()

    def rebase_short(self, live: int, abandoned: int) -> None:
        """Likewise for the short window."""
        if not 0 <= abandoned <= live:
            raise ValueError("abandons are a subset of live answers")
        self._short_base = (live, abandoned)
        self._short.clear()

    def live_answer(self, now: float) -> None:
        self._cap.add(now, False)
        self._short.add(now, False)

    def abandon(self, now: float) -> None:
        """A live answer (already recorded) was abandoned."""
        self._cap.add(now, True)
        self._short.add(now, True)

    def counts(self, now: float) -> AbandonCounts:
        live_w, ab_w = self._cap.counts(now)
        live_s, ab_s = self._short.counts(now)
        live_w += self._base[0]
        ab_w += self._base[1]
        live_s += self._short_base[0]
        ab_s += self._short_base[1]
        # An abandon is recorded hold_s after its answer: at a window's edge the answer may have
        # left while the abandon has not. Keep the counts consistent.
        return AbandonCounts(live_w, min(ab_w, live_w), live_s, min(ab_s, live_s), self.short_s)
