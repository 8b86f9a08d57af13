"""The generated configuration reference (docs/configuration.md) matches the config models."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from proxy.config import Config
from proxy.config_reference import (
    REGENERATE,
    attribute_docstrings,
    render_markdown,
    render_type,
    sections,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _leaf_keys(model: type[BaseModel], path: str = "") -> list[str]:
    keys = []
    for section in sections(model, path):
        for name in section.model.model_fields:
            keys.append(f"{section.path}.{name}" if section.path else name)
    return keys


def test_committed_reference_is_current() -> None:
    """docs/configuration.md is exactly what the generator prints (else: run REGENERATE)."""
    committed = DOC.read_text(encoding="utf-8")
    assert committed == render_markdown(), f"docs/configuration.md is stale; run: {REGENERATE}"


def test_every_field_of_every_section_has_a_row() -> None:
    """Each key path of the composed config appears as a table row, nested ones included."""
    text = render_markdown()
    keys = _leaf_keys(Config)
    for expected in (
        "sources[].policy.customer",
        "trunks[].verification.trust_anchors[].file",
        "policy.audit.batch_size",
        "signing.x5u",
        "admin.token",
    ):
        assert expected in keys
    for key in keys:
        assert f"| `{key}` |" in text, key


def test_attribute_docstrings_become_descriptions() -> None:
    """A docstring under an attribute is its description; pydantic descriptions win."""

    class Sample(BaseModel):
        plain: int = 1
        documented: str = "x"
        """Said under the attribute."""
        described: bool = Field(default=False, description="From pydantic.")
        """Ignored because pydantic's description wins."""

    assert attribute_docstrings(Sample) == {
        "documented": "Said under the attribute.",
        "described": "Ignored because pydantic's description wins.",
    }
    text = render_markdown(Sample)
    assert "| `plain` | `integer` | `1` |  |  |" in text
    assert '| `documented` | `string` | `"x"` |  | Said under the attribute. |' in text
    assert "| `described` | `boolean` | `false` |  | From pydantic. |" in text


def test_nested_lists_and_mappings_of_models_are_walked() -> None:
    """Models inside optional fields, lists and mapping values get their own section."""

    class Leaf(BaseModel):
        value: int = Field(default=0, ge=0, le=9)

    class Root(BaseModel):
        one: Leaf | None = None
        many: list[Leaf] = Field(default_factory=list)
        named: dict[str, Leaf] = Field(default_factory=dict)
        required: tuple[Leaf, ...]

    paths = [s.path for s in sections(Root)]
    assert paths == ["", "one", "many[]", "named.<name>", "required[]"]
    text = render_markdown(Root)
    assert "| `many[].value` | `integer` | `0` | ≥ 0, ≤ 9 |  |" in text
    assert "| `required` | `list of Leaf (mapping)` | `required` |  |  |" in text


def test_type_names_are_yaml_minded() -> None:
    """Types render as YAML users read them: literals quoted, optional as `| null`."""
    from typing import Literal

    assert render_type(Literal["udp", "tcp"] | None) == '"udp" | "tcp" | null'
    assert render_type(dict[str, list[int]]) == "mapping string -> list of integer"
