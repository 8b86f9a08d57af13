"""The configuration reference, generated from the config models so it never drifts.

`python -m proxy.config_reference > docs/configuration.md` regenerates the committed page;
`tests/unit/test_config_reference.py` fails when the page and the models disagree.

The walk starts at `proxy.config.Config` and follows every field whose type holds a pydantic
model (directly, optional, in a list or tuple, or as the values of a mapping), so the sections
owned by policy and stir_shaken are included as they are composed. A field's description is
its pydantic `description` when set, else the docstring written under the attribute in the
model's source (the convention of proxy.policy.settings and stir_shaken.settings); fields
without either show their type, default and constraints only.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from proxy.config import Config

REGENERATE = "python -m proxy.config_reference > docs/configuration.md"


@dataclass(frozen=True, slots=True)
class Section:
    """One model as it appears at one key path of the configuration."""

    path: str
    model: type[BaseModel]


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _nested(annotation: Any, path: str) -> Iterator[Section]:
    """The models reachable from a field's type, with the key path each one lives at."""
    if _is_model(annotation):
        yield Section(path, annotation)
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested(arg, path)
    elif origin in (list, tuple, set, frozenset) or origin is typing.Sequence:
        for arg in args:
            if arg is not Ellipsis:
                yield from _nested(arg, f"{path}[]")
    elif origin is dict and len(args) == 2:
        yield from _nested(args[1], f"{path}.<name>")
    elif origin is typing.Annotated:
        yield from _nested(args[0], path)


def sections(model: type[BaseModel] = Config, path: str = "") -> list[Section]:
    """Every (key path, model) pair under `model`, depth first, in field order."""
    found = [Section(path, model)]
    for name, field in model.model_fields.items():
        child_path = f"{path}.{name}" if path else name
        for section in _nested(field.annotation, child_path):
            if section.model is model:  # a self-referencing model: list it once
                continue
            found.extend(sections(section.model, section.path))
    return found


@cache
def attribute_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Docstrings written under the annotated attributes of `model` (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if not _is_model(klass) or klass is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for first, second in itertools.pairwise(body):
            if (
                isinstance(first, ast.AnnAssign)
                and isinstance(first.target, ast.Name)
                and isinstance(second, ast.Expr)
                and isinstance(second.value, ast.Constant)
                and isinstance(second.value.value, str)
            ):
                docs[first.target.id] = inspect.cleandoc(second.value.value)
    return docs


def describe(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The description of one field: pydantic's, else the attribute docstring, else ''."""
    text = field.description or attribute_docstrings(model).get(name, "")
    return " ".join(text.split())


def render_type(annotation: Any) -> str:
    """A short, YAML-minded name for a field type."""
    if annotation is None or annotation is type(None):
        return "null"
    if _is_model(annotation):
        return f"{annotation.__name__} (mapping)"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(to_jsonable_python(a)) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(render_type(a) for a in args)
    if origin is typing.Annotated:
        return render_type(args[0])
    if origin in (list, tuple, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(items) > 1 and Ellipsis not in args:
            return "list [" + ", ".join(render_type(a) for a in items) + "]"
        return f"list of {render_type(items[0]) if items else 'any'}"
    if origin is dict:
        key, value = args if len(args) == 2 else (Any, Any)
        return f"mapping {render_type(key)} -> {render_type(value)}"
    simple: dict[Any, str] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        UUID: "UUID",
        Any: "any",
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(json.dumps(to_jsonable_python(m.value)) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return to_jsonable_python(value)


def render_default(field: FieldInfo) -> str:
    """The default in YAML flow syntax (JSON is a YAML subset); 'required' when there is none."""
    if field.default_factory is not None:
        factory = typing.cast(typing.Callable[[], Any], field.default_factory)
        value = factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return json.dumps(_jsonable(value), ensure_ascii=False)


_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "length ≥"),
    (annotated_types.MaxLen, "max_length", "length ≤"),
)


def render_constraints(field: FieldInfo) -> str:
    """Numeric bounds and length limits declared on the field, e.g. '≥ 1, ≤ 65535'."""
    parts = []
    for item in field.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else ""


def render_section(section: Section) -> str:
    """One model's table: key path, type, default, constraints, description."""
    model = section.model
    title = f"`{section.path}`" if section.path else "Top level"
    lines = [f"## {title}", "", f"Model `{model.__module__}.{model.__qualname__}`."]
    doc = inspect.getdoc(model)
    if doc and doc != inspect.getdoc(BaseModel):
        lines += ["", " ".join(doc.split())]
    lines += [
        "",
        "| key | type | default | constraints | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        key = f"{section.path}.{name}" if section.path else name
        cells = (
            _code(key),
            _code(render_type(field.annotation)),
            _code(render_default(field)),
            _cell(render_constraints(field)),
            _cell(describe(model, name, field)),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(model: type[BaseModel] = Config) -> str:
    """The whole reference page for `model` (the sipguard configuration by default)."""
    found = sections(model)
    head = [
        "# Configuration reference",
        "",
        "<!-- Generated from the pydantic models by proxy/config_reference.py; do not edit.",
        f"     Regenerate with: {REGENERATE} -->",
        "",
        "Every key of the YAML file given to `sipguard run --config` and "
        "`sipguard check-config`. Unknown keys are errors that name the key. `<name>` in a "
        "path stands for a key of a mapping you choose; `[]` for each item of a list. "
        'Defaults are written in YAML flow syntax; `{}` means "every key at its default".',
        "",
        "Sections:",
        "",
    ]
    for section in found[1:]:
        anchor = _anchor(section.path)
        head.append(f"- [`{section.path}`](#{anchor}) ({section.model.__name__})")
    body = [render_section(section) for section in found]
    return "\n".join(head) + "\n\n" + "\n".join(body)


def _anchor(path: str) -> str:
    """GitHub's heading anchor for a `## `path`` heading."""
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def main() -> int:
    """Print the reference on stdout."""
    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
