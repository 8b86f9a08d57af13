"""Number lists: store, migration, YAML and BND round trips, refusals, reloads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from proxy.policy.numbers import (
    _MIGRATIONS,
    _TOUCHED_KEPT,
    SCHEMA_VERSION,
    Delegation,
    FlowHistory,
    ListSnapshot,
    NumberLists,
    NumberRange,
    NumberStore,
    NumberStoreError,
    _split_sql,
)

NOW = 1_773_662_400.0  # 2026-03-16 12:00 UTC
DAY = 86400.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh database path."""
    return tmp_path / "lists.sqlite3"


def test_schema_created_with_version(db: Path):
    """A new database is migrated to the current schema version."""
    with NumberStore(db) as store:
        assert store.schema_version() == SCHEMA_VERSION
        mode = store.connection.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_migration_from_version_one_keeps_data(db: Path):
    """A version-1 database (no flow history) is upgraded and keeps its rows."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    for statement in _split_sql(_MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO holdings(holder, start, \"end\", created) VALUES ('acme', '+33162000001',"
        " '+33162000001', 0)"
    )
    conn.close()
    with NumberStore(db) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert [h.holder for h in store.holdings()] == ["acme"]
        store.record_flows([("+33937000001", "+33299000001", NOW)])
        assert store.load_flows(NOW - 1) == [("+33937000001", "+33299000001", NOW)]


def test_newer_schema_refused(db: Path):
    """A database from a newer sipguard is not touched."""
    NumberStore(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(NumberStoreError, match="newer"):
        NumberStore(db)


@pytest.mark.parametrize(
    "text",
    ["+33612345678", "+33712345678", "+262692123456", "+33899123456", "+33500000000-+33999999999"],
)
def test_mobile_and_089_delegations_refused(db: Path, text: str):
    """The BND refuses mobile (Z=6/7) and 089 delegations, ranges hiding them too."""
    with NumberStore(db) as store, pytest.raises(NumberStoreError):
        store.add_delegation("acme", "callco", NumberRange.parse(text), NOW, NOW + 5 * DAY)


def test_mobile_holding_allowed(db: Path):
    """Holding a mobile is a fact, not a delegation: stored (the rules refuse presenting it)."""
    with NumberStore(db) as store:
        store.add_holding("callco", NumberRange.parse("+33612345678"))
        assert len(store.holdings()) == 1


@pytest.mark.parametrize(("hours", "ok"), [(71.9, False), (72.0, True)])
def test_minimum_delegation_length(db: Path, hours: float, ok: bool):
    """A delegation shorter than 72 h is refused; exactly 72 h is accepted."""
    with NumberStore(db) as store:
        rng = NumberRange.parse("+33144000000")
        if ok:
            store.add_delegation("acme", "callco", rng, NOW, NOW + hours * 3600)
        else:
            with pytest.raises(NumberStoreError, match="72"):
                store.add_delegation("acme", "callco", rng, NOW, NOW + hours * 3600)


def test_minimum_is_configurable(db: Path):
    """min_delegation_hours=0 allows a one-hour delegation."""
    with NumberStore(db, min_delegation_hours=0) as store:
        store.add_delegation("acme", "callco", NumberRange.parse("+33144000000"), NOW, NOW + 3600)


@pytest.mark.parametrize(
    "text", ["33162000001", "+33162000009-+33162000001", "+3316200000-+33162000001", "+0123"]
)
def test_bad_ranges_refused(text: str):
    """Not E.164, reversed or mixed-length ranges are refused."""
    with pytest.raises(NumberStoreError):
        NumberRange.parse(text)


def test_yaml_round_trip(db: Path, tmp_path: Path):
    """Export then import into an empty store gives the same rows."""
    with NumberStore(db) as store:
        store.add_holding("acme", NumberRange.parse("+33162000000-+33162009999"), "NPV block")
        store.add_holding("callco", NumberRange.parse("+33144000000"))
        store.add_delegation(
            "acme", "callco", NumberRange.parse("+33162000042"), NOW, NOW + 10 * DAY, spc="OSP1"
        )
        text = store.export_yaml()
    with NumberStore(tmp_path / "copy.sqlite3") as copy:
        assert copy.import_yaml(text) == (2, 1)
        assert copy.export_yaml() == text


def test_yaml_import_is_all_or_nothing(db: Path):
    """One refused delegation leaves the store untouched and names the entry."""
    text = """
