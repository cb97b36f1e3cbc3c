"""A token bucket in the gateway's units (SMS parts per second), with time passed in (pure).

The dispatcher asks ``wait(now, cost)`` before each submit and sleeps that long; a message of
three parts costs three tokens, because the SMSC's throughput counts parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Throttle:
    rate: float  # tokens per second
    burst: float = 1.0  # tokens that may go at once after an idle spell
    _tokens: float = field(default=0.0, init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("rate and burst must be positive")
        self._tokens = self.burst

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds to wait before ``cost`` tokens may go; taking them is ``take``."""
        self._refill(now)
        missing = min(cost, self.burst) - self._tokens  # a long message waits for a full bucket
        return max(0.0, missing / self.rate)

    def take(self, now: float, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens at ``now`` (the balance may go negative for a long message)."""
        self._refill(now)
        self._tokens -= cost


__all__ = ["Throttle"]
