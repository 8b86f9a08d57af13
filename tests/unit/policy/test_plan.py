"""Numbering plan: every §8 category, effective dates, overrides and file validation."""

from __future__ import annotations

import csv
import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.policy.numbering import normalise_number
from proxy.policy.plan import SHIPPED_PLAN, NumberingPlan, Permission, PlanError, PlanRow

ALLOW, DENY, COND = Permission.ALLOW, Permission.DENY, Permission.COND
TODAY = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def plan() -> NumberingPlan:
    """The shipped plan, loaded once."""
    return NumberingPlan.load()


# (caller number, category, automated, interpersonal)
CATEGORIES = [
    # NPV metropolitan and overseas (§2)
    ("0162000001", "npv", ALLOW, ALLOW),
    ("+33163000001", "npv", ALLOW, ALLOW),
    ("0270123456", "npv", ALLOW, ALLOW),
    ("0378123456", "npv", ALLOW, ALLOW),
    ("0424123456", "npv", ALLOW, ALLOW),
    ("0569123456", "npv", ALLOW, ALLOW),
    ("0948123456", "npv", ALLOW, ALLOW),
    ("0949123456", "npv", ALLOW, ALLOW),
    ("0947512345", "npv", ALLOW, ALLOW),
    ("0947612345", "npv", ALLOW, ALLOW),
    ("0947712345", "npv", ALLOW, ALLOW),
    ("0947812345", "npv", ALLOW, ALLOW),
    ("0947912345", "npv", ALLOW, ALLOW),
    ("0268812345", "npv", ALLOW, ALLOW),
    ("0268912345", "npv", ALLOW, ALLOW),
    ("0598712345", "npv", ALLOW, ALLOW),
    ("0598812345", "npv", ALLOW, ALLOW),
    ("0598912345", "npv", ALLOW, ALLOW),
    # public interest 2026 (cond: entitlement flag)
    ("0151012345", "public_interest", COND, ALLOW),
    ("0281012345", "public_interest", COND, ALLOW),
    ("0341012345", "public_interest", COND, ALLOW),
    ("0441012345", "public_interest", COND, ALLOW),
    ("0541012345", "public_interest", COND, ALLOW),
    ("0941012345", "public_interest", COND, ALLOW),
    ("0268712345", "public_interest", COND, ALLOW),
    ("0508601234", "public_interest", COND, ALLOW),
    ("0598601234", "public_interest", COND, ALLOW),
    ("0947051234", "public_interest", COND, ALLOW),
    # platform numbers (plan §2.3.9)
    ("0937123456", "platform", COND, ALLOW),
    ("0938123456", "platform", COND, ALLOW),
    ("0939012345", "platform", COND, ALLOW),
    ("0939412345", "platform", COND, ALLOW),
    ("0939512345", "platform", COND, ALLOW),
    ("0939912345", "platform", COND, ALLOW),
    # extended length
    ("07000000000001", "mobile_m2m", DENY, DENY),
    ("09010000000001", "polyvalent_ext", DENY, DENY),
    ("0700500000001", "mobile_m2m", DENY, DENY),
    ("0901500000001", "polyvalent_ext", DENY, DENY),
    # mobile, metro + DOM + SPM
    ("0612345678", "mobile", DENY, DENY),
    ("0699123456", "mobile", DENY, DENY),
    ("0740123456", "mobile", DENY, DENY),
    ("0798123456", "mobile", DENY, DENY),
    ("0639012345", "mobile", DENY, DENY),
    ("0692123456", "mobile", DENY, DENY),
    ("0693123456", "mobile", DENY, DENY),
    ("0690123456", "mobile", DENY, DENY),
    ("0691123456", "mobile", DENY, DENY),
    ("0694123456", "mobile", DENY, DENY),
    ("0696123456", "mobile", DENY, DENY),
    ("0697123456", "mobile", DENY, DENY),
    ("0709012345", "mobile", DENY, DENY),
    ("0709112345", "mobile", DENY, DENY),
    ("0709212345", "mobile", DENY, DENY),
    ("0709301234", "mobile", DENY, DENY),
    ("0709351234", "mobile", DENY, DENY),
    ("+508708412345", "mobile", DENY, DENY),
    # geographic / polyvalent
    ("0140123456", "geographic_polyvalent", DENY, ALLOW),
    ("0240123456", "geographic_polyvalent", DENY, ALLOW),
    ("0340123456", "geographic_polyvalent", DENY, ALLOW),
    ("0478123456", "geographic_polyvalent", DENY, ALLOW),
    ("0556123456", "geographic_polyvalent", DENY, ALLOW),
    ("0262123456", "geographic", DENY, ALLOW),
    ("0263012345", "geographic", DENY, ALLOW),
    ("0269601234", "geographic", DENY, ALLOW),
    ("0590123456", "geographic", DENY, ALLOW),
    ("0594123456", "geographic", DENY, ALLOW),
    ("0596123456", "geographic", DENY, ALLOW),
    ("0912345678", "polyvalent", DENY, ALLOW),
    ("0976012345", "polyvalent", DENY, ALLOW),
    ("0976912345", "polyvalent", DENY, ALLOW),
    # 08 special numbers
    ("0800123456", "special_free", ALLOW, ALLOW),
    ("0805123456", "special_free", ALLOW, ALLOW),
    ("0806123456", "special_banalise", ALLOW, ALLOW),
    ("0809123456", "special_banalise", ALLOW, ALLOW),
    ("0810123456", "special_surcharged", ALLOW, ALLOW),
    ("0825123456", "special_surcharged", ALLOW, ALLOW),
    ("0884123456", "special_surcharged", ALLOW, ALLOW),
    ("0891234567", "special_premium", DENY, DENY),
    ("0899123456", "special_premium", DENY, DENY),
    # short numbers
    ("3000", "short_free_30_31", ALLOW, ALLOW),
    ("3007", "short_free_30_31", ALLOW, ALLOW),
    ("3010", "short_free_30_31", ALLOW, ALLOW),
    ("3169", "short_free_30_31", ALLOW, ALLOW),
    ("3180", "short_free_30_31", ALLOW, ALLOW),
    ("3199", "short_free_30_31", ALLOW, ALLOW),
    ("3008", "short_banalise", DENY, DENY),
    ("3175", "short_banalise", DENY, DENY),
    ("3200", "short_surcharged", DENY, DENY),
    ("3617", "short_surcharged", DENY, DENY),
    ("3999", "short_surcharged", DENY, DENY),
    ("118218", "directory", DENY, DENY),
    ("118712", "directory", DENY, DENY),
    ("1015", "service_or_emergency", DENY, DENY),
    ("15", "service_or_emergency", DENY, DENY),
    ("17", "service_or_emergency", DENY, DENY),
    ("18", "service_or_emergency", DENY, DENY),
    ("112", "service_or_emergency", DENY, DENY),
    ("114", "service_or_emergency", DENY, DENY),
    ("115", "service_or_emergency", DENY, DENY),
    ("119", "service_or_emergency", DENY, DENY),
    ("116000", "service_or_emergency", DENY, DENY),
    ("116117", "service_or_emergency", DENY, DENY),
    ("191", "service_or_emergency", DENY, DENY),
    ("196", "service_or_emergency", DENY, DENY),
    ("197", "service_or_emergency", DENY, DENY),
    ("33700", "service_or_emergency", DENY, DENY),
    # placeholders and non-numbers
    ("+33999999999", "placeholder", DENY, DENY),
    ("09 99 99 99 99", "placeholder", DENY, DENY),
    ("anonymous", "masked", DENY, DENY),
    ("sip:anonymous@anonymous.invalid", "masked", DENY, DENY),
    ("MYSHOP", "alphanumeric", DENY, DENY),
    ("+3316200000", "invalid", DENY, DENY),
    ("", "invalid", DENY, DENY),
    # catch-alls and outside the plan
    ("0701234567", "unallocated", DENY, DENY),
    ("+33700123456", "unallocated", DENY, DENY),
    ("113", "unallocated", DENY, DENY),
    ("+262800123456", "unallocated", DENY, DENY),
    ("+508410000", "spm", DENY, ALLOW),
    ("0508410000", "spm", DENY, ALLOW),
    ("+2697731234", "foreign", ALLOW, ALLOW),
    ("+687261234", "foreign", ALLOW, ALLOW),
    ("+4915112345678", "foreign", ALLOW, ALLOW),
    ("+14155550123", "foreign", ALLOW, ALLOW),
]


