"""Hypothesis: whatever the peers send, in whatever order and timing, `ProxyCore.handle()`
returns actions and never raises (anything escaping it would be a bug, docs/design.md)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core.actions import Send
from proxy.sip.message import Request
from tests.unit.core.core_helpers import PBX1, TRUNK1, TRUNK2, Messages, make_harness, parse

STATUSES = [100, 180, 183, 200, 202, 302, 404, 408, 486, 487, 500, 503, 603]

step = st.one_of(
    st.tuples(st.just("invite"), st.integers(0, 2)),
    st.tuples(st.just("response"), st.integers(0, 2), st.sampled_from(STATUSES)),
    st.tuples(st.just("cancel"), st.integers(0, 2)),
    st.tuples(st.just("ack"), st.integers(0, 2)),
    st.tuples(st.just("bye"), st.integers(0, 2)),
    st.tuples(st.just("advance"), st.floats(0, 200)),
    st.tuples(st.just("mutate"), st.integers(0, 2), st.integers(0, 600), st.binary(max_size=3)),
)


def _request(msg: Messages, method: str, n: int, **kw: object) -> bytes:
    return msg.request(
        method,
        call_id=f"fuzz-{n}",
        via=f"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-fuzz-{n}"
        + ("-bye" if method == "BYE" else ""),
        **kw,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=25))
def test_core_never_raises(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    """Random calls, responses, CANCELs, ACKs, BYEs, corrupted bytes and clock jumps."""
    msg = Messages()
    h = make_harness()
    forwarded: dict[int, bytes] = {}
    for item in steps:
        kind = item[0]
        if kind == "invite":
            n = int(item[1])
            actions = h.feed(_request(msg, "INVITE", n), PBX1)
        elif kind == "response":
            n, status = int(item[1]), int(item[2])
            if n not in forwarded:
                continue
            actions = h.feed(msg.response(forwarded[n], status, "X"), TRUNK1)
        elif kind == "cancel":
            actions = h.feed(_request(msg, "CANCEL", int(item[1])), PBX1)
        elif kind == "ack":
            actions = h.feed(_request(msg, "ACK", int(item[1]), to_tag="uas1"), PBX1)
        elif kind == "bye":
            actions = h.feed(
                _request(msg, "BYE", int(item[1]), to_tag="uas1", cseq=2),
                PBX1,
            )
        elif kind == "advance":
            actions = h.advance(float(item[1]))
        else:
            n, position, junk = int(item[1]), int(item[2]), bytes(item[3])
            data = _request(msg, "INVITE", n)
            actions = h.feed(data[:position] + junk + data[position + len(junk) :], PBX1)
        for action in actions:
            if isinstance(action, Send):
                assert action.transport in ("udp", "tcp", "tls")
                if action.remote in (TRUNK1, TRUNK2):
                    message = parse(action.data)
                    if isinstance(message, Request) and message.method == "INVITE":
                        call = message.call_id.removeprefix("fuzz-")
                        if call.isdigit():
                            forwarded[int(call)] = action.data
