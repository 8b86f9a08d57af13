"""Caller-number normalisation for the French numbering plan (ARCEP) and foreign E.164.

Everything a trunk or PBX may put in a From/PAI user part is reduced to one `CallerNumber`:
the E.164 form (what MAN PASSporTs carry, without the "+"), the French-plan national form (what
ARCEP's MAJNUM blocks and the classification table of regulation.md §8 are written in), and the
ISO region. Nothing here decides policy; `proxy.policy.plan` classifies the result.

Rules follow regulation.md §4 and the normalisation notes at the top of §8:

* national format is trunk prefix 0 + 9 digits; "00" is the international access prefix, so
  "0033…" is "+33…"; "33" + 9 digits without "+" is also read as "+33…";
* the overseas departments share the national plan but have their own country codes
  (0262… is +262 262…, 0590… is +590 590…): `DOM_PREFIXES` is the map, from §8 completed with
  the libphonenumber region metadata (S28);
* extended-length numbers 0700…/0901… have 14 national digits (+33 + 13 digits, §4, S31);
  the overseas ones ARCEP allocates (07005–07009, 09015–09017) have 13;
* a caller ID never has more than 15 digits (E.164); short codes (3BPQ, 10XY, 118XYZ, 116XXX,
  emergency numbers, 33700) have no E.164 form and come back as `NumberKind.SHORT`.

`normalise_number` and `number_from_uri` never raise: anything unreadable is
`NumberKind.INVALID` with a `reason`.

Additions to the design contract: `national_to_e164(national)` and the `DOM_PREFIXES` map (used by
the allocation store and tests); `normalise_number` also accepts URI/name-addr text.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

import phonenumbers

if TYPE_CHECKING:
    from proxy.sip.uri import Uri

__all__ = [
    "DOM_PREFIXES",
    "CallerNumber",
    "NumberKind",
    "national_to_e164",
    "normalise_number",
    "number_from_uri",
]


class NumberKind(StrEnum):
    """What sort of caller identity a header carried."""

    E164 = "e164"
    SHORT = "short"
    ALPHANUMERIC = "alphanumeric"
    ANONYMOUS = "anonymous"
    INVALID = "invalid"


class CallerNumber(NamedTuple):
    """One caller identity, normalised.

    `e164` is set only for `NumberKind.E164`; `national` is the French-plan national form
    ("0162000001", "0262123456", or a short code "3010"), None for foreign numbers; `region` is
    the ISO region ("FR", "RE", "GP", …, or e.g. "DE"); `reason` says why a number is INVALID,
    or how it was recognised otherwise.

    A NamedTuple (immutable, like the frozen dataclass it was): built once per never-seen
    caller on the hot path, in about half the time a frozen dataclass takes.
    """

    raw: str
    kind: NumberKind
    e164: str | None = None
    national: str | None = None
    region: str | None = None
    reason: str | None = None

    @property
    def canonical_tn(self) -> str | None:
        """The E.164 number without "+": the PASSporT `orig.tn` form (RFC 8225 §5.2.1)."""
        return self.e164[1:] if self.e164 else None


# National prefix (with trunk 0) -> (country code, ISO region) for numbers of the French national
# plan that are dialled internationally under an overseas country code. The first five groups are
# regulation.md §8's DOM map; the 0939x / 0976x platform and polyvalent blocks and 0263 are
# completed from libphonenumber 9.0.43 region metadata (S28). Where libphonenumber gives a block
# to two regions (09396: GP and GF; 0976x: GF claims all of it) the more specific entry, and §2's
# text for 09395-09399, wins. Saint-Pierre-et-Miquelon (+508) is handled apart: its fixed numbers
# drop the "508" (0508 41 xx xx is +508 41 xx xx).
DOM_PREFIXES: dict[str, tuple[str, str]] = {
    # Réunion (+262, RE)
    "0262": ("262", "RE"), "0263": ("262", "RE"), "02688": ("262", "RE"),
    "0692": ("262", "RE"), "0693": ("262", "RE"), "07092": ("262", "RE"),
    "09479": ("262", "RE"), "09399": ("262", "RE"), "09762": ("262", "RE"),
    "09763": ("262", "RE"),
    # Mayotte (+262, YT)
    "0269": ("262", "YT"), "02689": ("262", "YT"), "0639": ("262", "YT"),
    "070935": ("262", "YT"), "070936": ("262", "YT"), "070937": ("262", "YT"),
    "09478": ("262", "YT"), "09398": ("262", "YT"), "09769": ("262", "YT"),
    # Guadeloupe, Saint-Martin, Saint-Barthélemy (+590; region refined by libphonenumber)
    "0590": ("590", "GP"), "05987": ("590", "GP"), "0690": ("590", "GP"),
    "0691": ("590", "GP"), "07090": ("590", "GP"), "09475": ("590", "GP"),
    "09395": ("590", "GP"), "09760": ("590", "GP"), "09761": ("590", "GP"),
    "09768": ("590", "GP"),
    # Guyane (+594, GF)
    "0594": ("594", "GF"), "05988": ("594", "GF"), "0694": ("594", "GF"),
    "070930": ("594", "GF"), "070931": ("594", "GF"), "070932": ("594", "GF"),
    "070933": ("594", "GF"), "09476": ("594", "GF"), "09396": ("594", "GF"),
    "09764": ("594", "GF"), "09765": ("594", "GF"),
    # Martinique (+596, MQ)
    "0596": ("596", "MQ"), "05989": ("596", "MQ"), "0696": ("596", "MQ"),
    "0697": ("596", "MQ"), "07091": ("596", "MQ"), "09477": ("596", "MQ"),
    "09397": ("596", "MQ"), "09766": ("596", "MQ"), "09767": ("596", "MQ"),
}  # fmt: skip

_DOM_PREFIX_LENGTHS = tuple(sorted({len(p) for p in DOM_PREFIXES}, reverse=True))
_DOM_COUNTRY_CODES = frozenset(cc for cc, _ in DOM_PREFIXES.values())
_CC_MAIN_REGION = {"262": "RE", "590": "GP", "594": "GF", "596": "MQ", "508": "PM"}

# SPM (+508): 0508 + 6 digits are fixed lines with a 6-digit E.164 NSN; 0708 4x/5x are mobiles
# with a 9-digit NSN (libphonenumber PM metadata, S28; ARCEP MAJNUM lists 0508 4x, 0508 5x and
# 0708 56 as "Saint Pierre et Miquelon"). regulation.md §9 item 8 marks SPM treatment uncertain.
_SPM_MOBILE = re.compile(r"07084[0-5]\d{4}|07085[0-6]\d{4}")

# Short codes of the French plan (regulation.md §4, §8): emergency 15/17/18 and 1XY (112, 114,
# 115, 119, 191, 196, 197, …), 10XY operator assistance, 116XXX, 118XYZ directories, 3BPQ, 33700.
_SHORT = re.compile(r"1[578]|1\d\d|10\d\d|11[68]\d{3}|3\d{3}|33700")

# Extended-length national numbers (§4, S31): 0700/0901 + 10 digits (metropolitan, 14 digits);
# ARCEP's overseas extended blocks 07005-07009 / 09015-09017 are 13 digits (MAJNUM).
_EXTENDED_14 = re.compile(r"0(?:700|901)\d{10}")
_EXTENDED_13 = re.compile(r"0(?:700[5-9]|901[5-7])\d{8}")

_ANONYMOUS_USERS = frozenset(
    # RFC 3323 §4.1.1.3 "anonymous", plus the words gateways use for a withheld CLI.
    {"anonymous", "restricted", "private", "unavailable", "unknown", "withheld"}
)
_ALPHANUMERIC = re.compile(r"[A-Za-z][A-Za-z0-9 ._&'-]{0,10}")
# Visual separators of RFC 3966 §5.1.1 plus the spaces people paste (no-break, narrow no-break).
_SEPARATORS = re.compile(r"[\s.\-()/\[\]]+")
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")
_DIGITS = re.compile(r"[0-9]+")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # RFC 3986 §3.1

_MAX_E164_DIGITS = 15  # ITU-T E.164 §6.1; caller IDs never carry routing prefixes (§4)


def _invalid(raw: str, reason: str) -> CallerNumber:
    return CallerNumber(raw=raw, kind=NumberKind.INVALID, reason=reason)


def _dom_for_national(national: str) -> tuple[str, str] | None:
    """The (country code, region) of a 10-digit national number in an overseas block, if any."""
    for length in _DOM_PREFIX_LENGTHS:
        hit = DOM_PREFIXES.get(national[:length])
        if hit is not None:
            return hit
    return None


def national_to_e164(national: str) -> tuple[str, str] | None:
    """Map a French-plan national number (trunk 0 included) to (E.164, region), or None.

    Public helper (an addition to the design contract) shared with the allocation store and the
    number lists. Accepts 10-digit numbers and the 13/14-digit extended-length ones.
    """
    if not national.startswith("0") or not national.isascii() or not national.isdigit():
        return None
    if len(national) == 10:
        if national[1] == "0":
            return None
        if national.startswith("0508"):
            return "+508" + national[4:], "PM"
        if _SPM_MOBILE.fullmatch(national):
            return "+508" + national[1:], "PM"
        dom = _dom_for_national(national)
        if dom is not None:
            cc, region = dom
            return f"+{cc}{national[1:]}", region
        return "+33" + national[1:], "FR"
    if _EXTENDED_14.fullmatch(national) or _EXTENDED_13.fullmatch(national):
        # Overseas extended blocks have no documented country code (regulation.md §4 only
        # covers metropolitan ones): keep +33, which is how ARCEP numbers them nationally.
        return "+33" + national[1:], "FR"
    return None


def _from_national(raw: str, national: str, how: str) -> CallerNumber:
    mapped = national_to_e164(national)
    if mapped is None:
        if national.startswith("00"):
            return _invalid(raw, "international prefix 00 without a country code")
        return _invalid(
            raw,
            "national number must be 0 + 9 digits (13/14 for 0700/0901), "
            f"got {len(national)} digits",
        )
    e164, region = mapped
    if region == "GP":
        region = _refine_region(e164, region)
    return CallerNumber(raw, NumberKind.E164, e164, national, region, how)


def _refine_region(e164: str, fallback: str) -> str:
    """Pick GP/MF/BL (+590 is shared) from libphonenumber's metadata."""
    return _block_region(e164[:-4], len(e164), fallback)


