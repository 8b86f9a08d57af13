"""The audit trail: every policy decision, allowed, monitored or rejected, recorded durably.

The hot path only calls `AuditLog.record(entry)`, which appends to a bounded in-memory queue.
The shell calls `AuditLog.flush()` periodically (every `policy.audit.flush_interval_s`, in a
thread) and on shutdown (`close()`); `flush()` writes the queue in batches of
`policy.audit.batch_size` rows, one transaction per batch, into a SQLite database in WAL mode.

**Crash-loss window.** A clean shutdown loses nothing: `close()` flushes every queued entry.
After a committed batch, entries survive a crash of the process *and* of the machine
(`synchronous=FULL`: the WAL is fsynced at every commit, which costs one fsync per batch, not
per call). What a crash can lose is what was still queued in memory: at most the decisions of
the last `flush_interval_s` seconds (0.5 s by default), plus whatever the shell had not handed
over yet. If the writer falls behind so far that the queue reaches `queue_max` entries, the
oldest queued entries are dropped and counted in `AuditLog.dropped` (the shell exports it as a
metric): the proxy keeps answering calls rather than blocking on the disk.

Reports (`sipguard audit report`) summarise per verdict, rule, source and number.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

from proxy.policy.engine import Verdict
from proxy.policy.identity import CallerIdentity

__all__ = ["AuditEntry", "AuditLog", "AuditReport", "decision_row", "format_report", "read_report"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    call_id TEXT,
    method TEXT NOT NULL,
    source TEXT,
    customer TEXT,
    kind TEXT,
    principal TEXT,
    from_raw TEXT,
    from_e164 TEXT,
    pai_raw TEXT,
    pai_e164 TEXT,
    diverted_from TEXT,
    caller_e164 TEXT,
    category TEXT,
    range_holder TEXT,
    number_status TEXT,
    verdict TEXT NOT NULL,
    status INTEGER,
    rules TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time);
"""

