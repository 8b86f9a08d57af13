"""Benchmark of the policy step with one million listed numbers: p50/p99 µs per request.

Run: ``python bench/bench_policy.py [requests]``. Builds a temporary list database holding
900,000 single numbers of the call centre plus 100,000 single-number delegations (one million
listed numbers; loaded into the worker snapshot as the proxy does), then times
`PolicyStep.decide()` on pre-parsed INVITEs whose callers are listed NPV numbers, delegated
numbers, unlisted numbers and mobiles. The audit queue is live (record only, as on the hot
path); allocation data is loaded behind its cache when the shared ARCEP copy is present.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from proxy.core.decision import Assessment, Origin
from proxy.policy.allocation import AllocationStore
from proxy.policy.audit import AuditLog
from proxy.policy.engine import PolicyData
from proxy.policy.numbers import FlowHistory, NumberLists, NumberStore
from proxy.policy.plan import NumberingPlan
from proxy.policy.settings import PolicySettings, SourcePolicy
from proxy.policy.step import CachedAllocation, PolicyStep
from proxy.sip.message import Request, parse_message

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "fr-numbering"
OWN = 900_000
DELEGATED = 100_000


def build_lists(path: Path) -> None:
    """Write one million listed numbers straight into the store's tables."""
    NumberStore(path).close()  # schema and triggers
    conn = sqlite3.connect(path, isolation_level=None)
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        'INSERT INTO holdings(holder, start, "end", created) VALUES (?, ?, ?, ?)',
        (("callco", n, n, now) for n in (f"+33162{i:06d}" for i in range(OWN))),
    )
    conn.executemany(
        "INSERT INTO delegations(principal, customer, start, \"end\", valid_from, valid_until,"
        " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            ("acme", "callco", n, n, now - 86400, now + 30 * 86400, now)
            for n in (f"+33270{i:06d}" for i in range(DELEGATED))
        ),
    )
    conn.execute("COMMIT")
    conn.close()


def invite(caller: str, i: int) -> Request:
    """A parsed INVITE from the dialer (parsing is not part of the timed step)."""
    data = (
        f"INVITE sip:+33299{i % 1000000:06d}@op SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{i}\r\n"
        f"From: <sip:{caller}@10.0.0.1;user=phone>;tag={i}\r\n"
        f"To: <sip:+33299{i % 1000000:06d}@op>\r\n"
        f"Call-ID: {i}@pbx\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"P-Asserted-Identity: <sip:{caller}@10.0.0.1;user=phone>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def main(count: int = 20_000) -> None:
    """Build, load, time, print."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lists.sqlite3"
        started = time.perf_counter()
        build_lists(db)
        built = time.perf_counter()
        lists = NumberLists(db)
        loaded = time.perf_counter()
        print(f"lists: {OWN + DELEGATED:,} numbers written in {built - started:.1f} s,"
              f" snapshot loaded in {loaded - built:.1f} s")

        allocation = None
        if (SHARED / "MAJNUM.csv").exists():
            store = AllocationStore(Path(tmp) / "alloc.sqlite3")
            store.import_files([SHARED / "MAJNUM.csv", SHARED / "identifiants_CE.csv"])
            allocation = CachedAllocation(store)
        settings = PolicySettings()
        history = FlowHistory(None)
        step = PolicyStep(
            settings=settings,
            sources={"dialer": SourcePolicy(customer="callco", kind="automated")},
            data=PolicyData(settings, NumberingPlan.load(), lists, allocation, history),
            audit=AuditLog(Path(tmp) / "audit.sqlite3", queue_max=2 * count + 1),
            history=history,
        )
        rng = random.Random(7)
        callers = []
        for _ in range(count):
            pick = rng.random()
            if pick < 0.6:
                callers.append(f"+33162{rng.randrange(OWN):06d}")
            elif pick < 0.8:
                callers.append(f"+33270{rng.randrange(DELEGATED):06d}")
            elif pick < 0.9:
                callers.append(f"+33948{rng.randrange(1000000):06d}")  # unlisted NPV
            else:
                callers.append(f"+336{rng.randrange(100000000):08d}")  # mobile
        origin = Origin("source", "dialer", "udp", ("10.0.0.1", 5060))
        # Pass 1: every caller seen for the first time (number parsing and allocation lookups
        # not cached). Pass 2: the same callers again, as a campaign re-presents its numbers.
        for label in ("first sight", "repeat callers"):
            requests = [invite(c, i) for i, c in enumerate(callers)]
            samples: list[float] = []
            clock = time.perf_counter_ns
            for request in requests:
                now = time.time()
                t0 = clock()
                step.decide(request, origin, Assessment(), now)
                samples.append((clock() - t0) / 1000.0)
            samples.sort()
            p50 = statistics.median(samples)
            p99 = samples[int(len(samples) * 0.99) - 1]
            print(
                f"policy step ({label}): {count:,} requests, p50 {p50:.1f} µs,"
                f" p99 {p99:.1f} µs, max {samples[-1]:.1f} µs"
                f" (allocation data {'on' if allocation else 'off'})"
            )
        assert step.audit is not None
        flushed = time.perf_counter()
        step.audit.flush()
        print(f"audit: {count:,} entries flushed in {time.perf_counter() - flushed:.2f} s")
        lists.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
