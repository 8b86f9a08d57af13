"""The machinery shared by the four transaction state machines (RFC 3261 Figs. 5-8).

Each machine is a table keyed on (state, event) whose value is the next state and a tuple of
effects, after h2's `_transitions[(StreamState, StreamInputs)]`. A missing key is a typed
`InvalidTransition`: the table *is* the specification, and anything it does not list is
either impossible (a bug in the caller) or deliberately refused. Network input that may
legitimately arrive in any state (late responses, retransmitted requests) has explicit
"ignore" entries, so a peer can never make the proxy raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from proxy.transaction.timers import IdentityEnum, TimerName


class TxEvent(IdentityEnum):
    """Inputs to a transaction: messages from the network or the TU, and timer expiries."""

    TU_REQUEST = "tu_request"  # the TU hands the client transaction its request to send
    PROVISIONAL = "1xx"  # a 1xx (client: received; server: from the TU)
    SUCCESS = "2xx"  # a 2xx final
    FAILURE = "3xx-6xx"  # a 300-699 final
    REQUEST = "request"  # server: the request was retransmitted
    ACK = "ack"  # server: an ACK matched the INVITE transaction (RFC 3261 §17.2.3)
    CANCEL_SENT = "cancel_sent"  # client: the TU sent a CANCEL for this INVITE (§9.1)
    TRANSPORT_ERROR = "transport_error"  # the transport layer reported a failure (§17.1.4)
    ABANDONED = "abandoned"  # server: the TU will never answer (RFC 4320 §4.1)
    TIMER_A = "timer_a"
    TIMER_B = "timer_b"
    TIMER_C = "timer_c"
    TIMER_D = "timer_d"
    TIMER_E = "timer_e"
    TIMER_F = "timer_f"
    TIMER_G = "timer_g"
    TIMER_H = "timer_h"
    TIMER_I = "timer_i"
    TIMER_J = "timer_j"
    TIMER_K = "timer_k"
    TIMER_L = "timer_l"
    TIMER_M = "timer_m"


TIMER_EVENTS: Mapping[TimerName, TxEvent] = {
    name: TxEvent["TIMER_" + name.value] for name in TimerName
}


def response_event(status: int) -> TxEvent:
    """The table event for a response status code."""
    if status < 200:
        return TxEvent.PROVISIONAL
    if status < 300:
        return TxEvent.SUCCESS
    return TxEvent.FAILURE


class Do(IdentityEnum):
    """Effects that are not timer operations."""

    SEND_REQUEST = "send_request"  # (re)transmit the request (client)
    SEND_ACK = "send_ack"  # hop-by-hop ACK for a non-2xx final (§17.1.1.3)
    DELIVER = "deliver"  # pass the response up to the TU
    REPORT_TIMEOUT = "report_timeout"  # the TU acts as on a 408 (§16.7 step 1, §16.8)
    REPORT_TIMER_C = "report_timer_c"  # the TU must CANCEL the branch (§16.8)
    REPORT_TRANSPORT_ERROR = "report_transport_error"  # the TU acts as on a 503 (§16.9)
    SEND_RESPONSE = "send_response"  # send the TU's response and remember it (server)
    FORWARD_RESPONSE = "forward_response"  # send the TU's response, do not remember it
    RESEND_RESPONSE = "resend_response"  # retransmit the remembered response (server)
    DELIVER_ACK = "deliver_ack"  # the ACK belongs to the TU (RFC 6026 §8.7)
    REPORT_ACK_TIMEOUT = "report_ack_timeout"  # Timer H fired (§17.2.1)


@dataclass(frozen=True, slots=True)
class Arm:
    """Arm a timer with its initial duration (retransmit timers only on unreliable transports)."""

    timer: TimerName


@dataclass(frozen=True, slots=True)
class Disarm:
    """Disarm a timer."""

    timer: TimerName


@dataclass(frozen=True, slots=True)
class Backoff:
    """Re-arm a retransmit timer with twice its last interval, capped at T2 when `cap` is set
    (Timer A is not capped, §17.1.1.2; E and G are, §17.1.2.2, §17.2.1)."""

    timer: TimerName
    cap: bool


@dataclass(frozen=True, slots=True)
class ArmT2:
    """Re-arm a retransmit timer with T2 (Timer E in Proceeding, §17.1.2.2)."""

    timer: TimerName


Effect = Do | Arm | Disarm | Backoff | ArmT2

S = TypeVar("S", bound=Enum)


@dataclass(frozen=True, slots=True)
class Transition(Generic[S]):
    """One table entry: the next state and the effects, run in order."""

    next_state: S
    effects: tuple[Effect, ...] = ()


class InvalidTransition(Exception):
    """An event that the transaction's table does not allow in its current state."""

    def __init__(self, machine: str, state: Enum, event: TxEvent) -> None:
        """Name the machine, state and event."""
        super().__init__(f"{machine}: no transition for {event.name} in state {state.name}")
        self.machine = machine
        self.state = state
        self.event = event


Table = Mapping[tuple[S, TxEvent], Transition[S]]


def lookup(machine: str, table: Table[S], state: S, event: TxEvent) -> Transition[S]:
    """The transition for (state, event), or InvalidTransition."""
    try:
        return table[(state, event)]
    except KeyError:
        raise InvalidTransition(machine, state, event) from None
