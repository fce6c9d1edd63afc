"""Recipes: one YAML file per dataset, validated against a JSON Schema.

A recipe with a typo, a wrong type or a missing field fails before any work,
with a message naming the recipe file, the field and what was expected.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PACKAGE = "chunkindex.schemas"  # the JSON Schemas ship inside the package


class RecipeError(ValueError):
    """A recipe or config file that does not match its schema."""


def load_schema(name: str, schema_dir: Path | None = None) -> dict[str, Any]:
    """The JSON Schema `name` (recipe, config).

    Args:
        name: `recipe` or `config`.
        schema_dir: a folder of `<name>.schema.yaml` files to read instead of
            the package's own (loaded with importlib.resources, so an installed
            wheel finds them).

    Returns:
        The schema as a dict.

    Example:
        >>> load_schema("recipe")["properties"]["format"]["enum"]
        ['cog', 'netcdf4', 'hdf5']
    """
    if schema_dir is not None:
        return _yaml((Path(schema_dir) / f"{name}.schema.yaml").read_text())
    return _package_schema(name)


def _yaml(text: str) -> Any:
    """YAML through libyaml's C parser when PyYAML has it (ten times the pure-Python one)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.lru_cache(maxsize=4)
def _package_schema(name: str) -> dict[str, Any]:
    text = importlib.resources.files(SCHEMA_PACKAGE).joinpath(f"{name}.schema.yaml").read_text()
    return _yaml(text)


def _field_path(path: Any) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "(top level)"


def _schema_at(schema: dict[str, Any], path: Any) -> dict[str, Any]:
    """The sub-schema that describes the instance at `path`."""
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return node


def _explain(error: Any, schema: dict[str, Any]) -> str:
    """One readable line for a jsonschema ValidationError."""
    where = _field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(schema, error.absolute_path).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return (f"field {where}: unknown key {', '.join(hints)}; "
                f"expected keys: {', '.join(allowed)}")
    if error.validator == "required":
        sub = _schema_at(schema, error.absolute_path)
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        description = sub.get("properties", {}).get(missing, {}).get("description", "")
        target = f"{where}.{missing}" if error.absolute_path else missing
        return f"field {target}: missing (required). {description}".strip()
    if error.validator == "anyOf" and all("required" in s for s in error.validator_value):
        options = " or ".join(s["required"][0] for s in error.validator_value)
        return f"field {where}: needs {options}"
    description = _schema_at(schema, error.absolute_path).get("description", "")
    hint = f" ({description.strip()})" if description else ""
    return f"field {where}: {error.message}{hint}"


