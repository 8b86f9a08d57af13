"""Rule matrix of the caller-ID engine: source kind × category × list state × date."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from proxy.policy.engine import Verdict, evaluate
from proxy.policy.identity import identity_from_values
from proxy.policy.numbers import FlowHistory
from tests.unit.policy.policy_fixtures import DAY, NOW, FakeAllocation, data, settings, source

AUTO = {"kind": "automated"}
HUMAN = {"kind": "interpersonal"}


def judge(
    src: dict[str, object],
    from_value: str,
    pai: tuple[str, ...] = (),
    *,
    method: str = "INVITE",
    privacy: str | None = None,
    diversion: tuple[str, ...] = (),
    marker: str | None = None,
    to: str | None = "sip:+33299000001@callee",
    now: float = NOW,
    **data_args: object,
) -> Verdict:
    """Evaluate one request against the fixtures."""
    policy = source(**src)
    identity = identity_from_values(
        method=method,
        from_value=from_value,
        pai=pai,
        privacy=privacy,
        diversion=diversion,
        to_value=to,
        marker_value=marker,
        source=policy,
    )
    return evaluate(identity, policy, data(**data_args), now)  # type: ignore[arg-type]


# (case, source, From, expected outcome, expected rule ids)
MATRIX = [
    # automated sources: only NPV, 08 (not 089), 30/31 and entitled public-interest numbers
    ("auto-npv-own", AUTO, "sip:+33162000001@pbx", "allow", []),
    ("auto-npv-delegated-range", AUTO, "sip:0162100042@pbx", "allow", []),
    ("auto-npv-not-listed", AUTO, "sip:+33162005000@pbx", "reject", ["not-on-list"]),
    ("auto-geographic-own", AUTO, "sip:+33144000000@pbx", "reject", ["automated-category"]),
    ("auto-08-own", AUTO, "tel:0800123456", "allow", []),
    ("auto-089-own", AUTO, "sip:+33899123456@pbx", "reject", ["plan-deny"]),
    ("auto-mobile-own", AUTO, "sip:0612345678@pbx", "reject", ["mobile-number"]),
    ("auto-short-3010", AUTO, "sip:3010@pbx", "allow", []),
    ("auto-short-surcharged", AUTO, "sip:3250@pbx", "reject", ["plan-deny"]),
    ("auto-delegated-geographic", AUTO, "sip:+33145000001@pbx", "reject", ["automated-category"]),
    ("auto-public-interest-entitled", AUTO, "sip:+33151000002@pbx", "allow", []),
    (
        "auto-public-interest-not-entitled",
        AUTO,
        "sip:+33151000003@pbx",
        "reject",
        ["public-interest-entitlement"],
    ),
    (
        "auto-public-interest-own-no-principal",
        AUTO,
        "sip:+33151000001@pbx",
        "reject",
        ["public-interest-entitlement"],
    ),
    ("auto-platform-no-history", AUTO, "sip:+33937000001@pbx", "allow", []),
    # interpersonal sources: every allow cell of the human column, lists still apply
    ("human-geographic-own", HUMAN, "sip:+33144000000@pbx", "allow", []),
    ("human-geographic-delegated", HUMAN, "sip:+33145000001@pbx", "allow", []),
    ("human-delegation-expired", HUMAN, "sip:+33145000002@pbx", "reject", ["not-on-list"]),
    ("human-delegation-not-started", HUMAN, "sip:+33145000003@pbx", "reject", ["not-on-list"]),
    ("human-held-by-other", HUMAN, "sip:+33145999999@pbx", "reject", ["not-on-list"]),
    ("human-mobile-own", HUMAN, "sip:+33612345678@pbx", "reject", ["mobile-number"]),
    ("human-089", HUMAN, "sip:+33899123456@pbx", "reject", ["plan-deny"]),
    ("human-public-interest", HUMAN, "sip:+33151000003@pbx", "allow", []),
    ("human-npv", HUMAN, "sip:+33162000001@pbx", "allow", []),
    # foreign numbers: plan categories do not apply, the list does
    ("foreign-own", AUTO, "sip:+4930123456@pbx", "allow", []),
    ("foreign-delegated", AUTO, "sip:+442070000000@pbx", "allow", []),
    ("foreign-not-listed", HUMAN, "sip:+4930999999@pbx", "reject", ["not-on-list"]),
    # structurally invalid numbers, alphanumeric on calls
    ("invalid-short-e164", HUMAN, "sip:+331234@pbx", "reject", ["invalid-number"]),
    ("invalid-characters", HUMAN, "sip:!!@pbx", "reject", ["invalid-number"]),
    ("alphanumeric-invite", HUMAN, "sip:Acme@pbx", "reject", ["alphanumeric-sender"]),
    ("unallocated-plan-hole", HUMAN, "sip:+33700000000@pbx", "reject",
     ["unallocated-number", "not-on-list"]),
]


@pytest.mark.parametrize(
    ("src", "from_value", "outcome", "rules"),
    [pytest.param(c[1], c[2], c[3], c[4], id=c[0]) for c in MATRIX],
)
def test_rule_matrix(src: dict[str, object], from_value: str, outcome: str, rules: list[str]):
    """Each row of the matrix gives its outcome and exactly its rules."""
    verdict = judge(src, from_value)
    assert verdict.outcome == outcome, verdict.firings
    assert verdict.rules_fired == rules, verdict.firings


def test_unallocated_plan_hole_is_really_a_hole():
    """The matrix row above relies on 10-digit +33 70 having no row but the +33 catch-all."""
    assert judge(HUMAN, "sip:+33700000000@pbx").category == "unallocated"


@pytest.mark.parametrize(
    ("now", "outcome"),
    [
        (NOW, "allow"),
        (NOW + 10 * DAY - 1, "allow"),  # last second of the delegation
        (NOW + 10 * DAY, "reject"),  # the end is exclusive
        (NOW - 10 * DAY - 1, "reject"),  # before it starts
    ],
)
def test_delegation_period_bounds(now: float, outcome: str):
    """A delegation holds from its start (inclusive) to its end (exclusive)."""
    assert judge(HUMAN, "sip:+33145000001@pbx", now=now).outcome == outcome


def test_plan_effective_date_applies_from_that_date():
    """Before 2026 the public-interest prefix is not in force: an ordinary geographic number."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    before = datetime(2025, 12, 31, 12, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    lists_now = judge(AUTO, "sip:+33151000002@pbx", now=before)
    # the delegation is not active then either; the plan row is the point here
    assert lists_now.category == "geographic_polyvalent"
    assert "automated-category" in lists_now.rules_fired
    assert judge(AUTO, "sip:+33151000002@pbx").category == "public_interest"


