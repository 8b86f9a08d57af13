"""The French numbering plan as data: caller-ID categories and who may present them.

`configs/numbering_plan.yaml` encodes the classification table of regulation.md §8. Each row
names a prefix (E.164) or a short-code pattern, a category, and two permissions: may an
automated calling system (SAAEM, regulation.md §0.1) present such a number, and may a person on
a manual/preview call. `NumberingPlan.classify` maps a `CallerNumber` to its row by longest
prefix, skipping rows not yet in force on the call date. The rules engine decides from the row.

Lookups are a dictionary probe per candidate prefix length (at most 16), so classification is
O(digits) and allocation-free apart from the slices.

Additions to the design contract: `PlanRow.confidence` (last field, default "") and
`PlanRow.in_force(on)`; `NumberingPlan.rows` and the `NumberingPlan(rows)` constructor;
`SHIPPED_PLAN`; rows with `kind: anonymous|alphanumeric|invalid` (keys "kind:<kind>").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from proxy.policy.numbering import CallerNumber, NumberKind

__all__ = ["SHIPPED_PLAN", "NumberingPlan", "Permission", "PlanError", "PlanRow"]

#: The plan file shipped with sipguard: configs/numbering_plan.yaml, reached through the
#: package's link to it, which a wheel turns into a copy (package data), so an installed
#: sipguard finds its plan without the repository.
SHIPPED_PLAN = Path(__file__).resolve().parent / "numbering_plan.yaml"


class Permission(StrEnum):
    """May a number of this row be presented? `cond`: the rules engine decides (see the note)."""

    ALLOW = "allow"
    DENY = "deny"
    COND = "cond"


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One classification row.

    `key` is an E.164 prefix ("+33162"), a short-code pattern ("3[2-9]xx"), or "kind:<kind>" for
    non-numbers and the built-in fallbacks. `length` is the exact E.164 digit count (country code
    included) a number must have for the row to apply. `confidence` (an addition to the design
    contract) is the regulation.md confidence mark of the row's facts.
    """

    key: str
    category: str
    territory: str
    automated: Permission
    interpersonal: Permission
    sources: tuple[str, ...] = ()
    effective_from: dt.date | None = None
    length: int | None = None
    note: str = ""
    confidence: str = ""

    def in_force(self, on: dt.date) -> bool:
        """True when the row applies on `on` (no date, or a date on or before it)."""
        return self.effective_from is None or self.effective_from <= on


class PlanError(ValueError):
    """A plan file or override row is malformed; the message names file, row and problem."""


# Fallbacks when a plan has no row for an identity; mirror the shipped file so a custom plan
# without catch-alls still classifies everything (§8: unallocated +33 ranges must not be
# mistaken for foreign numbers; masked numbers are forbidden in telemarketing, §0.3).
_FALLBACKS: dict[str, PlanRow] = {
    "kind:anonymous": PlanRow(
        "kind:anonymous", "masked", "-", Permission.DENY, Permission.DENY, ("S18",),
        note="built-in: masked number", confidence="C2",
    ),
    "kind:alphanumeric": PlanRow(
        "kind:alphanumeric", "alphanumeric", "-", Permission.DENY, Permission.DENY,
        note="built-in: not callable back", confidence="I",
    ),
    "kind:invalid": PlanRow(
        "kind:invalid", "invalid", "-", Permission.DENY, Permission.DENY,
        note="built-in: not a number of any plan", confidence="I",
    ),
    "kind:unallocated": PlanRow(
        "kind:unallocated", "unallocated", "FR", Permission.DENY, Permission.DENY,
        note="built-in: French plan, no category row", confidence="I",
    ),
    "kind:foreign": PlanRow(
        "kind:foreign", "foreign", "foreign", Permission.ALLOW, Permission.ALLOW,
        note="built-in: outside the French plan", confidence="I",
    ),
}  # fmt: skip

# Country codes of the French plan (§4): a number under them in no row is unallocated.
_FRENCH_CCS = ("+33", "+262", "+590", "+594", "+596", "+508")

_KINDS = {"anonymous", "alphanumeric", "invalid"}
_ROW_KEYS = frozenset(
    {"prefix", "national", "kind", "category", "territory", "automated", "interpersonal",
     "sources", "confidence", "effective_from", "length", "note"}
)  # fmt: skip
_REQUIRED = ("category", "automated", "interpersonal")
_TOP_KEYS = frozenset({"version", "rows"})
_PREFIX = re.compile(r"\+[0-9]{0,15}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]*")
_SOURCE = re.compile(r"S[0-9]+[a-z]?")
_RANGE = re.compile(r"([0-9]{1,8})-([0-9]{1,8})")
_PATTERN = re.compile(r"(?:[0-9xyzXYZ]|\[[0-9](?:-[0-9])?(?:[0-9](?:-[0-9])?)*\])+")
_MAX_EXPANSION = 100_000  # a national pattern expands to at most this many codes