def validate_document(document: Any, schema: dict[str, Any], source: str) -> None:
    """Raise RecipeError listing every schema violation in `document`."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_explain(e, schema)}" for e in errors)
        raise RecipeError(f"{source} is not valid:\n{lines}")


def with_defaults(document: Any, schema: dict[str, Any]) -> Any:
    """A copy of a schema-valid `document` with every `default` of `schema` filled in.

    The schema is the only place defaults are written: optional sections
    (`headers`, `benchmark`) absent from a recipe are filled from their
    properties' defaults too, so the dataclasses below never carry their own.

    Args:
        document: a recipe (or a part of one) that already passed validation.
        schema: the JSON Schema (or sub-schema) describing `document`.

    Returns:
        The document with defaults added (the input is left unchanged).

    Example:
        >>> doc = with_defaults({"headers": {}}, {"properties": {"headers": {
        ...     "type": "object", "properties": {"batch_size": {"default": 500}}}}})
        >>> doc["headers"]["batch_size"]
        500
    """
    if isinstance(document, list):
        items = schema.get("items", {})
        return [with_defaults(item, items) for item in document]
    if not isinstance(document, dict):
        return document
    out = dict(document)
    for name, sub in schema.get("properties", {}).items():
        if name in out:
            out[name] = with_defaults(out[name], sub)
        elif "default" in sub:
            out[name] = sub["default"]
        elif sub.get("type") == "object" and any("default" in p for p in sub.get("properties", {}).values()):
            out[name] = with_defaults({}, sub)
    return out


@dataclass(frozen=True)
class DateRange:
    start: str
    end: str
    step: str


@dataclass(frozen=True)
class Source:
    url: str
    pattern: str | None = None
    glob: str | None = None
    store_options: dict[str, Any] = field(default_factory=dict)
    template: DateRange | None = None
    public_url: str | None = None
    gdal_config: dict[str, str] = field(default_factory=dict)
    synthetic: str | None = None
    on_mismatch: str = "error"  # filled from the schema by recipe_from_dict
    group_by: str | None = None


@dataclass(frozen=True)
class Variable:
    name: str
    source_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def name_in_file(self) -> str:
        return self.source_name or self.name


@dataclass(frozen=True)
class Concat:
    dim: str
    calendar: str
    units: str | None = None


@dataclass(frozen=True)
class Output:
    kinds: tuple[str, ...]
    record_size: int
    overviews: bool
    gdal_readable_variant: bool


@dataclass(frozen=True)
class HeaderOptions:
    batch_size: int
    concurrency: int
    prefetch: int
    retries: int
    extractor: str
    tiff_reader: str


@dataclass(frozen=True)
class ValidationOptions:
    sample_chunks: int
    seed: int
    second_reader: bool


@dataclass(frozen=True)
class Recipe:
    """A validated recipe."""

    id: str
    title: str
    format: str
    source: Source
    variables: tuple[Variable, ...]
    concat: Concat
    output: Output
    validation: ValidationOptions
    headers: HeaderOptions
    description: str = ""
    path: str = ""

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)


def default_headers() -> HeaderOptions:
    """The `headers` section of a recipe that leaves it out: the schema's defaults.

    Returns:
        HeaderOptions with every field at its schema default.

    Example:
        >>> default_headers().batch_size
        500
    """
    return HeaderOptions(**with_defaults({}, load_schema("recipe")["properties"]["headers"]))


def recipe_from_dict(doc: dict[str, Any], path: str = "") -> Recipe:
    """Build a Recipe from an already validated document; the schema's defaults fill what it leaves out."""
    doc = with_defaults(doc, load_schema("recipe"))
    src = dict(doc["source"])
    template = src.pop("template", None)
    source = Source(template=DateRange(**template) if template else None, **src)
    concat = dict(doc["concat"])
    del concat["from"]  # checked with the pattern (_check_semantics); each format knows its coordinate
    output = dict(doc["output"])
    output["kinds"] = tuple(output["kinds"])
    return Recipe(
        id=doc["id"],
        title=doc["title"],
        description=doc.get("description", ""),
        format=doc["format"],
        source=source,
        variables=tuple(Variable(**v) for v in doc["variables"]),
        concat=Concat(**concat),
        output=Output(**output),
        headers=HeaderOptions(**doc["headers"]),
        validation=ValidationOptions(**doc["validation"]),
        path=path,
    )


def _check_semantics(doc: dict[str, Any], source: str, stem: str | None) -> None:
    problems = []
    if stem is not None and doc["id"] != stem:
        problems.append(f"field id: {doc['id']!r} must equal the file name {stem!r}")
    pattern = doc["source"].get("pattern")
    names = [v["name"] for v in doc["variables"]]
    if pattern is not None:
        if "{variable}" not in pattern and len(names) > 1 and doc["format"] == "cog":
            problems.append("field source.pattern: several COG variables need `{variable}` in the pattern")
        if doc["concat"].get("from", "filename") == "filename" and "{time" not in pattern:
            problems.append("field source.pattern: concat.from is `filename`, so the pattern needs a `{time:...}` field")
    if len(set(names)) != len(names):
        problems.append("field variables: names must be unique")
    if doc["source"].get("group_by") and doc["format"] != "cog":
        problems.append("field source.group_by: grouping files by grid is for COG archives")
    if "vrt" in doc["output"]["kinds"] and doc["format"] != "cog":
        problems.append(f"field output.kinds: `vrt` (a VRT over the source files' TIFF bands) is written for "
                        f"format cog only, not {doc['format']}")
    if problems:
        raise RecipeError(f"{source} is not valid:\n" + "\n".join(f"  - {p}" for p in problems))


def load_recipe(path: str | Path, schema_dir: Path | None = None) -> Recipe:
    """Load, validate and return the recipe at `path`.

    Args:
        path: a recipe YAML file; its name (without `.yaml`) must be its `id`.
        schema_dir: a folder of schemas to validate against instead of the package's.

    Returns:
        The Recipe, with the schema's defaults for what it leaves out.

    Raises:
        RecipeError: naming the recipe file, each bad field and what was expected.
        FileNotFoundError: when `path` does not exist.

    Example:
        >>> recipe = load_recipe("recipes/bran-demo.yaml")
        >>> recipe.format, recipe.concat.dim, recipe.headers.batch_size
        ('netcdf4', 'Time', 2)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        doc = _yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RecipeError(f"recipe {path} is not valid: expected a mapping at the top level")
    validate_document(doc, load_schema("recipe", schema_dir), f"recipe {path}")
    _check_semantics(doc, f"recipe {path}", path.stem)
    return recipe_from_dict(doc, str(path))


def validate_config(config: dict[str, Any], schema_dir: Path | None = None) -> None:
    """Validate the workflow config (config/config.yaml plus --config overrides)."""
    validate_document(config, load_schema("config", schema_dir), "workflow config")