def test_masked_refused_by_default_and_judged_on_pai():
    """Anonymous From: masked-number fires, the PAI is the judged number."""
    verdict = judge(AUTO, "sip:anonymous@anonymous.invalid", ("sip:+33162000001@pbx",))
    assert verdict.rules_fired == ["masked-number"]
    assert verdict.caller_e164 == "+33162000001"
    assert [j.role for j in verdict.judged] == ["pai"]


def test_masked_allowed_by_source_setting():
    """allow_masked lets a masked call through when PAI is a listed number."""
    verdict = judge({**AUTO, "allow_masked": True}, "sip:+33162000001@pbx", privacy="id")
    assert verdict.outcome == "allow"


def test_privacy_id_masks_a_numbered_from():
    """Privacy: id counts as masking even when From carries a number."""
    verdict = judge(AUTO, "sip:+33162000001@pbx", ("tel:+33162000001",), privacy="id")
    assert verdict.rules_fired == ["masked-number"]


def test_masked_without_pai_has_no_number():
    """Masked From and no PAI: nothing to judge, invalid-number even when masking is allowed."""
    verdict = judge({**AUTO, "allow_masked": True}, "<sip:anonymous@anonymous.invalid>")
    assert verdict.rules_fired == ["invalid-number"]


def test_from_and_pai_both_judged():
    """From on the list but PAI not: the PAI number fires not-on-list."""
    verdict = judge(AUTO, "sip:+33162000001@pbx", ("<tel:+33162005000>",))
    assert verdict.rules_fired == ["not-on-list"]
    assert "+33162005000" in verdict.firings[0].reason


def test_from_pai_equality_only_when_required():
    """Two listed but different numbers pass unless the source demands equality."""
    args = ("sip:+33162000001@pbx", ("<sip:+33162000002@pbx>",))
    assert judge(AUTO, *args).outcome == "allow"
    strict = judge({**AUTO, "require_from_pai_equal": True}, *args)
    assert strict.rules_fired == ["from-pai-mismatch"]


def test_same_number_in_from_and_pai_judged_once():
    """A duplicate PAI does not double the firings."""
    verdict = judge(AUTO, "sip:+33612345678@pbx", ("tel:+33612345678",))
    assert verdict.rules_fired == ["mobile-number"]
    assert len(verdict.judged) == 1


