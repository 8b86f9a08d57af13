"""Who a request says is calling: the caller identity the rules engine judges.

Read from a SIP request (the policy step) or from plain header values (`sipguard check`, the
CDR checker), through one code path:

* every P-Asserted-Identity value, sip and tel (RFC 3325 §9.1 allows one of each);
* From, and Privacy (RFC 3323 §4.2 `header`/`user`, RFC 3325 §9.3 `id`): an anonymous From or a
  Privacy that hides the identity makes the number *masked*; the number judged for a masked
  From is PAI's (the MAN does the same: orig from PAI when From is anonymous, man_fr.md §2);
* Diversion (RFC 5806) or History-Info (RFC 7044) showing the PBX retargeted the call: the call
  is then judged on the diverting number, which must be the customer's (issue 3 §3);
* the source's marker (a trunk-group parameter, RFC 4904, or a header) that splits a PBX's
  traffic by kind and principal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from proxy.policy.numbering import CallerNumber, NumberKind, normalise_number, number_from_uri
from proxy.policy.settings import Marker, SourceKind, SourcePolicy
from proxy.sip.errors import SipParseError
from proxy.sip.headers import NameAddr, parse_name_addr, split_values
from proxy.sip.uri import SipUri, TelUri, Uri

if TYPE_CHECKING:
    from proxy.sip.message import Request

__all__ = [
    "CallerIdentity",
    "IdentityHeaders",
    "identity_from_headers",
    "identity_from_request",
    "identity_from_values",
    "identity_headers",
    "marker_value",
    "parse_privacy",
]

# Privacy values that withhold the caller's identity from the callee. `id` (RFC 3325 §9.3) is
# what French networks send for CLIR ("appel masqué"); `header` and `user` (RFC 3323 §4.2)
# anonymise From as well. `none`, `session` and `critical` do not hide the number.
_MASKING = frozenset({"id", "header", "user"})


class CallerIdentity(NamedTuple):
    """The caller identity of one request, with the source's marker resolved."""

    method: str
    from_number: CallerNumber
    pai: tuple[CallerNumber, ...] = ()
    privacy: frozenset[str] = frozenset()
    masked: bool = False
    diverted_from: CallerNumber | None = None
    kind: SourceKind = "automated"
    """The kind the traffic is judged as: the marker's, else the source's default."""
    principal: str | None = None
    """The principal the marker names, if any."""
    marker_value: str | None = None
    to_value: str | None = None
    """The callee's To header value; see `destination`."""
    call_id: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def destination(self) -> str | None:
        """The callee, E.164 when it is a number: the key of the per-number flow history.

        Computed on demand: only the plan's conditional cells need it."""
        if not self.to_value:
            return None
        uri = addr_spec(self.to_value)
        if not uri:
            return None
        number = cached_number(uri)
        return number.e164 or number.national or uri

    @property
    def caller(self) -> CallerNumber | None:
        """The presented caller number: From's, or the first PAI's when From is anonymous."""
        if self.from_number.kind is NumberKind.ANONYMOUS:
            return self.pai[0] if self.pai else None
        return self.from_number


def parse_privacy(value: str | None) -> frozenset[str]:
    """The priv-values of a Privacy header (`id; header` -> {"id", "header"})."""
    if not value:
        return frozenset()
    items = (part.strip().lower() for chunk in value.split(",") for part in chunk.split(";"))
    return frozenset(item for item in items if item)


def _name_addr(value: str) -> NameAddr | None:
    try:
        return parse_name_addr(value.strip())
    except SipParseError:
        return None


# Caller numbers repeat: a call centre presents a few thousand numbers at most. Reading one is
# a URI parse plus normalisation (several µs); the cache makes the hot path a dictionary probe.
# number_from_uri is a pure function of the URI text, so caching cannot change a decision.
# A true LRU (functools' C implementation), not a dict emptied when full: a burst of new
# callers evicts the least recently seen texts instead of the whole working set at once.
_CACHE_MAX = 65_536


@lru_cache(maxsize=_CACHE_MAX)
def cached_number(uri_text: str) -> CallerNumber:
    """`number_from_uri(uri_text)`, memoised (bounded, least recently used evicted)."""
    return number_from_uri(uri_text)


def addr_spec(value: str) -> str:
    """The URI of a name-addr/addr-spec header value, without display name or header params.

    RFC 3261 §20.10: the URI is inside the last <...> (a quoted display name may hold '<'
    before it; a URI cannot hold '<' or '>'); without brackets, ';' starts header params.
    """
    start = value.rfind("<")
    if start >= 0:
        end = value.find(">", start)
        return value[start + 1 : end if end > 0 else len(value)].strip()
    return (
        value.partition(";")[0].strip() if value.lstrip()[:4].lower() != "tel:" else (value.strip())
    )


