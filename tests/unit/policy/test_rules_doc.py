"""docs/rules.md and the rule catalogue never drift apart."""

from __future__ import annotations

from pathlib import Path

from proxy.policy.rules import RULES, render_markdown, validate_rule_actions

DOC = Path(__file__).resolve().parents[3] / "docs" / "rules.md"


def test_rules_doc_matches_catalogue():
    """The table between the markers is exactly what rules.py renders."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- rules:begin -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert table == render_markdown()


def test_rule_ids_unique_and_stable_shape():
    """Ids are unique kebab-case words with a legal reference and a valid default."""
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert rule.id == rule.id.lower() and " " not in rule.id
        assert rule.reference and rule.default_action in ("reject", "monitor", "off")


def test_unknown_override_rejected():
    """An override naming no rule is an error that lists the known ids."""
    try:
        validate_rule_actions({"no-such-rule": "off"})
    except ValueError as exc:
        assert "no-such-rule" in str(exc) and "mobile-number" in str(exc)
    else:
        raise AssertionError("unknown rule id accepted")
