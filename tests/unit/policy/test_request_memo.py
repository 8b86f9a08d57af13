"""The policy step's per-request memo never changes a decision, an assessment or an audit row.

Random sequences of list changes, clock moves, flow history, new allocation data and requests
(`memo_ops`) are played against two worlds fed the same operations: one step kept for the
whole sequence (its `RequestMemo` and `JudgementMemo` warm), and a new step for every request
of the other (nothing remembered). After every request both must answer the same decision,
fill the same assessment and queue the same audit row.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from proxy.config import load_config
from proxy.core.decision import Assessment, Continue, Origin, Reject
from proxy.policy.audit import AuditLog
from proxy.policy.engine import PolicyData
from proxy.policy.numbers import Delegation, FlowHistory, NumberRange
from proxy.policy.settings import SourcePolicy
from proxy.policy.step import PolicyStep
from proxy.sip.message import Header, Request
from tests.unit.policy.memo_ops import (
    MIDNIGHTS,
    SOURCES,
    World,
    caller_from_value,
    memo_ops,
    uri,
)
from tests.unit.policy.policy_fixtures import DAY

REPO = Path(__file__).resolve().parents[3]


def _step(
    data: PolicyData, history: FlowHistory, audit: AuditLog, size: int = 65_536
) -> PolicyStep:
    step = PolicyStep(
        settings=data.settings,
        sources={f"s{i}": policy for i, policy in enumerate(SOURCES)},
        data=data,
        audit=audit,
        history=history,
    )
    step.requests.maxsize = size
    return step


def _request(op: tuple[Any, ...], serial: int) -> Request:
    """The SIP request of a `call` operation; tag, Call-ID and display name change with
    `serial`, as they do between calls (they must not change the decision)."""
    _, _, caller, pai, diverting, marker, method, privacy, to = op
    from_value = caller_from_value(caller)
    if caller not in ("anonymous", "Acme Ltd") and serial % 2:
        from_value = f'"Agent {serial}" <{from_value}>'
    headers = [
        ("Via", f"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{serial}"),
        ("From", f"{from_value};tag={serial}"),
        ("To", f"<{to}>"),
        ("Call-ID", f"call-{serial}"),
        ("CSeq", f"1 {method}"),
        *(("P-Asserted-Identity", f"<{uri(p)}>") for p in pai),
    ]
    if diverting:
        headers.append(("Diversion", f"<{uri(diverting)}>;reason=unconditional"))
    if marker:
        headers.append(("X-Campaign", marker))
    if privacy:
        headers.append(("Privacy", privacy))
    return Request(method, to, [Header(n, v) for n, v in headers])


def _last_row(audit: AuditLog) -> tuple[Any, ...]:
    row = audit._queue[-1]  # the queued row, as the flush will write it
    assert isinstance(row, tuple)
    return row


@hsettings(max_examples=300, deadline=None)
@given(memo_ops(shapes=True), st.integers(1, 4))
def test_remembered_decisions_equal_fresh_ones(ops: list[tuple[Any, ...]], size: int) -> None:
    world = World(histories=2)
    kept_audit = AuditLog(":memory:")
    fresh_audit = AuditLog(":memory:")
    kept = _step(world.data(0), world.histories[0], kept_audit, size)
    for serial, op in enumerate(ops):
        if world.apply(op):
            kept.data = world.data(0)  # the same object unless the allocation data changed
            continue
        origin = Origin("source", f"s{op[1]}", "udp", ("10.0.0.1", 5060))
        fresh = _step(world.data(1), world.histories[1], fresh_audit)
        kept_assessment, fresh_assessment = Assessment(), Assessment()
        remembered = kept.decide(_request(op, serial), origin, kept_assessment, world.now)
        expected = fresh.decide(_request(op, serial), origin, fresh_assessment, world.now)
        assert remembered == expected, op
        assert kept_assessment == fresh_assessment, op
        assert _last_row(kept_audit) == _last_row(fresh_audit), op
        assert len(kept.requests) <= size


def _single_step(tmp_path: Path, **policy: object) -> tuple[PolicyStep, World]:
    world = World()
    world.snap.add_holding(1, "callco", NumberRange.parse("+33162000001"))
    world.now = MIDNIGHTS[1] + 43200.0
    step = PolicyStep(
        settings=world.data().settings,
        sources={"dialer": SourcePolicy.model_validate({"customer": "callco", **policy})},
        data=world.data(),
        audit=AuditLog(tmp_path / "audit.sqlite3"),
        history=world.histories[0],
    )
    return step, world


ORIGIN = Origin("source", "dialer", "udp", ("10.0.0.1", 5060))


def _call(caller: str, serial: int, *, diverting: str | None = None) -> Request:
    return _request(
        ("call", 0, caller, (), diverting, None, "INVITE", None, "sip:+33299000001@op"), serial
    )


def test_a_repeat_caller_is_served_whole_and_a_list_change_is_seen(tmp_path: Path) -> None:
    step, world = _single_step(tmp_path)
    assert step.decide(_call("+33162000001", 1), ORIGIN, Assessment(), world.now) == Continue()
    assert (step.requests.hits, step.requests.misses) == (0, 1)
    # Another tag, Call-ID and display name: the same request shape, from memory.
    assessment = Assessment()
    assert step.decide(_call("+33162000001", 2), ORIGIN, assessment, world.now) == Continue()
    assert (step.requests.hits, step.requests.misses) == (1, 1)
    assert (assessment.customer, assessment.caller_e164, assessment.number_status) == (
        "callco",
        "+33162000001",
        "own",
    )
    # The number leaves the list: the next request is judged afresh and refused.
    world.snap.remove_holding(1, NumberRange.parse("+33162000001"))
    decision = step.decide(_call("+33162000001", 3), ORIGIN, Assessment(), world.now)
    assert isinstance(decision, Reject) and decision.rule_id == "not-on-list"
    assert (step.requests.hits, step.requests.misses) == (1, 2)
    # A rejection is remembered too, with its text and rule.
    again = step.decide(_call("+33162000001", 4), ORIGIN, Assessment(), world.now)
    assert again == decision and (step.requests.hits, step.requests.misses) == (2, 2)
    step.close()


def test_a_change_to_other_numbers_keeps_the_remembered_decision(tmp_path: Path) -> None:
    step, world = _single_step(tmp_path)
    caller = "+33162000001"
    step.decide(_call(caller, 1), ORIGIN, Assessment(), world.now)
    assert step.memo is not None
    generation = step.memo.generation
    # Another customer's number, and a range that stops just short of the caller's.
    world.snap.add_holding(7, "other", NumberRange.parse("+33162000002"))
    world.snap.add_delegation(
        Delegation(8, "acme", "callco", NumberRange.parse("+33162000002-+33162000099"), 0, 2e9)
    )
    assessment = Assessment()
    assert step.decide(_call(caller, 2), ORIGIN, assessment, world.now) == Continue()
    assert (step.requests.hits, step.requests.misses) == (1, 1)
    assert assessment.number_status == "own"
    assert step.memo.generation == generation  # nothing emptied
    # Stamped with the new counter, it serves the next request too.
    step.decide(_call(caller, 3), ORIGIN, Assessment(), world.now)
    assert step.requests.hits == 2
    # A range that covers the caller is seen at once.
    world.snap.add_holding(9, "other", NumberRange.parse("+33162000000-+33162000009"))
    step.decide(_call(caller, 4), ORIGIN, Assessment(), world.now)
    assert (step.requests.hits, step.requests.misses) == (2, 2)
    step.close()


def test_a_delegation_ending_mid_day_ends_the_remembered_decision(tmp_path: Path) -> None:
    step, world = _single_step(tmp_path)
    noon = world.now
    delegated = NumberRange.parse("+33270000001")
    world.snap.add_delegation(Delegation(2, "acme", "callco", delegated, noon - 3 * DAY, noon))
    for moment in (noon - 2.0, noon - 1.0):
        assert step.decide(_call("+33270000001", 1), ORIGIN, Assessment(), moment) == Continue()
    assert step.requests.hits == 1
    decision = step.decide(_call("+33270000001", 2), ORIGIN, Assessment(), noon)
    assert isinstance(decision, Reject) and decision.rule_id == "not-on-list"
    step.close()


def test_diverted_calls_and_conditional_numbers_are_never_remembered(tmp_path: Path) -> None:
    step, world = _single_step(tmp_path)
    for serial in range(3):
        step.decide(_call("+33612345678", serial, diverting="+33162000001"), ORIGIN, Assessment(),
                    world.now)  # fmt: skip
        step.decide(_call("+33937000001", serial), ORIGIN, Assessment(), world.now)  # platform
    assert step.requests.hits == 0 and len(step.requests) == 0
    step.close()


def test_remembered_decisions_stay_out_of_the_garbage_collector(tmp_path: Path) -> None:
    """Keys and entries are flat tuples of atoms: untracked once a collection has seen them,
    so a full memo adds nothing to the full collections' walk."""
    step, world = _single_step(tmp_path)
    for serial, caller in enumerate(["+33162000001", "+33612345678", "+33145000001"]):
        step.decide(_call(caller, serial), ORIGIN, Assessment(), world.now)
    assert len(step.requests) == 3
    gc.collect()
    for key, entry in step.requests._entries.items():
        assert not gc.is_tracked(key), key
        assert not gc.is_tracked(entry), entry
    step.close()