class _PlanLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so a bad date is reported with its row."""


_PlanLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expand_pattern(pattern: str) -> list[str] | None:
    """All codes a short-code pattern stands for, or None if it is not a pattern."""
    range_match = _RANGE.fullmatch(pattern)
    if range_match:
        low, high = range_match.groups()
        if len(low) != len(high) or int(low) > int(high):
            return None
        if int(high) - int(low) >= _MAX_EXPANSION:
            return None
        return [str(n).zfill(len(low)) for n in range(int(low), int(high) + 1)]
    if not _PATTERN.fullmatch(pattern) or len(pattern) > 40:
        return None
    choices: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char in "xyzXYZ":
            choices.append("0123456789")
            i += 1
        elif char == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            digits = ""
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    digits += "".join(str(d) for d in range(int(body[j]), int(body[j + 2]) + 1))
                    j += 3
                else:
                    digits += body[j]
                    j += 1
            if not digits:
                return None
            choices.append(digits)
            i = end + 1
        else:
            choices.append(char)
            i += 1
    if len(choices) > 8:
        return None
    count = 1
    for choice in choices:
        count *= len(choice)
    if count > _MAX_EXPANSION:
        return None
    codes = [""]
    for choice in choices:
        codes = [code + d for code in codes for d in choice]
    return codes


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else [value]


class _RowParser:
    """Validates one source of rows (a file or the overrides) with error messages naming it."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def error(self, index: int, key: str | None, problem: str) -> PlanError:
        where = f"row {index}" + (f" ({key})" if key else "")
        return PlanError(f"{self.origin}: {where}: {problem}")

    def parse(self, rows: Iterable[object]) -> Iterator[tuple[int, PlanRow]]:
        """Yield (row index, PlanRow) for every key of every row."""
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise self.error(index, None, f"must be a mapping, got {type(row).__name__}")
            for plan_row in self.parse_row(index, row):
                yield index, plan_row

    def parse_row(self, index: int, row: Mapping[Any, Any]) -> list[PlanRow]:
        key_fields = [k for k in ("prefix", "national", "kind") if k in row]
        label = str(row[key_fields[0]]) if key_fields else None
        unknown = sorted(str(k) for k in row if k not in _ROW_KEYS)
        if unknown:
            raise self.error(index, label, f"unknown key(s) {', '.join(unknown)}")
        if len(key_fields) != 1:
            raise self.error(index, label, "needs exactly one of prefix, national, kind")
        for name in _REQUIRED:
            if name not in row:
                raise self.error(index, label, f"missing {name!r}")
        category = row["category"]
        if not isinstance(category, str) or not _CATEGORY.fullmatch(category):
            raise self.error(index, label, f"category {category!r} must be lower_snake_case")
        automated = self.permission(index, label, "automated", row["automated"])
        interpersonal = self.permission(index, label, "interpersonal", row["interpersonal"])
        raw_sources = _as_list(row.get("sources", []))
        sources = tuple(self.text(index, label, "sources", s) for s in raw_sources)
        for source in sources:
            if not _SOURCE.fullmatch(source):
                raise self.error(index, label, f"sources: {source!r} is not an S-key like 'S8'")
        effective = self.date(index, label, row.get("effective_from"))
        length = row.get("length")
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 15
        ):
            raise self.error(index, label, f"length {length!r} must be an integer 1..15")
        template = PlanRow(
            key="",
            category=category,
            territory=self.text(index, label, "territory", row.get("territory", "")),
            automated=automated,
            interpersonal=interpersonal,
            sources=sources,
            effective_from=effective,
            length=length,
            note=self.text(index, label, "note", row.get("note", "")),
            confidence=self.text(index, label, "confidence", row.get("confidence", "")),
        )
        field_name = key_fields[0]
        keys = _as_list(row[field_name])
        if not keys:
            raise self.error(index, label, f"{field_name} list is empty")
        out = []
        for raw_key in keys:
            key = self.text(index, label, field_name, raw_key)
            if field_name == "prefix" and not _PREFIX.fullmatch(key):
                raise self.error(index, key, "prefix must be '+' followed by up to 15 digits")
            if field_name == "national" and _expand_pattern(key) is None:
                raise self.error(index, key, "national must be digits, a same-length range "
                                 "'3009-3169' or a pattern like '3[2-9]xx'")  # fmt: skip
            if field_name == "kind":
                if key not in _KINDS:
                    raise self.error(index, key, f"kind must be one of {sorted(_KINDS)}")
                key = f"kind:{key}"
            if length is not None and field_name != "prefix":
                raise self.error(index, key, "length applies to prefix rows only")
            out.append(replace(template, key=key))
        return out

    def permission(self, index: int, label: str | None, name: str, value: object) -> Permission:
        if isinstance(value, str) and value in Permission.__members__.values():
            return Permission(value)
        raise self.error(index, label, f"{name}: {value!r} is not one of allow, deny, cond")

    def text(self, index: int, label: str | None, name: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(index, label, f"{name}: expected text, got {value!r}")
        return value

    def date(self, index: int, label: str | None, value: object) -> dt.date | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(index, label, f"effective_from: {value!r} is not an ISO date (YYYY-MM-DD)")


_STEM = 8
"""Characters of an E.164 number (with "+") that decide its plan row, but for `_deep` stems."""

_SHORT_STEM = 6
"""The same, for the numbers no prefix row longer than this starts like (`_deep_short`): most
of them, so that their stems are few (a thousand per country code) and all stay cached."""

CLASSIFY_CACHE_SIZE = 65_536
"""How many (E.164, date) classifications a plan remembers (least recently used go first)."""


class NumberingPlan:
    """The classification table, indexed for O(digits) longest-prefix lookups."""

    def __init__(self, rows: Iterable[PlanRow]) -> None:
        """Index `rows` (already validated, unique keys); use `load` to read the YAML."""
        self._rows: dict[str, PlanRow] = {}
        self._prefixes: dict[str, PlanRow] = {}
        self._short: dict[str, PlanRow] = {}
        self._kinds: dict[str, PlanRow] = dict(_FALLBACKS)
        for row in rows:
            self._rows[row.key] = row
            if row.key.startswith("+"):
                self._prefixes[row.key] = row
            elif row.key.startswith("kind:"):
                self._kinds[row.key] = row
            else:
                for code in _expand_pattern(row.key) or ():
                    self._short[code] = row
        self._lengths = tuple(sorted({len(k) for k in self._prefixes}, reverse=True))
        # Callers repeat, and the longest-prefix walk probes up to eight prefix lengths. The
        # plan never changes after __init__ (a reload builds a new plan), so the row of an
        # (E.164, date) pair is memoised in a true LRU: the working set of a campaign stays
        # cached and a burst of new callers only evicts the least recently seen ones. The
        # date is part of the key, so a row taking effect at midnight is seen the next day.
        self._by_prefix_cached = lru_cache(maxsize=CLASSIFY_CACHE_SIZE)(self._by_prefix)
        # Numbers sharing their first `_STEM` characters and their length get the same row on
        # a day, unless a longer prefix row starts with those characters (`_deep`): the row of
        # such a stem is memoised instead, so a new caller in a known range is a cache hit.
        self._deep = frozenset(k[:_STEM] for k in self._prefixes if len(k) > _STEM)
        # Most rows are at most `_SHORT_STEM` characters long: below such a stem the row is
        # known from fewer characters. A new mobile (+336 + 4 digits: 10,000 stems of
        # `_STEM`) then hits a cache its first 6 characters warmed.
        self._deep_short = frozenset(
            k[:_SHORT_STEM] for k in self._prefixes if len(k) > _SHORT_STEM
        )
        self._by_stem_cached = lru_cache(maxsize=CLASSIFY_CACHE_SIZE)(self._by_stem)

    @property
    def rows(self) -> tuple[PlanRow, ...]:
        """Every row, in file order (overrides replace in place or follow)."""
        return tuple(self._rows.values())

    @classmethod
    def load(
        cls, shipped: Path | None = None, overrides: Sequence[Mapping[str, Any]] = ()
    ) -> NumberingPlan:
        """Read and validate the shipped plan, then apply operator `overrides`.

        An override row whose key equals a shipped key replaces that row; other override rows
        are added. Raises `PlanError` naming the file (or "overrides"), row and problem.
        """
        path = shipped if shipped is not None else SHIPPED_PLAN
        origin = str(path)
        try:
            # _PlanLoader is a SafeLoader (no arbitrary objects), minus timestamp resolution.
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=_PlanLoader)
        except OSError as exc:
            raise PlanError(f"{origin}: cannot read: {exc.strerror or exc}") from exc
        except (yaml.YAMLError, ValueError) as exc:
            raise PlanError(f"{origin}: not valid YAML: {exc}") from exc
        if isinstance(document, list):
            raw_rows: object = document
        elif isinstance(document, Mapping):
            unknown = sorted(str(k) for k in document if k not in _TOP_KEYS)
            if unknown:
                raise PlanError(f"{origin}: unknown top-level key(s) {', '.join(unknown)}")
            if document.get("version", 1) != 1:
                raise PlanError(f"{origin}: unsupported version {document.get('version')!r}")
            raw_rows = document.get("rows")
        else:
            raise PlanError(f"{origin}: expected a mapping with 'rows' (or a list of rows)")
        if not isinstance(raw_rows, list):
            raise PlanError(f"{origin}: 'rows' must be a list")
        rows = cls._unique(_RowParser(origin), raw_rows)
        if overrides:
            parser = _RowParser("overrides")
            replacing = cls._unique(parser, list(overrides))
            rows.update(replacing)
            cls._check_short_overlaps(parser, rows, set(replacing))
        else:
            cls._check_short_overlaps(_RowParser(origin), rows, set())
        return cls(rows.values())

    @staticmethod
    def _unique(parser: _RowParser, raw_rows: list[Any]) -> dict[str, PlanRow]:
        rows: dict[str, PlanRow] = {}
        first_seen: dict[str, int] = {}
        for index, row in parser.parse(raw_rows):
            if row.key in rows:
                raise parser.error(
                    index, row.key, f"duplicate key (already in row {first_seen[row.key]})"
                )
            rows[row.key] = row
            first_seen[row.key] = index
        return rows

    @staticmethod
    def _check_short_overlaps(
        parser: _RowParser, rows: Mapping[str, PlanRow], override_keys: set[str]
    ) -> None:
        """Two short-code patterns covering the same code are ambiguous unless one overrides."""
        owner: dict[str, str] = {}
        for key, row in rows.items():
            if key.startswith(("+", "kind:")):
                continue
            for code in _expand_pattern(row.key) or ():
                other = owner.get(code)
                if other is not None and (other in override_keys) == (key in override_keys):
                    raise PlanError(
                        f"{parser.origin}: national patterns {other!r} and {key!r} "
                        f"both cover {code}"
                    )
                if other is None or key in override_keys:
                    # Override rows come after shipped ones in the index, so they win there too.
                    owner[code] = key

    def classify(self, number: CallerNumber, on: dt.date) -> PlanRow:
        """The row that applies to `number` on date `on` (longest prefix in force)."""
        kind = number.kind
        e164 = number.e164
        if kind is NumberKind.E164 and e164 is not None:
            short = e164[:_SHORT_STEM]
            if short not in self._deep_short:
                return self._by_stem_cached(short, len(e164), on)
            stem = e164[:_STEM]
            if stem in self._deep:
                return self._by_prefix_cached(e164, on)
            return self._by_stem_cached(stem, len(e164), on)
        if kind is NumberKind.SHORT and number.national is not None:
            row = self._short.get(number.national)
            if row is not None and row.in_force(on):
                return row
            return self._prefix_fallback("+33", on)
        if kind is NumberKind.ANONYMOUS:
            return self._kinds["kind:anonymous"]
        if kind is NumberKind.ALPHANUMERIC:
            return self._kinds["kind:alphanumeric"]
        return self._kinds["kind:invalid"]

    def _by_prefix(self, e164: str, on: dt.date) -> PlanRow:
        return self._by_stem(e164, len(e164), on)

    def _by_stem(self, stem: str, length: int, on: dt.date) -> PlanRow:
        """The row of an E.164 number of `length` characters that starts with `stem`, looking
        only at prefixes of `stem` (`_by_prefix` when `stem` is the whole number)."""
        digits = length - 1
        e164 = stem
        for size in self._lengths:
            if size > len(e164):
                continue
            row = self._prefixes.get(e164[:size])
            if row is None or (row.length is not None and row.length != digits):
                continue
            if row.effective_from is None or row.effective_from <= on:
                return row
        if e164.startswith(_FRENCH_CCS):
            return _FALLBACKS["kind:unallocated"]
        return _FALLBACKS["kind:foreign"]

    def _prefix_fallback(self, prefix: str, on: dt.date) -> PlanRow:
        row = self._prefixes.get(prefix)
        if row is not None and row.in_force(on):
            return row
        return _FALLBACKS["kind:unallocated"]
