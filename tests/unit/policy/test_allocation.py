"""Allocation store: ARCEP CSV import (tiny files and the shared April 2026 copy) and lookups."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from proxy.policy.allocation import (
    Allocation,
    AllocationImportError,
    AllocationIndex,
    AllocationStore,
)

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "fr-numbering"

MAJNUM_HEADER = "EZABPQM;Tranche_Debut;Tranche_Fin;Mnémo;Territoire;Date_Attribution"
MAJNUM_ROWS = [
    "016200;0162000000;0162009999;LGC;Métropole;21/01/2021",
    "0612;0612000000;0612999999;SFR0;Métropole;08/12/2011",
    "061234;0612340000;0612349999;FRMO;Métropole;01/02/2020",
    '026212;0262120000;0262129999;SRR;"La Réunion - Océan indien";26/09/2013',
    "0700000;07000000000000;07000009999999;FRTE;Métropole;01/01/2017",
    "3010;3010;3010;FRTE;National;27/08/2019",
    "118218;118218;118218;LNUM;National;23/06/2005",
    '050841;0508410000;0508419999;SPMT;"Saint Pierre et Miquelon";22/04/2024',
    "0140;0140000000;0140999999;UNKN;Métropole;",
]
GELNUM = [
    'EZABPQM;Type;"Ouverture des manifestations d\'intérêts";'
    '"Clôture des manifestations d\'intérêts";"Ouverture des demandes d\'attribution"',
    '0162286;"Numéros polyvalents vérifiés";13/04/2026;13/05/2026;14/05/2026',
    '08359;"Code point sémaphore national";18/03/2026;18/04/2026;19/04/2026',
    'IU;"Préfixe RIO des numéros géographiques, polyvalents et spéciaux";'
    "05/04/2026;05/05/2026;06/05/2026",
    '0748829;"Numéros mobiles";06/04/2026;06/05/2026;07/05/2026',
]
IDENTIFIANTS = [
    "IDENTITE_OPERATEUR;CODE_OPERATEUR;SIRET_ACTEUR;RCS_ACTEUR;ADRESSE_COMPLETE_ACTEUR;"
    "ATTRIB_RESS_NUM;DATE_DECLARATION_OPERATEUR",
    'Manifone;LGC;"123 456 789 00010";Paris;"1 rue X 75001 PARIS";1;01/01/2010',
    '"Société française du radiotéléphone";SFR0;"1";Paris;"a";1;01/01/2000',
    'Orange;FRTE;"2";Paris;"b";1;01/01/2000',
]
MAJRIO = [
    'Ressource;"Code Attributaire";Attributaire;"Date d\'effet (attribution)";'
    '"N° décision d\'attribution"',
    'F0;FRTE;"Orange (RIO)";01/01/2017;2016-1702',
    'F1;SFR0;"SFR";26/03/2015;2015-0347',
    'G7;FRMO;"Free Mobile";26/03/2015;2015-0347',
    'G8;FRMO;"Free Mobile bis";26/03/2015;2015-0347',
]
MAJNFB = [
    MAJNUM_HEADER,
    "15;15;15;URG;National;19/12/2002",
    "3008;3008;3008;NFB;National;17/07/2012",
]


def _write(path: Path, lines: list[str], *, newline: str = "\n", encoding: str = "latin-1") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Tiny ARCEP-format files, Latin-1 like the real ones (MAJNFB with CRLF)."""
    return {
        "MAJNUM": _write(tmp_path / "MAJNUM.csv", [MAJNUM_HEADER, *MAJNUM_ROWS]),
        "GELNUM": _write(tmp_path / "GELNUM.csv", GELNUM),
        "identifiants_CE": _write(tmp_path / "identifiants_CE.csv", IDENTIFIANTS),
        "MAJRIO": _write(tmp_path / "MAJRIO.csv", MAJRIO),
        "MAJNFB": _write(tmp_path / "MAJNFB.csv", MAJNFB, newline="\r\n"),
    }


@pytest.fixture
def store(tmp_path: Path, files: dict[str, Path]) -> AllocationStore:
    """A store with every tiny file imported."""
    result = AllocationStore(tmp_path / "alloc.sqlite3")
    result.import_files(list(files.values()))
    return result


