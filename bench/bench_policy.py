"""Benchmark of the policy step with one million listed numbers: p50/p99 µs per request.

Run: ``python bench/bench_policy.py [requests]``. Builds a temporary list database holding
900,000 single numbers of the call centre plus 100,000 single-number delegations (one million
listed numbers; loaded into the worker snapshot as the proxy does), then times
`PolicyStep.decide()` -- the whole step: identity from the SIP headers, rules, Assessment, audit
record (queued, as on the hot path) -- on INVITEs whose callers are listed NPV numbers, delegated
numbers, unlisted numbers and mobiles. With allocation data on, the listed numbers are taken from
blocks ARCEP allocated (as a customer's numbers are): until Nov 2026 they were the first 900,000
numbers of 0162, ~60 % of them in unallocated blocks, so most "listed" callers were in fact
rejected (unallocated-number) and the figures mixed up the allowed and rejected paths. Each run
also prints the allowed and rejected requests apart.

Each INVITE is parsed and checked (`check_request`, which reads Via, From, To, Call-ID and CSeq)
just before it is decided, untimed, as the proxy core does before its steps run: only `decide()` is
timed, on a request as warm in memory as in the proxy (earlier versions parsed all 80,000 requests
up front, so each was decided long after its parse, and the step paid for the From/To/Call-ID reads
the core has already done). Allocation data is on when the shared ARCEP copy is present. Four runs
after a warm-up pass: callers never seen (normalisation and allocation lookups uncached), the warm-
up's callers again, the realistic mix (90 % repeat callers, 10 % new), and the warm-up's callers
again while another customer's list changes every `CHANGE_EVERY` requests (a change to numbers
these callers do not present must not send them back to first sight). Every run prints
p50/p99/p99.9/max over all samples, then p50/p99 over the samples during which no garbage
collection ran, and how many did (the GC pauses are reported, not hidden: they are part of what a
caller waits for). Each run also prints this thread's CPU time per request: on a shared machine the
wall-clock tail mostly shows the scheduler giving the CPU to other processes (4 ms ticks), which
the CPU-time figures leave out.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import gc
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from proxy.core.decision import Assessment, Origin, Reject
from proxy.policy.allocation import AllocationStore
from proxy.policy.audit import AuditLog
from proxy.policy.engine import PolicyData
from proxy.policy.numbers import FlowHistory, NumberLists, NumberRange, NumberStore
from proxy.policy.plan import NumberingPlan
from proxy.policy.settings import PolicySettings, SourcePolicy
from proxy.policy.step import PolicyStep, _open_allocation
from proxy.runtime import _settle_heap
from proxy.sip.message import Request, parse_message
from proxy.sip.validate import check_request

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "fr-numbering"
OWN = 900_000
DELEGATED = 100_000
# In the last run, another customer's list changes once every this many requests.
CHANGE_EVERY = 100


# The NPV roots (plan §3, ARCEP 2022-1583): the customer's own numbers, delegated ones, and
# the root its unlisted callers come from.
OWN_ROOTS = ("+33162", "+33163", "+33377", "+33378", "+33424", "+33425", "+33568", "+33569",
             "+33949")  # fmt: skip
DELEGATED_ROOTS = ("+33270", "+33271")
UNLISTED_ROOT = "+33948"


def listed_blocks(allocation_db: Path | None) -> tuple[list[str], list[str]]:
    """The 1,000-number blocks (E.164 without the last three digits) of the customer's own
    numbers and of its delegated ones: allocated, unfrozen blocks when the allocation data is
    loaded, else the first blocks of 0162 and 0270."""
    if allocation_db is None:
        return [f"+33162{i:03d}" for i in range(OWN // 1000)], [
            f"+33270{i:03d}" for i in range(DELEGATED // 1000)
        ]
    store = AllocationStore(allocation_db)
    try:

        def allocated(roots: tuple[str, ...], wanted: int) -> list[str]:
            found = []
            for root in roots:
                for i in range(1000):
                    block = store.lookup(f"{root}{i:03d}000")
                    if block is not None and not block.frozen:
                        found.append(f"{root}{i:03d}")
                        if len(found) == wanted:
                            return found
            raise SystemExit(f"only {len(found)} allocated blocks under {roots}")

        return allocated(OWN_ROOTS, OWN // 1000), allocated(DELEGATED_ROOTS, DELEGATED // 1000)
    finally:
        store.close()


def build_lists(path: Path, own: list[str], delegated: list[str]) -> None:
    """Write one million listed numbers straight into the store's tables."""
    NumberStore(path).close()  # schema and triggers
    conn = sqlite3.connect(path, isolation_level=None)
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        'INSERT INTO holdings(holder, start, "end", created) VALUES (?, ?, ?, ?)',
        (("callco", n, n, now) for n in (f"{b}{i:03d}" for b in own for i in range(1000))),
    )
    conn.executemany(
        'INSERT INTO delegations(principal, customer, start, "end", valid_from, valid_until,'
        " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            ("acme", "callco", n, n, now - 86400, now + 30 * 86400, now)
            for n in (f"{b}{i:03d}" for b in delegated for i in range(1000))
        ),
    )
    conn.execute("COMMIT")
    conn.close()