@lru_cache(maxsize=4096)
def _block_region(stem: str, length: int, fallback: str) -> str:
    # libphonenumber tells GP, BL and MF apart by their number patterns, which all end in at
    # least four free digits (a test checks the installed metadata): the region of a number
    # is its 10,000-number block's, asked once per block (a parse and a region lookup cost
    # ~70 µs, which every new Guadeloupe caller paid).
    try:
        parsed = phonenumbers.parse(stem.ljust(length, "0"), None)
    except phonenumbers.NumberParseException:
        return fallback
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "ZZ" else fallback


def _from_french_nsn(raw: str, nsn: str, how: str) -> CallerNumber:
    """+33 followed by `nsn`: 9 digits, or 12/13 for the extended-length ranges."""
    if len(nsn) == 10 and nsn.startswith("0"):
        return _invalid(raw, "trunk prefix 0 written after +33 (write +33 (0)1… or +331…)")
    national = "0" + nsn
    if not (
        (len(nsn) == 9 and nsn[0] != "0")
        or _EXTENDED_14.fullmatch(national)
        or _EXTENDED_13.fullmatch(national)
    ):
        return _invalid(raw, f"+33 must be followed by 9 digits (13 for 700/901), got {len(nsn)}")
    result = _from_national(raw, national, how)
    if result.e164 is not None and not result.e164.startswith("+33"):
        # An overseas block written under +33: E.164 (and MAN orig.tn) use the DOM code (§4).
        return CallerNumber(
            raw, result.kind, result.e164, result.national, result.region,
            f"{how}; overseas block, country code corrected from +33",
        )  # fmt: skip
    return result


