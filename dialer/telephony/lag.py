"""How far behind the switch the dialer reads its AMI events (sans-I/O: stamps and times in).

Why: pacing decides from the agents' and calls' states as the events told them. When the
dialer's event loop is starved (a loaded machine), events wait in the socket for seconds and
every decision is made on a floor that no longer exists: agents counted free have taken calls.
Asterisk stamps each event when it raises it (``timestampevents = yes``: ``Timestamp:``), so
the delay of one event is ``read_at - stamp``.

The two hosts' clocks may differ. The smallest delay seen recently is taken as the clocks'
offset plus the transport's floor (NTP's minimum-delay filter), so the lag is the delay above
that floor: ~0 while events are read at once, whatever the offset. The floor is the minimum
over ``floor_window_s`` (kept as one minimum per ``floor_bucket_s``), so a clock that steps is
followed within that window, while a loop starved for a few minutes still shows its lag.

What pacing reads is :meth:`EventLag.lag_s`: the worst lag among the events read in the last
``hold_s`` seconds - a fall-back taken for a late event holds until the events have been on
time for that long (the recovery is not one lucky event).
"""

from __future__ import annotations

import math
from collections import deque

#: seconds over which a late event keeps counting (the recovery time)
HOLD_S = 10.0
#: the clocks' offset is the least delay seen over this window, in buckets of ...
FLOOR_WINDOW_S = 600.0
FLOOR_BUCKET_S = 60.0


class EventLag:
    """The lag of the events read, and the worst of it over the last ``hold_s`` seconds."""

    def __init__(
        self,
        hold_s: float = HOLD_S,
        floor_window_s: float = FLOOR_WINDOW_S,
        floor_bucket_s: float = FLOOR_BUCKET_S,
    ) -> None:
        self.hold_s = hold_s
        self.floor_window_s = floor_window_s
        self.floor_bucket_s = floor_bucket_s
        self._buckets: deque[tuple[float, float]] = deque()  # (bucket start, least delay)
        self._floor = math.inf
        self._recent: deque[tuple[float, float]] = deque()  # (read at, lag), lags decreasing
        self.last_s = 0.0  # the lag of the last event read
        self.max_s = 0.0  # the worst lag since the start
        self._worst = 0.0  # ... since the last ``take_worst``
        self.samples = 0

    @property
    def floor_s(self) -> float:
        """The delay taken as the clocks' offset (read time minus stamp, at best)."""
        return self._floor if self.samples else 0.0

    def observe(self, stamp: float, now: float) -> float:
        """An event stamped ``stamp`` (the switch's clock) is read at ``now`` (ours). Returns
        its lag in seconds (never negative)."""
        delay = now - stamp
        self._keep_floor(delay, now)
        lag = max(delay - self._floor, 0.0)
        recent = self._recent
        while recent and recent[-1][1] <= lag:  # a worse or equal, later lag supersedes them
            recent.pop()
        recent.append((now, lag))
        self.last_s = lag
        self.max_s = max(self.max_s, lag)
        self._worst = max(self._worst, lag)
        self.samples += 1
        return lag

    def take_worst(self) -> float:
        """The worst lag since the last call (the floor's summary line, once a minute)."""
        worst, self._worst = self._worst, 0.0
        return worst

    def lag_s(self, now: float) -> float:
        """The worst lag of the events read in the last ``hold_s`` seconds (0 without any)."""
        recent = self._recent
        while recent and now - recent[0][0] > self.hold_s:
            recent.popleft()
        return recent[0][1] if recent else 0.0

    def _keep_floor(self, delay: float, now: float) -> None:
        buckets = self._buckets
        if buckets and now - buckets[-1][0] < self.floor_bucket_s and now >= buckets[-1][0]:
            start, least = buckets[-1]
            if delay < least:
                buckets[-1] = (start, delay)
                self._floor = min(self._floor, delay)
            return
        buckets.append((now, delay))
        while buckets and now - buckets[0][0] > self.floor_window_s:
            buckets.popleft()
        self._floor = min(least for _, least in buckets)
