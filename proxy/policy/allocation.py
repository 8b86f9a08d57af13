"""ARCEP number-allocation data (MAJNUM & co.) in SQLite: who holds the block a number is in.

regulation.md §0.3 and §5: a presented number must come from an allocated range. ARCEP publishes
the allocated blocks (MAJNUM, and MAJNFB for emergency/short numbers), the frozen ones (GELNUM)
and the operator names (identifiants CE, MAJRIO). See /work/shared/testdata/fr-numbering/README.md
for the columns. `AllocationStore` imports those CSV files into a SQLite database (stdlib) and
answers `lookup(number)` with the longest matching block, in at most one indexed probe per digit.

Files are recognised by their header line, not their name; the name only tells MAJNFB (same
header as MAJNUM) apart. An import replaces each dataset it carries as a whole, in one
transaction, so importing the same files again is a no-op and a bad file leaves the old data.

Additions to the design contract: `Allocation.frozen_type`; `ImportReport` / `ImportedFile`
fields; `AllocationImportError`; `AllocationStore.close()`, context-manager use, `imported()`
and `holder_name(code)`. `lookup` accepts any notation, short codes included.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from proxy.policy.numbering import NumberKind, normalise_number

__all__ = [
    "Allocation",
    "AllocationImportError",
    "AllocationIndex",
    "AllocationStore",
    "ImportReport",
    "ImportedFile",
]


@dataclass(frozen=True, slots=True)
class Allocation:
    """The block a number falls in.

    `block` is ARCEP's EZABPQM national prefix ("016200"). For a frozen (GELNUM) block
    `frozen` is True, `holder_code` is "" and `holder_name`, `territory`, `allocated_on` are
    None; `frozen_type` (an addition to the design contract) is then GELNUM's `Type`.
    `territory` is ARCEP's `Territoire` text ("Métropole", "La Réunion", …).
    """

    block: str
    holder_code: str
    holder_name: str | None
    territory: str | None
    frozen: bool
    allocated_on: dt.date | None
    frozen_type: str | None = None


@dataclass(frozen=True, slots=True)
class ImportedFile:
    """One file of an import: its dataset, rows stored and rows skipped (non-number GELNUM)."""

    path: Path
    dataset: str
    rows: int
    skipped: int = 0
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What `AllocationStore.import_files` did, and the store's totals afterwards."""

    files: tuple[ImportedFile, ...]
    blocks: int
    frozen: int
    operators: int
    seconds: float = 0.0
    datasets: tuple[str, ...] = field(default=())


class AllocationImportError(ValueError):
    """A file could not be imported; the message names the file, the line and the problem."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    prefix TEXT NOT NULL,            -- EZABPQM, national form
    number_length INTEGER NOT NULL,  -- digits of the numbers in the block (4, 6, 10, 13, 14)
    dataset TEXT NOT NULL,           -- MAJNUM or MAJNFB
    holder_code TEXT NOT NULL,
    territory TEXT,
    allocated_on TEXT,               -- ISO date
    PRIMARY KEY (prefix, number_length, dataset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS frozen (
    prefix TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    requests_open_on TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operators (
    code TEXT NOT NULL,
    dataset TEXT NOT NULL,           -- identifiants_CE or MAJRIO
    name TEXT NOT NULL,
    PRIMARY KEY (code, dataset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (
    dataset TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    rows INTEGER NOT NULL,
    imported_at TEXT NOT NULL
) WITHOUT ROWID;
"""

# Name-table preference: identifiants CE holds legal names for most codes; MAJRIO (newer) names
# four more (README fact 6).
_NAME_SQL = (
    "SELECT name FROM operators WHERE code = {code} ORDER BY dataset != 'identifiants_CE' LIMIT 1"
)
_BLOCK_ORDER = {"MAJNUM": 0, "MAJNFB": 1}


def _fold(name: str) -> str:
    return name.strip().strip('"').strip().lower()


