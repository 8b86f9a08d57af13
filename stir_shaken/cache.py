"""Bounded LRU cache of x5u certificates, keyed by URL (checklist §3 step 7).

Pure (time is handed in) so the verification step, which runs inside the sans-IO core, can read
it; `fetch.py` in the asyncio shell writes to it. Failed fetches are remembered for a short
`negative_ttl` so that the re-run after a Defer answers 436 instead of deferring again.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from stir_shaken.certs import CertificateError, load_certificates
from stir_shaken.verifier import CertUnavailable, ChainLookup

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
_NO_STORE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\b", re.IGNORECASE)


def cache_ttl(cache_control: str | None, *, default: int, minimum: int, maximum: int) -> int:
    """Seconds to keep a response given its Cache-Control header (RFC 9111 §5.2.2).

    `max-age` is honoured within [minimum, maximum]; `no-store`/`no-cache` still keep the
    certificate for `minimum` seconds, just long enough for the deferred request to use it.
    """
    if cache_control:
        if _NO_STORE.search(cache_control):
            return minimum
        match = _MAX_AGE.search(cache_control)
        if match:
            return max(minimum, min(maximum, int(match.group(1))))
    return max(minimum, min(maximum, default))


@dataclass(frozen=True, slots=True)
class _Entry:
    value: tuple[x509.Certificate, ...] | CertUnavailable
    expires: float


class CertCache:
    """URL -> certificates (or a remembered failure), least recently used evicted first."""

    def __init__(
        self,
        max_entries: int = 1000,
        *,
        default_ttl: int = 3600,
        min_ttl: int = 30,
        max_ttl: int = 86400,
        negative_ttl: int = 30,
    ) -> None:
        self.max_entries = max_entries
        self.default_ttl = default_ttl
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = 0
        """Lookups answered from the cache (a remembered failure counts too)."""
        self.misses = 0
        """Lookups that found nothing usable: the certificate must be fetched."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, url: str, now: float) -> Sequence[x509.Certificate] | CertUnavailable | None:
        """The cached certificates or failure for `url`, or None when absent or expired."""
        entry = self._entries.get(url)
        if entry is None:
            self.misses += 1
            return None
        if now >= entry.expires:
            del self._entries[url]
            self.misses += 1
            return None
        self._entries.move_to_end(url)
        self.hits += 1
        return entry.value

    def put_bytes(
        self, url: str, body: bytes, now: float, *, cache_control: str | None = None
    ) -> Sequence[x509.Certificate] | CertUnavailable:
        """Parse a fetched x5u body (PEM or DER, leaf first) and cache the result."""
        try:
            certs: tuple[x509.Certificate, ...] | CertUnavailable = tuple(load_certificates(body))
        except CertificateError as exc:
            certs = CertUnavailable(str(exc))
        if isinstance(certs, CertUnavailable):
            ttl = self.negative_ttl
        else:
            ttl = cache_ttl(
                cache_control, default=self.default_ttl, minimum=self.min_ttl, maximum=self.max_ttl
            )
        self._store(url, _Entry(certs, now + ttl))
        return certs

    def put_certificates(
        self, url: str, certs: Sequence[x509.Certificate], now: float, ttl: int | None = None
    ) -> None:
        """Cache already-parsed certificates (a local BPCO copy, or tests)."""
        self._store(url, _Entry(tuple(certs), now + (ttl or self.default_ttl)))

    def put_failure(self, url: str, reason: str, now: float) -> CertUnavailable:
        """Remember that `url` could not be fetched, for `negative_ttl` seconds."""
        failure = CertUnavailable(reason)
        self._store(url, _Entry(failure, now + self.negative_ttl))
        return failure

    def _store(self, url: str, entry: _Entry) -> None:
        self._entries[url] = entry
        self._entries.move_to_end(url)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, now: float) -> ChainLookup:
        """A `ChainLookup` for the verifier, answering at time `now`."""

        def _lookup(url: str) -> Sequence[x509.Certificate] | CertUnavailable | None:
            return self.get(url, now)

        return _lookup