def test_alphanumeric_on_message_from_sms_platform():
    """MESSAGE from an SMS platform may carry a sender name; from another source it may not."""
    allowed = judge({**AUTO, "sms_platform": True}, "sip:Acme@sms", method="MESSAGE")
    assert allowed.outcome == "allow"
    refused = judge(AUTO, "sip:Acme@sms", method="MESSAGE")
    assert refused.rules_fired == ["alphanumeric-sender"]
    on_call = judge({**AUTO, "sms_platform": True}, "sip:Acme@sms", method="INVITE")
    assert on_call.rules_fired == ["alphanumeric-sender"]


def test_message_under_the_same_rules_as_calls():
    """A mobile sender on MESSAGE from an SMS platform is refused like a call."""
    verdict = judge({**AUTO, "sms_platform": True}, "sip:+33612345678@sms", method="MESSAGE")
    assert verdict.rules_fired == ["mobile-number"]


@pytest.mark.parametrize(
    ("global_rules", "source_rules", "outcome", "fired"),
    [
        ({}, {}, "reject", ["not-on-list"]),
        ({"not-on-list": "monitor"}, {}, "monitor", ["not-on-list"]),
        ({"not-on-list": "off"}, {}, "allow", []),
        ({"not-on-list": "off"}, {"not-on-list": "reject"}, "reject", ["not-on-list"]),
        ({}, {"not-on-list": "monitor"}, "monitor", ["not-on-list"]),
    ],
)
def test_actions_reject_monitor_off(
    global_rules: dict[str, str], source_rules: dict[str, str], outcome: str, fired: list[str]
):
    """Global and per-source overrides set each rule's action; off rules do not fire."""
    verdict = judge(
        {**HUMAN, "rules": source_rules},
        "sip:+33145999999@pbx",
        policy=settings(rules=global_rules),
    )
    assert verdict.outcome == outcome
    assert verdict.rules_fired == fired


def test_monitor_list_rule_gives_unverified_status():
    """With the list rule in monitor, an unlisted number passes as unverified."""
    verdict = judge({**HUMAN, "rules": {"not-on-list": "monitor"}}, "sip:+33145999999@pbx")
    assert verdict.number_status == "unverified"
    assert judge(HUMAN, "sip:+33145000001@pbx").number_status == "delegated"
    assert judge(HUMAN, "sip:+33144000000@pbx").number_status == "own"


def test_first_rejecting_rule_in_catalogue_order_is_named():
    """Several rejections: the answer names the first in catalogue order."""
    verdict = judge(AUTO, "sip:+33612000000@pbx", privacy="id", to=None)
    assert verdict.rejecting is not None
    assert verdict.rejecting.rule_id == "masked-number"


def test_diverted_call_judged_on_diverting_number():
    """A consumer's mobile diverted by the PBX is judged on the call centre's number."""
    diversion = ("<sip:+33144000000@pbx>;reason=unconditional;counter=1",)
    verdict = judge(HUMAN, "sip:+33699999999@consumer", diversion=diversion)
    assert verdict.outcome == "allow"
    assert verdict.diverted_from == "+33144000000"
    assert verdict.caller_e164 == "+33699999999"


def test_diverting_number_must_be_the_customers():
    """A diverting number the customer does not hold is refused."""
    diversion = ("<sip:+33145999999@pbx>;reason=unconditional",)
    verdict = judge(HUMAN, "sip:+33699999999@consumer", diversion=diversion)
    assert verdict.rules_fired == ["not-on-list"]


def test_marker_principal_must_own_the_number():
    """Marker naming acme: acme's delegation passes, callco's own number does not."""
    marker = {
        "marker": {"header": "X-Campaign", "values": {"acme": {"principal": "acme"}}},
        **HUMAN,
    }
    assert judge(marker, "sip:+33145000001@pbx", marker="acme").outcome == "allow"
    mismatch = judge(marker, "sip:+33144000000@pbx", marker="acme")
    assert mismatch.rules_fired == ["principal-mismatch"]


def test_marker_kind_switches_rules():
    """A marker value mapped to interpersonal lifts the SAAEM ban on a geographic number."""
    marker = {"marker": {"param": "tgrp", "values": {"agents": {"kind": "interpersonal"}}}}
    assert judge({**AUTO, **marker}, "sip:+33144000000@pbx", marker="agents").outcome == "allow"
    unknown = judge({**AUTO, **marker}, "sip:+33144000000@pbx", marker="robots")
    assert unknown.rules_fired == ["automated-category"]


def test_source_principals_restrict_delegations():
    """A delegation from a principal the source does not work for does not count."""
    verdict = judge({**HUMAN, "principals": ["other"]}, "sip:+33145000001@pbx")
    assert verdict.rules_fired == ["not-on-list"]
    assert judge({**HUMAN, "principals": ["acme"]}, "sip:+33145000001@pbx").outcome == "allow"