holdings:
  - {holder: acme, numbers: ["+33144000000"]}
delegations:
  - {principal: acme, customer: callco, from: 2026-03-01, until: 2026-03-31,
     numbers: ["+33144000000", "+33612345678"]}
"""
    with NumberStore(db) as store:
        with pytest.raises(NumberStoreError, match=r"delegations\[0\]"):
            store.import_yaml(text)
        assert store.holdings() == [] and store.delegations() == []


def test_yaml_dates_are_whole_days_in_paris(db: Path):
    """`until` is inclusive: the delegation ends at midnight Paris time the day after."""
    text = """
delegations:
  - {principal: acme, customer: callco, from: 2026-03-01, until: 2026-03-31,
     numbers: ["+33144000000"]}
"""
    with NumberStore(db) as store:
        store.import_yaml(text)
        (d,) = store.delegations()
    assert d.valid_from == 1772319600.0  # 2026-03-01T00:00+01:00
    assert d.valid_until == 1774994400.0  # 2026-04-01T00:00+02:00 (summer time)


def test_bnd_round_trip(db: Path, tmp_path: Path):
    """BND lines import with the given period and export back identically."""
    lines = ["33144000000;OSP1", "33162000000-33162000999;OSP1", "590590123456;OSP2"]
    with NumberStore(db) as store:
        added, removed = store.import_bnd(
            lines, principal="acme", customer="callco", valid_from=NOW, valid_until=NOW + 9 * DAY
        )
        assert (added, removed) == (3, 0)
        exported, skipped = store.export_bnd(customer="callco", now=NOW)
    assert sorted(exported) == sorted(lines) and skipped == []


def test_bnd_import_refuses_mobiles_and_bad_lines(db: Path):
    """Mobile, 089, foreign and malformed lines abort the import, each named by line."""
    lines = ["33612345678;OSP1", "33899000000;OSP1", "4930123456;OSP1", "garbage", "33144000000;X"]
    with NumberStore(db) as store:
        with pytest.raises(NumberStoreError) as info:
            store.import_bnd(
                lines,
                principal="acme",
                customer="callco",
                valid_from=NOW,
                valid_until=NOW + 9 * DAY,
            )
        assert store.delegations() == []
    message = str(info.value)
    for n in (1, 2, 3, 4):
        assert f"line {n}:" in message
    assert "line 5" not in message


def test_bnd_delta_removes(db: Path):
    """A `;REMOVED` delta line deletes the delegation."""
    with NumberStore(db) as store:
        args = {
            "principal": "acme",
            "customer": "callco",
            "valid_from": NOW,
            "valid_until": NOW + 9 * DAY,
        }
        store.import_bnd(["33144000000;OSP1"], **args)  # type: ignore[arg-type]
        assert store.import_bnd(["33144000000;OSP1;REMOVED"], **args) == (0, 1)  # type: ignore[arg-type]
        assert store.delegations() == []


def test_reload_across_connections(db: Path):
    """A worker's snapshot sees another connection's add and remove after poll()."""
    lists = NumberLists(db)
    with NumberStore(db) as store:
        rng = NumberRange.parse("+33144000000-+33144000099")
        assert lists.match("+33144000042", "callco", NOW).status is None
        assert lists.poll() is False or lists.match("+33144000042", "callco", NOW).status is None
        store.add_delegation("acme", "callco", rng, NOW - DAY, NOW + 9 * DAY)
        assert lists.match("+33144000042", "callco", NOW).status is None  # not yet polled
        assert lists.poll() is True
        assert lists.match("+33144000042", "callco", NOW).status == "delegated"
        assert lists.poll() is False  # nothing new
        store.remove(rng, customer="callco")
        assert lists.poll() is True
        assert lists.match("+33144000042", "callco", NOW).status is None
    lists.close()


def test_flow_only_writes_do_not_rebuild(db: Path):
    """Flow-history writes change data_version but not the list generation."""
    lists = NumberLists(db)
    lists.poll()
    with NumberStore(db) as store:
        store.record_flows([("+33937000001", "+33299000001", NOW)])
    assert lists.poll() is False
    lists.close()


def test_flow_history_shared_through_the_store(db: Path):
    """One worker's observations reach another's history after flush."""
    with NumberStore(db) as a_store, NumberStore(db) as b_store:
        a, b = FlowHistory(a_store), FlowHistory(b_store)
        a.observe("+33937000001", "+33299000001", NOW)
        assert a.flush(NOW) == 1
        b.flush(NOW)
        assert b.destinations("+33937000001", NOW - DAY) == frozenset({"+33299000001"})


def test_message_counts_shared_through_the_store_within_the_window(db: Path):
    """MESSAGEs sent and received add up across workers after flush; days before the window
    are dropped; a worker's own counts show before its flush."""
    number = "+33937000001"
    with NumberStore(db) as a_store, NumberStore(db) as b_store:
        a, b = FlowHistory(a_store), FlowHistory(b_store)
        a.observe_message(number, sent=True, now=NOW)
        a.observe_message(number, sent=True, now=NOW - DAY)
        a.observe_message(number, sent=False, now=NOW - 31 * DAY)  # outside the 30 days
        b.observe_message(number, sent=False, now=NOW)
        assert a.messages(number, NOW - 30 * DAY) == (2, 0)
        assert a.flush(NOW) == 3
        b.flush(NOW)
        assert b.messages(number, NOW - 30 * DAY) == (2, 1)
        a.flush(NOW)
        assert a.messages(number, NOW - 30 * DAY) == (2, 1)
        assert a.messages(number, NOW - 1) == (1, 1)  # today only
        assert a.messages("+33937000002", NOW - 30 * DAY) == (0, 0)
        assert all(day >= int((NOW - 30 * DAY) // DAY) for _, day, _, _ in a_store.load_messages(0))


@hsettings(max_examples=200, deadline=None)
@given(
    lo=st.integers(min_value=33100000000, max_value=33999999999),
    span=st.integers(min_value=0, max_value=5000),
    probe=st.integers(min_value=-100, max_value=5100),
)
def test_range_lookup_matches_membership(lo: int, span: int, probe: int):
    """The prefix index finds exactly the numbers inside a range, whatever its bounds."""
    hi = min(lo + span, 33999999999)
    rng = NumberRange.of(f"+{lo}", f"+{hi}")
    snap = ListSnapshot()
    snap.add_holding(1, "acme", rng)
    number = f"+{lo + probe}"
    assert (snap.holders(number) == ("acme",)) == (number in rng)
    snap.remove_holding(1, rng)
    assert snap.holders(number) == ()


def test_principal_mismatch_and_reasons():
    """The match explains expired, future, other-holder and other-principal cases."""
    from proxy.policy.numbers import Delegation

    snap = ListSnapshot()
    snap.add_holding(1, "callco", NumberRange.parse("+33144000000"))
    snap.add_delegation(
        Delegation(1, "acme", "callco", NumberRange.parse("+33145000001"), NOW - 9 * DAY, NOW - DAY)
    )
    assert "expired" in snap.match("+33145000001", "callco", NOW).reason
    assert "starts later" in snap.match("+33145000001", "callco", NOW - 10 * DAY).reason
    assert "held by callco" in snap.match("+33144000000", "other", NOW).reason
    mismatch = snap.match("+33144000000", "callco", NOW, principal="acme")
    assert mismatch.principal_mismatch and mismatch.status is None
    assert snap.match("+33144000000", "callco", NOW, principal="callco").status == "own"


def _range_strategy() -> st.SearchStrategy[NumberRange]:
    """Single numbers and ranges of 10-12 digit numbers, most of them near +331620000xx so
    that ranges overlap and share prefix keys."""

    @st.composite
    def build(draw: st.DrawFn) -> NumberRange:
        width = draw(st.sampled_from([10, 11, 11, 11, 12]))
        base = 33162 * 10 ** (width - 5)
        lo = base + draw(st.integers(min_value=0, max_value=3000))
        span = draw(st.sampled_from([0, 0, 0, 9, 99, 999, 1234]))
        return NumberRange.of(f"+{lo}", f"+{lo + span}")

    return build()


@hsettings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.booleans(), _range_strategy()), max_size=25),
    probes=st.lists(st.integers(min_value=0, max_value=4500), min_size=1, max_size=20),
)
def test_level_probe_lookup_equals_full_walk(
    ops: list[tuple[bool, bool, NumberRange]], probes: list[int]
) -> None:
    """`_found` (probing only the occupied prefix levels, the hot path) answers exactly what
    the full eleven-level walk of `holders` / `delegations` answers, after any sequence of
    additions and removals of holdings and delegations."""
    from proxy.policy.numbers import Delegation

    snap = ListSnapshot()
    live: list[tuple[bool, int, NumberRange]] = []
    for row_id, (delegation, remove, rng) in enumerate(ops, start=1):
        if remove and live:
            was_delegation, old_id, old_rng = live.pop(0)
            if was_delegation:
                snap.remove_delegation(old_id, old_rng)
            else:
                snap.remove_holding(old_id, old_rng)
        if delegation:
            snap.add_delegation(Delegation(row_id, "acme", "callco", rng, NOW - DAY, NOW + DAY))
        else:
            snap.add_holding(row_id, f"holder{row_id % 3}", rng)
        live.append((delegation, row_id, rng))
    for width in (10, 11, 12):
        for probe in probes:
            number = f"+{33162 * 10 ** (width - 5) + probe}"
            assert snap._found(number) == (snap.holders(number), snap.delegations(number))