@pytest.mark.parametrize(("text", "category", "automated", "interpersonal"), CATEGORIES)
def test_classification_table(
    plan: NumberingPlan, text: str, category: str, automated: Permission, interpersonal: Permission
) -> None:
    """Each notable range classifies into its §8 category with its permissions."""
    row = plan.classify(normalise_number(text), TODAY)
    assert (row.category, row.automated, row.interpersonal) == (category, automated, interpersonal)


@pytest.mark.parametrize(
    ("text", "before", "after", "day"),
    [
        ("0162000001", "geographic_polyvalent", "npv", dt.date(2023, 1, 1)),
        ("0948123456", "polyvalent", "npv", dt.date(2023, 1, 1)),
        ("0937123456", "polyvalent", "platform", dt.date(2023, 1, 1)),
        ("0151012345", "geographic_polyvalent", "public_interest", dt.date(2026, 1, 1)),
        ("0941012345", "polyvalent", "public_interest", dt.date(2026, 1, 1)),
        ("0268812345", "unallocated", "npv", dt.date(2026, 1, 1)),
        ("0598712345", "unallocated", "npv", dt.date(2026, 1, 1)),
    ],
)
def test_rows_apply_from_their_effective_date(
    plan: NumberingPlan, text: str, before: str, after: str, day: dt.date
) -> None:
    """A row effective in the future does not apply before its date (shorter prefix does)."""
    number = normalise_number(text)
    assert plan.classify(number, day - dt.timedelta(days=1)).category == before
    assert plan.classify(number, day).category == after


