"""The x5u certificate cache counts hits and misses (exported as sipguard_x5u_cache_total)."""

from __future__ import annotations

from stir_shaken.cache import CertCache


def test_cache_counts_hits_misses_and_expiry() -> None:
    """A miss, then a hit for a remembered failure, then a miss once it expired."""
    cache = CertCache(negative_ttl=30)
    url = "https://certs.example/op.pem"
    assert cache.get(url, 0.0) is None
    cache.put_failure(url, "connection refused", 0.0)
    assert cache.get(url, 1.0) is not None
    assert cache.get(url, 1000.0) is None
    assert (cache.hits, cache.misses) == (1, 2)