def _from_international(raw: str, digits: str, how: str) -> CallerNumber:
    """`digits` is an E.164 number without "+"."""
    if len(digits) > _MAX_E164_DIGITS:
        return _invalid(raw, f"{len(digits)} digits: longer than the 15 digits E.164 allows")
    if not digits or digits[0] == "0":
        return _invalid(raw, "country code cannot start with 0")
    if digits.startswith("33"):
        return _from_french_nsn(raw, digits[2:], how)
    cc3 = digits[:3]
    if cc3 in _DOM_COUNTRY_CODES:
        nsn = digits[3:]
        if len(nsn) != 9:
            return _invalid(raw, f"+{cc3} must be followed by 9 digits, got {len(nsn)}")
        national = "0" + nsn
        mapped = national_to_e164(national)
        if mapped is None or mapped[0] != "+" + digits:
            # Inside +262/+590/+594/+596 but outside the national blocks mapped there (e.g. a
            # +262 80… toll-free): keep it if libphonenumber knows it, without a national form.
            return _outside_dom_map(raw, digits, how)
        e164, region = mapped
        if cc3 == "590":
            region = _refine_region(e164, region)
        return CallerNumber(raw, NumberKind.E164, e164, national, region, how)
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        return _invalid(raw, f"not an E.164 number: {exc}")
    foreign_region = phonenumbers.region_code_for_number(parsed)
    if not phonenumbers.is_valid_number(parsed):
        where = f"+{parsed.country_code} ({foreign_region or 'unknown'})"
        return _invalid(raw, f"not a valid number for {where} per phonenumbers")
    foreign_national: str | None = None
    if cc3 == "508":
        nsn = digits[3:]
        # Saint-Pierre-et-Miquelon is in ARCEP's plan: 6-digit fixed numbers are 0508 + NSN.
        foreign_national = "0508" + nsn if len(nsn) == 6 else "0" + nsn
    return CallerNumber(raw, NumberKind.E164, "+" + digits, foreign_national, foreign_region, how)


