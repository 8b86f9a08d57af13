"""The caller-ID rule catalogue: stable ids, names, legal references and default actions.

Every rule the engine can fire is listed here once. The ids appear in SIP answers
(`Reason: SIP;cause=403;text="<rule id>: ..."`), in the audit store and in configuration
overrides, so they never change once released. `docs/rules.md` is checked against this table by
a test (`tests/unit/policy/test_rules_doc.py`).

The facts and their confidence marks come from `../shared/docs/regulation.md` (§0, §5, §8) and
`../shared/docs/man_fr.md` (§1, §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RuleAction = Literal["reject", "monitor", "off"]
"""What a rule does when it fires: refuse the request, forward and record it, or not run at all."""

RULE_ACTIONS: tuple[RuleAction, ...] = ("reject", "monitor", "off")


@dataclass(frozen=True, slots=True)
class Rule:
    """One caller-ID rule: what it checks, why (the legal text), and what it does by default."""

    id: str
    name: str
    meaning: str
    reference: str
    default_action: RuleAction


# Order matters: it is the order rules are reported in, and the first rejecting rule in this
# order is the one named in the SIP answer. Structural faults come first because nothing else
# can be judged on a number that is not one.
RULES: tuple[Rule, ...] = (
    Rule(
        id="invalid-number",
        name="Structurally invalid caller number",
        meaning=(
            "From/PAI carries no usable number (not a number, wrong length, not in any numbering"
            " plan, or no number at all once the masked From is set aside)."
        ),
        reference="ARCEP 2022-1583 annex 1 §2.2.2 (a presented number follows the plan)",
        default_action="reject",
    ),
    Rule(
        id="unallocated-number",
        name="Number in no allocated block",
        meaning=(
            "A French number outside every block ARCEP allocated (MAJNUM), or in a frozen"
            " block; only judged once allocation data is loaded (`sipguard plan import`)."
        ),
        reference="ARCEP 2022-1583 annex 1 §2.2.2 (allocated, attributed, assigned)",
        default_action="reject",
    ),
    Rule(
        id="masked-number",
        name="Masked caller number",
        meaning=(
            "Anonymous From or Privacy: id/header/user. Professionals calling consumers may"
            " not mask their number; a source may be allowed to with `allow_masked`."
        ),
        reference="Code de la consommation L.221-17 (ex L.121-34-2)",
        default_action="reject",
    ),
    Rule(
        id="alphanumeric-sender",
        name="Alphanumeric sender",
        meaning=(
            "A sender name instead of a number: allowed on MESSAGE from a source marked"
            " `sms_platform`, refused otherwise (a call cannot be called back on a name)."
        ),
        reference="ARCEP 2022-1583 annex 1 §2.2.2 (the callee can call back)",
        default_action="reject",
    ),
    Rule(
        id="mobile-number",
        name="Mobile number from a call-centre source",
        meaning=(
            "06/07 (and overseas mobile) numbers are for one natural person on a mobile"
            " terminal; a call centre may never present one, manual or automated."
        ),
        reference="ARCEP 2022-1583 annex 1 §2.3.4; ARCEP FAQ plan de numérotation (pros)",
        default_action="reject",
    ),
    Rule(
        id="automated-category",
        name="Category not allowed to automated systems",
        meaning=(
            "An automated source (SAAEM: predictive/progressive dialer, voice robot, SMS"
            " platform) may only present NPV, 08 except 089, 30PQ/31PQ short numbers and,"
            " with entitlement, public-interest numbers."
        ),
        reference="CPCE L.44 VI; ARCEP 2022-1583 (in force 1 Jan 2023)",
        default_action="reject",
    ),
    Rule(
        id="public-interest-entitlement",
        name="Public-interest number without entitlement",
        meaning=(
            "Public-interest polyvalent numbers may be presented by an automated source only"
            " for a principal listed by ministerial order (`public_interest: true`)."
        ),
        reference="Loi 2025-594 art. 16; CPCE L.44 VI; ARCEP 2025-2215",
        default_action="reject",
    ),
    Rule(
        id="plan-deny",
        name="Category never presentable",
        meaning=(
            "Every other `deny` cell of the plan: 089, 118XYZ, 3[2-9]xx, 0700/0901"
            " extended numbers, service and emergency numbers, placeholders."
        ),
        reference="Arrêté du 5 juillet 2016; ARCEP 2022-1583 annex 1 §2.3.5, §2.3.8, §2.4",
        default_action="reject",
    ),
    Rule(
        id="plan-conditional",
        name="Conditional category outside its flow exception",
        meaning=(
            "A `cond` cell of the plan (platform numbers 0937-0939): allowed while the number"
            " reaches at most `flow_max_destinations` distinct destinations in"
            " `flow_window_days`, or, for a MESSAGE, while it sends at most"
            " `flow_message_tolerance` (20 %) more messages than it receives (conversational"
            " messaging); beyond that it looks like a mass campaign."
        ),
        reference="ARCEP 2022-1583 annex 1 §2.3.9 and the SAAEM flow exceptions",
        default_action="monitor",
    ),
    Rule(
        id="not-on-list",
        name="Number not held or delegated",
        meaning=(
            "The number is neither on the customer's own list nor delegated to it today by"
            " one of its principals (foreign numbers included)."
        ),
        reference=(
            "ARCEP 2025-2215 (contractual caller-ID list); ARCEP 2022-1583 annex 1 §2.2.2"
            " (assignee's prior authorisation); Code de la consommation L.221-17"
        ),
        default_action="reject",
    ),
    Rule(
        id="principal-mismatch",
        name="Number not the marked principal's",
        meaning=(
            "The source's marker names the principal the call is made for, and the number"
            " is not that principal's (held by it or delegated by it to the customer)."
        ),
        reference="Code de la consommation L.221-17 (number assigned to the principal)",
        default_action="reject",
    ),
    Rule(
        id="from-pai-mismatch",
        name="From and PAI numbers differ",
        meaning=(
            "Only for sources with `require_from_pai_equal`: the From number (what the callee"
            " sees and the MAN signs) must equal a PAI number."
        ),
        reference="FFT MAN practice: orig taken from From (man_fr.md §2)",
        default_action="reject",
    ),
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
RULE_ORDER: dict[str, int] = {rule.id: index for index, rule in enumerate(RULES)}


def rule(rule_id: str) -> Rule:
    """The catalogue entry of `rule_id`; KeyError names the unknown id."""
    try:
        return RULES_BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule id {rule_id!r}") from None


def validate_rule_actions(actions: dict[str, RuleAction]) -> dict[str, RuleAction]:
    """Check that every key of an override map is a known rule id (for the config models)."""
    unknown = sorted(set(actions) - set(RULES_BY_ID))
    if unknown:
        known = ", ".join(RULES_BY_ID)
        raise ValueError(f"unknown rule id(s) {', '.join(unknown)}; known: {known}")
    return actions


def render_markdown() -> str:
    """The rule table of `docs/rules.md` (id, name, meaning, reference, default action)."""
    lines = [
        "| id | name | meaning | legal reference | default action |",
        "|---|---|---|---|---|",
    ]
    for item in RULES:
        cells = (f"`{item.id}`", item.name, item.meaning, item.reference, item.default_action)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
