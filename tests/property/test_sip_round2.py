"""Second-round SIP fast paths equal the slow paths they replace.

* ``parser._parse_headers`` (name-cache fast path, one translate for bare CR/LF) against
  the original implementation, on generated header blocks: same headers or same error;
* ``SipMessage.get`` / ``get_all`` against a plain scan with ``header_key`` and
  ``Header.value``, on parsed messages with generated edits in between.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip import parse_message
from proxy.sip.errors import BadHeader, SipParseError
from proxy.sip.headers import LIST_HEADERS, split_values
from proxy.sip.message import Header, SipMessage, header_key
from proxy.sip.parser import _NAME_CACHE, _NAME_CACHE_LIMIT, _header_lines, _name_of, _parse_headers


def _reference_parse_headers(block: bytes) -> list[Header]:
    """``_parse_headers`` as it was before the fast path (commit 173885d)."""
    headers: list[Header] = []
    if not block:
        return headers
    crlf = block.count(b"\r\n")
    if block.count(b"\r") != crlf or block.count(b"\n") != crlf:
        raise BadHeader("Bare CR or LF in the header fields")
    cache = _NAME_CACHE
    for line in _header_lines(block):
        colon = line.find(b":")
        if colon <= 0:
            raise BadHeader("Malformed header line (no colon)")
        raw_name = line[:colon]
        known = cache.get(raw_name)
        if known is None:
            known = _name_of(raw_name.rstrip(b" \t"))
            if len(cache) < _NAME_CACHE_LIMIT:
                cache[raw_name] = known
        headers.append(Header.from_raw(known[0], known[1], line, colon + 1))
    return headers


def _outcome(func: object, block: bytes) -> object:
    try:
        headers = func(block)  # type: ignore[operator]
    except SipParseError as error:
        return (type(error), error.reason)
    return [(h.name, h.key, h.raw, h.value) for h in headers]


_NAMES = st.sampled_from(
    [
        "Via",
        "v",
        "VIA ",
        "To",
        "t",
        "From",
        "Call-ID",
        "i",
        "CSeq",
        "Route",
        "Contact",
        "Max-Forwards",
        "Content-Length",
        "l",
        "X-Custom",
        "x-custom\t",
        " Via",
        "\tTo",
        "",
        "Bad Name",
        "Na(me",
        "Ünï",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(["", " 70", " SIP/2.0/UDP h;branch=z9hG4bK1", " <sip:a@b>;tag=1", "x:y"]),
    st.text(st.sampled_from('ab ,:;\t\r\n\x00é<>"'), max_size=12),
)
_LINE = st.one_of(
    st.tuples(_NAMES, st.sampled_from([":", " :", ""]), _VALUES).map(lambda t: "".join(t)),
    st.sampled_from([" folded", "\tfolded", "no colon", ":empty name", ""]),
)


@given(st.lists(_LINE, min_size=0, max_size=8))
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_parse_headers_fast_path_equals_reference(lines: list[str]) -> None:
    block = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    # the reference fills the name cache too: run both orders so a hit or a miss in the
    # fast path cannot hide a difference
    assert _outcome(_parse_headers, block) == _outcome(_reference_parse_headers, block)
    assert _outcome(_reference_parse_headers, block) == _outcome(_parse_headers, block)


def _reference_get(message: SipMessage, name: str) -> str | None:
    key = header_key(name)
    for header in message.headers:
        if header.key == key:
            return header.value
    return None


def _reference_get_all(message: SipMessage, name: str) -> list[str]:
    key = header_key(name)
    values = [h.value for h in message.headers if h.key == key]
    if key in LIST_HEADERS:
        return [item for value in values for item in split_values(value)]
    return values


_MESSAGE = (
    b"INVITE sip:b@example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-1, SIP/2.0/UDP 192.0.2.11;branch=z9hG4bK-2\r\n"
    b"v: SIP/2.0/TCP 192.0.2.12;branch=z9hG4bK-3\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:p1;lr>,\r\n <sip:p2;lr>\r\n"
    b"From: <sip:a@example.net>;tag=1\r\n"
    b"To: <sip:b@example.net>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"X-Empty:\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
_QUERY = st.sampled_from(
    [
        "Via",
        "v",
        "VIA",
        "Route",
        "route",
        "To",
        "t",
        "Max-Forwards",
        "X-Empty",
        "Contact",
        "m",
        "Proxy-Require",
        "Content-Length",
        "l",
        "Record-Route",
    ]
)
_EDIT = st.tuples(
    st.sampled_from(["add", "add_first", "remove", "replace", "pop"]),
    _QUERY,
    st.sampled_from(["SIP/2.0/UDP h;branch=z9hG4bK-9", "<sip:x;lr>, <sip:y;lr>", "69", ""]),
)


@given(st.lists(_EDIT, max_size=6), st.lists(_QUERY, min_size=1, max_size=6))
@settings(max_examples=300)
def test_get_and_get_all_equal_a_plain_scan(
    edits: list[tuple[str, str, str]], queries: list[str]
) -> None:
    message = parse_message(_MESSAGE)
    for op, name, value in edits:
        if op == "add":
            message.add(name, value)
        elif op == "add_first":
            message.add(name, value, first=True)
        elif op == "remove":
            message.remove(name)
        elif op == "replace":
            message.replace(name, value)
        else:
            message.pop_first_value(name)
        for query in queries:
            assert message.get(query) == _reference_get(message, query)
            assert message.get_all(query) == _reference_get_all(message, query)