def test_length_restricted_rows(plan: NumberingPlan) -> None:
    """+33700 applies only to 15-digit numbers; a 10-digit 0700 falls to the catch-all."""
    extended = plan.classify(normalise_number("07001234567890"), TODAY)
    ten_digits = plan.classify(normalise_number("0700123456"), TODAY)
    assert (extended.key, extended.length) == ("+33700", 15)
    assert ten_digits.category == "unallocated"


def test_classify_returns_the_row_itself(plan: NumberingPlan) -> None:
    """The matched row carries key, sources, confidence, date and note for the audit log."""
    row = plan.classify(normalise_number("0162000001"), TODAY)
    assert row.key == "+33162"
    assert row.territory == "FR-metro"
    assert "S8" in row.sources
    assert row.effective_from == dt.date(2023, 1, 1)
    assert row.confidence == "C2"
    assert "vérifiés" in row.note


def test_shipped_plan_has_every_category(plan: NumberingPlan) -> None:
    """The shipped file carries all categories the rules engine relies on."""
    categories = {row.category for row in plan.rows}
    assert categories >= {
        "npv", "public_interest", "platform", "mobile_m2m", "polyvalent_ext", "mobile",
        "geographic_polyvalent", "geographic", "polyvalent", "special_free",
        "special_banalise", "special_surcharged", "special_premium", "short_free_30_31",
        "short_surcharged", "directory", "service_or_emergency", "placeholder", "masked",
        "alphanumeric", "invalid", "unallocated", "spm", "foreign",
    }  # fmt: skip


def test_shipped_rows_cite_sources_and_confidence(plan: NumberingPlan) -> None:
    """Every shipped row cites regulation.md S-keys and a confidence mark."""
    for row in plan.rows:
        assert row.sources, row.key
        assert row.confidence, row.key
        assert all(1 <= int(s[1:].rstrip("ab")) <= 34 for s in row.sources), row.key


