"""Caller identity extraction from SIP requests and from header values."""

from __future__ import annotations

from proxy.policy.identity import identity_from_request, identity_from_values, parse_privacy
from proxy.policy.settings import SourcePolicy
from proxy.sip.message import Header, Request


def request(
    *headers: tuple[str, str], method: str = "INVITE", uri: str = "sip:+33299000001@op"
) -> Request:
    """A request with the mandatory headers plus `headers`."""
    base = [
        ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"),
        ("To", "<sip:+33299000001@op>"),
        ("Call-ID", "abc@pbx"),
        ("CSeq", f"1 {method}"),
        ("Max-Forwards", "70"),
    ]
    names = {name for name, _ in headers}
    if "From" not in names:
        base.append(("From", "<sip:+33162000001@pbx>;tag=1"))
    return Request(method, uri, [Header(n, v) for n, v in [*base, *headers]])


def test_pai_sip_and_tel_values_all_read():
    """Both PAI values (sip and tel), in one header or two, are read."""
    one = identity_from_request(
        request(("P-Asserted-Identity", "<sip:+33162000002@pbx;user=phone>, <tel:+33162000003>")),
        SourcePolicy(),
    )
    two = identity_from_request(
        request(
            ("P-Asserted-Identity", '"Line" <sip:0162000002@pbx>'),
            ("P-Asserted-Identity", "<tel:0162000003;phone-context=+33>"),
        ),
        SourcePolicy(),
    )
    for identity in (one, two):
        assert [p.e164 for p in identity.pai] == ["+33162000002", "+33162000003"]
    assert one.from_number.e164 == "+33162000001"
    assert one.call_id == "abc@pbx"
    assert one.destination == "+33299000001"


def test_anonymous_from_uses_pai_number():
    """An anonymous From is masked and the caller is PAI's number."""
    identity = identity_from_request(
        request(
            ("From", '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=9'),
            ("P-Asserted-Identity", "<sip:+33162000005@pbx>"),
        ),
        SourcePolicy(),
    )
    assert identity.masked
    assert identity.caller is not None and identity.caller.e164 == "+33162000005"


def test_privacy_values():
    """Privacy id/header/user mask; none/session do not; case and spacing ignored."""
    assert parse_privacy("id; Critical") == frozenset({"id", "critical"})
    for value, masked in [
        ("id", True),
        ("header", True),
        ("user", True),
        ("none", False),
        ("session", False),
        (None, False),
    ]:
        identity = identity_from_values(
            method="INVITE", from_value="sip:+33162000001@pbx", privacy=value
        )
        assert identity.masked is masked, value


def test_diversion_first_value_is_the_diverting_number():
    """The first Diversion value is the most recent diversion (RFC 5806)."""
    identity = identity_from_request(
        request(
            ("From", "<sip:+33699999999@consumer>;tag=1"),
            (
                "Diversion",
                "<sip:+33144000000@pbx>;reason=unconditional;counter=1,"
                " <sip:+33144000009@pbx>;reason=busy",
            ),
        ),
        SourcePolicy(),
    )
    assert identity.diverted_from is not None
    assert identity.diverted_from.e164 == "+33144000000"


def test_history_info_mp_names_the_diverted_entry():
    """History-Info mp=<index> points at the retargeted entry (RFC 7044)."""
    identity = identity_from_values(
        method="INVITE",
        from_value="sip:+33699999999@consumer",
        history_info=[
            "<sip:+33144000000@pbx>;index=1",
            "<sip:+33299000001@op?Reason=SIP%3Bcause%3D302>;index=1.1;mp=1",
        ],
    )
    assert identity.diverted_from is not None
    assert identity.diverted_from.e164 == "+33144000000"


def test_history_info_cause_param_without_mp():
    """Without mp, a cause URI parameter marks the previous entry as diverted (RFC 4458)."""
    identity = identity_from_values(
        method="INVITE",
        from_value="sip:+33699999999@consumer",
        history_info=[
            "<sip:+33144000001@pbx>;index=1",
            "<sip:+33299000001@op;cause=302>;index=1.1",
        ],
    )
    assert identity.diverted_from is not None
    assert identity.diverted_from.e164 == "+33144000001"


def test_history_info_without_retargeting_is_not_a_diversion():
    """Plain History-Info entries (rc, no cause, no mp) do not divert."""
    identity = identity_from_values(
        method="INVITE",
        from_value="sip:+33162000001@pbx",
        history_info=[
            "<sip:+33299000001@op>;index=1",
            "<sip:+33299000001@10.0.0.9>;index=1.1;rc=1",
        ],
    )
    assert identity.diverted_from is None


def test_header_marker_maps_kind_and_principal():
    """A header marker value maps to kind and principal; unknown values are unmarked."""
    policy = SourcePolicy.model_validate(
        {
            "kind": "automated",
            "marker": {
                "header": "X-Campaign",
                "values": {"manual-acme": {"kind": "interpersonal", "principal": "acme"}},
            },
        }
    )
    marked = identity_from_request(request(("X-Campaign", " manual-acme ")), policy)
    assert (marked.kind, marked.principal, marked.marker_value) == (
        "interpersonal",
        "acme",
        "manual-acme",
    )
    unknown = identity_from_request(request(("X-Campaign", "robot")), policy)
    assert (unknown.kind, unknown.principal) == ("automated", None)
    assert unknown.notes
    unmarked = identity_from_request(request(), policy)
    assert (unmarked.kind, unmarked.marker_value) == ("automated", None)


def test_trunk_group_marker_in_contact_user_part():
    """An RFC 4904 tgrp inside the Contact user part is found."""
    policy = SourcePolicy.model_validate(
        {
            "kind": "automated",
            "marker": {"param": "tgrp", "values": {"agents": {"kind": "interpersonal"}}},
        }
    )
    identity = identity_from_request(
        request(("Contact", "<sip:+33162000001;tgrp=agents;trunk-context=pbx.example@10.0.0.1>")),
        policy,
    )
    assert identity.kind == "interpersonal"
    via_ruri = identity_from_request(request(uri="sip:+33299000001@op;tgrp=agents"), policy)
    assert via_ruri.marker_value == "agents"


def test_alphanumeric_and_invalid_from_are_typed():
    """Sender names and garbage keep their kind for the rules."""
    alpha = identity_from_values(method="MESSAGE", from_value="<sip:Acme@sms>")
    assert alpha.from_number.kind == "alphanumeric"
    bad = identity_from_values(method="INVITE", from_value="sip:+331234@pbx")
    assert bad.from_number.kind == "invalid"