def invite(caller: str, i: int) -> Request:
    """A parsed INVITE from the dialer, checked as the core checks every request before its
    steps (parsing and checking are not part of the timed step)."""
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
    problem = check_request(message)
    assert problem is None, problem
    return message


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction + 0.5) - 1))]


class _GcWatch:
    """Counts garbage collections, so a sample taken while one ran can be told apart, and
    times each one per generation (the full, generation-2 ones are what a growing cache of
    GC-tracked objects makes long)."""

    def __init__(self) -> None:
        self.runs = 0
        self._started = 0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.runs += 1
            self._started = time.perf_counter_ns()
        else:
            self.pauses[info["generation"]].append((time.perf_counter_ns() - self._started) / 1000)

    def take(self) -> str:
        """Collections per generation and the longest of each since the last call, in µs."""
        parts = []
        for generation, pauses in self.pauses.items():
            longest = max(pauses) if pauses else 0.0
            parts.append(f"gen{generation} {len(pauses)} (max {longest:.0f})")
            pauses.clear()
        return "GC runs: " + ", ".join(parts) + " µs"


def _callers(rng: random.Random, count: int, own: list[str], delegated: list[str]) -> list[str]:
    """What a dialer presents: listed NPV, delegated, unlisted NPV and mobile numbers."""
    callers = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.6:
            callers.append(f"{rng.choice(own)}{rng.randrange(1000):03d}")
        elif pick < 0.8:
            callers.append(f"{rng.choice(delegated)}{rng.randrange(1000):03d}")
        elif pick < 0.9:
            callers.append(f"{UNLISTED_ROOT}{rng.randrange(1000000):06d}")
        else:
            callers.append(f"+336{rng.randrange(100000000):08d}")  # mobile
    return callers


def _time(
    step: PolicyStep,
    origin: Origin,
    callers: list[str],
    watch: _GcWatch,
    between: Callable[[int], None] | None = None,
) -> tuple[list[float], list[float], list[bool], list[bool]]:
    """Per-request µs of the whole step (identity, rules, audit record): wall clock, this
    thread's CPU time, whether a GC ran during the request, and whether it was rejected. Each
    request is parsed and checked just before it is decided, untimed, as in the proxy;
    `between(i)`, untimed too, runs before request i."""
    wall: list[float] = []
    cpu: list[float] = []
    collected: list[bool] = []
    rejected: list[bool] = []
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    for i, caller in enumerate(callers):
        if between is not None:
            between(i)
        request = invite(caller, i)
        now = time.time()
        runs = watch.runs
        c0 = cpu_clock()
        t0 = clock()
        decision = step.decide(request, origin, Assessment(), now)
        t1 = clock()
        c1 = cpu_clock()
        wall.append((t1 - t0) / 1000.0)
        cpu.append((c1 - c0) / 1000.0)
        collected.append(watch.runs != runs)
        rejected.append(isinstance(decision, Reject))
    return wall, cpu, collected, rejected


def _report(
    label: str,
    watch: _GcWatch,
    wall: list[float],
    cpu: list[float],
    collected: list[bool],
    rejected: list[bool],
) -> None:
    ordered = sorted(wall)
    quiet = sorted(s for s, c in zip(wall, collected, strict=True) if not c)
    paused = sorted(s for s, c in zip(wall, collected, strict=True) if c)
    on_cpu = sorted(cpu)
    print(
        f"  {label:<28} n={len(wall):,}  wall p50 {_percentile(ordered, 0.5):6.1f}"
        f"  p99 {_percentile(ordered, 0.99):7.1f}  p99.9 {_percentile(ordered, 0.999):8.1f}"
        f"  max {ordered[-1]:8.1f} µs\n"
        f"  {'':<28} cpu  p50 {_percentile(on_cpu, 0.5):6.1f}  p99 {_percentile(on_cpu, 0.99):7.1f}"
        f"  p99.9 {_percentile(on_cpu, 0.999):8.1f} µs"
        f" | wall without GC: p50 {_percentile(quiet, 0.5):6.1f}"
        f" p99 {_percentile(quiet, 0.99):6.1f} µs;"
        f" {len(paused)} requests ran a GC (max {paused[-1] if paused else 0.0:.0f} µs)\n"
        f"  {'':<28} {_split(cpu, rejected)}\n"
        f"  {'':<28} {watch.take()}"
    )