def _decode(data: bytes) -> str:
    """ARCEP files are Latin-1 (README); accept UTF-8 re-exports too."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _parse_date(text: str) -> dt.date | None:
    text = text.strip()
    if not text:
        return None
    day, month, year = text.split("/")  # ValueError on anything but dd/mm/yyyy
    return dt.date(int(year), int(month), int(day))


@dataclass(slots=True)
class _Parsed:
    path: Path
    dataset: str
    sha256: str
    blocks: list[tuple[str, int, str, str, str | None, str | None]] = field(default_factory=list)
    frozen: list[tuple[str, str, str | None]] = field(default_factory=list)
    operators: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: int = 0

    @property
    def rows(self) -> int:
        return len(self.blocks) + len(self.frozen) + len(self.operators)


class _FileReader:
    """Parse one ARCEP CSV into rows for the tables, raising with file and line on error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AllocationImportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.reader = csv.reader(
            io.StringIO(_decode(data), newline=""), delimiter=";", quotechar='"', strict=True
        )
        self.rows = enumerate(self.reader, start=1)
        try:
            _, header = next(self.rows)
        except StopIteration:
            raise AllocationImportError(f"{path}: empty file") from None
        except csv.Error as exc:
            raise AllocationImportError(f"{path}:1: {exc}") from exc
        self.header = [_fold(h) for h in header]

    def error(self, line: int, problem: str) -> AllocationImportError:
        return AllocationImportError(f"{self.path}:{line}: {problem}")

    def column(self, name: str) -> int:
        try:
            return self.header.index(name.lower())
        except ValueError:
            raise self.error(1, f"missing column {name!r}") from None

    def records(self) -> Iterator[tuple[int, list[str]]]:
        width = len(self.header)
        try:
            for line, record in self.rows:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # blank line (CRLF files end with one in some exports)
                if len(record) != width:
                    raise self.error(line, f"{len(record)} fields, header has {width}")
                yield line, [value.strip() for value in record]
        except csv.Error as exc:
            raise self.error(self.reader.line_num, str(exc)) from exc

    def parse(self) -> _Parsed:
        header = set(self.header)
        if {"ezabpqm", "tranche_debut", "tranche_fin"} <= header:
            dataset = "MAJNFB" if self.path.name.upper().startswith("MAJNFB") else "MAJNUM"
            return self.parse_blocks(dataset)
        if {"ezabpqm", "type"} <= header:
            return self.parse_frozen()
        if {"identite_operateur", "code_operateur"} <= header:
            return self.parse_names("identifiants_CE", "code_operateur", "identite_operateur")
        if {"ressource", "code attributaire", "attributaire"} <= header:
            return self.parse_names("MAJRIO", "code attributaire", "attributaire")
        raise self.error(
            1, "header not recognised as MAJNUM/MAJNFB, GELNUM, MAJRIO or identifiants_CE"
        )

    def parse_blocks(self, dataset: str) -> _Parsed:
        out = _Parsed(self.path, dataset, self.sha256)
        c_prefix, c_first, c_last = (
            self.column("EZABPQM"), self.column("Tranche_Debut"), self.column("Tranche_Fin")
        )  # fmt: skip
        c_code, c_terr, c_date = (
            self.column("Mnémo"), self.column("Territoire"), self.column("Date_Attribution")
        )  # fmt: skip
        seen: dict[tuple[str, int], int] = {}
        for line, rec in self.records():
            prefix, first, last = rec[c_prefix], rec[c_first], rec[c_last]
            if not (prefix.isascii() and prefix.isdigit() and 2 <= len(prefix) <= 14):
                raise self.error(line, f"EZABPQM {prefix!r} is not 2-14 digits")
            if not (
                first.isascii() and first.isdigit() and last.isascii() and last.isdigit()
                and len(first) == len(last) and first.startswith(prefix)
                and last.startswith(prefix)
            ):  # fmt: skip
                raise self.error(line, f"range {first!r}-{last!r} does not belong to {prefix!r}")
            if not rec[c_code]:
                raise self.error(line, "empty Mnémo (operator code)")
            try:
                allocated = _parse_date(rec[c_date])
            except ValueError:
                raise self.error(
                    line, f"Date_Attribution {rec[c_date]!r} is not dd/mm/yyyy"
                ) from None
            key = (prefix, len(first))
            if key in seen:
                raise self.error(line, f"block {prefix} repeated (line {seen[key]})")
            seen[key] = line
            out.blocks.append(
                (prefix, len(first), dataset, rec[c_code], rec[c_terr] or None,
                 allocated.isoformat() if allocated else None)
            )  # fmt: skip
        return out

    def parse_frozen(self) -> _Parsed:
        out = _Parsed(self.path, "GELNUM", self.sha256)
        c_prefix, c_type = self.column("EZABPQM"), self.column("Type")
        c_open = self.column("Ouverture des demandes d'attribution")
        seen: dict[str, int] = {}
        for line, rec in self.records():
            prefix, kind = rec[c_prefix], rec[c_type]
            if not kind.lower().startswith("num"):
                # Signalling point codes, MCC/MNC, routing prefixes…: not telephone numbers, and
                # their digits would shadow real number ranges ("08359" is a point code).
                out.skipped += 1
                continue
            if not (prefix.isascii() and prefix.isdigit() and 1 <= len(prefix) <= 14):
                raise self.error(line, f"EZABPQM {prefix!r} is not digits")
            try:
                opens = _parse_date(rec[c_open])
            except ValueError:
                raise self.error(line, f"date {rec[c_open]!r} is not dd/mm/yyyy") from None
            if prefix in seen:
                raise self.error(line, f"block {prefix} repeated (line {seen[prefix]})")
            seen[prefix] = line
            out.frozen.append((prefix, kind, opens.isoformat() if opens else None))
        return out

    def parse_names(self, dataset: str, code_column: str, name_column: str) -> _Parsed:
        out = _Parsed(self.path, dataset, self.sha256)
        c_code, c_name = self.column(code_column), self.column(name_column)
        names: dict[str, str] = {}
        for line, rec in self.records():
            code, name = rec[c_code], rec[c_name]
            if not code:
                raise self.error(line, "empty operator code")
            # MAJRIO repeats a code once per RIO prefix: keep the first name.
            names.setdefault(code, name)
        out.operators.extend((code, dataset, name) for code, name in names.items())
        return out