def test_shipped_plan_default_path() -> None:
    """load() without a path reads configs/numbering_plan.yaml of the repository."""
    assert SHIPPED_PLAN.name == "numbering_plan.yaml" and SHIPPED_PLAN.is_file()
    # the package's copy is configs/numbering_plan.yaml itself (a link in the repository)
    configs = Path(__file__).resolve().parents[3] / "configs" / "numbering_plan.yaml"
    assert SHIPPED_PLAN.read_bytes() == configs.read_bytes()


def _reference_classify(plan: NumberingPlan, e164: str, on: dt.date) -> PlanRow | None:
    """Linear scan: the longest in-force prefix row whose length fits."""
    best: PlanRow | None = None
    for row in plan.rows:
        if not row.key.startswith("+") or not e164.startswith(row.key):
            continue
        if row.length is not None and row.length != len(e164) - 1:
            continue
        if not row.in_force(on):
            continue
        if best is None or len(row.key) > len(best.key):
            best = row
    return best


@given(
    st.from_regex(r"0[1-9][0-9]{8}|0(700|901)[0-9]{10}|\+[1-9][0-9]{6,12}", fullmatch=True),
    st.dates(min_value=dt.date(2015, 1, 1), max_value=dt.date(2030, 12, 31)),
)
def test_classify_matches_a_linear_scan(text: str, on: dt.date) -> None:
    """The indexed lookup agrees with a brute-force longest-prefix scan."""
    plan = _PLAN
    number = normalise_number(text)
    row = plan.classify(number, on)
    if number.e164 is None:
        assert row.category == "invalid"
        return
    expected = _reference_classify(plan, number.e164, on)
    assert expected is not None  # the shipped "+" row matches everything
    assert row == expected


_PLAN = NumberingPlan.load()


# --------------------------------------------------------------------------- overrides


def test_override_replaces_a_shipped_row() -> None:
    """An override with a shipped key replaces that row."""
    plan = NumberingPlan.load(
        overrides=[
            {"prefix": "+33162", "category": "npv", "automated": "deny",
             "interpersonal": "allow", "note": "operator says no"},
        ]
    )  # fmt: skip
    row = plan.classify(normalise_number("0162000001"), TODAY)
    assert (row.automated, row.note) == (DENY, "operator says no")
    assert sum(1 for r in plan.rows if r.key == "+33162") == 1


def test_override_adds_a_more_specific_row() -> None:
    """A new, longer prefix from the operator wins over the shipped row."""
    plan = NumberingPlan.load(
        overrides=[
            {"prefix": ["+3316200", "+3316201"], "category": "customer_npv",
             "automated": "allow", "interpersonal": "allow", "sources": ["S8"]},
        ]
    )  # fmt: skip
    assert plan.classify(normalise_number("0162000001"), TODAY).category == "customer_npv"
    assert plan.classify(normalise_number("0162100001"), TODAY).category == "npv"


def test_override_of_a_short_code_pattern_wins() -> None:
    """An override pattern covering codes of a shipped range takes those codes."""
    plan = NumberingPlan.load(
        overrides=[
            {"national": "3010", "category": "short_denied_here", "automated": "deny",
             "interpersonal": "deny"},
        ]
    )  # fmt: skip
    assert plan.classify(normalise_number("3010"), TODAY).category == "short_denied_here"
    assert plan.classify(normalise_number("3011"), TODAY).category == "short_free_30_31"


def test_override_can_change_non_number_rows() -> None:
    """An SMS deployment can allow alphanumeric senders through a kind row."""
    plan = NumberingPlan.load(
        overrides=[
            {"kind": "alphanumeric", "category": "alphanumeric", "automated": "allow",
             "interpersonal": "allow"},
        ]
    )  # fmt: skip
    assert plan.classify(normalise_number("MYSHOP"), TODAY).automated is ALLOW