def _outside_dom_map(raw: str, digits: str, how: str) -> CallerNumber:
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:  # pragma: no cover - CC is known
        return _invalid(raw, f"not an E.164 number: {exc}")
    if not phonenumbers.is_valid_number(parsed):
        return _invalid(raw, f"+{digits[:3]} {digits[3:7]}… is not a block of the French plan")
    region = phonenumbers.region_code_for_number(parsed)
    return CallerNumber(
        raw, NumberKind.E164, "+" + digits, None, region,
        f"{how}; valid for {region} but outside the French plan's overseas blocks",
    )  # fmt: skip


def _fast_french(raw: str, text: str, phone_context: str | None) -> CallerNumber | None:
    """The metropolitan 10-digit numbers written `+33` + 9 digits or `0` + 9 digits, read
    without the regular expressions of the general path; None for anything else.

    Almost every caller ID a French call centre sends is one of these two forms, and the
    general path (`_from_text_general`) spends most of its time proving the text is not one of
    the rarer ones. The answer is, field for field, what the general path gives (a property
    test checks it): `+33` is read as international whatever the phone-context; `0…` as
    national unless a foreign phone-context applies; overseas and SPM blocks (region other
    than FR) and everything else are left to the general path.
    """
    size = len(text)
    if size == 12 and text.startswith("+33"):
        nsn = text[3:]
        how = "international (+)"
    elif (
        size == 10
        and text[0] == "0"
        and (phone_context is None or phone_context == "+33" or phone_context[:1] != "+")
    ):
        nsn = text[1:]
        how = "national"
    else:
        return None
    if not (nsn.isascii() and nsn.isdigit()) or nsn[0] == "0":
        return None
    national = "0" + nsn
    # `national_to_e164(national)` is ("+33" + nsn, "FR") unless the number is in an overseas
    # or SPM block, which the first six digits decide: one set probe instead of its checks.
    if national[:6] in _NOT_METRO_6:
        return None
    # tuple.__new__: the NamedTuple without its Python-level __new__ (same value).
    return tuple.__new__(CallerNumber, (raw, NumberKind.E164, "+33" + nsn, national, "FR", how))


def _not_metro_prefixes() -> frozenset[str]:
    """Every 6-digit national prefix (0 + 5 digits) under which `national_to_e164` gives a
    10-digit number a region other than FR: the overseas blocks (`DOM_PREFIXES`, 4 to 6
    digits), 0508 and the SPM mobiles 07084[0-5] / 07085[0-6]."""
    prefixes: set[str] = set()
    for prefix in (*DOM_PREFIXES, "0508"):
        free = 6 - len(prefix)
        prefixes.update(prefix + str(tail).zfill(free) for tail in range(10**free) if free)
        if not free:
            prefixes.add(prefix)
    prefixes.update(f"07084{d}" for d in "012345")
    prefixes.update(f"07085{d}" for d in "0123456")
    return frozenset(prefixes)


_NOT_METRO_6 = _not_metro_prefixes()


def _from_text(raw: str, text: str, phone_context: str | None = None) -> CallerNumber:
    """Normalise a telephone-number string that is not a URI."""
    text = text.strip()
    fast = _fast_french(raw, text, phone_context)
    if fast is not None:
        return fast
    return _from_text_general(raw, text, phone_context)