@pytest.mark.parametrize(
    ("allocation", "fired"),
    [
        (None, []),
        (FakeAllocation(), []),
        (FakeAllocation(unallocated=frozenset({"+33162000001"})), ["unallocated-number"]),
        (FakeAllocation(frozen=frozenset({"+33162000001"})), ["unallocated-number"]),
    ],
)
def test_unallocated_only_with_allocation_data(allocation: FakeAllocation | None, fired: list[str]):
    """The allocation rule runs only when data is loaded, and treats frozen blocks as free."""
    verdict = judge(AUTO, "sip:+33162000001@pbx", allocation=allocation)
    assert verdict.rules_fired == fired


def test_allocation_not_asked_for_foreign_numbers():
    """MAJNUM covers the French plan only: a foreign number is never unallocated."""
    allocation = FakeAllocation(unallocated=frozenset({"+4930123456"}))
    assert judge(AUTO, "sip:+4930123456@pbx", allocation=allocation).outcome == "allow"


@pytest.mark.parametrize(("seen", "outcome"), [(4, "allow"), (5, "monitor")])
def test_platform_number_flow_exception(seen: int, outcome: str):
    """A platform number may reach 5 destinations in 30 days; the 6th is monitored."""
    history = FlowHistory(None)
    for i in range(seen):
        history.observe("+33937000001", f"+3329900010{i}", NOW - DAY)
    history.observe("+33937000001", "+33299000999", NOW - 31 * DAY)  # outside the window
    verdict = judge(AUTO, "sip:+33937000001@pbx", history=history)
    assert verdict.outcome == outcome
    if outcome == "monitor":
        assert verdict.rules_fired == ["plan-conditional"]


@pytest.mark.parametrize(
    ("method", "sent", "received", "outcome"),
    [
        ("MESSAGE", 5, 5, "allow"),  # this one makes 6 sent for 5 received: within +20 %
        ("MESSAGE", 6, 5, "monitor"),  # 7 for 5: more than 20 % above
        ("MESSAGE", 0, 0, "monitor"),  # a mass campaign receives nothing back
        ("INVITE", 5, 5, "monitor"),  # the conversational exception is for message flows
    ],
)
def test_platform_number_conversational_exception(
    method: str, sent: int, received: int, outcome: str
):
    """Past 5 destinations, a MESSAGE flow still passes while it sends at most 20 % more
    messages than it receives (regulation.md §1 (b)); the reason gives the counts."""
    history = FlowHistory(None)
    number = "+33937000001"
    for i in range(6):
        history.observe(number, f"+3329900010{i}", NOW - DAY)
    for _ in range(sent):
        history.observe_message(number, sent=True, now=NOW - DAY)
    for _ in range(received):
        history.observe_message(number, sent=False, now=NOW - DAY)
    verdict = judge(AUTO, "sip:+33937000001@pbx", method=method, history=history)
    assert verdict.outcome == outcome
    if outcome == "monitor" and method == "MESSAGE":
        (firing,) = verdict.firings
        assert f"sent {sent + 1} messages for {received} received" in firing.reason


NUMBERS = [
    "sip:+33162000001@pbx",
    "sip:+33144000000@pbx",
    "sip:+33612345678@pbx",
    "sip:anonymous@anonymous.invalid",
    "sip:Acme@pbx",
    "sip:+4930123456@pbx",
    "sip:+33937000001@pbx",
    "sip:3010@pbx",
    "sip:!!@pbx",
]


@hsettings(max_examples=60, deadline=None)
@given(
    from_value=st.sampled_from(NUMBERS),
    pai=st.lists(st.sampled_from(NUMBERS), max_size=2),
    kind=st.sampled_from(["automated", "interpersonal"]),
    method=st.sampled_from(["INVITE", "MESSAGE"]),
    privacy=st.sampled_from([None, "id", "none"]),
    offset=st.floats(min_value=-40 * DAY, max_value=40 * DAY),
)
def test_decision_is_deterministic(
    from_value: str, pai: list[str], kind: str, method: str, privacy: str | None, offset: float
):
    """Same identity, source, data and time: the same verdict, evaluated twice."""
    args = ({"kind": kind}, from_value, tuple(pai))
    first = judge(*args, method=method, privacy=privacy, now=NOW + offset)
    second = judge(*args, method=method, privacy=privacy, now=NOW + offset)
    assert first == second
    assert (first.outcome == "reject") == any(f.action == "reject" for f in first.firings)
