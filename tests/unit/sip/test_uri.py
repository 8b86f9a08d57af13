"""URI parsing and serialisation (RFC 3261 §19.1, §25.1; RFC 3966)."""

from __future__ import annotations

import pytest

from proxy.sip import AbsoluteUri, SipParseError, SipUri, TelUri, parse_uri
from proxy.sip.errors import BadUri


def test_sip_uri_fields() -> None:
    """All parts of a full sip: URI land in their fields."""
    uri = parse_uri(
        "sip:alice:secret@Atlanta.Example.COM:5070;transport=TCP;lr;Maddr=1.2.3.4?subject=hi&x=y"
    )
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password) == ("sip", "alice", "secret")
    assert (uri.host, uri.port) == ("atlanta.example.com", 5070)
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "1.2.3.4"}
    assert list(uri.params) == ["transport", "lr", "maddr"]
    assert uri.headers == {"subject": "hi", "x": "y"}
    assert uri.transport == "tcp" and uri.lr and uri.maddr == "1.2.3.4"


def test_sips_scheme_is_case_insensitive() -> None:
    """SIPS: in upper case is the sips scheme."""
    uri = parse_uri("SIPS:bob@example.com")
    assert isinstance(uri, SipUri) and uri.scheme == "sips"


def test_user_escapes_are_decoded_and_reescaped() -> None:
    """%22 and friends are decoded in user; str() escapes what needs escaping again."""
    uri = parse_uri("sip:%22al%20ice%22@example.com")
    assert isinstance(uri, SipUri)
    assert uri.user == '"al ice"'
    assert str(uri) == "sip:%22al%20ice%22@example.com"
    assert parse_uri(str(uri)) == uri


def test_escaped_null_is_kept() -> None:
    """%00 decodes to NUL and is not truncated (RFC 4475 escnull)."""
    uri = parse_uri("sip:null-%00-null@example.com")
    assert isinstance(uri, SipUri) and uri.user == "null-\x00-null"


def test_user_with_semicolon_and_escaped_at() -> None:
    """The user part may hold ';' and an escaped '@' (RFC 4475 semiuri, esc01)."""
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert isinstance(uri, SipUri)
    assert uri.user == "user;par=u@example.net" and uri.host == "example.com" and not uri.params


def test_ipv6_and_ipv4_hosts() -> None:
    """IPv6 references stay in brackets (lower-cased); IPv4 parses as a host."""
    six = parse_uri("sip:[2001:DB8::1]:5060")
    four = parse_uri("sip:192.0.2.1")
    assert isinstance(six, SipUri) and isinstance(four, SipUri)
    assert (six.host, six.port) == ("[2001:db8::1]", 5060)
    assert (four.host, four.user) == ("192.0.2.1", None)


def test_tel_uri() -> None:
    """tel: keeps the number as written and its parameters (RFC 3966)."""
    uri = parse_uri("tel:+33-1-62-00-00-01;phone-context=example.com;ext=12")
    assert uri == TelUri("+33-1-62-00-00-01", {"phone-context": "example.com", "ext": "12"})
    assert isinstance(uri, TelUri) and uri.is_global
    assert str(uri) == "tel:+33-1-62-00-00-01;phone-context=example.com;ext=12"


def test_other_schemes_are_exposed_not_rejected() -> None:
    """Unknown schemes come back as AbsoluteUri so the core can answer 416."""
    uri = parse_uri("soap.beep://192.0.2.103:3002")
    assert uri == AbsoluteUri("soap.beep", "soap.beep://192.0.2.103:3002")
    assert str(uri) == "soap.beep://192.0.2.103:3002"


@pytest.mark.parametrize(
    "text",
    [
        "sip:user@example.com; lr",
        "<sip:user@example.com>",
        "sip:us er@example.com",
        "sip:user@exa<mple.com",
        "sip:%zz@example.com",
        "sip:user@example.com:99999",
        "sip:user@[not:an:ipv6]",
        "sip:user@example.com;;lr",
        "sip:",
        "nocolon",
        "http://exa mple.com",
        "tel:abc xyz",
    ],
)
def test_malformed_uris_raise_bad_uri(text: str) -> None:
    """Malformed URIs raise BadUri (a SipParseError with status 400)."""
    with pytest.raises(BadUri) as info:
        parse_uri(text)
    assert isinstance(info.value, SipParseError) and info.value.status == 400


def test_sip_uri_str_round_trip() -> None:
    """str() of a parsed URI parses back to an equal object."""
    text = "sip:+33162000001;npdi@gw.example.net:5061;user=phone;lr?h=%3Cx%3E"
    uri = parse_uri(text)
    assert str(uri) == text
    assert parse_uri(str(uri)) == uri