def test_override_errors_name_the_overrides() -> None:
    """A bad override row is reported as such, with its index."""
    with pytest.raises(PlanError, match=r"^overrides: row 1 \(\+33163\): automated: 'maybe'"):
        NumberingPlan.load(
            overrides=[
                {"prefix": "+33162", "category": "npv", "automated": "allow",
                 "interpersonal": "allow"},
                {"prefix": "+33163", "category": "npv", "automated": "maybe",
                 "interpersonal": "allow"},
            ]
        )  # fmt: skip


def test_duplicate_keys_within_overrides_are_rejected() -> None:
    """Two override rows with one key are ambiguous."""
    row: dict[str, Any] = {
        "prefix": "+33162", "category": "npv", "automated": "allow", "interpersonal": "allow"
    }  # fmt: skip
    with pytest.raises(PlanError, match=r"overrides: row 1 \(\+33162\): duplicate key"):
        NumberingPlan.load(overrides=[row, row])


# ------------------------------------------------------------------------- custom plans

_GOOD_ROW = """
  - prefix: "+33162"
    category: npv
    territory: FR-metro
    automated: allow
    interpersonal: allow
    sources: [S8]
    effective_from: 2023-01-01
"""


def _write(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text("version: 1\nrows:" + rows, encoding="utf-8")
    return path


def test_custom_plan_without_catch_alls_uses_built_in_fallbacks(tmp_path: Path) -> None:
    """Numbers in no row are unallocated (French codes) or foreign, never an exception."""
    plan = NumberingPlan.load(_write(tmp_path, _GOOD_ROW))
    assert plan.classify(normalise_number("0162000001"), TODAY).category == "npv"
    assert plan.classify(normalise_number("0140000000"), TODAY).category == "unallocated"
    assert plan.classify(normalise_number("0262123456"), TODAY).category == "unallocated"
    assert plan.classify(normalise_number("3010"), TODAY).category == "unallocated"
    foreign = plan.classify(normalise_number("+4915112345678"), TODAY)
    assert (foreign.category, foreign.automated) == ("foreign", ALLOW)
    assert plan.classify(normalise_number("anonymous"), TODAY).category == "masked"
    assert plan.classify(normalise_number("MYSHOP"), TODAY).category == "alphanumeric"
    assert plan.classify(normalise_number("+33"), TODAY).category == "invalid"


def test_plan_file_may_be_a_bare_list(tmp_path: Path) -> None:
    """A list of rows without the version/rows wrapper is accepted."""
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(_GOOD_ROW), encoding="utf-8")
    assert NumberingPlan.load(path).rows[0].key == "+33162"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (_GOOD_ROW.replace("territory:", "teritory:"),
         r"row 0 \(\+33162\): unknown key\(s\) teritory"),
        (_GOOD_ROW.replace("automated: allow", "automated: maybe"),
         r"row 0 \(\+33162\): automated: 'maybe' is not one of allow, deny, cond"),
        (_GOOD_ROW.replace("automated: allow", "automated: Allow"), r"automated: 'Allow'"),
        (_GOOD_ROW.replace("automated: allow", "automated: yes"), r"automated: True"),
        (_GOOD_ROW.replace("interpersonal: allow", "interpersonal: 1"), r"interpersonal: 1"),
        (_GOOD_ROW.replace("2023-01-01", "2023-13-01"),
         r"row 0 \(\+33162\): effective_from: '2023-13-01' is not an ISO date"),
        (_GOOD_ROW.replace("2023-01-01", "01/01/2023"), r"effective_from: '01/01/2023'"),
        (_GOOD_ROW.replace("2023-01-01", "2023"), r"effective_from: 2023"),
        (_GOOD_ROW + _GOOD_ROW, r"row 1 \(\+33162\): duplicate key \(already in row 0\)"),
        (_GOOD_ROW + _GOOD_ROW.replace('"+33162"', '["+33163", "+33162"]'),
         r"row 1 \(\+33162\): duplicate key"),
        (_GOOD_ROW.replace("    category: npv\n", ""), r"row 0 \(\+33162\): missing 'category'"),
        (_GOOD_ROW.replace("category: npv", "category: NPV Ranges"), r"lower_snake_case"),
        (_GOOD_ROW.replace('"+33162"', '"33162"'), r"row 0 \(33162\): prefix must be"),
        (_GOOD_ROW.replace('"+33162"', '"+33 162"'), r"prefix must be"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'national: "3[2-9"'), r"national must be"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'national: "3199-3000"'), r"national must be"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'national: "30-3000"'), r"national must be"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'national: "xxxxxxxx"'), r"national must be"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'kind: ghost'), r"kind must be one of"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'prefix: []'), r"prefix list is empty"),
        (_GOOD_ROW.replace('prefix: "+33162"', "territory2: x"),
         r"row 0: unknown key\(s\) territory2"),
        (_GOOD_ROW.replace("    territory: FR-metro", '    national: "3010"'),
         r"needs exactly one of prefix, national, kind"),
        (_GOOD_ROW.replace("sources: [S8]", "sources: [ARCEP]"), r"'ARCEP' is not an S-key"),
        (_GOOD_ROW.replace("sources: [S8]", "sources: [8]"), r"sources: expected text"),
        (_GOOD_ROW.replace("sources: [S8]", "length: 20"), r"length 20 must be an integer"),
        (_GOOD_ROW.replace('prefix: "+33162"', 'national: "3010"').replace(
            "sources: [S8]", "length: 4"), r"length applies to prefix rows only"),
        (_GOOD_ROW.replace("territory: FR-metro", "territory: 33"), r"territory: expected text"),
        ("\n  - just a string", r"row 0: must be a mapping"),
    ],
)  # fmt: skip
def test_plan_validation_errors(tmp_path: Path, rows: str, message: str) -> None:
    """Each malformed row is a PlanError naming the file, the row and the key."""
    path = _write(tmp_path, rows)
    with pytest.raises(PlanError, match=message) as caught:
        NumberingPlan.load(path)
    assert str(caught.value).startswith(str(path))


