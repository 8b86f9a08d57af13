"""Every fast path of proxy/sip gives exactly what the full (regex) path gives.

The fast paths only answer for text they are sure about and hand everything else to the
full parser, so for any input both must agree: the same value, or the same error type and
reason.  Inputs are built from the characters that sit on the grammar's boundaries
(``@ : ; = ? % [ ] " \\ , < >``, spaces, digits, non-ASCII) around the common shapes.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy.sip import abnf, check_request, parse_message
from proxy.sip.errors import (
    BadContentLength,
    BadHeader,
    BadUri,
    MissingHeader,
    SipParseError,
    VersionNotSupported,
)
from proxy.sip.headers import (
    NameAddr,
    _split,
    check_name_addr_list,
    parse_cseq,
    parse_cseq_full,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_params_full,
    parse_via,
    parse_via_full,
)
from proxy.sip.message import Request, reply_headers_of
from proxy.sip.uri import AbsoluteUri, SipUri, parse_uri, parse_uri_full

# --- references: the parsers as they were before the fast paths (regexes only) ----------


def reference_name_addr(value: str) -> NameAddr:
    """parse_name_addr as it was: QUOTED_RE, TOKEN_RE, parse_uri_full, parse_params_full."""
    text = value.strip(" \t")
    display: str | None = None
    if text.startswith('"'):
        match = abnf.QUOTED_RE.match(text)
        if match is None:
            raise BadHeader("Unbalanced quotes in display name")
        display = abnf.QUOTED_PAIR_RE.sub(lambda m: m.group(1), match.group(0)[1:-1])
        text = text[match.end() :].lstrip(" \t")
        if not text.startswith("<"):
            raise BadHeader("Quoted display name not followed by <URI>")
    elif "<" in text:
        lt = text.index("<")
        words = text[:lt].split()
        if not all(abnf.TOKEN_RE.fullmatch(word) for word in words):
            raise BadHeader("Malformed display name (must be tokens or a quoted string)")
        display = " ".join(words) if words else None
        text = text[lt:]
    if text.startswith("<"):
        gt = text.find(">")
        if gt < 0:
            raise BadHeader("Missing > after URI")
        uri_text = text[1:gt]
        rest = text[gt + 1 :]
    else:
        uri_text, sep, rest = text.partition(";")
        uri_text = uri_text.rstrip(" \t")
        rest = sep + rest
        if "," in uri_text or "?" in uri_text:
            raise BadHeader("URI with ',' or '?' must be enclosed in <> (RFC 3261 §20.10)")
    try:
        uri = parse_uri_full(uri_text)
    except SipParseError as exc:
        raise BadHeader(exc.reason) from None
    return NameAddr(display, uri, parse_params_full(rest, "name-addr"))


def reference_max_forwards(value: str) -> int:
    """SipMessage.max_forwards as it was (DIGITS_RE only)."""
    match = abnf.DIGITS_RE.fullmatch(value)
    if match is None or int(match.group(1)) > 255:
        raise BadHeader("Malformed Max-Forwards header")
    return int(match.group(1))


def _first(request: Request, key: str) -> str | None:
    return next((h.value for h in request.headers if h.key == key), None)


def _single_name_addr(request: Request, name: str) -> NameAddr:
    text = _first(request, name.lower())
    if text is None:
        raise MissingHeader(f"Missing {name}")
    try:
        return reference_name_addr(text)
    except BadHeader as exc:
        raise BadHeader(f"Malformed {name} header: {exc.reason}") from None


def _reference_check(request: Request) -> None:
    if request.version.upper() != "SIP/2.0":
        raise VersionNotSupported(f"SIP version {request.version} not supported")
    present = {h.key for h in request.headers}
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name.lower() not in present:
            raise MissingHeader(f"Missing {name}")
    for name in ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"):
        key = name.lower()
        values = {" ".join(h.value.split()) for h in request.headers if h.key == key}
        if len(values) > 1:
            raise BadHeader(f"Conflicting {name} headers")
    vias = [v for h in request.headers if h.key == "via" for v in parse_via_full(h.value)]
    if vias[0].params.get("branch") == "z9hG4bK":
        raise BadHeader("Via branch is only the magic cookie")
    _single_name_addr(request, "From")
    _single_name_addr(request, "To")
    call_id = _first(request, "call-id")
    assert call_id is not None
    if abnf.CALLID_RE.fullmatch(call_id) is None:
        raise BadHeader("Malformed Call-ID header")
    cseq_text = _first(request, "cseq")
    assert cseq_text is not None
    cseq = parse_cseq_full(cseq_text)
    max_forwards = _first(request, "max-forwards")
    if max_forwards is not None:
        reference_max_forwards(max_forwards)
    for header in request.headers:
        if header.key in ("contact", "route", "record-route"):
            if header.key == "contact" and header.value.strip() == "*":
                continue
            items = _split(header.value)
            if any(not item for item in items):
                raise BadHeader("Empty element in header list")
            for item in items:
                reference_name_addr(item)
        elif header.key == "date" and abnf.DATE_RE.fullmatch(header.value) is None:
            raise BadHeader("Malformed Date header (RFC 3261 §20.17 wants GMT rfc1123-date)")
    if cseq.method != request.method:
        raise BadHeader("CSeq method does not match the request method")
    uri = parse_uri_full(request.uri_text)
    if isinstance(uri, AbsoluteUri):
        raise BadUri(f"Unsupported URI scheme: {uri.scheme}", status=416)
    if isinstance(uri, SipUri) and uri.headers:
        raise BadUri("Request-URI must not contain headers")
    length = _first(request, "content-length")
    if length is not None:
        match = abnf.DIGITS_RE.fullmatch(length)
        if match is None:
            raise BadContentLength("Malformed Content-Length")
        if int(match.group(1)) != len(request.body):
            raise BadContentLength("Content-Length does not match the body")


def reference_check(request: Request) -> SipParseError | None:
    """check_request as it was, on the full parsers."""
    try:
        _reference_check(request)
    except SipParseError as error:
        error.method = request.method
        if error.reply_headers is None:
            error.reply_headers = reply_headers_of((h.name, h.value) for h in request.headers)
        return error
    return None


_ALNUM = "abcxyzABCXYZ0189"
_EDGE = "@:;=?%[]\"\\,<> \t-._!~*'()&+$/#`é\x00"
_atoms = st.sampled_from(
    [
        "sip",
        "sips",
        "SIP",
        "tel",
        "alice",
        "+33612345678",
        "192.0.2.1",
        "example.com",
        "a-b",
        "-a",
        "a-",
        "5060",
        "65535",
        "65536",
        "00001",
        "123456",
        "lr",
        "transport=udp",
        "tag=1928301774",
        "branch=z9hG4bK776",
        "rport",
        "received=192.0.2.9",
        "ttl=255",
        "ttl=256",
        "maddr=h.example",
        "z9hG4bK",
        "[2001:db8::1]",
        "%20",
        "%2",
        "INVITE",
        "SIP/2.0/UDP",
        "SIP/2.0/",
        '"Alice"',
        '"A\\"B"',
        "<",
        ">",
    ]
)
_piece = st.one_of(
    _atoms,
    st.text(_ALNUM, min_size=1, max_size=4),
    st.sampled_from(list(_EDGE)),
    st.text(max_size=3),
)
_text = st.lists(_piece, max_size=12).map("".join)

_CHECKED = settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])


def _outcome(func: Callable[[str], object], text: str) -> tuple[str, object]:
    try:
        return "ok", func(text)
    except SipParseError as exc:
        return type(exc).__name__, exc.reason


def _same(fast: Callable[[str], object], full: Callable[[str], object], text: str) -> None:
    assert _outcome(fast, text) == _outcome(full, text), text


@_CHECKED
@given(st.sampled_from(["sip:", "sips:", "SIP:", "tel:", ""]), _text)
@example("sip:", "alice@example.com:5060;transport=udp;lr")
@example("sip:", "a;b=c@h")
@example("sip:", "a:@h")
@example("sip:", "h.;x=")
@example("sip:", "h:65536")
@example("sip:", "h;a=b=c")
def test_uri_fast_path_equals_full(scheme: str, rest: str) -> None:
    """parse_uri (fast path first) == parse_uri_full for any text."""
    _same(parse_uri, parse_uri_full, scheme + rest)


@_CHECKED
@given(_text)
@example(";tag=1;lr")
@example(";a=;b")
@example(";received=::1")
@example("; a = b ")
@example(";")
def test_params_fast_path_equals_full(text: str) -> None:
    """parse_params == parse_params_full for any text."""
    _same(lambda t: parse_params(t, "x"), lambda t: parse_params_full(t, "x"), text)


@_CHECKED
@given(st.sampled_from(["SIP/2.0/UDP ", "SIP/2.0/tcp ", "SIP/2.0/UDP  ", "SIP/2.0/", ""]), _text)
@example("SIP/2.0/UDP ", "10.0.0.5:5060;branch=z9hG4bK-1;rport")
@example("SIP/2.0/UDP ", "h;ttl=256")
@example("SIP/2.0/UDP ", "h;branch")
@example("SIP/2.0/UDP ", "h;rport=x")
@example("SIP/2.0/UDP ", "h:0")
def test_via_fast_path_equals_full(start: str, rest: str) -> None:
    """parse_via == parse_via_full for any text."""
    _same(parse_via, parse_via_full, start + rest)


@_CHECKED
@given(
    st.one_of(
        st.integers(0, 2**32).map(str), st.text("0123456789", max_size=12), st.text(max_size=3)
    ),
    st.sampled_from([" ", "  ", "\t", "", " \t"]),
    _text,
)
@example("2147483647", " ", "BYE")
@example("2147483648", " ", "BYE")
@example("00000000001", " ", "BYE")
@example("1", " ", "INVITE ")
def test_cseq_fast_path_equals_full(number: str, space: str, method: str) -> None:
    """parse_cseq == parse_cseq_full for any text."""
    _same(parse_cseq, parse_cseq_full, number + space + method)


@_CHECKED
@given(
    st.sampled_from(["", '"Alice" ', '"A\\"B" ', "Bob ", '"x', "Bob Smith", '" ', '""']),
    st.sampled_from(["<", ""]),
    st.sampled_from(["sip:", "sips:", "tel:", ""]),
    _text,
    st.sampled_from([">", ""]),
    _text,
)
@example('"Agent" ', "<", "sip:", "+33100000001@10.0.0.5", ">", ";tag=f1")
@example("", "", "sip:", "alice@h", "", ";tag=1")
@example("", "", "sip:", "alice@h?x", "", "")
def test_name_addr_fast_paths_equal_full(
    display: str, lt: str, scheme: str, rest: str, gt: str, params: str
) -> None:
    """parse_name_addr == the regex-only implementation for any text."""

    def fast(text: str) -> NameAddr:
        return parse_name_addr(text)

    _same(fast, reference_name_addr, display + lt + scheme + rest + gt + params)


@_CHECKED
@given(st.one_of(st.integers(0, 300).map(str), st.text("0123456789 \t", max_size=5), _text))
@example("70")
@example("256")
@example("0070")
@example("²")
def test_max_forwards_fast_path_equals_full(value: str) -> None:
    """SipMessage.max_forwards == the DIGITS_RE reading for any value."""

    def fast(text: str) -> object:
        msg = Request("OPTIONS", "sip:a@b")
        msg.add("Max-Forwards", text)
        return msg.max_forwards

    _same(fast, reference_max_forwards, value)


_BASE = (
    b"INVITE sip:+33612345678@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-1-INVITE;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Agent" <sip:+33100000001@10.0.0.5>;tag=f1\r\n'
    b"To: <sip:+33612345678@192.0.2.1>\r\n"
    b"Call-ID: bench-1@10.0.0.5\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:pbx@10.0.0.5:5060>\r\n"
    b"Route: <sip:192.0.2.1:5060;transport=udp;lr>, <sip:p2.example.com;lr>\r\n"
    b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)
_lines = _BASE.split(b"\r\n")


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_lines) - 3),
            st.sampled_from(["drop", "dup", "edit", "swap"]),
            st.binary(max_size=6)
            | st.sampled_from([b"", b" ", b"0", b"2", b",", b"*", b"SIP/3.0"]),
            st.integers(0, 80),
        ),
        max_size=4,
    )
)
def test_check_request_equals_reference(ops: list[tuple[int, str, bytes, int]]) -> None:
    """check_request reports exactly what the original (all-regex) check reported."""
    lines = list(_lines)
    for index, op, data, pos in ops:
        if index >= len(lines) - 2:
            continue  # the blank line and the body stay
        line = lines[index]
        if op == "drop" and index > 0:
            del lines[index]
        elif op == "dup" and index > 0:
            lines.insert(index, line.replace(b"1", data or b"1") if pos % 2 else line)
        elif op == "edit":
            lines[index] = line[:pos] + data + line[pos + len(data) :]
        elif op == "swap" and index > 0:
            lines[index], lines[1] = lines[1], lines[index]
    try:
        first = parse_message(b"\r\n".join(lines))
        second = parse_message(b"\r\n".join(lines))
    except SipParseError:
        return
    if not isinstance(first, Request) or not isinstance(second, Request):
        return
    got = check_request(first)
    want = reference_check(second)
    assert (type(got).__name__, getattr(got, "reason", None), getattr(got, "status", None)) == (
        type(want).__name__,
        getattr(want, "reason", None),
        getattr(want, "status", None),
    )
    if got is not None and want is not None:
        assert got.reply_headers == want.reply_headers and got.method == want.method


def test_reference_helpers_are_the_regex_grammar() -> None:
    """The reference name-addr reader uses the full regex grammar (sanity check)."""
    assert abnf.QUOTED_RE.match('"a\\"b"') is not None
    try:
        reference_name_addr('"a')
    except BadHeader as exc:
        assert exc.reason == "Unbalanced quotes in display name"
    else:
        raise AssertionError("unbalanced quotes accepted")


@_CHECKED
@given(
    st.lists(
        st.sampled_from(["", " ", ",", "<sip:a@b>", '"x" <tel:+1>;a=b', "sip:c"])
        | _text.map(lambda t: [t]),
        max_size=4,
    ).map(lambda parts: "".join(p for part in parts for p in part))
)
def test_remembered_name_addrs_equal_fresh_parses(text: str) -> None:
    """A remembered parse equals a fresh one, and check_name_addr_list raises exactly what
    parse_name_addr_list raises, whether the values were seen before or not."""
    for _ in range(2):
        _same(parse_name_addr, reference_name_addr, text)
        _same(lambda t: check_name_addr_list(t), lambda t: parse_name_addr_list(t) and None, text)


def test_remembered_name_addr_is_a_copy() -> None:
    """Editing a returned NameAddr (or its URI) never changes what the next caller gets."""
    value = '"A" <sip:alice@example.com;transport=udp>;tag=1'
    first = parse_name_addr(value)
    first.params["tag"] = "changed"
    assert isinstance(first.uri, SipUri)
    first.uri.params["lr"] = None
    first.uri.host = "evil.example"
    second = parse_name_addr(value)
    assert second == reference_name_addr(value)
    assert second.params["tag"] == "1" and second.uri is not first.uri
    tel = parse_name_addr("<tel:+331;x=1>")
    tel.uri.params.clear()  # type: ignore[union-attr]
    assert parse_name_addr("<tel:+331;x=1>") == reference_name_addr("<tel:+331;x=1>")
    urn = parse_name_addr("<urn:service:sos>")
    assert urn == parse_name_addr("<urn:service:sos>") and urn is not parse_name_addr(
        "<urn:service:sos>"
    )


@_CHECKED
@given(st.one_of(st.integers(0, 99).map(str), st.text("0123456789 \t", max_size=4), _text))
@example("0")
@example("007")
def test_content_length_fast_check_equals_regex(value: str) -> None:
    """The serializer keeps a Content-Length line exactly when DIGITS_RE reads len(body)."""
    body = b"1234567"
    wire = b"OPTIONS sip:a@b SIP/2.0\r\nl: " + value.encode("utf-8", "surrogateescape")
    try:
        msg = parse_message(wire + b"\r\n\r\n" + body)
    except SipParseError:
        return
    match = abnf.DIGITS_RE.fullmatch(msg.headers[0].value)
    kept = match is not None and int(match.group(1)) == len(msg.body)
    assert (msg.headers[0].raw in msg.to_bytes().split(b"\r\n")) == kept


_LENGTH_TEXT = st.text(alphabet="0123456789 \t+-x\u0660", max_size=16)


@given(_LENGTH_TEXT, st.integers(min_value=0, max_value=20))
@example("0012", 12)
@example(" \t7 ", 7)
@example("1234567890123", 0)
@settings(max_examples=300)
def test_content_length_read_from_raw_bytes_agrees_with_digits_re(text: str, body: int) -> None:
    """The raw-bytes reading of Content-Length (parse and serialise) takes exactly the values
    DIGITS_RE takes: same framing, same error, same line kept or rewritten on output."""
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Content-Length: " + text.encode() + b"\r\n\r\n" + b"b" * body
    )
    match = abnf.DIGITS_RE.fullmatch(text.strip(" \t"))
    expected = int(match.group(1)) if match is not None else None
    try:
        message = parse_message(data)
    except BadContentLength:
        assert expected is None or expected > body
        return
    assert expected is not None and expected <= body
    assert message.body == b"b" * expected
    line = next(line for line in message.to_bytes().split(b"\r\n") if line.startswith(b"Cont"))
    assert line == b"Content-Length: " + text.encode()  # right already: forwarded as received