def test_untouched_since_names_the_changes_that_cover_a_number() -> None:
    snap = ListSnapshot()
    snap.add_holding(1, "callco", NumberRange.parse("+33162000001"))
    before = snap.changes
    assert snap.untouched_since(before, ["+33162000001"])  # nothing since
    # A shorter range the number sorts inside as text (another length: never covers it), and
    # a range starting just after the number.
    snap.add_holding(2, "other", NumberRange.parse("+3316200000-+3316200001"))
    snap.add_delegation(
        Delegation(3, "acme", "callco", NumberRange.parse("+33162000002-+33162000099"), 0, 1)
    )
    assert snap.untouched_since(before, ["+33162000001"])
    assert not snap.untouched_since(before, ["+33162000050"])
    assert not snap.untouched_since(before, ["+33162000001", "+3316200000"])
    middle = snap.changes
    snap.remove_holding(1, NumberRange.parse("+33162000001"))
    assert not snap.untouched_since(before, ["+33162000001"])
    assert snap.untouched_since(middle, ["+33162000050"])  # the delegation came before `middle`
    # A counter older than the kept log cannot be vouched for, whatever changed.
    for row in range(10, 10 + 2 * _TOUCHED_KEPT):
        snap.add_holding(row, "other", NumberRange.parse("+33999000000"))
    assert not snap.untouched_since(before, ["+33162000050"])
    recent = snap.changes
    snap.add_holding(99_999, "other", NumberRange.parse("+33999000000"))
    assert snap.untouched_since(recent, ["+33162000050"])


