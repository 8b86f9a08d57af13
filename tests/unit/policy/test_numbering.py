"""Caller-number normalisation: every notation of regulation.md §4/§8, overseas and foreign."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.policy.numbering import (
    DOM_PREFIXES,
    CallerNumber,
    NumberKind,
    national_to_e164,
    normalise_number,
    number_from_uri,
)

E164 = NumberKind.E164

# (input, e164, national, region)
NOTATIONS = [
    ("0162000001", "+33162000001", "0162000001", "FR"),
    ("+33162000001", "+33162000001", "0162000001", "FR"),
    ("0033162000001", "+33162000001", "0162000001", "FR"),
    ("33162000001", "+33162000001", "0162000001", "FR"),
    ("01 62 00 00 01", "+33162000001", "0162000001", "FR"),
    ("01.62.00.00.01", "+33162000001", "0162000001", "FR"),
    ("01-62-00-00-01", "+33162000001", "0162000001", "FR"),
    ("(01) 62 00 00 01", "+33162000001", "0162000001", "FR"),
    ("\u202f01\u00a062 00 00 01 ", "+33162000001", "0162000001", "FR"),
    ("+33 (0)1 62 00 00 01", "+33162000001", "0162000001", "FR"),
    ("+33(0)162000001", "+33162000001", "0162000001", "FR"),
    ("0033 (0)1 62 00 00 01", "+33162000001", "0162000001", "FR"),
    ("+33 6 12 34 56 78", "+33612345678", "0612345678", "FR"),
    ("tel:+33-1-62-00-00-01", "+33162000001", "0162000001", "FR"),
    ("tel:0162000001;phone-context=+33", "+33162000001", "0162000001", "FR"),
    ("TEL:+33162000001", "+33162000001", "0162000001", "FR"),
    ("tel:0162000001", "+33162000001", "0162000001", "FR"),
    ("sip:+33162000001@host;user=phone", "+33162000001", "0162000001", "FR"),
    ("sip:0162000001@host", "+33162000001", "0162000001", "FR"),
    ("sips:0162000001@host:5061;transport=tls", "+33162000001", "0162000001", "FR"),
    ("sip:%2B33162000001@host", "+33162000001", "0162000001", "FR"),
    ("sip:0162000001;phone-context=+33@host;user=phone", "+33162000001", "0162000001", "FR"),
    (
        "sip:+33162000001;tgrp=TG1;trunk-context=example.com@host;user=phone",
        "+33162000001", "0162000001", "FR",
    ),
    ('"Acme" <sip:+33162000001@host;user=phone>;tag=a1', "+33162000001", "0162000001", "FR"),
    # extended length (§4, S31): 14-digit national, +33 + 13 digits
    ("07000000000001", "+337000000000001", "07000000000001", "FR"),
    ("+337000000000001", "+337000000000001", "07000000000001", "FR"),
    ("09010000000001", "+339010000000001", "09010000000001", "FR"),
    ("0700500000001", "+33700500000001", "0700500000001", "FR"),
    # overseas national prefixes -> their own country codes (§8 DOM map)
    ("0262123456", "+262262123456", "0262123456", "RE"),
    ("0263012345", "+262263012345", "0263012345", "RE"),
    ("0692123456", "+262692123456", "0692123456", "RE"),
    ("0268812345", "+262268812345", "0268812345", "RE"),
    ("0947912345", "+262947912345", "0947912345", "RE"),
    ("0269601234", "+262269601234", "0269601234", "YT"),
    ("0639012345", "+262639012345", "0639012345", "YT"),
    ("0709351234", "+262709351234", "0709351234", "YT"),
    ("0947801234", "+262947801234", "0947801234", "YT"),
    ("0590123456", "+590590123456", "0590123456", "GP"),
    ("0590271234", "+590590271234", "0590271234", "BL"),
    ("0690123456", "+590690123456", "0690123456", "GP"),
    ("0947512345", "+590947512345", "0947512345", "GP"),
    ("0598712345", "+590598712345", "0598712345", "GP"),
    ("0594123456", "+594594123456", "0594123456", "GF"),
    ("0694123456", "+594694123456", "0694123456", "GF"),
    ("0709301234", "+594709301234", "0709301234", "GF"),
    ("0947612345", "+594947612345", "0947612345", "GF"),
    ("0596123456", "+596596123456", "0596123456", "MQ"),
    ("0696123456", "+596696123456", "0696123456", "MQ"),
    ("0697123456", "+596697123456", "0697123456", "MQ"),
    ("0709101234", "+596709101234", "0709101234", "MQ"),
    ("0947712345", "+596947712345", "0947712345", "MQ"),
    ("+262262123456", "+262262123456", "0262123456", "RE"),
    ("00262262123456", "+262262123456", "0262123456", "RE"),
    ("+596 696 12 34 56", "+596696123456", "0696123456", "MQ"),
    # an overseas number written under +33 gets its real country code back
    ("+33262123456", "+262262123456", "0262123456", "RE"),
    ("+33694123456", "+594694123456", "0694123456", "GF"),
    # Saint-Pierre-et-Miquelon (+508): 6-digit fixed NSN, 9-digit mobiles
    ("+508410000", "+508410000", "0508410000", "PM"),
    ("0508410000", "+508410000", "0508410000", "PM"),
    ("0708560000", "+508708560000", "0708560000", "PM"),
    ("+508 708 56 00 00", "+508708560000", "0708560000", "PM"),
    # foreign, validated by phonenumbers
    ("+4915112345678", "+4915112345678", None, "DE"),
    ("004915112345678", "+4915112345678", None, "DE"),
    ("4915112345678", "+4915112345678", None, "DE"),
    ("+44 (0)20 7946 0958", "+442079460958", None, "GB"),
    ("tel:030123456;phone-context=+49", "+4930123456", None, "DE"),
    ("tel:23456789;phone-context=+49-301", "+4930123456789", None, "DE"),
    ("+2697731234", "+2697731234", None, "KM"),
    ("+687 26 12 34", "+687261234", None, "NC"),
    ("+262800123456", "+262800123456", None, "RE"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "e164", "national", "region"), NOTATIONS)
def test_notation_normalises(text: str, e164: str, national: str | None, region: str) -> None:
    """Each notation gives the expected E.164, national form and region."""
    number = normalise_number(text)
    assert number.kind is E164, number.reason
    assert (number.e164, number.national, number.region) == (e164, national, region)
    assert number.raw == text


SHORT_CODES = ["3010", "3000", "3199", "3008", "3170", "3915", "3617",
               "118218", "118712", "1015", "1099", "15", "17", "18", "112", "114", "115",
               "119", "191", "196", "197", "116000", "116117", "33700", "110"]  # fmt: skip


@pytest.mark.parametrize("text", SHORT_CODES)
def test_short_codes_are_short(text: str) -> None:
    """French short codes have no E.164 form and keep their national form."""
    number = normalise_number(text)
    assert number.kind is NumberKind.SHORT
    assert number.e164 is None and number.canonical_tn is None
    assert number.national == text and number.region == "FR"


@pytest.mark.parametrize(
    "text",
    ["tel:3010;phone-context=+33", "sip:3010@pbx.example", "30 10"],
)
def test_short_codes_in_uris_and_with_separators(text: str) -> None:
    """Short codes are recognised in URIs and through separators."""
    number = normalise_number(text)
    assert (number.kind, number.national) == (NumberKind.SHORT, "3010")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1234567890123456", "longer than the 15 digits"),
        ("+3370000000000001", "longer than the 15 digits"),
        ("00337000000000000001", "longer than the 15 digits"),
        ("016200000", "national number must be"),
        ("01620000012", "national number must be"),
        ("+3316200000", "+33 must be followed by 9 digits"),
        ("+330162000001", "trunk prefix 0 written after +33"),
        ("+49151", "not a valid number for +49"),
        ("+999123456789", "not"),
        ("162000001", "without trunk prefix 0"),
        ("12", "without trunk prefix 0"),
        ("+33abc", "not a telephone number"),
        ("0162000001#", "not a telephone number"),
        ("*31#0162000001", "not a telephone number"),
        ("٠١٦٢٠٠٠٠٠١", "not a telephone number"),
        ("0162\x00000001", "not a telephone number"),
        ("+262590123456", "not a block of the French plan"),
        ("+262 12345", "+262 must be followed by 9 digits"),
        ("urn:service:sos", "unsupported URI scheme"),
        ("mailto:a@b", "unsupported URI scheme"),
        ("sip:pbx.example.com", "without a user part"),
        ("tel:0301;phone-context=+999", "unknown country code"),
        ("tel:030;phone-context=+abc", "unreadable phone-context"),
        ("THISISTOOLONGNAME", "not a telephone number"),
    ],
)
def test_invalid_inputs_give_a_reason(text: str, reason: str) -> None:
    """Unreadable numbers are INVALID, never an exception, and say why."""
    number = normalise_number(text)
    assert number.kind is NumberKind.INVALID
    assert number.e164 is None and number.national is None
    assert number.reason is not None and reason in number.reason


@pytest.mark.parametrize(
    "text",
    [
        "anonymous",
        "Anonymous",
        "ANONYMOUS",
        "restricted",
        "sip:anonymous@anonymous.invalid",
        "sip:Anonymous@pbx.example.com",
        "sip:+33162000001@anonymous.invalid",
        '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x',
        "sips:anonymous@ANONYMOUS.INVALID",
    ],
)
def test_anonymous_identities(text: str) -> None:
    """Withheld identities (RFC 3323) are ANONYMOUS."""
    number = normalise_number(text)
    assert number.kind is NumberKind.ANONYMOUS
    assert number.e164 is None


@pytest.mark.parametrize("text", ["MYSHOP", "sip:MYSHOP@sms.example", "Shop-24", "La Poste"])
def test_alphanumeric_senders(text: str) -> None:
    """Letter senders (SMS sender IDs) are ALPHANUMERIC, not INVALID."""
    number = normalise_number(text)
    assert number.kind is NumberKind.ALPHANUMERIC
    assert number.e164 is None and number.national is None


def test_canonical_tn_drops_the_plus() -> None:
    """canonical_tn is the PASSporT form of the E.164 number."""
    assert normalise_number("01 62 00 00 01").canonical_tn == "33162000001"
    assert normalise_number("0262123456").canonical_tn == "262262123456"


def test_caller_number_is_frozen() -> None:
    """CallerNumber values are immutable (they are shared between steps)."""
    number = normalise_number("0162000001")
    with pytest.raises(AttributeError):
        number.e164 = "+33100000000"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("national", "expected"),
    [
        ("0162000001", ("+33162000001", "FR")),
        ("0262123456", ("+262262123456", "RE")),
        ("0508410000", ("+508410000", "PM")),
        ("07000000000001", ("+337000000000001", "FR")),
        ("0012345678", None),
        ("162000001", None),
        ("01620000", None),
        ("0162abcdef", None),
    ],
)
def test_national_to_e164(national: str, expected: tuple[str, str] | None) -> None:
    """The national -> E.164 map used by the allocation store and number lists."""
    assert national_to_e164(national) == expected


def _valid_completion(prefix: str, cc: str) -> set[str]:
    """Regions libphonenumber gives to completions of a national prefix under +cc."""
    regions: set[str] = set()
    for fill in "0123456789":
        national = (prefix + fill * 10)[:10]
        parsed = phonenumbers.parse(f"+{cc}{national[1:]}", None)
        if phonenumbers.is_valid_number(parsed):
            regions.add(phonenumbers.region_code_for_number(parsed) or "?")
    return regions


@pytest.mark.parametrize(("prefix", "target"), sorted(DOM_PREFIXES.items()))
def test_dom_map_agrees_with_libphonenumber(prefix: str, target: tuple[str, str]) -> None:
    """Every overseas national prefix is a valid range of its country code (S28)."""
    cc, region = target
    regions = _valid_completion(prefix, cc)
    assert regions, f"no valid +{cc} number under {prefix}"
    if cc == "590":
        assert regions <= {"GP", "MF", "BL"}
    else:
        assert region in regions


def test_dom_map_covers_the_regulation_table() -> None:
    """Every DOM prefix listed in regulation.md §8 is in the map with its country code."""
    listed = {
        "262": "0262 0263 02688 0692 0693 07092 09479 0269 02689 0639 070935 070936 070937 09478",
        "590": "0590 05987 0690 0691 07090 09475",
        "594": "0594 05988 0694 070930 070931 070932 070933 09476",
        "596": "0596 05989 0696 0697 07091 09477",
    }
    for cc, prefixes in listed.items():
        for prefix in prefixes.split():
            assert DOM_PREFIXES[prefix][0] == cc, prefix


@pytest.mark.parametrize(
    "text",
    ["0162000001", "0262123456", "0694123456", "0508410000", "07000000000001", "0590271234"],
)
def test_national_and_e164_forms_round_trip(text: str) -> None:
    """Normalising the E.164 result gives back the same number."""
    first = normalise_number(text)
    assert first.e164 is not None
    again = normalise_number(first.e164)
    assert (again.e164, again.national, again.region) == (first.e164, first.national, first.region)


def test_number_from_uri_reads_parsed_uris() -> None:
    """Parsed proxy.sip URIs (SipUri/TelUri/AbsoluteUri) are read like their text."""
    uri_module = pytest.importorskip("proxy.sip.uri")
    cases = {
        "sip:+33162000001;tgrp=TG1;trunk-context=example.com@host;user=phone": "+33162000001",
        "tel:0162000001;phone-context=+33": "+33162000001",
        "tel:+33-1-62-00-00-01": "+33162000001",
        "sip:0262123456@pbx.example": "+262262123456",
    }
    for text, e164 in cases.items():
        assert number_from_uri(uri_module.parse_uri(text)).e164 == e164, text
    anonymous = number_from_uri(uri_module.parse_uri("sip:anonymous@anonymous.invalid"))
    assert anonymous.kind is NumberKind.ANONYMOUS
    urn = number_from_uri(uri_module.parse_uri("urn:service:sos"))
    assert urn.kind is NumberKind.INVALID


def test_number_from_uri_accepts_text() -> None:
    """number_from_uri also takes URI text, and bare numbers."""
    assert number_from_uri("sip:+33162000001@h;user=phone").e164 == "+33162000001"
    assert number_from_uri("0162000001").e164 == "+33162000001"
    assert number_from_uri("<tel:+33162000001>").e164 == "+33162000001"


def test_reason_says_how_a_number_was_read() -> None:
    """Valid numbers carry a reason naming the notation (audit trail)."""
    assert normalise_number("0033162000001").reason == "international (00 access prefix)"
    assert "country code corrected" in (normalise_number("+33262123456").reason or "")
    assert "without phone-context" in (normalise_number("tel:0162000001").reason or "")


def test_non_string_input_is_invalid() -> None:
    """A non-string (bad caller code) is INVALID rather than a crash."""
    number = normalise_number(None)  # type: ignore[arg-type]
    assert number.kind is NumberKind.INVALID


_URI_PREFIXES = st.sampled_from(["", "sip:", "sips:", "tel:", "<sip:", "+", "00", "0", "33"])


@given(st.text(max_size=60))
def test_normalise_number_never_raises(text: str) -> None:
    """Arbitrary text gives a CallerNumber whose fields agree with its kind."""
    _check_invariants(normalise_number(text))


@given(_URI_PREFIXES, st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_number_from_uri_never_raises(prefix: str, text: str) -> None:
    """URI-looking text, however broken, gives a CallerNumber."""
    _check_invariants(number_from_uri(prefix + text))
    _check_invariants(normalise_number(prefix + text))


@given(st.from_regex(r"\+?(00)?[0-9 .()\-]{1,25}", fullmatch=True))
def test_digit_strings_never_raise(text: str) -> None:
    """Number-shaped strings exercise the digit paths without raising."""
    _check_invariants(normalise_number(text))


def _check_invariants(number: CallerNumber) -> None:
    assert isinstance(number, CallerNumber)
    if number.kind is NumberKind.E164:
        assert number.e164 is not None and re.fullmatch(r"\+[1-9][0-9]{1,14}", number.e164)
    else:
        assert number.e164 is None
    if number.kind is NumberKind.INVALID:
        assert number.reason


SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "fr-numbering"

# ARCEP `Territoire` -> regions the normaliser may give (Réunion blocks are also numbered for
# Mayotte under "La Réunion - Océan indien").
_TERRITORY_REGIONS = {
    "Métropole": {"FR"},
    "National": {"FR"},
    "La Réunion": {"RE"},
    "La Réunion - Océan indien": {"RE", "YT"},
    "Mayotte": {"YT"},
    "Guadeloupe, St Martin et St Barthélemy": {"GP", "MF", "BL"},
    "Martinique": {"MQ"},
    "Guyane": {"GF"},
    "Saint Pierre et Miquelon": {"PM"},
}


@pytest.mark.skipif(
    not (SHARED / "MAJNUM.csv").is_file(),
    reason=f"shared ARCEP test data not found at {SHARED} (see its README.md)",
)
def test_region_mapping_agrees_with_every_majnum_block() -> None:
    """Each 10-digit MAJNUM block maps to a country code/region of its ARCEP territory."""
    mismatches = []
    with (SHARED / "MAJNUM.csv").open(encoding="latin-1", newline="") as handle:
        rows = csv.reader(handle, delimiter=";")
        next(rows)
        for prefix, first, _last, _code, territory, _date in rows:
            if len(first) != 10:
                continue
            mapped = national_to_e164(first)
            if mapped is None or mapped[1] not in _TERRITORY_REGIONS[territory]:
                mismatches.append((prefix, territory, mapped))
    assert mismatches == []


# --- fast paths against the general path ---------------------------------------------------

# Numbers near the fast paths' edges: metropolitan, overseas (DOM map, SPM 0508/07084),
# trunk 0 after +33, 0X0 national, wrong lengths, non-ASCII digits.
_NEAR_FRENCH = st.one_of(
    st.from_regex(r"\+33[0-9]{8,10}|0[0-9]{8,10}|\+33[0-9]{9}|0[1-9][0-9]{8}", fullmatch=True),
    st.sampled_from(
        [
            "+33262123456",
            "0262123456",
            "+33590123456",
            "0590123456",
            "0508412345",
            "+33508412345",
            "0708412345",
            "+33708412345",
            "0696123456",
            "+33062000001",
            "0062000001",
            "+33162000001",
            "0162000001",
            "+33１62000001",
            "0１62000001",
            "+33 162000001",
            " +33162000001 ",
            "0939512345",
            "+33939912345",
        ]
    ),
)
_HOSTS = st.sampled_from(
    [
        "10.0.0.1",
        "op.example",
        "anonymous.invalid",
        "Anonymous.Invalid.",
        "[2001:db8::1]:5060",
        "h:5061",
        "",
    ]
)
_PARAMS = st.sampled_from(
    [
        "",
        ";user=phone",
        ";phone-context=+49",
        ";Phone-Context=+33",
        ";phone-context=+262",
        ";user=phone;phone-context=example.com",
        "?subject=x",
        ";transport=tcp?h=phone-context",
    ]
)
_CONTEXTS = st.sampled_from([None, "+33", "+49", "+262", "example.com", "+", ""])


def _general_only() -> tuple[object, object]:
    """Switch the fast paths off (they answer None: the general path decides)."""
    import proxy.policy.numbering as numbering

    saved = numbering._fast_french, numbering._fast_sip
    numbering._fast_french = lambda *args: None  # type: ignore[assignment]
    numbering._fast_sip = lambda *args: None  # type: ignore[assignment]
    return saved


def _restore(saved: tuple[object, object]) -> None:
    import proxy.policy.numbering as numbering

    numbering._fast_french, numbering._fast_sip = saved  # type: ignore[assignment]


@given(_NEAR_FRENCH, _CONTEXTS)
def test_fast_french_equals_the_general_path(text: str, context: str | None) -> None:
    """`+33`/`0` + 9 digits read by the fast path give exactly the general path's number."""
    from proxy.policy.numbering import _fast_french, _from_text_general

    fast = _fast_french(text, text.strip(), context)
    if fast is not None:
        assert fast == _from_text_general(text, text.strip(), context)


