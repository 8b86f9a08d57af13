"""The engine's per-number judgement memo never changes a verdict.

Random sequences of list changes (holdings and delegations added and removed), clock moves
(across midnight, onto delegation bounds, backwards, across the spring DST change) and requests
are played against one `JudgementMemo`; after every request the memoised verdict must equal a
fresh evaluation of the same request.
"""

from __future__ import annotations

import gc
from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from proxy.policy.engine import Firing, JudgedNumber, JudgementMemo, PolicyData, evaluate
from proxy.policy.identity import identity_from_values
from proxy.policy.numbers import Delegation, FlowHistory, ListSnapshot, NumberRange
from proxy.policy.plan import NumberingPlan
from tests.unit.policy.policy_fixtures import PARIS, FakeAllocation, settings, source

# Midnights (Paris) of a few days, including 29 Mar 2026 (a 23-hour day).
_MIDNIGHTS = [datetime(2026, 3, d, tzinfo=PARIS).timestamp() for d in (15, 16, 17, 28, 29, 30)]
# Times of interest: midnights and the seconds around them, mid-day points. Delegation bounds
# are drawn from the same set, so requests land exactly on, just before and just after them.
_TIMES = sorted(
    {m + off for m in _MIDNIGHTS for off in (-1.0, 0.0, 1.0, 3600.0, 43200.0, 43201.0, 86399.0)}
)

_NUMBERS = [
    "+33162000001",  # NPV
    "+33162000002",
    "+33144000000",  # geographic
    "+33145000001",
    "+33612345678",  # mobile
    "+33800123456",  # 08
    "+33899123456",  # 089
    "+33937000001",  # platform (cond cell: never memoised)
    "+33151000002",  # public interest (cond cell)
    "+4930123456",  # foreign
]
_RANGES = ["+33162000000-+33162000099", "+33145000000-+33145000009"]
_HOLDERS = ["callco", "other", "acme"]
_DESTINATIONS = ["sip:+33299000001@callee", "sip:+33299000002@callee", "sip:+33299000003@callee"]

# A row that comes into force mid-sequence (17 Mar), so the day really changes the answer:
# +33144… is geographic before, never presentable from that day.
_PLAN = NumberingPlan.load(
    None,
    [
        {
            "prefix": "+33144",
            "category": "test_withdrawn",
            "territory": "FR-metro",
            "automated": "deny",
            "interpersonal": "deny",
            "sources": ["S8"],
            "confidence": "C",
            "effective_from": "2026-03-17",
        }
    ],
)
# The flow exception trips at the second destination: a `cond` number's verdict then depends
# on history the memo must not freeze.
_SETTINGS = settings(flow_max_destinations=1)

_PRINCIPALS = ["acme", "gov", "zed"]

_SOURCES = [
    source(kind="automated"),
    source(kind="interpersonal"),
    source(kind="interpersonal", principals=["acme"]),
    source(
        kind="interpersonal",
        marker={"header": "X-Campaign", "values": {"acme": {"principal": "acme"}}},
    ),
    source(kind="automated", rules={"not-on-list": "monitor"}),
    source(customer=None),
    source(kind="automated", require_from_pai_equal=True),
]


def _uri(number: str) -> str:
    return f"sip:{number}@pbx"


_clock = st.one_of(
    st.tuples(st.just("at"), st.sampled_from(_TIMES)),
    st.tuples(st.just("step"), st.sampled_from([-3600.0, -1.0, 1.0, 60.0, 7200.0, 86400.0])),
)