def _values(headers: Iterable[str]) -> list[str]:
    return [item for value in headers for item in split_values(value) if item.strip()]


def _diverting_from_diversion(values: Sequence[str]) -> CallerNumber | None:
    # RFC 5806 §4: a diverting proxy adds its Diversion value first, so the first value is the
    # most recent diversion: the PBX's own retargeting.
    for value in values:
        entry = _name_addr(value)
        if entry is not None:
            return number_from_uri(entry.uri)
        return normalise_number(value)
    return None


def _diverting_from_history(values: Sequence[str]) -> CallerNumber | None:
    # RFC 7044 §4.2: `mp=<index>` marks a hi-entry whose target was *mapped* to another user
    # (retargeting, i.e. a diversion); its value is the index of the entry that was diverted.
    # Without mp, a `cause` URI parameter (RFC 4458, RFC 7044 §9.1) on an entry means the
    # preceding entry's target was diverted.
    entries: list[tuple[str | None, NameAddr]] = []
    for value in values:
        entry = _name_addr(value)
        if entry is not None:
            entries.append((entry.params.get("index"), entry))
    by_index = {index: entry for index, entry in entries if index}
    for _, entry in reversed(entries):
        mapped = entry.params.get("mp")
        if mapped and mapped in by_index:
            return number_from_uri(by_index[mapped].uri)
    for position in range(len(entries) - 1, 0, -1):
        uri = entries[position][1].uri
        if isinstance(uri, SipUri | TelUri) and "cause" in uri.params:
            return number_from_uri(entries[position - 1][1].uri)
    return None


def _uri_param(uri: Uri | None, name: str) -> str | None:
    """A URI parameter, or an RFC 4904 parameter inside a sip user part / tel number."""
    if isinstance(uri, SipUri):
        if name in uri.params:
            return uri.params[name]
        if uri.user and ";" in uri.user:
            for part in uri.user.split(";")[1:]:
                key, _, val = part.partition("=")
                if key.strip().lower() == name:
                    return val
    elif isinstance(uri, TelUri):
        return uri.params.get(name)
    return None


def _resolve_marker(
    policy: SourcePolicy, value: str | None
) -> tuple[SourceKind, str | None, str | None, tuple[str, ...]]:
    marker = policy.marker
    if marker is None or value is None:
        return policy.kind, None, None, ()
    meaning = marker.values.get(value)
    if meaning is None:
        # An unknown value counts as unmarked: the source's default (safe: automated) kind.
        note = f"marker value {value!r} not configured; source default kind {policy.kind}"
        return policy.kind, None, value, (note,)
    return meaning.kind or policy.kind, meaning.principal, value, ()


def identity_from_values(
    *,
    method: str,
    from_value: str,
    pai: Sequence[str] = (),
    privacy: str | None = None,
    diversion: Sequence[str] = (),
    history_info: Sequence[str] = (),
    to_value: str | None = None,
    marker_value: str | None = None,
    source: SourcePolicy | None = None,
    call_id: str | None = None,
) -> CallerIdentity:
    """Build the identity from header values (name-addr or bare URI/number text)."""
    policy = source or SourcePolicy()
    from_number = number_from_uri(from_value) if from_value else normalise_number("")
    pai_numbers = tuple(number_from_uri(v) for v in _values(pai))
    diverted = _diverting_from_diversion(_values(diversion)) or _diverting_from_history(
        _values(history_info)
    )
    return _assemble(
        method,
        from_number,
        pai_numbers,
        parse_privacy(privacy),
        diverted,
        to_value,
        marker_value,
        policy,
        call_id,
    )


def _assemble(
    method: str,
    from_number: CallerNumber,
    pai: tuple[CallerNumber, ...],
    privacy: frozenset[str],
    diverted: CallerNumber | None,
    to_value: str | None,
    marker_value: str | None,
    policy: SourcePolicy,
    call_id: str | None,
) -> CallerIdentity:
    masked = from_number.kind is NumberKind.ANONYMOUS or bool(privacy & _MASKING)
    if policy.marker is None:  # `_resolve_marker`'s answer without a marker
        kind: SourceKind = policy.kind
        principal = value = None
        notes: tuple[str, ...] = ()
    else:
        kind, principal, value, notes = _resolve_marker(policy, marker_value)
    # tuple.__new__: the NamedTuple without its Python-level __new__ (same value).
    return tuple.__new__(
        CallerIdentity,
        (
            method.upper(),
            from_number,
            pai,
            privacy,
            masked,
            diverted,
            kind,
            principal,
            value,
            to_value,
            call_id,
            notes,
        ),
    )