@given(
    st.sampled_from(["sip:", "sips:", "tel:", "SIP:", "", "<sip:"]),
    _NEAR_FRENCH,
    st.sampled_from(["", ":secret", ";tgrp=7;trunk-context=x", "%31"]),
    _HOSTS,
    _PARAMS,
)
def test_fast_uri_paths_equal_the_general_path(
    scheme: str, number: str, userinfo: str, host: str, params: str
) -> None:
    """Every caller-number entry point gives, field for field, the same CallerNumber with the
    fast paths on as with them off, for URIs and bare numbers near the fast paths' edges."""
    at = "@" if scheme.endswith(":") and scheme.upper() != "TEL:" else ""
    if scheme in ("tel:", ""):
        texts = [f"{scheme}{number}{params}", number]
    else:
        texts = [f"{scheme}{number}{userinfo}{at}{host}{params}"]
    texts.append(f"{scheme}{number}{userinfo}@{host}{params}>;tag=1")
    fast = [(number_from_uri(t), normalise_number(t)) for t in texts]
    saved = _general_only()
    try:
        general = [(number_from_uri(t), normalise_number(t)) for t in texts]
    finally:
        _restore(saved)
    assert fast == general


def test_fast_french_region_check_is_national_to_e164_for_every_six_digit_prefix() -> None:
    """The fast path's set of non-metropolitan 6-digit prefixes agrees with `national_to_e164`
    for every 10-digit national number's first six digits (both ends of each block)."""
    from proxy.policy.numbering import _fast_french, national_to_e164

    for head in range(10_000, 100_000):
        for tail in ("0000", "9999"):
            national = f"0{head}{tail}"
            mapped = national_to_e164(national)
            fast = _fast_french(national, national, None)
            if mapped is not None and mapped[1] == "FR":
                assert fast is not None and (fast.e164, fast.region) == mapped, national
            else:
                assert fast is None, national