def _from_text_general(raw: str, text: str, phone_context: str | None = None) -> CallerNumber:
    """`_from_text` for every notation (`text` already stripped)."""
    if not text:
        return _invalid(raw, "empty")
    if text.lower() in _ANONYMOUS_USERS:
        return CallerNumber(raw, NumberKind.ANONYMOUS, reason=f"anonymous user {text!r}")
    if _ALPHANUMERIC.fullmatch(text):
        return CallerNumber(raw, NumberKind.ALPHANUMERIC, reason="alphanumeric sender")
    international = text.startswith("+")
    body = text[1:] if international else text
    if international or body.startswith("00"):
        # "+33 (0)1 62…": the bracketed trunk prefix is dropped after a country code (§8 notes).
        body = _TRUNK_ZERO.sub("", body)
    digits = _SEPARATORS.sub("", body)
    if not _DIGITS.fullmatch(digits):
        return _invalid(raw, "not a telephone number (characters other than digits and separators)")
    if len(digits) > _MAX_E164_DIGITS + 2:  # "00" + 15 digits is the longest legitimate form
        return _invalid(raw, f"{len(digits)} digits: longer than the 15 digits E.164 allows")
    if international:
        return _from_international(raw, digits, "international (+)")
    if digits.startswith("00"):
        return _from_international(raw, digits[2:], "international (00 access prefix)")
    if phone_context is not None and phone_context.startswith("+") and phone_context != "+33":
        return _from_local(raw, digits, phone_context)
    if len(digits) > _MAX_E164_DIGITS:
        return _invalid(raw, f"{len(digits)} digits: longer than the 15 digits E.164 allows")
    if digits.startswith("0"):
        return _from_national(raw, digits, "national")
    if _SHORT.fullmatch(digits):
        return CallerNumber(
            raw, NumberKind.SHORT, national=digits, region="FR", reason="short code"
        )
    if digits.startswith("33") and len(digits) in (11, 14, 15):
        return _from_french_nsn(raw, digits[2:], "E.164 without '+' (33…)")
    if len(digits) >= 11:
        return _from_international(raw, digits, "E.164 without '+'")
    return _invalid(raw, f"{len(digits)} digits without trunk prefix 0: not a French number")


def _from_local(raw: str, digits: str, context: str) -> CallerNumber:
    """A local number with a foreign `phone-context=+CC` (RFC 3966 §5.1.5)."""
    cc_digits = _SEPARATORS.sub("", context[1:])
    if not _DIGITS.fullmatch(cc_digits) or len(cc_digits) > _MAX_E164_DIGITS:
        return _invalid(raw, f"unreadable phone-context {context!r}")
    how = f"local number, phone-context={context}"
    region = "ZZ"
    cc = ""
    for size in (1, 2, 3):  # E.164 country codes are prefix-free, 1 to 3 digits
        cc = cc_digits[:size]
        region = phonenumbers.region_code_for_country_code(int(cc))
        if region != "ZZ":
            break
    if region == "ZZ":
        return _invalid(raw, f"unknown country code in phone-context {context!r}")
    if len(cc_digits) > len(cc):
        # A context with an area code ("+49-30"): the local digits follow it (RFC 3966 §5.1.5).
        return _from_international(raw, cc_digits + digits, how)
    if cc == "33":
        return _from_text(raw, digits)
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException as exc:
        return _invalid(raw, f"not a number in {region}: {exc}")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return _from_international(raw, e164[1:], how)


def _split_params(part: str) -> tuple[str, dict[str, str]]:
    """Split "number;name=value;…" into the number and lower-cased parameter names."""
    head, _, rest = part.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";") if rest else ():
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip()
    return head, params


def _from_user(
    raw: str, user: str | None, host: str, uri_params: dict[str, str], *, escaped: bool = True
) -> CallerNumber:
    """The user part of a sip:/sips: URI (RFC 3261 §19.1.1; RFC 4904 tgrp stripped)."""
    if host.lower().rstrip(".") == "anonymous.invalid":
        # RFC 3323 §4.1.1.3: the anonymous host marks a withheld identity whatever the user.
        return CallerNumber(raw, NumberKind.ANONYMOUS, reason="host anonymous.invalid")
    if not user:
        return _invalid(raw, "SIP URI without a user part")
    if escaped:
        user = unquote(user, errors="replace")
    number, params = _split_params(user)
    context = params.get("phone-context") or uri_params.get("phone-context")
    return _from_text(raw, number, context)


