"""Overload detection from the busy intervals the shell reports (nothing here reads a clock).

The shell times each event it feeds the core (the core's work plus executing its actions)
and hands the interval in. When the next event starts within `gap` of the previous one's
end, the worker did not go idle in between: it is working through messages already queued
in its socket. A stretch of such back-to-back events lasting `period` means a standing
queue (arrivals outpace the worker), CoDel's signal: past that point every extra INVITE
only delays the others until their retransmissions (T1, 500 ms) snowball, so the core
answers new INVITEs 503 + Retry-After instead (RFC 3261 §21.5.4). The first idle gap (the
queue drained) ends the stretch. A second signal, INVITE retransmissions, is below.

A worker at 80 % load idles between bursts many times a second, so it never trips; being
preempted by another process inside an event only lengthens that event. On the SIPp bench
0.2 s shed 48 calls at 400 calls/s (a GC pause), 0.5 s shed 15 % of the calls at 600 calls/s
and 1 s still shed 40 % at 500 calls/s offered with not one retransmission: near capacity
uvloop batches datagrams, so idle gaps vanish while the worker is still keeping up. The
default `period` is therefore 3 s (`routing.overload_period`), and a worker that really falls
behind is caught by the retransmission signal within about T1: at 800 calls/s offered,
shedding kept SIPp offering 690 calls/s with no retransmission, where the proxy without it
collapsed to 163 calls/s offered with 944 retransmissions.
"""

from __future__ import annotations

OVERLOAD_GAP = 0.0005
OVERLOAD_PERIOD = 3.0
# The second signal: INVITE retransmissions reaching a transaction we already answered 100
# (the upstream waited T1 without hearing from us) in a window of RETRANS_WINDOW seconds.
RETRANS_WINDOW = 1.0
RETRANS_MIN = 10  # at least this many in the window ...
RETRANS_SHARE = 0.05  # ... and at least this share of the new INVITEs of the window


class LoadGauge:
    """Tracks the current back-to-back stretch of events and the INVITE retransmissions
    we caused, and the overload flag they drive.

    The stretch catches a standing queue early; the retransmissions catch a worker that is
    already late by T1 (its queue broken up by preemption, so no long stretch shows),
    which is when a proxy without shedding collapses. A bad retransmission window keeps
    the flag for the next window.
    """

    __slots__ = (
        "_end",
        "_invites",
        "_retrans",
        "_retrans_hot",
        "_start",
        "_stretched",
        "_window",
        "gap",
        "overloaded",
        "period",
    )

    def __init__(self, gap: float = OVERLOAD_GAP, period: float = OVERLOAD_PERIOD) -> None:
        """Overloaded once events run back to back (gaps < `gap`) for `period` seconds."""
        self.gap = gap
        self.period = period
        self.overloaded = False
        self._start = 0.0  # when the current stretch began
        self._end = float("-inf")  # when the last event ended
        self._stretched = False
        self._window = float("-inf")  # when the current retransmission window began
        self._invites = 0
        self._retrans = 0
        self._retrans_hot = False

    @property
    def stretch(self) -> float:
        """How long the current back-to-back stretch has lasted (seconds)."""
        return max(0.0, self._end - self._start)

    def record(self, start: float, end: float) -> bool | None:
        """Account one event handled over [start, end]; return the new flag when it changed."""
        if start - self._end >= self.gap:
            self._start = start  # the worker was idle: a new stretch begins
        self._end = end
        self._stretched = end - self._start >= self.period
        return self._update()

    def note_invite(self, now: float, retransmission: bool) -> bool | None:
        """Count a new INVITE, or a retransmission of one still unanswered (final-wise);
        return the new flag when it changed."""
        if now - self._window >= RETRANS_WINDOW:
            self._retrans_hot = (
                self._retrans >= RETRANS_MIN and self._retrans >= RETRANS_SHARE * self._invites
            )
            self._window = now
            self._invites = 0
            self._retrans = 0
        if retransmission:
            self._retrans += 1
        else:
            self._invites += 1
        return self._update()

    def _update(self) -> bool | None:
        flag = self._stretched or self._retrans_hot
        if flag == self.overloaded:
            return None
        self.overloaded = flag
        return flag
