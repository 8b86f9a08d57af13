"""Overload detection from the busy intervals the shell reports (nothing here reads a clock).

The shell times each event it feeds the core (the core's work plus executing its actions)
and hands the interval in. When the next event starts within `gap` of the previous one's
end, the worker did not go idle in between: it is working through messages already queued
in its socket. A stretch of such back-to-back events lasting `period` means a standing
queue (arrivals outpace the worker), CoDel's signal: past that point every extra INVITE
only delays the others until their retransmissions (T1, 500 ms) snowball, so the core
answers new INVITEs 503 + Retry-After instead (RFC 3261 §21.5.4). The first idle gap (the
queue drained) ends the stretch and the shedding.

A worker at 80 % load idles between bursts many times a second, so it never trips; being
preempted by another process inside an event only lengthens that event. `period` (1 s) is long
enough that the queue left by a hiccup drains before it trips: on the SIPp bench 0.2 s
shed 48 calls at 400 calls/s (a GC pause) and 0.5 s shed 15 % of the calls at 600 calls/s,
the worker's capacity, where the base proxy still completed all of them. It is short
enough that a sustained excess is shed before T1: at 800 calls/s offered, 0.5 s kept
SIPp offering 690 calls/s with no retransmission, where the proxy without it collapsed
to 163 calls/s offered with 944 retransmissions.
"""

from __future__ import annotations

OVERLOAD_GAP = 0.0005
OVERLOAD_PERIOD = 1.0


class LoadGauge:
    """Tracks the current back-to-back stretch of events and the overload flag it drives."""

    __slots__ = ("_end", "_start", "gap", "overloaded", "period")

    def __init__(self, gap: float = OVERLOAD_GAP, period: float = OVERLOAD_PERIOD) -> None:
        """Overloaded once events run back to back (gaps < `gap`) for `period` seconds."""
        self.gap = gap
        self.period = period
        self.overloaded = False
        self._start = 0.0  # when the current stretch began
        self._end = float("-inf")  # when the last event ended

    @property
    def stretch(self) -> float:
        """How long the current back-to-back stretch has lasted (seconds)."""
        return max(0.0, self._end - self._start)

    def record(self, start: float, end: float) -> bool | None:
        """Account one event handled over [start, end]; return the new flag when it changed."""
        if start - self._end >= self.gap:
            self._start = start  # the worker was idle: a new stretch begins
        self._end = end
        flag = end - self._start >= self.period
        if flag == self.overloaded:
            return None
        self.overloaded = flag
        return flag