def test_import_report_counts(tmp_path: Path, files: dict[str, Path]) -> None:
    """The report lists each file's dataset and rows, and the totals."""
    with AllocationStore(tmp_path / "a.sqlite3") as store:
        report = store.import_files(list(files.values()))
    by_dataset = {f.dataset: f for f in report.files}
    assert set(by_dataset) == {"MAJNUM", "GELNUM", "identifiants_CE", "MAJRIO", "MAJNFB"}
    assert by_dataset["MAJNUM"].rows == len(MAJNUM_ROWS)
    assert (by_dataset["GELNUM"].rows, by_dataset["GELNUM"].skipped) == (2, 2)
    assert by_dataset["MAJRIO"].rows == 3  # FRMO named once
    assert by_dataset["MAJNFB"].rows == 2
    assert (report.blocks, report.frozen, report.operators) == (len(MAJNUM_ROWS) + 2, 2, 4)
    assert len(by_dataset["MAJNUM"].sha256) == 64


@pytest.mark.parametrize(
    ("number", "block", "holder", "name", "territory", "allocated_on"),
    [
        ("0162000001", "016200", "LGC", "Manifone", "Métropole", dt.date(2021, 1, 21)),
        ("+33162001234", "016200", "LGC", "Manifone", "Métropole", dt.date(2021, 1, 21)),
        ("+33 6 12 00 00 00", "0612", "SFR0", "Société française du radiotéléphone",
         "Métropole", dt.date(2011, 12, 8)),
        ("0612345678", "061234", "FRMO", "Free Mobile", "Métropole", dt.date(2020, 2, 1)),
        ("+262262123456", "026212", "SRR", None, "La Réunion - Océan indien",
         dt.date(2013, 9, 26)),
        ("07000001234567", "0700000", "FRTE", "Orange", "Métropole", dt.date(2017, 1, 1)),
        ("3010", "3010", "FRTE", "Orange", "National", dt.date(2019, 8, 27)),
        ("118218", "118218", "LNUM", None, "National", dt.date(2005, 6, 23)),
        ("15", "15", "URG", None, "National", dt.date(2002, 12, 19)),
        ("+508411234", "050841", "SPMT", None, "Saint Pierre et Miquelon", dt.date(2024, 4, 22)),
        ("0140123456", "0140", "UNKN", None, "Métropole", None),
    ],
)  # fmt: skip
def test_lookup_longest_block(
    store: AllocationStore,
    number: str,
    block: str,
    holder: str,
    name: str | None,
    territory: str,
    allocated_on: dt.date | None,
) -> None:
    """The longest block wins and carries holder code, name, territory and date."""
    assert store.lookup(number) == Allocation(
        block, holder, name, territory, frozen=False, allocated_on=allocated_on
    )


def test_identifiants_ce_name_preferred_over_majrio(store: AllocationStore) -> None:
    """identifiants CE gives the legal name; MAJRIO only fills the gaps."""
    assert store.holder_name("FRTE") == "Orange"
    assert store.holder_name("FRMO") == "Free Mobile"
    assert store.holder_name("NOPE") is None


def test_frozen_blocks(store: AllocationStore) -> None:
    """A number in a GELNUM block is reported frozen, with no holder."""
    frozen = store.lookup("0162286123")
    assert frozen == Allocation(
        "0162286", "", None, None, True, None, frozen_type="Numéros polyvalents vérifiés"
    )
    assert store.lookup("0748829000") is not None


def test_non_number_gelnum_rows_are_skipped(store: AllocationStore) -> None:
    """Point codes and RIO prefixes in GELNUM do not shadow number ranges."""
    assert store.lookup("0835912345") is None


@pytest.mark.parametrize(
    "number",
    ["0163000001", "0740123456", "+4915112345678", "anonymous", "MYSHOP", "junk", "3011", "16"],
)
def test_lookup_misses(store: AllocationStore, number: str) -> None:
    """Unallocated, foreign and non-numbers have no allocation."""
    assert store.lookup(number) is None


def test_block_length_must_match(store: AllocationStore) -> None:
    """A 4-digit short-code block does not cover longer numbers starting alike."""
    assert store.lookup("0700000123") is None  # 10 digits: the 0700000 block is 14-digit
    assert store.lookup("30101") is None