_COLUMNS = (
    "time", "call_id", "method", "source", "customer", "kind", "principal", "from_raw",
    "from_e164", "pai_raw", "pai_e164", "diverted_from", "caller_e164", "category",
    "range_holder", "number_status", "verdict", "status", "rules", "detail",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded decision."""

    time: float
    method: str
    verdict: str
    call_id: str | None = None
    source: str | None = None
    customer: str | None = None
    kind: str | None = None
    principal: str | None = None
    from_raw: str | None = None
    from_e164: str | None = None
    pai_raw: str | None = None
    pai_e164: str | None = None
    diverted_from: str | None = None
    caller_e164: str | None = None
    category: str | None = None
    range_holder: str | None = None
    number_status: str | None = None
    status: int | None = None
    rules: tuple[str, ...] = ()
    firings: tuple[tuple[str, str, str], ...] = field(default=())
    """(rule id, action, reason) of every rule that fired."""

    @classmethod
    def of(
        cls,
        identity: CallerIdentity,
        verdict: Verdict,
        *,
        now: float,
        source: str | None,
        customer: str | None,
        status: int | None = None,
    ) -> AuditEntry:
        """The entry of one evaluated request."""
        holder = next((j.allocation_holder for j in verdict.judged if j.allocation_holder), None)
        return cls(
            time=now,
            method=identity.method,
            verdict=verdict.outcome,
            call_id=identity.call_id,
            source=source,
            customer=customer,
            kind=verdict.kind,
            principal=verdict.principal,
            from_raw=identity.from_number.raw,
            from_e164=identity.from_number.e164,
            pai_raw=" ".join(p.raw for p in identity.pai) or None,
            pai_e164=" ".join(p.e164 or "-" for p in identity.pai) or None,
            diverted_from=verdict.diverted_from,
            caller_e164=verdict.caller_e164,
            category=verdict.category,
            range_holder=holder,
            number_status=verdict.number_status,
            status=status,
            rules=tuple(verdict.rules_fired),
            firings=tuple((f.rule_id, f.action, f.reason) for f in verdict.firings),
        )

    def row(self) -> tuple[Any, ...]:
        """The values of the `decisions` columns."""
        detail = json.dumps([list(f) for f in self.firings], ensure_ascii=False)
        return (
            self.time, self.call_id, self.method, self.source, self.customer, self.kind,
            self.principal, self.from_raw, self.from_e164, self.pai_raw, self.pai_e164,
            self.diverted_from, self.caller_e164, self.category, self.range_holder,
            self.number_status, self.verdict, self.status, " ".join(self.rules), detail,
        )  # fmt: skip


# What `AuditLog.record_row` queues (`decision_row` after the time and call-id): the `decisions`
# row up to `status` (18 columns), then the (rule id, action, reason) of each of the verdict's
# firings, flattened (rules and detail are formatted at flush time). A flat tuple of strings and
# numbers is one object per request that lives until the flush, where an `AuditEntry` (or the
# identity and verdict it is made from) would be several; and flat, holding no NamedTuple, it is
# untracked by the garbage collector at the first collection that sees it (a nested tuple or a
# `Firing` in it would keep it tracked into the old generation, where full collections walk it).
_Pending = tuple[Any, ...]
_HEAD = 18
_chain = chain.from_iterable


def _row(item: AuditEntry | _Pending) -> tuple[Any, ...]:
    if isinstance(item, AuditEntry):
        return item.row()
    flat = item[_HEAD:]
    firings = [flat[i : i + 3] for i in range(0, len(flat), 3)]
    detail = json.dumps([list(f) for f in firings], ensure_ascii=False)
    return (*item[:_HEAD], " ".join(f[0] for f in firings), detail)


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating) an audit database in WAL mode."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed batch survives power loss (see the module docstring).
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SCHEMA)
    return conn


def decision_row(
    identity: CallerIdentity,
    verdict: Verdict,
    source: str | None,
    customer: str | None,
    status: int | None,
) -> tuple[object, ...]:
    """What the audit records of a decision besides its time and call-id: a flat tuple of
    strings, numbers and None (`AuditLog.record_row`). A pure function of its arguments, so the
    policy step keeps it with a remembered decision."""
    pai = identity.pai
    pai_raw = pai_e164 = None
    if len(pai) == 1:  # the usual case, without the joins
        pai_raw = pai[0].raw or None
        pai_e164 = pai[0].e164 or "-"
    elif pai:
        pai_raw = " ".join([p.raw for p in pai]) or None
        pai_e164 = " ".join([p.e164 or "-" for p in pai])
    holder = category = None
    for judged in verdict.judged:
        if category is None and judged.row is not None:
            category = judged.row.category  # Verdict.category, in the same walk
        if judged.allocation_holder:
            holder = judged.allocation_holder
            break
    if category is None:
        category = verdict.category
    from_number = identity.from_number
    return (
        identity.method, source, customer, verdict.kind,
        verdict.principal, from_number.raw, from_number.e164, pai_raw, pai_e164,
        verdict.diverted_from, verdict.caller_e164, category, holder,
        verdict.number_status, verdict.outcome, status, *_chain(verdict.firings),
    )  # fmt: skip


class AuditLog:
    """Bounded queue on the hot path, batched SQLite writer driven by the shell."""

    def __init__(
        self, path: Path | str, *, queue_max: int = 100_000, batch_size: int = 500
    ) -> None:
        self.path = path
        self.queue_max = queue_max
        self.batch_size = batch_size
        self.dropped = 0
        """Entries dropped because the queue was full (the writer fell behind)."""
        self.written = 0
        # Entries, or the (identity, verdict, now, source, customer, status) a decision left:
        # identity and verdict are frozen, so turning them into an `AuditEntry` (joins, a
        # dozen fields) can wait for `flush`, off the hot path, with the same result.
        self._queue: deque[AuditEntry | _Pending] = deque()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = connect(path)

    @property
    def pending(self) -> int:
        """Entries queued and not yet written."""
        return len(self._queue)

    def record(self, entry: AuditEntry) -> None:
        """Queue one entry (no I/O). Drops the oldest entry when the queue is full."""
        if len(self._queue) >= self.queue_max:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(entry)

    def record_decision(
        self,
        identity: CallerIdentity,
        verdict: Verdict,
        now: float,
        source: str | None,
        customer: str | None,
        status: int | None,
    ) -> None:
        """Queue one decision: the same row as `record(AuditEntry.of(...))`, built cheaper."""
        row = decision_row(identity, verdict, source, customer, status)
        self.record_row(now, identity.call_id, row)

    def record_row(self, now: float, call_id: str | None, row: tuple[object, ...]) -> None:
        """Queue the decision `row` (`decision_row`) taken at `now` on call `call_id`."""
        queue = self._queue
        if len(queue) >= self.queue_max:
            queue.popleft()
            self.dropped += 1
        queue.append((now, call_id, *row))

    def flush(self) -> int:
        """Write every queued entry, `batch_size` rows per transaction; returns rows written."""
        total = 0
        with self._lock:
            conn = self._conn
            if conn is None:
                return 0
            while self._queue:
                batch: list[AuditEntry | _Pending] = []
                while self._queue and len(batch) < self.batch_size:
                    batch.append(self._queue.popleft())
                placeholders = ",".join("?" * len(_COLUMNS))
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        f"INSERT INTO decisions({','.join(_COLUMNS)}) VALUES ({placeholders})",
                        [_row(e) for e in batch],
                    )
                    conn.execute("COMMIT")
                except sqlite3.Error:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    # Put the batch back so a transient error (disk full, lock) loses nothing.
                    self._queue.extendleft(reversed(batch))
                    raise
                total += len(batch)
        self.written += total
        return total

    def close(self) -> None:
        """Flush everything, then close the database (clean shutdown loses nothing)."""
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# --- reports -------------------------------------------------------------------------------


@dataclass(slots=True)
class AuditReport:
    """Counts per verdict, rule, source and number since a time."""

    since: float | None
    total: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    rules: dict[str, dict[str, int]] = field(default_factory=dict)
    """rule id -> {action: count}."""
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    """source -> {verdict: count}."""
    numbers: dict[str, dict[str, int]] = field(default_factory=dict)
    """caller number -> {verdict: count}."""
    short_use: dict[str, dict[str, int]] = field(default_factory=dict)
    """"customer number" -> {verdict: count} for numbers presented (let through) over less
    than `MIN_USE_HOURS` and not since: the plan's anti-rotation minimum (regulation.md §2,
    "used/assigned for at least 72 hours")."""


#: A number presented, then dropped, within this many hours is a rotation (ARCEP 2022-1583
#: §2.2.5 anti-rotation minimum, regulation.md).
MIN_USE_HOURS = 72.0


def read_report(
    path: Path | str,
    since: float | None = None,
    now: float | None = None,
    min_use_hours: float = MIN_USE_HOURS,
) -> AuditReport:
    """Summarise the audit database at `path` from `since` (seconds since the epoch). The
    short-use section needs `now`: a number counts once its last use is `min_use_hours` old
    (left out when `now` is None)."""
    conn = connect(path)
    try:
        report = AuditReport(since)
        if now is not None:
            report.short_use = _short_use(conn, since, now, min_use_hours * 3600.0)
        where, args = ("WHERE time >= ?", (since,)) if since is not None else ("", ())
        for verdict, count in conn.execute(
            f"SELECT verdict, COUNT(*) FROM decisions {where} GROUP BY verdict", args
        ):
            report.verdicts[verdict] = count
            report.total += count
        for source, verdict, count in conn.execute(
            f"SELECT COALESCE(source, '-'), verdict, COUNT(*) FROM decisions {where} GROUP BY 1, 2",
            args,
        ):
            report.sources.setdefault(source, {})[verdict] = count
        for number, verdict, count in conn.execute(
            "SELECT COALESCE(caller_e164, from_raw, '-'), verdict, COUNT(*) FROM decisions"
            f" {where} GROUP BY 1, 2",
            args,
        ):
            report.numbers.setdefault(number, {})[verdict] = count
        for (detail,) in conn.execute(
            f"SELECT detail FROM decisions {where} {'AND' if where else 'WHERE'} rules != ''",
            args,
        ):
            for rule_id, action, _ in json.loads(detail):
                slot = report.rules.setdefault(rule_id, {})
                slot[action] = slot.get(action, 0) + 1
        return report
    finally:
        conn.close()


def _short_use(
    conn: sqlite3.Connection, since: float | None, now: float, minimum: float
) -> dict[str, dict[str, int]]:
    # Spans are taken over the whole store (an earlier use must lengthen the span); a number
    # is listed when its last use falls in the report's period and is `minimum` old.
    rows = conn.execute(
        "SELECT COALESCE(customer, '-'), caller_e164,"
        " SUM(verdict = 'allow'), SUM(verdict = 'monitor') FROM decisions"
        " WHERE verdict != 'reject' AND caller_e164 IS NOT NULL"
        " GROUP BY 1, 2 HAVING MAX(time) - MIN(time) < ? AND MAX(time) <= ? AND MAX(time) >= ?",
        (minimum, now - minimum, since if since is not None else float("-inf")),
    )
    return {
        f"{customer} {number}": {"allow": allowed, "monitor": monitored}
        for customer, number, allowed, monitored in rows
    }


_VERDICTS = ("allow", "monitor", "reject")
_ACTIONS = ("monitor", "reject")


def _rows(report: AuditReport) -> list[tuple[str, str, int, int, int]]:
    """(section, key, a, b, c) rows: verdict counts, or monitor/reject counts for rules."""
    rows: list[tuple[str, str, int, int, int]] = []
    v = report.verdicts
    rows.append(("total", "all", v.get("allow", 0), v.get("monitor", 0), v.get("reject", 0)))
    for rule_id, counts in sorted(report.rules.items()):
        rows.append(("rule", rule_id, 0, counts.get("monitor", 0), counts.get("reject", 0)))
    for section, table in (
        ("source", report.sources),
        ("number", report.numbers),
        ("short-use", report.short_use),
    ):
        ordered = sorted(table.items(), key=lambda kv: (-kv[1].get("reject", 0), kv[0]))
        for key, counts in ordered:
            allow, monitor, reject = (counts.get(x, 0) for x in _VERDICTS)
            rows.append((section, key, allow, monitor, reject))
    return rows


def format_report(report: AuditReport, fmt: str = "table") -> str:
    """Render a report as `table`, `json` or `csv`."""
    if fmt == "json":
        return json.dumps(asdict(report), indent=2, sort_keys=True) + "\n"
    rows = _rows(report)
    header = ("section", "key", "allow", "monitor", "reject")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (table, json, csv)")
    since = (
        datetime.fromtimestamp(report.since, UTC).isoformat(timespec="seconds")
        if report.since is not None
        else "the beginning"
    )
    lines = [f"{report.total} decisions since {since}"]
    if report.short_use:
        lines.append(
            f"short-use: {len(report.short_use)} number(s) presented over less than"
            f" {MIN_USE_HOURS:.0f} h and not since (anti-rotation minimum)"
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(lines) + "\n"


def entries(path: Path | str, since: float | None = None) -> Sequence[dict[str, Any]]:
    """Every recorded decision from `since`, as dictionaries (oldest first)."""
    conn = connect(path)
    try:
        conn.row_factory = sqlite3.Row
        where, args = ("WHERE time >= ?", (since,)) if since is not None else ("", ())
        return [
            dict(r)
            for r in conn.execute(f"SELECT * FROM decisions {where} ORDER BY time, id", args)
        ]
    finally:
        conn.close()