def test_memo_size_zero_judges_every_request_afresh(tmp_path: Path) -> None:
    """`policy.memo_size: 0` turns both memories off; the decisions stay the same."""
    world = World()
    world.snap.add_holding(1, "callco", NumberRange.parse("+33162000001"))
    world.now = MIDNIGHTS[1] + 43200.0
    step = PolicyStep(
        settings=world.data().settings,
        sources={"dialer": SourcePolicy.model_validate({"customer": "callco"})},
        data=world.data(),
        audit=AuditLog(tmp_path / "audit.sqlite3"),
        history=world.histories[0],
        memo_size=0,
    )
    assert step.memo is None
    for serial in range(3):
        assert step.decide(_call("+33162000001", serial), ORIGIN, Assessment(), world.now) == (
            Continue()
        )
        decision = step.decide(_call("+33612345678", serial), ORIGIN, Assessment(), world.now)
        assert isinstance(decision, Reject) and decision.rule_id == "mobile-number"
    assert len(step.requests) == 0 and step.requests.hits == 0
    step.close()


def test_memo_size_comes_from_the_config(tmp_path: Path) -> None:
    """`policy.memo_size` reaches the step built from a config file."""
    raw = yaml.safe_load((REPO / "configs" / "example.yaml").read_text(encoding="utf-8"))
    raw["policy"].update(
        database=str(tmp_path / "lists.sqlite3"),
        allocation_database=str(tmp_path / "allocation.sqlite3"),
        audit={"database": str(tmp_path / "audit.sqlite3")},
    )
    for size in (0, 10):
        raw["policy"]["memo_size"] = size
        path = tmp_path / f"memo-{size}.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        step = PolicyStep.from_config(load_config(path))
        try:
            assert (step.memo is None) == (size == 0)
            assert step.requests.maxsize == size
        finally:
            step.close()