def _split(cpu: list[float], rejected: list[bool]) -> str:
    """CPU p50/p99 of the allowed and of the rejected requests apart."""
    parts = []
    for label, wanted in (("allowed", False), ("rejected", True)):
        samples = sorted(c for c, r in zip(cpu, rejected, strict=True) if r is wanted)
        parts.append(
            f"{label} n={len(samples):,} cpu p50 {_percentile(samples, 0.5):.1f}"
            f" p99 {_percentile(samples, 0.99):.1f}"
        )
    return "; ".join(parts) + " µs"


def main(count: int = 20_000) -> None:
    """Build, load, time, print."""
    with tempfile.TemporaryDirectory() as tmp:
        allocation = None
        allocation_db = None
        if (SHARED / "MAJNUM.csv").exists():
            allocation_db = Path(tmp) / "alloc.sqlite3"
            store = AllocationStore(allocation_db)
            store.import_files([SHARED / "MAJNUM.csv", SHARED / "identifiants_CE.csv"])
            store.close()
            # As the proxy opens it (step._open_allocation): whatever sits in front of the
            # store on this version of the code.
            allocation = _open_allocation(allocation_db)
        own, delegated = listed_blocks(allocation_db)
        db = Path(tmp) / "lists.sqlite3"
        started = time.perf_counter()
        build_lists(db, own, delegated)
        built = time.perf_counter()
        lists = NumberLists(db)
        loaded = time.perf_counter()
        print(
            f"lists: {OWN + DELEGATED:,} numbers written in {built - started:.1f} s,"
            f" snapshot loaded in {loaded - built:.1f} s"
        )
        settings = PolicySettings()
        history = FlowHistory(None)
        audit = AuditLog(Path(tmp) / "audit.sqlite3", queue_max=4 * count + 1)
        step = PolicyStep(
            settings=settings,
            sources={"dialer": SourcePolicy(customer="callco", kind="automated")},
            data=PolicyData(settings, NumberingPlan.load(), lists, allocation, history),
            audit=audit,
            history=history,
        )
        origin = Origin("source", "dialer", "udp", ("10.0.0.1", 5060))
        rng = random.Random(7)
        # A campaign re-presents a working set of numbers; a few callers are new each time.
        working = _callers(rng, count, own, delegated)
        fresh = _callers(rng, 2 * count, own, delegated)
        first = fresh[:count]
        mixed = [
            fresh[count + i] if rng.random() < 0.1 else rng.choice(working) for i in range(count)
        ]
        # What the runtime does once the stores are loaded (proxy/runtime.py `_settle_heap`):
        # collect, then freeze, so the number-list index and plan sit outside every later
        # collection (without this the benchmark would time full collections production
        # skips), and the worker's young-generation threshold.
        _settle_heap()
        watch = _GcWatch()
        print(
            f"policy step, µs per request (allocation data {'on' if allocation else 'off'};"
            f" {len(gc.get_objects()):,} objects tracked by the GC,"
            f" {gc.get_freeze_count():,} frozen; thresholds {gc.get_threshold()}):"
        )
        _time(step, origin, working, watch)  # untimed: the working set is now known
        watch.take()
        _report("first sight (all new)", watch, *_time(step, origin, first, watch))
        _report("repeat callers", watch, *_time(step, origin, working, watch))
        _report("mix: 90 % repeat, 10 % new", watch, *_time(step, origin, mixed, watch))

        def other_customer_edits(i: int) -> None:
            # What a poll applies when another customer adds a number (one none of these
            # callers presents): every CHANGE_EVERY requests, as the worker's snapshot sees it.
            if i % CHANGE_EVERY == 0:
                lists.snapshot.add_holding(
                    10_000_000 + i, "othercustomer", NumberRange.parse(f"+33979{i:06d}")
                )

        _report(
            f"repeat, lists change /{CHANGE_EVERY}",
            watch,
            *_time(step, origin, working, watch, other_customer_edits),
        )
        # What a full collection costs now, with every cache of the step as full as the runs
        # left it: the objects it has to walk are the ones created since the freeze.
        young, middle, old = (len(gc.get_objects(g)) for g in (0, 1, 2))
        started = time.perf_counter_ns()
        gc.collect()
        forced = (time.perf_counter_ns() - started) / 1000
        print(
            f"GC after the runs: {young:,}/{middle:,}/{old:,} objects tracked in generations"
            f" 0/1/2 (frozen: {gc.get_freeze_count():,}); a forced full collection took"
            f" {forced:,.0f} µs"
        )
        flushed = time.perf_counter()
        audit.flush()
        print(f"audit: {audit.written:,} entries flushed in {time.perf_counter() - flushed:.2f} s")
        lists.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