def test_loaded_flag(tmp_path: Path, files: dict[str, Path]) -> None:
    """loaded is False on an empty database and True after importing blocks."""
    store = AllocationStore(tmp_path / "x.sqlite3")
    assert not store.loaded
    store.import_files([files["identifiants_CE"]])
    assert not store.loaded
    store.import_files([files["MAJNUM"]])
    assert store.loaded


def test_import_is_idempotent(store: AllocationStore, files: dict[str, Path]) -> None:
    """Importing the same files again leaves the same data."""
    before = store.import_files(list(files.values()))
    again = store.import_files(list(files.values()))
    assert (before.blocks, before.frozen, before.operators) == (
        again.blocks,
        again.frozen,
        again.operators,
    )
    assert store.lookup("0162000001") is not None


def test_reimport_replaces_a_dataset(
    tmp_path: Path, store: AllocationStore, files: dict[str, Path]
) -> None:
    """A newer MAJNUM drops blocks that vanished, and leaves MAJNFB alone."""
    newer = _write(
        tmp_path / "MAJNUM-2.csv",
        [MAJNUM_HEADER, "0612;0612000000;0612999999;BOUY;Métropole;01/05/2026"],
    )
    report = store.import_files([newer])
    assert report.blocks == 1 + 2
    assert store.lookup("0162000001") is None
    allocation = store.lookup("0612345678")
    assert allocation is not None and allocation.holder_code == "BOUY"
    assert store.lookup("15") is not None


def test_data_persists_across_opens(tmp_path: Path, files: dict[str, Path]) -> None:
    """The database file keeps the data for the next process."""
    path = tmp_path / "persist.sqlite3"
    with AllocationStore(path) as first:
        first.import_files([files["MAJNUM"]])
    with AllocationStore(path) as second:
        assert second.loaded
        assert [f.dataset for f in second.imported()] == ["MAJNUM"]
        found = second.lookup("0162000001")
        assert found is not None and found.holder_code == "LGC"


def test_utf8_files_are_accepted(tmp_path: Path) -> None:
    """A UTF-8 re-export reads the same as ARCEP's Latin-1."""
    path = _write(tmp_path / "MAJNUM.csv", [MAJNUM_HEADER, MAJNUM_ROWS[0]], encoding="utf-8")
    store = AllocationStore(":memory:")
    store.import_files([path])
    found = store.lookup("0162000001")
    assert found is not None and found.territory == "Métropole"


BAD_FILES = [
    ("MAJNUM.csv", [MAJNUM_HEADER, "016200;0162000000;0162009999;LGC;Métropole"],
     r"MAJNUM.csv:2: 5 fields, header has 6"),
    ("MAJNUM.csv", [MAJNUM_HEADER, MAJNUM_ROWS[0], "0162A;0162A00000;0162A99999;X;M;01/01/2020"],
     r"MAJNUM.csv:3: EZABPQM '0162A' is not 2-14 digits"),
    ("MAJNUM.csv", [MAJNUM_HEADER, "016200;0163000000;0163009999;LGC;Métropole;21/01/2021"],
     r"MAJNUM.csv:2: range '0163000000'-'0163009999' does not belong to '016200'"),
    ("MAJNUM.csv", [MAJNUM_HEADER, "016200;0162000000;0162009999;LGC;Métropole;2021-01-21"],
     r"MAJNUM.csv:2: Date_Attribution '2021-01-21' is not dd/mm/yyyy"),
    ("MAJNUM.csv", [MAJNUM_HEADER, "016200;0162000000;0162009999;LGC;Métropole;31/02/2021"],
     r"is not dd/mm/yyyy"),
    ("MAJNUM.csv", [MAJNUM_HEADER, "016200;0162000000;0162009999;;Métropole;21/01/2021"],
     r"MAJNUM.csv:2: empty Mnémo"),
    ("MAJNUM.csv", [MAJNUM_HEADER, MAJNUM_ROWS[0], MAJNUM_ROWS[0]],
     r"MAJNUM.csv:3: block 016200 repeated \(line 2\)"),
    ("MAJNUM.csv", ["EZABPQM;Tranche_Debut;Tranche_Fin;Territoire;Date_Attribution"],
     r"MAJNUM.csv:1: missing column 'Mnémo'"),
    ("other.csv", ["a;b;c", "1;2;3"], r"other.csv:1: header not recognised"),
    ("GELNUM.csv", [GELNUM[0], "0162A;\"Numéros mobiles\";01/01/2026;01/02/2026;01/03/2026"],
     r"GELNUM.csv:2: EZABPQM '0162A' is not digits"),
    ("GELNUM.csv", [GELNUM[0], "0162;\"Numéros mobiles\";01/01/2026;01/02/2026;soon"],
     r"GELNUM.csv:2: date 'soon'"),
    ("identifiants_CE.csv", [IDENTIFIANTS[0], "Nom;;1;2;3;1;01/01/2020"],
     r"identifiants_CE.csv:2: empty operator code"),
    ("MAJNUM.csv", [MAJNUM_HEADER, 'x;"unterminated'], r"MAJNUM.csv:\d+: "),
]  # fmt: skip


