"""The table-driven engine common to client and server transactions."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar

from proxy.transaction.fsm import (
    TIMER_EVENTS,
    Arm,
    ArmT2,
    Backoff,
    Disarm,
    Do,
    InvalidTransition,
    Table,
    TxEvent,
)
from proxy.transaction.outputs import Destination, TransactionOutput
from proxy.transaction.timers import DeadlineHeap, TimerName, TimerSettings

# Timers that only retransmit: they are never armed over reliable transports (RFC 3261
# §17.1.1.2, §17.1.2.2, §17.2.1: "only if unreliable transport").
RETRANSMIT_TIMERS = frozenset({TimerName.A, TimerName.E, TimerName.G})

TransactionKey = tuple[str, ...]


class Transaction:
    """State, timers and destination of one transaction; subclasses supply the table and
    the meaning of the `Do` effects."""

    __slots__ = (
        "_durations",
        "_forget",
        "_heap",
        "_intervals",
        "_reliable",
        "_settings",
        "armed",
        "context",
        "created",
        "destination",
        "key",
        "state",
    )

    MACHINE: ClassVar[str]
    TABLE: ClassVar[Table[Any]]
    INITIAL: ClassVar[Enum]
    TERMINATED: ClassVar[Enum]

    def __init__(
        self,
        key: TransactionKey,
        destination: Destination,
        *,
        now: float,
        heap: DeadlineHeap[TimerName],
        settings: TimerSettings,
        forget: Callable[[TransactionKey], object],
    ) -> None:
        """Create the transaction in its initial state; `forget` is called on termination."""
        self.key = key
        self.destination = destination
        self.state: Enum = self.INITIAL
        self.armed: dict[TimerName, int] = {}
        self.created = now
        self.context: object = None  # the TU's own record (the core's response context)
        self._heap = heap
        self._settings = settings
        self._forget = forget
        self._intervals: dict[TimerName, float] = {}
        self._reliable = destination.reliable
        self._durations = settings.durations(self._reliable)

    @property
    def terminated(self) -> bool:
        """True once the transaction reached its Terminated state."""
        return self.state is self.TERMINATED

    def timer_fired(self, timer: TimerName, now: float) -> list[TransactionOutput]:
        """Feed the expiry of `timer` (called by the manager's deadline heap)."""
        out: list[TransactionOutput] = []
        self._fire(TIMER_EVENTS[timer], now, None, out)
        return out

    def transport_error(self, now: float) -> list[TransactionOutput]:
        """The transport layer could not deliver a message (RFC 3261 §17.1.4, §17.2.4)."""
        out: list[TransactionOutput] = []
        self._fire(TxEvent.TRANSPORT_ERROR, now, None, out)
        return out

    def _fire(self, event: TxEvent, now: float, msg: object, out: list[TransactionOutput]) -> None:
        """Run the table entry for `event`, then any timer that was armed with duration 0.

        The common effects (Do, Arm, Disarm) are dispatched here by exact type, without a
        method call each; the back-off ones go through `_timer_effect`."""
        pending: list[TxEvent] = []
        table = self.TABLE
        armed = self.armed
        while True:
            transition = table.get((self.state, event))
            if transition is None:
                raise InvalidTransition(self.MACHINE, self.state, event)
            self.state = transition.next_state
            for effect in transition.effects:
                kind = type(effect)
                if kind is Disarm:
                    armed.pop(effect.timer, None)  # type: ignore[union-attr]
                elif kind is Arm:
                    timer = effect.timer  # type: ignore[union-attr]
                    if timer in RETRANSMIT_TIMERS:
                        self._timer_effect(effect, now, pending)  # type: ignore[arg-type]
                        continue
                    duration = self._durations[timer]
                    if duration <= 0:
                        pending.append(TIMER_EVENTS[timer])
                    else:
                        self._heap.arm(self, timer, now + duration)
                elif kind is Backoff or kind is ArmT2:
                    self._timer_effect(effect, now, pending)  # type: ignore[arg-type]
                else:
                    self._do(effect, msg, out)  # type: ignore[arg-type]
            if self.state is self.TERMINATED:
                armed.clear()
                self._forget(self.key)
                return
            if not pending:
                return
            # Table 4: D, I, J and K are zero over reliable transports, i.e. the state is
            # left at once; the follow-up event carries no message.
            event = pending.pop(0)
            msg = None

    def _timer_effect(
        self, effect: Arm | Disarm | Backoff | ArmT2, now: float, pending: list[TxEvent]
    ) -> None:
        timer = effect.timer
        if isinstance(effect, Disarm):
            self.armed.pop(timer, None)
            return
        if self._reliable and timer in RETRANSMIT_TIMERS:
            return
        if isinstance(effect, Arm):
            duration = self._durations[timer]
            if duration <= 0:
                pending.append(TIMER_EVENTS[timer])
                return
        elif isinstance(effect, Backoff):
            duration = 2 * self._intervals.get(timer, self._settings.t1)
            if effect.cap:
                duration = min(duration, self._settings.t2)
        else:  # ArmT2
            duration = self._settings.t2
        self._intervals[timer] = duration
        self._heap.arm(self, timer, now + duration)

    def _do(self, effect: Do, msg: object, out: list[TransactionOutput]) -> None:
        raise NotImplementedError  # pragma: no cover - every subclass implements it