class AllocationStore:
    """ARCEP allocation data in one SQLite database file (schema created on open)."""

    def __init__(self, path: Path | str) -> None:
        """Open (or create) the database at `path` (":memory:" works for tests)."""
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> AllocationStore:
        """Use as a context manager that closes the database."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the database."""
        self.close()

    @property
    def loaded(self) -> bool:
        """True once allocated blocks (MAJNUM/MAJNFB) have been imported."""
        return self._db.execute("SELECT 1 FROM blocks LIMIT 1").fetchone() is not None

    def import_files(self, paths: Sequence[Path]) -> ImportReport:
        """Import ARCEP CSV files, each replacing its whole dataset, in one transaction.

        Every file is parsed before the database is touched; any error raises
        `AllocationImportError` (naming file and line) and leaves the previous data intact.
        """
        started = dt.datetime.now(dt.UTC)
        parsed: list[_Parsed] = []
        for path in paths:
            result = _FileReader(Path(path)).parse()
            if any(p.dataset == result.dataset for p in parsed):
                raise AllocationImportError(f"{path}: a second {result.dataset} file in one import")
            parsed.append(result)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for p in parsed:
                if p.dataset in _BLOCK_ORDER:
                    db.execute("DELETE FROM blocks WHERE dataset = ?", (p.dataset,))
                    db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)", p.blocks)
                elif p.dataset == "GELNUM":
                    db.execute("DELETE FROM frozen")
                    db.executemany("INSERT INTO frozen VALUES (?, ?, ?)", p.frozen)
                else:
                    db.execute("DELETE FROM operators WHERE dataset = ?", (p.dataset,))
                    db.executemany("INSERT INTO operators VALUES (?, ?, ?)", p.operators)
                db.execute(
                    "INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?, ?)",
                    (p.dataset, str(p.path), p.sha256, p.rows, started.isoformat()),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
        count = self._count
        return ImportReport(
            files=tuple(
                ImportedFile(p.path, p.dataset, p.rows, p.skipped, p.sha256) for p in parsed
            ),
            blocks=count("blocks"),
            frozen=count("frozen"),
            operators=self._db.execute("SELECT COUNT(DISTINCT code) FROM operators").fetchone()[0],
            seconds=elapsed,
            datasets=tuple(
                row[0] for row in db.execute("SELECT dataset FROM imports ORDER BY dataset")
            ),
        )

    def _count(self, table: str) -> int:
        result: int = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return result

    def imported(self) -> tuple[ImportedFile, ...]:
        """The last import of each dataset (path, rows, sha256), for `sipguard plan` output."""
        rows = self._db.execute("SELECT path, dataset, rows, sha256 FROM imports ORDER BY dataset")
        return tuple(ImportedFile(Path(p), d, n, 0, h) for p, d, n, h in rows)

    def holder_name(self, code: str) -> str | None:
        """The operator name for an ARCEP operator code (identifiants CE first, then MAJRIO)."""
        row = self._db.execute(_NAME_SQL.format(code="?"), (code,)).fetchone()
        return row[0] if row else None

    def lookup(self, e164: str) -> Allocation | None:
        """The longest allocated or frozen block holding the number, or None.

        Accepts any notation `normalise_number` reads ("+33162000001", "0162000001", short
        codes such as "3010"); the blocks are matched on the French national form, so foreign
        numbers give None.
        """
        number = normalise_number(e164)
        national = number.national
        if national is None or number.kind not in (NumberKind.E164, NumberKind.SHORT):
            return None
        # One probe per prefix length through the primary-key index: O(digits).
        candidates = [national[:size] for size in range(len(national), 0, -1)]
        marks = ",".join("?" * len(candidates))
        block = self._db.execute(
            "SELECT prefix, holder_code, territory, allocated_on, "
            f"({_NAME_SQL.format(code='blocks.holder_code')}) FROM blocks "
            f"WHERE number_length = ? AND prefix IN ({marks}) "
            "ORDER BY length(prefix) DESC, dataset = 'MAJNFB' LIMIT 1",
            (len(national), *candidates),
        ).fetchone()
        frozen = self._db.execute(
            f"SELECT prefix, type FROM frozen WHERE prefix IN ({marks}) "
            "ORDER BY length(prefix) DESC LIMIT 1",
            candidates,
        ).fetchone()
        if frozen is not None and (block is None or len(frozen[0]) > len(block[0])):
            return Allocation(frozen[0], "", None, None, True, None, frozen[1])
        if block is None:
            return None
        prefix, code, territory, allocated_on, name = block
        return Allocation(
            block=prefix,
            holder_code=code,
            holder_name=name,
            territory=territory,
            frozen=False,
            allocated_on=dt.date.fromisoformat(allocated_on) if allocated_on else None,
        )


_PLAIN_FRENCH = re.compile(r"\+33[1-9][0-9]{8}")


class AllocationIndex:
    """Every block of an `AllocationStore` in memory: `lookup` without SQL on the hot path.

    Built at start and after each import (`from_store`, off the hot path); answers exactly as
    `AllocationStore.lookup` does (a test compares them over every block of the shared data):
    the longest block of the number's length, MAJNUM before MAJNFB, unless a strictly longer
    frozen (GELNUM) prefix covers the number.
    """

    def __init__(
        self, blocks: dict[tuple[str, int], Allocation], frozen: dict[str, Allocation]
    ) -> None:
        self._blocks = blocks
        self._frozen = frozen
        # No block or frozen prefix is longer than this: the longest-prefix walk starts here
        # (a national number has 10 digits, MAJNUM blocks at most 8 characters).
        self._longest = max(
            (len(prefix) for prefix in (*(b[0] for b in blocks), *frozen)), default=0
        )

    @classmethod
    def from_store(cls, store: AllocationStore) -> AllocationIndex:
        """Read every block, frozen block and operator name of `store`."""
        db = store._db
        names: dict[str, str] = {}
        # identifiants_CE first, as _NAME_SQL orders them: the first name seen for a code wins.
        for code, name in db.execute(
            "SELECT code, name FROM operators ORDER BY dataset != 'identifiants_CE'"
        ):
            names.setdefault(code, name)
        blocks: dict[tuple[str, int], Allocation] = {}
        for prefix, length, code, territory, allocated_on in db.execute(
            "SELECT prefix, number_length, holder_code, territory, allocated_on FROM blocks"
            " ORDER BY dataset = 'MAJNFB'"
        ):
            blocks.setdefault(
                (prefix, length),
                Allocation(
                    block=prefix,
                    holder_code=code,
                    holder_name=names.get(code),
                    territory=territory,
                    frozen=False,
                    allocated_on=dt.date.fromisoformat(allocated_on) if allocated_on else None,
                ),
            )
        frozen = {
            prefix: Allocation(prefix, "", None, None, True, None, kind)
            for prefix, kind in db.execute("SELECT prefix, type FROM frozen")
        }
        return cls(blocks, frozen)

    def lookup(self, e164: str) -> Allocation | None:
        """See `AllocationStore.lookup`."""
        if (
            len(e164) == 12
            and e164.startswith("+33")
            and e164[3] != "0"
            and e164.isascii()
            and e164[1:].isdigit()
        ):
            # `_PLAIN_FRENCH` without the regular expression. normalise_number's national form
            # of +33 + 9 digits is "0" + those digits (DOM blocks written under +33
            # included); skipping it saves ~10 µs per new number.
            national: str | None = "0" + e164[3:]
        else:
            number = normalise_number(e164)
            national = number.national
            if number.kind not in (NumberKind.E164, NumberKind.SHORT):
                return None
        if national is None:
            return None
        length = len(national)
        blocks, frozen = self._blocks, self._frozen
        # Longest prefix first; at equal length an allocated block beats a frozen one.
        for size in range(min(length, self._longest), 0, -1):
            prefix = national[:size]
            found = blocks.get((prefix, length))
            if found is not None:
                return found
            found = frozen.get(prefix)
            if found is not None:
                return found
        return None