@pytest.mark.parametrize(("name", "lines", "message"), BAD_FILES)
def test_bad_file_is_rejected_and_old_data_kept(
    tmp_path: Path, store: AllocationStore, name: str, lines: list[str], message: str
) -> None:
    """A bad file raises with file and line, and the previous data stays."""
    (tmp_path / "bad").mkdir()
    bad = _write(tmp_path / "bad" / name, lines)
    with pytest.raises(AllocationImportError, match=message):
        store.import_files([bad])
    found = store.lookup("0162000001")
    assert found is not None and found.holder_code == "LGC"
    assert store.lookup("15") is not None


def test_bad_file_in_a_batch_rolls_back_the_good_ones(
    tmp_path: Path, store: AllocationStore
) -> None:
    """One bad file aborts the whole import, good files of the batch included."""
    good = _write(
        tmp_path / "MAJNUM-new.csv",
        [MAJNUM_HEADER, "0612;0612000000;0612999999;BOUY;Métropole;01/05/2026"],
    )
    bad = _write(tmp_path / "GELNUM-bad.csv", [GELNUM[0], "0162;x;1;2"])
    with pytest.raises(AllocationImportError, match="4 fields, header has 5"):
        store.import_files([good, bad])
    allocation = store.lookup("0612345678")
    assert allocation is not None and allocation.holder_code == "FRMO"
    assert store.lookup("0162000001") is not None


def test_database_error_rolls_back(store: AllocationStore, files: dict[str, Path]) -> None:
    """A failure inside the transaction leaves the previous data."""
    store._db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON frozen BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    with pytest.raises(Exception, match="x"):
        store.import_files([files["MAJNUM"], files["GELNUM"]])
    store._db.execute("DROP TRIGGER boom")
    assert store.lookup("0162286123") is not None
    assert store.lookup("0162000001") is not None


def test_same_dataset_twice_in_one_import(tmp_path: Path, files: dict[str, Path]) -> None:
    """Two MAJNUM files in one import are ambiguous."""
    copy = _write(tmp_path / "MAJNUM-copy.csv", [MAJNUM_HEADER, *MAJNUM_ROWS])
    with pytest.raises(AllocationImportError, match="a second MAJNUM file"):
        AllocationStore(":memory:").import_files([files["MAJNUM"], copy])


def test_missing_and_empty_files(tmp_path: Path) -> None:
    """Unreadable and empty files are import errors naming the file."""
    store = AllocationStore(":memory:")
    with pytest.raises(AllocationImportError, match=r"absent\.csv: cannot read"):
        store.import_files([tmp_path / "absent.csv"])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(AllocationImportError, match=r"empty\.csv: empty file"):
        store.import_files([empty])


# ------------------------------------------------------------- the shared ARCEP copy

needs_shared = pytest.mark.skipif(
    not (SHARED / "MAJNUM.csv").is_file(),
    reason=f"shared ARCEP test data not found at {SHARED} (see its README.md)",
)


@pytest.fixture(scope="module")
def arcep(tmp_path_factory: pytest.TempPathFactory) -> AllocationStore:
    """The April 2026 ARCEP snapshot imported once (read in place, not copied)."""
    if not (SHARED / "MAJNUM.csv").is_file():
        pytest.skip(f"shared ARCEP test data not found at {SHARED}")
    store = AllocationStore(tmp_path_factory.mktemp("arcep") / "alloc.sqlite3")
    store.import_files(sorted(SHARED.glob("*.csv")))
    return store


