"""The adaptive limit on requests to one AWS client: concurrency (AIMD) and a learned rate.

A throttled service usually meters requests with a token bucket: a burst, then a steady rate.
Limiting concurrency alone cannot settle on a rate (with 80 ms calls, 4 in flight are 50 a
second and 3 are 37), so it overshoots and retries into 429s. :class:`AdaptiveLimiter` does both:

* **concurrency**, AIMD like TCP's congestion window: it starts small and grows by a third per
  round trip until the first throttle (slow start: a service's burst is spent before its first
  429 comes back, so what is in flight then is throttled), which cuts it to a quarter; after
  that a throttle halves the limit, once per "generation" of requests (a throttle of a request
  sent before the last decrease is ignored, so 20 concurrent 429s halve it once), and every
  ``limit`` successes in a row raise it by one;
* **rate**, learned from the throttles themselves: a throttled request found the service's
  bucket empty, so between two throttled requests sent close together every request that
  succeeded was paid for by the refill alone. Successes between consecutive throttles, over the
  time between them, summed over the recent throttles, is the service's rate (to about one
  request over that time). Once learned, requests are paced a little under it (the concurrency
  limit goes back to its ceiling: the pace is what adapts now), and the pace creeps up slowly
  between throttles so that a raised quota is found again.

The retries of :func:`~crossmodal_search._aws.call_aws` take a slot like any request, so they
share the same pace: a retry never adds a burst on top of it.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from crossmodal_search.errors import ConfigurationError

__all__ = ["AdaptiveLimiter", "Permit"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Permit:
    """One slot of an :class:`AdaptiveLimiter`.

    Attributes:
        generation: the limit's generation when the slot was taken.
        sent: the limiter's clock when the request was let go (after any pacing wait).
    """

    generation: int
    sent: float = 0.0


class AdaptiveLimiter:
    """Thread-safe limit on one client's requests: AIMD concurrency and a learned pace.

    Args:
        max_limit: the ceiling of requests in flight (the caller's ``max_concurrency``).
        initial_limit: where the concurrency limit starts; by default :attr:`SLOW_START` (at
            most ``max_limit``), growing by a third per round trip until the first throttle.
        decrease_factor: the concurrency limit is multiplied by this on throttling (0.5).
        clock: monotonic seconds (tests pass a manual clock).
        sleep: waits for the pace (tests pass the manual clock's sleep).

    Example:
        >>> limiter = AdaptiveLimiter(32, initial_limit=32)
        >>> with limiter.slot() as permit:
        ...     limiter.on_throttle(permit)
        >>> limiter.limit
        16
    """

    #: Requests are paced at this fraction of the learned rate: the service's bucket then
    #: refills a little faster than it is drained, which absorbs the jitter of the send times.
    PACE_MARGIN = 0.98
    #: Between throttles the pace grows by this fraction per second (probing a raised quota).
    PROBE_PER_SECOND = 0.002
    #: Two throttles at most this far apart (seconds) bound a stretch of time during which the
    #: service's bucket stayed empty; over a longer gap it may have filled up and overflowed.
    MAX_GAP = 1.0
    #: The rate is learned once the throttled stretches add up to this many seconds: over a
    #: shorter time, one request more or less is a large error.
    MIN_EVIDENCE = 0.3
    #: Throttles and sends older than this (seconds) are forgotten: the quota may change.
    HORIZON = 30.0
    #: Where the concurrency limit starts by default (slow start).
    SLOW_START = 4
    #: In slow start the limit grows by one every this many successes, a third per round trip:
    #: doubling (TCP's slow start) puts twice as many requests in flight when a service's burst
    #: runs out, and they are all throttled before the first throttle comes back.
    SLOW_START_STEP = 3

    def __init__(
        self,
        max_limit: int,
        *,
        initial_limit: int | None = None,
        decrease_factor: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(max_limit, bool) or not isinstance(max_limit, int) or max_limit < 1:
            raise ConfigurationError(f"max_limit must be an int >= 1, got {max_limit!r}")
        start = min(max_limit, self.SLOW_START) if initial_limit is None else initial_limit
        if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= max_limit:
            raise ConfigurationError(f"initial_limit must be in [1, {max_limit}], got {start!r}")
        if not 0 < decrease_factor < 1:
            raise ConfigurationError(f"decrease_factor must be in (0, 1), got {decrease_factor!r}")
        self._max = max_limit
        self._limit = start
        self._factor = decrease_factor
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._generation = 0
        self._successes = 0
        self._throttles = 0
        # Slow start (only from the default start) lasts until the first throttle.
        self._slow_start = initial_limit is None
        self._cond = threading.Condition()
        # Pacing: requests per second once learned (None: not paced), when it was learned, and
        # the earliest time the next request may go.
        self._rate: float | None = None
        self._rate_at = 0.0
        self._next_send = 0.0
        # Send times (within HORIZON) of every request let go, in order, and of the throttled
        # ones, sorted.
        self._sent: deque[float] = deque()
        self._throttled: list[float] = []

    @property
    def max_limit(self) -> int:
        """The ceiling of :attr:`limit`."""
        return self._max

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        with self._cond:
            return self._limit

    @property
    def rate(self) -> float | None:
        """Requests per second the limiter paces at now; None until a rate has been learned."""
        with self._cond:
            return self._pace(self._clock())

    @property
    def in_flight(self) -> int:
        """Permits currently held."""
        with self._cond:
            return self._in_flight

    @property
    def throttles(self) -> int:
        """Throttling errors reported (decreases or not)."""
        with self._cond:
            return self._throttles

    def _pace(self, now: float) -> float | None:
        if self._rate is None:
            return None
        return self._rate * (1.0 + self.PROBE_PER_SECOND * max(0.0, now - self._rate_at))

    def acquire(self) -> Permit:
        """Block until fewer than :attr:`limit` permits are held and the pace allows, take one."""
        with self._cond:
            while self._in_flight >= self._limit:
                self._cond.wait()
            self._in_flight += 1
            now = self._clock()
            pace = self._pace(now)
            send = now if pace is None else max(now, self._next_send)
            if pace is not None:
                self._next_send = send + 1.0 / pace
            self._sent.append(send)
            while self._sent[0] < send - self.HORIZON:
                self._sent.popleft()
            generation = self._generation
        if send > now:  # the reserved send time: wait for it without the lock
            self._sleep(send - now)
        return Permit(generation, send)

    def release(self, permit: Permit) -> None:
        """Give back a permit from :meth:`acquire`."""
        del permit  # the generation only matters for on_throttle
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    @contextmanager
    def slot(self) -> Iterator[Permit]:
        """``with limiter.slot() as permit:`` acquire and always release."""
        permit = self.acquire()
        try:
            yield permit
        finally:
            self.release(permit)

    def on_throttle(self, permit: Permit) -> None:
        """Learn the rate, or slow the pace, or (nothing learned yet) halve the concurrency."""
        with self._cond:
            self._throttles += 1
            self._successes = 0
            # Leaving slow start: the burst paid for the last round trips, so the limit the
            # refill supports is well under half of it.
            factor = self._factor**2 if self._slow_start else self._factor
            self._slow_start = False
            now = self._clock()
            learned = self._learn(permit.sent)
            if self._rate is not None:
                if permit.sent < self._rate_at:  # sent before the pace last changed
                    return
                # Above the service's rate (a probe too far, or a lower quota): a little slower,
                # or down to the rate the throttles since the last change teach.
                pace = self._pace(now) or self._rate
                if learned is not None:
                    pace = min(pace, learned)
                self._set_pace(pace * self.PACE_MARGIN, now, learned)
            elif learned is not None:  # the pace limits from now on, not the concurrency
                self._set_pace(learned * self.PACE_MARGIN, now, learned)
                self._limit = self._max
                self._cond.notify_all()
            elif permit.generation == self._generation:
                new = max(1, int(self._limit * factor))
                if new != self._limit:
                    logger.info("throttled: concurrency limit %d -> %d", self._limit, new)
                self._limit = new
                self._generation += 1

    def _set_pace(self, pace: float, now: float, learned: float | None) -> None:
        if self._rate is None or abs(pace - self._rate) > 0.02 * self._rate:
            how = f"learned {learned:.1f}" if learned is not None else "probed too far"
            logger.info("throttled: pacing at %.1f requests/s (%s)", pace, how)
        self._rate, self._rate_at = pace, now

    def _learn(self, sent: float) -> float | None:
        """Record a throttled request's send time (under the lock); the service's rate as the
        throttles since the pace last changed show it, if they are enough to tell."""
        bisect.insort(self._throttled, sent)
        horizon = max(self._throttled[-1], sent) - self.HORIZON
        while self._throttled[0] < horizon:
            self._throttled.pop(0)
        while self._sent and self._sent[0] < horizon:
            self._sent.popleft()
        since = self._rate_at if self._rate is not None else horizon
        # Each short gap between consecutive throttles: the bucket was empty at both ends, so
        # the requests let go inside it (none throttled: the throttles are consecutive) drained
        # exactly its refill. Requests still in flight count as successes until they report.
        evidence, paid = 0.0, 0
        sent_times = list(self._sent)
        recent = self._throttled[bisect.bisect_left(self._throttled, since) :]
        for a, b in itertools.pairwise(recent):
            if 0 < b - a <= self.MAX_GAP:
                evidence += b - a
                paid += max(
                    0, bisect.bisect_left(sent_times, b) - bisect.bisect_right(sent_times, a)
                )
        if evidence < self.MIN_EVIDENCE:
            return None
        return max(paid, 1) / evidence

    def on_success(self) -> None:
        """Additive increase: +1 after ``limit`` successes in a row (in slow start after
        :attr:`SLOW_START_STEP`), up to ``max_limit``."""
        with self._cond:
            if self._limit >= self._max:
                return
            self._successes += 1
            if self._successes >= (self.SLOW_START_STEP if self._slow_start else self._limit):
                self._successes = 0
                self._limit += 1
                self._cond.notify()

    def __repr__(self) -> str:
        return f"AdaptiveLimiter(limit={self.limit}, max_limit={self._max}, rate={self.rate})"
