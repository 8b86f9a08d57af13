"""Micro-benchmark of the numbering plan: classify() lookups/s and µs per lookup.

Run: ``python bench/bench_plan.py [seconds]``. Also times normalise_number(), and
AllocationStore.lookup() (SQL) and AllocationIndex.lookup() (in memory) when the shared ARCEP
copy is present. Prints numbers only; nothing is asserted.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from proxy.policy.allocation import AllocationIndex, AllocationStore
from proxy.policy.numbering import (
    _from_text_general,
    _parse_uri_text_general,
    normalise_number,
    number_from_uri,
)
from proxy.policy.plan import NumberingPlan

# A mix of what call-centre trunks present: NPV, geographic, mobile, DOM, special, short,
# foreign, masked.
SAMPLES = [
    "+33162000001", "+33948123456", "+33140123456", "+33612345678", "+33798123456",
    "+262262123456", "+590690123456", "+33800123456", "+33891234567", "+33937123456",
    "+337000000000001", "3010", "118218", "+4915112345678", "anonymous", "+33999999999",
]  # fmt: skip
# What call-centre PBXs and dialers put in From/PAI (the fast paths' forms).
COMMON = [
    "sip:+33162000001@10.0.0.1;user=phone", "sip:0162000001@pbx.example", "tel:+33162000001",
    "tel:0162000001", "sips:+33948123456@10.0.0.1:5061;user=phone", "+33162000001",
]  # fmt: skip
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "fr-numbering"


def _general_number(text: str) -> object:
    """`number_from_uri(text)` through the general path only (no fast paths)."""
    if ":" in text:
        return _parse_uri_text_general(text, text)
    return _from_text_general(text, text)


def _rate(name: str, func: Callable[[], None], calls_per_run: int, seconds: float) -> None:
    """Run `func` repeatedly for about `seconds` and print per-lookup figures."""
    runs = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        func()
        runs += 1
    elapsed = time.perf_counter() - start
    lookups = runs * calls_per_run
    print(f"{name:<28} {lookups / elapsed:>12,.0f} lookups/s  {elapsed / lookups * 1e6:8.2f} µs")


def main(seconds: float = 1.0) -> None:
    """Print classify(), normalise_number() and allocation lookup() throughput."""
    plan = NumberingPlan.load()
    numbers = [normalise_number(text) for text in SAMPLES]
    today = dt.date(2026, 6, 1)

    def classify_all() -> None:
        for number in numbers:
            plan.classify(number, today)

    def normalise_all() -> None:
        for text in SAMPLES:
            normalise_number(text)

    def common_all() -> None:
        for text in COMMON:
            number_from_uri(text)

    def common_general() -> None:
        for text in COMMON:
            _general_number(text)

    print(f"plan rows: {len(plan.rows)}; sample numbers: {len(numbers)}")
    _rate("classify()", classify_all, len(numbers), seconds)
    _rate("normalise_number()", normalise_all, len(SAMPLES), seconds)
    # The notations dialers really send, through the fast paths and (same run) through the
    # general path alone: the ratio is the fast paths' gain on a first-sight caller.
    _rate("number_from_uri() common", common_all, len(COMMON), seconds)
    _rate("  general path only", common_general, len(COMMON), seconds)
    if not (SHARED / "MAJNUM.csv").is_file():
        print(f"allocation lookup: skipped (no shared ARCEP data at {SHARED})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = AllocationStore(Path(tmp) / "alloc.sqlite3")
        report = store.import_files(sorted(SHARED.glob("*.csv")))
        print(f"allocation import: {report.blocks:,} blocks in {report.seconds:.2f} s")

        def lookup_all() -> None:
            for text in SAMPLES:
                store.lookup(text)

        _rate("AllocationStore.lookup()", lookup_all, len(SAMPLES), seconds)
        index = AllocationIndex.from_store(store)

        def index_all() -> None:
            for text in SAMPLES:
                index.lookup(text)

        # What the policy step uses: the same answers from memory, no SQL.
        _rate("AllocationIndex.lookup()", index_all, len(SAMPLES), seconds)
        store.close()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
