"""Number lists: who holds which numbers, and which call centre may present them when.

Since ARCEP decision 2025-2215 (in force 1 Jan 2026) an originating operator must hold, per
customer, the list of numbers that customer may present and enforce it technically
(regulation.md §0.4, man_fr.md §6). This module is that list:

* a **holding** says a holder (a principal, or the call centre itself) owns a number or range;
* a **delegation** grants a call centre (the customer) the use of a principal's number or range
  for a period ("mandat de présentation de numéro", Code de la consommation L.221-17; the BND's
  "délégation d'affichage", man_fr.md §1).

Storage is one SQLite file (schema created and migrated at start, `schema_version` table). The
hot path never touches SQLite: each worker holds a `ListSnapshot`, a set of dictionaries keyed by
number prefix, so a lookup is at most one dictionary probe per digit (O(digits)) whatever the
list size. Every change to holdings and delegations is written, by triggers, into a `changelog`
table whose last id is the store's generation; `NumberLists.poll()` (run by the shell off the
hot path, every `reload_interval_s`) applies the new changelog rows to the snapshot, so changes
reach every worker process within seconds, without restart.

Ranges are E.164 numbers of one length (`+33162000000-+33162009999`). A range is stored as the
few prefix blocks that cover it exactly (at most 18 per digit), so range and single-number
lookups are the same probe.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import yaml

__all__ = [
    "BND_COUNTRY_CODES",
    "Delegation",
    "FlowHistory",
    "Holding",
    "ListMatch",
    "ListSnapshot",
    "NumberLists",
    "NumberRange",
    "NumberStore",
    "NumberStoreError",
    "day_bounds",
]

ListStatus = Literal["own", "delegated"]

# BND country codes: delegations exist only for numbers of the French plan (man_fr.md §1).
BND_COUNTRY_CODES: tuple[str, ...] = ("33", "262", "590", "594", "596", "508")

SCHEMA_VERSION = 3

_T = TypeVar("_T")

# Each entry upgrades the schema from version i to i + 1. Never edit a released entry; append.
_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: holdings, delegations and the change log that drives worker reloads.
    """
    CREATE TABLE holdings (
        id INTEGER PRIMARY KEY,
        holder TEXT NOT NULL,
        start TEXT NOT NULL,
        "end" TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL
    );
    CREATE INDEX holdings_holder ON holdings(holder, start);
    CREATE TABLE delegations (
        id INTEGER PRIMARY KEY,
        principal TEXT NOT NULL,
        customer TEXT NOT NULL,
        start TEXT NOT NULL,
        "end" TEXT NOT NULL,
        valid_from REAL NOT NULL,
        valid_until REAL NOT NULL,
        origin TEXT NOT NULL DEFAULT 'manual',
        spc TEXT,
        created REAL NOT NULL
    );
    CREATE INDEX delegations_customer ON delegations(customer, start);
    CREATE TABLE changelog (
        gen INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        op TEXT NOT NULL,
        row_id INTEGER NOT NULL,
        who TEXT NOT NULL,
        customer TEXT,
        start TEXT NOT NULL,
        "end" TEXT NOT NULL,
        valid_from REAL,
        valid_until REAL
    );
    CREATE TRIGGER holdings_add AFTER INSERT ON holdings BEGIN
        INSERT INTO changelog(kind, op, row_id, who, start, "end")
        VALUES ('h', '+', NEW.id, NEW.holder, NEW.start, NEW."end");
    END;
    CREATE TRIGGER holdings_del AFTER DELETE ON holdings BEGIN
        INSERT INTO changelog(kind, op, row_id, who, start, "end")
        VALUES ('h', '-', OLD.id, OLD.holder, OLD.start, OLD."end");
    END;
    CREATE TRIGGER delegations_add AFTER INSERT ON delegations BEGIN
        INSERT INTO changelog(
            kind, op, row_id, who, customer, start, "end", valid_from, valid_until)
        VALUES ('d', '+', NEW.id, NEW.principal, NEW.customer, NEW.start, NEW."end",
                NEW.valid_from, NEW.valid_until);
    END;
    CREATE TRIGGER delegations_del AFTER DELETE ON delegations BEGIN
        INSERT INTO changelog(
            kind, op, row_id, who, customer, start, "end", valid_from, valid_until)
        VALUES ('d', '-', OLD.id, OLD.principal, OLD.customer, OLD.start, OLD."end",
                OLD.valid_from, OLD.valid_until);
    END;
    """,
    # 1 -> 2: per-number flow history for the plan's conditional cells (plan-conditional rule).
    """
    CREATE TABLE flow_history (
        number TEXT NOT NULL,
        destination TEXT NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (number, destination)
    ) WITHOUT ROWID;
    CREATE INDEX flow_history_seen ON flow_history(last_seen);
    """,
    # 2 -> 3: MESSAGEs sent and received per number and day (the conversational-messaging
    # exception of the plan-conditional rule: sent within ±20 % of received).
    """
    CREATE TABLE message_flow (
        number TEXT NOT NULL,
        day INTEGER NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        received INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (number, day)
    ) WITHOUT ROWID;
    CREATE INDEX message_flow_day ON message_flow(day);
    """,
)

# Changelog rows older than this many generations are pruned; a worker further behind than that
# rebuilds its snapshot from the tables instead of replaying.
_CHANGELOG_KEEP = 200_000


class NumberStoreError(ValueError):
    """A refused change: bad number or range, too-short delegation, mobile or 089 delegation."""


@dataclass(frozen=True, slots=True)
class NumberRange:
    """A single E.164 number or an inclusive range of E.164 numbers of one length."""

    start: str
    end: str

    @classmethod
    def parse(cls, text: str, normalise: Callable[[str], str] | None = None) -> NumberRange:
        """Read `+331…`, `+331…-+331…`, or (with `normalise`) any notation it accepts."""
        text = text.strip()
        norm = normalise or _strict_e164
        head, sep, tail = text.partition("-") if not text.startswith("-") else (text, "", "")
        if sep and tail:
            # "+33162000000-+33162009999": a dash between two numbers, not a separator inside one.
            return cls.of(norm(head), norm(tail))
        return cls.of(norm(text), norm(text))

    @classmethod
    def of(cls, start: str, end: str) -> NumberRange:
        """A validated range; raises NumberStoreError when it is not one."""
        for value in (start, end):
            if not (value.startswith("+") and value[1:].isdigit() and value[1:2] != "0"):
                raise NumberStoreError(f"{value!r} is not an E.164 number (+ and digits)")
            if len(value) > 16:
                raise NumberStoreError(f"{value!r} has more than 15 digits")
        if len(start) != len(end):
            raise NumberStoreError(f"range {start}-{end}: both ends need the same length")
        if int(start[1:]) > int(end[1:]):
            raise NumberStoreError(f"range {start}-{end}: start is after end")
        return cls(start, end)

    @property
    def single(self) -> bool:
        """True for one number."""
        return self.start == self.end

    @property
    def size(self) -> int:
        """How many numbers the range holds."""
        return int(self.end[1:]) - int(self.start[1:]) + 1

    def __contains__(self, e164: object) -> bool:
        return (
            isinstance(e164, str)
            and len(e164) == len(self.start)
            and self.start <= e164 <= self.end
        )

    def __str__(self) -> str:
        return self.start if self.single else f"{self.start}-{self.end}"


def _strict_e164(text: str) -> str:
    text = text.strip()
    if not (text.startswith("+") and text[1:].isdigit()):
        raise NumberStoreError(f"{text!r} is not an E.164 number (+ and digits)")
    return text


@dataclass(frozen=True, slots=True)
class Holding:
    """A holder (principal or call centre) owns a number or range."""

    id: int
    holder: str
    range: NumberRange
    note: str = ""


@dataclass(frozen=True, slots=True)
class Delegation:
    """A principal lets a call centre present a number or range from `valid_from` (inclusive)
    to `valid_until` (exclusive), both seconds since the epoch."""

    id: int
    principal: str
    customer: str
    range: NumberRange
    valid_from: float
    valid_until: float
    origin: str = "manual"
    spc: str | None = None

    def active(self, now: float) -> bool:
        """Whether the delegation holds at `now`."""
        return self.valid_from <= now < self.valid_until


class ListMatch(NamedTuple):
    """The answer of a list lookup: how the customer holds the number, or why it does not."""

    status: ListStatus | None
    principal: str | None = None
    """Whose number it is: the holder for `own`, the delegating principal for `delegated`."""
    delegation: Delegation | None = None
    reason: str = ""
    principal_mismatch: bool = False
    """The number would be acceptable but is not the marker's principal's (L.221-17)."""
    holders: tuple[str, ...] = ()


@lru_cache(maxsize=4096)
def _own_match(customer: str, holders: tuple[str, ...]) -> ListMatch:
    """The `own` answer: a pure function of (customer, holders), and immutable, so one shared
    instance serves every request presenting a number with those holders."""
    return ListMatch("own", customer, reason=f"held by {customer}", holders=holders)


_BND_REFUSED_PREFIXES: tuple[str, ...] = (
    *(cc + z for cc in BND_COUNTRY_CODES for z in ("6", "7")),
    "3389",
)


def is_bnd_refused(e164: str) -> str | None:
    """Why the BND would refuse to delegate `e164` (mobile Z=6/7 or 089), or None.

    The BND excludes mobile numbers and 089 numbers from display delegation (man_fr.md §1;
    ARCEP's July 2025 draft: spoofing risk too high for mobiles).
    """
    digits = e164.lstrip("+")
    for cc in BND_COUNTRY_CODES:
        if digits.startswith(cc):
            nsn = digits[len(cc) :]
            if nsn[:1] in ("6", "7"):
                return f"{e164} is a mobile number (Z=6/7): mobiles cannot be delegated"
            if cc == "33" and nsn.startswith("89"):
                return f"{e164} is an 089 number: 089 numbers cannot be delegated"
            return None
    return None


def day_bounds(first: date, last: date, zone: str) -> tuple[float, float]:
    """Epoch bounds of the days `first`..`last` inclusive, as judged in time zone `zone`."""
    tz = ZoneInfo(zone)
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    nxt = last + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return start.timestamp(), end.timestamp()


@lru_cache(maxsize=4096)
def _fmt_time(ts: float, zone: str) -> str:
    # Memoised: a delegated caller's reason names the delegation's end on every request, and
    # a zone-aware fromtimestamp + isoformat costs several µs; the answer is a pure function
    # of (ts, zone) and a list holds few distinct delegation bounds.
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).isoformat(timespec="minutes")


# --- prefix keys ---------------------------------------------------------------------------
#
# A key packs (prefix digits, total number length) into one int: int(prefix) * 16 + length.
# E.164 digits never start with 0, so distinct prefixes give distinct ints; the length keeps a
# 10-digit range from matching an 11-digit number with the same leading digits.

_POW10 = tuple(10**k for k in range(17))
_INFINITY = float("inf")


def _index(index: dict[int, tuple[_T, ...]], levels: _Levels, rng: NumberRange, item: _T) -> None:
    """Add `item` under each of `rng`'s keys: the insertion half of a holdings or delegations
    index."""
    for key in _range_keys(rng):
        # Level first: a lookup racing this change must not skip a key already present.
        levels.added(key)
        index[key] = (*index.get(key, ()), item)


def _unindex(
    index: dict[int, tuple[_T, ...]],
    levels: _Levels,
    rng: NumberRange,
    keep: Callable[[_T], bool],
) -> None:
    """Remove from `index` (and its `levels` when a key empties) the entries of `rng`'s keys
    that `keep` refuses: the removal half of a holdings or delegations index."""
    for key in _range_keys(rng):
        entry = index.get(key, ())
        kept = tuple(item for item in entry if keep(item))
        if kept:
            index[key] = kept
        elif entry:
            del index[key]
            levels.removed(key)


def _range_keys(rng: NumberRange) -> list[int]:
    """The prefix keys whose blocks cover `rng` exactly (standard range-to-prefix split)."""
    width = len(rng.start) - 1
    lo, hi = int(rng.start[1:]), int(rng.end[1:])
    keys: list[int] = []
    while lo <= hi:
        free = 0
        while free < width and lo % _POW10[free + 1] == 0 and lo + _POW10[free + 1] - 1 <= hi:
            free += 1
        keys.append((lo // _POW10[free]) * 16 + width)
        lo += _POW10[free]
    return keys


def _number_keys(e164: str) -> Iterator[int]:
    digits = e164[1:]
    width = len(digits)
    value = int(digits)
    for free in range(width):
        yield (value // _POW10[free]) * 16 + width


def _key_level(key: int) -> tuple[int, int]:
    """(number width, free trailing digits) of a prefix key, the inverse of its packing."""
    width = key & 15
    prefix = key >> 4
    return width, width - len(str(prefix))


class _Levels:
    """Which (width, free digits) levels an index holds keys at, with a count per level.

    A number of width w has w candidate prefix keys; a list of single numbers only ever has
    keys at free = 0, and ranges add a few more levels. Probing only the levels present turns
    eleven dictionary probes per index into one or two, and gives the same answer: a key at a
    level with no entries cannot be in the dictionary. Kept in ascending free order so the
    holders and delegations come out most specific first, as the full walk yields them.
    """

    __slots__ = ("_counts", "by_width")

    def __init__(self) -> None:
        self._counts: dict[tuple[int, int], int] = {}
        self.by_width: dict[int, tuple[int, ...]] = {}

    def added(self, key: int) -> None:
        level = _key_level(key)
        count = self._counts.get(level, 0)
        self._counts[level] = count + 1
        if count == 0:
            self._rebuild(level[0])

    def removed(self, key: int) -> None:
        level = _key_level(key)
        count = self._counts.get(level, 0) - 1
        if count > 0:
            self._counts[level] = count
            return
        self._counts.pop(level, None)
        self._rebuild(level[0])

    def _rebuild(self, width: int) -> None:
        frees = tuple(sorted(f for w, f in self._counts if w == width))
        # Replaced in one assignment: a concurrent lookup sees the old or the new tuple.
        if frees:
            self.by_width[width] = frees
        else:
            self.by_width.pop(width, None)


# How many recent changes a snapshot remembers the ranges of (`untouched_since`): a memo entry
# older than that many changes is judged afresh.
_TOUCHED_KEPT = 1024

# One holding in the index: (row id, holder). A plain tuple of an int and a str, not a class:
# CPython stops tracking such tuples in the garbage collector once it has seen them, so a list
# of a million numbers does not add two million objects to every full collection (which took
# over a second with instances here).
_Held = tuple[int, str]


class ListSnapshot:
    """An in-memory, prefix-keyed copy of the holdings and delegations (read on the hot path).

    Mutated only by `add_holding`, `remove_holding`, `add_delegation` and `remove_delegation`
    (`NumberLists.poll()` calls them). A lookup reads a handful of dictionary entries; each
    change touches the entries of one row, so a concurrent lookup sees a row either entirely
    before or entirely after the change. The last changes' ranges are kept
    (`untouched_since`), so the engine's memos forget only what a change can affect.
    """

    def __init__(self, zone: str = "Europe/Paris") -> None:
        self.zone = zone
        self.generation = 0
        self.changes = 0
        """A seqlock-style change counter: bumped once before and once after every mutation,
        so it is odd while one is in progress and differs once one has happened. Unlike
        `generation` (the store's changelog id, set by `NumberLists.poll()`), it also moves
        when the snapshot is edited directly. The engine's memos stamp their entries with it."""
        # What the last changes touched (`untouched_since`), as (change counter once done,
        # first number, last number) of the rows they added or removed, oldest first; the
        # same split for lookups: single numbers -> counter of their last change, ranges in
        # order. A counter below `_reach` is older than what is kept. Written by the thread
        # that mutates, in place or (trimming) by replacing each structure whole, so a
        # hot-path reader is never disturbed. `logging_changes` is off while a full load
        # builds a snapshot nobody reads yet.
        self._touched: list[tuple[int, str, str]] = []
        self._touched_numbers: dict[str, int] = {}
        self._touched_ranges: list[tuple[int, str, str]] = []
        self._reach = 0
        self.logging_changes = True
        self._held: dict[int, tuple[_Held, ...]] = {}
        self._holder_names: dict[str, str] = {}
        self._delegated: dict[int, tuple[Delegation, ...]] = {}
        self._held_levels = _Levels()
        self._delegated_levels = _Levels()
        self.holding_rows = 0
        self.delegation_rows = 0

    # -- building -------------------------------------------------------------------------

    def add_holding(self, row_id: int, holder: str, rng: NumberRange) -> None:
        """Index one holding row."""
        self.changes += 1
        try:
            # One string object per holder rather than one per row read from SQLite.
            item: _Held = (row_id, self._holder_names.setdefault(holder, holder))
            _index(self._held, self._held_levels, rng, item)
            self.holding_rows += 1
            self._touch(rng)
        finally:
            self.changes += 1

    def remove_holding(self, row_id: int, rng: NumberRange) -> None:
        """Drop one holding row from the index."""
        self.changes += 1
        try:
            _unindex(self._held, self._held_levels, rng, lambda held: held[0] != row_id)
            self.holding_rows -= 1
            self._touch(rng)
        finally:
            self.changes += 1

    def add_delegation(self, item: Delegation) -> None:
        """Index one delegation row."""
        self.changes += 1
        try:
            _index(self._delegated, self._delegated_levels, item.range, item)
            self.delegation_rows += 1
            self._touch(item.range)
        finally:
            self.changes += 1

    def remove_delegation(self, row_id: int, rng: NumberRange) -> None:
        """Drop one delegation row from the index."""
        self.changes += 1
        try:
            _unindex(self._delegated, self._delegated_levels, rng, lambda d: d.id != row_id)
            self.delegation_rows -= 1
            self._touch(rng)
        finally:
            self.changes += 1

    def _touch(self, rng: NumberRange) -> None:
        if not self.logging_changes:
            return
        record = (self.changes + 1, rng.start, rng.end)
        self._touched.append(record)
        if rng.start == rng.end:
            self._touched_numbers[rng.start] = record[0]
        else:
            self._touched_ranges.append(record)
        if len(self._touched) >= 2 * _TOUCHED_KEPT:
            kept = self._touched[-_TOUCHED_KEPT:]
            # The bar goes up before the structures shrink: a reader that gets a trimmed
            # structure reads the new bar after it (`untouched_since` reads the bar last).
            self._reach = kept[0][0] - 2
            self._touched_numbers = {first: done for done, first, last in kept if first == last}
            self._touched_ranges = [r for r in kept if r[1] != r[2]]
            self._touched = kept

    def start_logging_changes(self) -> None:
        """Log changes from now on (`untouched_since` vouches for nothing older)."""
        self._touched, self._touched_numbers, self._touched_ranges = [], {}, []
        self._reach = self.changes
        self.logging_changes = True

    def untouched_since(self, changes: int, numbers: Sequence[str]) -> bool:
        """Whether no change made after the counter stood at `changes` (even) added or removed
        a row covering one of `numbers` (E.164): then every list answer for them is what it
        was. False when the kept log does not reach back that far.

        `match` reads only the rows covering the number asked for, so an answer stays right
        across any change to other rows (a property test plays list changes on numbers
        asked for and not through the memos). One dictionary lookup per number, plus a walk
        over the ranges changed since: a worker whose entries are rarely revisited while the
        lists change often does not walk every single-number change each time.
        """
        by_number = self._touched_numbers
        ranges = self._touched_ranges
        if changes < self._reach:
            return False
        for number in numbers:
            if by_number.get(number, -1) > changes:
                return False
        for i in range(len(ranges) - 1, -1, -1):
            done, first, last = ranges[i]
            if done <= changes:
                break
            for number in numbers:
                if len(number) == len(first) and first <= number <= last:
                    return False
        return True

    # -- lookups --------------------------------------------------------------------------

    def holders(self, e164: str) -> tuple[str, ...]:
        """Every holder of `e164` (usually one)."""
        found: list[str] = []
        held = self._held
        for key in _number_keys(e164):
            entry = held.get(key)
            if entry:
                found.extend(h[1] for h in entry)
        return tuple(found)

    def delegations(self, e164: str) -> tuple[Delegation, ...]:
        """Every delegation covering `e164`, whatever its customer or period."""
        found: list[Delegation] = []
        delegated = self._delegated
        for key in _number_keys(e164):
            entry = delegated.get(key)
            if entry:
                found.extend(entry)
        return tuple(found)

    def _found(self, e164: str) -> tuple[tuple[str, ...], tuple[Delegation, ...]]:
        """`(self.holders(e164), self.delegations(e164))`, probing only occupied levels.

        Hot path: only the prefix levels each index holds keys at are probed (`_Levels`); with
        a list of single numbers that is one probe per index. A property test checks it
        against the full walk of `holders` / `delegations`.
        """
        digits = e164[1:]
        width = len(digits)
        value = int(digits)
        held = self._held
        holders: tuple[str, ...] = ()
        for free in self._held_levels.by_width.get(width, ()):
            h = held.get((value // _POW10[free]) * 16 + width)
            if h:
                names = (h[0][1],) if len(h) == 1 else tuple([x[1] for x in h])
                holders = (*holders, *names) if holders else names
        delegated = self._delegated
        delegations: tuple[Delegation, ...] = ()
        for free in self._delegated_levels.by_width.get(width, ()):
            d = delegated.get((value // _POW10[free]) * 16 + width)
            if d:
                delegations = (*delegations, *d)
        return holders, delegations

    def match(
        self,
        e164: str,
        customer: str | None,
        now: float,
        *,
        principals: Collection[str] = (),
        principal: str | None = None,
    ) -> ListMatch:
        """How `customer` may present `e164` at `now`.

        `principals`: when non-empty, only delegations from these principals count (the
        source's configured principals). `principal`: the principal a marker names; the number
        must then be that principal's (L.221-17: the number of the professional on whose
        behalf the call is made).
        """
        holders, delegations = self._found(e164)
        return self._match(e164, customer, now, principals, principal, holders, delegations)

    def match_span(
        self,
        e164: str,
        customer: str | None,
        now: float,
        *,
        principals: Collection[str] = (),
        principal: str | None = None,
    ) -> tuple[ListMatch, float, float]:
        """`match()`, with the span `[lo, hi)` of times over which that answer holds as long as
        the snapshot does not change (the engine's judgement memo reuses it inside the span).

        `match` reads `now` only through comparisons with the bounds of the delegations
        covering `e164` (`valid_from <= now`, `now < valid_until`, and the same tests in
        `_why_not`), each of which flips exactly at a bound: between two consecutive bounds of
        those delegations, whatever their customer, every comparison and so the answer is the
        same. Bounds of all covering delegations are used, not only the customer's: a few more
        splits, never a wrong reuse.
        """
        holders, delegations = self._found(e164)
        answer = self._match(e164, customer, now, principals, principal, holders, delegations)
        lo = -_INFINITY
        hi = _INFINITY
        for d in delegations:
            for bound in (d.valid_from, d.valid_until):
                if bound <= now:
                    if bound > lo:
                        lo = bound
                elif bound < hi:
                    hi = bound
        return answer, lo, hi

    def memo_token(self) -> tuple[ListSnapshot, int]:
        """(this snapshot, its change counter): see `changes`."""
        return self, self.changes

    def _match(
        self,
        e164: str,
        customer: str | None,
        now: float,
        principals: Collection[str],
        principal: str | None,
        holders: tuple[str, ...],
        delegations: tuple[Delegation, ...],
    ) -> ListMatch:
        # ListMatch built positionally: (status, principal, delegation, reason,
        # principal_mismatch, holders); keywords cost a NamedTuple a slower call.
        if customer is None:
            return ListMatch(None, None, None, "the source names no customer", False, holders)
        if customer in holders and principal in (None, customer):
            return _own_match(customer, holders)
        mine: list[Delegation] = []
        allowed: list[Delegation] = []
        if delegations:
            mine = [d for d in delegations if d.customer == customer]
            active = [d for d in mine if d.active(now)]
            allowed = [d for d in active if not principals or d.principal in principals]
        if principal is not None:
            chosen = [d for d in allowed if d.principal == principal]
            if chosen:
                return self._delegated_match(chosen[0], holders)
            if allowed or customer in holders:
                whose = allowed[0].principal if allowed else customer
                return ListMatch(
                    None,
                    None,
                    None,
                    f"{e164} is {whose}'s, but the marker says the call is made for {principal}",
                    True,
                    holders,
                )
        elif allowed:
            return self._delegated_match(allowed[0], holders)
        return ListMatch(
            None, None, None, self._why_not(e164, customer, now, mine, principals, holders), False,
            holders,
        )  # fmt: skip

    def _delegated_match(self, item: Delegation, holders: tuple[str, ...]) -> ListMatch:
        until = _fmt_time(item.valid_until, self.zone)
        return ListMatch(
            "delegated",
            item.principal,
            item,
            f"delegated to {item.customer} by {item.principal} until {until}",
            False,
            holders,
        )

    def _why_not(
        self,
        e164: str,
        customer: str,
        now: float,
        mine: list[Delegation],
        principals: Collection[str],
        holders: tuple[str, ...],
    ) -> str:
        for d in mine:
            span = f"{_fmt_time(d.valid_from, self.zone)} to {_fmt_time(d.valid_until, self.zone)}"
            if now < d.valid_from:
                return f"delegation of {e164} by {d.principal} to {customer} starts later ({span})"
            if now >= d.valid_until:
                return f"delegation of {e164} by {d.principal} to {customer} expired ({span})"
            if principals and d.principal not in principals:
                return (
                    f"{e164} is delegated by {d.principal}, not one of this source's principals"
                    f" ({', '.join(principals)})"
                )
        if holders:
            return f"{e164} is held by {', '.join(holders)}, not delegated to {customer}"
        return f"{e164} is not on {customer}'s list and not delegated to it"


# --- the store -----------------------------------------------------------------------------


def _connect(path: Path | str) -> sqlite3.Connection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
    # WAL lets every worker read while the CLI or another worker writes.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Create or upgrade the schema to `SCHEMA_VERSION`; returns the version found before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        found = int(row[0]) if row else 0
        if row is None:
            conn.execute("INSERT INTO schema_version(version) VALUES (0)")
        if found > SCHEMA_VERSION:
            raise NumberStoreError(
                f"database schema version {found} is newer than this sipguard ({SCHEMA_VERSION})"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in _split_sql(_MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _generation(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changelog'").fetchone()
    return int(row[0]) if row else 0


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (triggers contain ';' inside BEGIN ... END)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not line.strip():
            continue
        current.append(line)
        text = "\n".join(current)
        if text.rstrip().endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if current and "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


class NumberStore:
    """The SQLite store of holdings, delegations and flow history (CLI and shell side)."""

    def __init__(
        self,
        path: Path | str,
        *,
        zone: str = "Europe/Paris",
        min_delegation_hours: float = 72.0,
    ) -> None:
        self.path = path
        self.zone = zone
        self.min_delegation_hours = min_delegation_hours
        self._conn = _connect(path)
        self._lock = threading.Lock()
        migrate(self._conn)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> NumberStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection (for tests and the snapshot loader)."""
        return self._conn

    def schema_version(self) -> int:
        """The schema version of the open database."""
        row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0])

    def generation(self) -> int:
        """The store's change counter: the last changelog id."""
        row = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name='changelog'"
        ).fetchone()
        return int(row[0]) if row else 0

    # -- writes ---------------------------------------------------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._conn)
                self._conn.execute(
                    "DELETE FROM changelog WHERE gen < (SELECT MAX(gen) FROM changelog) - ?",
                    (_CHANGELOG_KEEP,),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return result

    def add_holding(self, holder: str, rng: NumberRange, note: str = "") -> Holding:
        """Record that `holder` owns `rng`."""
        if not holder:
            raise NumberStoreError("a holding needs a holder")

        def work(conn: sqlite3.Connection) -> Holding:
            cur = conn.execute(
                'INSERT INTO holdings(holder, start, "end", note, created) VALUES (?,?,?,?,?)',
                (holder, rng.start, rng.end, note, time.time()),
            )
            return Holding(int(cur.lastrowid or 0), holder, rng, note)

        result: Holding = self._write(work)
        return result

    def check_delegation(self, rng: NumberRange, valid_from: float, valid_until: float) -> None:
        """Raise NumberStoreError when the BND would refuse this delegation, or it is too short."""
        for end in (rng.start, rng.end):
            why = is_bnd_refused(end)
            if why:
                raise NumberStoreError(why)
        # A range may hide mobile or 089 numbers between two acceptable ends.
        width = len(rng.start) - 1
        lo, hi = int(rng.start[1:]), int(rng.end[1:])
        for prefix in _BND_REFUSED_PREFIXES:
            if len(prefix) < width:
                first, last = int(prefix.ljust(width, "0")), int(prefix.ljust(width, "9"))
                if first <= hi and last >= lo:
                    raise NumberStoreError(
                        f"range {rng} covers +{prefix}…: mobile and 089 numbers cannot be delegated"
                    )
        if valid_until <= valid_from:
            raise NumberStoreError("a delegation must end after it starts")
        hours = (valid_until - valid_from) / 3600.0
        if hours < self.min_delegation_hours:
            raise NumberStoreError(
                f"delegation of {rng} lasts {hours:.1f} h, shorter than the"
                f" {self.min_delegation_hours:g} h minimum (plan anti-rotation rule)"
            )

    def add_delegation(
        self,
        principal: str,
        customer: str,
        rng: NumberRange,
        valid_from: float,
        valid_until: float,
        *,
        origin: str = "manual",
        spc: str | None = None,
    ) -> Delegation:
        """Let `customer` present `principal`'s `rng` from `valid_from` to `valid_until`."""
        if not principal or not customer:
            raise NumberStoreError("a delegation needs a principal and a customer")
        self.check_delegation(rng, valid_from, valid_until)

        def work(conn: sqlite3.Connection) -> Delegation:
            return self._insert_delegation(
                conn, principal, customer, rng, valid_from, valid_until, origin, spc
            )

        result: Delegation = self._write(work)
        return result

    @staticmethod
    def _insert_delegation(
        conn: sqlite3.Connection,
        principal: str,
        customer: str,
        rng: NumberRange,
        valid_from: float,
        valid_until: float,
        origin: str,
        spc: str | None,
    ) -> Delegation:
        cur = conn.execute(
            'INSERT INTO delegations(principal, customer, start, "end", valid_from,'
            " valid_until, origin, spc, created) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                principal,
                customer,
                rng.start,
                rng.end,
                valid_from,
                valid_until,
                origin,
                spc,
                time.time(),
            ),
        )
        return Delegation(
            int(cur.lastrowid or 0), principal, customer, rng, valid_from, valid_until, origin, spc
        )

    def remove(
        self,
        rng: NumberRange,
        *,
        holder: str | None = None,
        customer: str | None = None,
        principal: str | None = None,
    ) -> int:
        """Remove the holdings (by `holder`) or delegations (by `customer`/`principal`) of
        exactly `rng`; with neither, every row of exactly `rng`. Returns how many rows went."""

        def work(conn: sqlite3.Connection) -> int:
            count = 0
            if customer is None and principal is None:
                sql = 'DELETE FROM holdings WHERE start = ? AND "end" = ?'
                args: list[Any] = [rng.start, rng.end]
                if holder is not None:
                    sql += " AND holder = ?"
                    args.append(holder)
                count += conn.execute(sql, args).rowcount
            if holder is None:
                sql = 'DELETE FROM delegations WHERE start = ? AND "end" = ?'
                args = [rng.start, rng.end]
                if customer is not None:
                    sql += " AND customer = ?"
                    args.append(customer)
                if principal is not None:
                    sql += " AND principal = ?"
                    args.append(principal)
                count += conn.execute(sql, args).rowcount
            return count

        result: int = self._write(work)
        return result

    # -- reads ----------------------------------------------------------------------------

    def holdings(self, holder: str | None = None) -> list[Holding]:
        """Every holding, or those of `holder`."""
        sql = 'SELECT id, holder, start, "end", note FROM holdings'
        args: tuple[Any, ...] = ()
        if holder is not None:
            sql += " WHERE holder = ?"
            args = (holder,)
        rows = self._conn.execute(sql + " ORDER BY holder, start", args).fetchall()
        return [Holding(r[0], r[1], NumberRange(r[2], r[3]), r[4]) for r in rows]

    def delegations(
        self, customer: str | None = None, principal: str | None = None
    ) -> list[Delegation]:
        """Every delegation, or those to `customer` / from `principal`."""
        sql = (
            'SELECT id, principal, customer, start, "end", valid_from, valid_until, origin, spc'
            " FROM delegations WHERE 1=1"
        )
        args: list[Any] = []
        if customer is not None:
            sql += " AND customer = ?"
            args.append(customer)
        if principal is not None:
            sql += " AND principal = ?"
            args.append(principal)
        rows = self._conn.execute(sql + " ORDER BY customer, principal, start", args).fetchall()
        return [
            Delegation(r[0], r[1], r[2], NumberRange(r[3], r[4]), r[5], r[6], r[7], r[8])
            for r in rows
        ]

    # -- YAML -----------------------------------------------------------------------------

    def export_yaml(self, *, holder: str | None = None, customer: str | None = None) -> str:
        """The lists as YAML (`version`, `holdings`, `delegations`), grouped per holder/grant."""
        tz = ZoneInfo(self.zone)
        holdings: dict[tuple[str, str], list[str]] = {}
        if customer is None:
            for h in self.holdings(holder):
                holdings.setdefault((h.holder, h.note), []).append(str(h.range))
        delegations: dict[tuple[Any, ...], list[str]] = {}
        if holder is None:
            for d in self.delegations(customer):
                key = (d.principal, d.customer, d.valid_from, d.valid_until, d.origin, d.spc)
                delegations.setdefault(key, []).append(str(d.range))
        document: dict[str, Any] = {
            "version": 1,
            "holdings": [
                {"holder": k[0], **({"note": k[1]} if k[1] else {}), "numbers": v}
                for k, v in holdings.items()
            ],
            "delegations": [
                {
                    "principal": k[0],
                    "customer": k[1],
                    "from": datetime.fromtimestamp(k[2], tz).isoformat(),
                    "until": datetime.fromtimestamp(k[3], tz).isoformat(),
                    "origin": k[4],
                    **({"spc": k[5]} if k[5] else {}),
                    "numbers": v,
                }
                for k, v in delegations.items()
            ],
        }
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)

    def import_yaml(
        self, text: str, normalise: Callable[[str], str] | None = None
    ) -> tuple[int, int]:
        """Add the holdings and delegations of a YAML document (all or nothing).

        Returns (holding rows, delegation rows) added. Dates without a time are whole days in
        the store's time zone (`until` inclusive)."""
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise NumberStoreError(f"YAML syntax: {exc}") from None
        if not isinstance(document, dict):
            raise NumberStoreError("the document must be a mapping with holdings/delegations")
        unknown = set(document) - {"version", "holdings", "delegations"}
        if unknown:
            raise NumberStoreError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
        plan_h: list[tuple[str, NumberRange, str]] = []
        plan_d: list[tuple[str, str, NumberRange, float, float, str, str | None]] = []
        for i, entry in enumerate(document.get("holdings") or []):
            where = f"holdings[{i}]"
            _keys(entry, where, {"holder", "numbers", "note"}, {"holder", "numbers"})
            for number in _numbers(entry, where):
                plan_h.append(
                    (
                        str(entry["holder"]),
                        _parse(number, normalise, where),
                        str(entry.get("note", "")),
                    )
                )
        for i, entry in enumerate(document.get("delegations") or []):
            where = f"delegations[{i}]"
            _keys(
                entry,
                where,
                {"principal", "customer", "from", "until", "numbers", "origin", "spc"},
                {"principal", "customer", "from", "until", "numbers"},
            )
            start = self._when(entry["from"], where, end=False)
            until = self._when(entry["until"], where, end=True)
            for number in _numbers(entry, where):
                rng = _parse(number, normalise, where)
                try:
                    self.check_delegation(rng, start, until)
                except NumberStoreError as exc:
                    raise NumberStoreError(f"{where}: {exc}") from None
                plan_d.append(
                    (
                        str(entry["principal"]),
                        str(entry["customer"]),
                        rng,
                        start,
                        until,
                        str(entry.get("origin", "yaml")),
                        None if entry.get("spc") is None else str(entry["spc"]),
                    )
                )

        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            now = time.time()
            conn.executemany(
                'INSERT INTO holdings(holder, start, "end", note, created) VALUES (?,?,?,?,?)',
                [(h, r.start, r.end, n, now) for h, r, n in plan_h],
            )
            for p, c, r, f, u, o, s in plan_d:
                self._insert_delegation(conn, p, c, r, f, u, o, s)
            return len(plan_h), len(plan_d)

        result: tuple[int, int] = self._write(work)
        return result

    def _when(self, value: Any, where: str, *, end: bool) -> float:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=ZoneInfo(self.zone))
            return moment.timestamp()
        if isinstance(value, date):
            first, last = day_bounds(value, value, self.zone)
            return last if end else first
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise NumberStoreError(f"{where}: {value!r} is not an ISO date or time") from None
            if len(value) == 10:
                return self._when(parsed.date(), where, end=end)
            return self._when(parsed, where, end=end)
        raise NumberStoreError(f"{where}: {value!r} is not a date")

    # -- BND ------------------------------------------------------------------------------

    def import_bnd(
        self,
        lines: Iterable[str],
        *,
        principal: str,
        customer: str,
        valid_from: float,
        valid_until: float,
    ) -> tuple[int, int]:
        """Import BND lines `TN;SPC` / `start-end;SPC` (and delta lines `…;CREATED|REMOVED`).

        The lines name neither principal, customer nor period: the caller gives them. All or
        nothing: any refused line (mobile, 089, bad syntax) aborts the import with every
        problem listed. Returns (delegations added, delegations removed).
        """
        adds: list[tuple[NumberRange, str]] = []
        removes: list[NumberRange] = []
        problems: list[str] = []
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip().lstrip("\ufeff")
            if not line or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split(";")]
            if len(fields) not in (2, 3) or not fields[1]:
                problems.append(f"line {lineno}: expected TN;SPC or start-end;SPC: {line!r}")
                continue
            if lineno == 1 and not fields[0][:1].isdigit():
                continue  # a header line
            op = fields[2].upper() if len(fields) == 3 else "CREATED"
            if op not in ("CREATED", "REMOVED"):
                problems.append(f"line {lineno}: unknown operation {fields[2]!r}")
                continue
            start, _, end = fields[0].partition("-")
            try:
                rng = NumberRange.of("+" + start, "+" + (end or start))
                if not any(rng.start[1:].startswith(cc) for cc in BND_COUNTRY_CODES):
                    raise NumberStoreError(f"{rng} is outside the BND country codes")
                if op == "CREATED":
                    self.check_delegation(rng, valid_from, valid_until)
                    adds.append((rng, fields[1]))
                else:
                    removes.append(rng)
            except NumberStoreError as exc:
                problems.append(f"line {lineno}: {exc}")
        if problems:
            raise NumberStoreError("; ".join(problems))

        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            gone = 0
            for rng in removes:
                gone += conn.execute(
                    'DELETE FROM delegations WHERE start = ? AND "end" = ? AND customer = ?'
                    " AND principal = ?",
                    (rng.start, rng.end, customer, principal),
                ).rowcount
            for rng, spc in adds:
                self._insert_delegation(
                    conn, principal, customer, rng, valid_from, valid_until, "bnd", spc
                )
            return len(adds), gone

        result: tuple[int, int] = self._write(work)
        return result

    def export_bnd(
        self,
        *,
        customer: str | None = None,
        principal: str | None = None,
        spc: str | None = None,
        now: float | None = None,
    ) -> tuple[list[str], list[str]]:
        """BND lines for the delegations (active at `now` when given); returns (lines, skipped).

        The SPC is the delegation's own (from a BND import) or `spc`. Numbers outside the BND
        country codes are skipped and named in the second list.
        """
        lines: list[str] = []
        skipped: list[str] = []
        for d in self.delegations(customer, principal):
            if now is not None and not d.active(now):
                continue
            code = d.spc or spc
            digits = d.range.start[1:]
            if not any(digits.startswith(cc) for cc in BND_COUNTRY_CODES):
                skipped.append(f"{d.range}: outside the BND country codes")
                continue
            if not code:
                skipped.append(f"{d.range}: no SPC (give --spc)")
                continue
            tn = digits if d.range.single else f"{digits}-{d.range.end[1:]}"
            lines.append(f"{tn};{code}")
        return lines, skipped

    # -- flow history ---------------------------------------------------------------------

    def record_flows(self, rows: Iterable[tuple[str, str, float]]) -> None:
        """Upsert (number, destination, last_seen) observations."""
        self._write_all(
            "INSERT INTO flow_history(number, destination, last_seen) VALUES (?,?,?)"
            " ON CONFLICT(number, destination) DO UPDATE SET"
            " last_seen = MAX(last_seen, excluded.last_seen)",
            rows,
        )

    def _write_all(self, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """`statement` over every row in one transaction (all or nothing)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(statement, list(rows))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def load_flows(self, since: float) -> list[tuple[str, str, float]]:
        """Observations newer than `since`."""
        rows = self._conn.execute(
            "SELECT number, destination, last_seen FROM flow_history WHERE last_seen >= ?",
            (since,),
        ).fetchall()
        return [(r[0], r[1], float(r[2])) for r in rows]

    def prune_flows(self, before: float) -> int:
        """Forget observations older than `before`."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM flow_history WHERE last_seen < ?", (before,)
            ).rowcount

    def record_messages(self, rows: Iterable[tuple[str, int, int, int]]) -> None:
        """Add (number, day, sent, received) counts to what the store holds."""
        self._write_all(
            "INSERT INTO message_flow(number, day, sent, received) VALUES (?,?,?,?)"
            " ON CONFLICT(number, day) DO UPDATE SET"
            " sent = sent + excluded.sent, received = received + excluded.received",
            rows,
        )

    def load_messages(self, since_day: int) -> list[tuple[str, int, int, int]]:
        """(number, day, sent, received) of the days from `since_day` on."""
        rows = self._conn.execute(
            "SELECT number, day, sent, received FROM message_flow WHERE day >= ?", (since_day,)
        ).fetchall()
        return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def prune_messages(self, before_day: int) -> int:
        """Forget the counts of days before `before_day`."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM message_flow WHERE day < ?", (before_day,)
            ).rowcount


def _keys(entry: Any, where: str, allowed: set[str], required: set[str]) -> None:
    if not isinstance(entry, dict):
        raise NumberStoreError(f"{where}: expected a mapping")
    unknown = set(entry) - allowed
    if unknown:
        raise NumberStoreError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    missing = required - set(entry)
    if missing:
        raise NumberStoreError(f"{where}: missing key(s) {', '.join(sorted(missing))}")


def _numbers(entry: dict[str, Any], where: str) -> list[str]:
    numbers = entry["numbers"]
    if isinstance(numbers, str | int):
        numbers = [numbers]
    if not isinstance(numbers, list) or not numbers:
        raise NumberStoreError(f"{where}.numbers: expected a non-empty list")
    return [str(n) for n in numbers]


def _parse(text: str, normalise: Callable[[str], str] | None, where: str) -> NumberRange:
    try:
        return NumberRange.parse(text, normalise)
    except NumberStoreError as exc:
        raise NumberStoreError(f"{where}: {exc}") from None


# --- the worker-side view ------------------------------------------------------------------


class NumberLists:
    """A worker's live view of the store: a snapshot for the hot path, refreshed by `poll()`.

    `poll()` does SQL and may take a while after a bulk change: the shell runs it in a thread
    every `reload_interval_s`. Lookups (`match`, `holders`) never touch SQLite.
    """

    def __init__(self, path: Path | str, *, zone: str = "Europe/Paris") -> None:
        self.path = path
        self.zone = zone
        self._conn = _connect(path)
        migrate(self._conn)
        self._lock = threading.Lock()
        self._data_version = -1
        self.snapshot = self._full_load()

    def close(self) -> None:
        """Close the reader connection."""
        with self._lock:
            self._conn.close()

    def match(
        self,
        e164: str,
        customer: str | None,
        now: float,
        *,
        principals: Collection[str] = (),
        principal: str | None = None,
    ) -> ListMatch:
        """See `ListSnapshot.match`."""
        return self.snapshot.match(e164, customer, now, principals=principals, principal=principal)

    def memo_token(self) -> tuple[ListSnapshot, int]:
        """The current snapshot and its change counter (a full reload replaces the snapshot,
        an incremental poll bumps the counter: either way the token changes)."""
        snap = self.snapshot
        return snap, snap.changes

    def holders(self, e164: str) -> tuple[str, ...]:
        """See `ListSnapshot.holders`."""
        return self.snapshot.holders(e164)

    def _generation(self) -> int:
        row = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name='changelog'"
        ).fetchone()
        return int(row[0]) if row else 0

    def _full_load(self) -> ListSnapshot:
        snap = ListSnapshot(self.zone)
        snap.logging_changes = False  # a new snapshot empties the memos anyway
        self._conn.execute("BEGIN")
        try:
            snap.generation = self._generation()
            for row_id, holder, start, end in self._conn.execute(
                'SELECT id, holder, start, "end" FROM holdings'
            ):
                snap.add_holding(row_id, holder, NumberRange(start, end))
            for r in self._conn.execute(
                'SELECT id, principal, customer, start, "end", valid_from, valid_until, origin,'
                " spc FROM delegations"
            ):
                snap.add_delegation(
                    Delegation(r[0], r[1], r[2], NumberRange(r[3], r[4]), r[5], r[6], r[7], r[8])
                )
        finally:
            self._conn.execute("COMMIT")
        snap.start_logging_changes()
        return snap

    def poll(self) -> bool:
        """Bring the snapshot up to date; True when something changed. Off the hot path."""
        with self._lock:
            # PRAGMA data_version changes only when another connection committed: cheap check.
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            if version == self._data_version:
                return False
            self._data_version = version
            snap = self.snapshot
            generation = self._generation()
            if generation == snap.generation:
                return False  # e.g. flow-history writes only
            oldest = self._conn.execute("SELECT MIN(gen) FROM changelog").fetchone()[0]
            if oldest is None or oldest > snap.generation + 1:
                self.snapshot = self._full_load()
                return True
            rows = self._conn.execute(
                'SELECT gen, kind, op, row_id, who, customer, start, "end", valid_from,'
                " valid_until FROM changelog WHERE gen > ? ORDER BY gen",
                (snap.generation,),
            ).fetchall()
            for gen, kind, op, row_id, who, customer, start, end, vfrom, vuntil in rows:
                rng = NumberRange(start, end)
                if kind == "h":
                    if op == "+":
                        snap.add_holding(row_id, who, rng)
                    else:
                        snap.remove_holding(row_id, rng)
                elif op == "+":
                    snap.add_delegation(Delegation(row_id, who, customer, rng, vfrom, vuntil))
                else:
                    snap.remove_delegation(row_id, rng)
                snap.generation = gen
            return True


class FlowHistory:
    """Per-number record of distinct destinations and of MESSAGEs sent and received, for the
    plan's conditional cells.

    The ARCEP flow exceptions (regulation.md §1) need, per platform number, (a) the distinct
    numbers it reached over 30 days (at most 5) and (b) for message flows, how many messages
    it sent against how many it received (sent within ±20 % of received, or fewer).
    `observe()` and `observe_message()` (hot path) update memory and queue rows; `flush()`
    (shell, in a thread) writes the queue and re-reads what other workers wrote. Message
    counts are kept per UTC day (`day_of`), so the window is whole days.
    """

    def __init__(self, store: NumberStore | None, window_s: float = 30 * 86400.0) -> None:
        self.store = store
        self.window_s = window_s
        self._seen: dict[str, dict[str, float]] = {}
        self._pending: list[tuple[str, str, float]] = []
        # number -> day -> (sent, received), as the store held them at the last flush ...
        self._stored_messages: dict[str, dict[int, tuple[int, int]]] = {}
        # ... plus what this worker counted since: number -> day -> [sent, received]. The
        # lock keeps a count from landing in a table `flush()` (another thread) is writing.
        self._pending_messages: dict[str, dict[int, list[int]]] = {}
        self._messages_lock = threading.Lock()
        if store is not None:
            self._merge(store.load_flows(time.time() - window_s))
            self._stored_messages = _by_number(store.load_messages(self._first_day(time.time())))

    def _first_day(self, now: float) -> int:
        return day_of(now - self.window_s)

    def _merge(self, rows: Iterable[tuple[str, str, float]]) -> None:
        for number, dest, seen in rows:
            slot = self._seen.setdefault(number, {})
            if slot.get(dest, 0.0) < seen:
                slot[dest] = seen

    def destinations(self, number: str, since: float) -> frozenset[str]:
        """Distinct destinations `number` reached at or after `since`."""
        slot = self._seen.get(number)
        if not slot:
            return frozenset()
        return frozenset(d for d, seen in slot.items() if seen >= since)

    def observe(self, number: str, destination: str, now: float) -> None:
        """Note that `number` reached `destination` at `now`."""
        self._seen.setdefault(number, {})[destination] = now
        self._pending.append((number, destination, now))

    def observe_message(self, number: str, *, sent: bool, now: float) -> None:
        """Count one MESSAGE `number` sent (from it) or received (to it) at `now`."""
        with self._messages_lock:
            days = self._pending_messages.setdefault(number, {})
            counts = days.setdefault(day_of(now), [0, 0])
            counts[0 if sent else 1] += 1

    def messages(self, number: str, since: float) -> tuple[int, int]:
        """(sent, received) MESSAGEs of `number` on the days from `since`'s on."""
        first = day_of(since)
        sent = received = 0
        for days in (self._stored_messages.get(number), self._pending_messages.get(number)):
            if not days:
                continue
            for day, (s, r) in list(days.items()):
                if day >= first:
                    sent += s
                    received += r
        return sent, received

    def flush(self, now: float | None = None) -> int:
        """Write queued observations, prune old ones, merge other workers'; returns rows written."""
        pending, self._pending = self._pending, []
        if self.store is None:
            return 0
        moment = time.time() if now is None else now
        if pending:
            self.store.record_flows(pending)
        self.store.prune_flows(moment - self.window_s)
        self._merge(self.store.load_flows(moment - self.window_s))
        with self._messages_lock:
            counted, self._pending_messages = self._pending_messages, {}
        if counted:
            self.store.record_messages(
                (number, day, sent, received)
                for number, days in counted.items()
                for day, (sent, received) in days.items()
            )
        first = self._first_day(moment)
        self.store.prune_messages(first)
        self._stored_messages = _by_number(self.store.load_messages(first))
        return len(pending) + sum(len(days) for days in counted.values())


def day_of(moment: float) -> int:
    """The UTC day number of `moment` (seconds since the epoch): message counts are per day."""
    return int(moment // 86400)


def _by_number(rows: Iterable[tuple[str, int, int, int]]) -> dict[str, dict[int, tuple[int, int]]]:
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for number, day, sent, received in rows:
        counts.setdefault(number, {})[day] = (sent, received)
    return counts