def _from_tel(raw: str, number: str, params: dict[str, str]) -> CallerNumber:
    """A tel: URI (RFC 3966): global "+…" or local with a phone-context."""
    number = unquote(number, errors="replace").strip()
    context = params.get("phone-context")
    if not number.startswith("+") and context is None:
        # RFC 3966 §5.1.5 makes phone-context mandatory for local numbers; French trunks omit it
        # and mean the national plan, so read them as such and say so.
        result = _from_text(raw, number)
        if result.kind is NumberKind.E164:
            return CallerNumber(
                raw, result.kind, result.e164, result.national, result.region,
                "local tel: number without phone-context, read as French national",
            )  # fmt: skip
        return result
    return _from_text(raw, number, context)


def _fast_sip(raw: str, text: str) -> CallerNumber | None:
    """`sip:+33…@host…` / `sip:0…@host…` with a plain user part, without building the
    parameter dictionaries of the general path; None when the general path must decide.

    Equal to `_parse_uri_text_general` (a property test checks it): the user part must be the
    whole number (no RFC 4904 parameters, no escapes); the host must not be anonymous.invalid;
    a national number must not carry a phone-context URI parameter (which may name another
    country). Everything else about the host and parameters does not change the number.
    """
    if text.startswith("sip:"):
        rest = text[4:]
    elif text.startswith("sips:"):
        rest = text[5:]
    else:
        return None
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        return None
    user = userinfo.partition(":")[0]
    if len(user) not in (10, 12):
        return None
    hostpart = hostpart.partition("?")[0]
    host = hostpart.partition(";")[0]
    if not host.startswith("["):
        host = host.partition(":")[0]
    if host.lower().rstrip(".") == "anonymous.invalid":
        return None
    if user[0] != "+" and "phone-context" in hostpart.lower():
        return None
    return _fast_french(raw, user, None)


def _parse_uri_text(raw: str, text: str) -> CallerNumber:
    fast = _fast_sip(raw, text)
    if fast is not None:
        return fast
    return _parse_uri_text_general(raw, text)


def _parse_uri_text_general(raw: str, text: str) -> CallerNumber:
    scheme, _, rest = text.partition(":")
    scheme = scheme.strip().lower()
    if scheme == "tel":
        number, params = _split_params(rest.partition("?")[0])
        return _from_tel(raw, number, params)
    if scheme in ("sip", "sips"):
        userinfo, at, hostpart = rest.partition("@")
        if not at:
            userinfo, hostpart = "", rest
        user = userinfo.partition(":")[0]  # drop a password
        hostpart = hostpart.partition("?")[0]
        host_and_port, params = _split_params(hostpart)
        host = host_and_port
        if not host.startswith("["):
            host = host.partition(":")[0]
        return _from_user(raw, user, host, params)
    return _invalid(raw, f"unsupported URI scheme {scheme!r}")


def number_from_uri(uri: Uri | str) -> CallerNumber:
    """Read the caller number out of a sip:/sips:/tel: URI (parsed `Uri` or text).

    Text may be a bare URI or a name-addr ('"Name" <sip:…>;tag=…'). Never raises.
    """
    if isinstance(uri, str):
        raw = uri
        text = uri.strip()
        if "<" in text:
            text = text.partition("<")[2].partition(">")[0]
        if ":" not in text:
            return _from_text(raw, text)
        fast = _fast_sip(raw, text)  # `_parse_uri_text`, one call shorter on the usual path
        return fast if fast is not None else _parse_uri_text_general(raw, text)
    raw = str(uri)
    # Duck-typed on proxy.sip.uri's SipUri / TelUri / AbsoluteUri so this module does not need the
    # SIP package at import time.
    number = getattr(uri, "number", None)
    if isinstance(number, str):
        params = {k.lower(): v or "" for k, v in getattr(uri, "params", {}).items()}
        return _from_tel(raw, number, params)
    host = getattr(uri, "host", None)
    if isinstance(host, str):
        user = getattr(uri, "user", None)
        params = {k.lower(): v or "" for k, v in getattr(uri, "params", {}).items()}
        # SipUri.user has its escapes decoded already (design.md): do not decode twice.
        user_text = user if isinstance(user, str) else None
        return _from_user(raw, user_text, host, params, escaped=False)
    return _parse_uri_text(raw, raw)


def normalise_number(text: str) -> CallerNumber:
    """Normalise any caller-number notation: national, +CC, 00CC, URIs, short codes.

    Never raises; unreadable input is `NumberKind.INVALID` with a `reason`.
    """
    if not isinstance(text, str):
        return _invalid(repr(text), "not a string")
    stripped = text.strip()
    if "<" in stripped or _URI_SCHEME.match(stripped):
        return number_from_uri(text)
    return _from_text(text, stripped)