def test_overlapping_short_code_patterns_are_rejected(tmp_path: Path) -> None:
    """Two shipped patterns covering one code are ambiguous."""
    rows = """
  - national: "3000-3010"
    category: a
    automated: allow
    interpersonal: allow
  - national: "30xx"
    category: b
    automated: deny
    interpersonal: deny
"""
    with pytest.raises(PlanError, match=r"'3000-3010' and '30xx' both cover 3000"):
        NumberingPlan.load(_write(tmp_path, rows))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("version: 1\nrows: [\n", r"not valid YAML"),
        ("version: 2\nrows: []\n", r"unsupported version 2"),
        ("version: 1\nrows: []\nextra: 1\n", r"unknown top-level key\(s\) extra"),
        ("version: 1\nrows: {}\n", r"'rows' must be a list"),
        ("just text\n", r"expected a mapping with 'rows'"),
    ],
)
def test_plan_file_structure_errors(tmp_path: Path, content: str, message: str) -> None:
    """Broken files are PlanErrors naming the file."""
    path = tmp_path / "plan.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PlanError, match=message) as caught:
        NumberingPlan.load(path)
    assert str(path) in str(caught.value)


def test_missing_plan_file(tmp_path: Path) -> None:
    """A missing file is a PlanError, not an OSError."""
    with pytest.raises(PlanError, match="cannot read"):
        NumberingPlan.load(tmp_path / "absent.yaml")


def test_plan_error_is_a_value_error() -> None:
    """Callers that catch ValueError (config loading) also catch PlanError."""
    assert issubclass(PlanError, ValueError)


# ------------------------------------------------------- cross-check with ARCEP's own types

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "fr-numbering"

