"""Header names and typed header values (RFC 3261 §7.3, §20, RFC 3581)."""

from __future__ import annotations

import pytest

from proxy.sip import (
    CSeq,
    NameAddr,
    SipUri,
    canonical_name,
    parse_name_addr,
    parse_via,
    split_values,
)
from proxy.sip.errors import BadHeader
from proxy.sip.headers import COMPACT_FORMS, parse_cseq
from proxy.sip.uri import AbsoluteUri

COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
    "x": "Session-Expires", "y": "Identity", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition",
}  # fmt: skip


@pytest.mark.parametrize(("short", "long"), sorted(COMPACT.items()))
def test_compact_forms_map_to_canonical_names(short: str, long: str) -> None:
    """Each compact form (either case) maps to its canonical long name."""
    assert canonical_name(short) == long
    assert canonical_name(short.upper()) == long


def test_compact_table_is_complete() -> None:
    """The table holds exactly the 19 registered compact forms."""
    assert COMPACT_FORMS == COMPACT


def test_canonical_name_long_forms_and_unknown() -> None:
    """Known names get their canonical spelling; unknown ones are returned as given."""
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("CSEQ") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Custom-Thing") == "X-Custom-Thing"


def test_split_values_respects_quotes_and_angles() -> None:
    """Commas inside quoted strings and <...> do not split."""
    value = '"Bell, Alexander" <sip:a@b;x=1,2>;q=1 , <sip:c@d>,,'
    assert split_values(value) == ['"Bell, Alexander" <sip:a@b;x=1,2>;q=1', "<sip:c@d>"]
    assert split_values('"a \\" , b" <sip:x@y>') == ['"a \\" , b" <sip:x@y>']


def test_via_fields_and_rport_flag() -> None:
    """Via gives protocol, transport, sent-by and params; bare rport is None (RFC 3581)."""
    (via,) = parse_via(
        "SIP/2.0/udp Host.Example.com:5070;branch=z9hG4bKabc;rport;ttl=16;maddr=224.2.0.1"
    )
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "host.example.com",
        5070,
    )
    assert via.branch == "z9hG4bKabc"
    assert via.rport is None and via.has_rport
    assert via.ttl == 16 and via.maddr == "224.2.0.1"
    assert (
        str(via)
        == "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bKabc;rport;ttl=16;maddr=224.2.0.1"
    )


def test_via_rport_value_and_received() -> None:
    """rport with a value is an int; received may be IPv4 or a bare IPv6 address."""
    (via,) = parse_via("SIP/2.0/UDP 10.0.0.1;rport=5061;received=2001:db8::9;branch=z9hG4bK1")
    assert via.rport == 5061 and via.received == "2001:db8::9"
    assert not parse_via("SIP/2.0/UDP h;branch=z9hG4bK1")[0].has_rport


def test_via_ipv6_sent_by_and_multiple_values() -> None:
    """IPv6 sent-by keeps its brackets; one line may carry several via-parms."""
    vias = parse_via(
        "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK1 , SIP/2.0/TCP b.example;branch=z9hG4bK2"
    )
    assert [(v.host, v.port, v.transport) for v in vias] == [
        ("[2001:db8::1]", 5061, "TLS"),
        ("b.example", None, "TCP"),
    ]


def test_via_with_lws_around_slashes_and_params() -> None:
    """SWS is allowed around '/', ';', '=' (RFC 4475 wsinv)."""
    (via,) = parse_via("SIP  /   2.0 /UDP    192.0.2.2   ;  branch  =   z9hG4bK9ikj8")
    assert (via.protocol, via.transport, via.host, via.branch) == (
        "SIP/2.0",
        "UDP",
        "192.0.2.2",
        "z9hG4bK9ikj8",
    )


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host;received=example.com",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP [zz::1]",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP a;branch=z9hG4bK1,",
    ],
)
def test_malformed_via_raises(value: str) -> None:
    """Malformed Via values raise BadHeader."""
    with pytest.raises(BadHeader):
        parse_via(value)


def test_cseq_bounds_and_leading_zeros() -> None:
    """CSeq accepts leading zeros and up to 2**31-1, not beyond."""
    assert parse_cseq("0009 INVITE") == CSeq(9, "INVITE")
    assert parse_cseq(f"{2**31 - 1}   BYE") == CSeq(2**31 - 1, "BYE")
    for bad in (f"{2**31} BYE", "36893488147419103232 REGISTER", "-1 BYE", "1", "x INVITE"):
        with pytest.raises(BadHeader):
            parse_cseq(bad)


def test_name_addr_quoted_display_name_with_escapes() -> None:
    """Quoted display names are unescaped; str() quotes them again."""
    na = parse_name_addr('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert na.display_name == 'J Rosenberg \\"'
    assert na.tag == "98asjd8"
    assert parse_name_addr(str(na)) == na


def test_name_addr_token_display_name_without_space() -> None:
    """A token display name may touch the '<' (RFC 4475 lwsdisp)."""
    na = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert na.display_name == "caller" and na.tag == "323"


def test_addr_spec_params_belong_to_the_header() -> None:
    """Without <>, ';' params after the URI are header params (RFC 3261 §20.10)."""
    na = parse_name_addr("sip:+1650@ss1.example.net;user=phone;tag=x")
    assert isinstance(na.uri, SipUri) and na.uri.params == {}
    assert na.params == {"user": "phone", "tag": "x"}
    inside = parse_name_addr("<sip:+1650@ss1.example.net;user=phone>;tag=x")
    assert isinstance(inside.uri, SipUri) and inside.uri.params == {"user": "phone"}


def test_name_addr_with_other_scheme() -> None:
    """Unknown schemes are fine in name-addrs (RFC 4475 unksm2)."""
    assert parse_name_addr("isbn:2983792873").uri == AbsoluteUri("isbn", "isbn:2983792873")
    assert parse_name_addr("<http://www.example.com>;tag=3").tag == "3"


def test_name_addr_str_always_uses_angle_brackets() -> None:
    """str() writes <uri> so URI params cannot be confused with header params."""
    na = NameAddr(None, SipUri(user="a", host="b", params={"lr": None}), {"tag": "1"})
    assert str(na) == "<sip:a@b;lr>;tag=1"


@pytest.mark.parametrize(
    "value",
    [
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        '"Watson, Thomas" < sip:t.watson@example.org >',
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        '"Joe" <sip:joe@example.org>;;;;',
        "<sip:joe@example.org",
        '"Joe" sip:joe@example.org',
    ],
)
def test_malformed_name_addr_raises(value: str) -> None:
    """Broken quoting, unquoted commas, spaces in <>, '?' without <> raise BadHeader."""
    with pytest.raises(BadHeader):
        parse_name_addr(value)
