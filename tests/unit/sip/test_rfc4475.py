"""RFC 4475 torture messages, table-driven from the shared index.json.

For each message we compute what sipguard's SIP layer lets the proxy do:

* parse/validation error with ``reply_headers`` -> ``responded:<status>`` (stateless reply)
* parse/validation error without them           -> ``dropped``
* clean request                                 -> ``forwarded``, unless a core check
  listed in ``CORE_CHECKS`` answers first
* clean response                                -> ``dropped`` (no transaction: stray)

and assert the outcome is one the index accepts (``handled_if``, or the ``tcp`` override
when the bytes go through the StreamFramer).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from proxy.sip import (
    Request,
    Response,
    SipParseError,
    StreamFramer,
    check_request,
    parse_message,
)

TESTDATA = Path(__file__).parents[3].parent / "shared" / "testdata" / "rfc4475"
INDEX = TESTDATA / "index.json"

pytestmark = pytest.mark.skipif(
    not INDEX.is_file(), reason=f"RFC 4475 shared test data not found at {TESTDATA}"
)

# Requests that the SIP layer passes but that a check of the proxy core (not proxy/sip)
# answers, with the reason; the precondition is asserted so the entry cannot go stale.
CORE_CHECKS: dict[str, tuple[int, str]] = {
    "zeromf": (483, "Max-Forwards: 0 -> 483 Too Many Hops, RFC 3261 §16.3 step 3 (core)"),
    "bext01": (420, "Proxy-Require with unknown options -> 420, RFC 3261 §16.3 step 5 (core)"),
}

# Our exact outcome over UDP for every message, so a change of behaviour is visible even
# when it stays within handled_if.  Non-400 statuses: 416 (unknown Request-URI scheme,
# RFC 3261 §16.3 step 1), 505 (RFC 3261 §21.5.7).  "dropped" requests lack the headers a
# stateless reply needs (insuf: no From/To/Call-ID; test: no SIP-Version so no request).
EXPECTED_UDP: dict[str, str] = {
    "wsinv": "forwarded",
    "intmeth": "forwarded",
    "esc01": "forwarded",
    "escnull": "forwarded",
    "esc02": "forwarded",
    "lwsdisp": "forwarded",
    "longreq": "forwarded",
    "dblreq": "forwarded",
    "semiuri": "forwarded",
    "transports": "forwarded",
    "mpart01": "forwarded",
    "unreason": "dropped",
    "noreason": "dropped",
    "badinv01": "responded:400",
    "clerr": "responded:400",
    "ncl": "responded:400",
    "scalar02": "responded:400",
    "scalarlg": "dropped",
    "quotbal": "responded:400",
    "ltgtruri": "responded:400",
    "lwsruri": "responded:400",
    "lwsstart": "responded:400",
    "trws": "responded:400",
    "escruri": "responded:400",
    "baddate": "responded:400",
    "regbadct": "responded:400",
    "badaspec": "responded:400",
    "baddn": "responded:400",
    "badvers": "responded:505",
    "mismatch01": "responded:400",
    "mismatch02": "responded:400",
    "bigcode": "dropped",
    "badbranch": "responded:400",
    "insuf": "dropped",
    "unkscm": "responded:416",
    "novelsc": "responded:416",
    "unksm2": "forwarded",
    "bext01": "responded:420",
    "invut": "forwarded",
    "regaut01": "forwarded",
    "multi01": "responded:400",
    "mcl01": "responded:400",
    "bcast": "dropped",
    "zeromf": "responded:483",
    "cparam01": "forwarded",
    "cparam02": "forwarded",
    "regescrt": "forwarded",
    "sdp01": "forwarded",
    "inv2543": "forwarded",
    "test": "dropped",
}


def _entries() -> list[dict[str, Any]]:
    if not INDEX.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(INDEX.read_text())["messages"]
    return entries


ENTRIES = _entries()
IDS = [entry["name"] for entry in ENTRIES]


def _outcome_of_message(name: str, msg: Request | Response, forwarded: list[bytes]) -> str:
    if isinstance(msg, Response):
        return "dropped"  # stray response: no matching client transaction (RFC 3261 §16.7)
    error = check_request(msg)
    if error is not None:
        return _outcome_of_error(error)
    if name in CORE_CHECKS:
        status, _why = CORE_CHECKS[name]
        if status == 483:
            assert msg.max_forwards == 0
        if status == 420:
            assert msg.get("Proxy-Require")
        return f"responded:{status}"
    forwarded.append(msg.to_bytes())
    return "forwarded"


def _outcome_of_error(error: SipParseError) -> str:
    assert isinstance(error, SipParseError)
    assert error.reason
    if error.reply_headers is None:
        return "dropped"
    return f"responded:{error.status}"


def _outcome_udp(name: str, data: bytes, forwarded: list[bytes]) -> str:
    try:
        msg = parse_message(data)
    except SipParseError as error:
        return _outcome_of_error(error)
    return _outcome_of_message(name, msg, forwarded)


def _outcomes_tcp(name: str, data: bytes, forwarded: list[bytes]) -> list[str]:
    framer = StreamFramer()
    items = framer.feed(data)
    if not items:
        return ["dropped"]  # still waiting for octets: the connection times out (clerr)
    outcomes: list[str] = []
    for item in items:
        if isinstance(item, SipParseError):
            outcomes.append(_outcome_of_error(item))
        else:
            outcomes.append(_outcome_udp(name, item, forwarded))
    return outcomes


def _handled(outcome: str, handled_if: list[str]) -> bool:
    for rule in handled_if:
        if rule in (outcome, "responded:any") and (
            rule != "responded:any" or outcome.startswith("responded:")
        ):
            return True
        if not rule.startswith("responded:") or not outcome.startswith("responded:"):
            continue
        spec, code = rule.split(":", 1)[1], outcome.split(":", 1)[1]
        if spec.startswith("!") and code not in spec[1:].split(","):
            return True
        if spec.endswith("xx") and code[0] == spec[0]:
            return True
    return False


def _check_forwarded(entry: dict[str, Any], data: bytes, forwarded: list[bytes], tcp: bool) -> None:
    overrides = entry["tcp"] if tcp else {}
    for out in forwarded:
        for marker in overrides.get("must_not_reach_trunk", entry["must_not_reach_trunk"]):
            assert marker.encode() not in out
        for pattern in entry["forbidden_in_forwarded"]:
            assert re.search(pattern.encode(), out) is None
    if forwarded:
        first = forwarded[0]
        for pattern in entry["required_in_forwarded"]:
            assert re.search(pattern.encode(), first) is not None
        assert any(marker.encode() in first for marker in entry["markers"])
        if entry["body_must_be_intact"]:
            body = data.split(b"\r\n\r\n", 1)[1]
            assert first.endswith(body)


def test_index_and_expectations_cover_the_same_messages() -> None:
    """Every index.json message has an expected outcome, and no stale names remain."""
    assert len(ENTRIES) == 50
    assert set(IDS) == set(EXPECTED_UDP)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_udp_outcome_is_handled(entry: dict[str, Any]) -> None:
    """Over UDP the message gets the expected outcome, and it is one handled_if accepts."""
    data = (TESTDATA / entry["file"]).read_bytes()
    assert len(data) == entry["size"]
    forwarded: list[bytes] = []
    outcome = _outcome_udp(entry["name"], data, forwarded)
    assert outcome == EXPECTED_UDP[entry["name"]]
    assert _handled(outcome, entry["handled_if"]), (outcome, entry["handled_if"])
    _check_forwarded(entry, data, forwarded, tcp=False)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_tcp_outcome_is_handled(entry: dict[str, Any]) -> None:
    """Through the StreamFramer every resulting outcome is one the tcp rules accept."""
    data = (TESTDATA / entry["file"]).read_bytes()
    handled_if = entry["tcp"].get("handled_if", entry["handled_if"])
    forwarded: list[bytes] = []
    outcomes = _outcomes_tcp(entry["name"], data, forwarded)
    if entry["name"] == "dblreq":
        # REGISTER, then a genuine pipelined INVITE; its body is 5 octets longer than its
        # Content-Length, and "C\r\n\r\n" on a stream is garbage: framing error, close.
        assert outcomes == ["forwarded", "forwarded", "dropped"]
    assert _handled(outcomes[0], handled_if), (outcomes[0], handled_if)
    for outcome in outcomes[1:]:
        assert outcome == "dropped" or _handled(outcome, handled_if), (outcome, handled_if)
    _check_forwarded(entry, data, forwarded, tcp=True)


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e["kind"] == "response"], ids=lambda e: e["name"]
)
def test_responses_parse_or_fail_cleanly(entry: dict[str, Any]) -> None:
    """Responses parse or raise SipParseError without reply headers; typed access too."""
    data = (TESTDATA / entry["file"]).read_bytes()
    try:
        msg = parse_message(data)
    except SipParseError as error:
        assert error.reply_headers is None
        return
    assert isinstance(msg, Response)
    for accessor in ("vias", "cseq", "from_", "to", "call_id", "max_forwards"):
        with contextlib.suppress(SipParseError):
            getattr(msg, accessor)