# GELNUM `Type` (ARCEP's category of a frozen block) -> plan categories it may classify as.
_GELNUM_TYPES = {
    "Numéros polyvalents vérifiés": {"npv"},
    "Numéros polyvalents utilisables pour les échanges avec une plateforme technique": {"platform"},
    "Numéros mobiles": {"mobile"},
    "Numéros mobiles de longueur étendue": {"mobile_m2m"},
    "Numéros polyvalents": {"geographic_polyvalent", "geographic", "polyvalent", "spm"},
    "Numéros spéciaux à tarification gratuite": {"special_free"},
    "Numéros spéciaux à tarification banalisée": {"special_banalise"},
    "Numéros spéciaux vocaux à tarification majorée": {"special_surcharged", "special_premium"},
    "Numéro court à tarification gratuite": {"short_free_30_31"},
    "Numéro court généraliste": {"short_surcharged"},
    "Numéro court de renseignements téléphoniques": {"directory"},
    "Numéro court d'assistance opérateur": {"service_or_emergency"},
    "Numéro d'intérêt général": {"service_or_emergency"},
}


@pytest.mark.skipif(
    not (SHARED / "GELNUM.csv").is_file(),
    reason=f"shared ARCEP test data not found at {SHARED} (see its README.md)",
)
def test_plan_agrees_with_gelnum_types(plan: NumberingPlan) -> None:
    """Every frozen number block classifies into the category ARCEP gives it."""
    mismatches = []
    with (SHARED / "GELNUM.csv").open(encoding="latin-1", newline="") as handle:
        rows = csv.reader(handle, delimiter=";")
        next(rows)
        for prefix, kind, *_ in rows:
            if not kind.startswith("Num"):
                continue  # point codes, routing and RIO prefixes: not numbers
            width = 14 if "longueur étendue" in kind else 10
            text = prefix.ljust(width, "0") if prefix.startswith("0") else prefix
            category = plan.classify(normalise_number(text), TODAY).category
            if category not in _GELNUM_TYPES[kind]:
                mismatches.append((prefix, kind, category))
    assert mismatches == []


@given(
    st.lists(
        st.from_regex(r"0[1-9][0-9]{8}|0(700|901)[0-9]{10}|\+[1-9][0-9]{6,12}", fullmatch=True),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.dates(min_value=dt.date(2015, 1, 1), max_value=dt.date(2030, 12, 31)), min_size=1),
)
def test_cached_classification_equals_the_uncached_walk(texts: list[str], days: list[dt.date]):
    """The LRU in front of the prefix walk answers exactly what the walk answers, on first
    sight and on repeats, also when it is small enough to evict (a plan with 4 entries)."""
    import functools

    small = NumberingPlan(_PLAN.rows)
    small._by_prefix_cached = functools.lru_cache(maxsize=4)(small._by_prefix)
    small._by_stem_cached = functools.lru_cache(maxsize=4)(small._by_stem)
    for plan in (_PLAN, small):
        for _ in range(2):
            for text, on in zip(texts, days * len(texts), strict=False):
                number = normalise_number(text)
                if number.e164 is None:
                    continue
                assert plan.classify(number, on) is plan._by_prefix(number.e164, on)


_PREFIX_KEYS = sorted(k for k in (r.key for r in _PLAN.rows) if k.startswith("+"))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(_PREFIX_KEYS),
            st.integers(min_value=-6, max_value=2),
            st.from_regex(r"[0-9]{0,12}", fullmatch=True),
        ),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.dates(min_value=dt.date(2015, 1, 1), max_value=dt.date(2030, 12, 31)), min_size=1),
)
def test_classification_by_stem_equals_the_walk_near_every_prefix_row(
    picks: list[tuple[str, int, str]], days: list[dt.date]
) -> None:
    """Numbers built on every prefix row of the plan (cut shorter or longer, any tail; the
    rows longer than the 8-character stem included) get the row the full walk gives."""
    for (prefix, cut, tail), on in zip(picks, days * len(picks), strict=False):
        e164 = (prefix[: len(prefix) + cut] if cut < 0 else prefix + tail[:cut]) + tail
        e164 = e164[:16]
        number = normalise_number(e164)
        if number.e164 is None:
            continue
        assert _PLAN.classify(number, on) is _PLAN._by_prefix(number.e164, on), e164
