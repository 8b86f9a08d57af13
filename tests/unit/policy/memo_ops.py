"""Random operation sequences for the memo property tests (not a test): list changes, clock
moves, flow history and requests that come back to a few callers and sources, so a remembered
judgement or decision is asked for again after lists, clock or history have moved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from proxy.policy.engine import PolicyData
from proxy.policy.numbers import Delegation, FlowHistory, ListSnapshot, NumberRange
from proxy.policy.plan import NumberingPlan
from tests.unit.policy.policy_fixtures import PARIS, FakeAllocation, settings, source

# Midnights (Paris) of a few days, including 29 Mar 2026 (a 23-hour day).
MIDNIGHTS = [datetime(2026, 3, d, tzinfo=PARIS).timestamp() for d in (15, 16, 17, 28, 29, 30)]
# Times of interest: midnights and the seconds around them, mid-day points. Delegation bounds
# are drawn from the same set, so requests land exactly on, just before and just after them.
TIMES = sorted(
    {m + off for m in MIDNIGHTS for off in (-1.0, 0.0, 1.0, 3600.0, 43200.0, 43201.0, 86399.0)}
)

NUMBERS = [
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
RANGES = ["+33162000000-+33162000099", "+33145000000-+33145000009"]
# A number no request presents: changes to it must leave every remembered answer in use.
UNASKED = "+33162000050"
HOLDERS = ["callco", "other", "acme"]
DESTINATIONS = ["sip:+33299000001@callee", "sip:+33299000002@callee", "sip:+33299000003@callee"]

# A row that comes into force mid-sequence (17 Mar), so the day really changes the answer:
# +33144… is geographic before, never presentable from that day.
PLAN = NumberingPlan.load(
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
SETTINGS = settings(flow_max_destinations=1)

PRINCIPALS = ["acme", "gov", "zed"]

SOURCES = [
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


def uri(number: str) -> str:
    return f"sip:{number}@pbx"


def caller_from_value(caller: str) -> str:
    """The From value a `call` operation's caller is presented with."""
    if caller == "anonymous":
        return "<sip:anonymous@anonymous.invalid>"
    if caller == "Acme Ltd":
        return f'"{caller}" <sip:{caller.replace(" ", "")}@pbx>'
    return uri(caller)


CLOCK = st.one_of(
    st.tuples(st.just("at"), st.sampled_from(TIMES)),
    st.tuples(st.just("step"), st.sampled_from([-3600.0, -1.0, 1.0, 60.0, 7200.0, 86400.0])),
)


@st.composite
def memo_ops(draw: st.DrawFn, shapes: bool = False) -> list[tuple[Any, ...]]:
    """A sequence of operations whose requests come back to a few callers and sources, so a
    remembered judgement is asked for again after lists, clock or history have moved.

    `shapes`: the requests are drawn from a few request shapes instead, each a copy of one
    base request with one field changed (a whole remembered decision is then asked for again,
    and requests that differ in a single header are played in turn)."""
    callers = draw(st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=2, unique=True))
    sources = draw(st.lists(st.integers(0, len(SOURCES) - 1), min_size=1, max_size=2))
    fields = [
        st.sampled_from(sources),
        st.sampled_from([*callers, "anonymous", "Acme Ltd"]),
        st.lists(st.sampled_from(callers), max_size=2).map(tuple),
        st.sampled_from([None, None, None, callers[0]]),  # diverting number
        st.sampled_from([None, "acme"]),  # marker value
        st.sampled_from(["INVITE", "MESSAGE"]),
        st.sampled_from([None, None, "id"]),  # Privacy
        st.sampled_from(DESTINATIONS),
    ]
    request: st.SearchStrategy[tuple[Any, ...]] = st.tuples(st.just("call"), *fields)
    if shapes:
        base = draw(request)
        pool = [base]
        for _ in range(draw(st.integers(1, 3))):
            which = draw(st.integers(0, len(fields) - 1))
            pool.append((*base[: which + 1], draw(fields[which]), *base[which + 2 :]))
        request = st.sampled_from(pool)
    holding = st.tuples(
        st.just("hold"), st.sampled_from(HOLDERS), st.sampled_from([*callers, *RANGES, UNASKED])
    )
    delegation = st.tuples(
        st.just("delegate"),
        st.sampled_from(PRINCIPALS),
        st.sampled_from(["callco", "callco", "other"]),
        st.sampled_from([*callers, *RANGES, UNASKED]),
        st.sampled_from(TIMES),
        st.sampled_from(TIMES),
    )
    removal = st.tuples(st.sampled_from(["unhold", "undelegate"]), st.integers(0, 50))
    swap = st.tuples(st.just("allocation"), st.booleans())
    flow = st.tuples(st.just("flow"), st.sampled_from(callers), st.sampled_from(DESTINATIONS))
    # Requests weigh most (more so between the changes that empty a memo, with `shapes`);
    # hypothesis favours short lists, hence the minimum length.
    op = st.one_of(
        *[request] * (10 if shapes else 4), *[CLOCK] * 3, flow, flow, holding, delegation,
        removal, swap,
    )  # fmt: skip
    return draw(st.lists(op, min_size=30, max_size=80))


def memo_data(
    lists: ListSnapshot, allocation: FakeAllocation | None, history: FlowHistory | None = None
) -> PolicyData:
    return PolicyData(SETTINGS, PLAN, lists, allocation, history or FlowHistory(None))


class World:
    """The lists, clock, allocation data and flow histories the operations change; requests
    are left to the test (`apply` answers False for them)."""

    def __init__(self, histories: int = 1) -> None:
        self.snap = ListSnapshot()
        self.histories = [FlowHistory(None) for _ in range(histories)]
        self.now = TIMES[len(TIMES) // 2]
        self.allocation: FakeAllocation | None = None
        self._data = [memo_data(self.snap, None, h) for h in self.histories]
        self._holdings: list[tuple[int, NumberRange]] = []
        self._delegations: list[tuple[int, NumberRange]] = []
        self._row = 0

    def data(self, which: int = 0) -> PolicyData:
        """The policy data over history `which`: a new object only when the allocation data
        changed, as in the proxy (step._replace_allocation)."""
        return self._data[which]

    def apply(self, op: tuple[Any, ...]) -> bool:
        """Play a list, clock, allocation or flow operation; False for anything else."""
        kind = op[0]
        if kind == "hold":
            self._row += 1
            rng = NumberRange.parse(op[2])
            self.snap.add_holding(self._row, op[1], rng)
            self._holdings.append((self._row, rng))
        elif kind == "delegate":
            self._row += 1
            rng = NumberRange.parse(op[3])
            start, end = sorted((op[4], op[5]))
            self.snap.add_delegation(Delegation(self._row, op[1], op[2], rng, start, end))
            self._delegations.append((self._row, rng))
        elif kind in ("unhold", "undelegate"):
            if kind == "unhold" and self._holdings:
                self.snap.remove_holding(*self._holdings.pop(op[1] % len(self._holdings)))
            elif kind == "undelegate" and self._delegations:
                pick = op[1] % len(self._delegations)
                self.snap.remove_delegation(*self._delegations.pop(pick))
        elif kind == "at":
            self.now = op[1]
        elif kind == "step":
            self.now += op[1]
        elif kind == "allocation":
            self.allocation = FakeAllocation(frozen=frozenset(NUMBERS[::2])) if op[1] else None
            self._data = [memo_data(self.snap, self.allocation, h) for h in self.histories]
        elif kind == "flow":
            for history in self.histories:
                history.observe(op[1], op[2].removeprefix("sip:").split("@")[0], self.now)
        else:
            return False
        return True