def _top_level_alternatives(pattern: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(pattern):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
    return [*parts, pattern[start:]]


@pytest.mark.parametrize("region", ["GP", "BL", "MF"])
def test_shared_590_patterns_leave_the_last_four_digits_free(region: str) -> None:
    """+590 is shared by GP, BL and MF; numbering.py picks the region once per 10,000-number
    block, which is only right while every pattern of the installed metadata ends in at least
    four free digits. A phonenumbers upgrade that breaks this fails here."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None and metadata.leading_digits is None
    kinds = ("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate",
             "shared_cost", "personal_number", "voip", "pager", "uan", "voicemail")  # fmt: skip
    for kind in kinds:
        desc = getattr(metadata, kind)
        if desc is None or not desc.national_number_pattern:
            continue
        for alternative in _top_level_alternatives(desc.national_number_pattern):
            tail = re.search(r"\\d\{(\d+)\}$", alternative)
            assert tail is not None and int(tail.group(1)) >= 4, (region, kind, alternative)


@given(st.sampled_from(["590", "690", "691", "976", "594", "596"]), st.integers(0, 999_999))
def test_590_region_is_libphonenumbers(prefix: str, tail: int) -> None:
    """The region numbering.py gives a +590 number (GP, BL or MF) is libphonenumber's."""
    number = normalise_number(f"+590{prefix}{tail:06d}")
    if number.e164 is None or not number.e164.startswith("+590"):
        return
    parsed = phonenumbers.parse(number.e164, None)
    expected = phonenumbers.region_code_for_number(parsed)
    assert number.region == (expected if expected and expected != "ZZ" else "GP"), number
