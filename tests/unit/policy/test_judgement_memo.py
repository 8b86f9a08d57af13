"""The engine's per-number judgement memo never changes a verdict.

Random sequences of list changes (holdings and delegations added and removed), clock moves
(across midnight, onto delegation bounds, backwards, across the spring DST change) and requests
are played against one `JudgementMemo`; after every request the memoised verdict must equal a
fresh evaluation of the same request.
"""

from __future__ import annotations

import gc
from typing import Any

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from proxy.policy.engine import Firing, JudgedNumber, JudgementMemo, evaluate
from proxy.policy.identity import identity_from_values
from proxy.policy.numbers import Delegation, ListSnapshot, NumberRange
from tests.unit.policy.memo_ops import (
    MIDNIGHTS,
    SOURCES,
    World,
    caller_from_value,
    memo_data,
    memo_ops,
    uri,
)
from tests.unit.policy.policy_fixtures import FakeAllocation


@hsettings(max_examples=300, deadline=None)
@given(memo_ops(), st.integers(1, 6))
def test_memoised_engine_gives_the_fresh_verdict(ops: list[tuple[Any, ...]], size: int) -> None:
    world = World()
    memo = JudgementMemo(maxsize=size)  # small: evictions happen too
    for op in ops:
        if world.apply(op):
            continue
        data, now = world.data(), world.now
        if op[0] == "call":
            _, which, caller, pai, diverting, marker, method, privacy, to = op
            policy = SOURCES[which]
            identity = identity_from_values(
                method=method,
                from_value=caller_from_value(caller),
                pai=[uri(p) for p in pai],
                privacy=privacy,
                diversion=[f"<{uri(diverting)}>;reason=unconditional"] if diverting else [],
                to_value=to,
                marker_value=marker,
                source=policy,
            )
            remembered = evaluate(identity, policy, data, now, memo)
            fresh = evaluate(identity, policy, data, now)
            assert remembered == fresh, (identity, now)
            assert len(memo) <= size


def test_repeat_caller_is_served_from_memory_and_lru_evicts_the_oldest() -> None:
    snap = ListSnapshot()
    for i in (1, 2, 3):
        snap.add_holding(i, "callco", NumberRange.parse(f"+3316200000{i}"))
    data = memo_data(snap, None)
    memo = JudgementMemo(maxsize=2)
    policy = SOURCES[0]
    now = MIDNIGHTS[1] + 43200.0

    def call(n: int) -> None:
        identity = identity_from_values(
            method="INVITE", from_value=uri(f"+3316200000{n}"), source=policy
        )
        assert evaluate(identity, policy, data, now, memo).outcome == "allow"

    call(1)
    call(2)
    call(1)  # hit: 1 is now the most recent
    assert (memo.hits, memo.misses) == (1, 2)
    call(3)  # evicts 2, the least recently used
    call(1)
    assert memo.hits == 2
    call(2)
    assert memo.misses == 4
    # A list change empties the memo: the removed holding is seen at once.
    snap.remove_holding(1, NumberRange.parse("+33162000001"))
    identity = identity_from_values(method="INVITE", from_value=uri("+33162000001"), source=policy)
    assert evaluate(identity, policy, data, now, memo).rules_fired == ["not-on-list"]


def test_a_delegation_ending_mid_day_is_seen() -> None:
    snap = ListSnapshot()
    noon = MIDNIGHTS[1] + 43200.0
    rng = NumberRange.parse("+33162000001")
    snap.add_delegation(Delegation(1, "acme", "callco", rng, noon - 86400.0 * 3, noon))
    data = memo_data(snap, None)
    memo = JudgementMemo()
    policy = SOURCES[0]
    identity = identity_from_values(method="INVITE", from_value=uri("+33162000001"), source=policy)
    assert evaluate(identity, policy, data, noon - 1.0, memo).outcome == "allow"
    assert evaluate(identity, policy, data, noon - 0.5, memo).outcome == "allow"
    assert memo.hits == 1
    assert evaluate(identity, policy, data, noon, memo).rules_fired == ["not-on-list"]


def test_the_day_turning_and_new_data_empty_the_memo() -> None:
    """A plan row in force from 17 Mar and new allocation data are seen at once."""
    snap = ListSnapshot()
    data = memo_data(snap, None)
    memo = JudgementMemo()
    policy = SOURCES[0]
    identity = identity_from_values(method="INVITE", from_value=uri("+33144000000"), source=policy)
    before, after = MIDNIGHTS[1] + 43200.0, MIDNIGHTS[2] + 60.0
    for now in (before, after, before):
        assert evaluate(identity, policy, data, now, memo) == evaluate(identity, policy, data, now)
    assert evaluate(identity, policy, data, after, memo).rules_fired == ["plan-deny", "not-on-list"]
    swapped = memo_data(snap, FakeAllocation(frozen=frozenset({"+33144000000"})))
    verdict = evaluate(identity, policy, swapped, after, memo)
    assert verdict == evaluate(identity, policy, swapped, after)
    assert "unallocated-number" in verdict.rules_fired


def test_memo_entries_stay_out_of_the_garbage_collector() -> None:
    """A full memo adds no object to the cyclic collector's walk: keys and entries are plain
    tuples of atoms, untracked once a collection has seen them (a NamedTuple, a dataclass or
    a Delegation in an entry would keep it tracked: the cause of the ~100 ms full collections
    of the first memo, reverted in c2fba5f)."""
    snap = ListSnapshot()
    noon = MIDNIGHTS[1] + 43200.0
    snap.add_holding(1, "callco", NumberRange.parse("+33162000000-+33162000009"))
    snap.add_delegation(
        Delegation(2, "acme", "callco", NumberRange.parse("+33270000001"), noon - 864000.0, noon)
    )
    data = memo_data(snap, FakeAllocation(frozen=frozenset({"+33145000001"})))
    memo = JudgementMemo()
    policy = SOURCES[0]
    callers = [
        *(f"+3316200000{i}" for i in range(10)),  # own
        "+33270000001",  # delegated
        "+33145000001",  # frozen block, not on the list
        "+33612345678",  # mobile
        "+4930123456",  # foreign
    ]
    for caller in callers:
        identity = identity_from_values(
            method="INVITE", from_value=uri(caller), pai=[uri("+33162000001")], source=policy
        )
        evaluate(identity, policy, data, noon - 60.0, memo)
    assert len(memo) == len(callers) + 1  # and the PAI number, in its own role
    # A delegation named by its id (layout: engine._Memoised), and firings.
    assert any(entry[4] not in (0, 1) for _, entry in memo.entries())
    assert any(len(entry) > 10 + entry[9] for _, entry in memo.entries())
    gc.collect()
    for key, entry in memo.entries():
        assert not gc.is_tracked(key), key
        assert not gc.is_tracked(entry), entry
    # Hits rebuild the same judgement from the untracked entry.
    for caller in callers:
        identity = identity_from_values(
            method="INVITE", from_value=uri(caller), pai=[uri("+33162000001")], source=policy
        )
        remembered = evaluate(identity, policy, data, noon - 30.0, memo)
        assert remembered == evaluate(identity, policy, data, noon - 30.0)
        assert [type(f) for f in remembered.firings] == [Firing] * len(remembered.firings)
        assert all(type(j) is JudgedNumber for j in remembered.judged)
    assert memo.hits >= len(callers)