@st.composite
def _ops(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A sequence of operations whose requests come back to a few callers and sources, so a
    remembered judgement is asked for again after lists, clock or history have moved."""
    callers = draw(st.lists(st.sampled_from(_NUMBERS), min_size=1, max_size=2, unique=True))
    sources = draw(st.lists(st.integers(0, len(_SOURCES) - 1), min_size=1, max_size=2))
    request = st.tuples(
        st.just("call"),
        st.sampled_from(sources),
        st.sampled_from([*callers, "anonymous", "Acme Ltd"]),
        st.lists(st.sampled_from(callers), max_size=2).map(tuple),
        st.sampled_from([None, None, None, callers[0]]),  # diverting number
        st.sampled_from([None, "acme"]),  # marker value
        st.sampled_from(["INVITE", "MESSAGE"]),
        st.sampled_from([None, None, "id"]),  # Privacy
        st.sampled_from(_DESTINATIONS),
    )
    holding = st.tuples(
        st.just("hold"), st.sampled_from(_HOLDERS), st.sampled_from([*callers, *_RANGES])
    )
    delegation = st.tuples(
        st.just("delegate"),
        st.sampled_from(_PRINCIPALS),
        st.sampled_from(["callco", "callco", "other"]),
        st.sampled_from([*callers, *_RANGES]),
        st.sampled_from(_TIMES),
        st.sampled_from(_TIMES),
    )
    removal = st.tuples(st.sampled_from(["unhold", "undelegate"]), st.integers(0, 50))
    swap = st.tuples(st.just("allocation"), st.booleans())
    flow = st.tuples(st.just("flow"), st.sampled_from(callers), st.sampled_from(_DESTINATIONS))
    # Requests weigh most; hypothesis favours short lists, hence the minimum length.
    op = st.one_of(*[request] * 4, *[_clock] * 3, flow, flow, holding, delegation, removal, swap)
    return draw(st.lists(op, min_size=30, max_size=80))


def _data(
    lists: ListSnapshot, allocation: FakeAllocation | None, history: FlowHistory | None = None
) -> PolicyData:
    return PolicyData(_SETTINGS, _PLAN, lists, allocation, history or FlowHistory(None))


@hsettings(max_examples=300, deadline=None)
@given(_ops(), st.integers(1, 6))
def test_memoised_engine_gives_the_fresh_verdict(ops: list[tuple[Any, ...]], size: int) -> None:
    snap = ListSnapshot()
    memo = JudgementMemo(maxsize=size)  # small: evictions happen too
    history = FlowHistory(None)
    data = _data(snap, None, history)
    now = _TIMES[len(_TIMES) // 2]
    holdings: list[tuple[int, NumberRange]] = []
    delegations: list[tuple[int, NumberRange]] = []
    row = 0
    for op in ops:
        kind = op[0]
        if kind == "hold":
            row += 1
            rng = NumberRange.parse(op[2])
            snap.add_holding(row, op[1], rng)
            holdings.append((row, rng))
        elif kind == "delegate":
            row += 1
            rng = NumberRange.parse(op[3])
            start, end = sorted((op[4], op[5]))
            snap.add_delegation(Delegation(row, op[1], op[2], rng, start, end))
            delegations.append((row, rng))
        elif kind == "unhold" and holdings:
            snap.remove_holding(*holdings.pop(op[1] % len(holdings)))
        elif kind == "undelegate" and delegations:
            snap.remove_delegation(*delegations.pop(op[1] % len(delegations)))
        elif kind == "at":
            now = op[1]
        elif kind == "step":
            now += op[1]
        elif kind == "allocation":
            # New allocation data arrives as a new PolicyData (step._replace_allocation).
            allocation = FakeAllocation(frozen=frozenset(_NUMBERS[::2])) if op[1] else None
            data = _data(snap, allocation, history)
        elif kind == "flow":
            history.observe(op[1], op[2].removeprefix("sip:").split("@")[0], now)
        elif kind == "call":
            _, which, caller, pai, diverting, marker, method, privacy, to = op
            policy = _SOURCES[which]
            from_value = (
                "<sip:anonymous@anonymous.invalid>"
                if caller == "anonymous"
                else f'"{caller}" <sip:{caller.replace(" ", "")}@pbx>'
                if caller == "Acme Ltd"
                else _uri(caller)
            )
            identity = identity_from_values(
                method=method,
                from_value=from_value,
                pai=[_uri(p) for p in pai],
                privacy=privacy,
                diversion=[f"<{_uri(diverting)}>;reason=unconditional"] if diverting else [],
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
    data = _data(snap, None)
    memo = JudgementMemo(maxsize=2)
    policy = _SOURCES[0]
    now = _MIDNIGHTS[1] + 43200.0

    def call(n: int) -> None:
        identity = identity_from_values(
            method="INVITE", from_value=_uri(f"+3316200000{n}"), source=policy
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
    identity = identity_from_values(method="INVITE", from_value=_uri("+33162000001"), source=policy)
    assert evaluate(identity, policy, data, now, memo).rules_fired == ["not-on-list"]


def test_a_delegation_ending_mid_day_is_seen() -> None:
    snap = ListSnapshot()
    noon = _MIDNIGHTS[1] + 43200.0
    rng = NumberRange.parse("+33162000001")
    snap.add_delegation(Delegation(1, "acme", "callco", rng, noon - 86400.0 * 3, noon))
    data = _data(snap, None)
    memo = JudgementMemo()
    policy = _SOURCES[0]
    identity = identity_from_values(method="INVITE", from_value=_uri("+33162000001"), source=policy)
    assert evaluate(identity, policy, data, noon - 1.0, memo).outcome == "allow"
    assert evaluate(identity, policy, data, noon - 0.5, memo).outcome == "allow"
    assert memo.hits == 1
    assert evaluate(identity, policy, data, noon, memo).rules_fired == ["not-on-list"]


def test_the_day_turning_and_new_data_empty_the_memo() -> None:
    """A plan row in force from 17 Mar and new allocation data are seen at once."""
    snap = ListSnapshot()
    data = _data(snap, None)
    memo = JudgementMemo()
    policy = _SOURCES[0]
    identity = identity_from_values(method="INVITE", from_value=_uri("+33144000000"), source=policy)
    before, after = _MIDNIGHTS[1] + 43200.0, _MIDNIGHTS[2] + 60.0
    for now in (before, after, before):
        assert evaluate(identity, policy, data, now, memo) == evaluate(identity, policy, data, now)
    assert evaluate(identity, policy, data, after, memo).rules_fired == ["plan-deny", "not-on-list"]
    swapped = _data(snap, FakeAllocation(frozen=frozenset({"+33144000000"})))
    verdict = evaluate(identity, policy, swapped, after, memo)
    assert verdict == evaluate(identity, policy, swapped, after)
    assert "unallocated-number" in verdict.rules_fired


def test_memo_entries_stay_out_of_the_garbage_collector() -> None:
    """A full memo adds no object to the cyclic collector's walk: keys and entries are plain
    tuples of atoms, untracked once a collection has seen them (a NamedTuple, a dataclass or
    a Delegation in an entry would keep it tracked: the cause of the ~100 ms full collections
    of the first memo, reverted in c2fba5f)."""
    snap = ListSnapshot()
    noon = _MIDNIGHTS[1] + 43200.0
    snap.add_holding(1, "callco", NumberRange.parse("+33162000000-+33162000009"))
    snap.add_delegation(
        Delegation(2, "acme", "callco", NumberRange.parse("+33270000001"), noon - 864000.0, noon)
    )
    data = _data(snap, FakeAllocation(frozen=frozenset({"+33145000001"})))
    memo = JudgementMemo()
    policy = _SOURCES[0]
    callers = [
        *(f"+3316200000{i}" for i in range(10)),  # own
        "+33270000001",  # delegated
        "+33145000001",  # frozen block, not on the list
        "+33612345678",  # mobile
        "+4930123456",  # foreign
    ]
    for caller in callers:
        identity = identity_from_values(
            method="INVITE", from_value=_uri(caller), pai=[_uri("+33162000001")], source=policy
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
            method="INVITE", from_value=_uri(caller), pai=[_uri("+33162000001")], source=policy
        )
        remembered = evaluate(identity, policy, data, noon - 30.0, memo)
        assert remembered == evaluate(identity, policy, data, noon - 30.0)
        assert [type(f) for f in remembered.firings] == [Firing] * len(remembered.firings)
        assert all(type(j) is JudgedNumber for j in remembered.judged)
    assert memo.hits >= len(callers)