def test_untouched_since_vouches_exactly_as_far_back_as_it_keeps() -> None:
    snap = ListSnapshot()
    for row in range(1, 2 * _TOUCHED_KEPT + 1):  # change k is done at counter 2k
        snap.add_holding(row, "other", NumberRange.parse("+33999000000"))
    # The log was cut to the last _TOUCHED_KEPT changes: the oldest kept is change
    # _TOUCHED_KEPT + 1, so a stamp taken just before it is the oldest one it can vouch for.
    assert snap.untouched_since(2 * _TOUCHED_KEPT, ["+33162000001"])
    assert not snap.untouched_since(2 * _TOUCHED_KEPT - 2, ["+33162000001"])
    assert not snap.untouched_since(2 * _TOUCHED_KEPT, ["+33999000000"])


def test_a_fully_loaded_snapshot_logs_only_later_changes(tmp_path: Path) -> None:
    store = NumberStore(tmp_path / "lists.sqlite3")
    store.add_holding("callco", NumberRange.parse("+33162000001"))
    lists = NumberLists(tmp_path / "lists.sqlite3")
    snap = lists.snapshot
    loaded = snap.changes
    assert loaded > 0 and snap.untouched_since(loaded, ["+33162000001"])
    assert not snap.untouched_since(loaded - 2, ["+33299000000"])  # before the log began
    snap.add_holding(99, "other", NumberRange.parse("+33162000002"))
    assert snap.untouched_since(loaded, ["+33162000001"])
    assert not snap.untouched_since(loaded, ["+33162000002"])
    lists.close()
    store.close()