@needs_shared
def test_shared_copy_row_counts(arcep: AllocationStore) -> None:
    """Row counts match the README (19,991 MAJNUM + 20 MAJNFB blocks)."""
    imported = {f.dataset: f.rows for f in arcep.imported()}
    assert imported["MAJNUM"] == 19_991
    assert imported["MAJNFB"] == 20
    assert imported["identifiants_CE"] == 1_552
    assert arcep.import_files([]).frozen + 317 == 2_508  # GELNUM minus non-number rows


@needs_shared
@pytest.mark.parametrize(
    ("number", "block", "holder"),
    [
        ("0162000001", "016200", "LGC"),
        ("0612345678", "0612", "SFR0"),
        ("0140123456", "0140", "FRTE"),
        ("0651123456", "0651", "FRMO"),
        ("0695123456", "0695", "FRMO"),
        ("0699123456", "0699", "BOUY"),
        ("0939000123", "0939000", "HIGH"),
        ("3008", "3008", "NFB"),
        ("112", "112", "URG"),
        ("+262269601234", "026960", "FRTE"),
    ],
)
def test_shared_copy_spot_checks(
    arcep: AllocationStore, number: str, block: str, holder: str
) -> None:
    """The README's sanity facts hold through lookup()."""
    found = arcep.lookup(number)
    assert found is not None and (found.block, found.holder_code) == (block, holder)


@needs_shared
def test_shared_copy_facts(arcep: AllocationStore) -> None:
    """Dates, names and the absent ranges of the README."""
    first = arcep.lookup("0162000001")
    assert first is not None and first.allocated_on == dt.date(2021, 1, 21)
    assert first.holder_name == "Manifone"
    sfr = arcep.lookup("0612345678")
    assert sfr is not None and sfr.allocated_on == dt.date(2011, 12, 8)
    for absent in ("0740123456", "0741123456", "0949000001", "0163000001", "0271000001"):
        assert arcep.lookup(absent) is None, absent
    assert arcep.holder_name("GMBZ") is not None  # named only in MAJRIO (README fact 6)
    assert arcep.holder_name("CLLC") is None  # one of the ten unnamed codes
    reunion = arcep.lookup("+262262123456")
    assert reunion is not None and reunion.territory is not None
    assert "Réunion" in reunion.territory


@needs_shared
def test_shared_copy_frozen_npv(arcep: AllocationStore) -> None:
    """GELNUM freezes NPV block 0162286 (reopens in May 2026)."""
    found = arcep.lookup("0162286000")
    assert found is not None and found.frozen
    assert found.frozen_type == "Numéros polyvalents vérifiés"


def _index_agrees(store: AllocationStore, numbers: list[str]) -> None:
    index = AllocationIndex.from_store(store)
    for number in numbers:
        assert index.lookup(number) == store.lookup(number), number


def test_index_answers_as_the_store_on_the_fixture(store: AllocationStore) -> None:
    """The in-memory index (hot path) and the SQL lookup give the same block, frozen or not."""
    numbers = [
        "0162000001", "+33162001234", "+33 6 12 00 00 00", "0612345678", "+262262123456",
        "07000001234567", "3010", "118218", "15", "+508411234", "0140123456", "+33999999999",
        "+4915112345678", "anonymous", "+33012345678", "+3316200123",
    ]  # fmt: skip
    numbers += [f"+33{d}{n:08d}" for d in range(1, 10) for n in range(0, 10**8, 7_654_321)]
    _index_agrees(store, numbers)


def test_index_answers_as_the_store_on_the_shared_data(tmp_path: Path) -> None:
    """Same over every block (and a number around each) of the shared ARCEP copy."""
    if not (SHARED / "MAJNUM.csv").is_file():
        pytest.skip(f"shared ARCEP test data not found at {SHARED}")
    store = AllocationStore(tmp_path / "a.sqlite3")
    store.import_files(sorted(SHARED.glob("*.csv")))
    prefixes = [
        p for (p,) in store._db.execute("SELECT prefix FROM blocks UNION SELECT prefix FROM frozen")
    ]
    numbers = []
    for prefix in prefixes[::7]:
        if len(prefix) < 10 and prefix.startswith("0"):
            national = (prefix + "123456789")[:10]
            numbers += [national, "+33" + national[1:]]
        else:
            numbers.append(prefix)
    _index_agrees(store, numbers)
    store.close()
