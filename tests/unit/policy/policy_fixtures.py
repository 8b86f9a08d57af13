"""Shared data for the policy tests: a fixed clock, a plan, lists and sources (not a test)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from proxy.policy.engine import PolicyData
from proxy.policy.numbers import Delegation, FlowHistory, ListSnapshot, NumberRange
from proxy.policy.plan import NumberingPlan
from proxy.policy.settings import PolicySettings, PrincipalSettings, SourcePolicy

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 16, 12, 0, tzinfo=PARIS).timestamp()
DAY = 86400.0

CUSTOMER = "callco"


@lru_cache(maxsize=1)
def plan() -> NumberingPlan:
    """The shipped numbering plan (loaded once)."""
    return NumberingPlan.load()


def snapshot() -> ListSnapshot:
    """callco's own numbers and the delegations it received (see the inline notes)."""
    snap = ListSnapshot()
    own = [
        "+33162000000-+33162000999",  # NPV block
        "+33144000000",  # geographic
        "+33937000001",  # platform number
        "+33800123456",  # 08 free
        "+33899123456",  # 089 premium (held, but never presentable)
        "+33612345678",  # a mobile on the list (still refused: mobile rule)
        "+4930123456",  # a foreign number of the call centre
        "+33151000001",  # public-interest (2026) held by the call centre itself
    ]
    for i, text in enumerate(own, 1):
        snap.add_holding(i, CUSTOMER, NumberRange.parse(text))
    snap.add_holding(100, "other", NumberRange.parse("+33145999999"))
    delegations = [
        ("acme", "+33145000001", NOW - 10 * DAY, NOW + 10 * DAY),  # active
        ("acme", "+33145000002", NOW - 20 * DAY, NOW - 1),  # expired a second ago
        ("acme", "+33145000003", NOW + 1, NOW + 10 * DAY),  # starts in a second
        ("acme", "+442070000000", NOW - DAY, NOW + 10 * DAY),  # foreign, active
        ("gov", "+33151000002", NOW - DAY, NOW + 10 * DAY),  # public interest, entitled
        ("acme", "+33151000003", NOW - DAY, NOW + 10 * DAY),  # public interest, not entitled
        ("acme", "+33162100000-+33162100099", NOW - DAY, NOW + 10 * DAY),  # NPV range
    ]
    for i, (principal, text, start, end) in enumerate(delegations, 1):
        snap.add_delegation(
            Delegation(i, principal, CUSTOMER, NumberRange.parse(text), start, end)
        )
    return snap


def settings(**changes: object) -> PolicySettings:
    """Policy settings with the principals of the fixtures."""
    base: dict[str, object] = {
        "principals": [
            PrincipalSettings(name="gov", public_interest=True),
            PrincipalSettings(name="acme"),
        ]
    }
    base.update(changes)
    return PolicySettings.model_validate(base)


@dataclass
class FakeAllocation:
    """Allocation data where some numbers are unallocated or frozen."""

    unallocated: frozenset[str] = frozenset()
    frozen: frozenset[str] = frozenset()

    def lookup(self, e164: str) -> FakeBlock | None:
        if e164 in self.unallocated:
            return None
        return FakeBlock("LGC", "Manifone", e164 in self.frozen)


@dataclass(frozen=True)
class FakeBlock:
    """An Allocation look-alike."""

    holder_code: str
    holder_name: str | None
    frozen: bool


def data(
    *,
    policy: PolicySettings | None = None,
    allocation: FakeAllocation | None = None,
    history: FlowHistory | None = None,
) -> PolicyData:
    """PolicyData over the fixtures."""
    return PolicyData(
        settings=policy or settings(),
        plan=plan(),
        lists=snapshot(),
        allocation=allocation,
        history=history if history is not None else FlowHistory(None),
    )


def source(**changes: object) -> SourcePolicy:
    """callco's source policy (automated unless changed)."""
    base: dict[str, object] = {"customer": CUSTOMER}
    base.update(changes)
    return SourcePolicy.model_validate(base)