def marker_value(request: Request, marker: Marker | None) -> str | None:
    """The value of the source's marker in `request` (None without a marker or a value)."""
    if marker is None:
        return None
    if marker.header is not None:
        value = request.get(marker.header)
        return value.strip() if value is not None else None
    name = (marker.param or "").lower()
    # RFC 4904 §5: the originating trunk group is in the Contact; PBXs also put it in From or
    # the Request-URI. First found wins.
    candidates: list[Uri | None] = []
    for contact in _values(request.get_all("Contact"))[:1]:
        entry = _name_addr(contact)
        candidates.append(entry.uri if entry else None)
    candidates.append(request.from_.uri)
    candidates.append(request.uri)
    for uri in candidates:
        found = _uri_param(uri, name)
        if found is not None:
            return found
    return None


# The headers the identity reads, by slot, keyed by `Header.key` (the lower-case canonical
# name, what `SipMessage.get` compares: compact and oddly cased names match as they do there).
# One walk over the request's header list replaces a `get`/`get_all` per header (each of
# which walks the whole list again).
_FROM, _PAI, _PRIVACY, _TO, _DIVERSION, _HISTORY = range(6)
_SLOTS = {
    "from": _FROM,
    "p-asserted-identity": _PAI,
    "privacy": _PRIVACY,
    "to": _TO,
    "diversion": _DIVERSION,
    "history-info": _HISTORY,
}


class IdentityHeaders(NamedTuple):
    """The header values the identity is read from, as the request carries them."""

    from_value: str | None
    to_value: str | None
    privacy: str | None
    pai: tuple[str, ...]
    diversion: tuple[str, ...]
    history_info: tuple[str, ...]


def identity_headers(request: Request) -> IdentityHeaders:
    """The From, To, Privacy (first of each), P-Asserted-Identity, Diversion and History-Info
    values of `request`, in one walk over its headers."""
    from_value: str | None = None
    privacy: str | None = None
    to_value: str | None = None
    pai_values: list[str] = []
    diversion: list[str] = []
    history: list[str] = []
    slots = _SLOTS
    for header in request.headers:
        # `Header.key` is the lower-case canonical name `SipMessage.get` compares.
        slot = slots.get(header.key)
        if slot is None:
            continue
        if slot == _PAI:
            pai_values.append(header.value)
        elif slot == _FROM:
            if from_value is None:  # first header of that name, as `get` answers
                from_value = header.value
        elif slot == _TO:
            if to_value is None:
                to_value = header.value
        elif slot == _PRIVACY:
            if privacy is None:
                privacy = header.value
        elif slot == _DIVERSION:
            diversion.append(header.value)
        else:
            history.append(header.value)
    return tuple.__new__(
        IdentityHeaders,
        (from_value, to_value, privacy, tuple(pai_values), tuple(diversion), tuple(history)),
    )


def identity_from_request(request: Request, source: SourcePolicy) -> CallerIdentity:
    """Build the identity of a parsed request for a source."""
    return identity_from_headers(
        request, identity_headers(request), source, marker_value(request, source.marker)
    )


def identity_from_headers(
    request: Request,
    headers: IdentityHeaders,
    source: SourcePolicy,
    marker: str | None,
    from_uri: str | None = None,
) -> CallerIdentity:
    """The identity of `request` from its `identity_headers` and its marker value
    (`from_uri`: `addr_spec` of From's value, when the caller has it already)."""
    from_value, to_value, privacy, pai_values, diversion, history = headers
    if from_uri is None:
        from_uri = addr_spec(from_value or "")
    pai: list[CallerNumber] = []
    for header_value in pai_values:
        for value in split_values(header_value) if "," in header_value else (header_value,):
            if value.strip():
                pai.append(cached_number(addr_spec(value)))
    diverted = None
    if diversion:
        diverted = _diverting_from_diversion(_values(diversion))
    if diverted is None and history:
        diverted = _diverting_from_history(_values(history))
    return _assemble(
        request.method,
        cached_number(from_uri),
        tuple(pai),
        parse_privacy(privacy),
        diverted,
        to_value,
        marker,
        source,
        request.call_id,
    )
