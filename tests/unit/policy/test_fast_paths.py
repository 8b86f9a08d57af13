"""The hot path's memoised answers give exactly what the uncached code gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from proxy.policy.numbers import ListMatch, ListSnapshot, NumberRange
from proxy.policy.step import CachedAllocation, _safe


class _Block:
    def __init__(self, code: str) -> None:
        self.holder_code = code
        self.holder_name: str | None = None
        self.frozen = False


class _Store:
    """An allocation view whose answer depends on the 1,000-number block only."""

    def __init__(self) -> None:
        self.calls = 0

    def lookup(self, e164: str) -> _Block | None:
        self.calls += 1
        block = e164[:-3] if len(e164) in (12, 13) else e164
        return None if int(block[-1]) % 3 == 0 else _Block(block)


_numbers = st.builds(
    lambda cc, nsn: cc + nsn,
    st.sampled_from(["+33", "+262", "+590", "+1"]),
    st.from_regex(r"[1-9][0-9]{8}", fullmatch=True),
)


@hsettings(max_examples=200)
@given(st.lists(_numbers, min_size=1, max_size=60), st.integers(min_value=1, max_value=8))
def test_cached_allocation_is_the_store_and_a_true_lru(probes: list[str], maxsize: int) -> None:
    store = _Store()
    cached = CachedAllocation(store, maxsize=maxsize)
    recent: list[str] = []  # model of the LRU: least recent first
    for e164 in probes:
        key = e164[:-3] if len(e164) in (12, 13) else e164
        before = store.calls
        got = cached.lookup(e164)
        want = store.lookup(e164)
        store.calls -= 1
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got.holder_code == want.holder_code
        # A hit exactly when the key is among the `maxsize` most recently used.
        assert (store.calls == before) == (key in recent)
        if key in recent:
            recent.remove(key)
        recent.append(key)
        del recent[:-maxsize]
        assert list(cached._cache) == recent


@hsettings(max_examples=100)
@given(
    st.sampled_from(["callco", "other"]),
    st.lists(st.sampled_from(["callco", "other", "third"]), max_size=3),
    st.integers(min_value=0, max_value=999),
)
def test_memoised_own_match_equals_a_fresh_one(customer: str, holders: list[str], n: int) -> None:
    snap = ListSnapshot()
    e164 = f"+33162000{n:03d}"
    for row_id, holder in enumerate(holders):
        snap.add_holding(row_id, holder, NumberRange(e164, e164))
    found = snap.holders(e164)
    match = snap.match(e164, customer, 0.0)
    if customer in found:
        assert match == ListMatch("own", customer, reason=f"held by {customer}", holders=found)
        assert snap.match(e164, customer, 0.0) is match  # shared, immutable
    else:
        assert match.status is None


def _safe_reference(text: str, limit: int = 200) -> str:
    cleaned = "".join("'" if c in '"\\' or ord(c) < 0x20 or c == "\x7f" else c for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@given(st.text(max_size=300))
def test_safe_text_memoised_matches_reference(text: str) -> None:
    assert _safe(text) == _safe_reference(text)
    assert _safe(text) == _safe_reference(text)


# -- _judged_numbers: the shortcut for the usual request --------------------------------------

_caller_texts = st.sampled_from(
    [
        "sip:+33162000001@pbx",
        "sip:+33162000002@pbx",
        "sip:0162000001@pbx",
        "tel:+33162000001",
        "sip:anonymous@anonymous.invalid",
        "sip:Anonymous@pbx",
        "sip:3010@pbx",
        "sip:ACME@pbx",
        "sip:12ab@pbx",
        "sip:+4930123456@pbx",
        "",
    ]
)


@hsettings(max_examples=300)
@given(
    _caller_texts,
    st.lists(_caller_texts, max_size=3),
    st.one_of(st.none(), _caller_texts),
)
def test_judged_numbers_shortcut_is_the_general_walk(
    from_text: str, pai_texts: list[str], diverted_text: str | None
) -> None:
    from proxy.policy.engine import _judged_numbers, _judged_numbers_general
    from proxy.policy.identity import CallerIdentity
    from proxy.policy.numbering import normalise_number

    identity = CallerIdentity(
        "INVITE",
        normalise_number(from_text),
        tuple(normalise_number(t) for t in pai_texts),
        diverted_from=None if diverted_text is None else normalise_number(diverted_text),
    )
    assert _judged_numbers(identity) == _judged_numbers_general(identity)


_IDENTITY_HEADER_NAMES = [
    "From", "f", "FROM", "To", "t", "Privacy", "privacy", "P-Asserted-Identity",
    "p-asserted-identity", "Diversion", "History-Info", "Via", "Contact", "m", "Subject",
]  # fmt: skip


@hsettings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_IDENTITY_HEADER_NAMES),
            st.sampled_from(["<sip:+33162000001@h>", "id", "<tel:+33299000000>;tag=9", "x, y"]),
        ),
        max_size=12,
    )
)
def test_identity_headers_are_what_get_and_get_all_answer(headers: list[tuple[str, str]]) -> None:
    from proxy.policy.identity import identity_headers
    from proxy.sip.message import Request, parse_message

    text = "INVITE sip:a@b SIP/2.0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    request = parse_message(text.encode())
    assert isinstance(request, Request)

    def every(name: str) -> tuple[str, ...]:
        # Not get_all: it splits list headers at commas, the identity splits values itself.
        return tuple(h.value for h in request.headers if h.key == name)

    found = identity_headers(request)
    assert found.from_value == request.get("From")
    assert found.to_value == request.get("To")
    assert found.privacy == request.get("Privacy")
    assert found.pai == every("p-asserted-identity")
    assert found.diversion == every("diversion")
    assert found.history_info == every("history-info")
