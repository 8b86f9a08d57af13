"""Every (state, event) pair of the four transaction tables yields a valid state of that
machine or a typed InvalidTransition, never anything else (h2's test_state_machines)."""

from __future__ import annotations

from enum import Enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.transaction import (
    ClientInviteState,
    ClientNonInviteState,
    ClientTransaction,
    Destination,
    InvalidTransition,
    ServerInviteState,
    ServerNonInviteState,
    ServerTransaction,
    TimerName,
    TimerSettings,
    TransactionManager,
    TxEvent,
)
from proxy.transaction.base import Transaction
from proxy.transaction.fsm import TIMER_EVENTS
from tests.unit.transaction.tx_helpers import BRANCH, request, request_bytes, response

TIMER_OF_EVENT = {event: name for name, event in TIMER_EVENTS.items()}
MACHINES: dict[str, type[Enum]] = {
    "INVITE client": ClientInviteState,
    "non-INVITE client": ClientNonInviteState,
    "INVITE server": ServerInviteState,
    "non-INVITE server": ServerNonInviteState,
}
STATUS_OF = {TxEvent.PROVISIONAL: 180, TxEvent.SUCCESS: 200, TxEvent.FAILURE: 486}


def _make(machine: str, reliable: bool) -> Transaction:
    destination = Destination("tcp" if reliable else "udp", ("198.51.100.10", 5060))
    manager = TransactionManager(TimerSettings())
    method = "INVITE" if machine.startswith("INVITE") else "OPTIONS"
    if machine.endswith("client"):
        tx, _ = manager.create_client(
            method, request_bytes(method), BRANCH, destination, 0.0, request(method)
        )
        return tx
    return manager.create_server(request(method), destination, 0.0)


def _feed(tx: Transaction, event: TxEvent, now: float) -> None:
    """Drive `event` through the transaction's public entry points."""
    if event in TIMER_OF_EVENT:
        tx.timer_fired(TIMER_OF_EVENT[event], now)
    elif event is TxEvent.TRANSPORT_ERROR:
        tx.transport_error(now)
    elif isinstance(tx, ClientTransaction):
        if event in STATUS_OF:
            method = "INVITE" if tx.method == "INVITE" else "OPTIONS"
            tx.receive_response(response(STATUS_OF[event], method=method), now)
        elif event is TxEvent.CANCEL_SENT:
            tx.cancel_sent(now)
        elif event is TxEvent.TU_REQUEST:
            tx.start(now)
        else:
            raise InvalidTransition(tx.MACHINE, tx.state, event)
    else:
        assert isinstance(tx, ServerTransaction)
        if event in STATUS_OF:
            tx.respond(STATUS_OF[event], b"response", now)
        elif event is TxEvent.REQUEST:
            tx.receive_request(request(tx.method), now)
        elif event is TxEvent.ACK:
            tx.receive_request(request("ACK"), now)
        elif event is TxEvent.ABANDONED:
            tx.abandon(now)
        else:
            raise InvalidTransition(tx.MACHINE, tx.state, event)


PAIRS = [
    (machine, state, event, reliable)
    for machine, states in MACHINES.items()
    for state in states
    for event in TxEvent
    for reliable in (False, True)
]


@pytest.mark.parametrize(("machine", "state", "event", "reliable"), PAIRS)
def test_every_state_event_pair(machine: str, state: Enum, event: TxEvent, reliable: bool) -> None:
    """Forcing each state and feeding each event gives a state of the machine or a typed
    error; a terminated transaction is always forgotten by the manager."""
    tx = _make(machine, reliable)
    tx.state = state
    try:
        _feed(tx, event, 1.0)
    except InvalidTransition as error:
        assert error.state is state or error.state in MACHINES[machine]
        return
    assert tx.state in MACHINES[machine]
    if tx.terminated:
        assert not tx.armed


@settings(max_examples=300, deadline=None)
@given(
    machine=st.sampled_from(sorted(MACHINES)),
    reliable=st.booleans(),
    steps=st.lists(st.tuples(st.sampled_from(list(TxEvent)), st.floats(0, 70)), max_size=12),
)
def test_random_event_sequences_stay_in_the_machine(
    machine: str, reliable: bool, steps: list[tuple[TxEvent, float]]
) -> None:
    """Any sequence of events, with time moving forward, keeps the transaction in a state
    of its own machine; refused events raise InvalidTransition and change nothing."""
    tx = _make(machine, reliable)
    now = 0.0
    for event, delay in steps:
        now += delay
        before = tx.state
        try:
            _feed(tx, event, now)
        except InvalidTransition:
            assert tx.state is before
        assert tx.state in MACHINES[machine]


def test_timer_names_all_have_events() -> None:
    """Every RFC timer name maps to a table event."""
    assert set(TIMER_EVENTS) == set(TimerName)
